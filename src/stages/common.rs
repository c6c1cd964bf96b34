//! Helpers the stage kinds share: finding upstream artifacts by what they hold, deciding GPU
//! use, showing downloads and worker logs.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{StageContext, StageError};

/// A hub download's progress on the run's display, in MiB (raw byte counts would not read).
pub fn show_download<'a>(ctx: &'a StageContext<'_>) -> impl Fn(u64, u64, &str) + 'a {
    move |done, total, file| {
        let mib = |b: u64| b.div_ceil(1 << 20);
        ctx.metrics.progress(
            done >> 20,
            Some(mib(total).max(1)),
            &format!("MiB of {file} from the hub"),
        );
    }
}

/// The first input directory holding `file`, or an error naming what the stage needs.
pub fn input_with(ctx: &StageContext<'_>, file: &str, what: &str) -> Result<PathBuf, StageError> {
    find_input(ctx, file).ok_or_else(|| {
        let have: Vec<String> = ctx.inputs.iter().map(|i| format!("{} ({})", i.stage, i.kind)).collect();
        StageError::Failed(format!(
            "stage `{}` needs {what} as an input (an upstream artifact with {file}); its needs are [{}]",
            ctx.stage_name,
            have.join(", ")
        ))
    })
}

/// The first input directory holding `file`, if any.
pub fn find_input(ctx: &StageContext<'_>, file: &str) -> Option<PathBuf> {
    ctx.inputs
        .iter()
        .map(|i| i.dir.clone())
        .find(|d| d.join(file).is_file())
}

/// Whether a node with these params takes a GPU slot: its `device` param (`auto` when
/// unset) names a GPU, or is `auto` and this machine has one. Every stage that takes `device`
/// decides it here, so `train` and `evaluate` agree.
pub fn uses_gpu_device(p: &Map<String, Value>) -> bool {
    match p.get("device").and_then(Value::as_str) {
        Some("cpu") => false,
        Some("auto") | None => gpu_present(),
        Some(_) => true,
    }
}

/// The key fact of a node that runs a model: the kind of device it runs on (`cpu` or
/// `cuda`), since generations and trained weights differ between them (bf16 on CUDA). With
/// `device: auto` it is decided on the machine that plans the run.
pub fn device_kind_fact(p: &Map<String, Value>) -> (String, String) {
    let kind = if uses_gpu_device(p) { "cuda" } else { "cpu" };
    ("device_kind".into(), kind.into())
}

/// Whether a CUDA GPU is visible without loading libtorch (NVIDIA driver present, not hidden).
pub fn gpu_present() -> bool {
    if std::env::var("CUDA_VISIBLE_DEVICES").is_ok_and(|v| v.trim().is_empty() || v.trim() == "-1")
    {
        return false;
    }
    std::fs::read_dir("/proc/driver/nvidia/gpus").is_ok_and(|mut d| d.next().is_some())
}

/// Write `value` as pretty JSON into the output file `path`.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)?;
    Ok(())
}

/// Copy a file into the output directory.
pub fn copy_into(src: &Path, out_dir: &Path, name: &str) -> anyhow::Result<()> {
    std::fs::copy(src, out_dir.join(name))
        .map_err(|e| anyhow::anyhow!("copying {} into the artifact: {e}", src.display()))?;
    Ok(())
}

/// A worker's log event as one of this node's log lines: `warn`/`error` at warn level (e.g.
/// the fused kernels falling back, a failed CUDA graph capture), the rest at info.
pub fn log_worker_message(node: &str, level: &str, message: &str) {
    match level {
        "error" | "warn" => tracing::warn!(node, "{message}"),
        _ => tracing::info!(node, "{message}"),
    }
}
