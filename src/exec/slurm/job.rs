//! Inside a Slurm job: `t2s exec-node --spec FILE` runs exactly one node with the local
//! executor's code path, into the staging and resume directories the controller chose, sends
//! metrics and progress to the events file, and writes the result file. The controller commits
//! (or discards) the output; the job never touches the cache index or the tracking DB.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::spec::{read_json, write_json, JobEvent, JobResult, NodeSpec, SPEC_FORMAT};
use crate::exec::{plan, Executor, LocalExecutor, NodeJob};
use crate::stages::{MetricsSink, StageError};

/// Progress lines are written at most this often (metrics always are).
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Appends [`JobEvent`] lines to the events file, one `write` per line.
struct EventSink {
    file: Mutex<std::fs::File>,
    last_progress: Mutex<Option<Instant>>,
}

impl EventSink {
    fn create(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            file: Mutex::new(file),
            last_progress: Mutex::new(None),
        })
    }

    fn write(&self, e: &JobEvent) {
        let Ok(mut line) = serde_json::to_vec(e) else {
            return;
        };
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(err) = f.write_all(&line) {
            // Losing a metric must not fail the job; say so in the job log.
            tracing::warn!("cannot write an event: {err}");
        }
    }
}

impl MetricsSink for EventSink {
    fn metric(&self, name: &str, step: Option<i64>, value: f64) {
        self.write(&JobEvent::Metric {
            name: name.to_string(),
            step,
            value: value.is_finite().then_some(value),
        });
    }

    fn progress(&self, done: u64, total: Option<u64>, message: &str) {
        {
            let mut last = self.last_progress.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) && Some(done) != total {
                return;
            }
            *last = Some(Instant::now());
        }
        self.write(&JobEvent::Progress {
            done,
            total,
            message: message.to_string(),
        });
    }
}

/// Run the node of `spec_file`; write its result file. Returns whether the stage succeeded.
/// An error means no result could be written (unreadable spec, unwritable result).
pub fn run(spec_file: &Path, cancel: &AtomicBool) -> anyhow::Result<bool> {
    let spec: NodeSpec = read_json(spec_file)?;
    anyhow::ensure!(
        spec.format == SPEC_FORMAT,
        "{}: spec format {} but this t2s reads format {SPEC_FORMAT}; the job must run the same t2s as the controller",
        spec_file.display(),
        spec.format
    );
    eprintln!(
        "t2s exec-node: node {} of pipeline {} (run {}, key {}) on host {}, pid {}",
        spec.node.id,
        spec.pipeline,
        spec.run,
        crate::cache::key::short(&spec.key),
        crate::runs::host_name(),
        std::process::id()
    );
    crate::data::hub::pin::adopt(spec.hub_pins.clone());
    let t0 = Instant::now();
    let result = run_spec(&spec, cancel);
    write_json(&spec.result, &result).map_err(|e| {
        anyhow::anyhow!(
            "cannot write the result file {}: {e}",
            spec.result.display()
        )
    })?;
    let took = crate::exec::progress::human_duration(t0.elapsed());
    match &result {
        JobResult::Succeeded { resumed, .. } => eprintln!(
            "t2s exec-node: node {} {} in {took}",
            spec.node.id,
            if *resumed {
                "resumed and finished"
            } else {
                "finished"
            }
        ),
        JobResult::Failed { error } => {
            eprintln!(
                "t2s exec-node: node {} failed after {took}: {error}",
                spec.node.id
            )
        }
        JobResult::Interrupted => {
            eprintln!(
                "t2s exec-node: node {} interrupted after {took}",
                spec.node.id
            )
        }
    }
    Ok(matches!(result, JobResult::Succeeded { .. }))
}

fn run_spec(spec: &NodeSpec, cancel: &AtomicBool) -> JobResult {
    let failed = |error: String| JobResult::Failed { error };
    if !spec.out_dir.is_dir() {
        return failed(format!(
            "its staging directory {} is gone: the t2s run that submitted this job ended or gave it up",
            spec.out_dir.display()
        ));
    }
    let kind = match plan::kind_of(&spec.node) {
        Ok(k) => k,
        Err(e) => return failed(format!("{e:#}")),
    };
    let sink = match EventSink::create(&spec.events) {
        Ok(s) => s,
        Err(e) => {
            return failed(format!(
                "cannot create the events file {}: {e}",
                spec.events.display()
            ))
        }
    };
    run_stage(spec, kind, &sink, cancel)
}

fn run_stage(
    spec: &NodeSpec,
    kind: &'static dyn crate::stages::StageKind,
    sink: &EventSink,
    cancel: &AtomicBool,
) -> JobResult {
    let failed = |error: String| JobResult::Failed { error };
    let executor = LocalExecutor::new();
    let no_exec = |_: &crate::runs::ExecRecord| {};
    let job = NodeJob {
        node: &spec.node,
        kind,
        key: &spec.key,
        inputs: &spec.inputs,
        out_dir: &spec.out_dir,
        partial_dir: &spec.partial_dir,
        pipeline_dir: &spec.pipeline_dir,
        metrics: sink,
        cancel,
        on_exec: &no_exec,
    };
    let ran = crate::panics::catch(|| executor.run_node(&job));
    match ran {
        Ok(Ok(outcome)) => JobResult::from_outcome(&outcome),
        Ok(Err(StageError::Interrupted)) => JobResult::Interrupted,
        Ok(Err(_)) if cancel.load(Ordering::Relaxed) => JobResult::Interrupted,
        Ok(Err(e)) => failed(format!("{e:#}")),
        Err(msg) => failed(format!("stage panicked: {msg}")),
    }
}
