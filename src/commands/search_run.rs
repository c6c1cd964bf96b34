//! `t2s run` of a pipeline with a `search:`: the search driver's rounds, each run by the
//! scheduler as the pipeline holding the trials so far (finished ones are cache hits), then
//! the whole pipeline with every trial and the search's outcome in the report. One run in the
//! tracking DB; a node keeps what it did the first time the run passed it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::cache::{Manifest, Store};
use crate::exec::plan::{self, PlanOptions};
use crate::exec::{NodeReport, RunOutcome};
use crate::pipeline::{Node, Pipeline};
use crate::runs::{NodeStatus, RunStatus};
use crate::search::driver::{drive, Runner, Trial};
use crate::search::{Outcome, SearchSpec, RUNG_KEY};
use crate::stages::report::SEARCH_PARAM;

use super::run::Session;

/// What a search run did: the last pipeline (every trial) and every node's report.
pub struct SearchRun {
    pub pipeline: Pipeline,
    pub outcome: RunOutcome,
}

/// Run the search of `first` (the pipeline with the first round's trials), then the whole
/// pipeline with the user's `--only`/`--until`/`--force`.
pub fn run(session: &Session<'_>, first: Pipeline, opts: &PlanOptions) -> SearchRun {
    let spec = first.search.clone().expect("a pipeline with a search");
    let mut rounds = Rounds {
        session,
        first: &first,
        opts,
        merged: Merged::default(),
        forced: BTreeSet::new(),
        instances: Vec::new(),
        status: None,
    };
    let searched = drive(&spec, &mut rounds);
    let search = match searched {
        Ok(s) => s,
        Err(e) => return rounds.give_up(first.clone(), e),
    };
    let every_trial = first.with_trials(&session.overrides, &rounds.instances);
    let mut last = match every_trial {
        Ok(p) => p,
        Err(e) => return rounds.give_up(first.clone(), e.into()),
    };
    with_outcome(&mut last, &search);
    let result = plan::select(&last, opts)
        .map_err(anyhow::Error::from)
        .and_then(|selection| Ok((selection, rounds.force_once(&last)?)));
    match result {
        Ok((selection, force)) => {
            let out = session.run(&last, selection, force);
            rounds.merged.add(&out);
            rounds.status = Some(out.status);
        }
        Err(e) => return rounds.give_up(last, e),
    }
    let outcome = rounds
        .merged
        .outcome(rounds.status.unwrap_or(RunStatus::Succeeded));
    if outcome.status == RunStatus::Succeeded {
        crate::exec::progress::say(format_args!("{}", summary_table(&search, &spec)));
    }
    SearchRun {
        pipeline: last,
        outcome,
    }
}

/// Give the pipeline's reports the search's outcome (their Search section).
fn with_outcome(p: &mut Pipeline, search: &Outcome) {
    let summary = serde_json::to_value(search).unwrap_or(Value::Null);
    for n in p.nodes.iter_mut().filter(|n| n.kind == "report") {
        n.params.insert(SEARCH_PARAM.to_string(), summary.clone());
    }
}

/// The pipeline a search run leaves, replayed from the cache without running anything (for
/// `status`, `dag` and `run --dry-run`): the rounds whose results are cached, then the trials
/// of the first round that is not (what a run would do next). A pipeline without a search is
/// returned as it is.
pub fn replay(store: &Store, first: Pipeline, overrides: &[String]) -> anyhow::Result<Pipeline> {
    let Some(spec) = first.search.clone() else {
        return Ok(first);
    };
    let mut r = Replay {
        store,
        first: &first,
        overrides,
        instances: Vec::new(),
    };
    let done = drive(&spec, &mut r);
    if r.instances.is_empty() {
        return Ok(first);
    }
    let mut p = first.with_trials(overrides, &r.instances)?;
    if let Ok(search) = done {
        with_outcome(&mut p, &search);
    }
    Ok(p)
}

/// A round's pipeline: the text the search began with, `instances` as the searched stage's
/// trials (also kept in `seen`: what the pipeline held last, when the search stops).
fn load_round(
    first: &Pipeline,
    overrides: &[String],
    instances: &[Trial],
    seen: &mut Vec<Trial>,
) -> anyhow::Result<Pipeline> {
    *seen = instances.to_vec();
    Ok(first.with_trials(overrides, instances)?)
}

struct Replay<'a> {
    store: &'a Store,
    first: &'a Pipeline,
    overrides: &'a [String],
    instances: Vec<Trial>,
}

impl Runner for Replay<'_> {
    fn run(
        &mut self,
        instances: &[Trial],
        wanted: &[Trial],
    ) -> anyhow::Result<Vec<BTreeMap<String, f64>>> {
        let p = load_round(self.first, self.overrides, instances, &mut self.instances)?;
        let spec = p.search.as_ref().expect("the search's pipeline");
        let planned = plan::plan(&p, self.store, &PlanOptions::default())?;
        wanted
            .iter()
            .map(|t| {
                let id = &target(&p, spec, t)?.id;
                match planned.iter().find(|n| &n.node == id) {
                    Some(plan::Planned {
                        decision: plan::Decision::Hit,
                        key: Some(key),
                        ..
                    }) => Ok(Manifest::read(&self.store.object_dir(key))?.metrics),
                    _ => anyhow::bail!("{id} is not cached"),
                }
            })
            .collect()
    }
}

struct Rounds<'s, 'a> {
    session: &'s Session<'a>,
    first: &'s Pipeline,
    opts: &'s PlanOptions,
    merged: Merged,
    /// Node ids `--force` already recomputed in an earlier round (forced once per run).
    forced: BTreeSet<String>,
    /// The searched stage's instances so far.
    instances: Vec<Trial>,
    /// A round's run status when it did not succeed.
    status: Option<RunStatus>,
}

impl Rounds<'_, '_> {
    /// `--force` patterns matching nodes of `p` not forced before in this run.
    fn force_once(&mut self, p: &Pipeline) -> anyhow::Result<BTreeSet<usize>> {
        let all = plan::matching(p, &self.opts.force, "--force")?;
        let fresh: BTreeSet<usize> = all
            .into_iter()
            .filter(|&i| !self.forced.contains(&p.nodes[i].id))
            .collect();
        self.forced
            .extend(fresh.iter().map(|&i| p.nodes[i].id.clone()));
        Ok(fresh)
    }

    /// The run stops at `e`: what ran so far, and the error as a failed node of the search.
    fn give_up(mut self, p: Pipeline, e: anyhow::Error) -> SearchRun {
        let status = self.status.unwrap_or(RunStatus::Failed);
        if status == RunStatus::Failed && self.status.is_none() {
            let stage = p.search.as_ref().map_or("search", |s| s.stage.as_str());
            self.merged.nodes.push(NodeReport {
                node: format!("search:{stage}"),
                status: NodeStatus::Failed,
                key: None,
                duration: Default::default(),
                detail: format!("{e:#}"),
                dir: None,
                fetched: false,
                pushed: None,
                metrics: BTreeMap::new(),
            });
        }
        SearchRun {
            outcome: self.merged.outcome(status),
            pipeline: p,
        }
    }
}

impl Runner for Rounds<'_, '_> {
    fn run(
        &mut self,
        instances: &[Trial],
        wanted: &[Trial],
    ) -> anyhow::Result<Vec<BTreeMap<String, f64>>> {
        let p = load_round(
            self.first,
            &self.session.overrides,
            instances,
            &mut self.instances,
        )?;
        let spec = p.search.as_ref().expect("the search's pipeline");
        let targets: Vec<String> = wanted
            .iter()
            .map(|t| target(&p, spec, t).map(|n| n.id.clone()))
            .collect::<anyhow::Result<_>>()?;
        let selection = plan::select(
            &p,
            &PlanOptions {
                until: targets.clone(),
                only: Vec::new(),
                ..self.opts.clone()
            },
        )?;
        let force = self.force_once(&p)?;
        let out = self.session.run(&p, selection, force);
        self.merged.add(&out);
        if out.status != RunStatus::Succeeded {
            self.status = Some(out.status);
            anyhow::bail!("search round stopped: run {}", out.status);
        }
        targets
            .iter()
            .map(|id| {
                out.nodes
                    .iter()
                    .find(|n| &n.node == id)
                    .map(|n| n.metrics.clone())
                    .ok_or_else(|| anyhow::anyhow!("node {id} did not take part in its round"))
            })
            .collect()
    }
}

/// The node that gives trial `t` its result: its node of the searched stage when stopped at a
/// rung, else its node of the objective stage (exactly one).
fn target<'p>(p: &'p Pipeline, spec: &SearchSpec, t: &Trial) -> anyhow::Result<&'p Node> {
    let stage = match t.stop_at {
        Some(_) => &spec.stage,
        None => &spec.objective.stage,
    };
    let want = t.matrix();
    let hits: Vec<&Node> = p
        .nodes
        .iter()
        .filter(|n| &n.stage == stage)
        .filter(|n| want.iter().all(|(k, v)| n.matrix.get(k) == Some(v)))
        .filter(|n| t.stop_at.is_some() || !n.matrix.contains_key(RUNG_KEY))
        .collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => anyhow::bail!("search: stage `{stage}` has no node for trial {want:?}"),
        many => anyhow::bail!(
            "search: stage `{stage}` has {} nodes for one trial ({}); the objective must be one node per trial",
            many.len(),
            many.iter().map(|n| n.id.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Every node's report over the rounds: what a node did the first time the run passed it,
/// unless a later pass computed or failed it.
#[derive(Default)]
struct Merged {
    nodes: Vec<NodeReport>,
}

impl Merged {
    fn add(&mut self, out: &RunOutcome) {
        for n in &out.nodes {
            match self.nodes.iter_mut().find(|m| m.node == n.node) {
                None => self.nodes.push(n.clone()),
                Some(m) if n.status != NodeStatus::Cached && n.status != NodeStatus::Skipped => {
                    *m = n.clone()
                }
                Some(_) => {}
            }
        }
    }

    fn outcome(&self, status: RunStatus) -> RunOutcome {
        RunOutcome {
            status,
            nodes: self.nodes.clone(),
        }
    }
}

/// The search's trials as a table for the terminal.
fn summary_table(s: &Outcome, spec: &SearchSpec) -> String {
    let dims: Vec<&String> = spec.space.dims.iter().map(|(n, _)| n).collect();
    let mut rows = vec![{
        let mut h = vec!["trial".to_string()];
        h.extend(dims.iter().map(|d| d.to_string()));
        h.extend(["steps".into(), s.metric.clone()]);
        h
    }];
    for (i, t) in s.trials.iter().enumerate() {
        let mut r = vec![format!(
            "{}{}",
            i + 1,
            if s.best == Some(i) { " (best)" } else { "" }
        )];
        r.extend(dims.iter().map(|d| {
            t.params.get(*d).map_or(String::new(), |v| match v {
                Value::String(x) => x.clone(),
                other => other.to_string(),
            })
        }));
        r.push(t.steps.map_or("-".into(), |x| x.to_string()));
        r.push(t.value.map_or("stopped".into(), super::format_value));
        rows.push(r);
    }
    let mut out = format!("search of `{}`:\n{}", s.stage, super::table(&rows));
    if let (Some(spent), Some(grid)) = (s.steps_spent, s.grid_steps) {
        out.push_str(&format!(
            "training steps: {spent} ({:.0}% of the full grid's {grid})\n",
            100.0 * spent as f64 / grid.max(1) as f64
        ));
    }
    out
}
