//! Stage kinds: the contract between the executor and the code that does a node's work.
//!
//! A stage kind declares its parameters (used by pipeline validation), its version (part of the
//! cache key) and what it needs (GPU slot or not); `run` gets paths and a metrics sink and writes
//! its outputs into the staging directory, which the executor commits atomically on success.
//! Stages never touch the cache, the tracking DB or the YAML directly.

pub mod command;
mod common;
pub mod eda;
pub mod evaluate;
pub mod load;
pub mod model;
pub mod model_source;
pub mod params;
pub mod preprocess;
pub mod registry;
pub mod report;
pub mod split;
pub mod tokenizer;
pub mod train;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde_json::{Map, Value};

/// One declared parameter of a stage kind, as its params struct describes it.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: String,
    /// What values it takes, in words ("a non-negative integer", "one of `a`, `b`").
    pub takes: String,
    /// `None` means required.
    pub default: Option<Value>,
    /// The field's doc comment: for `t2s kinds` and validation hints.
    pub doc: String,
}

/// An upstream node's committed artifact, handed to a stage as an input.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StageInput {
    /// Stage name in the pipeline (e.g. `train`).
    pub stage: String,
    /// Expanded node id (e.g. `train[lora_r=4]`).
    pub node: String,
    /// Stage kind of the upstream node (e.g. `train`).
    pub kind: String,
    /// The upstream node's matrix values (empty when it was not fanned out).
    pub matrix: BTreeMap<String, Value>,
    /// Read-only directory holding the committed artifact.
    pub dir: PathBuf,
}

/// Where metrics of a running node go (the tracking DB, in the executor).
pub trait MetricsSink: Sync {
    /// Record one scalar metric. `step` is `None` for final metrics.
    fn metric(&self, name: &str, step: Option<i64>, value: f64);
    /// Human progress for the progress display (never stored as a metric).
    fn progress(&self, _done: u64, _total: Option<u64>, _message: &str) {}
}

/// Everything a stage may use while running.
pub struct StageContext<'a> {
    pub node_id: &'a str,
    pub stage_name: &'a str,
    /// Resolved parameters: validated, defaults filled, `${matrix.x}` substituted.
    pub params: &'a Map<String, Value>,
    /// Upstream artifacts, in the order of the stage's `needs` (fanned-out needs expanded).
    pub inputs: &'a [StageInput],
    /// Staging directory: write outputs here; committed atomically only if `run` succeeds.
    pub out_dir: &'a Path,
    /// Persistent per-key scratch for checkpoints; survives failed/killed attempts of the same key.
    pub partial_dir: &'a Path,
    /// Directory the pipeline file lives in (relative paths in params resolve against it).
    pub pipeline_dir: &'a Path,
    pub metrics: &'a dyn MetricsSink,
    /// Set when the run is interrupted (Ctrl-C); long stages check it and stop cleanly.
    pub cancel: &'a AtomicBool,
    /// Launches the libtorch worker for tensor work.
    pub worker: &'a crate::worker::WorkerLauncher,
}

/// What a stage reports back besides the files it wrote.
#[derive(Debug, Default, Clone)]
pub struct StageOutcome {
    /// True when the stage continued from a checkpoint in the partial area.
    pub resumed: bool,
    /// Final scalar metrics (also recorded in the tracking DB).
    pub metrics: BTreeMap<String, f64>,
}

/// A stage failure, with a message for the user that names what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{0}")]
    Failed(String),
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<std::io::Error> for StageError {
    fn from(e: std::io::Error) -> Self {
        StageError::Other(e.into())
    }
}

impl From<serde_json::Error> for StageError {
    fn from(e: serde_json::Error) -> Self {
        StageError::Other(e.into())
    }
}

/// A built-in stage implementation.
pub trait StageKind: Send + Sync {
    /// The `kind:` name used in pipeline files.
    fn kind(&self) -> &'static str;
    /// What a node of this kind does, in a sentence or two (for `t2s kinds`).
    fn about(&self) -> &'static str;
    /// Bump when the implementation changes its outputs: part of the cache key.
    fn version(&self) -> u32;
    /// The kind's params struct: declared names, types, defaults and docs, and the typed
    /// check of resolved params. Unknown parameters are validation errors.
    fn params(&self) -> &'static dyn params::ParamSet;
    /// Whether the node occupies a GPU device slot (decided from its resolved params).
    fn uses_gpu(&self, _params: &Map<String, Value>) -> bool {
        false
    }
    /// Facts outside params and input artifacts that change results (file digests of local
    /// sources, dataset revision, device kind...). They become fields of the cache key.
    fn key_facts(
        &self,
        _params: &Map<String, Value>,
        _pipeline_dir: &Path,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(BTreeMap::new())
    }
    /// The params that enter the cache key (default: all of them). A stage leaves out those
    /// whose effect `key_facts` states exactly: a hub revision is keyed by the commit it
    /// resolves to and the files' digests, so `main` and that commit give one key.
    fn key_params(&self, params: &Map<String, Value>) -> Map<String, Value> {
        params.clone()
    }
    /// The final metrics a node of this kind reports (`StageOutcome::metrics`), for checking
    /// what a search optimizes; `None`: free-form (a command's `::metric` lines).
    fn metrics(&self) -> Option<Vec<String>> {
        Some(Vec::new())
    }
    /// The params whose committed key names the node's resume area (default: its own key).
    /// A training stopped part way (`stop_at_step`, a halving rung) resumes in the area of
    /// the same training run to the end, so promoting it continues instead of restarting.
    fn resume_params(&self, _params: &Map<String, Value>) -> Option<Map<String, Value>> {
        None
    }
    /// Do the work.
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError>;
}
