//! Garbage collection of the store (`t2s gc`). What is kept:
//!
//! - every object a ref names: each node's latest used key (a run writes the ref of each node
//!   it computes, fetches or finds cached), so what the latest run of each pipeline used stays;
//! - every object a live process has leased (`lease`): runs lease each key before using it;
//! - with a grace period, every object committed less than that long ago (git's rule for
//!   young objects, for processes the leases cannot reach).
//!
//! Objects are chosen and moved to `trash/` while `gc.lock` is held exclusively, so no run
//! leases a key in between; the trash is deleted after the lock is released.

use std::path::{Path, PathBuf};

use super::lease::Collector;
use super::lock::KeyLock;
use super::manifest::{self, Manifest};
use super::store::{io, read_dir_sorted, remove_tree, unique_suffix, Store, StoreError};

/// What `gc` removed (or would remove).
#[derive(Debug, Default)]
pub struct GcReport {
    pub objects: Vec<(String, u64)>,
    pub staging: Vec<PathBuf>,
    pub partial: Vec<PathBuf>,
    pub corrupt: Vec<PathBuf>,
    pub locks: usize,
    /// Objects kept: named by a ref, leased, or young.
    pub kept: usize,
    /// Of `kept`: leased by a live process (and named by no ref).
    pub leased: usize,
    /// Of `kept`: within the grace period (and neither named nor leased).
    pub young: usize,
}

/// How `gc` runs.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Report what would be removed, remove nothing.
    pub dry_run: bool,
    /// Also remove resume areas (of keys no live process uses).
    pub partial: bool,
    /// Keep unreferenced objects committed less than this long ago (git's grace period: a
    /// safety margin for processes outside the lease protocol, e.g. on another machine over
    /// NFS, where flock may not reach).
    pub grace: std::time::Duration,
}

/// Whether `path` was modified less than `grace` ago (never for a zero grace).
fn younger_than(path: &Path, grace: std::time::Duration) -> bool {
    !grace.is_zero()
        && std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < grace)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

impl Store {
    /// Collect garbage (see the module doc for what is kept): objects no ref names and no live
    /// process leases (older than `grace`), staging dirs of dead attempts, moved-aside objects,
    /// unused lock files; with `partial`, also resume areas. Nothing whose key lock is held or
    /// whose key is leased is touched. Objects are moved to `trash/` while `gc.lock` is held
    /// (no run can lease a key meanwhile), then deleted after it is released.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        let trash = self.base().join("trash");
        let gc_lock = self.base().join("gc.lock");
        let collector = Collector::begin(self.base()).map_err(io("cannot lock", &gc_lock))?;
        let leased = collector.leased_keys(self.base(), opts.dry_run);
        let refs: std::collections::HashSet<String> =
            self.all_refs().into_iter().map(|r| r.key).collect();
        let free = |key: &str| -> Option<KeyLock> {
            if leased.contains(key) {
                return None;
            }
            KeyLock::try_acquire(&self.lock_path(key)).ok().flatten()
        };
        for e in read_dir_sorted(&self.base().join("objects")) {
            let key = file_name(&e);
            if refs.contains(&key) {
                report.kept += 1;
                continue;
            }
            if leased.contains(&key) {
                report.kept += 1;
                report.leased += 1;
                continue;
            }
            if younger_than(&e.join(manifest::MANIFEST_FILE), opts.grace) {
                report.kept += 1;
                report.young += 1;
                continue;
            }
            if let Some(_lock) = free(&key) {
                let size = Manifest::read(&e).map(|m| m.total_size()).unwrap_or(0);
                if !opts.dry_run {
                    std::fs::create_dir_all(&trash).map_err(io("cannot create", &trash))?;
                    let to = trash.join(format!("{key}.{}", unique_suffix()));
                    std::fs::rename(&e, &to).map_err(io("cannot remove", &e))?;
                }
                report.objects.push((key, size));
            }
        }
        drop(collector);
        for e in read_dir_sorted(&self.base().join("staging")) {
            let key = file_name(&e)
                .split('.')
                .next()
                .unwrap_or_default()
                .to_string();
            if let Some(_lock) = free(&key) {
                if !opts.dry_run {
                    remove_tree(&e).map_err(io("cannot remove", &e))?;
                }
                report.staging.push(e);
            }
        }
        if opts.partial {
            for e in read_dir_sorted(&self.base().join("partial")) {
                if let Some(_lock) = free(&file_name(&e)) {
                    if !opts.dry_run {
                        remove_tree(&e).map_err(io("cannot remove", &e))?;
                    }
                    report.partial.push(e);
                }
            }
        }
        if !opts.dry_run {
            // Also what a killed gc left; a concurrent gc may be deleting the same: best effort.
            for e in read_dir_sorted(&trash) {
                let _ = remove_tree(&e);
            }
        }
        for e in read_dir_sorted(&self.base().join("corrupt")) {
            if !opts.dry_run {
                remove_tree(&e).map_err(io("cannot remove", &e))?;
            }
            report.corrupt.push(e);
        }
        for e in read_dir_sorted(&self.base().join("locks")) {
            let name = file_name(&e);
            let key = name.trim_end_matches(".lock");
            let in_use = self.object_dir(key).exists() || self.has_partial(key);
            if !in_use {
                if let Some(_lock) = free(key) {
                    if !opts.dry_run {
                        let _ = std::fs::remove_file(&e);
                    }
                    report.locks += 1;
                }
            }
        }
        Ok(report)
    }
}
