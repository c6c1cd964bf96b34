//! The Gemma-3 text model (`Gemma3ForCausalLM`) on libtorch, numerically following
//! transformers' `modeling_gemma3.py` (see `shared/reference/gemma3.md`):
//! scaled embedding (scale cast to the weight dtype), sandwich RMSNorms computed in fp32 with
//! `(1 + w)`, q/k norms before split-half RoPE (fp32 angles, local/global bases), sliding-window
//! and full layers, GQA through SDPA, tanh-GELU MLP, tied LM head.
//!
//! Module tree and tensor names are the HF ones; each block is built from the checkpoint by
//! its name prefix.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::attention::{AttnMode, Masks};
use crate::cache::KvCache;
use crate::config::{Config, Resolved, Rope};
use crate::error::{ModelError, Result};
use crate::fused;
use crate::linear::{fuse_frozen, fused_forward, Linear};
use crate::weights::{Checkpoint, Source};

/// RMSNorm with the Gemma `(1 + w)` weight in fp32. A frozen norm keeps `1 + w` precomputed;
/// a trainable one (full fine-tuning: `w` requires grad) forms `1 + w` in each forward so the
/// gradient reaches `w`, which is what the checkpoint stores and the optimizer updates.
#[derive(Debug)]
pub struct RmsNorm {
    weight: Tensor,
    scale: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn load(ck: &dyn Source, name: &str, dim: i64, eps: f64, dev: Device) -> Result<Self> {
        let w = ck.get(&format!("{name}.weight"), &[dim], Kind::Float, dev)?;
        let scale = {
            let _g = tch::no_grad_guard();
            w.f_add_scalar(1.0)?
        };
        Ok(Self {
            weight: w,
            scale,
            eps,
        })
    }

    /// `1 + w` in fp32: precomputed when frozen, formed here when `w` trains.
    fn factor(&self) -> Result<Tensor> {
        if self.weight.requires_grad() {
            Ok(self.weight.f_add_scalar(1.0)?)
        } else {
            Ok(self.scale.shallow_clone())
        }
    }

    /// Normalise over the last dim in fp32, multiply by `1 + w` in fp32, cast back: HF's
    /// `(x · rsqrt(mean(x²) + eps)) · (1 + w)`, the program the fused kernel reproduces.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_add(x, None)
    }

    /// `residual + norm(x)` (the sandwich residual, added in the model dtype as HF does), or
    /// `norm(x)`. A frozen norm of a bf16 CUDA tensor is one fused kernel (`fused`).
    pub fn forward_add(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        if !self.weight.requires_grad() && fused::serves(x) {
            return fused::rms_norm(x, &self.scale, 1, self.eps, residual);
        }
        fused::reference_rms_norm(x, &self.factor()?, 1, self.eps, residual)
    }
}

#[derive(Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    /// q/k/v weights as one `[(heads + 2·kv_heads)·head_dim, hidden]` tensor (frozen base):
    /// one GEMM instead of three. `None` when they train (see `linear::fuse_frozen`).
    qkv: Option<Tensor>,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    /// Frozen norms: `1 + w` of q_norm for each query head then k_norm for each KV head,
    /// `[heads + kv_heads, head_dim]`, so one normalisation covers the queries and keys.
    qk_factor: Option<Tensor>,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
    scaling: f64,
}

#[derive(Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
    /// gate and up weights as one `[2·intermediate, hidden]` tensor (frozen base).
    gate_up: Option<Tensor>,
}

#[derive(Debug)]
pub struct Layer {
    pub self_attn: Attention,
    pub mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    pre_feedforward_layernorm: RmsNorm,
    post_feedforward_layernorm: RmsNorm,
    pub sliding: bool,
}

/// The whole model. Base weights are frozen plain tensors; LoRA adapters live in the `Linear`s.
#[derive(Debug)]
pub struct Gemma3 {
    pub cfg: Config,
    pub resolved: Resolved,
    embed_tokens: Tensor,
    embed_scale: Tensor,
    pub layers: Vec<Layer>,
    norm: RmsNorm,
    /// `None` when tied to `embed_tokens`.
    lm_head: Option<Tensor>,
    inv_freq_local: Tensor,
    inv_freq_global: Tensor,
    pub kind: Kind,
    pub device: Device,
}

fn linear(ck: &dyn Source, name: String, out: i64, inp: i64, k: Kind, d: Device) -> Result<Linear> {
    let w = ck.get(&format!("{name}.weight"), &[out, inp], k, d)?;
    Ok(Linear::new(name, w))
}

/// `inv_freq[i] = 1 / (theta^(2i/dim) · factor)`, fp32.
fn inv_freq(rope: Rope, dim: i64, dev: Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..dim / 2)
        .map(|i| {
            let e = (2 * i) as f32 / dim as f32;
            // Same recipe as HF: base ** (arange(0, dim, 2).float() / dim), in fp32.
            1.0f32 / ((rope.theta as f32).powf(e) * rope.factor as f32)
        })
        .collect();
    Ok(Tensor::f_from_slice(&v)?.f_to_device(dev)?)
}

impl Attention {
    fn load(
        ck: &dyn Source,
        p: &str,
        cfg: &Config,
        r: &Resolved,
        k: Kind,
        d: Device,
    ) -> Result<Self> {
        let (h, kvh, hd, hid) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
            cfg.hidden_size,
        );
        let mut q_proj = linear(ck, format!("{p}.q_proj"), h * hd, hid, k, d)?;
        let mut k_proj = linear(ck, format!("{p}.k_proj"), kvh * hd, hid, k, d)?;
        let mut v_proj = linear(ck, format!("{p}.v_proj"), kvh * hd, hid, k, d)?;
        let qkv = fuse_frozen(&mut [&mut q_proj, &mut k_proj, &mut v_proj])?;
        let mut att = Self {
            q_proj,
            k_proj,
            v_proj,
            o_proj: linear(ck, format!("{p}.o_proj"), hid, h * hd, k, d)?,
            qkv,
            q_norm: RmsNorm::load(ck, &format!("{p}.q_norm"), hd, cfg.rms_norm_eps, d)?,
            k_norm: RmsNorm::load(ck, &format!("{p}.k_norm"), hd, cfg.rms_norm_eps, d)?,
            qk_factor: None,
            heads: h,
            kv_heads: kvh,
            head_dim: hd,
            scaling: r.scaling,
        };
        if !att.q_norm.weight.requires_grad() && !att.k_norm.weight.requires_grad() {
            let _g = tch::no_grad_guard();
            att.qk_factor = Some(att.qk_factor()?);
        }
        Ok(att)
    }

    fn qk_factor(&self) -> Result<Tensor> {
        if let Some(f) = &self.qk_factor {
            return Ok(f.shallow_clone());
        }
        let hd = self.head_dim;
        Ok(Tensor::f_cat(
            &[
                self.q_norm.factor()?.f_expand([self.heads, hd], false)?,
                self.k_norm.factor()?.f_expand([self.kv_heads, hd], false)?,
            ],
            0,
        )?)
    }

    fn forward(
        &self,
        x: &Tensor,
        (cos, sin): (&Tensor, &Tensor),
        mode: &AttnMode,
        cache: Option<CacheWrite>,
        train: bool,
    ) -> Result<Tensor> {
        let (b, s, _) = x.size3()?;
        let (h, kvh, hd) = (self.heads, self.kv_heads, self.head_dim);
        let parts = [&self.q_proj, &self.k_proj, &self.v_proj];
        let heads =
            fused_forward(self.qkv.as_ref(), &parts, x, train)?.f_view([b, s, h + 2 * kvh, hd])?;
        // Splits, not narrows: the backward of a split is one concatenation of the parts'
        // gradients, where each narrow would scatter its gradient into a zero-filled copy of
        // the whole tensor and the copies would then be summed.
        let [qk, v] = split2(&heads, [h + kvh, kvh], 2)?;
        // Queries and keys share the normalisation and the rotation: [B, S, h + kvh, D],
        // q_norm on the query heads and k_norm on the key heads as one fp32 normalisation
        // times the per-head `1 + w` (HF's RMSNorm arithmetic), then RoPE.
        let eps = self.q_norm.eps;
        let qk = match &self.qk_factor {
            Some(f) if fused::serves(&qk) => fused::qk_norm_rope(&qk, f, cos, sin, h + kvh, eps)?,
            _ => fused::reference_qk_norm_rope(&qk, &self.qk_factor()?, cos, sin, h + kvh, eps)?,
        };
        // Split by head, then transpose each to [B, heads, S, D] (the same views as transposing
        // first), so the backward concatenates the parts' gradients along the heads of the
        // [B, S, heads, D] layout SDPA's backward writes them in: one dense concatenation that
        // the q/k backward reads as it is. Transposed first, the backward took a strided
        // concatenation and then a copy to make it contiguous: 3.0 + 1.7 ms of GPU time in a
        // 206 ms 1B step at batch 32 (H200 profile, tenth session).
        let [q, k] = split2(&qk, [h, kvh], 2)?;
        let (q, k, v) = (
            q.f_transpose(1, 2)?,
            k.f_transpose(1, 2)?,
            v.f_transpose(1, 2)?,
        );
        let (k, v) = match cache {
            Some((c, layer, Some(slot))) => c.write_at(layer, &k, &v, slot)?,
            Some((c, layer, None)) => c.update(layer, &k, &v, mode.key_start())?,
            None => (k, v),
        };
        let out = match mode {
            AttnMode::Causal => Tensor::f_scaled_dot_product_attention::<Tensor>(
                &q,
                &k,
                &v,
                None,
                0.0,
                true,
                self.scaling,
                kvh != h,
            )
            .map_err(attention_error)?,
            AttnMode::All { .. } => self.grouped_attention(&q, &k, &v, None)?,
            AttnMode::Masked { mask, .. } => self.grouped_attention(&q, &k, &v, Some(mask))?,
        };
        let out = out.f_transpose(1, 2)?.f_reshape([b, s, h * hd])?;
        self.o_proj.forward(&out, train)
    }

    /// Grouped-query attention without copying keys and values per query head (HF's
    /// `repeat_kv`): the `rep` query heads that share a KV head become `rep · S` query rows
    /// against it, and the mask rows `[B|1, 1, S, K]` repeat to match. At a one-token decode
    /// step the fold is a view. Returns `[B, heads, S, D]`.
    fn grouped_attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, h, s, d) = q.size4()?;
        let rep = h / self.kv_heads;
        let folded = q.f_reshape([b, self.kv_heads, rep * s, d])?;
        let mask = match mask {
            Some(m) if rep > 1 && s > 1 => Some(m.f_repeat([1, 1, rep, 1])?),
            Some(m) => Some(m.shallow_clone()),
            None => None,
        };
        let out = Tensor::f_scaled_dot_product_attention(
            &folded,
            k,
            v,
            mask.as_ref(),
            0.0,
            false,
            self.scaling,
            false,
        )
        .map_err(attention_error)?;
        Ok(out.f_reshape([b, h, s, d])?)
    }
}

/// libtorch's attention error, naming `T2S_SDPA` where the backends it allows are why no kernel
/// could serve the call (libtorch says only "Invalid backend").
fn attention_error(e: tch::TchError) -> ModelError {
    let allowed = std::env::var(crate::shim::SDPA_ENV).unwrap_or_default();
    attention_error_under(e, &allowed)
}

fn attention_error_under(e: tch::TchError, allowed: &str) -> ModelError {
    if allowed.trim().is_empty() || !e.to_string().contains("Invalid backend") {
        return e.into();
    }
    ModelError::Input(format!(
        "{}={allowed}: none of the attention backends it allows can serve this model's \
         attention (libtorch: \"Invalid backend\"; memory-efficient attention, for one, does not \
         take grouped-query attention); allow another, e.g. flash or math, or unset it",
        crate::shim::SDPA_ENV
    ))
}

/// `t` split along `dim` into two parts of the given sizes (views).
fn split2(t: &Tensor, sizes: [i64; 2], dim: i64) -> Result<[Tensor; 2]> {
    let mut parts = t.f_split_with_sizes(sizes.as_slice(), dim)?.into_iter();
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => Ok([a, b]),
        _ => Err(ModelError::Input(format!(
            "cannot split {:?} into {sizes:?} along {dim}",
            t.size()
        ))),
    }
}

/// `x·cos + rotate_half(x)·sin` with split-half rotation, as
/// `x·cos + roll(x, D/2)·sin_signed` where `sin_signed` has its first half negated (so the
/// product equals `rotate_half(x)·sin` exactly). `x: [B, S, heads, D]`, tables `[B, S, 1, D]`.
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin_signed: &Tensor) -> Result<Tensor> {
    let half = x.size()[3] / 2;
    Ok(x.f_mul(cos)?
        .f_addcmul(&x.f_roll([half].as_slice(), [3i64].as_slice())?, sin_signed)?)
}

impl Mlp {
    fn load(ck: &dyn Source, p: &str, cfg: &Config, k: Kind, d: Device) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let mut gate_proj = linear(ck, format!("{p}.gate_proj"), i, h, k, d)?;
        let mut up_proj = linear(ck, format!("{p}.up_proj"), i, h, k, d)?;
        let gate_up = fuse_frozen(&mut [&mut gate_proj, &mut up_proj])?;
        Ok(Self {
            gate_proj,
            up_proj,
            down_proj: linear(ck, format!("{p}.down_proj"), h, i, k, d)?,
            gate_up,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let i = self.gate_proj.out_features();
        let gu = fused_forward(
            self.gate_up.as_ref(),
            &[&self.gate_proj, &self.up_proj],
            x,
            train,
        )?;
        let act = if fused::serves(&gu) {
            fused::gelu_gate(&gu)?
        } else {
            let [gate, up] = split2(&gu, [i, i], -1)?;
            gate.f_gelu("tanh")?.f_mul(&up)?
        };
        self.down_proj.forward(&act, train)
    }
}

impl Layer {
    fn load(
        ck: &dyn Source,
        i: usize,
        cfg: &Config,
        r: &Resolved,
        k: Kind,
        d: Device,
    ) -> Result<Self> {
        let p = format!("model.layers.{i}");
        let norm = |n: &str| {
            RmsNorm::load(
                ck,
                &format!("{p}.{n}"),
                cfg.hidden_size,
                cfg.rms_norm_eps,
                d,
            )
        };
        Ok(Self {
            self_attn: Attention::load(ck, &format!("{p}.self_attn"), cfg, r, k, d)?,
            mlp: Mlp::load(ck, &format!("{p}.mlp"), cfg, k, d)?,
            input_layernorm: norm("input_layernorm")?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
            pre_feedforward_layernorm: norm("pre_feedforward_layernorm")?,
            post_feedforward_layernorm: norm("post_feedforward_layernorm")?,
            sliding: r.sliding[i],
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        rope: (&Tensor, &Tensor),
        mode: &AttnMode,
        cache: Option<CacheWrite>,
        train: bool,
    ) -> Result<Tensor> {
        let a =
            self.self_attn
                .forward(&self.input_layernorm.forward(x)?, rope, mode, cache, train)?;
        let h = self.post_attention_layernorm.forward_add(&a, Some(x))?;
        let m = self
            .mlp
            .forward(&self.pre_feedforward_layernorm.forward(&h)?, train)?;
        self.post_feedforward_layernorm.forward_add(&m, Some(&h))
    }
}

/// A layer's KV cache, its index, and where this call's keys go: after the filled slots
/// (`None`), or at a device-side slot (a fixed-shape decode step).
type CacheWrite<'a> = (&'a mut KvCache, usize, Option<&'a Tensor>);

/// The inputs of one forward call.
pub struct Inputs<'a> {
    /// `[B, S]` int64 token ids.
    pub ids: &'a Tensor,
    /// `[B, S]` int64 RoPE positions (HF `position_ids`).
    pub positions: &'a Tensor,
    /// `[B, past + S]` bool, false at padding keys; `None` when nothing is padded. Right
    /// padding may also pass `None`: real positions only see earlier (real) keys, so their
    /// outputs are exact and SDPA keeps its causal fast path; only pad positions differ.
    pub key_valid: Option<&'a Tensor>,
}

impl Gemma3 {
    /// Load `config.json` + safetensors from an HF model directory, weights in `kind`.
    pub fn load(dir: &Path, kind: Kind, device: Device) -> Result<Self> {
        let cfg_file = dir.join("config.json");
        if !cfg_file.is_file() {
            return Err(ModelError::Config {
                file: cfg_file,
                message: "missing; point at an HF model directory (config.json, model.safetensors, tokenizer.json)".into(),
            });
        }
        let cfg = Config::from_file(&cfg_file)?;
        let ck = Checkpoint::open(dir)?;
        Self::from_source(cfg, &cfg_file, &ck, kind, device)
    }

    /// Build from any weight source (a checkpoint, or `RandomInit` for benchmarks).
    pub fn from_source(
        cfg: Config,
        cfg_file: &Path,
        ck: &dyn Source,
        kind: Kind,
        device: Device,
    ) -> Result<Self> {
        let r = cfg.resolve(cfg_file)?;
        let (v, h) = (cfg.vocab_size, cfg.hidden_size);
        let embed_tokens = ck.get("model.embed_tokens.weight", &[v, h], kind, device)?;
        let layers = (0..cfg.num_hidden_layers as usize)
            .map(|i| Layer::load(ck, i, &cfg, &r, kind, device))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(ck, "model.norm", h, cfg.rms_norm_eps, device)?;
        let lm_head = if cfg.tie_word_embeddings && !ck.contains("lm_head.weight") {
            None
        } else if ck.contains("lm_head.weight") {
            Some(ck.get("lm_head.weight", &[v, h], kind, device)?)
        } else {
            return Err(ModelError::MissingTensor {
                name: "lm_head.weight".into(),
                file: ck.origin(),
            });
        };
        let embed_scale = Tensor::f_from_slice(&[(h as f32).sqrt()])?
            .f_to_kind(kind)?
            .f_to_device(device)?
            .f_squeeze()?;
        Ok(Self {
            inv_freq_local: inv_freq(r.rope_local, cfg.head_dim, device)?,
            inv_freq_global: inv_freq(r.rope_global, cfg.head_dim, device)?,
            cfg,
            resolved: r,
            embed_tokens,
            embed_scale,
            layers,
            norm,
            lm_head,
            kind,
            device,
        })
    }

    /// The output embedding `[V, H]` (tied to the input embedding unless the checkpoint has
    /// its own `lm_head.weight`).
    pub fn lm_head_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }

    /// `cos, sin_signed: [B,S,1,D]` in the model dtype from fp32 angles (HF's `cat(f, f)`
    /// tables; `sin_signed` is `cat(-sin f, sin f)`, see `rope`).
    fn rope_tables(&self, inv: &Tensor, pos: &Tensor) -> Result<(Tensor, Tensor)> {
        let f = pos.f_to_kind(Kind::Float)?.f_unsqueeze(-1)?.f_mul(inv)?;
        let (c, sn) = (f.f_cos()?, f.f_sin()?);
        let cos = Tensor::f_cat(&[&c, &c], -1)?.f_unsqueeze(2)?;
        let sin = Tensor::f_cat(&[&sn.f_neg()?, &sn], -1)?.f_unsqueeze(2)?;
        Ok((cos.f_to_kind(self.kind)?, sin.f_to_kind(self.kind)?))
    }

    /// Hidden states after the final norm, `[B, S, H]`. With a cache, the new keys/values are
    /// appended to it.
    pub fn forward_hidden(
        &self,
        inp: &Inputs,
        mut cache: Option<&mut KvCache>,
        train: bool,
    ) -> Result<Tensor> {
        let (_b, s) = inp.ids.size2()?;
        let past = cache.as_ref().map_or(0, |c| c.len());
        if let Some(c) = cache.as_ref() {
            if past + s > c.capacity() {
                return Err(ModelError::Input(format!(
                    "KV cache holds {} positions; {} requested",
                    c.capacity(),
                    past + s
                )));
            }
        }
        let masks = Masks::new(past, s, self.cfg.sliding_window, inp.key_valid, self.device)?;
        let h = self.run_layers(
            inp.ids,
            inp.positions,
            &masks,
            cache.as_deref_mut(),
            None,
            train,
        )?;
        if let Some(c) = cache {
            c.advance(s);
        }
        Ok(h)
    }

    /// One decode step with fixed shapes: `ids, positions: [B, 1]`, keys/values written at
    /// the device-side `slot: [1]` int64, attention over the whole cache under
    /// `key_valid: [B, capacity]`. No host value is read, so the step can be captured in a
    /// CUDA graph and replayed with new `ids`/`positions`/`slot` contents. The cache's `len`
    /// does not move. Returns the final-normed hidden states `[B, 1, H]`.
    pub fn decode_at_slot(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        key_valid: &Tensor,
        slot: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let masks = Masks::at_slot(slot, key_valid, self.cfg.sliding_window)?;
        self.run_layers(ids, positions, &masks, Some(cache), Some(slot), false)
    }

    fn run_layers(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        masks: &Masks,
        mut cache: Option<&mut KvCache>,
        slot: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let mut x = Tensor::f_embedding(&self.embed_tokens, ids, -1, false, false)?
            .f_mul(&self.embed_scale)?;
        let local = self.rope_tables(&self.inv_freq_local, positions)?;
        let global = self.rope_tables(&self.inv_freq_global, positions)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let (mode, rt) = if layer.sliding {
                (&masks.sliding, (&local.0, &local.1))
            } else {
                (&masks.full, (&global.0, &global.1))
            };
            let c = cache.as_deref_mut().map(|c| (c, i, slot));
            x = layer.forward(&x, rt, mode, c, train)?;
        }
        self.norm.forward(&x)
    }

    /// Logits `[.., V]` in the model dtype for hidden states `[.., H]` (final soft-cap if the
    /// config has one; Gemma-3 has none).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let l = hidden.f_linear::<Tensor>(self.lm_head_weight(), None)?;
        match self.cfg.final_logit_softcapping {
            Some(c) if c > 0.0 => Ok(l.f_div_scalar(c)?.f_tanh()?.f_mul_scalar(c)?),
            _ => Ok(l),
        }
    }

    /// Full forward to logits `[B, S, V]`.
    pub fn forward(&self, inp: &Inputs) -> Result<Tensor> {
        let h = self.forward_hidden(inp, None, false)?;
        self.logits(&h)
    }

    /// All linear layers with their HF module names.
    pub fn linears_mut(&mut self) -> impl Iterator<Item = &mut Linear> {
        self.layers.iter_mut().flat_map(|l| {
            let a = &mut l.self_attn;
            let m = &mut l.mlp;
            [
                &mut a.q_proj,
                &mut a.k_proj,
                &mut a.v_proj,
                &mut a.o_proj,
                &mut m.gate_proj,
                &mut m.up_proj,
                &mut m.down_proj,
            ]
        })
    }

    pub fn linears(&self) -> impl Iterator<Item = &Linear> {
        self.layers.iter().flat_map(|l| {
            let a = &l.self_attn;
            let m = &l.mlp;
            [
                &a.q_proj,
                &a.k_proj,
                &a.v_proj,
                &a.o_proj,
                &m.gate_proj,
                &m.up_proj,
                &m.down_proj,
            ]
        })
    }

    /// An empty KV cache for `batch` rows and up to `capacity` positions.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> Result<KvCache> {
        KvCache::new(
            self.layers.len(),
            batch,
            self.cfg.num_key_value_heads,
            capacity,
            self.cfg.head_dim,
            self.kind,
            self.device,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_backend_under_t2s_sdpa_names_the_setting() {
        let invalid = || {
            tch::TchError::Torch("Invalid backend\nException raised from select_sdp_backend".into())
        };
        let named = attention_error_under(invalid(), "efficient").to_string();
        assert!(
            named.contains("T2S_SDPA=efficient") && named.contains("flash or math"),
            "{named}"
        );
        let unset = attention_error_under(invalid(), "").to_string();
        assert!(
            unset.contains("Invalid backend") && !unset.contains("T2S_SDPA"),
            "{unset}"
        );
        let other = attention_error_under(
            tch::TchError::Torch("CUDA out of memory".into()),
            "efficient",
        );
        assert!(!other.to_string().contains("T2S_SDPA"), "{other}");
    }
}
