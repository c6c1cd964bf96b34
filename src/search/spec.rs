//! A stage's `search:` block as written: the space, the strategy, the budget, the objective
//! and optional successive halving. Read as one typed struct (unknown fields and wrong types
//! are named by their path), then checked as a whole; every problem names the field path
//! under `search` so the pipeline loader can point at file:line:column.
//!
//! ```yaml
//! search:
//!   space:
//!     lora_r: {values: [4, 8, 16]}
//!     lr: {low: 3.0e-4, high: 1.0e-2, log: true}
//!   strategy: tpe            # random | tpe
//!   trials: 9                # the budget: trials proposed in all
//!   batch: 3                 # trials per round (they run in parallel with --jobs)
//!   seed: 0
//!   objective: {stage: evaluate, metric: execution_accuracy, mode: max}
//!   halving: {min_steps: 50, reduction_factor: 3}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::halving::Halving;
use super::space::Space;
use super::tpe::TpeOptions;
use super::Mode;

/// How the next trials are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Uniform draws from the space.
    Random,
    /// Tree-structured Parzen Estimator (random for the first trials).
    Tpe,
}

/// The metric a search optimizes: a final metric of a stage's nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    /// The stage whose nodes report the metric: the searched stage or one downstream of it.
    pub stage: String,
    /// A final metric of that stage's nodes, e.g. `execution_accuracy` or `eval_loss`.
    pub metric: String,
    /// `max` or `min` (default: `min` for metrics named like a loss, else `max`).
    #[serde(default)]
    pub mode: Option<Mode>,
}

impl Objective {
    pub fn mode(&self) -> Mode {
        self.mode.unwrap_or_else(|| default_mode(&self.metric))
    }
}

fn default_mode(metric: &str) -> Mode {
    if metric.contains("loss") {
        Mode::Min
    } else {
        Mode::Max
    }
}

/// Successive halving of the searched train stage's trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HalvingBlock {
    /// Optimizer steps of the first rung (a multiple of the stage's `eval_steps`).
    pub min_steps: u64,
    /// 1/reduction_factor of a rung's trials go on, with reduction_factor times the steps.
    #[serde(default = "three")]
    pub reduction_factor: u64,
    /// The train metric rungs are ranked by.
    #[serde(default = "eval_loss")]
    pub metric: String,
    /// `min` or `max` (default: `min` for a loss).
    #[serde(default)]
    pub mode: Option<Mode>,
}

fn three() -> u64 {
    3
}
fn eval_loss() -> String {
    "eval_loss".into()
}

impl HalvingBlock {
    pub fn mode(&self) -> Mode {
        self.mode.unwrap_or_else(|| default_mode(&self.metric))
    }
}

/// The `search:` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBlock {
    /// Param name → `{values: [...]}` or `{low, high, log, int}`.
    pub space: Value,
    #[serde(default = "tpe")]
    pub strategy: Strategy,
    /// Trials in all (the budget).
    pub trials: u64,
    /// Trials proposed per round (default 1 for `tpe`, all of them for `random`); with
    /// `halving`, the trials of one bracket.
    #[serde(default)]
    pub batch: Option<u64>,
    #[serde(default)]
    pub seed: u64,
    pub objective: Objective,
    #[serde(default)]
    pub halving: Option<HalvingBlock>,
}

fn tpe() -> Strategy {
    Strategy::Tpe
}

/// A checked search: everything the driver needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpec {
    /// The searched stage.
    pub stage: String,
    pub space: Space,
    pub strategy: Strategy,
    pub trials: usize,
    pub batch: usize,
    pub seed: u64,
    pub objective: Objective,
    /// With the halving block's metric and mode.
    pub halving: Option<(Halving, HalvingBlock)>,
    pub tpe: TpeOptions,
    /// A full trial's optimizer steps (the searched train stage's `max_steps`), when known.
    pub full_steps: Option<u64>,
}

/// More trials than this is surely a mistake (each is a node, as a matrix instance is).
const MAX_TRIALS: u64 = 10_000;

/// A problem in a `search:` block: the path under it (`space.lr.low`), what is wrong, a hint.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecProblem {
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

fn problem(path: &str, message: impl Into<String>, hint: Option<&str>) -> SpecProblem {
    SpecProblem {
        path: path.to_string(),
        message: message.into(),
        hint: hint.map(String::from),
    }
}

/// What the loader knows of the searched stage that a search depends on.
pub struct StageFacts {
    pub name: String,
    /// `(max_steps, eval_steps)` of the stage's params when it is a train stage (halving
    /// needs a positive `max_steps`).
    pub train_steps: Option<(i64, u64)>,
}

/// Read and check a `search:` block of `stage`.
pub fn parse(v: &Value, stage: &StageFacts) -> Result<SearchSpec, Vec<SpecProblem>> {
    let block: SearchBlock = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        vec![problem(
            &path,
            e.inner().to_string(),
            Some("see docs/pipeline.md, `search:`"),
        )]
    })?;
    let mut problems = Vec::new();
    let space = match Space::parse(&block.space) {
        Ok(s) => Some(s),
        Err(es) => {
            problems.extend(es.into_iter().map(|e| SpecProblem {
                path: join("space", &e.path),
                message: e.message,
                hint: None,
            }));
            None
        }
    };
    if block.trials == 0 {
        problems.push(problem(
            "trials",
            "the budget is 0 trials",
            Some("give at least one trial"),
        ));
    } else if block.trials > MAX_TRIALS {
        problems.push(problem(
            "trials",
            format!(
                "{} trials is more than the {MAX_TRIALS} a search may run",
                block.trials
            ),
            Some("a smaller budget (each trial is a node)"),
        ));
    }
    if block.batch == Some(0) {
        problems.push(problem(
            "batch",
            "a round of 0 trials",
            Some("use 1 or more"),
        ));
    }
    let halving = block
        .halving
        .as_ref()
        .and_then(|h| check_halving(h, stage, &mut problems));
    match (problems.is_empty(), space) {
        (true, Some(space)) => {
            let trials = block.trials as usize;
            let default_batch = match (block.strategy, &halving) {
                (_, Some(_)) | (Strategy::Random, _) => trials,
                (Strategy::Tpe, None) => 1,
            };
            Ok(SearchSpec {
                stage: stage.name.clone(),
                space,
                strategy: block.strategy,
                trials,
                batch: block
                    .batch
                    .map_or(default_batch, |b| b as usize)
                    .min(trials),
                seed: block.seed,
                objective: block.objective,
                halving,
                tpe: TpeOptions::default(),
                full_steps: stage
                    .train_steps
                    .and_then(|(m, _)| u64::try_from(m).ok())
                    .filter(|&m| m > 0),
            })
        }
        _ => Err(problems),
    }
}

fn check_halving(
    h: &HalvingBlock,
    stage: &StageFacts,
    problems: &mut Vec<SpecProblem>,
) -> Option<(Halving, HalvingBlock)> {
    let Some((max_steps, eval_steps)) = stage.train_steps else {
        problems.push(problem(
            "halving",
            format!(
                "halving stops trials of a train stage; `{}` is not one",
                stage.name
            ),
            Some("remove `halving`, or search a stage of kind train"),
        ));
        return None;
    };
    if max_steps <= 0 {
        problems.push(problem(
            "halving",
            "halving needs the stage's `max_steps` (the full budget of a trial)",
            Some("set `max_steps` in the stage's params"),
        ));
        return None;
    }
    if eval_steps == 0 || !h.min_steps.is_multiple_of(eval_steps) {
        problems.push(problem(
            "halving.min_steps",
            format!(
                "rungs are ranked by an evaluation at their last step: min_steps ({}) must be a multiple of the stage's eval_steps ({eval_steps})",
                h.min_steps
            ),
            Some("set eval_steps so that it divides min_steps"),
        ));
        return None;
    }
    match Halving::new(h.min_steps, max_steps as u64, h.reduction_factor) {
        Ok(s) => Some((s, h.clone())),
        Err(e) => {
            let field = if e.starts_with("reduction_factor") {
                "halving.reduction_factor"
            } else {
                "halving.min_steps"
            };
            problems.push(problem(field, e, None));
            None
        }
    }
}

fn join(a: &str, b: &str) -> String {
    if b.is_empty() {
        a.to_string()
    } else {
        format!("{a}.{b}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> StageFacts {
        StageFacts {
            name: "train".into(),
            train_steps: Some((90, 10)),
        }
    }

    fn paths(v: Value) -> Vec<String> {
        parse(&v, &facts())
            .unwrap_err()
            .into_iter()
            .map(|p| p.path)
            .collect()
    }

    #[test]
    fn a_good_block_reads_with_its_defaults() {
        let s = parse(
            &json!({"space": {"r": {"values": [4, 8]}}, "trials": 5,
                    "objective": {"stage": "evaluate", "metric": "execution_accuracy"}}),
            &facts(),
        )
        .unwrap();
        assert_eq!(s.strategy, Strategy::Tpe);
        assert_eq!((s.trials, s.batch, s.seed), (5, 1, 0));
        assert_eq!(s.objective.mode(), Mode::Max);
        assert!(s.halving.is_none());
    }

    #[test]
    fn every_bad_field_is_named_by_its_path() {
        let obj = json!({"stage": "evaluate", "metric": "eval_loss"});
        assert_eq!(
            paths(
                json!({"space": {"lr": {"low": 1.0, "high": 0.5}}, "trials": 2, "objective": obj})
            ),
            ["space.lr"]
        );
        assert_eq!(
            paths(
                json!({"space": {"lr": {"low": 0.0, "high": 1.0, "log": true}}, "trials": 2, "objective": obj})
            ),
            ["space.lr.low"]
        );
        assert_eq!(
            paths(
                json!({"space": {"r": {"values": [1]}}, "strategy": "grid", "trials": 2, "objective": obj})
            ),
            ["strategy"]
        );
        assert_eq!(
            paths(json!({"space": {"r": {"values": [1]}}, "trials": 0, "objective": obj})),
            ["trials"]
        );
        assert_eq!(
            paths(json!({"space": {"r": {"values": [1]}}, "trials": 1u64 << 40, "objective": obj})),
            ["trials"]
        );
        assert_eq!(
            paths(
                json!({"space": {"r": {"values": [1]}}, "trials": 3, "objective": obj,
                          "halving": {"min_steps": 15}})
            ),
            ["halving.min_steps"]
        );
        assert_eq!(
            paths(
                json!({"space": {"r": {"values": [1]}}, "trials": 3, "objective": obj,
                          "halving": {"min_steps": 10, "reduction_factor": 1}})
            ),
            ["halving.reduction_factor"]
        );
    }
}
