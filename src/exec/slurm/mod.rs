//! The Slurm executor: each node that must run becomes one batch job running
//! `t2s exec-node --spec FILE`, against the same artifact store on a shared filesystem.
//!
//! The scheduler still owns everything but the work itself: the DAG walk (a node is submitted
//! once its inputs are committed, so no `--dependency` chains are needed and a failed job never
//! leaves dependents pending forever), cache lookups (a hit never submits a job), the per-key
//! lock, the staging directory, the atomic commit and every tracking-DB write. Each scheduler
//! thread submits its node with `sbatch --parsable`, polls `scontrol show job` until the job
//! ends, and returns the stage's outcome or an error naming the job id, its state and its log.
//!
//! # Concurrent writers
//! Jobs never open the tracking DB, and never commit artifacts. A job writes only into its own
//! staging directory, the key's resume area (under the key lock held by the controller) and its
//! own job files; metrics go to an append-only events file that the controller reads while
//! polling and records through its one DB connection. So several jobs ending at once cannot
//! corrupt or lose tracking rows or artifacts: there is a single writer of the DB and of
//! `objects/`, as with the local executor. The alternative, jobs writing the DB in WAL mode
//! with busy timeouts, is unsafe exactly where Slurm runs: WAL needs shared memory between all
//! processes using the database, which processes on different hosts of an NFS/Lustre mount do
//! not have (SQLite: "WAL does not work over a network filesystem").
//!
//! A job's result file is written through a temp file and a rename; a job that dies before
//! writing it (killed, timed out, node failure) is reported from its Slurm state.
//!
//! # Orphans
//! Ctrl-C, SIGTERM or SIGHUP of `t2s run` cancels its jobs. A `t2s run` killed outright leaves
//! them running unwatched: nobody would commit their output, and a rerun's job would train
//! beside them in the same resume area. So a Slurm run first cancels the jobs of earlier runs
//! of the project whose process is gone (`orphans`).

mod job;
mod orphans;
pub mod poll;
pub mod sbatch;
pub mod spec;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Executor, NodeJob};
use crate::runs::ExecRecord;
use crate::stages::{StageError, StageOutcome};
use poll::{JobStatus, Query};
use sbatch::JobFiles;
use spec::{EventReader, JobEvent, JobResult, NodeSpec, SPEC_FORMAT};

pub use job::run as run_job;
pub use orphans::cancel_orphans;

/// After a job ends, how long to wait for its result file to become visible (NFS attribute
/// caches can hide a file written on another host for a while).
const RESULT_GRACE: Duration = Duration::from_secs(30);
/// After `scancel` (Ctrl-C of the controller), how long to wait for the job to end.
pub(crate) const CANCEL_WAIT: Duration = Duration::from_secs(60);
/// How long Slurm may fail to answer about a job before the node is given up.
const QUERY_PATIENCE: Duration = Duration::from_secs(300);

/// Why the Slurm executor cannot be used here.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("--executor slurm: `{0}` is not on PATH: Slurm's client commands are not installed on this machine. Run t2s on a machine of the cluster (e.g. a login node), install Slurm's client tools (Debian/Ubuntu: `apt-get install slurm-client`), or run with `--executor local`")]
    Missing(&'static str),
    #[error("--executor slurm: the Slurm controller does not answer (`scontrol ping`: {0}). Check that slurmctld runs and that SLURM_CONF names the cluster's slurm.conf, or run with `--executor local`")]
    NoController(String),
    #[error("--executor slurm: cannot find the t2s executable for the job scripts: {0}")]
    NoExe(std::io::Error),
}

/// Check that Slurm can be used, before anything runs: its commands are on PATH and the
/// controller answers.
pub fn preflight() -> Result<(), SlurmError> {
    for tool in ["sbatch", "scontrol", "scancel"] {
        if which(tool).is_none() {
            return Err(SlurmError::Missing(tool));
        }
    }
    let out = std::process::Command::new("scontrol")
        .arg("ping")
        .output()
        .map_err(|e| SlurmError::NoController(e.to_string()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // One `is UP` is enough: with a backup controller, the other one may be down.
    if !text.contains("is UP") {
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(SlurmError::NoController(first.trim().to_string()));
    }
    Ok(())
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs nodes as Slurm batch jobs.
pub struct SlurmExecutor {
    root: PathBuf,
    run: i64,
    pipeline: String,
    t2s: PathBuf,
    worker: Option<PathBuf>,
}

impl SlurmExecutor {
    /// For run `run` of `pipeline` in project `root` (which must be on a filesystem the
    /// compute nodes share).
    pub fn new(root: &Path, run: i64, pipeline: &str) -> Result<Self, SlurmError> {
        let t2s = std::env::current_exe().map_err(SlurmError::NoExe)?;
        let worker = crate::worker::WorkerLauncher::locate()
            .ok()
            .map(|w| w.exe)
            .and_then(|w| std::fs::canonicalize(&w).ok().or(Some(w)));
        Ok(Self {
            root: root.to_path_buf(),
            run,
            pipeline: pipeline.to_string(),
            t2s,
            worker,
        })
    }

    fn prepare(&self, job: &NodeJob<'_>, files: &JobFiles) -> std::io::Result<()> {
        std::fs::create_dir_all(&files.dir)?;
        for stale in [&files.result, &files.events, &files.log] {
            let _ = std::fs::remove_file(stale);
        }
        let spec = NodeSpec {
            format: SPEC_FORMAT,
            pipeline: self.pipeline.clone(),
            run: self.run,
            node: job.node.clone(),
            key: job.key.to_string(),
            inputs: job.inputs.to_vec(),
            out_dir: job.out_dir.to_path_buf(),
            partial_dir: job.partial_dir.to_path_buf(),
            pipeline_dir: absolute(job.pipeline_dir),
            events: files.events.clone(),
            result: files.result.clone(),
            hub_pins: crate::data::hub::pin::made(),
        };
        spec::write_json(&files.spec, &spec)?;
        let what = format!(
            "t2s job: node `{}` of pipeline `{}`, run {}",
            job.node.id, self.pipeline, self.run
        );
        std::fs::write(
            &files.script,
            sbatch::script(&self.t2s, self.worker.as_deref(), files, &what),
        )?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&files.script, std::fs::Permissions::from_mode(0o755))
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl Executor for SlurmExecutor {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn run_node(&self, job: &NodeJob<'_>) -> Result<StageOutcome, StageError> {
        let files = JobFiles::new(
            &sbatch::run_dir(&self.root, &self.run.to_string()),
            &job.node.id,
        );
        self.prepare(job, &files).map_err(|e| {
            StageError::Failed(format!(
                "cannot write the job files in {}: {e}",
                files.dir.display()
            ))
        })?;
        let args = sbatch::args(&self.pipeline, job.node, &files, &self.root);
        let id = sbatch::submit(&args).map_err(StageError::Failed)?;
        let log = files.log.display().to_string();
        let record = |state: &str| {
            (job.on_exec)(&ExecRecord {
                executor: "slurm".into(),
                job_id: Some(id.clone()),
                state: Some(state.to_string()),
                log: Some(log.clone()),
            })
        };
        record("SUBMITTED");
        job.metrics
            .progress(0, None, &format!("slurm job {id} submitted"));
        let mut events = EventReader::new(files.events.clone());
        let status = wait(&id, job, &mut events, &record);
        forward(job, events.read_new());
        let status = match status {
            Ok(s) => s,
            Err(Waited::Interrupted) => return Err(StageError::Interrupted),
            Err(Waited::Lost(why)) => {
                return Err(StageError::Failed(format!(
                    "slurm job {id}: {why}; log: {log}"
                )))
            }
        };
        let result = read_result(&files.result, status.as_ref());
        finish(&id, status.as_ref(), result, &log)
    }
}

/// How waiting for a job ended without a final state.
enum Waited {
    /// The controller was interrupted (the job was cancelled).
    Interrupted,
    /// Slurm could not be asked about the job for too long.
    Lost(String),
}

/// Poll until the job ends, forwarding its events and recording state changes. `None`: the
/// job ended and Slurm no longer knows it (its result file tells how it went).
fn wait(
    id: &str,
    job: &NodeJob<'_>,
    events: &mut EventReader,
    record: &dyn Fn(&str),
) -> Result<Option<JobStatus>, Waited> {
    let t0 = Instant::now();
    let mut last_state = String::new();
    let mut cancelled_at: Option<Instant> = None;
    let mut failing_since: Option<Instant> = None;
    loop {
        if job.cancel.load(Ordering::Relaxed) && cancelled_at.is_none() {
            if let Err(e) = poll::cancel(id) {
                tracing::warn!("scancel {id}: {e}");
            }
            cancelled_at = Some(Instant::now());
        }
        if cancelled_at.is_some_and(|t| t.elapsed() > CANCEL_WAIT) {
            return Err(Waited::Interrupted);
        }
        forward(job, events.read_new());
        match poll::query(id) {
            Ok(Query::Known(s)) => {
                failing_since = None;
                if s.state != last_state {
                    last_state = s.state.clone();
                    record(&s.state);
                    let reason = s.reason.as_deref().map(|r| format!(" ({r})"));
                    job.metrics.progress(
                        0,
                        None,
                        &format!("slurm job {id} {}{}", s.state, reason.unwrap_or_default()),
                    );
                }
                if s.is_terminal() {
                    return match cancelled_at {
                        Some(_) => Err(Waited::Interrupted),
                        None => Ok(Some(s)),
                    };
                }
            }
            Ok(Query::Gone) => {
                return match cancelled_at {
                    Some(_) => Err(Waited::Interrupted),
                    None => Ok(None),
                }
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                tracing::warn!("{e}");
                if since.elapsed() > QUERY_PATIENCE {
                    return Err(Waited::Lost(format!(
                        "Slurm did not answer about the job for {} s: {e}",
                        QUERY_PATIENCE.as_secs()
                    )));
                }
            }
        }
        std::thread::sleep(poll::interval(t0.elapsed()));
    }
}

/// Hand a job's events to the scheduler's sink (tracking DB, progress display).
fn forward(job: &NodeJob<'_>, events: Vec<JobEvent>) {
    for e in events {
        match e {
            JobEvent::Metric { name, step, value } => {
                job.metrics.metric(&name, step, value.unwrap_or(f64::NAN))
            }
            JobEvent::Progress {
                done,
                total,
                message,
            } => job.metrics.progress(done, total, &message),
        }
    }
}

/// The job's result file; for a job that completed, waits a while for it to become visible.
fn read_result(path: &Path, status: Option<&JobStatus>) -> Option<anyhow::Result<JobResult>> {
    let patient = status.is_none_or(|s| s.state == "COMPLETED");
    let t0 = Instant::now();
    loop {
        if path.exists() {
            return Some(spec::read_json(path));
        }
        if !patient || t0.elapsed() > RESULT_GRACE {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The node's outcome from the job's final state and its result file.
fn finish(
    id: &str,
    status: Option<&JobStatus>,
    result: Option<anyhow::Result<JobResult>>,
    log: &str,
) -> Result<StageOutcome, StageError> {
    let state = status.map(|s| s.state.as_str()).unwrap_or("ended");
    let exit = status
        .and_then(|s| s.exit_code.as_deref())
        .filter(|c| *c != "0:0")
        .map(|c| format!(", exit code {c}"))
        .unwrap_or_default();
    let job = format!("slurm job {id} {state}{exit} (log: {log})");
    match result {
        Some(Ok(r @ JobResult::Succeeded { .. }))
            if status.is_none_or(|s| s.state == "COMPLETED") =>
        {
            Ok(r.outcome().unwrap_or_default())
        }
        Some(Ok(JobResult::Failed { error })) => Err(StageError::Failed(format!("{job}: {error}"))),
        Some(Err(e)) => Err(StageError::Failed(format!(
            "{job}: its result file is unreadable: {e:#}"
        ))),
        _ => match status {
            Some(s) if s.state != "COMPLETED" => {
                Err(StageError::Failed(format!("{job}: {}", s.advice())))
            }
            _ => Err(StageError::Failed(format!(
                "{job} without writing its result file; see the log"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(state: &str, exit: &str) -> JobStatus {
        JobStatus {
            state: state.into(),
            reason: None,
            exit_code: Some(exit.into()),
        }
    }

    fn err(r: Result<StageOutcome, StageError>) -> String {
        match r {
            Err(e) => e.to_string(),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn a_failed_stage_is_reported_with_job_id_state_and_log() {
        let failed = JobResult::Failed {
            error: "stage `bad`: command exited with status 3".into(),
        };
        let e = err(finish(
            "42",
            Some(&st("FAILED", "1:0")),
            Some(Ok(failed)),
            "/x/job.log",
        ));
        assert_eq!(
            e,
            "slurm job 42 FAILED, exit code 1:0 (log: /x/job.log): stage `bad`: command exited with status 3"
        );
    }

    #[test]
    fn a_job_without_result_is_reported_from_its_state() {
        let e = err(finish("7", Some(&st("TIMEOUT", "0:15")), None, "/l"));
        assert!(
            e.starts_with("slurm job 7 TIMEOUT, exit code 0:15 (log: /l): "),
            "{e}"
        );
        assert!(e.contains("slurm.time"), "{e}");
        let e = err(finish("8", Some(&st("CANCELLED", "0:15")), None, "/l"));
        assert!(e.contains("CANCELLED") && e.contains("resume"), "{e}");
        let e = err(finish("9", Some(&st("COMPLETED", "0:0")), None, "/l"));
        assert_eq!(
            e,
            "slurm job 9 COMPLETED (log: /l) without writing its result file; see the log"
        );
    }

    #[test]
    fn a_completed_job_returns_the_stage_outcome() {
        let ok = JobResult::Succeeded {
            resumed: true,
            metrics: [("acc".to_string(), Some(0.5))].into(),
        };
        let o = finish(
            "1",
            Some(&st("COMPLETED", "0:0")),
            Some(Ok(ok.clone())),
            "/l",
        )
        .unwrap();
        assert!(o.resumed);
        assert_eq!(o.metrics["acc"], 0.5);
        // A job Slurm has forgotten: its result file decides.
        assert!(finish("1", None, Some(Ok(ok)), "/l").is_ok());
    }
}
