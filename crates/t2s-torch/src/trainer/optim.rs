//! Optimizer plumbing around the model layer's `AdamW`: HF's weight-decay parameter groups,
//! one backward pass for all of them, and `torch.nn.utils.clip_grad_norm_`.

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

    /// Backpropagate `loss` once and add the gradients to every group's flat gradient.
    pub fn backward(&mut self, loss: &Tensor) -> anyhow::Result<()> {
        let inputs: Vec<&Tensor> = self
            .groups
            .iter()
            .flat_map(|(_, g)| g.params().iter().map(|(_, p)| p))
            .collect();
        let mut grads = Tensor::f_run_backward(&[loss], &inputs, false, false)?.into_iter();
        for (_, g) in &mut self.groups {
            let mine: Vec<Tensor> = grads.by_ref().take(g.params().len()).collect();
            g.accumulate(mine)?;
        }
        Ok(())
    }

    /// `torch.nn.utils.clip_grad_norm_` over all groups: the global L2 norm of the gradients
    /// before clipping (a 0-dim fp32 tensor on the device, so reading it can wait until the
    /// update is queued); they are scaled by `min(1, max_norm / (norm + 1e-6))`.
    /// `max_norm <= 0` only measures. Zero without gradients.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> anyhow::Result<Tensor> {
        let _g = tch::no_grad_guard();
        let (mut squares, mut with_grad) = (Vec::new(), Vec::new());
        for (i, (_, g)) in self.groups.iter().enumerate() {
            if let Some(n) = g.grad_norm()? {
                squares.push(n.f_square()?);
                with_grad.push(i);
            }
        }
        if squares.is_empty() {
            return Ok(Tensor::f_zeros([], (Kind::Float, tch::Device::Cpu))?);
        }
        let total = Tensor::f_stack(&squares, 0)?.f_sum(Kind::Float)?.f_sqrt()?;
        if max_norm > 0.0 {
            let coef = Tensor::f_full([], max_norm, (Kind::Float, total.device()))?
                .f_div(&total.f_add_scalar(1e-6)?)?
                .f_clamp_max(1.0)?;
            for i in with_grad {
                self.groups[i].1.scale_grad(&coef)?;
            }
        }
        Ok(total)
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
    fn clipping_scales_to_max_norm_over_both_groups_and_returns_the_pre_clip_norm() {
        // One tensor that decays, one that does not: two groups, one global norm.
        let a = Tensor::from_slice(&[3.0f32]).set_requires_grad(true);
        let b = Tensor::from_slice(&[4.0f32]).set_requires_grad(true);
        let ps = vec![
            ("w.weight".to_string(), a.shallow_clone()),
            ("model.norm.weight".to_string(), b.shallow_clone()),
        ];
        let mut opt = Optimizer::new(&ps, (0.9, 0.999), 1e-8, 0.0).unwrap();
        assert_eq!(opt.groups.len(), 2);
        let none = opt.clip_grad_norm(1.0).unwrap().double_value(&[]);
        assert_eq!(none, 0.0, "no gradient yet");
        opt.backward(&(&a * &a * 0.5 + &b * &b * 0.5).sum(Kind::Float))
            .unwrap();
        let n = opt.clip_grad_norm(1.0).unwrap().double_value(&[]);
        assert!((n - 5.0).abs() < 1e-6);
        // Clipped to norm 1: measuring again gives 1, and a larger limit changes nothing.
        let n2 = opt.clip_grad_norm(10.0).unwrap().double_value(&[]);
        assert!((n2 - 1.0).abs() < 1e-5);
        let n3 = opt.clip_grad_norm(0.0).unwrap().double_value(&[]);
        assert!((n3 - 1.0).abs() < 1e-5);
    }
}
