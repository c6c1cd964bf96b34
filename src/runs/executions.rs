//! The `executions` table: where each node that ran was executed. For the Slurm executor: the
//! job id, its last known state and its log, updated as the job moves (so `t2s show` names the
//! job of a node still running, or of a controller that was killed).

use rusqlite::{params, Connection};

use super::db::{Tracker, TrackerError};

/// Where one node of a run was executed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecRecord {
    /// `local` or `slurm`.
    pub executor: String,
    /// The Slurm job id.
    pub job_id: Option<String>,
    /// The job's last known state (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, ...).
    pub state: Option<String>,
    /// The job's log file.
    pub log: Option<String>,
}

/// One row of `executions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRow {
    pub node: String,
    pub exec: ExecRecord,
}

pub(super) fn write(
    conn: &Connection,
    run: i64,
    node: &str,
    e: &ExecRecord,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO executions(run, node, executor, job_id, state, log, updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        run,
        node,
        e.executor,
        e.job_id,
        e.state,
        e.log,
        super::now_rfc3339()
    ])?;
    Ok(())
}

impl Tracker {
    /// Record (or update) where a node is executed, at once: a submitted job is known even if
    /// this process dies before the node ends.
    pub fn record_execution(
        &self,
        run: i64,
        node: &str,
        exec: &ExecRecord,
    ) -> Result<(), TrackerError> {
        write(&self.lock(), run, node, exec).map_err(|e| self.sql_err(e))
    }

    /// Executions of one run, by node id.
    pub fn executions(&self, run: i64) -> Result<Vec<ExecRow>, TrackerError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT node, executor, job_id, state, log FROM executions WHERE run = ?1
                 ORDER BY node",
            )
            .map_err(|e| self.sql_err(e))?;
        let rows = stmt
            .query_map([run], |r| {
                Ok(ExecRow {
                    node: r.get(0)?,
                    exec: ExecRecord {
                        executor: r.get(1)?,
                        job_id: r.get(2)?,
                        state: r.get(3)?,
                        log: r.get(4)?,
                    },
                })
            })
            .map_err(|e| self.sql_err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql_err(e))
    }
}

/// A Slurm job recorded by a run that is still `running` in the DB, whose last known state is
/// `state`: candidates for orphans once their run's process is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenJob {
    pub run: i64,
    pub node: String,
    pub job_id: String,
    pub state: Option<String>,
    pub log: Option<String>,
    /// Whether the run's process is known to be gone (same host, pid not alive).
    pub run_dead: bool,
}

impl Tracker {
    /// Slurm jobs of runs still marked running (their own jobs, or a killed run's).
    pub fn open_jobs(&self) -> Result<Vec<OpenJob>, TrackerError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT e.run, e.node, e.job_id, e.state, e.log, r.host, r.pid
                 FROM executions e JOIN runs r ON r.id = e.run
                 WHERE e.executor = 'slurm' AND e.job_id IS NOT NULL AND r.status = ?1
                 ORDER BY e.run, e.node",
            )
            .map_err(|e| self.sql_err(e))?;
        let here = super::host_name();
        let rows = stmt
            .query_map([super::RunStatus::Running], |r| {
                let host: String = r.get(5)?;
                let pid: i64 = r.get(6)?;
                Ok(OpenJob {
                    run: r.get(0)?,
                    node: r.get(1)?,
                    job_id: r.get(2)?,
                    state: r.get(3)?,
                    log: r.get(4)?,
                    run_dead: host == here && !super::pid_alive(pid),
                })
            })
            .map_err(|e| self.sql_err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tracker in a temp root with one started run (the root must outlive the tracker).
    fn started_run() -> (tempfile::TempDir, Tracker, i64) {
        let root = tempfile::tempdir().unwrap();
        let t = Tracker::open(root.path()).unwrap();
        let run = t
            .start_run(&crate::runs::RunInfo {
                pipeline: "p".into(),
                file: "p.yaml".into(),
                file_digest: "d".into(),
                git_rev: None,
                argv: vec![],
            })
            .unwrap();
        (root, t, run)
    }

    #[test]
    fn an_execution_is_recorded_then_updated() {
        let (_root, t, run) = started_run();
        let mut e = ExecRecord {
            executor: "slurm".into(),
            job_id: Some("17".into()),
            state: Some("PENDING".into()),
            log: Some("/x/job.log".into()),
        };
        t.record_execution(run, "train", &e).unwrap();
        e.state = Some("COMPLETED".into());
        t.record_execution(run, "train", &e).unwrap();
        let rows = t.executions(run).unwrap();
        assert_eq!(
            rows,
            [ExecRow {
                node: "train".into(),
                exec: e
            }]
        );
    }

    #[test]
    fn open_jobs_of_a_run_whose_process_is_gone_are_marked_dead() {
        let (_root, t, run) = started_run();
        let job = ExecRecord {
            executor: "slurm".into(),
            job_id: Some("5".into()),
            state: Some("RUNNING".into()),
            log: None,
        };
        t.record_execution(run, "train", &job).unwrap();
        let local = ExecRecord {
            executor: "local".into(),
            ..Default::default()
        };
        t.record_execution(run, "load", &local).unwrap();
        let open = t.open_jobs().unwrap();
        assert_eq!(open.len(), 1, "{open:?}");
        assert!(!open[0].run_dead, "this process is alive");
        // No process has this pid: the run was killed without finishing its row.
        t.lock()
            .execute("UPDATE runs SET pid = 2147483646 WHERE id = ?1", [run])
            .unwrap();
        assert!(t.open_jobs().unwrap()[0].run_dead);
        t.finish_run(run, crate::runs::RunStatus::Failed, None)
            .unwrap();
        assert!(
            t.open_jobs().unwrap().is_empty(),
            "a finished run has no open jobs"
        );
    }
}
