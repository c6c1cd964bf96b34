//! A frozen linear layer (no bias, HF `[out, in]` weight) with an optional LoRA adapter.
//!
//! The LoRA path follows PEFT's `Linear.forward`: `y = W x + scale · B(A(dropout(x)))`, with x
//! cast to the adapter dtype (fp32) and the sum cast back to the base output dtype. When the
//! adapter is merged, `W` already holds `W + scale · B A` and the LoRA path is skipped.

use tch::{Kind, Tensor};

use crate::error::Result;

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
        match &self.lora {
            Some(l) if !l.merged => {
                let xa = x.f_to_kind(l.a.kind())?;
                let xa = if train && l.dropout > 0.0 {
                    xa.f_dropout(l.dropout, true)?
                } else {
                    xa
                };
                let delta = xa
                    .f_linear::<Tensor>(&l.a, None)?
                    .f_linear::<Tensor>(&l.b, None)?
                    .f_mul_scalar(l.scale)?;
                if y.kind() == delta.kind() {
                    Ok(y.f_add(&delta)?)
                } else {
                    // PEFT: result = result + lora(x) * scaling, in the adapter dtype via type
                    // promotion, then cast back to the base result dtype.
                    Ok(y.f_to_kind(delta.kind())?
                        .f_add(&delta)?
                        .f_to_kind(y.kind())?)
                }
            }
            _ => Ok(y),
        }
    }

    /// `scale · B A` in the adapter dtype, `[out, in]`.
    fn delta(l: &LoraAdapter) -> Result<Tensor> {
        Ok(l.b.f_matmul(&l.a)?.f_mul_scalar(l.scale)?)
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
