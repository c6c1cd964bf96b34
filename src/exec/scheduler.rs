//! Running a pipeline on an [`Executor`]: readiness, parallelism, GPU slots, fail-fast (or
//! keep-going), cancellation; each node's attempt is `attempt::process_node`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::cache::{KeyInput, Remote, Store};
use crate::pipeline::Pipeline;
use crate::runs::{NodeRecord, NodeStatus, RunStatus, Tracker};
use crate::stages::StageInput;

use super::done::{finished, skipped, Done};
use super::plan::{self, Selection};
use super::progress::Progress;
use super::remote_cache;
use super::Executor;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Nodes running at once.
    pub jobs: usize,
    /// GPU device slots (nodes whose kind `uses_gpu` running at once).
    pub gpu_slots: usize,
    /// Per node: run, cache-only, excluded.
    pub selection: Vec<Selection>,
    /// Node indices to recompute even if cached.
    pub force: BTreeSet<usize>,
    /// Full integrity check of cached artifacts.
    pub verify: bool,
    /// A remote cache: a node not cached here but there is fetched instead of computed.
    pub remote: Option<Remote>,
    /// Push each node's output the remote lacks as soon as the node is done (needs `remote`).
    pub push: bool,
    /// After a node fails, still start nodes that do not depend on it (else: fail fast, start
    /// nothing more and let running nodes finish).
    pub keep_going: bool,
}

/// What happened to one node.
#[derive(Debug, Clone)]
pub struct NodeReport {
    pub node: String,
    pub status: NodeStatus,
    pub key: Option<String>,
    pub duration: Duration,
    /// Why it ran, or why it failed / was skipped.
    pub detail: String,
    /// The committed artifact directory.
    pub dir: Option<PathBuf>,
    /// Its output was fetched from the remote cache (status `cached`), not computed here.
    pub fetched: bool,
    /// With `push`: what pushing the node's output to the remote did.
    pub pushed: Option<Result<crate::cache::Pushed, String>>,
    /// Its final metrics (those its artifact was committed with, when cached).
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// What happened to the run.
#[derive(Debug)]
pub struct RunOutcome {
    pub status: RunStatus,
    /// Every node that took part, in pipeline order.
    pub nodes: Vec<NodeReport>,
}

enum State {
    Excluded,
    Pending,
    Running,
    Finished(Box<Done>),
}

/// Everything node threads share.
pub(super) struct Shared<'a> {
    pub(super) pipeline: &'a Pipeline,
    pub(super) pipeline_dir: PathBuf,
    pub(super) store: &'a Store,
    pub(super) tracker: Option<&'a Tracker>,
    pub(super) run_id: i64,
    pub(super) executor: &'a dyn Executor,
    pub(super) opts: &'a RunOptions,
    pub(super) cancel: &'a AtomicBool,
    pub(super) progress: &'a dyn Progress,
}

/// Run `pipeline`. Node records go to `tracker` under `run_id` (the caller starts and
/// finishes the run row).
#[allow(clippy::too_many_arguments)]
pub fn run(
    pipeline: &Pipeline,
    store: &Store,
    tracker: Option<&Tracker>,
    run_id: i64,
    executor: &dyn Executor,
    opts: &RunOptions,
    cancel: &AtomicBool,
    progress: &dyn Progress,
) -> RunOutcome {
    let shared = Shared {
        pipeline,
        pipeline_dir: plan::pipeline_dir(pipeline),
        store,
        tracker,
        run_id,
        executor,
        opts,
        cancel,
        progress,
    };
    let mut board = Board::new(pipeline, opts);
    let (tx, rx) = mpsc::channel::<(usize, Done)>();
    std::thread::scope(|s| {
        let (mut running, mut gpu_running) = (0usize, 0usize);
        loop {
            board.skip_unrunnable(pipeline, opts.keep_going, cancel.load(Ordering::Relaxed));
            // Start ready nodes.
            for i in 0..board.state.len() {
                if running >= opts.jobs.max(1) {
                    break;
                }
                if !board.ready(i) || (board.gpu[i] && gpu_running >= opts.gpu_slots.max(1)) {
                    continue;
                }
                let (inputs, key_inputs) = inputs_of(pipeline, &board.deps[i], &board.state);
                board.state[i] = State::Running;
                running += 1;
                gpu_running += board.gpu[i] as usize;
                let tx = tx.clone();
                let shared = &shared;
                s.spawn(move || {
                    // The scheduler waits for exactly one message per started node.
                    let _ = tx.send((i, attempt_guarded(shared, i, inputs, key_inputs)));
                });
            }
            if running == 0 {
                break;
            }
            // Wait for one node, then take whatever else finished, and record them together.
            let Ok(first) = rx.recv() else { break };
            for (i, done) in std::iter::once(first).chain(rx.try_iter()) {
                running -= 1;
                gpu_running -= board.gpu[i] as usize;
                board.finish(pipeline, i, done, cancel.load(Ordering::Relaxed));
            }
            flush(&shared, &mut board.records);
        }
    });
    flush(&shared, &mut board.records);
    let nodes: Vec<NodeReport> = board
        .state
        .into_iter()
        .filter_map(|s| match s {
            State::Finished(d) => Some(d.report),
            _ => None,
        })
        .collect();
    let status = run_status(&nodes, cancel.load(Ordering::Relaxed));
    RunOutcome { status, nodes }
}

/// Where every node of a run stands, and what is still to be recorded.
struct Board {
    state: Vec<State>,
    /// Upstream node indices of each node.
    deps: Vec<Vec<usize>>,
    /// Whether each node takes a GPU slot.
    gpu: Vec<bool>,
    first_failure: Option<String>,
    records: Vec<NodeRecord>,
}

impl Board {
    fn new(pipeline: &Pipeline, opts: &RunOptions) -> Self {
        let index = plan::index_of(pipeline);
        let deps = pipeline
            .nodes
            .iter()
            .map(|node| {
                node.needs
                    .iter()
                    .filter_map(|id| index.get(id.as_str()).copied())
                    .collect()
            })
            .collect();
        let state = (0..pipeline.nodes.len())
            .map(|i| match opts.selection.get(i) {
                Some(Selection::Excluded) => State::Excluded,
                _ => State::Pending,
            })
            .collect();
        Board {
            state,
            deps,
            gpu: pipeline.nodes.iter().map(|node| node.gpu).collect(),
            first_failure: None,
            records: Vec::new(),
        }
    }

    /// Skip what can no longer run: dependents of failures, and everything not yet started
    /// once the run stops (fail-fast or Ctrl-C).
    fn skip_unrunnable(&mut self, pipeline: &Pipeline, keep_going: bool, cancelled: bool) {
        let stopping = (self.first_failure.is_some() && !keep_going) || cancelled;
        for i in 0..self.state.len() {
            if !matches!(self.state[i], State::Pending) {
                continue;
            }
            let failed_dep = self.deps[i].iter().find(|&&j| match &self.state[j] {
                State::Finished(d) => d.digest.is_none(),
                _ => false,
            });
            let why = match (failed_dep, stopping) {
                (Some(&j), _) => Some(format!("upstream {} did not finish", pipeline.nodes[j].id)),
                (None, true) if cancelled => Some("run interrupted".to_string()),
                (None, true) => Some(format!(
                    "not started: the run stopped after {} failed",
                    self.first_failure.as_deref().unwrap_or("a node")
                )),
                _ => None,
            };
            if let Some(why) = why {
                let done = skipped(&pipeline.nodes[i], why);
                self.records.push(done.record.clone());
                self.state[i] = State::Finished(Box::new(done));
            }
        }
    }

    /// Pending with every upstream node committed.
    fn ready(&self, i: usize) -> bool {
        matches!(self.state[i], State::Pending)
            && self.deps[i]
                .iter()
                .all(|&j| matches!(&self.state[j], State::Finished(d) if d.digest.is_some()))
    }

    fn finish(&mut self, pipeline: &Pipeline, i: usize, done: Done, cancelled: bool) {
        if done.digest.is_none() && self.first_failure.is_none() && !cancelled {
            self.first_failure = Some(pipeline.nodes[i].id.clone());
        }
        self.records.push(done.record.clone());
        self.state[i] = State::Finished(Box::new(done));
    }
}

/// A node's attempt (and its push), on its thread: whatever happens, a `Done` comes back.
fn attempt_guarded(
    shared: &Shared<'_>,
    i: usize,
    inputs: Vec<StageInput>,
    key_inputs: Vec<KeyInput>,
) -> Done {
    crate::panics::catch(|| {
        let mut done = super::attempt::process_node(shared, i, inputs, key_inputs);
        if let (Some(remote), true) = (&shared.opts.remote, shared.opts.push) {
            remote_cache::push(shared.store, remote, &mut done.report);
        }
        done
    })
    .unwrap_or_else(|msg| {
        let msg = format!("internal error while running the node: {msg}");
        finished(
            &shared.pipeline.nodes[i],
            NodeStatus::Failed,
            None,
            None,
            None,
            Duration::ZERO,
            Some(msg),
            String::new(),
            Vec::new(),
        )
    })
}

/// The run's status from its nodes'.
fn run_status(nodes: &[NodeReport], cancelled: bool) -> RunStatus {
    if cancelled {
        RunStatus::Interrupted
    } else if nodes.iter().all(|r| r.status.succeeded()) {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    }
}

fn flush(shared: &Shared<'_>, records: &mut Vec<NodeRecord>) {
    if let Some(t) = shared.tracker {
        if let Err(e) = t.record_nodes(shared.run_id, records) {
            tracing::warn!("could not record nodes in the tracking DB: {e}");
        }
    }
    records.clear();
}

fn inputs_of(
    pipeline: &Pipeline,
    deps: &[usize],
    state: &[State],
) -> (Vec<StageInput>, Vec<KeyInput>) {
    let mut inputs = Vec::new();
    let mut keys = Vec::new();
    for &j in deps {
        if let State::Finished(d) = &state[j] {
            let up = &pipeline.nodes[j];
            inputs.push(StageInput {
                stage: up.stage.clone(),
                node: up.id.clone(),
                kind: up.kind.clone(),
                matrix: up.matrix.clone(),
                dir: d.report.dir.clone().unwrap_or_default(),
            });
            keys.push(KeyInput {
                node: up.id.clone(),
                digest: d.digest.clone().unwrap_or_default(),
            });
        }
    }
    (inputs, keys)
}
