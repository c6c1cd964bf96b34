//! A frozen linear layer (no bias, HF `[out, in]` weight) with an optional LoRA adapter.
//!
//! The LoRA path follows PEFT's `Linear.forward`: `y = W x + scale · B(A(dropout(x)))`, with x
//! cast to the adapter dtype (fp32) and the sum cast back to the base output dtype. When the
//! adapter is merged, `W` already holds `W + scale · B A` and the LoRA path is skipped.

use tch::{Kind, Tensor};

use crate::error::Result;
use crate::fused;

/// One LoRA adapter on a linear layer (PEFT `lora_A` / `lora_B`).
#[derive(Debug)]
pub struct LoraAdapter {
    /// `[r, in]`, fp32 (or the adapter dtype), trainable.
    pub a: Tensor,
    /// `[out, r]`, trainable.
    pub b: Tensor,
    pub scale: f64,
    pub dropout: f64,
    pub merged: bool,
}

#[derive(Debug)]
pub struct Linear {
    /// HF module path, e.g. `model.layers.0.self_attn.q_proj`.
    pub name: String,
    pub weight: Tensor,
    pub lora: Option<LoraAdapter>,
}

impl Linear {
    pub fn new(name: String, weight: Tensor) -> Self {
        Self {
            name,
            weight,
            lora: None,
        }
    }

    pub fn in_features(&self) -> i64 {
        self.weight.size()[1]
    }

    pub fn out_features(&self) -> i64 {
        self.weight.size()[0]
    }

    /// `x: [..., in]` → `[..., out]`. `train` enables LoRA dropout.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = x.f_linear::<Tensor>(&self.weight, None)?;
        add_adapters(&[self], x, y, train)
    }

    /// The unmerged adapter's term `scale · B(A(dropout(x)))` in the adapter dtype, or `None`.
    /// `x` may already be in the adapter dtype (callers sharing one cast across modules).
    pub fn lora_delta(&self, x: &Tensor, train: bool) -> Result<Option<Tensor>> {
        let Some(l) = self.lora.as_ref().filter(|l| !l.merged) else {
            return Ok(None);
        };
        let xa = if train && l.dropout > 0.0 {
            dropped_copies(x, 1, l.dropout, l.a.kind())?.f_squeeze_dim(0)?
        } else {
            x.f_to_kind(l.a.kind())?
        };
        // `scale` multiplies the rank-r activations rather than the output: the same product
        // up to fp32 rounding, over r columns instead of `out`.
        Ok(Some(
            xa.f_linear::<Tensor>(&l.a, None)?
                .f_mul_scalar(l.scale)?
                .f_linear::<Tensor>(&l.b, None)?,
        ))
    }

    fn delta(l: &LoraAdapter) -> Result<Tensor> {
        lora_delta(&l.a, &l.b, l.scale)
    }

    /// Fold the adapter into the weight (`W += scale · B A`, computed in fp32).
    pub fn merge(&mut self) -> Result<()> {
        if let Some(l) = &mut self.lora {
            if !l.merged {
                let _g = tch::no_grad_guard();
                let d = Self::delta(l)?;
                let w = self
                    .weight
                    .f_to_kind(Kind::Float)?
                    .f_add(&d.f_to_kind(Kind::Float)?)?;
                self.weight.f_copy_(&w)?;
                l.merged = true;
            }
        }
        Ok(())
    }

    /// Undo `merge` (exact up to the rounding of the weight dtype).
    pub fn unmerge(&mut self) -> Result<()> {
        if let Some(l) = &mut self.lora {
            if l.merged {
                let _g = tch::no_grad_guard();
                let d = Self::delta(l)?;
                let w = self
                    .weight
                    .f_to_kind(Kind::Float)?
                    .f_sub(&d.f_to_kind(Kind::Float)?)?;
                self.weight.f_copy_(&w)?;
                l.merged = false;
            }
        }
        Ok(())
    }
}

/// PEFT: `result = result + lora(x) * scaling`, in the adapter dtype via type promotion, then
/// cast back to the base result dtype. Done as one in-place add into `y` (a fresh product):
/// libtorch sums in the promoted dtype and rounds once into `y`'s dtype, the values of
/// upcast, add and downcast without their two extra passes over `[tokens, out]`.
pub fn add_in_adapter_dtype(mut y: Tensor, delta: &Tensor) -> Result<Tensor> {
    let _ = y.f_add_(delta)?;
    Ok(y)
}

/// `scale · B A` in the adapter dtype, `[out, in]`: the weight change an adapter stands for
/// (PEFT's `get_delta_weight`, the same product and scaling order).
pub fn lora_delta(a: &Tensor, b: &Tensor, scale: f64) -> Result<Tensor> {
    Ok(b.f_matmul(a)?.f_mul_scalar(scale)?)
}

/// Point the frozen linears over one input at rows of a single `[Σ out, in]` weight, so their
/// base outputs come from one GEMM (`fused_forward`). Each keeps its name and adapter; its
/// weight becomes a view of the fused tensor, so merging an adapter writes through. Trainable
/// weights (full fine-tuning) stay leaves of their own: `None`.
pub fn fuse_frozen(parts: &mut [&mut Linear]) -> Result<Option<Tensor>> {
    if parts.iter().any(|l| l.weight.requires_grad()) {
        return Ok(None);
    }
    let _g = tch::no_grad_guard();
    let fused = Tensor::f_cat(&parts.iter().map(|l| &l.weight).collect::<Vec<_>>(), 0)?;
    let mut offset = 0;
    for l in parts.iter_mut() {
        let n = l.out_features();
        l.weight = fused.f_narrow(0, offset, n)?;
        offset += n;
    }
    Ok(Some(fused))
}

/// `[..., Σ out]`: the outputs of `parts` side by side (PEFT's numerics per module, adapters
/// included), computed with the fused weight when there is one.
pub fn fused_forward(
    fused: Option<&Tensor>,
    parts: &[&Linear],
    x: &Tensor,
    train: bool,
) -> Result<Tensor> {
    let y = match fused {
        Some(w) => x.f_linear::<Tensor>(w, None)?,
        None => {
            let ws: Vec<&Tensor> = parts.iter().map(|l| &l.weight).collect();
            x.f_linear::<Tensor>(&Tensor::f_cat(&ws, 0)?, None)?
        }
    };
    add_adapters(parts, x, y, train)
}

/// `y` (the base outputs of `parts` side by side, `[.., Σ out]`) plus each unmerged adapter's
/// `scale · B(A(dropout(x)))`, added in the adapter dtype and rounded once into `y`'s (PEFT's
/// numerics per module). Batched over the parts where their adapters allow, through the fused
/// LoRA kernels on a bf16 GPU.
fn add_adapters(parts: &[&Linear], x: &Tensor, y: Tensor, train: bool) -> Result<Tensor> {
    let Some(kind) = parts
        .iter()
        .find_map(|l| l.lora.as_ref().filter(|a| !a.merged).map(|a| a.a.kind()))
    else {
        return Ok(y);
    };
    if let Some(us) = rank_activations(parts, x, kind, train)? {
        let ad: Vec<&LoraAdapter> = parts
            .iter()
            .map(|l| l.lora.as_ref().expect("checked by rank_activations"))
            .collect();
        if let Some(out) = fused_up_projection(&ad, &y, &us)? {
            return Ok(out);
        }
        let mut deltas = ad
            .iter()
            .zip(us)
            .map(|(a, u)| Ok(u.f_linear::<Tensor>(&a.b, None)?))
            .collect::<Result<Vec<_>>>()?;
        let delta = match deltas.len() {
            1 => deltas.pop().expect("one delta"),
            _ => Tensor::f_cat(&deltas, -1)?,
        };
        return add_in_adapter_dtype(y, &delta);
    }
    if let [single] = parts {
        // The input as it is: the adapter casts it (or its fused dropout reads the bf16).
        return match single.lora_delta(x, train)? {
            Some(delta) => add_in_adapter_dtype(y, &delta),
            None => Ok(y),
        };
    }
    // One cast of the input for every adapter; each still draws its own dropout mask.
    let xa = x.f_to_kind(kind)?;
    let mut lead = y.size();
    lead.pop();
    let deltas = parts
        .iter()
        .map(|l| match l.lora_delta(&xa, train)? {
            Some(d) => Ok(d),
            None => {
                let mut shape = lead.clone();
                shape.push(l.out_features());
                Ok(Tensor::f_zeros(shape.as_slice(), (kind, y.device()))?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    add_in_adapter_dtype(y, &Tensor::f_cat(&deltas, -1)?)
}

/// `scale · A(dropout(x))` of every part's adapter (`[.., r]` each), batched: the fused
/// down-projection where it serves (one part or more); else, for two parts or more, without
/// dropout one GEMM against the A matrices side by side, with dropout one draw over `n` copies
/// of `x` (each adapter still gets its own mask, as in PEFT) and one batched GEMM. `None` when
/// the parts do not all carry an unmerged adapter with the same dropout (and, with dropout, the
/// same rank), or there is one part and no fused kernel: then each adapter runs on its own.
fn rank_activations(
    parts: &[&Linear],
    x: &Tensor,
    kind: Kind,
    train: bool,
) -> Result<Option<Vec<Tensor>>> {
    let Some(ad) = parts
        .iter()
        .map(|l| l.lora.as_ref().filter(|a| !a.merged))
        .collect::<Option<Vec<&LoraAdapter>>>()
    else {
        return Ok(None);
    };
    let p = ad.first().map_or(0.0, |a| a.dropout);
    if ad.is_empty() || ad.iter().any(|a| a.dropout != p) {
        return Ok(None);
    }
    let fused = fused_down_projection(&ad, x, train)?;
    if fused.is_none() && ad.len() < 2 {
        return Ok(None);
    }
    let ranks: Vec<i64> = ad.iter().map(|a| a.a.size()[0]).collect();
    let mut lead = x.size();
    let inp = lead.pop().unwrap_or(1);
    let one_scale = ad.iter().all(|a| a.scale == ad[0].scale);
    let scaled = |u: Tensor| -> Result<Tensor> {
        Ok(if one_scale {
            u.f_mul_scalar(ad[0].scale)?
        } else {
            u
        })
    };
    let us: Vec<Tensor> = if let Some(u) = fused {
        scaled(u)?.f_unbind(0)?
    } else if !(train && p > 0.0) {
        let a_all = Tensor::f_cat(&ad.iter().map(|a| &a.a).collect::<Vec<_>>(), 0)?;
        scaled(x.f_to_kind(kind)?.f_linear::<Tensor>(&a_all, None)?)?
            .f_split_with_sizes(ranks.as_slice(), -1)?
    } else {
        if ranks.iter().any(|&r| r != ranks[0]) {
            return Ok(None);
        }
        let (n, rows) = (ad.len() as i64, x.numel() as i64 / inp.max(1));
        let copies = dropped_copies(&x.f_reshape([rows, inp])?, n, p, kind)?;
        let a_all = Tensor::f_stack(&ad.iter().map(|a| &a.a).collect::<Vec<_>>(), 0)?;
        let mut shape = lead.clone();
        shape.push(ranks[0]);
        scaled(copies.f_bmm(&a_all.f_transpose(1, 2)?)?)?
            .f_unbind(0)?
            .into_iter()
            .map(|u| u.f_reshape(shape.as_slice()))
            .collect::<std::result::Result<_, _>>()?
    };
    if one_scale {
        return Ok(Some(us));
    }
    Ok(Some(
        us.into_iter()
            .zip(&ad)
            .map(|(u, a)| u.f_mul_scalar(a.scale))
            .collect::<std::result::Result<_, _>>()?,
    ))
}

/// `A(dropout(x))` of the adapters in `ad`, `[n, .., r]` (dropout only when `train`), from
/// the fused down-projection, which writes no fp32 copy of the bf16 input (its kernels read it
/// as it is; its `gemm` mode, [`fused::LORA_MATMUL_ENV`], multiplies bf16 pieces): `None`
/// where it does not serve (not a bf16 CUDA input, adapters not fp32, ranks or dropouts that
/// differ, more rank than its kernels take: the `gemm` mode has no such limit).
fn fused_down_projection(ad: &[&LoraAdapter], x: &Tensor, train: bool) -> Result<Option<Tensor>> {
    let Some(first) = ad.first() else {
        return Ok(None);
    };
    let r = first.a.size()[0];
    let fits = ad
        .iter()
        .all(|a| a.a.kind() == Kind::Float && a.a.size()[0] == r && a.dropout == first.dropout)
        && (ad.len() as i64 * r <= fused::LORA_MAX_RANKS
            || fused::lora_matmul() == fused::LoraMatmul::Gemm);
    if !fits || !fused::serves_lora(x) {
        return Ok(None);
    }
    let p = if train { first.dropout } else { 0.0 };
    let a_all = Tensor::f_stack(&ad.iter().map(|a| &a.a).collect::<Vec<_>>(), 0)?;
    let mut shape = x.size();
    shape.pop();
    shape.insert(0, ad.len() as i64);
    shape.push(r);
    Ok(Some(
        fused::lora_down(x, &a_all, p)?.f_reshape(shape.as_slice())?,
    ))
}

/// `y + [u[c] · B[c]ᵀ]_c` (the adapters' outputs side by side) through the fused LoRA
/// up-projection, which writes the bf16 sum without the fp32 deltas: `None` where it does not
/// serve (not a bf16 CUDA output, B not fp32, ranks that differ, too many parts or ranks, an
/// output width not a multiple of 4).
fn fused_up_projection(ad: &[&LoraAdapter], y: &Tensor, us: &[Tensor]) -> Result<Option<Tensor>> {
    let Some(first) = ad.first() else {
        return Ok(None);
    };
    let r = first.b.size()[1];
    let fits = ad.len() <= fused::LORA_UP_MAX_PARTS
        && ad.len() as i64 * r <= fused::LORA_MAX_RANKS
        && ad
            .iter()
            .all(|a| a.b.kind() == Kind::Float && a.b.size()[1] == r && a.b.size()[0] % 4 == 0)
        && us.iter().all(|u| u.kind() == Kind::Float);
    if !fits || !fused::serves_lora(y) {
        return Ok(None);
    }
    let mut offsets = vec![0i64];
    for a in ad {
        offsets.push(offsets[offsets.len() - 1] + a.b.size()[0]);
    }
    let u = Tensor::f_stack(us, 0)?.f_reshape([ad.len() as i64, -1, r])?;
    let b = Tensor::f_cat(&ad.iter().map(|a| &a.b).collect::<Vec<_>>(), 0)?;
    Ok(Some(fused::lora_up(y, &u, &b, &offsets)?))
}

/// `[n, ...x.shape]`: `n` copies of `x` in the adapter dtype `kind`, each through its own
/// dropout mask (PEFT: every adapter's Dropout draws its own). A bf16 CUDA input with fp32
/// adapters takes the fused kernel (one read of `x`, masks regenerated in the backward); else
/// a cast, then libtorch's dropout over the expanded copies.
fn dropped_copies(x: &Tensor, n: i64, p: f64, kind: Kind) -> Result<Tensor> {
    if kind == Kind::Float && fused::serves(x) {
        return fused::lora_dropout(x, n, p);
    }
    let mut shape = x.size();
    shape.insert(0, n);
    Ok(x.f_to_kind(kind)?
        .f_unsqueeze(0)?
        .f_expand(shape.as_slice(), false)?
        .f_dropout(p, true)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn identity_adapted(name: &str, dropout: f64) -> Linear {
        let mut l = Linear::new(
            name.into(),
            Tensor::zeros([4, 4], (Kind::Float, Device::Cpu)),
        );
        l.lora = Some(LoraAdapter {
            a: Tensor::eye(4, (Kind::Float, Device::Cpu)).set_requires_grad(true),
            b: Tensor::eye(4, (Kind::Float, Device::Cpu)).set_requires_grad(true),
            scale: 2.0,
            dropout,
            merged: false,
        });
        l
    }

    #[test]
    fn batched_adapters_equal_one_by_one_and_each_draws_its_own_dropout_mask() {
        let parts = [
            identity_adapted("q", 0.5),
            identity_adapted("k", 0.5),
            identity_adapted("v", 0.5),
        ];
        let refs: Vec<&Linear> = parts.iter().collect();
        let x = Tensor::randn([2, 128, 4], (Kind::Float, Device::Cpu));
        // Without dropout (eval): exactly the per-adapter sum, `scale · B A x` = 2x per part.
        let y = fused_forward(None, &refs, &x, false).unwrap();
        assert_eq!(y.size(), vec![2, 128, 12]);
        for part in y.split(4, -1) {
            assert!(part.allclose(&(&x * 2.0), 1e-6, 1e-6, false));
        }
        // With dropout (train): every element of a part is 0 or 2x / (1 - p) = 4x, each part
        // with its own mask, and the adapters receive gradients.
        let ones = Tensor::ones([2, 128, 4], (Kind::Float, Device::Cpu));
        let y = fused_forward(None, &refs, &ones, true).unwrap();
        let masks: Vec<Tensor> = y.split(4, -1).into_iter().map(|p| p.gt(0.0)).collect();
        for (part, kept) in y.split(4, -1).iter().zip(&masks) {
            let kept_f = kept.to_kind(Kind::Float);
            assert!(part.allclose(&(&kept_f * 4.0), 1e-6, 1e-6, false));
            let share = kept_f.mean(Kind::Float).double_value(&[]);
            assert!((0.35..0.65).contains(&share), "kept share {share}");
        }
        assert!(!masks[0].equal(&masks[1]) && !masks[1].equal(&masks[2]));
        y.sum(Kind::Float).backward();
        for l in &parts {
            let a = l.lora.as_ref().unwrap();
            assert!(a.a.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
            assert!(a.b.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
        }
    }

    #[test]
    fn in_place_adapter_add_equals_upcast_add_downcast_bit_for_bit() {
        tch::manual_seed(3);
        let y = Tensor::randn([64, 96], (Kind::BFloat16, Device::Cpu));
        let d = Tensor::randn([64, 96], (Kind::Float, Device::Cpu)) * 1e-2;
        let want = y
            .to_kind(Kind::Float)
            .f_add(&d)
            .unwrap()
            .to_kind(Kind::BFloat16);
        let got = add_in_adapter_dtype(y.copy(), &d).unwrap();
        assert_eq!(got.kind(), Kind::BFloat16);
        assert!(got.equal(&want));
        // Gradients reach both operands, each in its own dtype.
        let d = d.set_requires_grad(true);
        let y = y.set_requires_grad(true);
        let out = add_in_adapter_dtype(y.f_mul_scalar(1.0).unwrap(), &d).unwrap();
        out.to_kind(Kind::Float).sum(Kind::Float).backward();
        assert_eq!(d.grad().kind(), Kind::Float);
        assert_eq!(y.grad().kind(), Kind::BFloat16);
        assert_eq!(d.grad().sum(Kind::Float).double_value(&[]), 64.0 * 96.0);
    }
}
