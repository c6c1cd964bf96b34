//! Training building blocks: the causal-LM loss computed in chunks through the LM head only at
//! labelled positions, and AdamW matching `torch.optim.AdamW` with its state as tensors.
//!
//! The loss never materialises `[tokens, vocab]` logits for the whole batch, nor keeps any
//! logits for backward: each chunk's gradient w.r.t. the hidden states is computed right away
//! (softmax − one-hot, fp32 log-sum-exp) and handed to autograd through a surrogate term.

use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::gemma3::Gemma3;

pub const IGNORE: i64 = -100;

/// HF's causal shift: the target of position t is `labels[t + 1]`; the last position gets
/// `IGNORE`. `labels: [B, S]` int64.
pub fn shift_labels(labels: &Tensor) -> Result<Tensor> {
    let (b, s) = labels.size2()?;
    let tail = labels.f_narrow(1, 1, s - 1)?;
    let pad = Tensor::f_full([b, 1], IGNORE, (Kind::Int64, labels.device()))?;
    Ok(Tensor::f_cat(&[&tail, &pad], 1)?)
}

/// Default rows per chunk: about 2^28 logits (1 GiB in fp32).
pub fn default_chunk(vocab: i64) -> i64 {
    ((1i64 << 28) / vocab.max(1)).clamp(1, 8192)
}

/// Mean cross-entropy over positions whose target is not `IGNORE`.
///
/// `hidden: [B, S, H]` final-normed hidden states (attached to the autograd graph);
/// `targets: [B, S]` int64, already shifted (see `shift_labels`). Returns an fp32 scalar whose
/// value is the loss and whose backward sends the exact gradient into `hidden`.
pub fn chunked_ce(model: &Gemma3, hidden: &Tensor, targets: &Tensor, chunk: i64) -> Result<Tensor> {
    let h = hidden.size();
    let width = *h
        .last()
        .ok_or_else(|| ModelError::Input("empty hidden".into()))?;
    let flat_h = hidden.f_reshape([-1, width])?;
    let flat_t = targets.f_reshape([-1])?;
    let sel = flat_t.f_ne(IGNORE)?.f_nonzero()?.f_squeeze_dim(1)?;
    let n = sel.size()[0];
    if n == 0 {
        // No labelled token: zero loss, still connected to the graph.
        return Ok(flat_h.f_sum(Kind::Float)?.f_mul_scalar(0.0)?);
    }
    let hs = flat_h.f_index_select(0, &sel)?;
    let ts = flat_t.f_index_select(0, &sel)?;
    let w = model.lm_head_weight();
    let cap = model.cfg.final_logit_softcapping.filter(|c| *c > 0.0);
    let chunk = chunk.max(1);
    let (loss_sum, grad) = {
        let _g = tch::no_grad_guard();
        let hd = hs.f_detach()?;
        let mut loss_sum = Tensor::f_zeros([], (Kind::Float, hd.device()))?;
        let mut grads = Vec::new();
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let hc = hd.f_narrow(0, start, len)?;
            let tc = ts.f_narrow(0, start, len)?.f_unsqueeze(1)?;
            let z = hc.f_linear::<Tensor>(w, None)?;
            let (nll, g) = match cap {
                None => chunk_loss_and_grad(&z, &tc, w.kind())?,
                Some(c) => capped_chunk_loss_and_grad(&z, &tc, c, w.kind())?,
            };
            loss_sum = loss_sum.f_add(&nll)?;
            grads.push(g.f_matmul(w)?);
            start += len;
        }
        // d(mean CE)/dh = (softmax − onehot) W / n
        (loss_sum, Tensor::f_cat(&grads, 0)?.f_div_scalar(n as f64)?)
    };
    let loss = loss_sum.f_div_scalar(n as f64)?;
    // value: loss; gradient w.r.t. hs: `grad`.
    let s = hs.f_mul(&grad)?.f_sum(Kind::Float)?;
    Ok(s.f_sub(&s.f_detach()?)?.f_add(&loss)?)
}

/// Summed NLL (fp32 scalar) of one chunk of logits `z: [c, V]` (model dtype) at targets
/// `tc: [c, 1]`, and `softmax(z) − onehot` in `kind` for the gradient. Two passes over the
/// logits, each reading them once: `log_softmax` in fp32 for the loss (exact for any logit gap)
/// and `softmax` written straight in the weight dtype, which the gradient GEMM uses anyway.
fn chunk_loss_and_grad(z: &Tensor, tc: &Tensor, kind: Kind) -> Result<(Tensor, Tensor)> {
    let nll = z
        .f_log_softmax(-1, Kind::Float)?
        .f_gather(1, tc, false)?
        .f_sum(Kind::Float)?
        .f_neg()?;
    let mut g = z.f_softmax(-1, kind)?;
    let len = tc.size()[0];
    let _ = g.f_scatter_add_(1, tc, &Tensor::f_full([len, 1], -1.0, (kind, z.device()))?)?;
    Ok((nll, g))
}

/// The same with Gemma-2-style final soft-capping `c · tanh(z / c)` (chain rule through the
/// cap), in fp32.
fn capped_chunk_loss_and_grad(
    z: &Tensor,
    tc: &Tensor,
    c: f64,
    kind: Kind,
) -> Result<(Tensor, Tensor)> {
    let t = z.f_to_kind(Kind::Float)?.f_div_scalar(c)?.f_tanh()?;
    let logits = t.f_mul_scalar(c)?;
    let lse = logits.f_logsumexp([-1i64].as_slice(), true)?;
    let nll = lse
        .f_sub(&logits.f_gather(1, tc, false)?)?
        .f_sum(Kind::Float)?;
    let mut g = logits.f_sub(&lse)?.f_exp()?;
    let len = tc.size()[0];
    let _ = g.f_scatter_add_(
        1,
        tc,
        &Tensor::f_full([len, 1], -1.0, (Kind::Float, g.device()))?,
    )?;
    let g = g.f_mul(&t.f_square()?.f_neg()?.f_add_scalar(1.0)?)?;
    Ok((nll, g.f_to_kind(kind)?))
}

/// Reference loss through full logits and autograd (for tests and small models).
pub fn full_ce(model: &Gemma3, hidden: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = model.logits(hidden)?.f_to_kind(Kind::Float)?;
    let v = logits.size()[2];
    Ok(logits.f_reshape([-1, v])?.f_cross_entropy_loss::<Tensor>(
        &targets.f_reshape([-1])?,
        None,
        tch::Reduction::Mean,
        IGNORE,
        0.0,
    )?)
}

/// AdamW as `torch.optim.AdamW` (decoupled weight decay, bias correction, eps outside the
/// square root), over named trainable tensors of one dtype and device. The moments live in two
/// flat buffers, so a step is ~15 kernels plus one copy per parameter (not ~8 per parameter):
/// on a GPU with hundreds of LoRA tensors the launch overhead would otherwise rival the math.
/// State tensors can be saved and restored.
#[derive(Debug)]
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub step: i64,
    params: Vec<(String, Tensor)>,
    /// Flat first and second moments, parameters laid end to end in `params` order.
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

impl AdamW {
    /// torch defaults: betas (0.9, 0.999), eps 1e-8.
    pub fn new(params: Vec<(String, Tensor)>, lr: f64, weight_decay: f64) -> Result<Self> {
        let first = params
            .first()
            .ok_or_else(|| ModelError::Input("AdamW needs at least one parameter".into()))?;
        let (kind, dev) = (first.1.kind(), first.1.device());
        if let Some((n, _)) = params
            .iter()
            .find(|(_, p)| p.kind() != kind || p.device() != dev)
        {
            return Err(ModelError::Input(format!(
                "AdamW parameters must share one dtype and device; `{n}` differs"
            )));
        }
        let total: i64 = params.iter().map(|(_, p)| p.numel() as i64).sum();
        Ok(Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            exp_avg: Tensor::f_zeros([total], (kind, dev))?,
            exp_avg_sq: Tensor::f_zeros([total], (kind, dev))?,
            params,
        })
    }

    /// `(offset, numel)` of each parameter in the flat buffers.
    fn spans(&self) -> Vec<(i64, i64)> {
        let mut off = 0;
        self.params
            .iter()
            .map(|(_, p)| {
                let n = p.numel() as i64;
                off += n;
                (off - n, n)
            })
            .collect()
    }

    /// One update from the parameters' `.grad`. A parameter without a gradient is left alone
    /// (as torch skips it): then the step runs parameter by parameter.
    pub fn step(&mut self) -> Result<()> {
        let _g = tch::no_grad_guard();
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        let step_size = self.lr / bc1;
        let bc2_sqrt = bc2.sqrt();
        let spans = self.spans();
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).collect();
        let all = grads.iter().all(|g| g.defined());
        // (flat views of the moments, gradient, parameter) per update group.
        let groups: Vec<(Tensor, Tensor, Tensor, Tensor, Vec<usize>)> = if all {
            let flat = |ts: Vec<Tensor>| -> Result<Tensor> {
                let v = ts
                    .iter()
                    .map(|t| t.f_reshape([-1]))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Tensor::f_cat(&v, 0)?)
            };
            let p = flat(
                self.params
                    .iter()
                    .map(|(_, p)| p.f_detach())
                    .collect::<Result<_, _>>()?,
            )?;
            vec![(
                self.exp_avg.shallow_clone(),
                self.exp_avg_sq.shallow_clone(),
                flat(grads)?,
                p,
                (0..self.params.len()).collect(),
            )]
        } else {
            let mut out = Vec::new();
            for (i, g) in grads.into_iter().enumerate() {
                if g.defined() {
                    let (o, n) = spans[i];
                    out.push((
                        self.exp_avg.f_narrow(0, o, n)?,
                        self.exp_avg_sq.f_narrow(0, o, n)?,
                        g.f_reshape([-1])?,
                        self.params[i].1.f_detach()?.f_reshape([-1])?,
                        vec![i],
                    ));
                }
            }
            out
        };
        for (mut m, mut v, g, p, members) in groups {
            let _ = m.f_lerp_(&g, 1.0 - self.beta1)?;
            let _ = v.f_mul_scalar_(self.beta2)?;
            let _ = v.f_addcmul_(&g, &g.f_mul_scalar(1.0 - self.beta2)?)?;
            let denom = v.f_sqrt()?.f_div_scalar(bc2_sqrt)?.f_add_scalar(self.eps)?;
            let decayed = if self.weight_decay != 0.0 {
                p.f_mul_scalar(1.0 - self.lr * self.weight_decay)?
            } else {
                p
            };
            let new = decayed.f_sub(&m.f_div(&denom)?.f_mul_scalar(step_size)?)?;
            let mut off = 0;
            for i in members {
                let dst = &mut self.params[i].1;
                let n = dst.numel() as i64;
                dst.f_copy_(&new.f_narrow(0, off, n)?.f_view(dst.size().as_slice())?)?;
                off += n;
            }
        }
        Ok(())
    }

    /// Clear the gradients of all parameters.
    pub fn zero_grad(&mut self) {
        for (_, p) in self.params.iter_mut() {
            p.zero_grad();
        }
    }

    /// `{name}.exp_avg`, `{name}.exp_avg_sq` (shaped like the parameter) and `step` (int64),
    /// for checkpoints.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for ((n, p), (o, len)) in self.params.iter().zip(self.spans()) {
            for (suffix, buf) in [("exp_avg", &self.exp_avg), ("exp_avg_sq", &self.exp_avg_sq)] {
                let t = buf.f_narrow(0, o, len)?.f_view(p.size().as_slice())?;
                out.push((format!("{n}.{suffix}"), t));
            }
        }
        out.push(("step".into(), Tensor::f_from_slice(&[self.step])?));
        Ok(out)
    }

    /// Restore what `state` returned (names and shapes must match).
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let find = |k: &str| state.iter().find(|(n, _)| n == k).map(|(_, t)| t);
        let _g = tch::no_grad_guard();
        for ((n, p), (o, len)) in self.params.iter().zip(self.spans()) {
            for (suffix, buf) in [("exp_avg", &self.exp_avg), ("exp_avg_sq", &self.exp_avg_sq)] {
                let key = format!("{n}.{suffix}");
                let src = find(&key)
                    .ok_or_else(|| ModelError::Input(format!("optimizer state lacks `{key}`")))?;
                if src.size() != p.size() {
                    return Err(ModelError::Input(format!(
                        "optimizer state `{key}` has shape {:?}, the parameter {:?}",
                        src.size(),
                        p.size()
                    )));
                }
                buf.f_narrow(0, o, len)?.f_copy_(&src.f_reshape([-1])?)?;
            }
        }
        let step =
            find("step").ok_or_else(|| ModelError::Input("optimizer state lacks `step`".into()))?;
        self.step = step.f_int64_value(&[0])?;
        Ok(())
    }
}
