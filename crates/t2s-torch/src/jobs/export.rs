//! `export`: a base model with a PEFT LoRA adapter merged into its weights, written as a plain
//! HF model directory (`model.safetensors`, the config, the tokenizer and the other files of
//! the base) that transformers, vLLM or llama.cpp's converter load without PEFT. Inputs `model`
//! and `adapter`; written into the spec's `out_dir`. Params: `dtype`, `auto` (each tensor as
//! the base stores it), `float32`, `bfloat16` or `float16`; `max_shard_bytes` (default 5 GB,
//! transformers' default): a larger model is written as `model-0000k-of-0000n.safetensors`
//! shards with a `model.safetensors.index.json`, one shard in memory at a time.

use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};
use t2s::worker::jobs::{ExportDtype, ExportJob};
use t2s::worker::protocol::JobSpec;
use tch::Kind;

use super::{input_dir, Events};
use crate::merge::Merge;
use crate::weights::{self, Checkpoint};

pub fn run(spec: &JobSpec, job: &ExportJob, ev: &Events) -> anyhow::Result<Value> {
    let need = |role: &str| -> anyhow::Result<std::path::PathBuf> {
        input_dir(spec, role)?.with_context(|| format!("job `export` needs input `{role}`"))
    };
    let (model_dir, adapter_dir) = (need("model")?, need("adapter")?);
    let out = spec
        .out_dir
        .as_deref()
        .context("job `export` needs an out_dir")?;
    let kind = match job.dtype {
        ExportDtype::Auto => None,
        ExportDtype::Float32 => Some(Kind::Float),
        ExportDtype::Bfloat16 => Some(Kind::BFloat16),
        ExportDtype::Float16 => Some(Kind::Half),
    };
    let max_shard = job.max_shard_bytes.max(1);

    let base = Checkpoint::open(&model_dir)?;
    let merge = Merge::new(&base, &adapter_dir, kind)?;
    ev.log(
        "info",
        format!(
            "merging the adapter (r = {}, scale {}) into {} modules",
            merge.rank,
            merge.scale,
            merge.modules().len()
        ),
    );
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let shards = plan_shards(&merge, max_shard);
    let total: u64 = merge.names().map(|n| merge.out_bytes(n)).sum();
    write_shards(&merge, &shards, out, total)?;
    let copied = copy_model_files(&model_dir, out, kind)?;
    Ok(json!({
        "modules": merge.modules().len(),
        "rank": merge.rank,
        "scale": merge.scale,
        "tensors": merge.names().count(),
        "shards": shards.len(),
        "bytes": total,
        "dtype": job.dtype,
        "copied": copied,
    }))
}

/// The tensor names of each shard, in checkpoint order: a shard is closed when the next tensor
/// would take it past `max_bytes` (transformers' rule; a tensor larger than that is a shard
/// of its own).
fn plan_shards<'m>(merge: &'m Merge<'_>, max_bytes: u64) -> Vec<Vec<&'m str>> {
    let mut shards: Vec<Vec<&str>> = Vec::new();
    let mut size = 0;
    for name in merge.names() {
        let bytes = merge.out_bytes(name);
        match shards.last_mut() {
            Some(last) if size + bytes <= max_bytes => last.push(name),
            _ => {
                shards.push(vec![name]);
                size = 0;
            }
        }
        size += bytes;
    }
    shards
}

/// `model.safetensors` for one shard, else numbered shards and their index (transformers'
/// names), each built and written before the next is read.
fn write_shards(
    merge: &Merge<'_>,
    shards: &[Vec<&str>],
    out: &Path,
    total: u64,
) -> anyhow::Result<()> {
    let file_of = |i: usize| match shards.len() {
        1 => "model.safetensors".to_string(),
        n => format!("model-{:05}-of-{n:05}.safetensors", i + 1),
    };
    let mut weight_map = serde_json::Map::new();
    for (i, names) in shards.iter().enumerate() {
        let tensors = names
            .iter()
            .map(|n| Ok((n.to_string(), merge.tensor(n)?)))
            .collect::<crate::error::Result<Vec<_>>>()?;
        weights::save(&tensors, &out.join(file_of(i)))?;
        for n in names {
            weight_map.insert(n.to_string(), json!(file_of(i)));
        }
    }
    if shards.len() > 1 {
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        std::fs::write(
            out.join("model.safetensors.index.json"),
            serde_json::to_string_pretty(&index)? + "\n",
        )?;
    }
    Ok(())
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
