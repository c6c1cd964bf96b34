//! A stage's `search:` block in a pipeline file: read and checked where it was written
//! (file:line:column and the field path), and the trials it gives the searched stage. The
//! search itself (rounds, proposals, halving) is `crate::search`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::diag::{suggest, Collector};
use super::graph::StageGraph;
use super::raw::RawStage;
use crate::search::driver::{first_round, Trial};
use crate::search::spec::{parse, SpecProblem, StageFacts};
use crate::search::SearchSpec;
use crate::stages::StageKind;

/// Read the pipeline's search (at most one), check it against the stages, and give the
/// searched stage its trials: `trials` when the search driver has them, else the first
/// round's.
pub fn read(
    stages: &mut [RawStage],
    g: &StageGraph,
    kinds: &[Option<&'static dyn StageKind>],
    trials: Option<&[Trial]>,
    diags: &mut Collector,
) -> Option<SearchSpec> {
    let searched: Vec<usize> = (0..stages.len())
        .filter(|&i| stages[i].search.is_some())
        .collect();
    let &si = searched.first()?;
    for &other in &searched[1..] {
        let s = &stages[other];
        diags.add(
            s.search.as_ref().map_or(s.name.loc, |x| x.loc),
            &format!("stages.{}.search", s.name.v),
            format!(
                "a pipeline holds one search; stage `{}` already has one",
                stages[si].name.v
            ),
            Some("search one stage per pipeline file".into()),
        );
    }
    let spec = check(&stages[si], si, stages, g, kinds, diags)?;
    let given: Vec<Trial> = match trials {
        Some(t) => t.to_vec(),
        None => first_round(&spec),
    };
    stages[si].trials = given.iter().map(Trial::matrix).collect();
    Some(spec)
}

fn check(
    s: &RawStage,
    si: usize,
    stages: &[RawStage],
    g: &StageGraph,
    kinds: &[Option<&'static dyn StageKind>],
    diags: &mut Collector,
) -> Option<SearchSpec> {
    let block = s.search.as_ref()?;
    let base = format!("stages.{}.search", s.name.v);
    let mut ok = true;
    let mut report = |p: SpecProblem| {
        let path = if p.path.is_empty() {
            base.clone()
        } else {
            format!("{base}.{}", p.path)
        };
        diags.add(
            s.nearest_loc(&path, 0).unwrap_or(block.loc),
            &path,
            p.message,
            p.hint,
        );
    };
    if !s.matrix.is_empty() {
        ok = false;
        report(SpecProblem {
            path: String::new(),
            message: format!("stage `{}` has both `matrix` and `search`", s.name.v),
            hint: Some("make the matrix values a search dimension (`{values: [...]}`)".into()),
        });
    }
    if s.gather {
        ok = false;
        report(SpecProblem {
            path: String::new(),
            message: "a searched stage cannot `gather`".into(),
            hint: Some("search the stage whose params you tune".into()),
        });
    }
    let facts = StageFacts {
        name: s.name.v.clone(),
        train_steps: kinds[si].filter(|k| k.kind() == "train").map(|k| {
            (
                int_param(s, k, "max_steps"),
                int_param(s, k, "eval_steps").max(0) as u64,
            )
        }),
    };
    let spec = match parse(&block.v, &facts) {
        Ok(spec) => spec,
        Err(problems) => {
            problems.into_iter().for_each(&mut report);
            return None;
        }
    };
    let names: Vec<&str> = stages.iter().map(|x| x.name.v.as_str()).collect();
    match names.iter().position(|n| *n == spec.objective.stage) {
        None => {
            ok = false;
            report(SpecProblem {
                path: "objective.stage".into(),
                message: format!("no stage is named `{}`", spec.objective.stage),
                hint: Some(suggest(&spec.objective.stage, "stages", &names)),
            });
        }
        Some(oi) if oi != si && !upstream(g, oi).contains(&si) => {
            ok = false;
            report(SpecProblem {
                path: "objective.stage".into(),
                message: format!(
                    "stage `{}` does not depend on the searched stage `{}`, so it cannot score its trials",
                    spec.objective.stage, s.name.v
                ),
                hint: Some(format!("name `{}` or a stage downstream of it", s.name.v)),
            });
        }
        Some(oi) => {
            ok &= known_metric(
                kinds[oi],
                &spec.objective.metric,
                "objective.metric",
                &mut report,
            );
        }
    }
    if let Some((_, h)) = &spec.halving {
        ok &= known_metric(kinds[si], &h.metric, "halving.metric", &mut report);
    }
    ok.then_some(spec)
}

/// Whether a node of `kind` reports `metric`; if not, the problem is reported.
fn known_metric(
    kind: Option<&'static dyn StageKind>,
    metric: &str,
    path: &str,
    report: &mut impl FnMut(SpecProblem),
) -> bool {
    let Some(kind) = kind else { return true };
    let Some(known) = kind.metrics() else {
        return true; // free-form (a command's `::metric` lines)
    };
    if known.iter().any(|m| m == metric) {
        return true;
    }
    let names: Vec<&str> = known.iter().map(String::as_str).collect();
    report(SpecProblem {
        path: path.into(),
        message: format!("a `{}` node reports no metric `{metric}`", kind.kind()),
        hint: Some(if names.is_empty() {
            format!("`{}` nodes report no metrics: optimize a metric of a stage that does (train, evaluate, command)", kind.kind())
        } else {
            suggest(metric, "its metrics", &names)
        }),
    });
    false
}

/// A whole-number param of the stage as written, else the kind's default (-1 when neither).
fn int_param(s: &RawStage, kind: &dyn StageKind, name: &str) -> i64 {
    let written = s.params.iter().find(|(k, _)| k.v == name).map(|(_, v)| v);
    let default = kind.params().spec(name).and_then(|p| p.default.as_ref());
    written.or(default).and_then(Value::as_i64).unwrap_or(-1)
}

/// Every stage `i` depends on, directly or not.
fn upstream(g: &StageGraph, i: usize) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    let mut todo = vec![i];
    while let Some(x) = todo.pop() {
        for &n in &g.needs[x] {
            if out.insert(n) {
                todo.push(n);
            }
        }
    }
    out
}
