//! Where a `model` param points: a local HF model directory or an `hf://` repo fetched into
//! the hub cache, and the digest of the files that define its weights (a cache-key fact of the
//! `model` and `train` stages).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

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
) -> anyhow::Result<Option<PathBuf>> {
    let m = p.get("model").and_then(Value::as_str).unwrap_or("");
    if m.is_empty() {
        return Ok(None);
    }
    if m.starts_with("hf://") {
        let uri = crate::data::hub::parse_uri(m)?;
        let rev = p.get("revision").and_then(Value::as_str).unwrap_or("main");
        let offline = p.get("offline").and_then(Value::as_bool).unwrap_or(false);
        return Ok(Some(crate::data::hub::fetch_model(
            &uri.repo, rev, offline,
        )?));
    }
    let d = pipeline_dir.join(m);
    anyhow::ensure!(
        is_model_dir(&d),
        "model `{m}`: {} is not an HF model directory (config.json + model.safetensors)",
        d.display()
    );
    Ok(Some(d))
}
