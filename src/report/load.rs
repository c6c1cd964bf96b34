//! Fill a `ReportData` from the artifacts of a run: `evaluate` outputs (`metrics.json`,
//! `predictions.jsonl`), `train` outputs (`trainer_state.json`) and `eda` figures. Paired tests
//! are recomputed across every evaluated system from the per-example execution results (and
//! test-suite results, when scored), so systems evaluated in separate nodes (base and each
//! adapter) are still compared pairwise.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::model::{
    Breakdown, FailureExample, LossCurve, MetricValue, Outcome, PairedComparison, Variant,
    EXAMPLES_PER_OUTCOME,
};
use crate::eval::compare::{compare_all, SystemExec};

/// Metric keys of an evaluate report (`eval::score::Report`) → report metric names.
const METRIC_KEYS: [(&str, &str); 8] = [
    ("execution_accuracy", "execution_accuracy"),
    ("exact_match", "exact_match"),
    ("valid_sql", "valid_sql"),
    ("bleu", "bleu"),
    ("sacrebleu", "sacrebleu"),
    ("rouge1", "rouge1"),
    ("rouge2", "rouge2"),
    ("rougeL", "rougeL"),
];

/// What one `evaluate` artifact contributes.
pub struct Evaluated {
    pub variants: Vec<Variant>,
    pub execs: Vec<SystemExec>,
    /// Per-example test-suite correctness (systems scored without the suite absent).
    pub suite_execs: Vec<SystemExec>,
    /// Devices the systems were generated on (`cpu`, `cuda:0`...).
    pub devices: Vec<String>,
}

/// Read an evaluate artifact directory (written by `stages::evaluate`).
pub fn evaluate_dir(dir: &Path, node: &str) -> anyhow::Result<Evaluated> {
    let path = dir.join("metrics.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let metrics: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let systems = metrics
        .get("systems")
        .and_then(Value::as_object)
        .with_context(|| format!("{}: no `systems` object", path.display()))?;
    let mut variants = Vec::new();
    let mut devices = Vec::new();
    for (name, report) in systems {
        variants.push(variant(name, node, report));
        if let Some(d) = report.pointer("/generation/device").and_then(Value::as_str) {
            devices.push(d.to_string());
        }
    }
    let read = read_predictions(&dir.join("predictions.jsonl"))?;
    let mut outcomes = read.outcomes;
    for v in &mut variants {
        if let Some(o) = outcomes.remove(&v.name) {
            v.outcomes = o.counts;
            v.failures = o.examples;
            v.suite_caught = o.caught;
            v.suite_caught_examples = o.caught_examples;
        }
    }
    Ok(Evaluated {
        variants,
        execs: read.execs,
        suite_execs: read.suite_execs,
        devices,
    })
}

fn variant(name: &str, node: &str, report: &Value) -> Variant {
    let mut metrics = BTreeMap::new();
    for (src, dst) in METRIC_KEYS {
        let Some(e) = report.get(src) else { continue };
        let Some(value) = e.get("value").and_then(Value::as_f64) else {
            continue;
        };
        let (lo, hi) = (
            e.get("ci_low").and_then(Value::as_f64),
            e.get("ci_high").and_then(Value::as_f64),
        );
        metrics.insert(dst.to_string(), MetricValue { value, lo, hi });
    }
    if let Some(e) = report.pointer("/test_suite/accuracy") {
        if let Some(value) = e.get("value").and_then(Value::as_f64) {
            let (lo, hi) = (
                e.get("ci_low").and_then(Value::as_f64),
                e.get("ci_high").and_then(Value::as_f64),
            );
            metrics.insert(
                "test_suite_accuracy".to_string(),
                MetricValue { value, lo, hi },
            );
        }
    }
    let mut breakdowns = BTreeMap::new();
    if let Some(dims) = report.get("breakdowns").and_then(Value::as_object) {
        for (dim, classes) in dims {
            let Some(classes) = classes.as_object() else {
                continue;
            };
            let rows = classes
                .iter()
                .filter_map(|(class, g)| {
                    let value = g.get("execution_accuracy").and_then(Value::as_f64)?;
                    let n = g
                        .get("n_exec")
                        .or_else(|| g.get("n"))
                        .and_then(Value::as_u64)
                        .unwrap_or(0) as usize;
                    Some(Breakdown {
                        class: class.clone(),
                        n,
                        value,
                    })
                })
                .collect();
            breakdowns.insert(dim.clone(), rows);
        }
    }
    Variant {
        name: display_name(name),
        node: node.to_string(),
        n: report.get("n").and_then(Value::as_u64).unwrap_or(0) as usize,
        metrics,
        breakdowns,
        outcomes: BTreeMap::new(),
        failures: Vec::new(),
        suite_caught: None,
        suite_caught_examples: Vec::new(),
    }
}

/// `train[lora_r=4]` → `lora_r=4`; other names unchanged.
pub fn display_name(system: &str) -> String {
    match (system.find('['), system.strip_suffix(']')) {
        (Some(i), Some(s)) => s[i + 1..].to_string(),
        _ => system.to_string(),
    }
}

/// One system's outcomes over its scored predictions, with the first failures of each.
#[derive(Default)]
struct Outcomes {
    counts: BTreeMap<Outcome, usize>,
    examples: Vec<FailureExample>,
    /// Execution-correct predictions the test suite marks wrong (`None`: no suite scored).
    caught: Option<usize>,
    caught_examples: Vec<FailureExample>,
}

fn text_at(v: &Value, p: &str) -> String {
    v.pointer(p)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

impl Outcomes {
    /// Count a false positive of execution accuracy the suite caught (`suite`: the line's
    /// `scores.test_suite`), keeping the first few as examples.
    fn add_suite(&mut self, v: &Value, suite: &Value, exec_correct: bool) {
        let caught = self.caught.get_or_insert(0);
        if !exec_correct || suite.get("correct").and_then(Value::as_bool) != Some(false) {
            return;
        }
        *caught += 1;
        if self.caught_examples.len() < EXAMPLES_PER_OUTCOME {
            let instance = suite.get("failed_instance").and_then(Value::as_u64);
            let why = match (instance, suite.get("error").and_then(Value::as_str)) {
                (Some(i), Some(e)) => format!("fails on test-suite instance {}: {e}", i + 1),
                (Some(i), None) => {
                    format!("differs from the gold on test-suite instance {}", i + 1)
                }
                (None, _) => "wrong on the test suite".to_string(),
            };
            self.caught_examples.push(FailureExample {
                outcome: Outcome::Correct,
                request: text_at(v, "/row/sql_prompt"),
                gold: text_at(v, "/row/sql"),
                prediction: text_at(v, "/prediction"),
                error: Some(why),
            });
        }
    }

    fn add(&mut self, v: &Value, exec: Option<&Value>, correct: bool) {
        let flag = |k: &str| exec.and_then(|e| e.get(k)).and_then(Value::as_bool);
        let error = exec
            .and_then(|e| e.get("pred_error"))
            .and_then(Value::as_str);
        let outcome = Outcome::classify(correct, flag("valid_sql").unwrap_or(false), error);
        *self.counts.entry(outcome).or_default() += 1;
        let shown = self
            .examples
            .iter()
            .filter(|e| e.outcome == outcome)
            .count();
        if outcome != Outcome::Correct && shown < EXAMPLES_PER_OUTCOME {
            self.examples.push(FailureExample {
                outcome,
                request: text_at(v, "/row/sql_prompt"),
                gold: text_at(v, "/row/sql"),
                prediction: text_at(v, "/prediction"),
                error: error.map(String::from),
            });
        }
    }
}

/// What `predictions.jsonl` tells, per system (by display name).
struct PerPrediction {
    execs: Vec<SystemExec>,
    suite_execs: Vec<SystemExec>,
    outcomes: BTreeMap<String, Outcomes>,
}

/// Insert `id → correct` into the system `name` of `list`, adding the system when new.
fn record(list: &mut Vec<SystemExec>, name: &str, id: String, correct: bool) {
    let slot = match list.iter().position(|s| s.name == name) {
        Some(p) => p,
        None => {
            list.push(SystemExec {
                name: name.to_string(),
                per_id: BTreeMap::new(),
            });
            list.len() - 1
        }
    };
    list[slot]
        .per_id
        .insert(id, if correct { 1.0 } else { 0.0 });
}

/// Per-system, per-example execution (and test-suite) correctness from `predictions.jsonl`,
/// over the examples execution accuracy is scored on (gold runs and is deterministic), and
/// each system's outcomes over them.
fn read_predictions(path: &Path) -> anyhow::Result<PerPrediction> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut by_system: Vec<SystemExec> = Vec::new();
    let mut suite_execs: Vec<SystemExec> = Vec::new();
    let mut outcomes: BTreeMap<String, Outcomes> = BTreeMap::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        let system = v.get("system").and_then(Value::as_str).unwrap_or("base");
        let id = match v.pointer("/row/id") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => continue,
        };
        let exec = v.pointer("/scores/exec");
        let bucket = exec
            .and_then(|e| e.get("bucket"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if !matches!(
            bucket,
            "gold_empty" | "gold_nonempty" | "GoldEmpty" | "GoldNonempty"
        ) {
            continue;
        }
        let correct = exec
            .and_then(|e| e.get("correct"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let name = display_name(system);
        let o = outcomes.entry(name.clone()).or_default();
        o.add(&v, exec, correct);
        if let Some(suite) = v.pointer("/scores/test_suite") {
            o.add_suite(&v, suite, correct);
            let ts = suite.get("correct").and_then(Value::as_bool) == Some(true);
            record(&mut suite_execs, &name, id.clone(), ts);
        }
        record(&mut by_system, &name, id, correct);
    }
    Ok(PerPrediction {
        execs: by_system,
        suite_execs,
        outcomes,
    })
}

/// Paired tests of every system against every other, base first so diffs read "adapter − base":
/// on execution accuracy, then on test-suite accuracy where the suite was scored.
pub fn paired(
    execs: Vec<SystemExec>,
    suite_execs: Vec<SystemExec>,
    resamples: usize,
    seed: u64,
) -> Vec<PairedComparison> {
    let mut out = paired_on("execution_accuracy", execs, resamples, seed);
    out.extend(paired_on(
        "test_suite_accuracy",
        suite_execs,
        resamples,
        seed,
    ));
    out
}

fn paired_on(
    metric: &str,
    mut execs: Vec<SystemExec>,
    resamples: usize,
    seed: u64,
) -> Vec<PairedComparison> {
    execs.sort_by_key(|s| super::model::display_order(&s.name));
    compare_all(&execs, resamples, seed)
        .into_iter()
        .map(|c| PairedComparison {
            a: c.a,
            b: c.b,
            metric: metric.into(),
            diff: c.test.diff,
            lo: c.test.diff_ci_low,
            hi: c.test.diff_ci_high,
            p_value: c.test.mcnemar_p,
            n: c.test.n,
        })
        .collect()
}

/// Loss curves from a train artifact's `trainer_state.json` (None when absent).
pub fn train_dir(dir: &Path, name: &str) -> anyhow::Result<Option<LossCurve>> {
    let path = dir.join("trainer_state.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let state: crate::train_plan::state::TrainerState =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut curve = LossCurve {
        name: display_name(name),
        train: Vec::new(),
        eval: Vec::new(),
    };
    for e in &state.log_history {
        if let Some(l) = e.loss {
            curve.train.push((e.step as i64, l));
        }
        if let Some(l) = e.eval_loss {
            curve.eval.push((e.step as i64, l));
        }
    }
    Ok(Some(curve))
}

/// The device a train artifact was trained on, from its `train_result.json` (absent in
/// artifacts made before that file existed).
pub fn train_device(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(TRAIN_RESULT)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("device")?.as_str().map(String::from)
}

/// The worker's result of a train node, kept beside the model.
pub const TRAIN_RESULT: &str = "train_result.json";

/// What a `model` artifact is, in one line, from the provenance file `scripts/fetch_gemma.py`
/// writes beside weights it made (e.g. "google/gemma-3-270m at gguf-q4_k_m-a5fd3b62230a: GGUF
/// Q4_K_M ..., dequantized (transformers ..., gguf ...)"), else, for a hub model, its repo,
/// revision and commit; `None` for other model directories.
pub fn model_provenance(dir: &Path) -> Option<String> {
    let Ok(text) = std::fs::read_to_string(dir.join(crate::stages::model::PROVENANCE_FILE)) else {
        return hub_source(dir);
    };
    let v: Value = serde_json::from_str(&text).ok()?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?");
    Some(format!(
        "{} at {}: {}, {} weights ({})",
        field("model"),
        field("revision"),
        field("source"),
        field("dtype"),
        field("dequantized_by")
    ))
}

/// "google/gemma-3-1b-it at main (commit ...)" from a hub model artifact's source file.
fn hub_source(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(crate::stages::model::HUB_SOURCE_FILE)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?");
    Some(format!(
        "{} at {} (commit {})",
        field("repo"),
        field("revision"),
        field("commit")
    ))
}

/// PNG figures of an EDA artifact, sorted by name.
pub fn eda_figures(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "png") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// One line of `predictions.jsonl` as the evaluate stage writes it.
    fn line(system: &str, id: u64, pred: &str, exec: Value) -> String {
        json!({
            "system": system,
            "prediction": pred,
            "row": {"id": id, "sql_prompt": format!("request {id}"), "sql": "SELECT 1;"},
            "scores": {"exec": exec},
        })
        .to_string()
    }

    #[test]
    fn each_variant_gets_its_outcomes_and_first_failures() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("metrics.json"),
            json!({"systems": {
                "base": {"n": 5, "execution_accuracy": {"value": 0.2}},
                "train[lora_r=4]": {"n": 5, "execution_accuracy": {"value": 0.4}},
            }})
            .to_string(),
        )
        .unwrap();
        let scored = |correct: bool, valid: bool, error: Option<&str>| {
            json!({"bucket": "gold_nonempty", "correct": correct, "valid_sql": valid,
                   "pred_error": error})
        };
        let wrong = scored(false, true, None);
        let lines = [
            line("base", 1, "SELECT 1;", scored(true, true, None)),
            line("base", 2, "SELECT 2;", wrong.clone()),
            line("base", 3, "SELECT 3;", wrong.clone()),
            line("base", 4, "SELECT 4;", wrong.clone()),
            line(
                "base",
                5,
                "SELEC",
                scored(false, false, Some("sqlite: near \"SELEC\": syntax error")),
            ),
            // Not scored (the gold fails): counted nowhere.
            line(
                "base",
                6,
                "SELECT 6;",
                json!({"bucket": "gold_fails", "correct": false}),
            ),
            line("train[lora_r=4]", 1, "SELECT 1;", scored(true, true, None)),
            line("train[lora_r=4]", 2, "SELECT 2;", scored(true, true, None)),
            line(
                "train[lora_r=4]",
                3,
                "",
                scored(false, false, Some("the SQL is empty")),
            ),
        ];
        std::fs::write(dir.path().join("predictions.jsonl"), lines.join("\n")).unwrap();

        let e = evaluate_dir(dir.path(), "evaluate").unwrap();
        let by = |name: &str| e.variants.iter().find(|v| v.name == name).unwrap();
        let base = by("base");
        assert_eq!(
            base.outcomes,
            BTreeMap::from([
                (Outcome::Correct, 1),
                (Outcome::WrongResult, 3),
                (Outcome::SyntaxError, 1)
            ])
        );
        // Two examples of a kind at most, in file order; none of the right ones.
        let shown: Vec<(Outcome, &str)> = base
            .failures
            .iter()
            .map(|f| (f.outcome, f.request.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                (Outcome::WrongResult, "request 2"),
                (Outcome::WrongResult, "request 3"),
                (Outcome::SyntaxError, "request 5")
            ]
        );
        assert_eq!(base.failures[2].prediction, "SELEC");
        assert!(base.failures[2]
            .error
            .as_deref()
            .unwrap()
            .contains("syntax error"));
        let lora = by("lora_r=4");
        assert_eq!(
            lora.outcomes,
            BTreeMap::from([(Outcome::Correct, 2), (Outcome::NoSql, 1)])
        );
    }

    #[test]
    fn a_hub_model_is_shown_with_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(model_provenance(dir.path()), None);
        std::fs::write(
            dir.path().join(crate::stages::model::HUB_SOURCE_FILE),
            json!({"repo": "google/gemma-3-1b-it", "revision": "main", "commit": "c0ffee"})
                .to_string(),
        )
        .unwrap();
        assert_eq!(
            model_provenance(dir.path()).as_deref(),
            Some("google/gemma-3-1b-it at main (commit c0ffee)")
        );
    }

    /// Test-suite verdicts in `predictions.jsonl`: the metric, the false positives caught
    /// (execution-correct, suite-wrong) with examples, paired tests on both metrics, and the
    /// Markdown showing them.
    #[test]
    fn test_suite_results_reach_metrics_failures_and_paired_tests() {
        let dir = tempfile::tempdir().unwrap();
        let ts = json!({"accuracy": {"value": 0.5, "ci_low": 0.1, "ci_high": 0.9}});
        std::fs::write(
            dir.path().join("metrics.json"),
            json!({"systems": {
                "base": {"n": 4, "execution_accuracy": {"value": 0.75}, "test_suite": ts},
                "train[lora_r=4]": {"n": 4, "execution_accuracy": {"value": 1.0}},
            }})
            .to_string(),
        )
        .unwrap();
        let exec = |correct: bool| json!({"bucket": "gold_nonempty", "correct": correct, "valid_sql": true});
        let with_suite = |id: u64, ex: bool, ts: bool| {
            let mut v: Value =
                serde_json::from_str(&line("base", id, "SELECT 2;", exec(ex))).unwrap();
            v["scores"]["test_suite"] = json!({"correct": ts, "failed_instance": 2});
            v.to_string()
        };
        let lines = [
            with_suite(1, true, true),
            with_suite(2, true, false),
            with_suite(3, true, true),
            with_suite(4, false, false),
            line("train[lora_r=4]", 1, "SELECT 1;", exec(true)),
        ];
        std::fs::write(dir.path().join("predictions.jsonl"), lines.join("\n")).unwrap();
        let e = evaluate_dir(dir.path(), "evaluate").unwrap();
        let base = e.variants.iter().find(|v| v.name == "base").unwrap();
        assert_eq!(base.metrics["test_suite_accuracy"].value, 0.5);
        assert_eq!(base.suite_caught, Some(1));
        assert_eq!(base.suite_caught_examples.len(), 1);
        assert_eq!(base.suite_caught_examples[0].request, "request 2");
        assert!(base.suite_caught_examples[0]
            .error
            .as_deref()
            .unwrap()
            .contains("instance 3"));
        let lora = e.variants.iter().find(|v| v.name == "lora_r=4").unwrap();
        assert_eq!(lora.suite_caught, None);
        assert_eq!(e.suite_execs.len(), 1);
        assert_eq!(e.suite_execs[0].per_id.values().sum::<f64>(), 2.0);
        let p = paired(e.execs.clone(), e.suite_execs.clone(), 50, 0);
        assert!(p.iter().all(|c| c.metric == "execution_accuracy"));
        let mut two = e.suite_execs.clone();
        two.push(crate::eval::compare::SystemExec {
            name: "lora_r=4".into(),
            per_id: BTreeMap::from([("1".to_string(), 1.0)]),
        });
        let p = paired(e.execs, two, 50, 0);
        assert!(p.iter().any(|c| c.metric == "test_suite_accuracy"));
    }
}
