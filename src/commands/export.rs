//! `t2s export --model BASE --adapter ADAPTER --out DIR`: the adapter merged into the base's
//! weights, written as a plain HF model directory (PEFT's `merge_and_unload()` +
//! `save_pretrained`, plus the base's tokenizer and other files), for servers and converters
//! that take no adapters. The worker (`export` job) writes into a temporary directory beside
//! `DIR`, renamed into place once whole: a failed or killed export leaves no half-written model.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use serde_json::{json, Value};

use super::{check_dir, UsageError};
use crate::cli::ExportArgs;
use crate::worker::{JobSpec, WorkerLauncher};

pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    check_dir(&args.model, "--model", &["config.json"])?;
    check_dir(
        &args.adapter,
        "--adapter",
        &["adapter_config.json", "adapter_model.safetensors"],
    )?;
    check_out(&args.out)?;
    let parent = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
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
    let mut spec = JobSpec::new("export", json!({ "dtype": args.dtype }));
    // Merging is a few matrix products a module: the CPU does it without a GPU's memory.
    spec.device = "cpu".into();
    spec.inputs.insert("model".into(), args.model.clone());
    spec.inputs.insert("adapter".into(), args.adapter.clone());
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
        "merged the adapter (r = {}, scale {}) into {} modules; wrote {} tensors ({}) and {} to {}",
        n("rank"),
        n("scale"),
        n("modules"),
        n("tensors"),
        result
            .get("dtype")
            .and_then(Value::as_str)
            .unwrap_or("auto"),
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
