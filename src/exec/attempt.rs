//! One node's attempt, start to end, on its own thread: key → cache lookup (here, then the
//! remote) → lock and recheck → staging → run the stage → atomic commit. Each step is one
//! function; a step that settles the node returns its `Done`.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Instant;

use crate::cache::{key::short, CacheKey, KeyInput, KeyLock, Lookup, Manifest};
use crate::pipeline::Node;
use crate::runs::{now_rfc3339, ExecRecord, NodeSink, NodeStatus};
use crate::stages::{StageError, StageInput, StageKind, StageOutcome};

use super::done::{finished, skipped, Done};
use super::plan::{self, Selection};
use super::remote_cache::{self, Destination, Fetched};
use super::scheduler::Shared;
use super::NodeJob;

/// Run node `i` (its upstream artifacts in `inputs`, their digests in `key_inputs`).
pub(super) fn process_node(
    sh: &Shared<'_>,
    i: usize,
    inputs: Vec<StageInput>,
    key_inputs: Vec<KeyInput>,
) -> Done {
    let at = Attempt {
        sh,
        node: &sh.pipeline.nodes[i],
        t0: Instant::now(),
        started: now_rfc3339(),
    };
    let (kind, cache_key) = match at.plan(key_inputs) {
        Ok(planned) => planned,
        Err(done) => return *done,
    };
    let key = cache_key.digest();
    let forced = sh.opts.force.contains(&i);
    let why = match at.find_cached(&key, &cache_key, forced) {
        Ok(why) => why,
        Err(done) => return *done,
    };
    if sh.opts.selection.get(i) == Some(&Selection::CacheOnly) {
        return at.fail(
            NodeStatus::Failed,
            Some(key),
            format!("not cached ({why}) and left out by --only/--until; run it first"),
        );
    }
    let lock = match at.lock(&key, forced) {
        Ok(lock) => lock,
        Err(done) => return *done,
    };
    at.compute(kind, &key, &cache_key, &inputs, why, lock)
}

/// What the steps of one attempt share.
struct Attempt<'s, 'a> {
    sh: &'s Shared<'a>,
    node: &'a Node,
    t0: Instant,
    started: String,
}

impl Attempt<'_, '_> {
    fn fail(&self, status: NodeStatus, key: Option<String>, msg: String) -> Done {
        finished(
            self.node,
            status,
            key,
            None,
            Some(self.started.clone()),
            self.t0.elapsed(),
            Some(msg),
            String::new(),
            Vec::new(),
        )
    }

    /// A committed copy serves the node.
    fn hit(&self, key: String, m: Manifest, detail: String) -> Done {
        let sh = self.sh;
        // A hit is a use: the node's ref names it, so `gc` keeps what the latest run used.
        if let Err(e) = sh.store.record_use(&sh.pipeline.name, &self.node.id, &m) {
            tracing::warn!("could not record the use of {key} by {}: {e}", self.node.id);
        }
        sh.store.drop_stale_partial(&key);
        let dir = sh.store.object_dir(&key);
        let metrics = m.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect();
        finished(
            self.node,
            NodeStatus::Cached,
            Some(key),
            Some((&m, dir)),
            Some(self.started.clone()),
            self.t0.elapsed(),
            None,
            detail,
            metrics,
        )
    }

    /// The node's kind and cache key.
    fn plan(
        &self,
        key_inputs: Vec<KeyInput>,
    ) -> Result<(&'static dyn StageKind, CacheKey), Box<Done>> {
        let kind = plan::kind_of(self.node)
            .map_err(|e| Box::new(self.fail(NodeStatus::Failed, None, format!("{e:#}"))))?;
        let cache_key = plan::cache_key(self.node, kind, key_inputs, &self.sh.pipeline_dir)
            .map_err(|e| Box::new(self.fail(NodeStatus::Failed, None, format!("{e:#}"))))?;
        Ok((kind, cache_key))
    }

    /// A committed copy here or on the remote settles the node (`Err`); otherwise `Ok` says
    /// why it must be computed.
    fn find_cached(
        &self,
        key: &str,
        cache_key: &CacheKey,
        forced: bool,
    ) -> Result<String, Box<Done>> {
        let sh = self.sh;
        if forced {
            return Ok("forced".to_string());
        }
        let mut why = match sh.store.lookup(key, sh.opts.verify) {
            Ok(Lookup::Hit(m)) => {
                return Err(Box::new(self.hit(key.to_string(), m, String::new())))
            }
            Ok(Lookup::Corrupt { problems, moved_to }) => {
                let why = format!(
                    "cached artifact failed its check ({}); moved aside to {}",
                    problems.join("; "),
                    moved_to.display()
                );
                sh.progress.note(&self.node.id, &why);
                why
            }
            Ok(Lookup::Missing) => {
                plan::miss_reason(sh.store, sh.pipeline, self.node, cache_key, key)
            }
            Err(e) => {
                return Err(Box::new(self.fail(
                    NodeStatus::Failed,
                    Some(key.to_string()),
                    e.to_string(),
                )))
            }
        };
        if let Some(done) = self.fetch(key, &mut why) {
            return Err(Box::new(done));
        }
        Ok(why)
    }

    /// The node's output from the remote cache, if there is one and it has it; a problem
    /// with the remote's copy is added to `why`.
    fn fetch(&self, key: &str, why: &mut String) -> Option<Done> {
        let sh = self.sh;
        let remote = sh.opts.remote.as_ref()?;
        let note = |msg: &str| sh.progress.note(&self.node.id, msg);
        let to = Destination {
            store: sh.store,
            pipeline: &sh.pipeline.name,
            node: &self.node.id,
            cancel: sh.cancel,
        };
        match remote_cache::fetch(&to, remote, key, note) {
            Fetched::Yes(m) => {
                let detail = format!("{} {}", remote_cache::FETCHED, remote.root().display());
                sh.progress.note(&self.node.id, &detail);
                let mut done = self.hit(key.to_string(), m, detail);
                done.report.fetched = true;
                // Provenance in the tracking DB: where this output came from.
                done.record.exec = Some(ExecRecord {
                    executor: "remote".to_string(),
                    job_id: None,
                    state: Some("FETCHED".to_string()),
                    log: Some(remote.root().display().to_string()),
                });
                Some(done)
            }
            Fetched::Concurrent(m) => Some(self.hit(
                key.to_string(),
                m,
                "computed by a concurrent run".to_string(),
            )),
            Fetched::No(None) => None,
            Fetched::No(Some(problem)) => {
                sh.progress.note(&self.node.id, &problem);
                *why = format!("{why}; {problem}");
                None
            }
            Fetched::Interrupted(e) => Some(self.fail(
                NodeStatus::Interrupted,
                Some(key.to_string()),
                e.to_string(),
            )),
        }
    }

    /// The key's lock; a run that committed the key while this one waited settles the node.
    fn lock(&self, key: &str, forced: bool) -> Result<KeyLock, Box<Done>> {
        let sh = self.sh;
        let lock = sh
            .store
            .lock(key, sh.cancel, || {
                sh.progress.note(
                    &self.node.id,
                    "waiting: another t2s run is computing this node",
                )
            })
            .map_err(|e| {
                let status = if sh.cancel.load(Ordering::Relaxed) {
                    NodeStatus::Interrupted
                } else {
                    NodeStatus::Failed
                };
                Box::new(self.fail(status, Some(key.to_string()), e.to_string()))
            })?;
        if !forced {
            // Another run may have committed it while we waited.
            if let Ok(Lookup::Hit(m)) = sh.store.lookup(key, false) {
                return Err(Box::new(self.hit(
                    key.to_string(),
                    m,
                    "computed by a concurrent run".to_string(),
                )));
            }
        }
        Ok(lock)
    }

    /// Run the stage into a staging directory under `lock`, then commit it.
    fn compute(
        &self,
        kind: &'static dyn StageKind,
        key: &str,
        cache_key: &CacheKey,
        inputs: &[StageInput],
        why: String,
        lock: KeyLock,
    ) -> Done {
        let sh = self.sh;
        let node = self.node;
        let staging = match sh.store.begin(key, &lock) {
            Ok(s) => s,
            Err(e) => return self.fail(NodeStatus::Failed, Some(key.to_string()), e.to_string()),
        };
        sh.progress.start(&node.id, &why);
        self.record_start(key);
        let resume_key = resume_area(kind, node, cache_key).unwrap_or_else(|| key.to_string());
        let ran = self.run_stage(kind, key, &resume_key, inputs, &staging.dir);
        let with_exec = |mut done: Done| {
            done.record.exec = Some(ran.exec.clone());
            done
        };
        let outcome = match ran.result {
            Ok(o) => o,
            Err(e) => {
                sh.store.discard(staging);
                let interrupted =
                    matches!(e, StageError::Interrupted) || sh.cancel.load(Ordering::Relaxed);
                let (status, msg) = if interrupted {
                    (NodeStatus::Interrupted, "interrupted".to_string())
                } else {
                    (NodeStatus::Failed, format!("{e:#}"))
                };
                sh.progress
                    .finish(&node.id, status, self.t0.elapsed(), &msg);
                return with_exec(self.fail(status, Some(key.to_string()), msg));
            }
        };
        let status = if outcome.resumed {
            NodeStatus::Resumed
        } else {
            NodeStatus::Ran
        };
        let manifest = match sh.store.commit(
            staging,
            &sh.pipeline.name,
            &node.id,
            cache_key,
            outcome.metrics.clone(),
            &lock,
        ) {
            Ok(m) => m,
            Err(e) => {
                sh.progress.finish(
                    &node.id,
                    NodeStatus::Failed,
                    self.t0.elapsed(),
                    &e.to_string(),
                );
                return with_exec(self.fail(
                    NodeStatus::Failed,
                    Some(key.to_string()),
                    e.to_string(),
                ));
            }
        };
        drop(lock);
        sh.progress.finish(
            &node.id,
            status,
            self.t0.elapsed(),
            &format!("key {}", short(key)),
        );
        // Final metrics the stage already streamed are recorded once.
        let metrics = outcome
            .metrics
            .iter()
            .filter(|(k, _)| !ran.streamed.contains(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let dir = sh.store.object_dir(key);
        with_exec(finished(
            node,
            status,
            Some(key.to_string()),
            Some((&manifest, dir)),
            Some(self.started.clone()),
            self.t0.elapsed(),
            None,
            why,
            metrics,
        ))
    }

    /// The tracking DB shows the node running.
    fn record_start(&self, key: &str) {
        let Some(t) = self.sh.tracker else {
            return;
        };
        let mut rec = skipped(self.node, String::new()).record;
        rec.status = NodeStatus::Running;
        rec.key = Some(key.to_string());
        rec.started = Some(self.started.clone());
        rec.ended = None;
        rec.duration_s = None;
        rec.error = None;
        if let Err(e) = t.record_nodes(self.sh.run_id, &[rec]) {
            tracing::warn!("could not record node start: {e}");
        }
    }

    /// The stage's work on the executor, its metrics streamed to the tracking DB.
    fn run_stage(
        &self,
        kind: &'static dyn StageKind,
        key: &str,
        resume_key: &str,
        inputs: &[StageInput],
        out_dir: &std::path::Path,
    ) -> StageRun {
        let sh = self.sh;
        let node = self.node;
        let partial_dir = sh.store.partial_dir(resume_key);
        let on_progress = |done: u64, total: Option<u64>, msg: &str| {
            sh.progress.update(&node.id, done, total, msg)
        };
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
            key,
            inputs,
            out_dir,
            partial_dir: &partial_dir,
            pipeline_dir: &sh.pipeline_dir,
            metrics: &sink,
            cancel: sh.cancel,
            on_exec: &on_exec,
        };
        let result = crate::panics::catch(|| sh.executor.run_node(&job))
            .unwrap_or_else(|msg| Err(StageError::Failed(format!("stage panicked: {msg}"))));
        sink.flush();
        let streamed = sink.final_names();
        drop(sink);
        let exec = exec_seen
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(|| ExecRecord {
                executor: sh.executor.name().to_string(),
                ..Default::default()
            });
        StageRun {
            result,
            streamed,
            exec,
        }
    }
}

/// What running a stage gave: its outcome, the final metrics it already streamed, and where
/// it ran.
struct StageRun {
    result: Result<StageOutcome, StageError>,
    streamed: std::collections::BTreeSet<String>,
    exec: ExecRecord,
}

/// The key whose resume area the node uses, when the kind says it is not the node's own
/// (`StageKind::resume_params`: a training stopped at a halving rung resumes in the area of
/// the same training run to the end).
fn resume_area(kind: &dyn StageKind, node: &Node, key: &CacheKey) -> Option<String> {
    let params = kind.resume_params(&node.params)?;
    let full = CacheKey {
        params: kind.key_params(&params),
        ..key.clone()
    };
    Some(full.digest())
}
