//! `t2s export --model BASE --adapter ADAPTER --out DIR`: the adapter merged into the base's
//! weights, written as a plain HF model directory (PEFT's `merge_and_unload()` +
//! `save_pretrained`, plus the base's tokenizer and other files), for servers and converters
//! that take no adapters. The worker (`export` job) writes into a temporary directory beside
//! `DIR`, renamed into place once whole: a failed or killed export leaves no half-written model.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use serde_json::{json, Value};

use super::{check_dir, lookup, UsageError};
use crate::cli::ExportArgs;
use crate::worker::{JobSpec, WorkerLauncher};

pub fn export(root: &Path, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let weights = lookup::weights(
        root,
        &args.from,
        args.model.as_deref(),
        args.adapter.as_deref(),
    )?;
    let (model, Some(adapter)) = (weights.model, weights.adapter) else {
        return Err(UsageError(format!(
            "--node {}: its artifact holds no LoRA adapter (a full fine-tune's artifact is a \
             model already)",
            args.from.node.as_deref().unwrap_or_default()
        ))
        .into());
    };
    check_dir(&model, "--model", &["config.json"])?;
    check_out(&args.out)?;
    let parent = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| {
        UsageError(format!(
            "--out {}: cannot create {}: {e}",
            args.out.display(),
            parent.display()
        ))
    })?;
    let staging = tempfile::Builder::new()
        .prefix(".t2s-export-")
        .tempdir_in(&parent)?;

    let worker = WorkerLauncher::locate()?;
    let mut spec = JobSpec::new(
        "export",
        json!({ "dtype": args.dtype, "max_shard_bytes": args.max_shard_size }),
    );
    // Merging is a few matrix products a module: the CPU does it without a GPU's memory.
    spec.device = "cpu".into();
    spec.inputs.insert("model".into(), model);
    spec.inputs.insert("adapter".into(), adapter);
    spec.out_dir = Some(staging.path().to_path_buf());
    let cancel = AtomicBool::new(false);
    let result = worker.run(&spec, |_| {}, &cancel)?;

    // An empty directory at --out (checked above) gives way to the whole export.
    if args.out.is_dir() {
        std::fs::remove_dir(&args.out)?;
    }
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, &args.out) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(anyhow::anyhow!(e).context(format!(
            "cannot move the merged model into {}",
            args.out.display()
        )));
    }
    println!("{}", summary(&result, &args.out));
    Ok(ExitCode::SUCCESS)
}

/// `--out` must be new or an empty directory: an export never overwrites a model.
fn check_out(out: &Path) -> anyhow::Result<()> {
    let taken = match std::fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) => true,
    };
    if taken {
        return Err(UsageError(format!(
            "--out {}: exists and is not an empty directory; name a new one",
            out.display()
        ))
        .into());
    }
    Ok(())
}

fn summary(result: &Value, out: &Path) -> String {
    let n = |k: &str| {
        result
            .get(k)
            .map(Value::to_string)
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "merged the adapter (r = {}, scale {}) into {} modules; wrote {} tensors ({}, {} weight \
         file(s)) and {} to {}",
        n("rank"),
        n("scale"),
        n("modules"),
        n("tensors"),
        result
            .get("dtype")
            .and_then(Value::as_str)
            .unwrap_or("auto"),
        n("shards"),
        result
            .get("copied")
            .and_then(Value::as_array)
            .map(|c| c
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
        out.display()
    )
}

/// A size as transformers writes `max_shard_size`: bytes, or a number with KB / MB / GB (powers
/// of 1000) or KiB / MiB / GiB (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 5GB, 500MB, 2GiB)"))?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (KB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    let bytes = number * scale as f64;
    if !(bytes >= 1.0 && bytes.is_finite()) {
        return Err(format!("`{text}`: a shard must hold at least one byte"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_read_as_transformers_writes_them() {
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1.5 kb"), Ok(1_500));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("150KiB"), Ok(150 * 1024));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in ["", "GB", "5XB", "0", "-1MB", "five"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
