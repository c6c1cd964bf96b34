//! Reads for `t2s runs` / `t2s show` (and later reports).

use rusqlite::{params, OptionalExtension, Row};

use super::db::{Tracker, TrackerError};
use super::{NodeStatus, RunStatus};

/// One row of `runs`, with its status as readers should see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub pipeline: String,
    pub file: String,
    pub file_digest: String,
    pub started: String,
    pub ended: Option<String>,
    /// `running` is shown as `interrupted` when its process is gone.
    pub status: RunStatus,
    pub host: String,
    pub pid: i64,
    pub git_rev: Option<String>,
    pub t2s_version: String,
    pub argv: String,
    pub error: Option<String>,
}

/// One row of `nodes`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeRow {
    pub node: String,
    pub stage: String,
    pub kind: String,
    pub key: Option<String>,
    pub status: NodeStatus,
    pub started: Option<String>,
    pub duration_s: Option<f64>,
    pub artifact: Option<String>,
    pub error: Option<String>,
}

/// One param of one node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParamRow {
    pub node: String,
    pub name: String,
    /// JSON text.
    pub value: String,
}

/// One metric value.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MetricRow {
    pub node: String,
    pub name: String,
    pub step: Option<i64>,
    pub value: f64,
}

const RUN_COLUMNS: &str = "id, pipeline, file, file_digest, started, ended, status, host, pid, \
                           git_rev, t2s_version, argv, error";

/// How many runs back from the newest `which` names: `Some(Ok(0))` for `last` / `latest`,
/// `Some(Ok(n))` for `last~n`, `Some(Err(()))` for a malformed `last~…`, `None` for anything
/// else (a run id).
fn newest_offset(which: &str) -> Option<Result<i64, ()>> {
    let rest = which
        .strip_prefix("latest")
        .or_else(|| which.strip_prefix("last"))?;
    if rest.is_empty() {
        return Some(Ok(0));
    }
    let n = rest.strip_prefix('~')?;
    Some(n.parse::<u32>().map(i64::from).map_err(|_| ()))
}

fn run_row(r: &Row<'_>) -> rusqlite::Result<RunRow> {
    let mut row = RunRow {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        file: r.get(2)?,
        file_digest: r.get(3)?,
        started: r.get(4)?,
        ended: r.get(5)?,
        status: r.get(6)?,
        host: r.get(7)?,
        pid: r.get(8)?,
        git_rev: r.get(9)?,
        t2s_version: r.get(10)?,
        argv: r.get(11)?,
        error: r.get(12)?,
    };
    // A run killed with SIGKILL never updates its row; tell the truth when its process is gone.
    if row.status == RunStatus::Running
        && row.host == super::host_name()
        && !super::pid_alive(row.pid)
    {
        row.status = RunStatus::Interrupted;
    }
    Ok(row)
}

impl Tracker {
    /// The most recent runs, newest first.
    pub fn list_runs(&self, limit: usize) -> Result<Vec<RunRow>, TrackerError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?1"
            ))
            .map_err(|e| self.sql_err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], run_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.sql_err(e))?;
        Ok(rows)
    }

    /// One run by id; `last` / `latest` for the newest, `last~N` for the N-th before it.
    pub fn run(&self, which: &str) -> Result<RunRow, TrackerError> {
        let no_such = || TrackerError::NoSuchRun(which.to_string());
        let conn = self.lock();
        let row = match newest_offset(which) {
            Some(back) => conn.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?1"),
                params![back.map_err(|()| no_such())?],
                run_row,
            ),
            None => {
                let id: i64 = which.parse().map_err(|_| no_such())?;
                conn.query_row(
                    &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                    params![id],
                    run_row,
                )
            }
        };
        row.optional()
            .map_err(|e| self.sql_err(e))?
            .ok_or_else(no_such)
    }

    /// Nodes of a run, in the order they were recorded.
    pub fn nodes(&self, run: i64) -> Result<Vec<NodeRow>, TrackerError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT node, stage, kind, key, status, started, duration_s, artifact, error
                 FROM nodes WHERE run = ?1 ORDER BY rowid",
            )
            .map_err(|e| self.sql_err(e))?;
        let rows = stmt
            .query_map(params![run], |r| {
                Ok(NodeRow {
                    node: r.get(0)?,
                    stage: r.get(1)?,
                    kind: r.get(2)?,
                    key: r.get(3)?,
                    status: r.get(4)?,
                    started: r.get(5)?,
                    duration_s: r.get(6)?,
                    artifact: r.get(7)?,
                    error: r.get(8)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.sql_err(e))?;
        Ok(rows)
    }

    /// How many nodes of a run ended in each status.
    pub fn node_counts(&self, run: i64) -> Result<Vec<(NodeStatus, i64)>, TrackerError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT status, count(*) FROM nodes WHERE run = ?1 GROUP BY status ORDER BY status",
            )
            .map_err(|e| self.sql_err(e))?;
        let rows = stmt
            .query_map(params![run], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.sql_err(e))?;
        Ok(rows)
    }

    /// Params of a run's nodes.
    pub fn params(&self, run: i64) -> Result<Vec<ParamRow>, TrackerError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT node, name, value FROM params WHERE run = ?1 ORDER BY rowid")
            .map_err(|e| self.sql_err(e))?;
        let rows = stmt
            .query_map(params![run], |r| {
                Ok(ParamRow {
                    node: r.get(0)?,
                    name: r.get(1)?,
                    value: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.sql_err(e))?;
        Ok(rows)
    }

    /// Metrics of a run: all steps when `final_only` is false, else the final values (step
    /// NULL, latest recorded per name).
    pub fn metrics(&self, run: i64, final_only: bool) -> Result<Vec<MetricRow>, TrackerError> {
        let conn = self.lock();
        let sql = if final_only {
            "SELECT node, name, step, value FROM metrics
             WHERE id IN (SELECT max(id) FROM metrics WHERE run = ?1 AND step IS NULL
                          GROUP BY node, name)
             ORDER BY id"
        } else {
            "SELECT node, name, step, value FROM metrics WHERE run = ?1 ORDER BY id"
        };
        let mut stmt = conn.prepare(sql).map_err(|e| self.sql_err(e))?;
        let rows = stmt
            .query_map(params![run], |r| {
                Ok(MetricRow {
                    node: r.get(0)?,
                    name: r.get(1)?,
                    step: r.get(2)?,
                    value: r.get(3)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.sql_err(e))?;
        Ok(rows)
    }
}
