//! The tracking database `<root>/experiments/t2s.db`: runs, nodes, params, metrics, artifacts,
//! executions (where each node ran: local, or a Slurm job id with its state and log).
//!
//! This is the only module that speaks SQL. The schema is created and upgraded by numbered
//! migrations (`migrations` table); the file is plain SQLite in WAL mode, so `sqlite3` opens it
//! while a run writes. Writers batch their statements: a fully cached rerun costs a handful.

mod db;
mod diff;
mod executions;
mod query;
mod sink;
mod status;

pub use db::{MetricPoint, NodeRecord, RunInfo, Tracker, TrackerError};
#[cfg(test)]
pub(crate) use diff::sample_param_changes;
pub use diff::{MetricChange, NodeChange, NodeSide, ParamChange, RunDiff, RunFacts};
pub use executions::{ExecRecord, ExecRow, OpenJob};
pub use query::{MetricRow, NodeRow, ParamRow, RunRow};
pub use sink::NodeSink;
pub use status::{NodeStatus, RunStatus};

/// The current UTC time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// This machine's host name (best effort).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Whether process `pid` is alive on this host. Where that cannot be told, assume alive.
pub fn pid_alive(pid: i64) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests;
