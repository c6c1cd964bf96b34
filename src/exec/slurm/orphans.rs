//! Jobs left by a `t2s run` that was killed outright (`kill -9`, a lost machine): nobody will
//! commit their output, and a rerun's job would train beside them in the same resume area. A
//! Slurm run cancels them first, and waits until they have stopped.

use std::time::{Duration, Instant};

use super::poll::{self, JobStatus, Query};
use super::CANCEL_WAIT;
use crate::runs::ExecRecord;

/// Cancel the jobs of earlier runs of this project whose `t2s run` process is gone (killed
/// without a chance to cancel them; on this host, where that can be told). Returns a line per
/// job for the user.
pub fn cancel_orphans(tracker: &crate::runs::Tracker) -> Vec<String> {
    let jobs = match tracker.open_jobs() {
        Ok(j) => j,
        Err(e) => return vec![format!("cannot look for jobs of killed runs: {e}")],
    };
    let mut said = Vec::new();
    let mut cancelled = Vec::new();
    for j in jobs.into_iter().filter(|j| j.run_dead) {
        let ended = j.state.as_deref().is_some_and(|s| {
            JobStatus {
                state: s.to_string(),
                reason: None,
                exit_code: None,
            }
            .is_terminal()
        });
        if ended {
            continue;
        }
        let state = match poll::query(&j.job_id) {
            Ok(Query::Known(s)) if !s.is_terminal() => match poll::cancel(&j.job_id) {
                Ok(()) => {
                    said.push(format!(
                        "cancelled slurm job {} (node {} of run {}, whose t2s process is gone)",
                        j.job_id, j.node, j.run
                    ));
                    cancelled.push(j.job_id.clone());
                    "CANCELLED".to_string()
                }
                Err(e) => {
                    said.push(format!("cannot cancel slurm job {}: {e}", j.job_id));
                    continue;
                }
            },
            Ok(Query::Known(s)) => s.state,
            Ok(Query::Gone) => "ended".to_string(),
            Err(e) => {
                said.push(format!("cannot ask Slurm about job {}: {e}", j.job_id));
                continue;
            }
        };
        let rec = ExecRecord {
            executor: "slurm".into(),
            job_id: Some(j.job_id.clone()),
            state: Some(state),
            log: j.log.clone(),
        };
        if let Err(e) = tracker.record_execution(j.run, &j.node, &rec) {
            tracing::warn!("{e}");
        }
    }
    // Let them stop before this run's jobs use the same resume areas.
    let t0 = Instant::now();
    while !cancelled.is_empty() && t0.elapsed() < CANCEL_WAIT {
        cancelled.retain(|id| matches!(poll::query(id), Ok(Query::Known(s)) if !s.is_terminal()));
        std::thread::sleep(Duration::from_millis(200));
    }
    said
}
