//! Where a `model` param points: a local HF model directory or an `hf://` repo fetched into
//! the hub cache at the commit its revision resolves to, and what the `model` and `train`
//! stages key it by (the digest of a local directory's weight files; a hub model's commit and
//! its files' tags).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::data::hub::{self, Kind, Pin, Wanted};

/// The params by which `model` and `train` name a model, read from their resolved params
/// (each stage's params struct declares them, with its defaults; resolution fills them).
#[derive(Debug, Deserialize)]
pub struct ModelSource {
    pub model: String,
    pub revision: String,
    pub offline: bool,
}

impl ModelSource {
    pub fn of(p: &Map<String, Value>) -> anyhow::Result<Self> {
        Self::deserialize(Value::Object(p.clone()))
            .map_err(|e| anyhow::anyhow!("the model params: {e}"))
    }
}

/// The pin of an `hf://` model, `wanted` files; `None` for other models.
pub fn hub_pin(p: &Map<String, Value>, wanted: &Wanted) -> anyhow::Result<Option<Pin>> {
    let m = ModelSource::of(p)?;
    if !m.model.starts_with("hf://") {
        return Ok(None);
    }
    let uri = hub::parse_uri(&m.model)?;
    Ok(Some(hub::pin(
        Kind::Model,
        &uri.repo,
        &m.revision,
        m.offline,
        wanted,
    )?))
}

/// Key facts of the `model` param: an `hf://` model's commit and files (`model_hub_*`), or a
/// local directory's weight digest (`model_blake3`); none when it is empty.
pub fn model_facts(
    p: &Map<String, Value>,
    pipeline_dir: &Path,
) -> anyhow::Result<BTreeMap<String, String>> {
    if let Some(pin) = hub_pin(p, &Wanted::Model)? {
        return Ok(pin.key_facts(&Wanted::Model, "model_")?);
    }
    let m = ModelSource::of(p)?.model;
    let mut f = BTreeMap::new();
    let d = pipeline_dir.join(&m);
    if !m.is_empty() && is_model_dir(&d) {
        f.insert("model_blake3".into(), model_digest(&d)?);
    }
    Ok(f)
}

/// `params` without `revision` and `offline` when `name` is an `hf://` URI: the pin's facts
/// state what they select (see `StageKind::key_params`).
pub fn hub_key_params(params: &Map<String, Value>, name: &str) -> Map<String, Value> {
    let mut out = params.clone();
    let hub = params
        .get(name)
        .and_then(Value::as_str)
        .is_some_and(|v| v.starts_with("hf://"));
    if hub {
        out.remove("revision");
        out.remove("offline");
    }
    out
}

pub fn is_model_dir(d: &Path) -> bool {
    d.join("config.json").is_file()
        && (d.join("model.safetensors").is_file()
            || d.join("model.safetensors.index.json").is_file())
}

/// blake3 over the names and digests of the files of a local model directory that define the
/// weights (each file's digest memoised, so an unchanged 2 GB checkpoint is not reread).
pub fn model_digest(dir: &Path) -> anyhow::Result<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            n == "config.json"
                || n == "tokenizer.json"
                || n.ends_with(".safetensors")
                || n.ends_with(".safetensors.index.json")
        })
        .collect();
    files.sort();
    let mut h = blake3::Hasher::new();
    for f in files {
        h.update(
            f.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        h.update(&[0]);
        h.update(crate::cache::file_digest::digest_file(&f)?.as_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

/// The local directory of the `model` param (downloading an hf:// model into the HF cache).
pub fn resolve_model(
    p: &Map<String, Value>,
    pipeline_dir: &Path,
    on: hub::OnBytes<'_>,
) -> anyhow::Result<Option<PathBuf>> {
    let m = ModelSource::of(p)?.model;
    if m.is_empty() {
        return Ok(None);
    }
    if let Some(pin) = hub_pin(p, &Wanted::Model)? {
        let env = hub::HubEnv::from_process();
        return Ok(Some(hub::fetch_pinned_model(&env, &pin, on)?));
    }
    let d = pipeline_dir.join(&m);
    anyhow::ensure!(
        is_model_dir(&d),
        "model `{m}`: {} is not an HF model directory (config.json + model.safetensors)",
        d.display()
    );
    Ok(Some(d))
}
