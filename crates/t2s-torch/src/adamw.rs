//! AdamW as `torch.optim.AdamW` (decoupled weight decay, bias correction, eps outside the
//! square root) over parameters that live end to end in one flat buffer.
//!
//! `new` moves the parameters' data into that buffer (`set_data`: every handle to a parameter,
//! the model's included, now reads and writes its slice), and the moments and the gradient are
//! flat too, so an update is about ten whole-buffer kernels with nothing copied back, and
//! clipping is one norm and one scale. On a GPU with hundreds of LoRA tensors the per-tensor
//! launches would otherwise rival the math.
//!
//! Half-precision parameters (bf16, fp16: full fine-tuning on a GPU) get fp32 master weights,
//! as mixed-precision training keeps them: the moments, the gradient sum and the update are
//! fp32 on an fp32 copy of the flat buffer, and the parameters receive its rounding after each
//! step. In bf16 alone an update smaller than 2^-8 of a weight rounds away (lr 2e-5 on weights
//! of order 1 never moves them), and the second moment loses most of its digits.
//!
//! Gradients come from [`AdamW::backward`] (autograd hands them over and they are summed into
//! the flat gradient: no `.grad` tensors, no zeroing or accumulation kernels per parameter), or,
//! when none came that way, from the parameters' `.grad` as in torch. A parameter without a
//! gradient since the last `zero_grad` is left alone, as torch skips it.

use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};

#[derive(Debug)]
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub step: i64,
    /// Each parameter's data is a slice of `flat`.
    params: Vec<(String, Tensor)>,
    /// The parameters laid end to end in `params` order.
    flat: Tensor,
    /// Gradients summed by `backward`/`accumulate` since the last `zero_grad`, flat.
    grad: Option<Tensor>,
    /// Which parameters received a gradient since the last `zero_grad`.
    got: Vec<bool>,
    /// Flat first and second moments (fp32 for half-precision parameters).
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// fp32 master copy of `flat` for half-precision parameters: the update works on it and
    /// `flat` gets its rounding. `None` for fp32/fp64 parameters.
    master: Option<Tensor>,
}

/// The dtype of the optimizer's own buffers for parameters of `kind`.
fn state_kind(kind: Kind) -> Kind {
    match kind {
        Kind::BFloat16 | Kind::Half => Kind::Float,
        k => k,
    }
}

impl AdamW {
    /// torch defaults: betas (0.9, 0.999), eps 1e-8. The parameters' data moves into one buffer
    /// (their values are kept; every handle sees the move).
    pub fn new(mut params: Vec<(String, Tensor)>, lr: f64, weight_decay: f64) -> Result<Self> {
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
        let flat = {
            let _g = tch::no_grad_guard();
            let pieces = params
                .iter()
                .map(|(_, p)| p.f_detach()?.f_reshape([-1]))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Tensor::f_cat(&pieces, 0)?
        };
        let mut off = 0;
        for (_, p) in params.iter_mut() {
            let n = p.numel() as i64;
            let shape = p.size();
            p.f_set_data(&flat.f_narrow(0, off, n)?.f_view(shape.as_slice())?)?;
            off += n;
        }
        let sk = state_kind(kind);
        let master = if sk != kind {
            Some(flat.f_to_kind(sk)?)
        } else {
            None
        };
        Ok(Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            got: vec![false; params.len()],
            params,
            flat,
            grad: None,
            exp_avg: Tensor::f_zeros([total], (sk, dev))?,
            exp_avg_sq: Tensor::f_zeros([total], (sk, dev))?,
            master,
        })
    }

    /// The parameters, in order (handles sharing the flat buffer).
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
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

    /// Backpropagate `loss` (a scalar) and add its gradients w.r.t. these parameters to the
    /// flat gradient. The autograd graph is freed.
    pub fn backward(&mut self, loss: &Tensor) -> Result<()> {
        let inputs: Vec<&Tensor> = self.params.iter().map(|(_, p)| p).collect();
        let grads = Tensor::f_run_backward(&[loss], &inputs, false, false)?;
        self.accumulate(grads)
    }

    /// Add `grads` (one per parameter, in order; an undefined tensor for a parameter the loss
    /// did not reach) to the flat gradient.
    pub fn accumulate(&mut self, grads: Vec<Tensor>) -> Result<()> {
        let (flat, got) = self.flatten(grads)?;
        for (seen, now) in self.got.iter_mut().zip(got) {
            *seen |= now;
        }
        self.grad = Some(match self.grad.take() {
            None => flat,
            Some(mut sum) => {
                let _ = sum.f_add_(&flat)?;
                sum
            }
        });
        Ok(())
    }

    /// One flat tensor of `grads` in the optimizer's dtype (zeros where undefined) and which
    /// were defined.
    fn flatten(&self, grads: Vec<Tensor>) -> Result<(Tensor, Vec<bool>)> {
        if grads.len() != self.params.len() {
            return Err(ModelError::Input(format!(
                "AdamW: {} gradients for {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        let _g = tch::no_grad_guard();
        let got: Vec<bool> = grads.iter().map(|g| g.defined()).collect();
        let pieces = grads
            .iter()
            .zip(&self.params)
            .map(|(g, (_, p))| {
                if g.defined() {
                    Ok(g.f_detach()?.f_reshape([-1])?)
                } else {
                    Ok(Tensor::f_zeros([p.numel() as i64], (p.kind(), p.device()))?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        // Concatenated straight into the optimizer's dtype: half-precision gradients are cast
        // as they are copied, not concatenated in bf16 and then cast in a second pass.
        let kind = state_kind(self.flat.kind());
        let flat = Tensor::f_empty([self.flat.numel() as i64], (kind, self.flat.device()))?;
        let _ = Tensor::f_cat_out(&flat, &pieces, 0)?;
        Ok((flat, got))
    }

    /// The gradient the next `step` applies and which parameters have one: the accumulated
    /// one, else the parameters' `.grad` (`None` when there is neither).
    fn current_grad(&self) -> Result<Option<(Tensor, Vec<bool>)>> {
        if let Some(g) = &self.grad {
            return Ok(Some((g.shallow_clone(), self.got.clone())));
        }
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).collect();
        if !grads.iter().any(|g| g.defined()) {
            return Ok(None);
        }
        Ok(Some(self.flatten(grads)?))
    }

    /// L2 norm of the gradient `step` would apply, accumulated in fp32 (a 0-dim device tensor;
    /// `None` without gradients).
    pub fn grad_norm(&self) -> Result<Option<Tensor>> {
        match self.current_grad()? {
            Some((g, _)) => Ok(Some(g.f_norm_scalaropt_dtype(2.0, Kind::Float)?)),
            None => Ok(None),
        }
    }

    /// Multiply the accumulated gradient by `coef` (a 0-dim tensor), e.g. for clipping.
    pub fn scale_grad(&mut self, coef: &Tensor) -> Result<()> {
        match &mut self.grad {
            Some(g) => {
                let _ = g.f_mul_(&coef.f_to_kind(g.kind())?)?;
                Ok(())
            }
            None => Err(ModelError::Input(
                "AdamW: no accumulated gradient to scale (call `backward` first)".into(),
            )),
        }
    }

    /// One update. Parameters without a gradient are left alone (moments included).
    pub fn step(&mut self) -> Result<()> {
        let _g = tch::no_grad_guard();
        self.step += 1;
        let Some((grad, got)) = self.current_grad()? else {
            return Ok(());
        };
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        let step_size = self.lr / bc1;
        let bc2_sqrt = bc2.sqrt();
        // Runs of consecutive parameters with a gradient: one run when all have one.
        let mut runs: Vec<(i64, i64)> = Vec::new();
        for ((o, n), has) in self.spans().into_iter().zip(got) {
            if !has {
                continue;
            }
            match runs.last_mut() {
                Some((ro, rn)) if *ro + *rn == o => *rn += n,
                _ => runs.push((o, n)),
            }
        }
        let work = self.master.as_ref().unwrap_or(&self.flat);
        for (o, n) in runs {
            let mut m = self.exp_avg.f_narrow(0, o, n)?;
            let mut v = self.exp_avg_sq.f_narrow(0, o, n)?;
            let mut p = work.f_narrow(0, o, n)?;
            let g = grad.f_narrow(0, o, n)?;
            let _ = m.f_lerp_(&g, 1.0 - self.beta1)?;
            let _ = v.f_mul_scalar_(self.beta2)?;
            let _ = v.f_addcmul_(&g, &g.f_mul_scalar(1.0 - self.beta2)?)?;
            let mut denom = v.f_sqrt()?;
            let _ = denom.f_div_scalar_(bc2_sqrt)?.f_add_scalar_(self.eps)?;
            if self.weight_decay != 0.0 {
                let _ = p.f_mul_scalar_(1.0 - self.lr * self.weight_decay)?;
            }
            let mut upd = m.f_div(&denom)?;
            let _ = upd.f_mul_scalar_(step_size)?;
            let _ = p.f_sub_(&upd)?;
            if self.master.is_some() {
                // The parameters get the master weights' rounding.
                self.flat.f_narrow(0, o, n)?.f_copy_(&p)?;
            }
        }
        Ok(())
    }

    /// Forget the accumulated gradient (and zero any `.grad` a torch-style backward left).
    pub fn zero_grad(&mut self) {
        self.grad = None;
        self.got.iter_mut().for_each(|g| *g = false);
        for (_, p) in self.params.iter_mut() {
            p.zero_grad();
        }
    }

    /// The flat buffers a checkpoint keeps, by name suffix: the moments, and the master
    /// weights when there are any.
    fn buffers(&self) -> Vec<(&'static str, &Tensor)> {
        let mut b = vec![("exp_avg", &self.exp_avg), ("exp_avg_sq", &self.exp_avg_sq)];
        if let Some(m) = &self.master {
            b.push(("master", m));
        }
        b
    }

    /// `{name}.exp_avg`, `{name}.exp_avg_sq`, for half-precision parameters `{name}.master`
    /// (each shaped like the parameter) and `step` (int64), for checkpoints.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for ((n, p), (o, len)) in self.params.iter().zip(self.spans()) {
            for (suffix, buf) in self.buffers() {
                let t = buf.f_narrow(0, o, len)?.f_view(p.size().as_slice())?;
                out.push((format!("{n}.{suffix}"), t));
            }
        }
        out.push(("step".into(), Tensor::f_from_slice(&[self.step])?));
        Ok(out)
    }

    /// Restore what `state` returned (names and shapes must match), after the parameters were
    /// restored. Master weights missing from `state` (a checkpoint of fp32 parameters, or one
    /// written before they existed) are taken from the parameters.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let find = |k: &str| state.iter().find(|(n, _)| n == k).map(|(_, t)| t);
        let _g = tch::no_grad_guard();
        for ((n, p), (o, len)) in self.params.iter().zip(self.spans()) {
            for (suffix, buf) in self.buffers() {
                let key = format!("{n}.{suffix}");
                let src = match (find(&key), suffix) {
                    (Some(t), _) => t,
                    (None, "master") => p,
                    (None, _) => {
                        return Err(ModelError::Input(format!("optimizer state lacks `{key}`")))
                    }
                };
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

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn params(values: &[&[f32]]) -> Vec<(String, Tensor)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    format!("p{i}"),
                    Tensor::from_slice(v).set_requires_grad(true),
                )
            })
            .collect()
    }

    fn diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn parameters_alias_the_flat_buffer_and_keep_their_values() {
        let ps = params(&[&[1.0, 2.0], &[3.0, 4.0, 5.0]]);
        let held: Vec<Tensor> = ps.iter().map(|(_, p)| p.shallow_clone()).collect();
        let opt = AdamW::new(ps, 0.1, 0.0).unwrap();
        assert_eq!(Vec::<f32>::try_from(&held[1]).unwrap(), vec![3.0, 4.0, 5.0]);
        assert!(held[0].requires_grad());
        // A write through the optimizer's buffer is seen by the handles held elsewhere.
        let _ = opt.flat.f_narrow(0, 2, 1).unwrap().fill_(9.0);
        assert_eq!(Vec::<f32>::try_from(&held[1]).unwrap(), vec![9.0, 4.0, 5.0]);
    }

    #[test]
    fn backward_path_matches_the_dot_grad_path_and_sums_micro_batches() {
        let init: &[&[f32]] = &[&[0.5, -1.0, 2.0], &[1.5, 0.25]];
        let (a, b) = (params(init), params(init));
        let (ha, hb): (Vec<Tensor>, Vec<Tensor>) = (
            a.iter().map(|(_, p)| p.shallow_clone()).collect(),
            b.iter().map(|(_, p)| p.shallow_clone()).collect(),
        );
        let mut oa = AdamW::new(a, 0.05, 0.1).unwrap();
        let mut ob = AdamW::new(b, 0.05, 0.1).unwrap();
        let loss = |h: &[Tensor], k: f64| {
            (&h[0] * &h[0]).sum(Kind::Float) * k + (&h[1] * 3.0).sum(Kind::Float)
        };
        for _ in 0..3 {
            // Two micro-batches through `backward`, against one torch-style backward of
            // their sum.
            oa.backward(&loss(&ha, 1.0)).unwrap();
            oa.backward(&loss(&ha, 0.5)).unwrap();
            oa.step().unwrap();
            oa.zero_grad();
            (loss(&hb, 1.0) + loss(&hb, 0.5)).backward();
            ob.step().unwrap();
            ob.zero_grad();
        }
        for (x, y) in ha.iter().zip(&hb) {
            assert!(diff(x, y) < 1e-7, "{x:?} vs {y:?}");
        }
        assert!(diff(&ha[0], &Tensor::from_slice(init[0])) > 1e-3);
        assert!(!ha[0].grad().defined(), "backward leaves no .grad");
    }

    #[test]
    fn a_parameter_the_loss_does_not_reach_is_left_alone() {
        let ps = params(&[&[1.0, 2.0], &[7.0]]);
        let h: Vec<Tensor> = ps.iter().map(|(_, p)| p.shallow_clone()).collect();
        let mut opt = AdamW::new(ps, 0.1, 0.5).unwrap();
        opt.backward(&(&h[0] * &h[0]).sum(Kind::Float)).unwrap();
        opt.step().unwrap();
        assert_eq!(Vec::<f32>::try_from(&h[1]).unwrap(), vec![7.0]);
        let st = opt.state().unwrap();
        let m = &st.iter().find(|(n, _)| n == "p1.exp_avg").unwrap().1;
        assert_eq!(m.abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert!(diff(&h[0], &Tensor::from_slice(&[1.0f32, 2.0])) > 1e-3);
    }

    #[test]
    fn grad_norm_and_scaling_act_on_the_accumulated_gradient() {
        let ps = params(&[&[3.0], &[4.0]]);
        let h: Vec<Tensor> = ps.iter().map(|(_, p)| p.shallow_clone()).collect();
        let mut opt = AdamW::new(ps, 0.1, 0.0).unwrap();
        assert!(opt.grad_norm().unwrap().is_none());
        assert!(opt
            .scale_grad(&Tensor::from(0.5f32))
            .unwrap_err()
            .to_string()
            .contains("no accumulated gradient"));
        // d/dp of p²/2 is p: the gradient is (3, 4), norm 5.
        let l = (&h[0] * &h[0] * 0.5).sum(Kind::Float) + (&h[1] * &h[1] * 0.5).sum(Kind::Float);
        opt.backward(&l).unwrap();
        let n = opt.grad_norm().unwrap().unwrap().double_value(&[]);
        assert!((n - 5.0).abs() < 1e-6);
        opt.scale_grad(&Tensor::from(0.2f32)).unwrap();
        let n = opt.grad_norm().unwrap().unwrap().double_value(&[]);
        assert!((n - 1.0).abs() < 1e-6);
    }

    /// Runs `steps` AdamW steps (lr 1e-4, no decay) of the loss `sum(p)` on parameters of
    /// `kind` starting at 1.0 and returns them, and the optimizer.
    fn descend(kind: Kind, steps: usize) -> (Tensor, AdamW) {
        let p = Tensor::ones([3], (kind, Device::Cpu)).set_requires_grad(true);
        let h = p.shallow_clone();
        let mut opt = AdamW::new(vec![("p".into(), p)], 1e-4, 0.0).unwrap();
        for _ in 0..steps {
            opt.backward(&h.sum(Kind::Float)).unwrap();
            opt.step().unwrap();
            opt.zero_grad();
        }
        (h, opt)
    }

    #[test]
    fn bf16_parameters_move_by_updates_below_their_resolution() {
        // Each update is ~1e-4 of a weight of 1.0, under bf16's spacing there (2^-8 below 1):
        // in bf16 alone the weight would never move. The fp32 master accumulates the updates
        // and the parameter is its rounding: exactly fp32 AdamW's result, rounded.
        let (bf, opt) = descend(Kind::BFloat16, 60);
        let (f32, _) = descend(Kind::Float, 60);
        assert_eq!(bf.kind(), Kind::BFloat16);
        assert!(bf.double_value(&[0]) < 1.0, "the bf16 weight did not move");
        assert_eq!(
            Vec::<f32>::try_from(&bf.to_kind(Kind::Float)).unwrap(),
            Vec::<f32>::try_from(&f32.to_kind(Kind::BFloat16).to_kind(Kind::Float)).unwrap()
        );
        let st = opt.state().unwrap();
        let master = &st.iter().find(|(n, _)| n == "p.master").unwrap().1;
        assert_eq!(master.kind(), Kind::Float);
        assert!(diff(master, &f32) < 1e-6);
    }

    #[test]
    fn a_restored_bf16_optimizer_continues_exactly() {
        let (h, opt) = descend(Kind::BFloat16, 5);
        let state = opt.state().unwrap();
        let saved = h.copy();
        // Uninterrupted: 5 more steps.
        let mut opt = opt;
        for _ in 0..5 {
            opt.backward(&h.sum(Kind::Float)).unwrap();
            opt.step().unwrap();
            opt.zero_grad();
        }
        // Resumed: parameters restored, then the optimizer state (master weights included).
        let p = saved.detach().copy().set_requires_grad(true);
        let r = p.shallow_clone();
        let mut resumed = AdamW::new(vec![("p".into(), p)], 1e-4, 0.0).unwrap();
        resumed.load_state(&state).unwrap();
        for _ in 0..5 {
            resumed.backward(&r.sum(Kind::Float)).unwrap();
            resumed.step().unwrap();
            resumed.zero_grad();
        }
        assert_eq!(
            Vec::<f32>::try_from(&r.to_kind(Kind::Float)).unwrap(),
            Vec::<f32>::try_from(&h.to_kind(Kind::Float)).unwrap()
        );
        // Without its master weights the resumed run would have restarted from the rounded
        // weights and drifted: the master carries what bf16 cannot hold.
        let m = &state.iter().find(|(n, _)| n == "p.master").unwrap().1;
        assert!(diff(m, &saved.to_kind(Kind::Float)) > 0.0);
    }

    #[test]
    fn mixed_dtypes_are_refused_by_name() {
        let ps = vec![
            (
                "a".to_string(),
                Tensor::zeros([2], (Kind::Float, Device::Cpu)),
            ),
            (
                "b".to_string(),
                Tensor::zeros([2], (Kind::Double, Device::Cpu)),
            ),
        ];
        let e = AdamW::new(ps, 0.1, 0.0).unwrap_err().to_string();
        assert!(e.contains("`b` differs"), "{e}");
        assert!(AdamW::new(Vec::new(), 0.1, 0.0).is_err());
    }
}
