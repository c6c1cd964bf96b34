//! Test-suite execution accuracy (Zhong, Yu and Klein, "Semantic Evaluation for Text-to-SQL
//! with Distilled Test Suites", EMNLP 2020), for gretel-style rows whose database is a handful
//! of rows in `sql_context`: there a wrong filter, a missing `DISTINCT` or the wrong join often
//! returns the gold's rows by chance. Each example gets generated instances of its schema
//! ([`instances`], from [`schema`] and value [`pools`]), distilled against near-miss mutations
//! of the gold ([`mutate`]); a prediction is test-suite correct when it is execution-correct on
//! the original database and gives the gold's result on every instance ([`suite`]).
//! Seeded: the same seed, context and gold give the same suite. Every statement runs in the
//! sandbox under its limits; suite building and each prediction's check have a budget of
//! SQLite instructions (work, not time: verdicts do not depend on the machine's load).

pub mod instances;
pub mod mutate;
pub mod pools;
pub mod schema;
pub mod suite;

use rayon::prelude::*;
use serde::Serialize;

pub use suite::{Check, Suite, SuiteStats};

use super::sandbox::Limits;

/// Instances per example when nothing else is asked for.
pub const DEFAULT_INSTANCES: usize = 8;
/// SQLite instructions for building one suite, and for checking one prediction on it: a few
/// seconds of work at most. A bound on work, not time, so a verdict never depends on the
/// machine's speed or load (the artifact it lands in is cached under a key that has neither).
pub const DEFAULT_MAX_INSTRUCTIONS: u64 = 400_000_000;

/// How suites are built.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// Instances per example (0: no test suite).
    pub instances: usize,
    pub seed: u64,
    /// Near-miss neighbours of the gold distilled against, at most.
    pub max_neighbours: usize,
    /// SQLite instructions for building one suite, and for checking one prediction.
    pub max_instructions: u64,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        Self {
            instances: DEFAULT_INSTANCES,
            seed: 0,
            max_neighbours: 12,
            max_instructions: DEFAULT_MAX_INSTRUCTIONS,
        }
    }
}

/// One prediction's test-suite verdict (in per-example scores).
#[derive(Debug, Clone, Serialize)]
pub struct SuiteVerdict {
    /// Execution-correct on the original database and equal to the gold on every instance.
    pub correct: bool,
    /// The first instance (0-based) where an execution-correct prediction differs or fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_instance: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub stats: SuiteStats,
}

impl SuiteVerdict {
    /// Execution-correct on the original but not on the suite: a false positive caught.
    pub fn caught(&self, exec_correct: bool) -> bool {
        exec_correct && !self.correct
    }
}

/// The verdict on `pred`, given its execution verdict on the original database: only an
/// execution-correct prediction is run on the instances.
pub fn verdict(
    suite: &Suite,
    context: &str,
    pred: &str,
    exec_correct: bool,
    limits: &Limits,
    cfg: &SuiteConfig,
) -> SuiteVerdict {
    let mut v = SuiteVerdict {
        correct: false,
        failed_instance: None,
        error: None,
        stats: suite.stats.clone(),
    };
    if !exec_correct {
        return v;
    }
    match suite.check(context, pred, limits, cfg.max_instructions) {
        Check::Pass => v.correct = true,
        Check::Differs { instance } => v.failed_instance = Some(instance),
        Check::Fails { instance, error } => {
            v.failed_instance = Some(instance);
            v.error = Some(error);
        }
    }
    v
}

/// One (context, gold) pair to build a suite for.
#[derive(Debug, Clone, Copy)]
pub struct SuiteItem<'a> {
    pub context: &'a str,
    pub gold: &'a str,
}

/// Build the suites of many examples in parallel; results are in input order. Systems scored
/// on the same examples share them.
pub fn build_many(items: &[SuiteItem<'_>], cfg: &SuiteConfig, limits: &Limits) -> Vec<Suite> {
    items
        .par_iter()
        .map(|it| Suite::build(it.context, it.gold, cfg, limits))
        .collect()
}
