//! Leases: which objects live processes use, so `gc` never removes them under a run.
//!
//! The protocol (Bazel and DVC take the same shape: users hold a shared lock, gc the exclusive
//! one; git adds a grace period for young objects, which `gc --grace` offers too):
//!
//! ```text
//! gc.lock                 runs: shared, briefly, around each registration; gc: exclusive
//! leases/<pid>.<r>.lease  one per process, flock-ed by it while it lives; one key a line
//! ```
//!
//! A run registers a key *before* it looks the key up or starts computing it, and keeps its
//! lease until it exits. `gc` decides what to remove and moves it out of `objects/` while it
//! holds `gc.lock` exclusively, so every registration happened either before (and `gc` sees
//! the key) or after (and the run's lookup sees the object gone and recomputes it). A lease
//! whose flock is free belongs to a dead process (kill -9 included: the OS drops the lock) and
//! protects nothing; `gc` deletes it.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::store::unique_suffix;

/// This process's lease on the keys it uses; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lease {
    gc_lock: PathBuf,
    path: PathBuf,
    /// The lease file (its flock held) and the keys written to it.
    state: Mutex<(File, BTreeSet<String>)>,
}

/// The store-wide lock a registration shares and `gc` takes alone.
fn open_gc_lock(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

impl Lease {
    /// Create this process's lease under `base` (`artifacts/v1`).
    pub fn create(base: &Path) -> std::io::Result<Lease> {
        let dir = base.join("leases");
        std::fs::create_dir_all(&dir)?;
        let gc_lock = base.join("gc.lock");
        let shared = open_gc_lock(&gc_lock)?;
        shared.lock_shared()?;
        let path = dir.join(format!("{}.{}.lease", std::process::id(), unique_suffix()));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        // Locked before `gc.lock` is released: `gc` never sees this lease unlocked while we live.
        file.try_lock().map_err(std::io::Error::other)?;
        drop(shared);
        Ok(Lease {
            gc_lock,
            path,
            state: Mutex::new((file, BTreeSet::new())),
        })
    }

    /// Record that this process uses `key` (once per key). Waits while `gc` holds `gc.lock`.
    pub fn register(&self, key: &str) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.1.contains(key) {
            return Ok(());
        }
        let shared = open_gc_lock(&self.gc_lock)?;
        shared.lock_shared()?;
        state.0.write_all(format!("{key}\n").as_bytes())?;
        state.1.insert(key.to_string());
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The flock goes with the file; the file itself is tidied here (or by `gc` after a kill).
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `gc`'s side: holds `gc.lock` exclusively while alive, so no registration happens meanwhile.
pub struct Collector {
    _lock: File,
}

impl Collector {
    /// Take `gc.lock` exclusively (waiting for registrations in flight, which are short).
    pub fn begin(base: &Path) -> std::io::Result<Collector> {
        let file = open_gc_lock(&base.join("gc.lock"))?;
        file.lock()?;
        Ok(Collector { _lock: file })
    }

    /// Every key a live process has registered; the leases of dead processes are removed
    /// (unless `dry_run`).
    pub fn leased_keys(&self, base: &Path, dry_run: bool) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        let Ok(entries) = std::fs::read_dir(base.join("leases")) else {
            return keys;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "lease") {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).open(&path) else {
                continue;
            };
            match file.try_lock() {
                // Nobody holds it: its process is gone.
                Ok(()) => {
                    if !dry_run {
                        let _ = std::fs::remove_file(&path);
                    }
                }
                Err(_) => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    keys.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_string));
                }
            }
        }
        keys
    }
}
