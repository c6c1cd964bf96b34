//! Finding what a tracked run made, for the commands that take a node instead of a path
//! (`export --node`, `infer --node`): a node's artifact directory, an adapter's base model.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{check_dir, UsageError};
use crate::cli::NodeRef;
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

/// The adapter's base model: `base_model_name_or_path` of its config: another node's output in
/// the store under `root`, a local directory or a hub id (`owner/name`, as PEFT writes for a hub base) resolved through the Hugging Face
/// cache at the config's `revision` (default `main`; downloaded when not cached, unless
/// `HF_HUB_OFFLINE`).
pub fn base_of(root: &Path, adapter: &Path) -> anyhow::Result<PathBuf> {
    let file = adapter.join("adapter_config.json");
    let config: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)
        .map_err(|e| UsageError(format!("{}: not JSON: {e}", file.display())))?;
    let base = config
        .get("base_model_name_or_path")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let dir = PathBuf::from(base);
    // Another node's output (`artifacts/v1/objects/<key>`, or an absolute path to one in the
    // project it was trained in): this project's copy.
    if let Some(name) = crate::cache::store::object_name(&dir) {
        let local = root.join(&name);
        if local.is_dir() {
            return Ok(local);
        }
        if !dir.is_dir() {
            return Err(UsageError(format!(
                "the adapter's base model is the output {name} of another node, which {} does \
                 not have: fetch it (`t2s pull FILE`), run its pipeline, or give --model DIR",
                root.display()
            ))
            .into());
        }
    }
    if !base.is_empty() && dir.is_dir() {
        return Ok(dir);
    }
    if let Some(repo) = hub_id(base) {
        let revision = config
            .get("revision")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .unwrap_or("main");
        return crate::data::hub::fetch_model(repo, revision, false).map_err(|e| {
            UsageError(format!(
                "the adapter's base model {base:?} is not a local directory, and the hub did not \
                 give it: {e}; or give --model DIR"
            ))
            .into()
        });
    }
    Err(UsageError(format!(
        "the adapter's base_model_name_or_path ({base:?}) is not a local directory or a hub \
         id: give --model DIR"
    ))
    .into())
}

/// `owner/name` (or `hf://owner/name`): a hub model id, as opposed to a path.
fn hub_id(base: &str) -> Option<&str> {
    let id = base.strip_prefix("hf://").unwrap_or(base);
    let (owner, name) = id.split_once('/')?;
    let part = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (part(owner) && part(name)).then_some(id)
}

/// Whether `dir` holds a PEFT adapter (else it is a model: a full fine-tune's artifact).
pub fn is_adapter(dir: &Path) -> bool {
    dir.join("adapter_config.json").is_file()
}

/// The weights a command runs on: a model and maybe a LoRA adapter.
pub struct Weights {
    pub model: PathBuf,
    pub adapter: Option<PathBuf>,
}

/// The weights `--node` names (an adapter, or a full fine-tune's model), else `--adapter`; the
/// model is `--model`, else the adapter's base. The adapter's files are checked here; the
/// caller checks the model's, which differ by command.
pub fn weights(
    root: &Path,
    from: &NodeRef,
    model: Option<&Path>,
    adapter: Option<&Path>,
) -> anyhow::Result<Weights> {
    let adapter = match &from.node {
        Some(node) => {
            let dir = node_artifact(root, &from.run, node)?;
            if !is_adapter(&dir) {
                if model.is_some() {
                    return Err(UsageError(format!(
                        "--node {node} is a model (a full fine-tune), not an adapter: drop --model"
                    ))
                    .into());
                }
                return Ok(Weights {
                    model: dir,
                    adapter: None,
                });
            }
            Some(dir)
        }
        None => adapter.map(Path::to_path_buf),
    };
    if let Some(a) = &adapter {
        check_dir(
            a,
            "--adapter",
            &["adapter_config.json", "adapter_model.safetensors"],
        )?;
    }
    let model = match (model, &adapter) {
        (Some(m), _) => m.to_path_buf(),
        (None, Some(a)) => base_of(root, a)?,
        (None, None) => {
            return Err(UsageError("give --model DIR, --adapter DIR or --node NAME".into()).into())
        }
    };
    Ok(Weights { model, adapter })
}

#[cfg(test)]
mod tests {
    use super::hub_id;

    #[test]
    fn hub_ids_are_told_from_paths() {
        assert_eq!(hub_id("google/gemma-3-1b-it"), Some("google/gemma-3-1b-it"));
        assert_eq!(hub_id("hf://acme/tiny_v1.5"), Some("acme/tiny_v1.5"));
        for path in [
            "", "base", "/abs/dir", "./a/b", "../a", "a/b/c", "a/", "a b/c", "~/m",
        ] {
            assert_eq!(hub_id(path), None, "{path}");
        }
    }
}
