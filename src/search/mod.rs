//! Hyperparameter search beyond the grid (issue 34): a space of params to sample
//! (`space`), a strategy that proposes trials from the results so far (`random`, or TPE in
//! `tpe`), and successive halving that stops bad trials early (`halving`). Everything here is
//! deterministic given the seed and the results, so a killed search resumes and proposes the
//! same trials again.

pub mod driver;
pub mod halving;
pub mod space;
pub mod spec;
pub mod tpe;

pub use driver::{Outcome, Runner, Trial, RUNG_KEY};
pub use halving::{Halving, Rung};
pub use space::{Dimension, Space, SpaceError};
pub use spec::{SearchSpec, StageFacts, Strategy};

use std::collections::BTreeMap;

use serde_json::Value;

/// One trial's params: dimension name → value.
pub type Params = BTreeMap<String, Value>;

/// Whether a larger or a smaller objective is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Max,
    Min,
}

impl Mode {
    /// `a` is better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Mode::Max => a > b,
            Mode::Min => a < b,
        }
    }

    /// The value as a loss (smaller is better), for strategies that minimise.
    pub fn as_loss(self, v: f64) -> f64 {
        match self {
            Mode::Max => -v,
            Mode::Min => v,
        }
    }
}

/// A finished trial: its params and objective value.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub params: Params,
    pub value: f64,
}
