//! `export`: a base model with a PEFT LoRA adapter merged into its weights, written as a plain
//! HF model directory (`model.safetensors`, the config, the tokenizer and the other files of
//! the base) that transformers, vLLM or llama.cpp's converter load without PEFT. Inputs `model`
//! and `adapter`; written into the spec's `out_dir`; param `dtype`: `auto` (each tensor as the
//! base stores it), `float32`, `bfloat16` or `float16`.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use t2s::worker::protocol::JobSpec;
use tch::Kind;

use super::{input_dir, Events, Params};
use crate::merge::merge_checkpoint;
use crate::weights::{self, Checkpoint};

pub fn run(spec: &JobSpec, ev: &Events) -> anyhow::Result<Value> {
    let p = Params::new(spec);
    let need = |role: &str| -> anyhow::Result<std::path::PathBuf> {
        input_dir(spec, role)?.with_context(|| format!("job `export` needs input `{role}`"))
    };
    let (model_dir, adapter_dir) = (need("model")?, need("adapter")?);
    let out = spec
        .out_dir
        .as_deref()
        .context("job `export` needs an out_dir")?;
    let dtype = p.str("dtype")?.unwrap_or("auto");
    let kind = match dtype {
        "auto" => None,
        "float32" | "fp32" => Some(Kind::Float),
        "bfloat16" | "bf16" => Some(Kind::BFloat16),
        "float16" | "fp16" => Some(Kind::Half),
        other => {
            bail!("job `export`: dtype `{other}` is not one of auto, float32, bfloat16, float16")
        }
    };

    let base = Checkpoint::open(&model_dir)?;
    let merged = merge_checkpoint(&base, &adapter_dir, kind)?;
    ev.log(
        "info",
        format!(
            "merged the adapter (r = {}, scale {}) into {} modules",
            merged.rank,
            merged.scale,
            merged.modules.len()
        ),
    );
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    weights::save(&merged.tensors, &out.join("model.safetensors"))?;
    let copied = copy_model_files(&model_dir, out, kind)?;
    Ok(json!({
        "modules": merged.modules.len(),
        "rank": merged.rank,
        "scale": merged.scale,
        "tensors": merged.tensors.len(),
        "dtype": dtype,
        "copied": copied,
    }))
}

/// The name of the dtype in a HF config (`torch_dtype`, newer `dtype`).
fn config_dtype(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        _ => "float32",
    }
}

/// Whether `name` is not for the export: weights (written anew) or t2s's records of how the
/// base was made (its artifact manifest, training result and state).
fn is_left_out(name: &str) -> bool {
    [
        "model.safetensors.index.json",
        "MANIFEST.json",
        "train_result.json",
        "trainer_state.json",
    ]
    .contains(&name)
        || [
            ".safetensors",
            ".bin",
            ".pt",
            ".pth",
            ".ckpt",
            ".h5",
            ".msgpack",
            ".gguf",
        ]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Copy the base's other files (config, tokenizer, generation config, chat template...) into
/// `out`; with a `kind`, the config names it as the model's dtype. Returns the names copied.
fn copy_model_files(
    model_dir: &Path,
    out: &Path,
    kind: Option<Kind>,
) -> anyhow::Result<Vec<String>> {
    let mut copied = Vec::new();
    for entry in std::fs::read_dir(model_dir)
        .with_context(|| format!("cannot list {}", model_dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_file() || name.starts_with('.') || is_left_out(&name) {
            continue;
        }
        let to = out.join(&name);
        match kind {
            Some(k) if name == "config.json" => {
                let text = std::fs::read_to_string(entry.path())?;
                let mut config: Value = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", entry.path().display()))?;
                if let Some(map) = config.as_object_mut() {
                    for field in ["torch_dtype", "dtype"] {
                        if field == "torch_dtype" || map.contains_key(field) {
                            map.insert(field.into(), json!(config_dtype(k)));
                        }
                    }
                }
                std::fs::write(&to, serde_json::to_string_pretty(&config)? + "\n")?;
            }
            _ => {
                std::fs::copy(entry.path(), &to)
                    .with_context(|| format!("cannot copy {}", entry.path().display()))?;
            }
        }
        copied.push(name);
    }
    copied.sort();
    Ok(copied)
}
