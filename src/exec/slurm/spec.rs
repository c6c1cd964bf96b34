//! What passes between the controller (`t2s run --executor slurm`) and a job (`t2s exec-node`),
//! as files on the shared filesystem:
//!
//! - the node spec (JSON): the node itself (resolved params, as keyed by the controller, so an
//!   edit of the YAML while the job waits in the queue changes nothing), its inputs and paths;
//! - events (JSON lines, appended by the job): metrics and progress, which the controller reads
//!   as they come and forwards to its tracking DB and progress display;
//! - the result (JSON, written once through a temp file and a rename): the stage's outcome or
//!   its error.
//!
//! Jobs never open the tracking DB: see `exec::slurm` for why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pipeline::Node;
use crate::stages::{StageInput, StageOutcome};

/// Bumped when the spec changes incompatibly (a job started by another t2s version refuses it).
pub const SPEC_FORMAT: u32 = 1;

/// Everything a job needs to run exactly one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSpec {
    pub format: u32,
    pub pipeline: String,
    pub run: i64,
    pub node: Node,
    /// The node's cache key (for the log; the controller commits under it).
    pub key: String,
    pub inputs: Vec<StageInput>,
    /// Staging directory the stage writes into (created by the controller).
    pub out_dir: PathBuf,
    /// Resume area of the key.
    pub partial_dir: PathBuf,
    pub pipeline_dir: PathBuf,
    /// Where the job appends [`JobEvent`] lines.
    pub events: PathBuf,
    /// Where the job writes its [`JobResult`].
    pub result: PathBuf,
    /// The hub revisions the controller resolved when it planned (and keyed the node by): the
    /// job fetches those commits, not what a branch points at when the job starts.
    #[serde(default)]
    pub hub_pins: Vec<crate::data::hub::pin::MadePin>,
}

/// One line of the events file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JobEvent {
    /// `value` is `None` for a value JSON cannot hold (NaN, infinities).
    Metric {
        name: String,
        step: Option<i64>,
        value: Option<f64>,
    },
    Progress {
        done: u64,
        total: Option<u64>,
        message: String,
    },
}

/// How the stage ended inside the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum JobResult {
    Succeeded {
        resumed: bool,
        /// Final metrics; `None` for NaN or infinities.
        metrics: BTreeMap<String, Option<f64>>,
    },
    Failed {
        error: String,
    },
    Interrupted,
}

impl JobResult {
    pub fn from_outcome(o: &StageOutcome) -> Self {
        JobResult::Succeeded {
            resumed: o.resumed,
            metrics: o
                .metrics
                .iter()
                .map(|(k, v)| (k.clone(), v.is_finite().then_some(*v)))
                .collect(),
        }
    }

    /// The outcome of a succeeded job.
    pub fn outcome(&self) -> Option<StageOutcome> {
        match self {
            JobResult::Succeeded { resumed, metrics } => Some(StageOutcome {
                resumed: *resumed,
                metrics: metrics
                    .iter()
                    .map(|(k, v)| (k.clone(), v.unwrap_or(f64::NAN)))
                    .collect(),
            }),
            _ => None,
        }
    }
}

/// Write `value` as JSON to `path` through a temp file and a rename, so a reader sees the whole
/// file or none.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not valid: {e}", path.display()))
}

/// Reads the events a job appends, a complete line at a time, from where it stopped last.
#[derive(Debug)]
pub struct EventReader {
    path: PathBuf,
    offset: u64,
}

impl EventReader {
    pub fn new(path: PathBuf) -> Self {
        Self { path, offset: 0 }
    }

    /// Events appended since the last call (none while the file does not exist). A line the
    /// job is still writing is left for the next call; a malformed line is skipped.
    pub fn read_new(&mut self) -> Vec<JobEvent> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        self.offset += end as u64 + 1;
        buf[..end]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| match serde_json::from_slice(l) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!("{}: skipping a malformed event: {e}", self.path.display());
                    None
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn events_are_read_a_whole_line_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut r = EventReader::new(path.clone());
        assert!(r.read_new().is_empty(), "no file yet");
        let mut f = std::fs::File::create(&path).unwrap();
        let m = JobEvent::Metric {
            name: "loss".into(),
            step: Some(2),
            value: Some(1.5),
        };
        let line = serde_json::to_string(&m).unwrap();
        write!(f, "{line}\n{}", &line[..10]).unwrap();
        assert_eq!(r.read_new(), std::slice::from_ref(&m));
        write!(f, "{}\nnot json\n", &line[10..]).unwrap();
        assert_eq!(r.read_new(), [m]);
        assert!(r.read_new().is_empty());
    }

    #[test]
    fn results_keep_non_finite_metrics_as_nan() {
        let mut o = StageOutcome {
            resumed: true,
            ..Default::default()
        };
        o.metrics.insert("loss".into(), f64::NAN);
        o.metrics.insert("acc".into(), 0.5);
        let r = JobResult::from_outcome(&o);
        let text = serde_json::to_string(&r).unwrap();
        let back: JobResult = serde_json::from_str(&text).unwrap();
        let o2 = back.outcome().unwrap();
        assert!(o2.resumed);
        assert_eq!(o2.metrics["acc"], 0.5);
        assert!(o2.metrics["loss"].is_nan());
    }
}
