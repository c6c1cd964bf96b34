//! Successive halving (Jamieson and Talwalkar 2016; the synchronous form of ASHA, Li et al.,
//! "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020): a bracket of trials
//! trains to the first rung's steps; the best 1/eta of them (by an intermediate metric such as
//! the eval loss the train stage logs) go on to the next rung, eta times the steps, and so on
//! up to the full budget. A stopped trial keeps its checkpoint, so a later promotion resumes.
//!
//! The synchronous form is used because its decisions depend only on the results, never on the
//! order they arrive in: the same seed gives the same promotions with any `--jobs`, after a
//! kill and a rerun, and on Slurm.

use super::Mode;

/// A rung: its index (0 = the first) and the optimizer steps a trial has run there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    pub index: usize,
    pub steps: u64,
}

/// The halving schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halving {
    /// Steps of the first rung.
    pub min_steps: u64,
    /// Steps of a full trial (the train stage's `max_steps`).
    pub max_steps: u64,
    /// Reduction factor: 1/eta of a rung's trials go on.
    pub eta: u64,
}

impl Halving {
    /// A schedule, or what is wrong with it.
    pub fn new(min_steps: u64, max_steps: u64, eta: u64) -> Result<Halving, String> {
        if eta < 2 {
            return Err(format!("reduction_factor must be at least 2, got {eta}"));
        }
        if min_steps == 0 || min_steps >= max_steps {
            return Err(format!(
                "min_steps must be at least 1 and below the trial's max_steps ({max_steps}), got {min_steps}"
            ));
        }
        Ok(Halving {
            min_steps,
            max_steps,
            eta,
        })
    }

    /// The rungs: min_steps · eta^k below max_steps, then max_steps.
    pub fn rungs(&self) -> Vec<Rung> {
        let mut steps = Vec::new();
        let mut s = self.min_steps;
        while s < self.max_steps {
            steps.push(s);
            s = s.saturating_mul(self.eta);
        }
        steps.push(self.max_steps);
        steps
            .into_iter()
            .enumerate()
            .map(|(index, steps)| Rung { index, steps })
            .collect()
    }

    /// Which trials of a rung's `results` (trial, metric) go on: the best ⌊n / eta⌋, at least
    /// one; ties go to the earlier trial. Returned in trial order.
    pub fn promote(&self, results: &[(usize, f64)], mode: Mode) -> Vec<usize> {
        let mut ranked: Vec<(usize, f64)> = results
            .iter()
            .copied()
            .filter(|(_, v)| v.is_finite())
            .collect();
        ranked.sort_by(|a, b| {
            mode.as_loss(a.1)
                .total_cmp(&mode.as_loss(b.1))
                .then(a.0.cmp(&b.0))
        });
        let keep = (results.len() / self.eta as usize).max(1).min(ranked.len());
        let mut out: Vec<usize> = ranked[..keep].iter().map(|(t, _)| *t).collect();
        out.sort_unstable();
        out
    }

    /// Optimizer steps a bracket of `n` trials spends when each rung keeps ⌊n / eta⌋: the
    /// steps each trial adds at its rungs (a promoted trial resumes, it does not restart).
    pub fn bracket_steps(&self, n: usize) -> u64 {
        let mut alive = n;
        let mut before = 0;
        let mut total = 0;
        for rung in self.rungs() {
            total += alive as u64 * (rung.steps - before);
            before = rung.steps;
            alive = (alive / self.eta as usize).max(1);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_grow_by_eta_up_to_the_full_budget() {
        let h = Halving::new(10, 120, 3).unwrap();
        let steps: Vec<u64> = h.rungs().iter().map(|r| r.steps).collect();
        assert_eq!(steps, [10, 30, 90, 120]);
    }

    #[test]
    fn the_best_third_goes_on_ties_to_the_earlier_trial() {
        let h = Halving::new(10, 90, 3).unwrap();
        let losses = [
            (0, 2.0),
            (1, 1.0),
            (2, 3.0),
            (3, 1.0),
            (4, f64::NAN),
            (5, 5.0),
        ];
        assert_eq!(h.promote(&losses, Mode::Min), [1, 3]);
        let acc = [(0, 0.2), (1, 0.9), (2, 0.5)];
        assert_eq!(h.promote(&acc, Mode::Max), [1]);
        // Fewer trials than eta: the best still goes on.
        assert_eq!(h.promote(&[(7, 0.3)], Mode::Max), [7]);
    }

    #[test]
    fn a_bracket_costs_far_less_than_training_every_trial_fully() {
        let h = Halving::new(10, 90, 3).unwrap();
        // 9 trials: 9 × 10 + 3 × 20 + 1 × 60 steps, against 9 × 90.
        assert_eq!(h.bracket_steps(9), 90 + 60 + 60);
        assert!(
            h.bracket_steps(9) * 100 < 9 * 90 * 30,
            "under 30% of the full budget"
        );
    }

    #[test]
    fn bad_schedules_say_why() {
        assert!(Halving::new(10, 90, 1)
            .unwrap_err()
            .contains("reduction_factor"));
        assert!(Halving::new(0, 90, 3).unwrap_err().contains("min_steps"));
        assert!(Halving::new(90, 90, 3).unwrap_err().contains("min_steps"));
    }
}
