//! Step checkpoints in the node's partial area, written atomically (a temp directory renamed
//! into place), so a killed run leaves either a complete checkpoint or none:
//!
//! ```text
//! <partial>/checkpoint-<step>/{trainable.safetensors, optimizer.safetensors, meta.json}
//! <partial>/best-<step>.safetensors      weights of the best evaluation so far
//! ```
//! The newest two checkpoints are kept, and every best file a kept checkpoint may still need.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use t2s::train_plan::TrainerState;
use tch::Tensor;

use crate::weights;

/// Bump when the checkpoint layout changes: older checkpoints are then ignored.
pub const FORMAT: u32 = 1;
const KEEP: usize = 2;

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub format: u32,
    /// The resolved train params: a checkpoint made with other params is never resumed.
    pub params: serde_json::Value,
    pub train_examples: usize,
    pub state: TrainerState,
    /// Loss summed since the last training log, and the steps it covers.
    pub loss_window_sum: f64,
    pub loss_window_steps: u64,
    /// Sum of all step losses (HF's `train_loss` is its mean).
    pub total_loss_sum: f64,
    pub train_tokens: u64,
}

fn write_sync(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    fs::File::open(path)?.sync_all()?;
    Ok(())
}

fn save_tensors(tensors: &[(String, Tensor)], path: &Path) -> anyhow::Result<()> {
    let detached = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.f_detach()?)))
        .collect::<Result<Vec<_>, tch::TchError>>()?;
    weights::save(&detached, path)?;
    fs::File::open(path)?.sync_all()?;
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Write checkpoint `step` atomically and prune old ones. Returns its directory.
pub fn save(
    partial: &Path,
    trainable: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
    meta: &Meta,
) -> anyhow::Result<PathBuf> {
    let step = meta.state.global_step;
    fs::create_dir_all(partial)
        .with_context(|| format!("cannot create the checkpoint area {}", partial.display()))?;
    let dst = partial.join(format!("checkpoint-{step}"));
    let tmp = partial.join(format!(".tmp-checkpoint-{step}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    save_tensors(trainable, &tmp.join("trainable.safetensors"))?;
    save_tensors(optimizer, &tmp.join("optimizer.safetensors"))?;
    write_sync(&tmp.join("meta.json"), &serde_json::to_vec_pretty(meta)?)?;
    sync_dir(&tmp);
    if dst.exists() {
        fs::remove_dir_all(&dst)?;
    }
    fs::rename(&tmp, &dst)
        .with_context(|| format!("cannot move checkpoint into {}", dst.display()))?;
    sync_dir(partial);
    prune(partial)?;
    Ok(dst)
}

/// Remove temp files and directories a killed run left behind (never complete, never read).
pub fn clean_tmp(partial: &Path) {
    let Ok(rd) = fs::read_dir(partial) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            let p = e.path();
            let _ = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
}

fn read_meta(dir: &Path) -> anyhow::Result<Meta> {
    let f = dir.join("meta.json");
    let text = fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
    let meta: Meta =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid", f.display()))?;
    if meta.format != FORMAT {
        bail!(
            "{}: checkpoint format {} (this worker writes {FORMAT})",
            f.display(),
            meta.format
        );
    }
    Ok(meta)
}

/// Complete checkpoints, oldest first.
pub fn list(partial: &Path) -> Vec<(u64, PathBuf)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(partial) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(step) = name
            .strip_prefix("checkpoint-")
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((step, e.path()));
        }
    }
    out.sort();
    out
}

/// A checkpoint read back: trainable tensors, optimizer state and meta.
pub struct Loaded {
    pub dir: PathBuf,
    pub trainable: Vec<(String, Tensor)>,
    pub optimizer: Vec<(String, Tensor)>,
    pub meta: Meta,
}

/// The newest checkpoint at or before step `end` whose meta says it was made with `params`;
/// unreadable ones are skipped (reported through `warn`).
pub fn latest(
    partial: &Path,
    params: &serde_json::Value,
    end: u64,
    warn: &mut dyn FnMut(String),
) -> Option<Loaded> {
    for (_, dir) in list(partial).into_iter().rev().filter(|(s, _)| *s <= end) {
        let attempt = || -> anyhow::Result<Loaded> {
            let meta = read_meta(&dir)?;
            if &meta.params != params {
                bail!("made with other train params");
            }
            let trainable = Tensor::read_safetensors(dir.join("trainable.safetensors"))?;
            let optimizer = Tensor::read_safetensors(dir.join("optimizer.safetensors"))?;
            Ok(Loaded {
                dir: dir.clone(),
                trainable,
                optimizer,
                meta,
            })
        };
        match attempt() {
            Ok(l) => return Some(l),
            Err(e) => warn(format!("ignoring checkpoint {}: {e:#}", dir.display())),
        }
    }
    None
}

fn best_path(partial: &Path, step: u64) -> PathBuf {
    partial.join(format!("best-{step}.safetensors"))
}

/// Persist the weights of a new best evaluation (atomically).
pub fn save_best(partial: &Path, step: u64, tensors: &[(String, Tensor)]) -> anyhow::Result<()> {
    fs::create_dir_all(partial)?;
    let tmp = partial.join(format!(".tmp-best-{step}-{}", std::process::id()));
    save_tensors(tensors, &tmp)?;
    fs::rename(&tmp, best_path(partial, step))?;
    sync_dir(partial);
    Ok(())
}

pub fn load_best(partial: &Path, step: u64) -> anyhow::Result<Vec<(String, Tensor)>> {
    let p = best_path(partial, step);
    Tensor::read_safetensors(&p)
        .with_context(|| format!("cannot read the best weights {}", p.display()))
}

/// Keep the newest `KEEP` checkpoints; drop best files no kept checkpoint refers to (best
/// files newer than every kept checkpoint stay: the run that wrote them may still need them).
fn prune(partial: &Path) -> anyhow::Result<()> {
    let all = list(partial);
    let cut = all.len().saturating_sub(KEEP);
    for (_, dir) in &all[..cut] {
        fs::remove_dir_all(dir)?;
    }
    let kept = &all[cut..];
    let referenced: Vec<u64> = kept
        .iter()
        .filter_map(|(_, d)| read_meta(d).ok()?.state.best_global_step)
        .collect();
    let newest = kept.last().map_or(0, |(s, _)| *s);
    for e in fs::read_dir(partial)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(step) = name
            .strip_prefix("best-")
            .and_then(|s| s.strip_suffix(".safetensors"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if step <= newest && !referenced.contains(&step) {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Copy saved tensors into the model's trainable tensors (names must match exactly).
pub fn restore(
    into: &[(String, Tensor)],
    from: &[(String, Tensor)],
    what: &str,
) -> anyhow::Result<()> {
    let _g = tch::no_grad_guard();
    if into.len() != from.len() {
        bail!(
            "{what} holds {} tensors but the model trains {}",
            from.len(),
            into.len()
        );
    }
    for (name, dst) in into {
        let src = from
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .with_context(|| format!("{what} lacks tensor `{name}`"))?;
        let mut d = dst.shallow_clone();
        d.f_copy_(src)?;
    }
    Ok(())
}
