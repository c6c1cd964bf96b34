//! What a report shows, independent of where it came from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::eval::outcome::Outcome;

/// A metric value with an optional 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    pub value: f64,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

impl MetricValue {
    pub fn point(value: f64) -> Self {
        Self {
            value,
            lo: None,
            hi: None,
        }
    }
    pub fn with_ci(value: f64, lo: f64, hi: f64) -> Self {
        Self {
            value,
            lo: Some(lo),
            hi: Some(hi),
        }
    }
}

/// One row of a breakdown table: a class (e.g. `aggregation`) and its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    pub class: String,
    pub n: usize,
    pub value: f64,
}

/// A failed prediction, shown as an example of its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureExample {
    pub outcome: Outcome,
    /// The natural-language request.
    pub request: String,
    pub gold: String,
    pub prediction: String,
    /// The scorer's reason, when the prediction did not run as a query of the gold's kind.
    pub error: Option<String>,
}

/// One evaluated model: the base or an adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Display name, e.g. `base` or `lora_r=8`.
    pub name: String,
    /// Node id of its evaluate node.
    pub node: String,
    /// Number of scored examples.
    pub n: usize,
    /// Metric name → value (e.g. `execution_accuracy`, `bleu`, `rougeL`).
    pub metrics: BTreeMap<String, MetricValue>,
    /// Dimension (`sql_complexity`, `sql_task_type`, `domain`) → per-class execution accuracy.
    pub breakdowns: BTreeMap<String, Vec<Breakdown>>,
    /// Scored predictions per outcome (right, wrong rows, syntax error...), when the
    /// per-prediction results were read.
    #[serde(default)]
    pub outcomes: BTreeMap<Outcome, usize>,
    /// The first failures of each outcome (up to [`EXAMPLES_PER_OUTCOME`]), in the order of
    /// the predictions file.
    #[serde(default)]
    pub failures: Vec<FailureExample>,
    /// Execution-correct predictions the test suite marks wrong (false positives of execution
    /// accuracy caught); `None` when no suite was scored.
    #[serde(default)]
    pub suite_caught: Option<usize>,
    /// The first of them, as examples (`error` says on which instance).
    #[serde(default)]
    pub suite_caught_examples: Vec<FailureExample>,
}

/// Failed predictions kept per outcome and variant, as examples.
pub const EXAMPLES_PER_OUTCOME: usize = 2;

/// A paired comparison of two variants on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedComparison {
    pub a: String,
    pub b: String,
    pub metric: String,
    /// Mean of a − b over paired examples.
    pub diff: f64,
    pub lo: f64,
    pub hi: f64,
    pub p_value: f64,
    pub n: usize,
}

/// Train and eval loss over steps for one training node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossCurve {
    pub name: String,
    pub train: Vec<(i64, f64)>,
    pub eval: Vec<(i64, f64)>,
}

/// One executed or cached node of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub kind: String,
    /// ran, cached, resumed, failed, skipped
    pub status: String,
    pub key: String,
    pub duration_s: Option<f64>,
}

/// The run being reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub id: i64,
    pub pipeline: String,
    pub started: String,
    pub ended: Option<String>,
    pub status: String,
    pub host: String,
    pub t2s_version: String,
    /// Other provenance facts (device, libtorch version, git revision...).
    pub facts: BTreeMap<String, String>,
}

/// Everything a report shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    pub title: String,
    pub run: RunInfo,
    /// A second run for `--compare`, shown side by side when present.
    pub compare: Option<Box<ReportData>>,
    pub variants: Vec<Variant>,
    pub paired: Vec<PairedComparison>,
    pub loss_curves: Vec<LossCurve>,
    pub nodes: Vec<NodeInfo>,
    /// PNG files from the EDA stage (embedded in the HTML).
    pub eda_figures: Vec<PathBuf>,
    /// Free-text notes (e.g. the confound of a fixed alpha across ranks).
    pub notes: Vec<String>,
    /// The pipeline's search: its trials and result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<crate::search::Outcome>,
}

/// Metrics shown in the main table, in order, with display names.
pub const MAIN_METRICS: [(&str, &str); 9] = [
    ("execution_accuracy", "Execution accuracy"),
    ("test_suite_accuracy", "Test-suite accuracy"),
    ("exact_match", "Exact match"),
    ("valid_sql", "Valid SQL"),
    ("bleu", "BLEU"),
    ("sacrebleu", "sacreBLEU"),
    ("rouge1", "ROUGE-1"),
    ("rouge2", "ROUGE-2"),
    ("rougeL", "ROUGE-L"),
];

/// One run of a name split for natural ordering: digits compare as numbers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum NamePart {
    Number(u64),
    Text(String),
}

/// The order variants are shown in: `base` first, then natural order, so `lora_r=4` comes
/// before `lora_r=16` (a plain string sort puts 16 first).
pub fn display_order(name: &str) -> (bool, Vec<NamePart>) {
    let mut parts = Vec::new();
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        let digits = c.is_ascii_digit();
        let end = rest
            .find(|ch: char| ch.is_ascii_digit() != digits)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        parts.push(match run.parse::<u64>() {
            Ok(n) if digits => NamePart::Number(n),
            _ => NamePart::Text(run.to_string()),
        });
        rest = tail;
    }
    (name != "base", parts)
}

#[cfg(test)]
mod tests {
    use super::display_order;

    #[test]
    fn variants_sort_base_first_then_by_rank_numerically() {
        let mut names = vec![
            "lora_r=16",
            "lora_r=4",
            "base",
            "lora_r=8",
            "lora_r=8 (run 2)",
        ];
        names.sort_by_key(|n| display_order(n));
        assert_eq!(
            names,
            [
                "base",
                "lora_r=4",
                "lora_r=8",
                "lora_r=8 (run 2)",
                "lora_r=16"
            ]
        );
    }
}
