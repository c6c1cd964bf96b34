//! Optimizer plumbing around the model layer's `AdamW`: HF's weight-decay parameter groups
//! and `torch.nn.utils.clip_grad_norm_`.

use tch::{Kind, Tensor};

use crate::train::AdamW;

/// HF `Trainer.get_decay_parameter_names`: no decay on biases and normalisation weights.
pub fn decays(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let no = n.ends_with("bias")
        || n.contains("layernorm")
        || n.contains("rmsnorm")
        || n.split('.')
            .any(|part| part == "norm" || part.ends_with("_norm"));
    !no
}

/// AdamW over two groups (with and without weight decay), as HF builds it.
pub struct Optimizer {
    groups: Vec<(&'static str, AdamW)>,
}

impl Optimizer {
    pub fn new(
        params: &[(String, Tensor)],
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
    ) -> anyhow::Result<Self> {
        let (dec, nodec): (Vec<_>, Vec<_>) = params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .partition(|(n, _)| decays(n));
        let mut groups = Vec::new();
        for (tag, ps, wd) in [("decay", dec, weight_decay), ("no_decay", nodec, 0.0)] {
            if ps.is_empty() {
                continue;
            }
            let mut o = AdamW::new(ps, 0.0, wd)?;
            o.beta1 = betas.0;
            o.beta2 = betas.1;
            o.eps = eps;
            groups.push((tag, o));
        }
        Ok(Self { groups })
    }

    pub fn step(&mut self, lr: f64) -> anyhow::Result<()> {
        for (_, g) in &mut self.groups {
            g.lr = lr;
            g.step()?;
        }
        Ok(())
    }

    pub fn zero_grad(&mut self) {
        for (_, g) in &mut self.groups {
            g.zero_grad();
        }
    }

    /// The state of all groups, names prefixed by the group.
    pub fn state(&self) -> anyhow::Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (tag, g) in &self.groups {
            for (n, t) in g.state()? {
                out.push((format!("{tag}/{n}"), t));
            }
        }
        Ok(out)
    }

    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> anyhow::Result<()> {
        for (tag, g) in &mut self.groups {
            let prefix = format!("{tag}/");
            let mine: Vec<(String, Tensor)> = state
                .iter()
                .filter_map(|(n, t)| {
                    n.strip_prefix(&prefix)
                        .map(|s| (s.to_string(), t.shallow_clone()))
                })
                .collect();
            g.load_state(&mine)?;
        }
        Ok(())
    }
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm)`: the global L2 norm of all gradients
/// (returned, before clipping); gradients are scaled by `min(1, max_norm / (norm + 1e-6))`.
/// `max_norm <= 0` only measures.
pub fn clip_grad_norm(params: &[(String, Tensor)], max_norm: f64) -> anyhow::Result<f64> {
    let _g = tch::no_grad_guard();
    let grads: Vec<Tensor> = params
        .iter()
        .map(|(_, p)| p.grad())
        .filter(|g| g.defined())
        .collect();
    if grads.is_empty() {
        return Ok(0.0);
    }
    let norms = grads
        .iter()
        .map(|g| g.f_to_kind(Kind::Float)?.f_norm())
        .collect::<Result<Vec<_>, _>>()?;
    let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
    if max_norm > 0.0 {
        let coef = Tensor::f_full([], max_norm, (Kind::Float, total.device()))?
            .f_div(&total.f_add_scalar(1e-6)?)?
            .f_clamp_max(1.0)?;
        for g in &grads {
            let mut g = g.shallow_clone();
            let _ = g.f_mul_(&coef.f_to_kind(g.kind())?)?;
        }
    }
    Ok(total.f_double_value(&[])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_decay_groups() {
        assert!(decays(
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
        ));
        assert!(decays("model.embed_tokens.weight"));
        assert!(!decays("model.norm.weight"));
        assert!(!decays("model.layers.1.input_layernorm.weight"));
        assert!(!decays("model.layers.1.self_attn.q_norm.weight"));
        assert!(!decays("model.layers.1.mlp.up_proj.bias"));
    }

    #[test]
    fn clipping_scales_to_max_norm_and_returns_the_pre_clip_norm() {
        let a = Tensor::from_slice(&[3.0f32]).set_requires_grad(true);
        let b = Tensor::from_slice(&[4.0f32]).set_requires_grad(true);
        (&a * &a * 0.5 + &b * &b * 0.5).sum(Kind::Float).backward();
        let ps = vec![
            ("a".to_string(), a.shallow_clone()),
            ("b".to_string(), b.shallow_clone()),
        ];
        let n = clip_grad_norm(&ps, 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-6);
        let ga = a.grad().double_value(&[0]);
        let gb = b.grad().double_value(&[0]);
        assert!(((ga * ga + gb * gb).sqrt() - 1.0).abs() < 1e-5);
        // Under the limit nothing changes.
        let n2 = clip_grad_norm(&ps, 10.0).unwrap();
        assert!((n2 - 1.0).abs() < 1e-5);
        assert!((a.grad().double_value(&[0]) - ga).abs() < 1e-7);
    }
}
