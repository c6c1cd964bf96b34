//! Running a pipeline on an [`Executor`]: readiness, parallelism, GPU slots, fail-fast (or
//! keep-going), cancellation, and per node: key → cache lookup → lock → staging → run → atomic commit.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use crate::cache::{key::short, KeyInput, Lookup, Manifest, Remote, Store};
use crate::pipeline::Pipeline;
use crate::runs::{node_status, now_rfc3339, ExecRecord, NodeRecord, NodeSink, Tracker};
use crate::stages::{StageError, StageInput};

use super::done::{finished, skipped, Done};
use super::plan::{self, Selection};
use super::progress::Progress;
use super::remote_cache::{self, Destination, Fetched};
use super::{Executor, NodeJob};

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
    /// One of `runs::node_status`.
    pub status: &'static str,
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
}

/// What happened to the run.
#[derive(Debug)]
pub struct RunOutcome {
    /// One of `runs::status`.
    pub status: &'static str,
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
struct Shared<'a> {
    pipeline: &'a Pipeline,
    pipeline_dir: PathBuf,
    store: &'a Store,
    tracker: Option<&'a Tracker>,
    run_id: i64,
    executor: &'a dyn Executor,
    opts: &'a RunOptions,
    cancel: &'a AtomicBool,
    progress: &'a dyn Progress,
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
    let n = pipeline.nodes.len();
    let index = plan::index_of(pipeline);
    let deps: Vec<Vec<usize>> = pipeline
        .nodes
        .iter()
        .map(|node| {
            node.needs
                .iter()
                .filter_map(|id| index.get(id.as_str()).copied())
                .collect()
        })
        .collect();
    let gpu: Vec<bool> = pipeline.nodes.iter().map(|node| node.gpu).collect();
    let mut state: Vec<State> = (0..n)
        .map(|i| match opts.selection.get(i) {
            Some(Selection::Excluded) => State::Excluded,
            _ => State::Pending,
        })
        .collect();
    let mut first_failure: Option<String> = None;
    let mut records = Vec::new();
    let (tx, rx) = mpsc::channel::<(usize, Done)>();

    std::thread::scope(|s| {
        let (mut running, mut gpu_running) = (0usize, 0usize);
        loop {
            // Skip what can no longer run: dependents of failures, and everything not yet
            // started once the run stops (fail-fast or Ctrl-C).
            let stopping =
                (first_failure.is_some() && !opts.keep_going) || cancel.load(Ordering::Relaxed);
            for i in 0..n {
                if !matches!(state[i], State::Pending) {
                    continue;
                }
                let failed_dep = deps[i].iter().find(|&&j| match &state[j] {
                    State::Finished(d) => d.digest.is_none(),
                    _ => false,
                });
                let why = match (failed_dep, stopping) {
                    (Some(&j), _) => {
                        Some(format!("upstream {} did not finish", pipeline.nodes[j].id))
                    }
                    (None, true) if cancel.load(Ordering::Relaxed) => {
                        Some("run interrupted".to_string())
                    }
                    (None, true) => Some(format!(
                        "not started: the run stopped after {} failed",
                        first_failure.as_deref().unwrap_or("a node")
                    )),
                    _ => None,
                };
                if let Some(why) = why {
                    let done = skipped(&pipeline.nodes[i], why);
                    records.push(done.record.clone());
                    state[i] = State::Finished(Box::new(done));
                }
            }
            // Start ready nodes.
            for i in 0..n {
                if running >= opts.jobs.max(1) {
                    break;
                }
                if !matches!(state[i], State::Pending) {
                    continue;
                }
                let ready = deps[i]
                    .iter()
                    .all(|&j| matches!(&state[j], State::Finished(d) if d.digest.is_some()));
                if !ready || (gpu[i] && gpu_running >= opts.gpu_slots.max(1)) {
                    continue;
                }
                let (inputs, key_inputs) = inputs_of(pipeline, &deps[i], &state);
                state[i] = State::Running;
                running += 1;
                gpu_running += gpu[i] as usize;
                let tx = tx.clone();
                let shared = &shared;
                s.spawn(move || {
                    // Whatever happens on this thread, the scheduler hears of the node: it
                    // waits for exactly one message per started node.
                    let done = crate::panics::catch(|| {
                        let mut done = process_node(shared, i, inputs, key_inputs);
                        if let (Some(remote), true) = (&shared.opts.remote, shared.opts.push) {
                            remote_cache::push(shared.store, remote, &mut done.report);
                        }
                        done
                    })
                    .unwrap_or_else(|msg| {
                        let node = &pipeline.nodes[i];
                        let msg = format!("internal error while running the node: {msg}");
                        finished(
                            node,
                            node_status::FAILED,
                            None,
                            None,
                            None,
                            Duration::ZERO,
                            Some(msg),
                            String::new(),
                            Vec::new(),
                        )
                    });
                    let _ = tx.send((i, done));
                });
            }
            if running == 0 {
                break;
            }
            // Wait for one node, then take whatever else finished, and record them together.
            let Ok(first) = rx.recv() else { break };
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            for (i, done) in batch {
                running -= 1;
                gpu_running -= gpu[i] as usize;
                if done.digest.is_none()
                    && first_failure.is_none()
                    && !cancel.load(Ordering::Relaxed)
                {
                    first_failure = Some(pipeline.nodes[i].id.clone());
                }
                records.push(done.record.clone());
                state[i] = State::Finished(Box::new(done));
            }
            flush(&shared, &mut records);
        }
    });
    flush(&shared, &mut records);

    let nodes: Vec<NodeReport> = state
        .into_iter()
        .filter_map(|s| match s {
            State::Finished(d) => Some(d.report),
            _ => None,
        })
        .collect();
    let status = if cancel.load(Ordering::Relaxed) {
        crate::runs::status::INTERRUPTED
    } else if nodes
        .iter()
        .all(|r| [node_status::RAN, node_status::CACHED, node_status::RESUMED].contains(&r.status))
    {
        crate::runs::status::SUCCEEDED
    } else {
        crate::runs::status::FAILED
    };
    RunOutcome { status, nodes }
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

/// One node, start to end, on its own thread.
fn process_node(
    sh: &Shared<'_>,
    i: usize,
    inputs: Vec<StageInput>,
    key_inputs: Vec<KeyInput>,
) -> Done {
    let node = &sh.pipeline.nodes[i];
    let t0 = Instant::now();
    let started = now_rfc3339();
    let fail = |status: &'static str, key: Option<String>, msg: String| {
        finished(
            node,
            status,
            key,
            None,
            Some(started.clone()),
            t0.elapsed(),
            Some(msg),
            String::new(),
            Vec::new(),
        )
    };
    let hit = |key: String, m: Manifest, detail: String| {
        // A hit is a use: the node's ref names it, so `gc` keeps what the latest run used.
        if let Err(e) = sh.store.record_use(&sh.pipeline.name, &node.id, &m) {
            tracing::warn!("could not record the use of {key} by {}: {e}", node.id);
        }
        sh.store.drop_stale_partial(&key);
        let dir = sh.store.object_dir(&key);
        let metrics = m.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect();
        finished(
            node,
            node_status::CACHED,
            Some(key),
            Some((&m, dir)),
            Some(started.clone()),
            t0.elapsed(),
            None,
            detail,
            metrics,
        )
    };
    let kind = match plan::kind_of(node) {
        Ok(k) => k,
        Err(e) => return fail(node_status::FAILED, None, format!("{e:#}")),
    };
    let cache_key = match plan::cache_key(node, kind, key_inputs, &sh.pipeline_dir) {
        Ok(k) => k,
        Err(e) => return fail(node_status::FAILED, None, format!("{e:#}")),
    };
    let key = cache_key.digest();
    let forced = sh.opts.force.contains(&i);
    let mut why = if forced {
        "forced".to_string()
    } else {
        String::new()
    };
    if !forced {
        match sh.store.lookup(&key, sh.opts.verify) {
            Ok(Lookup::Hit(m)) => return hit(key, m, String::new()),
            Ok(Lookup::Corrupt { problems, moved_to }) => {
                why = format!(
                    "cached artifact failed its check ({}); moved aside to {}",
                    problems.join("; "),
                    moved_to.display()
                );
                sh.progress.note(&node.id, &why);
            }
            Ok(Lookup::Missing) => {
                why = plan::miss_reason(sh.store, sh.pipeline, node, &cache_key, &key)
            }
            Err(e) => return fail(node_status::FAILED, Some(key), e.to_string()),
        }
        if let Some(remote) = &sh.opts.remote {
            let note = |msg: &str| sh.progress.note(&node.id, msg);
            let to = Destination {
                store: sh.store,
                pipeline: &sh.pipeline.name,
                node: &node.id,
                cancel: sh.cancel,
            };
            match remote_cache::fetch(&to, remote, &key, note) {
                Fetched::Yes(m) => {
                    let detail = format!("{} {}", remote_cache::FETCHED, remote.root().display());
                    sh.progress.note(&node.id, &detail);
                    let mut done = hit(key, m, detail);
                    done.report.fetched = true;
                    // Provenance in the tracking DB: where this output came from.
                    done.record.exec = Some(ExecRecord {
                        executor: "remote".to_string(),
                        job_id: None,
                        state: Some("FETCHED".to_string()),
                        log: Some(remote.root().display().to_string()),
                    });
                    return done;
                }
                Fetched::Concurrent(m) => {
                    return hit(key, m, "computed by a concurrent run".to_string())
                }
                Fetched::No(None) => {}
                Fetched::No(Some(problem)) => {
                    sh.progress.note(&node.id, &problem);
                    why = format!("{why}; {problem}");
                }
                Fetched::Interrupted(e) => {
                    return fail(node_status::INTERRUPTED, Some(key), e.to_string())
                }
            }
        }
    }
    if sh.opts.selection.get(i) == Some(&Selection::CacheOnly) {
        return fail(
            node_status::FAILED,
            Some(key),
            format!("not cached ({why}) and left out by --only/--until; run it first"),
        );
    }
    let lock = match sh.store.lock(&key, sh.cancel, || {
        sh.progress
            .note(&node.id, "waiting: another t2s run is computing this node")
    }) {
        Ok(l) => l,
        Err(e) if sh.cancel.load(Ordering::Relaxed) => {
            return fail(node_status::INTERRUPTED, Some(key), e.to_string())
        }
        Err(e) => return fail(node_status::FAILED, Some(key), e.to_string()),
    };
    if !forced {
        // Another run may have committed it while we waited.
        if let Ok(Lookup::Hit(m)) = sh.store.lookup(&key, false) {
            return hit(key, m, "computed by a concurrent run".to_string());
        }
    }
    let staging = match sh.store.begin(&key, &lock) {
        Ok(s) => s,
        Err(e) => return fail(node_status::FAILED, Some(key), e.to_string()),
    };
    let partial_dir = sh.store.partial_dir(&key);
    sh.progress.start(&node.id, &why);
    if let Some(t) = sh.tracker {
        let mut rec = skipped(node, String::new()).record;
        rec.status = node_status::RUNNING;
        rec.key = Some(key.clone());
        rec.started = Some(started.clone());
        rec.ended = None;
        rec.duration_s = None;
        rec.error = None;
        if let Err(e) = t.record_nodes(sh.run_id, &[rec]) {
            tracing::warn!("could not record node start: {e}");
        }
    }
    let on_progress =
        |done: u64, total: Option<u64>, msg: &str| sh.progress.update(&node.id, done, total, msg);
    let sink = NodeSink::new(sh.tracker, sh.run_id, &node.id, &on_progress);
    let exec_seen: Mutex<Option<ExecRecord>> = Mutex::new(None);
    let on_exec = |e: &ExecRecord| {
        *exec_seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
        if let Some(t) = sh.tracker {
            if let Err(err) = t.record_execution(sh.run_id, &node.id, e) {
                tracing::warn!("could not record the execution of {}: {err}", node.id);
            }
        }
    };
    let job = NodeJob {
        node,
        kind,
        key: &key,
        inputs: &inputs,
        out_dir: &staging.dir,
        partial_dir: &partial_dir,
        pipeline_dir: &sh.pipeline_dir,
        metrics: &sink,
        cancel: sh.cancel,
        on_exec: &on_exec,
    };
    let result = crate::panics::catch(|| sh.executor.run_node(&job))
        .unwrap_or_else(|msg| Err(StageError::Failed(format!("stage panicked: {msg}"))));
    sink.flush();
    let already = sink.final_names();
    drop(sink);
    let exec = exec_seen
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or_else(|| ExecRecord {
            executor: sh.executor.name().to_string(),
            ..Default::default()
        });
    let with_exec = |mut done: Done| {
        done.record.exec = Some(exec.clone());
        done
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            sh.store.discard(staging);
            let interrupted =
                matches!(e, StageError::Interrupted) || sh.cancel.load(Ordering::Relaxed);
            let (status, msg) = if interrupted {
                (node_status::INTERRUPTED, "interrupted".to_string())
            } else {
                (node_status::FAILED, format!("{e:#}"))
            };
            sh.progress.finish(&node.id, status, t0.elapsed(), &msg);
            return with_exec(fail(status, Some(key), msg));
        }
    };
    let status = if outcome.resumed {
        node_status::RESUMED
    } else {
        node_status::RAN
    };
    let manifest = match sh.store.commit(
        staging,
        &sh.pipeline.name,
        &node.id,
        &cache_key,
        outcome.metrics.clone(),
        &lock,
    ) {
        Ok(m) => m,
        Err(e) => {
            sh.progress
                .finish(&node.id, node_status::FAILED, t0.elapsed(), &e.to_string());
            return with_exec(fail(node_status::FAILED, Some(key), e.to_string()));
        }
    };
    drop(lock);
    sh.progress.finish(
        &node.id,
        status,
        t0.elapsed(),
        &format!("key {}", short(&key)),
    );
    let metrics = outcome
        .metrics
        .iter()
        .filter(|(k, _)| !already.contains(*k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let dir = sh.store.object_dir(&key);
    with_exec(finished(
        node,
        status,
        Some(key),
        Some((&manifest, dir)),
        Some(started),
        t0.elapsed(),
        None,
        why,
        metrics,
    ))
}
