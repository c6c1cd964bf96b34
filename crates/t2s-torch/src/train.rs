//! Training building blocks: the causal-LM loss computed in chunks through the LM head only at
//! labelled positions (AdamW, the other block, lives in `adamw` and is re-exported here).
//!
//! The loss never materialises `[tokens, vocab]` logits for the whole batch, nor keeps any
//! logits for backward: each chunk's gradient w.r.t. the hidden states (and, when the head
//! trains, w.r.t. its weight) is computed right away (softmax − one-hot, fp32 log-sum-exp) and
//! handed to autograd through a surrogate term.

use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::fused;
use crate::gemma3::Gemma3;

pub use crate::adamw::AdamW;

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
/// `targets: [B, S]` int64, already shifted (see `shift_labels`), on the hidden states' device
/// or on the CPU (which spares a GPU a wait for the data-dependent selection). Returns an fp32 scalar whose
/// value is the loss and whose backward sends the exact gradient into `hidden`.
pub fn chunked_ce(model: &Gemma3, hidden: &Tensor, targets: &Tensor, chunk: i64) -> Result<Tensor> {
    let h = hidden.size();
    let width = *h
        .last()
        .ok_or_else(|| ModelError::Input("empty hidden".into()))?;
    let flat_h = hidden.f_reshape([-1, width])?;
    let flat_t = targets.f_reshape([-1])?;
    // The labelled positions. Finding them is a data-dependent shape: on the device it would
    // wait for the GPU to catch up; from host targets it is host work and two small uploads
    // that do not wait.
    let sel = flat_t.f_ne(IGNORE)?.f_nonzero()?.f_squeeze_dim(1)?;
    let n = sel.size()[0];
    if n == 0 {
        // No labelled token: zero loss, still connected to the graph.
        return Ok(flat_h.f_sum(Kind::Float)?.f_mul_scalar(0.0)?);
    }
    let ts = flat_t.f_index_select(0, &sel)?;
    let dev = flat_h.device();
    let (sel, ts) = if flat_t.device() == dev {
        (sel, ts)
    } else {
        (
            crate::device::upload(&sel, dev)?,
            crate::device::upload(&ts, dev)?,
        )
    };
    let hs = flat_h.f_index_select(0, &sel)?;
    let w = model.lm_head_weight();
    let cap = model.cfg.final_logit_softcapping.filter(|c| *c > 0.0);
    let chunk = chunk.max(1);
    // A trainable head (full fine-tuning: the tied embedding) also gets its gradient,
    // (softmax − onehot)ᵀ h / n summed over the chunks in fp32.
    let head_trains = w.requires_grad();
    let (loss_sum, grad, grad_w) = {
        let _g = tch::no_grad_guard();
        let hd = hs.f_detach()?;
        let wd = w.f_detach()?;
        let mut loss_sum = Tensor::f_zeros([], (Kind::Float, hd.device()))?;
        let mut grad_w = if head_trains {
            Some(Tensor::f_zeros(
                wd.size().as_slice(),
                (Kind::Float, wd.device()),
            )?)
        } else {
            None
        };
        let mut grads = Vec::new();
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let hc = hd.f_narrow(0, start, len)?;
            let tc = ts.f_narrow(0, start, len)?.f_unsqueeze(1)?;
            let z = hc.f_linear::<Tensor>(&wd, None)?;
            let (nll, g) = match cap {
                None => chunk_loss_and_grad(&z, &tc, wd.kind())?,
                Some(c) => capped_chunk_loss_and_grad(&z, &tc, c, wd.kind())?,
            };
            loss_sum = loss_sum.f_add(&nll)?;
            grads.push(g.f_matmul(&wd)?);
            if let Some(gw) = grad_w.as_mut() {
                let _ = gw.f_add_(&g.f_tr()?.f_mm(&hc)?)?;
            }
            start += len;
        }
        // d(mean CE)/dh = (softmax − onehot) W / n
        let grad = Tensor::f_cat(&grads, 0)?.f_div_scalar(n as f64)?;
        let grad_w = match grad_w {
            Some(gw) => Some(gw.f_div_scalar(n as f64)?.f_to_kind(wd.kind())?),
            None => None,
        };
        (loss_sum, grad, grad_w)
    };
    let loss = loss_sum.f_div_scalar(n as f64)?;
    // value: loss; gradient w.r.t. hs: `grad` (and w.r.t. a trainable head: `grad_w`).
    let mut s = hs.f_mul(&grad)?.f_sum(Kind::Float)?;
    if let Some(gw) = grad_w {
        s = s.f_add(&w.f_mul(&gw)?.f_sum(Kind::Float)?)?;
    }
    Ok(s.f_sub(&s.f_detach()?)?.f_add(&loss)?)
}

/// Summed NLL (fp32 scalar) of one chunk of logits `z: [c, V]` (model dtype) at targets
/// `tc: [c, 1]`, and `softmax(z) − onehot` in `kind` for the gradient. On a CUDA device with
/// the fused kernels, one kernel computes both and writes the gradient over `z` in place.
fn chunk_loss_and_grad(z: &Tensor, tc: &Tensor, kind: Kind) -> Result<(Tensor, Tensor)> {
    if z.kind() == kind && fused::serves(z) {
        let nll = fused::ce_rows(z, &tc.f_view([-1])?)?;
        return Ok((nll.f_sum(Kind::Float)?, z.shallow_clone()));
    }
    let (nll, g) = ce_rows_unfused(z, tc, kind)?;
    Ok((nll.f_sum(Kind::Float)?, g))
}

/// NLL per row (fp32 `[c]`) and `softmax(z) − onehot` in `kind`, with libtorch's ops: two
/// passes over the logits, each reading them once: `log_softmax` in fp32 for the loss (exact
/// for any logit gap) and `softmax` written straight in the weight dtype, which the gradient
/// GEMM uses anyway.
pub fn ce_rows_unfused(z: &Tensor, tc: &Tensor, kind: Kind) -> Result<(Tensor, Tensor)> {
    let nll = z
        .f_log_softmax(-1, Kind::Float)?
        .f_gather(1, tc, false)?
        .f_view([-1])?
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
