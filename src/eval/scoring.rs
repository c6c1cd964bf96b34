//! The scoring settings `t2s evaluate` and the evaluate stage share, declared once: read as
//! command-line flags (clap, `#[command(flatten)]`) and as stage params (serde and its schema,
//! `#[serde(flatten)]` into `EvaluateParams`).

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::sandbox::Limits;
use super::score::ScoreOptions;
use super::testsuite::{SuiteConfig, DEFAULT_INSTANCES, DEFAULT_MAX_INSTRUCTIONS};

/// How predictions are scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, clap::Args)]
#[serde(default)]
pub struct Scoring {
    /// Bootstrap resamples for 95% CIs (at least 1).
    #[arg(long, default_value_t = DEFAULT.bootstrap_samples)]
    pub bootstrap_samples: u64,
    /// Wall-clock limit per SQL statement, in ms (at least 1).
    #[arg(long, default_value_t = DEFAULT.statement_timeout_ms)]
    pub statement_timeout_ms: u64,
    /// Generated database instances per example for test-suite execution accuracy (0: off).
    #[arg(long, default_value_t = DEFAULT.test_suite_instances)]
    pub test_suite_instances: u64,
    /// Seed of the test-suite instances.
    #[arg(long, default_value_t = DEFAULT.test_suite_seed)]
    pub test_suite_seed: u64,
    /// SQLite instructions for building one example's test suite, and for checking one
    /// prediction on it (at least 1): a bound on work, not time, so scores do not depend on
    /// the machine's load.
    #[arg(long, default_value_t = DEFAULT.test_suite_max_instructions)]
    pub test_suite_max_instructions: u64,
}

/// The defaults.
const DEFAULT: Scoring = Scoring {
    bootstrap_samples: super::stats::DEFAULT_RESAMPLES as u64,
    statement_timeout_ms: 5000,
    test_suite_instances: DEFAULT_INSTANCES as u64,
    test_suite_seed: 0,
    test_suite_max_instructions: DEFAULT_MAX_INSTRUCTIONS,
};

impl Default for Scoring {
    fn default() -> Self {
        DEFAULT
    }
}

impl Scoring {
    /// Settings that must be at least 1 and are not: `(name, message)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        [
            ("bootstrap_samples", self.bootstrap_samples),
            ("statement_timeout_ms", self.statement_timeout_ms),
            (
                "test_suite_max_instructions",
                self.test_suite_max_instructions,
            ),
        ]
        .into_iter()
        .filter(|(_, v)| *v < 1)
        .map(|(k, _)| (k.to_string(), "must be at least 1".to_string()))
        .collect()
    }

    /// The scoring options, the bootstrap drawn with `seed`.
    pub fn options(&self, seed: u64) -> ScoreOptions {
        ScoreOptions {
            limits: Limits {
                max_wall: Duration::from_millis(self.statement_timeout_ms),
                ..Limits::default()
            },
            bootstrap_samples: self.bootstrap_samples as usize,
            seed,
            suite: SuiteConfig {
                instances: self.test_suite_instances as usize,
                seed: self.test_suite_seed,
                max_instructions: self.test_suite_max_instructions,
                ..SuiteConfig::default()
            },
        }
    }
}
