//! Paired comparison of systems scored on the same examples: execution accuracy per example
//! id, exact McNemar and paired bootstrap, and a warning when n cannot rank the pair.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::score::{exec_vector, suite_vector, ExampleScore, ScoreItem};

use super::stats::{
    bootstrap_mean, paired_compare, ranking_warning, resample_indices, PairedComparison,
};

/// One system's per-example execution correctness (1/0) keyed by example id, over the
/// examples execution accuracy is scored on.
#[derive(Debug, Clone)]
pub struct SystemExec {
    pub name: String,
    pub per_id: BTreeMap<String, f64>,
}

/// A pair of systems and their test.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    #[serde(flatten)]
    pub test: PairedComparison,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Systems scored on the same examples, for paired tests of execution accuracy and, when the
/// test suite ran, of test-suite accuracy (what the evaluate stage and `t2s evaluate` share).
#[derive(Debug, Default)]
pub struct PairedSystems {
    exec: Vec<SystemExec>,
    suite: Vec<SystemExec>,
}

/// Every pair compared, on execution accuracy and on test-suite accuracy (`None` when the
/// suite did not run).
pub struct Compared {
    pub exec: Vec<Comparison>,
    pub suite: Option<Vec<Comparison>>,
}

impl PairedSystems {
    pub fn add(&mut self, name: &str, items: &[ScoreItem], scores: &[ExampleScore]) {
        let exec = exec_vector(items, scores);
        self.exec.push(SystemExec {
            name: name.to_string(),
            per_id: exec,
        });
        if let Some(per_id) = suite_vector(items, scores) {
            self.suite.push(SystemExec {
                name: name.to_string(),
                per_id,
            });
        }
    }

    /// Compare every pair (see [`compare_all`]).
    pub fn compare(&self, resamples: usize, seed: u64) -> Compared {
        Compared {
            exec: compare_all(&self.exec, resamples, seed),
            suite: (!self.suite.is_empty()).then(|| compare_all(&self.suite, resamples, seed)),
        }
    }
}

impl Compared {
    /// Both lists, execution accuracy's first.
    pub fn all(&self) -> impl Iterator<Item = &Comparison> {
        self.exec.iter().chain(self.suite.iter().flatten())
    }

    /// The JSON fields: `comparisons`, and `comparisons_test_suite` when the suite ran.
    pub fn fields(&self) -> serde_json::Result<Map<String, Value>> {
        let mut out = Map::new();
        out.insert("comparisons".into(), serde_json::to_value(&self.exec)?);
        if let Some(suite) = &self.suite {
            out.insert(
                "comparisons_test_suite".into(),
                serde_json::to_value(suite)?,
            );
        }
        Ok(out)
    }
}

/// Compare every pair `(i, j)`, `i < j` (the first system is usually the base model), on the
/// example ids both systems have.
pub fn compare_all(systems: &[SystemExec], resamples: usize, seed: u64) -> Vec<Comparison> {
    let mut out = Vec::new();
    for i in 0..systems.len() {
        for j in i + 1..systems.len() {
            out.push(compare_pair(&systems[j], &systems[i], resamples, seed));
        }
    }
    out
}

/// Compare `a` against `b` (difference = a - b).
pub fn compare_pair(a: &SystemExec, b: &SystemExec, resamples: usize, seed: u64) -> Comparison {
    let ids: Vec<&String> = a
        .per_id
        .keys()
        .filter(|k| b.per_id.contains_key(*k))
        .collect();
    let va: Vec<f64> = ids.iter().map(|k| a.per_id[*k]).collect();
    let vb: Vec<f64> = ids.iter().map(|k| b.per_id[*k]).collect();
    let ix = resample_indices(ids.len(), resamples, seed);
    let test = paired_compare(&va, &vb, &ix);
    let (ea, eb) = (bootstrap_mean(&va, &ix), bootstrap_mean(&vb, &ix));
    let warning = ranking_warning(&a.name, &ea, &b.name, &eb, &test);
    Comparison {
        a: a.name.clone(),
        b: b.name.clone(),
        test,
        warning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_by_id_and_orders_against_the_first() {
        let base = SystemExec {
            name: "base".into(),
            per_id: (0..100)
                .map(|i| (format!("{i}"), (i % 4 == 0) as u8 as f64))
                .collect(),
        };
        let tuned = SystemExec {
            name: "r8".into(),
            per_id: (0..100)
                .map(|i| (format!("{i}"), (i % 10 != 0) as u8 as f64))
                .collect(),
        };
        let c = compare_all(&[base, tuned], 200, 1);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].a.as_str(), c[0].b.as_str()), ("r8", "base"));
        assert!((c[0].test.diff - (0.90 - 0.25)).abs() < 1e-12);
        assert!(c[0].test.mcnemar_p < 1e-6 && c[0].warning.is_none());
    }
}
