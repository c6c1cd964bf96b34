//! Finding what a tracked run made, for the commands that take a node instead of a path
//! (`export --node`, `infer --node`): a node's artifact directory, an adapter's base model.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::UsageError;
use crate::runs::Tracker;

/// The artifact directory of node `node` in run `run` of the tracking DB under `root`.
pub fn node_artifact(root: &Path, run: &str, node: &str) -> anyhow::Result<PathBuf> {
    if !Tracker::path_for(root).exists() {
        return Err(UsageError(format!("--node: no runs yet in {}", root.display())).into());
    }
    let tracker = Tracker::open(root)?;
    let run = tracker
        .run(run)
        .map_err(|e| UsageError(format!("--run: {e}")))?;
    let nodes = tracker.nodes(run.id)?;
    let Some(row) = nodes.iter().find(|n| n.node == node) else {
        let names: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
        return Err(UsageError(format!(
            "--node {node}: run {} has no such node (it has: {})",
            run.id,
            names.join(", ")
        ))
        .into());
    };
    match &row.artifact {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Err(UsageError(format!(
            "--node {node}: it has no artifact in run {} (status {})",
            run.id, row.status
        ))
        .into()),
    }
}

/// The adapter's base model: `base_model_name_or_path` of its config, when a local directory.
pub fn base_of(adapter: &Path) -> anyhow::Result<PathBuf> {
    let file = adapter.join("adapter_config.json");
    let config: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)
        .map_err(|e| UsageError(format!("{}: not JSON: {e}", file.display())))?;
    let base = config
        .get("base_model_name_or_path")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let dir = PathBuf::from(base);
    if !base.is_empty() && dir.is_dir() {
        return Ok(dir);
    }
    Err(UsageError(format!(
        "the adapter's base_model_name_or_path ({base:?}) is not a local directory: give --model DIR"
    ))
    .into())
}

/// Whether `dir` holds a PEFT adapter (else it is a model: a full fine-tune's artifact).
pub fn is_adapter(dir: &Path) -> bool {
    dir.join("adapter_config.json").is_file()
}

/// The adapter of train node `node` in run `run`: a usage error when the node's artifact is a
/// model (a full fine-tune).
pub fn adapter_of_node(root: &Path, run: &str, node: &str) -> anyhow::Result<PathBuf> {
    let dir = node_artifact(root, run, node)?;
    if !is_adapter(&dir) {
        return Err(UsageError(format!(
            "--node {node}: its artifact {} holds no LoRA adapter (a full fine-tune's artifact \
             is a model already)",
            dir.display()
        ))
        .into());
    }
    Ok(dir)
}
