//! The fused ops: each a call into the shim's autograd Function (`csrc/fused.cpp`) on bf16
//! CUDA tensors; callers ask [`super::serves`] or [`super::serves_lora`] first.

use tch::{Device, Kind, Tensor};

#[cfg(not(t2s_shim))]
use super::ffi::no_shim;
#[cfg(t2s_shim)]
use super::ffi::{c as ffi, new_tensor, ptr};
use super::switches::{lora_matmul, LoraMatmul};
use crate::error::Result;

/// Gemma's RMSNorm of bf16 `x` over its last dim `D`, `(x · rsqrt(mean(x²) + eps)) · w` in
/// fp32, rounded to bf16, then `residual + y` in bf16 when a residual is given. `weight` is
/// fp32 `[D]`, or `[heads, D]` with `x: [..., heads, D]` (the q/k norms, where `x` may be a
/// strided view). Differentiable in `x` and `residual` (the weight is frozen). Call only where
/// [`serves`](super::serves) holds.
pub fn rms_norm(
    x: &Tensor,
    weight: &Tensor,
    heads: i64,
    eps: f64,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        let res = residual.map_or(std::ptr::null_mut(), ptr);
        // SAFETY: live tensor handles for the call (see `new_tensor`).
        new_tensor("fused RMSNorm", |out, e| unsafe {
            ffi::t2s_fused_rms_norm(ptr(x), ptr(weight), res, heads, eps, out, e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = (x, weight, heads, eps, residual);
        Err(no_shim("the fused RMSNorm"))
    }
}

/// The q/k norms then split-half RoPE: `rope(rms_norm(x) · w)` with the model's roundings,
/// `x: [..., heads, D]` bf16 (may be a strided view), `weight: [heads, D]` fp32, `cos`/`sin`
/// bf16 `[..., 1, D]` (one row per token; `sin` with rotate_half's sign folded in, as
/// `Gemma3`'s RoPE tables). Call only where [`serves`](super::serves) holds.
pub fn qk_norm_rope(
    x: &Tensor,
    weight: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    heads: i64,
    eps: f64,
) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        // SAFETY: live tensor handles for the call (see `new_tensor`).
        new_tensor("fused q/k norm + RoPE", |out, e| unsafe {
            ffi::t2s_fused_qk_norm_rope(ptr(x), ptr(weight), ptr(cos), ptr(sin), heads, eps, out, e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = (x, weight, cos, sin, heads, eps);
        Err(no_shim("the fused q/k norm + RoPE"))
    }
}

/// Cross-entropy rows of a chunk of logits `z: [rows, V]` (bf16, contiguous) at int64
/// `targets: [rows]` on its device: returns the fp32 NLL per row and overwrites `z` with
/// `softmax(z) − onehot` in bf16 (the gradient of the summed NLL w.r.t. the logits). Not
/// differentiable: for the chunked loss, which hands its gradient to autograd itself. Call
/// only where [`serves`](super::serves) holds.
pub fn ce_rows(z: &Tensor, targets: &Tensor) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        // SAFETY: live tensor handles for the call (see `new_tensor`); the kernel writes into
        // `z`'s storage, which the caller owns and nothing else reads meanwhile (a fresh
        // logits chunk).
        new_tensor("fused cross-entropy", |out, e| unsafe {
            ffi::t2s_fused_ce_rows(ptr(z), ptr(targets), out, e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = (z, targets);
        Err(no_shim("the fused cross-entropy"))
    }
}

/// `gelu_tanh(gu[..., :I]) · gu[..., I:]` of the fused gate/up projection `gu: [..., 2I]`
/// (bf16), with the unfused program's roundings. Call only where [`serves`](super::serves) holds.
pub fn gelu_gate(gu: &Tensor) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        // SAFETY: a live tensor handle for the call (see `new_tensor`).
        new_tensor("fused GELU gate", |out, e| unsafe {
            ffi::t2s_fused_gelu_gate(ptr(gu), out, e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = gu;
        Err(no_shim("the fused GELU gate"))
    }
}

/// LoRA dropout of bf16 `x` into `copies` fp32 copies, `[copies, ...x.shape]`: each copy
/// `fp32(x) · mask / (1 − p)` with its own mask (every adapter sharing an input draws its
/// own, as PEFT's separate Dropout modules do). The masks come from a counter-based hash of a
/// seed drawn here from libtorch's CPU generator (so a seeded step draws the same masks) and
/// are regenerated in the backward, which returns the masked sum over the copies in bf16.
/// Call only where [`serves`](super::serves) holds.
pub fn lora_dropout(x: &Tensor, copies: i64, p: f64) -> Result<Tensor> {
    let seed = Tensor::f_randint(i64::MAX, [1], (Kind::Int64, Device::Cpu))?.f_int64_value(&[0])?;
    lora_dropout_seeded(x, copies, p, seed)
}

/// [`lora_dropout`] with the seed given.
pub fn lora_dropout_seeded(x: &Tensor, copies: i64, p: f64, seed: i64) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        // SAFETY: a live tensor handle for the call (see `new_tensor`).
        new_tensor("fused LoRA dropout", |out, e| unsafe {
            ffi::t2s_fused_lora_dropout(ptr(x), copies, p, seed, out, e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = (x, copies, p, seed);
        Err(no_shim("the fused LoRA dropout"))
    }
}

/// The largest `n · r` (adapters sharing an input × rank) [`lora_down`] and [`lora_up`] take.
pub const LORA_MAX_RANKS: i64 = 128;
/// The most adapters [`lora_up`] takes side by side in one output.
pub const LORA_UP_MAX_PARTS: usize = 4;

/// The LoRA down-projection of bf16 `x` `[..., D]` through `n` adapters' fp32 `a` `[n, r, D]`:
/// `[n, T, r]` fp32 (`T` the rows of `x`), copy `c` being `(fp32(x) · mask_c / (1 − p)) ·
/// a[c]ᵀ` with the masks [`lora_dropout`] would draw from the same seed (`p = 0`: no dropout
/// and no draw). [`lora_matmul`] picks how: t2s's kernels read straight from `x` (no copy
/// of it is made, kept for the backward or read back); `gemm` runs cuBLAS on tensor cores over
/// bf16 pieces of the fp32 operands, to fp32 accuracy, with a masked bf16 copy of `x` per
/// adapter where there is dropout (made again in the backward, not kept). Call only where
/// [`serves_lora`](super::serves_lora) holds and `n · r ≤` [`LORA_MAX_RANKS`].
pub fn lora_down(x: &Tensor, a: &Tensor, p: f64) -> Result<Tensor> {
    let seed = if p > 0.0 {
        Tensor::f_randint(i64::MAX, [1], (Kind::Int64, Device::Cpu))?.f_int64_value(&[0])?
    } else {
        0
    };
    lora_down_seeded(x, a, p, seed)
}

/// [`lora_down`] with the seed given.
pub fn lora_down_seeded(x: &Tensor, a: &Tensor, p: f64, seed: i64) -> Result<Tensor> {
    lora_down_with(lora_matmul(), x, a, p, seed)
}

/// [`lora_down`] with the seed and the mode given (`gemm` takes any `n · r`).
pub fn lora_down_with(
    mode: LoraMatmul,
    x: &Tensor,
    a: &Tensor,
    p: f64,
    seed: i64,
) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        let gemm = i32::from(mode == LoraMatmul::Gemm);
        // SAFETY: live tensor handles for the call (see `new_tensor`).
        new_tensor("fused LoRA down-projection", |out, e| unsafe {
            ffi::t2s_fused_lora_down(ptr(x), ptr(a), p, seed, gemm, out, e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = (mode, x, a, p, seed);
        Err(no_shim("the fused LoRA down-projection"))
    }
}

/// The `gemm` mode of [`lora_down`] with the dropout masks given as bits `[n, T, ceil(D /
/// 32)]` (int32, bit `d % 32` of word `d / 32` set where copy `c` keeps `(t, d)`; ignored for
/// `p = 0`), on any device: on the CPU the products run in fp32 on the same bf16 pieces and
/// the masks through libtorch's ops, so the tests check its arithmetic without a GPU.
pub fn lora_down_gemm_with_bits(x: &Tensor, a: &Tensor, bits: &Tensor, p: f64) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        // SAFETY: live tensor handles for the call (see `new_tensor`).
        new_tensor("LoRA down-projection (gemm)", |out, e| unsafe {
            ffi::t2s_fused_lora_down_gemm_bits(ptr(x), ptr(a), ptr(bits), p, out, e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = (x, a, bits, p);
        Err(no_shim("the LoRA down-projection (gemm)"))
    }
}

/// The LoRA up-projection into bf16 `y` `[..., O]`: `bf16(fp32(y) + u[c] · b[c]ᵀ)` over the
/// columns `offsets[c]..offsets[c + 1]` of adapter `c`, for fp32 `u` `[n, T, r]` (the scaled
/// rank activations, `T` the rows of `y`) and `b` `[O, r]` (the adapters' B matrices
/// stacked). PEFT's `result + lora(x)` in fp32 and cast back, without the fp32 deltas; the
/// backward reads the bf16 gradient as it is. Call only where [`serves_lora`](super::serves_lora) holds, with at
/// most [`LORA_UP_MAX_PARTS`] adapters, `n · r ≤` [`LORA_MAX_RANKS`] and offsets that are
/// multiples of 4.
pub fn lora_up(y: &Tensor, u: &Tensor, b: &Tensor, offsets: &[i64]) -> Result<Tensor> {
    lora_up_with(lora_matmul(), y, u, b, offsets)
}

/// [`lora_up`] with the mode given: `gemm` takes the gradients as tensor-core GEMMs over bf16
/// pieces (the forward, one pass over the output, is the kernel either way), and runs on the
/// CPU too (its forward there with libtorch's ops), so the tests check its arithmetic.
pub fn lora_up_with(
    mode: LoraMatmul,
    y: &Tensor,
    u: &Tensor,
    b: &Tensor,
    offsets: &[i64],
) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        let gemm = i32::from(mode == LoraMatmul::Gemm);
        // SAFETY: live tensor handles and a slice of `offsets.len()` values for the call.
        new_tensor("fused LoRA up-projection", |out, e| unsafe {
            ffi::t2s_fused_lora_up(
                ptr(y),
                ptr(u),
                ptr(b),
                offsets.as_ptr(),
                offsets.len() as i64,
                gemm,
                out,
                e,
            )
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = (mode, y, u, b, offsets);
        Err(no_shim("the fused LoRA up-projection"))
    }
}
