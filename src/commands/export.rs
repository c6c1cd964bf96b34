//! `t2s export --model BASE --adapter ADAPTER --out DIR`: the adapter merged into the base's
//! weights, written as a plain HF model directory (PEFT's `merge_and_unload()` +
//! `save_pretrained`, plus the base's tokenizer and other files), for servers and converters
//! that take no adapters. The worker (`export` job) writes into a temporary directory beside
//! `DIR`, renamed into place once whole: a failed export leaves no half-written model. Ctrl-C
//! or SIGTERM stops the worker and removes the temporary directory (exit 130); after a
//! SIGKILL, the next export beside `DIR` removes what the killed one left (the directory's name
//! carries the process id, and the process is gone).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use super::{check_dir, lookup, UsageError};
use crate::cli::ExportArgs;
use crate::worker::jobs::{ExportDtype, ExportJob, Job};
use crate::worker::{JobSpec, WorkerLauncher};

/// The staging directories' prefix: `.t2s-export-<pid>-<random>` beside `--out`.
const STAGING_PREFIX: &str = ".t2s-export-";

/// Set by Ctrl-C or SIGTERM: the worker is stopped and nothing is written.
static CANCEL: AtomicBool = AtomicBool::new(false);

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
    remove_abandoned_staging(&parent);
    // Setting the handler fails only if one is set already (tests calling commands in-process).
    let _ = ctrlc::set_handler(|| CANCEL.store(true, Ordering::SeqCst));
    let staging = tempfile::Builder::new()
        .prefix(&format!("{STAGING_PREFIX}{}-", std::process::id()))
        .tempdir_in(&parent)?;

    let worker = WorkerLauncher::locate()?;
    let dtype: ExportDtype = serde_json::from_value(Value::String(args.dtype.clone()))
        .map_err(|e| UsageError(format!("--dtype: {e}")))?;
    let mut spec = JobSpec::of(&Job::Export(ExportJob {
        dtype,
        max_shard_bytes: args.max_shard_size,
    }));
    // Merging is a few matrix products a module: the CPU does it without a GPU's memory.
    spec.device = "cpu".into();
    spec.inputs.insert("model".into(), model);
    spec.inputs.insert("adapter".into(), adapter);
    spec.out_dir = Some(staging.path().to_path_buf());
    let outcome = worker.run(&spec, |_| {}, &CANCEL);
    // Interrupted, whatever the worker made of it (a terminal's Ctrl-C reaches it too).
    if CANCEL.load(Ordering::SeqCst) {
        drop(staging);
        eprintln!("t2s export: interrupted; nothing was written");
        return Ok(ExitCode::from(130));
    }
    let result = outcome?;

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

/// Remove the staging directories in `parent` whose export process is gone (SIGKILLed, or the
/// machine went down). Best effort: what cannot be read or removed stays.
fn remove_abandoned_staging(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(STAGING_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !process_alive(pid) && entry.path().is_dir() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether process `pid` exists (signal 0 checks without sending anything).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    // EPERM: it exists, owned by someone else.
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
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
    use super::{parse_size, remove_abandoned_staging, STAGING_PREFIX};

    #[test]
    fn staging_left_by_a_dead_export_is_removed_and_no_other() {
        let parent = tempfile::tempdir().unwrap();
        // A process that has exited: its pid is not in use (not reused this soon).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let make = |name: String| {
            let d = parent.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("model.safetensors"), "partial").unwrap();
            d
        };
        let abandoned = make(format!("{STAGING_PREFIX}{dead}-a1b2c3"));
        let live = make(format!("{STAGING_PREFIX}{}-d4e5f6", std::process::id()));
        let foreign = make(format!("{STAGING_PREFIX}notapid"));
        let model = make("merged".into());
        remove_abandoned_staging(parent.path());
        assert!(!abandoned.exists());
        for kept in [live, foreign, model] {
            assert!(
                kept.join("model.safetensors").is_file(),
                "{}",
                kept.display()
            );
        }
    }

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
