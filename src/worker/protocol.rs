//! Wire types shared by the orchestrator and the worker. Both sides use these exact structs
//! (the worker crate depends on this crate), so they cannot drift apart.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bump when the protocol changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;

/// One job for the worker. Written as JSON to a file whose path is the worker's only argument.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    pub protocol: u32,
    /// `doctor`, `train`, `generate`, `infer`, `bench-train`, ...
    pub job: String,
    /// Job parameters (for stage jobs: the node's resolved params).
    #[serde(default)]
    pub params: Value,
    /// Input artifact directories by role (e.g. `{"model": "...", "data": "..."}`).
    #[serde(default)]
    pub inputs: std::collections::BTreeMap<String, PathBuf>,
    /// Where to write outputs (the node's staging dir).
    #[serde(default)]
    pub out_dir: Option<PathBuf>,
    /// Persistent checkpoint area of the node's key (resume).
    #[serde(default)]
    pub partial_dir: Option<PathBuf>,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
}

fn default_device() -> String {
    "auto".to_string()
}

impl JobSpec {
    /// The spec of a typed job (the way `t2s` builds every spec).
    pub fn of(job: &super::jobs::Job) -> Self {
        Self::new(job.name(), job.params())
    }

    /// The job this spec names, with its params read as the job's struct.
    pub fn typed(&self) -> Result<super::jobs::Job, String> {
        super::jobs::Job::parse(&self.job, &self.params)
    }

    /// A spec from a job name and raw params (tests send malformed ones on purpose).
    pub fn new(job: &str, params: Value) -> Self {
        Self {
            protocol: PROTOCOL_VERSION,
            job: job.to_string(),
            params,
            inputs: Default::default(),
            out_dir: None,
            partial_dir: None,
            device: default_device(),
        }
    }
}

/// One line of the worker's stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// Progress for the display: `done` of `total` units (steps, rows...).
    Progress {
        done: u64,
        total: Option<u64>,
        #[serde(default)]
        message: String,
    },
    /// A scalar metric; `step` is `None` for final values.
    Metric {
        name: String,
        step: Option<i64>,
        value: f64,
    },
    /// A log line (level: error, warn, info, debug).
    Log { level: String, message: String },
    /// The job's result (exactly one, last, on success).
    Result { value: Value },
    /// The job failed; the message is for the user.
    Error { message: String },
}
