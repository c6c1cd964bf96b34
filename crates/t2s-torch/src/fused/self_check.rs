//! The kernels against libtorch's unfused ops on a device, before they serve it: outputs and
//! gradients on fixed input patterns.

use tch::{Device, Kind, Tensor};

use super::ops::{
    ce_rows, gelu_gate, lora_down_seeded, lora_dropout_seeded, lora_up, qk_norm_rope, rms_norm,
};
use super::reference::*;
use crate::error::{ModelError, Result};

/// A fixed, irregular pattern of roughly unit scale, `sin(0.7·i + seed)·(1 + 0.5·cos(1.3·i))`
/// over the elements in order: input for the self-check that draws nothing from the generator.
fn pattern(shape: impl Into<Vec<i64>>, seed: i64, opts: (Kind, Device)) -> Result<Tensor> {
    let shape: Vec<i64> = shape.into();
    let n: i64 = shape.iter().product();
    let i = Tensor::f_arange(n, (Kind::Float, opts.1))?;
    let v = i
        .f_mul_scalar(0.7)?
        .f_add_scalar(seed as f64)?
        .f_sin()?
        .f_mul(
            &i.f_mul_scalar(1.3)?
                .f_cos()?
                .f_mul_scalar(0.5)?
                .f_add_scalar(1.0)?,
        )?;
    Ok(v.f_reshape(shape.as_slice())?.f_to_kind(opts.0)?)
}

/// Largest |a − b| relative to the larger of 1 and max |b|.
fn relative_gap(a: &Tensor, b: &Tensor) -> Result<f64> {
    let (a, b) = (a.f_to_kind(Kind::Float)?, b.f_to_kind(Kind::Float)?);
    let gap = a.f_sub(&b)?.f_abs()?.f_max()?.f_double_value(&[])?;
    let scale = b.f_abs()?.f_max()?.f_double_value(&[])?.max(1.0);
    Ok(gap / scale)
}

/// Outputs and input gradients of `fused` and `reference` on the same inputs, compared: each
/// within `tol` of the reference's magnitude (bf16 rounding may differ by one unit, 2^-8,
/// where fp32 sums are taken in another order).
fn compare(
    what: &str,
    inputs: &[&Tensor],
    fused: &dyn Fn(&[Tensor]) -> Result<Tensor>,
    reference: &dyn Fn(&[Tensor]) -> Result<Tensor>,
    tol: f64,
) -> Result<()> {
    let run = |f: &dyn Fn(&[Tensor]) -> Result<Tensor>| -> Result<(Tensor, Vec<Tensor>)> {
        let leaves: Vec<Tensor> = inputs
            .iter()
            .map(|t| Ok(t.f_detach()?.f_set_requires_grad(true)?))
            .collect::<Result<_>>()?;
        let y = f(&leaves)?;
        let up = Tensor::f_ones_like(&y)?
            .f_mul_scalar(0.5)?
            .f_add(&y.f_detach()?)?;
        let loss = y
            .f_to_kind(Kind::Float)?
            .f_mul(&up.f_to_kind(Kind::Float)?)?;
        let grads = Tensor::f_run_backward(&[loss.f_sum(Kind::Float)?], &leaves, false, false)?;
        Ok((y.f_detach()?, grads))
    };
    let (yf, gf) = run(fused)?;
    let (yr, gr) = run(reference)?;
    let mut worst = relative_gap(&yf, &yr)?;
    for (a, b) in gf.iter().zip(&gr) {
        worst = worst.max(relative_gap(a, b)?);
    }
    if worst.is_finite() && worst <= tol {
        Ok(())
    } else {
        Err(ModelError::Input(format!(
            "self-check of the fused {what}: differs from libtorch's ops by {worst:.3e} (limit {tol:.1e})"
        )))
    }
}

/// The fused kernels against libtorch's unfused ops on small inputs, outputs and gradients: a
/// hidden-size norm with a residual, per-head norms of a strided view, q/k norms + RoPE, the
/// cross-entropy and the gate. The inputs are fixed patterns, not random draws: the check must
/// not move libtorch's generator (a training step seeds it, then draws its dropout masks).
pub fn self_check(dev: Device) -> Result<()> {
    const TOL: f64 = 2e-2;
    let opts = (Kind::BFloat16, dev);
    let eps = 1e-6;
    let x = pattern([3, 5, 96], 1, opts)?;
    let res = pattern([3, 5, 96], 2, opts)?;
    let w = pattern([96], 3, (Kind::Float, dev))?
        .f_mul_scalar(0.1)?
        .f_add_scalar(1.0)?;
    compare(
        "RMSNorm + residual",
        &[&x, &res],
        &|t| rms_norm(&t[0], &w, 1, eps, Some(&t[1])),
        &|t| reference_rms_norm(&t[0], &w, 1, eps, Some(&t[1])),
        TOL,
    )?;
    // q/k heads of a fused projection: [B, S, 6, D] whose first 5 heads are normalised.
    let qkv = pattern([2, 3, 6, 64], 4, opts)?;
    let wh = pattern([5, 64], 5, (Kind::Float, dev))?
        .f_mul_scalar(0.1)?
        .f_add_scalar(1.0)?;
    compare(
        "per-head RMSNorm",
        &[&qkv],
        &|t| rms_norm(&t[0].f_narrow(2, 0, 5)?, &wh, 5, eps, None),
        &|t| reference_rms_norm(&t[0].f_narrow(2, 0, 5)?, &wh, 5, eps, None),
        TOL,
    )?;
    let (cos, sin) = (
        pattern([2, 3, 1, 64], 6, opts)?,
        pattern([2, 3, 1, 64], 7, opts)?,
    );
    compare(
        "q/k norm + RoPE",
        &[&qkv],
        &|t| qk_norm_rope(&t[0].f_narrow(2, 0, 5)?, &wh, &cos, &sin, 5, eps),
        &|t| reference_qk_norm_rope(&t[0].f_narrow(2, 0, 5)?, &wh, &cos, &sin, 5, eps),
        TOL,
    )?;
    // Cross-entropy rows (no autograd: outputs compared, NLL and the in-place gradient).
    let z = pattern([5, 300], 8, opts)?.f_mul_scalar(3.0)?;
    let t = Tensor::f_from_slice(&[0i64, 299, 17, 150, 3])?.f_to_device(dev)?;
    let (nll_ref, g_ref) = crate::train::ce_rows_unfused(&z, &t.f_view([-1, 1])?, Kind::BFloat16)?;
    let zf = z.f_detach_copy()?;
    let nll = ce_rows(&zf, &t)?;
    let gap = relative_gap(&nll, &nll_ref)?.max(relative_gap(&zf, &g_ref)?);
    if !(gap.is_finite() && gap <= TOL) {
        return Err(ModelError::Input(format!(
            "self-check of the fused cross-entropy: differs from libtorch's ops by {gap:.3e}"
        )));
    }
    let gu = pattern([2, 3, 2 * 80], 9, opts)?;
    compare(
        "GELU gate",
        &[&gu],
        &|t| gelu_gate(&t[0]),
        &|t| reference_gelu_gate(&t[0]),
        TOL,
    )?;
    check_lora_dropout(dev)
}

/// The fused LoRA projections against libtorch's ops, outputs and gradients, over shapes that
/// leave partial tiles and splits everywhere: the down-projection with dropout (the masks read
/// off the fused dropout, checked before, for the same seed) and without, the up-projection
/// over three adapters' columns of unequal width.
pub(super) fn check_lora_projections(dev: Device) -> Result<()> {
    // 300 tokens and 300 columns: two splits of each reduction, the second partial.
    let (n, r, d) = (3, 5, 300);
    let x = pattern([2, 150, d], 12, (Kind::BFloat16, dev))?;
    let a = pattern([n, r, d], 13, (Kind::Float, dev))?.f_mul_scalar(0.1)?;
    for p in [0.25, 0.0] {
        let keep = if p > 0.0 {
            let ones = Tensor::f_ones([2, 150, d], (Kind::BFloat16, dev))?;
            Some(lora_dropout_seeded(&ones, n, p, 777)?.f_ne(0.0)?)
        } else {
            None
        };
        compare(
            &format!("LoRA down-projection (dropout {p})"),
            &[&x, &a],
            &|t| lora_down_seeded(&t[0], &t[1], p, 777),
            &|t| reference_lora_down(&t[0], &t[1], keep.as_ref(), p),
            2e-2,
        )?;
    }
    // One adapter's columns wider than a split, the others narrower than a tile.
    let offsets = [0i64, 300, 312, 400];
    let y = pattern([2, 150, 400], 14, (Kind::BFloat16, dev))?;
    let u = pattern([3, 300, r], 15, (Kind::Float, dev))?;
    let b = pattern([400, r], 16, (Kind::Float, dev))?.f_mul_scalar(0.1)?;
    compare(
        "LoRA up-projection",
        &[&y, &u, &b],
        &|t| lora_up(&t[0], &t[1], &t[2], &offsets),
        &|t| reference_lora_up(&t[0], &t[1], &t[2], &offsets),
        2e-2,
    )
}

/// The fused LoRA dropout against libtorch's ops with the masks it drew (read off its output:
/// the input pattern has no zeros), forward and backward, and the masks' keep rate.
fn check_lora_dropout(dev: Device) -> Result<()> {
    let (copies, p) = (3, 0.25);
    let x = pattern([4, 5, 96], 10, (Kind::BFloat16, dev))?.f_add_scalar(2.0)?;
    let leaf = x.f_detach()?.f_set_requires_grad(true)?;
    let y = lora_dropout_seeded(&leaf, copies, p, 12345)?;
    let keep = y.f_ne(0.0)?;
    let rate = keep
        .f_to_kind(Kind::Float)?
        .f_mean(Kind::Float)?
        .f_double_value(&[])?;
    let g = pattern(y.size(), 11, (Kind::Float, dev))?;
    let dx =
        &Tensor::f_run_backward(&[y.f_mul(&g)?.f_sum(Kind::Float)?], &[&leaf], false, false)?[0];
    let y_ref = reference_lora_dropout(&x, &keep, p)?;
    let dx_ref = g
        .f_mul(&keep.f_to_kind(Kind::Float)?)?
        .f_mul_scalar(f64::from((1.0 / (1.0 - p)) as f32))?
        .f_sum_dim_intlist([0i64].as_slice(), false, Kind::Float)?
        .f_to_kind(Kind::BFloat16)?;
    let gap = relative_gap(&y, &y_ref)?.max(relative_gap(dx, &dx_ref)?);
    // 1,440 draws at p = 0.25: the keep rate is 0.75 ± 0.011 (one standard deviation).
    if gap.is_finite() && gap <= 2e-2 && (0.65..=0.85).contains(&rate) {
        Ok(())
    } else {
        Err(ModelError::Input(format!(
            "self-check of the fused LoRA dropout: differs from libtorch's ops by {gap:.3e}, keep rate {rate:.3}"
        )))
    }
}
