//! Learning-rate schedules with the exact arithmetic of Hugging Face `transformers`
//! (`get_linear_schedule_with_warmup`, `get_cosine_schedule_with_warmup`,
//! `get_constant_schedule_with_warmup`) and the step counting of `Trainer`.

use serde::{Deserialize, Serialize};

/// The decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerKind {
    Linear,
    Cosine,
    Constant,
}

/// A learning-rate schedule: `lr(step)` is the rate used by the optimizer update number `step`
/// (0-based), as `LambdaLR` gives it after `step` calls of `scheduler.step()`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub kind: SchedulerKind,
    pub base_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LrSchedule {
    /// HF `TrainingArguments.get_warmup_steps`: an explicit step count (≥ 1) wins, else
    /// `ceil(total × ratio)`.
    pub fn warmup_steps_for(total_steps: u64, warmup_steps: u64, warmup_ratio: f64) -> u64 {
        if warmup_steps >= 1 {
            warmup_steps
        } else {
            (total_steps as f64 * warmup_ratio).ceil().max(0.0) as u64
        }
    }

    /// The multiplier of `base_lr` at `step` (HF's `lr_lambda`).
    pub fn factor(&self, step: u64) -> f64 {
        let (s, w, t) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        if step < self.warmup_steps {
            return s / w.max(1.0);
        }
        match self.kind {
            SchedulerKind::Constant => 1.0,
            SchedulerKind::Linear => ((t - s) / (t - w).max(1.0)).max(0.0),
            SchedulerKind::Cosine => {
                let progress = (s - w) / (t - w).max(1.0);
                // num_cycles = 0.5: one half cosine from 1 down to 0.
                (0.5 * (1.0 + (std::f64::consts::PI * 0.5 * 2.0 * progress).cos())).max(0.0)
            }
        }
    }

    pub fn lr(&self, step: u64) -> f64 {
        self.base_lr * self.factor(step)
    }
}

/// How many optimizer updates one epoch has, and how many in total (HF `Trainer`
/// `set_initial_training_values`): an epoch of `batches` micro-batches has
/// `ceil(batches / grad_accum)` updates (the last one may accumulate fewer batches);
/// `max_steps > 0` wins over `epochs`, else `ceil(epochs × updates_per_epoch)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepPlan {
    pub batches_per_epoch: u64,
    pub grad_accum: u64,
    pub updates_per_epoch: u64,
    pub total_steps: u64,
}

impl StepPlan {
    pub fn new(batches_per_epoch: u64, grad_accum: u64, epochs: f64, max_steps: i64) -> Self {
        let ga = grad_accum.max(1);
        let updates_per_epoch = batches_per_epoch.div_ceil(ga).max(1);
        let total_steps = if max_steps > 0 {
            max_steps as u64
        } else {
            (epochs * updates_per_epoch as f64).ceil().max(0.0) as u64
        };
        Self {
            batches_per_epoch,
            grad_accum: ga,
            updates_per_epoch,
            total_steps,
        }
    }

    /// The data cursor of optimizer update `step` (0-based): the epoch and the micro-batch
    /// range `[start, end)` of that epoch's batch order.
    pub fn cursor(&self, step: u64) -> (u64, std::ops::Range<usize>) {
        let epoch = step / self.updates_per_epoch;
        let u = step % self.updates_per_epoch;
        let start = (u * self.grad_accum).min(self.batches_per_epoch);
        let end = ((u + 1) * self.grad_accum).min(self.batches_per_epoch);
        (epoch, start as usize..end as usize)
    }

    /// HF's fractional `state.epoch` after update `step` (0-based) has run.
    pub fn epoch_after(&self, step: u64) -> f64 {
        let (epoch, range) = self.cursor(step);
        epoch as f64 + range.end as f64 / self.batches_per_epoch.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: SchedulerKind, w: u64, t: u64) -> LrSchedule {
        LrSchedule {
            kind,
            base_lr: 1.0,
            warmup_steps: w,
            total_steps: t,
        }
    }

    #[test]
    fn linear_matches_hf_lambda() {
        // Values from transformers' _get_linear_schedule_with_warmup_lr_lambda(w=2, t=10).
        let s = sched(SchedulerKind::Linear, 2, 10);
        let got: Vec<f64> = (0..11).map(|i| s.factor(i)).collect();
        let want = [
            0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
    }

    #[test]
    fn cosine_matches_hf_lambda() {
        let s = sched(SchedulerKind::Cosine, 1, 5);
        // progress = (step-1)/4; 0.5*(1+cos(pi*progress))
        let want = [0.0, 1.0, 0.8535533905932737, 0.5, 0.14644660940672627, 0.0];
        for (i, w) in want.iter().enumerate() {
            assert!((s.factor(i as u64) - w).abs() < 1e-12, "step {i}");
        }
    }

    #[test]
    fn constant_with_warmup_and_zero_warmup() {
        let s = sched(SchedulerKind::Constant, 4, 10);
        assert_eq!(s.factor(2), 0.5);
        assert_eq!(s.factor(9), 1.0);
        // No warmup: the first update already uses the full rate, as in HF.
        assert_eq!(sched(SchedulerKind::Linear, 0, 4).factor(0), 1.0);
    }

    #[test]
    fn warmup_ratio_rounds_up_and_steps_win() {
        assert_eq!(LrSchedule::warmup_steps_for(105, 0, 0.1), 11);
        assert_eq!(LrSchedule::warmup_steps_for(100, 0, 0.0), 0);
        assert_eq!(LrSchedule::warmup_steps_for(100, 7, 0.5), 7);
    }

    #[test]
    fn step_plan_follows_hf_arithmetic() {
        // 10 batches, accumulation 4: updates of 4, 4 and 2 batches per epoch.
        let p = StepPlan::new(10, 4, 2.0, -1);
        assert_eq!(p.updates_per_epoch, 3);
        assert_eq!(p.total_steps, 6);
        assert_eq!(p.cursor(2), (0, 8..10));
        assert_eq!(p.cursor(3), (1, 0..4));
        assert!((p.epoch_after(0) - 0.4).abs() < 1e-12);
        assert!((p.epoch_after(2) - 1.0).abs() < 1e-12);
        // Fractional epochs round the step count up; max_steps wins.
        assert_eq!(StepPlan::new(10, 4, 1.5, -1).total_steps, 5);
        assert_eq!(StepPlan::new(10, 4, 1.5, 7).total_steps, 7);
        // Fewer batches than one accumulation still make one update.
        assert_eq!(StepPlan::new(2, 8, 1.0, 0).updates_per_epoch, 1);
    }
}
