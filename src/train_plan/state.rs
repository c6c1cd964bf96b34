//! The trainer state (HF `trainer_state.json`-like): log history, best metric and step, and the
//! early-stopping decision with the semantics of HF `EarlyStoppingCallback` +
//! `Trainer._determine_best_metric` (metric `eval_loss`, `greater_is_better = false`).

use serde::{Deserialize, Serialize};

/// One entry of `log_history`: a training log (loss, lr, grad norm) or an evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub step: u64,
    pub epoch: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
}

/// The early-stopping callback's own state (HF keeps it under `stateful_callbacks`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyStoppingState {
    pub early_stopping_patience: u64,
    pub early_stopping_threshold: f64,
    pub early_stopping_patience_counter: u64,
}

/// What an evaluation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalOutcome {
    /// The eval loss is the best so far (strictly lower; no threshold, as HF).
    pub new_best: bool,
    /// Patience is exhausted: training stops after this step.
    pub stop: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub global_step: u64,
    pub epoch: f64,
    pub max_steps: u64,
    pub num_train_epochs: u64,
    pub train_batch_size: usize,
    pub logging_steps: u64,
    pub eval_steps: u64,
    pub save_steps: u64,
    pub best_metric: Option<f64>,
    pub best_global_step: Option<u64>,
    /// `checkpoint-<best step>` when a best exists (its weights live in the partial area
    /// during training and become the output with `load_best_model_at_end`).
    pub best_model_checkpoint: Option<String>,
    pub log_history: Vec<LogEntry>,
    pub early_stopping: EarlyStoppingState,
    pub should_training_stop: bool,
}

impl TrainerState {
    /// Record an evaluation at the current `global_step`. `patience == 0` disables stopping.
    ///
    /// HF order: the callback compares against the best *before* this evaluation, requiring an
    /// improvement larger than `threshold` to reset its counter; then the trainer updates the
    /// best on any strict improvement.
    pub fn record_eval(&mut self, eval_loss: f64) -> EvalOutcome {
        let es = &mut self.early_stopping;
        let improved_enough = match self.best_metric {
            None => true,
            Some(best) => {
                eval_loss < best && (eval_loss - best).abs() > es.early_stopping_threshold
            }
        };
        if improved_enough {
            es.early_stopping_patience_counter = 0;
        } else {
            es.early_stopping_patience_counter += 1;
        }
        let stop = es.early_stopping_patience > 0
            && es.early_stopping_patience_counter >= es.early_stopping_patience;
        let new_best = eval_loss < self.best_metric.unwrap_or(f64::INFINITY);
        if new_best {
            self.best_metric = Some(eval_loss);
            self.best_global_step = Some(self.global_step);
            self.best_model_checkpoint = Some(format!("checkpoint-{}", self.global_step));
        }
        if stop {
            self.should_training_stop = true;
        }
        self.log_history.push(LogEntry {
            step: self.global_step,
            epoch: self.epoch,
            eval_loss: Some(eval_loss),
            ..Default::default()
        });
        EvalOutcome { new_best, stop }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(patience: u64, threshold: f64) -> TrainerState {
        TrainerState {
            early_stopping: EarlyStoppingState {
                early_stopping_patience: patience,
                early_stopping_threshold: threshold,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn run(s: &mut TrainerState, losses: &[f64]) -> Vec<(bool, bool)> {
        losses
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                s.global_step = (i as u64 + 1) * 10;
                let o = s.record_eval(l);
                (o.new_best, o.stop)
            })
            .collect()
    }

    #[test]
    fn rising_eval_loss_stops_after_patience_and_keeps_first_best() {
        let mut s = state(2, 0.0);
        let got = run(&mut s, &[1.0, 1.2, 1.4]);
        assert_eq!(got, vec![(true, false), (false, false), (false, true)]);
        assert_eq!(s.best_global_step, Some(10));
        assert_eq!(s.best_metric, Some(1.0));
        assert_eq!(s.best_model_checkpoint.as_deref(), Some("checkpoint-10"));
        assert!(s.should_training_stop);
    }

    #[test]
    fn threshold_counts_small_gains_as_no_gain_but_best_still_moves() {
        // As HF: 0.95 beats 1.0 by less than the threshold 0.1, so patience runs out, yet the
        // trainer records 0.95 as the new best (no threshold there).
        let mut s = state(1, 0.1);
        let got = run(&mut s, &[1.0, 0.95]);
        assert_eq!(got, vec![(true, false), (true, true)]);
        assert_eq!(s.best_global_step, Some(20));
    }

    #[test]
    fn improvement_resets_the_counter_and_zero_patience_never_stops() {
        let mut s = state(2, 0.0);
        let got = run(&mut s, &[1.0, 1.1, 0.9, 1.0, 1.0]);
        assert_eq!(
            got,
            vec![
                (true, false),
                (false, false),
                (true, false),
                (false, false),
                (false, true)
            ]
        );
        let mut s = state(0, 0.0);
        assert!(run(&mut s, &[1.0, 2.0, 3.0, 4.0])
            .iter()
            .all(|&(_, stop)| !stop));
        assert_eq!(s.log_history.len(), 4);
        assert_eq!(s.log_history[3].eval_loss, Some(4.0));
    }

    #[test]
    fn nan_eval_loss_is_never_best() {
        let mut s = state(1, 0.0);
        let got = run(&mut s, &[1.0, f64::NAN]);
        assert_eq!(got, vec![(true, false), (false, true)]);
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut s = state(3, 0.01);
        run(&mut s, &[2.0, 1.5]);
        let text = serde_json::to_string(&s).unwrap();
        let back: TrainerState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
    }
}
