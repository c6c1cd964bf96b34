//! Executing a pipeline: deciding what is cached, running the rest, committing results.
//!
//! - `plan`: node selection (`--force`, `--only`, `--until`), cache keys, and the per-node
//!   decision (hit / run / resume, and why) shown by `run --dry-run` and `status`.
//! - `scheduler`: runs a pipeline: ready nodes in parallel up to `--jobs`, GPU nodes limited by
//!   device slots, fail-fast, Ctrl-C; per-key locks, staging and atomic commit, tracking.
//! - `remote_cache`: fetching a node's output from a remote cache instead of computing it,
//!   pushing what a node finished.
//! - `progress`: the per-node display (bars on a terminal, log lines otherwise).
//!
//! - `slurm`: the Slurm executor (each node a batch job running `t2s exec-node`).
//!
//! The seam for other backends is [`Executor`]: the scheduler decides *what* runs and owns
//! the cache and the DB; an executor only does one node's work given its paths. The local
//! executor calls the stage in-process; the Slurm executor submits the same node as a job (the
//! artifact dirs being on a shared filesystem) and waits for it. Stages do not change.

mod attempt;
mod done;
pub mod plan;
pub mod progress;
mod remote_cache;
pub mod scheduler;
pub mod slurm;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use crate::pipeline::Node;
use crate::runs::ExecRecord;
use crate::stages::{MetricsSink, StageContext, StageError, StageInput, StageKind, StageOutcome};
use crate::worker::WorkerLauncher;

pub use plan::{Decision, PlanOptions, Planned, Selection};
pub use scheduler::{NodeReport, RunOptions, RunOutcome};

/// One node's work, as handed to an executor.
pub struct NodeJob<'a> {
    pub node: &'a Node,
    pub kind: &'static dyn StageKind,
    /// The node's cache key.
    pub key: &'a str,
    pub inputs: &'a [StageInput],
    /// Staging directory (committed by the scheduler if the job succeeds).
    pub out_dir: &'a Path,
    /// Persistent resume area of the key.
    pub partial_dir: &'a Path,
    pub pipeline_dir: &'a Path,
    pub metrics: &'a dyn MetricsSink,
    pub cancel: &'a AtomicBool,
    /// Where the node is executed (a job id and its state, as they become known): recorded in
    /// the tracking DB at once. Executors that have nothing to add need not call it.
    pub on_exec: &'a (dyn Fn(&ExecRecord) + Sync),
}

/// Where node work runs. Implementations must be callable from several scheduler threads.
pub trait Executor: Sync {
    /// Short name for logs (`local`, `slurm`).
    fn name(&self) -> &'static str;
    /// Run one node to completion, writing outputs into `job.out_dir`.
    fn run_node(&self, job: &NodeJob<'_>) -> Result<StageOutcome, StageError>;
}

/// Runs stages in this process (stages that need libtorch spawn the worker themselves).
pub struct LocalExecutor {
    worker: WorkerLauncher,
}

impl LocalExecutor {
    /// Locate the worker once. If it cannot be found, stages that need it get a clear spawn
    /// error naming `t2s-worker` when they try to use it; stages that do not need it run fine.
    pub fn new() -> Self {
        let worker = WorkerLauncher::locate().unwrap_or_else(|e| {
            tracing::debug!("{e}");
            // `StageContext` holds a launcher, not a `Result`: give stages one whose program
            // name carries the reason, so a stage that needs the worker fails with
            // "cannot start the worker t2s-worker (not found: ...): No such file or directory".
            WorkerLauncher {
                exe: format!("t2s-worker (not found: {e})").into(),
            }
        });
        Self { worker }
    }
}

impl Default for LocalExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    fn run_node(&self, job: &NodeJob<'_>) -> Result<StageOutcome, StageError> {
        let ctx = StageContext {
            node_id: &job.node.id,
            stage_name: &job.node.stage,
            params: &job.node.params,
            inputs: job.inputs,
            out_dir: job.out_dir,
            partial_dir: job.partial_dir,
            pipeline_dir: job.pipeline_dir,
            metrics: job.metrics,
            cancel: job.cancel,
            worker: &self.worker,
        };
        job.kind.run(&ctx)
    }
}

#[cfg(test)]
mod tests;
