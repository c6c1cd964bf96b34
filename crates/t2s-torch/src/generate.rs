//! Batched generation with a KV cache: left-padded prefill (HF position ids
//! `cumsum(mask) - 1`), logits only for the last position, greedy or seeded sampling
//! (temperature → top-k → top-p, as HF's warpers), stop tokens, max new tokens. Decode steps
//! run either with shapes that follow the batch (finished rows dropped from the batch and the
//! cache at once) or with fixed shapes, which on CUDA are captured once per batch as a CUDA
//! graph and replayed (see `Decoder`).

use tch::{Device, Kind, Tensor};

use crate::cache::KvCache;
use crate::cuda_graph::{self, CudaGraph};
use crate::error::{ModelError, Result};
use crate::gemma3::{Gemma3, Inputs};

#[derive(Debug, Clone)]
pub struct Sampling {
    pub greedy: bool,
    pub temperature: f64,
    /// 0 = off.
    pub top_k: i64,
    /// 1.0 = off.
    pub top_p: f64,
}

impl Sampling {
    pub fn greedy() -> Self {
        Self {
            greedy: true,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        }
    }
}

/// How the decode steps after the prefill run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decoder {
    /// `Graph` where this build can capture CUDA graphs on a CUDA model, else `Dynamic`.
    #[default]
    Auto,
    /// Attend over the filled slots only and drop finished rows (and their cache) at once:
    /// the least work, shapes change every step. The CPU default.
    Dynamic,
    /// Fixed shapes: each step writes at a device-side slot and attends over the whole cache
    /// under a mask; finished rows ride along. The same work as `Graph`, launched op by op.
    Static,
    /// `Static`, captured once per batch as a CUDA graph and replayed: one launch per step
    /// instead of ~70 per layer. Falls back to `Static` if the capture fails.
    Graph,
}

impl Decoder {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "" | "auto" => Self::Auto,
            "dynamic" => Self::Dynamic,
            "static" => Self::Static,
            "graph" | "cuda-graph" => Self::Graph,
            o => {
                return Err(ModelError::Input(format!(
                    "decoder `{o}`: expected auto, dynamic, static or graph"
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Dynamic => "dynamic",
            Self::Static => "static",
            Self::Graph => "graph",
        }
    }

    /// What `Auto` means on `device`; a `Graph` request without graph support is an error.
    pub fn resolve(self, device: Device) -> Result<Self> {
        let graphs = device.is_cuda() && cuda_graph::available();
        match self {
            Self::Auto if graphs => Ok(Self::Graph),
            Self::Auto => Ok(Self::Dynamic),
            Self::Graph if !graphs => Err(ModelError::Input(format!(
                "decoder `graph` needs a CUDA model and a worker built with CUDA graph support (model on {device:?}, support built: {})",
                cfg!(t2s_shim)
            ))),
            d => Ok(d),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub max_new_tokens: i64,
    pub stop_ids: Vec<i64>,
    pub pad_id: i64,
    pub sampling: Sampling,
    pub decoder: Decoder,
}

/// One finished row: the new tokens (the stop token included when one ended it).
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub tokens: Vec<i64>,
    pub stopped: bool,
}

/// The rows, and how they were decoded.
#[derive(Debug)]
pub struct GenReport {
    pub rows: Vec<Generated>,
    /// The decoder that ran (never `Auto`).
    pub decoder: Decoder,
    /// Why a `Graph` decode fell back to `Static`, if it did.
    pub graph_fallback: Option<String>,
}

/// Pick the next token per row from `logits: [B, V]` (fp32).
pub fn select(logits: &Tensor, s: &Sampling) -> Result<Tensor> {
    if s.greedy || s.temperature <= 0.0 {
        return Ok(logits.f_argmax(-1, false)?);
    }
    let mut l = logits.f_div_scalar(s.temperature)?;
    let v = l.size()[1];
    if s.top_k > 0 && s.top_k < v {
        let (top, _) = l.f_topk(s.top_k, -1, true, true)?;
        let kth = top.f_narrow(1, s.top_k - 1, 1)?;
        l = l.f_masked_fill(&l.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?;
    }
    if s.top_p < 1.0 {
        // HF TopPLogitsWarper: sort ascending, drop the tokens whose cumulative probability
        // stays <= 1 - top_p, always keep the most likely one.
        let (sorted, idx) = l.f_sort(-1, false)?;
        let cum = sorted
            .f_softmax(-1, Kind::Float)?
            .f_cumsum(-1, Kind::Float)?;
        let remove = cum.f_le(1.0 - s.top_p)?;
        let remove =
            remove.f_index_fill(1, &Tensor::from_slice(&[v - 1]).f_to_device(l.device())?, 0)?;
        let remove = remove.f_scatter(1, &idx, &remove)?;
        l = l.f_masked_fill(&remove, f64::NEG_INFINITY)?;
    }
    let p = l.f_softmax(-1, Kind::Float)?;
    Ok(p.f_multinomial(1, false)?.f_squeeze_dim(1)?)
}

/// Generate for each prompt (token ids, already including BOS). Rows are returned in prompt
/// order. The model should have its LoRA merged for speed (not required).
pub fn generate(model: &Gemma3, prompts: &[Vec<i64>], opt: &GenOptions) -> Result<Vec<Generated>> {
    Ok(generate_report(model, prompts, opt)?.rows)
}

/// The batch after the prefill: everything a decoder needs.
struct Prefilled {
    cache: KvCache,
    /// `[B, V]` fp32 logits of the last prompt position.
    logits: Tensor,
    /// `[B, 1]` RoPE position of the last token fed.
    last_pos: Tensor,
    /// `[B, capacity]` false at left padding; `None` when no prompt is padded.
    key_valid: Option<Tensor>,
    /// Slots filled by the prompt (the longest prompt's length).
    prompt_slots: i64,
}

/// `generate`, also saying which decoder ran.
pub fn generate_report(
    model: &Gemma3,
    prompts: &[Vec<i64>],
    opt: &GenOptions,
) -> Result<GenReport> {
    let _g = tch::no_grad_guard();
    let decoder = opt.decoder.resolve(model.device)?;
    if prompts.is_empty() {
        return Ok(GenReport {
            rows: Vec::new(),
            decoder,
            graph_fallback: None,
        });
    }
    let pre = prefill(model, prompts, opt)?;
    let mut out = vec![
        Generated {
            tokens: Vec::new(),
            stopped: false,
        };
        prompts.len()
    ];
    let mut report = GenReport {
        rows: Vec::new(),
        decoder,
        graph_fallback: None,
    };
    match decoder {
        Decoder::Dynamic | Decoder::Auto => decode_dynamic(model, pre, opt, &mut out)?,
        Decoder::Static => {
            decode_fixed(model, pre, opt, false, &mut out)?;
        }
        Decoder::Graph => {
            report.graph_fallback = decode_fixed(model, pre, opt, true, &mut out)?;
            if report.graph_fallback.is_some() {
                report.decoder = Decoder::Static;
            }
        }
    }
    report.rows = out;
    Ok(report)
}

/// Validate the prompts, left-pad them (HF position ids `cumsum(mask) - 1`), and run the
/// prompt through the model into a cache sized for the longest prompt plus the new tokens.
fn prefill(model: &Gemma3, prompts: &[Vec<i64>], opt: &GenOptions) -> Result<Prefilled> {
    let dev = model.device;
    let b = prompts.len() as i64;
    if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
        return Err(ModelError::Input(format!("prompt {i} is empty")));
    }
    let lmax = prompts.iter().map(|p| p.len()).max().unwrap_or(0) as i64;
    let max_pos = model.cfg.max_position_embeddings;
    if lmax + opt.max_new_tokens > max_pos {
        return Err(ModelError::Input(format!(
            "prompt of {lmax} tokens + {} new tokens exceeds the model's context of {max_pos} positions (max_position_embeddings)",
            opt.max_new_tokens
        )));
    }
    let vocab = model.cfg.vocab_size;
    if let Some(bad) = prompts.iter().flatten().find(|&&t| t < 0 || t >= vocab) {
        return Err(ModelError::Input(format!(
            "token id {bad} is outside the model's vocabulary of {vocab}; tokenizer and model do not match"
        )));
    }
    let padded = prompts.iter().any(|p| p.len() as i64 != lmax);
    let mut ids = Vec::with_capacity((b * lmax) as usize);
    let mut mask = Vec::with_capacity((b * lmax) as usize);
    for p in prompts {
        let pad = lmax as usize - p.len();
        ids.extend(std::iter::repeat_n(opt.pad_id, pad).chain(p.iter().copied()));
        mask.extend(std::iter::repeat_n(false, pad).chain(std::iter::repeat_n(true, p.len())));
    }
    let ids = Tensor::f_from_slice(&ids)?
        .f_view([b, lmax])?
        .f_to_device(dev)?;
    let mask = Tensor::f_from_slice(&mask)?
        .f_view([b, lmax])?
        .f_to_device(dev)?;
    let positions = mask
        .f_to_kind(Kind::Int64)?
        .f_cumsum(1, Kind::Int64)?
        .f_sub_scalar(1)?
        .f_clamp_min(0)?;
    let cap = lmax + opt.max_new_tokens;
    // Slots after the prompt are always real tokens.
    let key_valid = if padded {
        Some(Tensor::f_cat(
            &[
                mask,
                Tensor::f_ones([b, opt.max_new_tokens], (Kind::Bool, dev))?,
            ],
            1,
        )?)
    } else {
        None
    };
    let mut cache = model.new_cache(b, cap)?;
    let h = model.forward_hidden(
        &Inputs {
            ids: &ids,
            positions: &positions,
            key_valid: key_valid
                .as_ref()
                .map(|k| k.f_narrow(1, 0, lmax))
                .transpose()?
                .as_ref(),
        },
        Some(&mut cache),
        false,
    )?;
    let logits = model
        .logits(&h.f_narrow(1, lmax - 1, 1)?.f_squeeze_dim(1)?)?
        .f_to_kind(Kind::Float)?;
    Ok(Prefilled {
        cache,
        logits,
        last_pos: positions.f_narrow(1, lmax - 1, 1)?,
        key_valid,
        prompt_slots: lmax,
    })
}

/// Record one step's tokens for the rows still running; returns the batch indices of the rows
/// that go on.
fn record(
    next: &Tensor,
    rows: &[usize],
    running: impl Fn(usize) -> bool,
    opt: &GenOptions,
    out: &mut [Generated],
) -> Result<Vec<i64>> {
    let host: Vec<i64> = Vec::<i64>::try_from(&next.f_to_device(Device::Cpu)?)?;
    let mut keep = Vec::with_capacity(rows.len());
    for (j, (&row, &tok)) in rows.iter().zip(&host).enumerate() {
        if !running(row) {
            continue;
        }
        out[row].tokens.push(tok);
        if opt.stop_ids.contains(&tok) {
            out[row].stopped = true;
        } else {
            keep.push(j as i64);
        }
    }
    Ok(keep)
}

/// Decode attending over the filled slots only; finished rows leave the batch at once.
fn decode_dynamic(
    model: &Gemma3,
    pre: Prefilled,
    opt: &GenOptions,
    out: &mut [Generated],
) -> Result<()> {
    let dev = model.device;
    let Prefilled {
        mut cache,
        mut logits,
        mut last_pos,
        mut key_valid,
        ..
    } = pre;
    let mut rows: Vec<usize> = (0..out.len()).collect();
    for step in 0..opt.max_new_tokens {
        let next = select(&logits, &opt.sampling)?;
        let keep = record(&next, &rows, |_| true, opt, out)?;
        if keep.is_empty() || step + 1 == opt.max_new_tokens {
            break;
        }
        let mut next = next.f_unsqueeze(1)?;
        if keep.len() < rows.len() {
            let idx = Tensor::f_from_slice(&keep)?.f_to_device(dev)?;
            cache.select_rows(&idx)?;
            next = next.f_index_select(0, &idx)?;
            last_pos = last_pos.f_index_select(0, &idx)?;
            key_valid = key_valid.map(|k| k.f_index_select(0, &idx)).transpose()?;
            rows = keep.iter().map(|&j| rows[j as usize]).collect();
        }
        last_pos = last_pos.f_add_scalar(1)?;
        let kv = key_valid
            .as_ref()
            .map(|k| k.f_narrow(1, 0, cache.len() + 1))
            .transpose()?;
        let h = model.forward_hidden(
            &Inputs {
                ids: &next,
                positions: &last_pos,
                key_valid: kv.as_ref(),
            },
            Some(&mut cache),
            false,
        )?;
        logits = model.logits(&h.f_squeeze_dim(1)?)?.f_to_kind(Kind::Float)?;
    }
    Ok(())
}

/// Decode with fixed shapes (`Gemma3::decode_at_slot`): the step's inputs live in buffers
/// updated in place, so with `graph` the step is captured once and replayed. Finished rows
/// keep being computed and are ignored. Returns why the graph was not used, if it failed.
fn decode_fixed(
    model: &Gemma3,
    pre: Prefilled,
    opt: &GenOptions,
    graph: bool,
    out: &mut [Generated],
) -> Result<Option<String>> {
    let dev = model.device;
    let b = out.len() as i64;
    let Prefilled {
        mut cache,
        mut logits,
        last_pos,
        key_valid,
        prompt_slots,
    } = pre;
    let key_valid = match key_valid {
        Some(k) => k,
        None => Tensor::f_ones([b, cache.capacity()], (Kind::Bool, dev))?,
    };
    let ids = Tensor::f_zeros([b, 1], (Kind::Int64, dev))?;
    let mut positions = Tensor::f_zeros([b, 1], (Kind::Int64, dev))?;
    positions.f_copy_(&last_pos)?;
    let slot = Tensor::f_full([1], prompt_slots - 1, (Kind::Int64, dev))?;
    let step_once = |cache: &mut KvCache| -> Result<Tensor> {
        let h = model.decode_at_slot(&ids, &positions, &key_valid, &slot, cache)?;
        Ok(model.logits(&h.f_squeeze_dim(1)?)?.f_to_kind(Kind::Float)?)
    };
    // Handles sharing the buffers' storage, for the in-place updates between steps.
    let (mut ids_in, mut positions_in, mut slot_in) = (
        ids.shallow_clone(),
        positions.shallow_clone(),
        slot.shallow_clone(),
    );
    let mut captured: Option<(CudaGraph, Tensor)> = None;
    let mut fallback = None;
    let mut want_graph = graph;
    let rows: Vec<usize> = (0..out.len()).collect();
    let mut running = vec![true; out.len()];
    for step in 0..opt.max_new_tokens {
        let next = select(&logits, &opt.sampling)?;
        let keep = record(&next, &rows, |r| running[r], opt, out)?;
        running = vec![false; out.len()];
        for &j in &keep {
            running[j as usize] = true;
        }
        if keep.is_empty() || step + 1 == opt.max_new_tokens {
            break;
        }
        ids_in.f_copy_(&next.f_unsqueeze(1)?)?;
        let _ = positions_in.f_add_scalar_(1)?;
        let _ = slot_in.f_add_scalar_(1)?;
        if want_graph && captured.is_none() {
            let index = match dev {
                Device::Cuda(i) => i,
                _ => 0,
            };
            match CudaGraph::capture(index, || step_once(&mut cache)) {
                Ok(g) => captured = Some(g),
                Err(e) => {
                    // A worker log event (the worker has no tracing subscriber); the result
                    // also reports it as `graph_fallback`.
                    crate::events::Events.log(
                        "warn",
                        format!("CUDA graph capture failed, decoding op by op: {e}"),
                    );
                    fallback = Some(e.to_string());
                    want_graph = false;
                }
            }
        }
        logits = match &captured {
            Some((g, out_logits)) => {
                g.replay()?;
                out_logits.shallow_clone()
            }
            None => step_once(&mut cache)?,
        };
    }
    Ok(fallback)
}
