//! What each fused op computes, with libtorch's unfused ops: the model's path where the
//! kernels do not serve, and the self-check's and the tests' reference.

use tch::{Kind, Tensor};

use crate::error::Result;

/// What [`lora_up`](super::lora_up) computes, with libtorch's ops (the model's unfused path): each adapter's
/// fp32 delta `u[c] · b[c]ᵀ`, side by side, added to `y` in fp32 and rounded once.
pub fn reference_lora_up(y: &Tensor, u: &Tensor, b: &Tensor, offsets: &[i64]) -> Result<Tensor> {
    let deltas = offsets
        .windows(2)
        .enumerate()
        .map(|(c, w)| {
            Ok(u.f_get(c as i64)?
                .f_linear::<Tensor>(&b.f_narrow(0, w[0], w[1] - w[0])?, None)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let delta = Tensor::f_cat(&deltas, -1)?.f_view(y.size().as_slice())?;
    Ok(y.f_add(&delta)?.f_to_kind(y.kind())?)
}

/// What [`lora_down`](super::lora_down) computes, with libtorch's ops: the dropped fp32 copies (`keep`, as in
/// [`reference_lora_dropout`], `[n, ...x.shape]`; `None` without dropout) times each `a[c]ᵀ`.
pub fn reference_lora_down(
    x: &Tensor,
    a: &Tensor,
    keep: Option<&Tensor>,
    p: f64,
) -> Result<Tensor> {
    let d = x.size().last().copied().unwrap_or(0);
    let n = a.size()[0];
    let rows = x.f_reshape([-1, d])?;
    let copies = match keep {
        Some(k) => reference_lora_dropout(&rows, &k.f_reshape([n, -1, d])?, p)?,
        None => {
            let r = rows.f_to_kind(Kind::Float)?.f_unsqueeze(0)?;
            let shape = [n, r.size()[1], d];
            r.f_expand(shape.as_slice(), false)?
        }
    };
    Ok(copies.f_bmm(&a.f_transpose(1, 2)?)?)
}

/// What [`lora_dropout`](super::lora_dropout) computes, with libtorch's ops, given the masks it drew (`keep`:
/// `[copies, ...x.shape]`, 1 where kept): `fp32(x) · keep · (1 / (1 − p))`.
pub fn reference_lora_dropout(x: &Tensor, keep: &Tensor, p: f64) -> Result<Tensor> {
    let scale = (1.0 / (1.0 - p)) as f32;
    Ok(x.f_to_kind(Kind::Float)?
        .f_unsqueeze(0)?
        .f_mul(&keep.f_to_kind(Kind::Float)?)?
        .f_mul_scalar(f64::from(scale))?)
}

/// What [`rms_norm`](super::rms_norm) computes, with libtorch's unfused ops (the model's path without the
/// fused kernels).
pub fn reference_rms_norm(
    x: &Tensor,
    weight: &Tensor,
    heads: i64,
    eps: f64,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let d = x.size().last().copied().unwrap_or(0);
    let w = if heads > 1 && weight.numel() as i64 == heads * d {
        weight.f_view([heads, d])?
    } else {
        weight.f_view([d])?
    };
    let y = x
        .f_to_kind(Kind::Float)?
        .f_rms_norm([d].as_slice(), None::<&Tensor>, eps)?
        .f_mul(&w)?
        .f_to_kind(x.kind())?;
    Ok(match residual {
        Some(r) => r.f_add(&y)?,
        None => y,
    })
}

/// What [`qk_norm_rope`](super::qk_norm_rope) computes, with libtorch's unfused ops (the model's path).
pub fn reference_qk_norm_rope(
    x: &Tensor,
    weight: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    heads: i64,
    eps: f64,
) -> Result<Tensor> {
    crate::gemma3::rope(&reference_rms_norm(x, weight, heads, eps, None)?, cos, sin)
}

/// What [`gelu_gate`](super::gelu_gate) computes, with libtorch's unfused ops.
pub fn reference_gelu_gate(gu: &Tensor) -> Result<Tensor> {
    let i = gu.size().last().copied().unwrap_or(0) / 2;
    let parts = gu.f_split(i, -1)?;
    Ok(parts[0].f_gelu("tanh")?.f_mul(&parts[1])?)
}
