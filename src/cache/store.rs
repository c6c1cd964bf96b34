//! The artifact store under `<root>/artifacts/v1/`:
//!
//! ```text
//! objects/<key>/            committed artifacts (read-only files + MANIFEST.json)
//! staging/<key>.<pid>.<r>/  where a running stage writes; renamed into objects/ on success
//! partial/<key>/            resume checkpoints; kept across failed/killed attempts
//! refs/<pipeline>/<node>    node id → latest used key (with the key fields, for `status`)
//! locks/<key>.lock          per-key locks
//! corrupt/<key>.<r>/        objects that failed their integrity check, moved aside
//! gc.lock, leases/          which keys live processes use (see `lease`)
//! trash/                    what `gc` took out of `objects/`, being deleted
//! ```
//!
//! A node is done only once its object is renamed into `objects/`: a rename is atomic, so a
//! killed run leaves at most a staging directory, which the next holder of the key's lock (or
//! `gc`) removes. The node's ref is written *before* that rename, so no kill leaves a committed
//! object that no ref names. What `gc` keeps and removes is in `gc`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use super::key::{CacheKey, STORE_FORMAT};
use super::lease::Lease;
use super::lock::{KeyLock, LockError};
use super::manifest::{self, Manifest, Problem};

/// Store failures, each naming the path involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("artifact store: {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
}

pub(super) fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The result of looking a key up.
#[derive(Debug)]
pub enum Lookup {
    /// A committed object that passed the integrity check.
    Hit(Manifest),
    /// No object for this key.
    Missing,
    /// An object existed but failed its check; it was moved aside to `moved_to`.
    Corrupt {
        problems: Vec<String>,
        moved_to: PathBuf,
    },
}

/// The last committed key of a node id in a pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRef {
    pub pipeline: String,
    pub node: String,
    pub key: String,
    pub cache_key: CacheKey,
}

/// A staging directory being written by a stage.
#[derive(Debug)]
pub struct Staging {
    pub key: String,
    pub dir: PathBuf,
}

/// Handle on `<root>/artifacts/v1`.
#[derive(Debug, Clone)]
pub struct Store {
    base: PathBuf,
    /// With [`Store::leased`]: every key this handle looks up, begins or installs is leased
    /// first, so `gc` leaves it alone while this process lives.
    lease: Option<std::sync::Arc<Lease>>,
}

const SUBDIRS: [&str; 6] = ["objects", "staging", "partial", "refs", "locks", "corrupt"];

impl Store {
    /// Open (creating on first use) the store of a project root.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let base = root.join("artifacts").join(format!("v{STORE_FORMAT}"));
        if !base.join("corrupt").is_dir() {
            for sub in SUBDIRS {
                let d = base.join(sub);
                std::fs::create_dir_all(&d).map_err(io("cannot create", &d))?;
            }
        }
        Ok(Store { base, lease: None })
    }

    /// This store, leasing every key it touches from now on until the process exits (what
    /// `t2s run` and the commands that read objects use; `status` and `gc` do not).
    pub fn leased(self) -> Result<Store, StoreError> {
        let lease =
            Lease::create(&self.base).map_err(io("cannot create a lease in", &self.base))?;
        Ok(Store {
            lease: Some(std::sync::Arc::new(lease)),
            ..self
        })
    }

    /// Lease `key` (a no-op on an unleased handle).
    fn use_key(&self, key: &str) -> Result<(), StoreError> {
        match &self.lease {
            Some(l) => l
                .register(key)
                .map_err(io("cannot lease key in", &self.base.join("leases"))),
            None => Ok(()),
        }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }
    pub fn object_dir(&self, key: &str) -> PathBuf {
        self.base.join("objects").join(key)
    }
    pub fn partial_dir(&self, key: &str) -> PathBuf {
        self.base.join("partial").join(key)
    }
    pub(super) fn lock_path(&self, key: &str) -> PathBuf {
        self.base.join("locks").join(format!("{key}.lock"))
    }

    /// Whether the partial (resume) area of `key` holds anything.
    pub fn has_partial(&self, key: &str) -> bool {
        std::fs::read_dir(self.partial_dir(key))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    }

    /// Look `key` up. The cheap check (file set, sizes, mtimes) runs always; the full blake3
    /// check runs when `verify` is set or the cheap check found a difference. A failing object
    /// is moved aside to `corrupt/` and reported, never returned as a hit.
    pub fn lookup(&self, key: &str, verify: bool) -> Result<Lookup, StoreError> {
        self.use_key(key)?;
        let dir = self.object_dir(key);
        let manifest = match Manifest::read(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.exists() => {
                return Ok(Lookup::Missing)
            }
            Err(e) => {
                return self.move_aside(
                    key,
                    vec![format!("unreadable {}: {e}", manifest::MANIFEST_FILE)],
                );
            }
        };
        if manifest.key != key {
            return self.move_aside(key, vec![format!("manifest is for key {}", manifest.key)]);
        }
        let cheap = manifest.check_cheap(&dir);
        if cheap.is_empty() && !verify {
            return Ok(Lookup::Hit(manifest));
        }
        let full = manifest.check_full(&dir);
        if full.is_empty() {
            if !cheap.is_empty() {
                // Content intact, only mtimes moved (copy, touch): refresh them so the next
                // cheap check passes without hashing again.
                if let Ok(files) = manifest::scan(&dir) {
                    let refreshed = Manifest {
                        files,
                        ..manifest.clone()
                    };
                    if refreshed.digest() == manifest.digest() {
                        let _ = refreshed.write(&dir);
                    }
                }
            }
            return Ok(Lookup::Hit(manifest));
        }
        tracing::warn!(
            key,
            "cached artifact failed its integrity check: {:?}",
            full
        );
        self.move_aside(key, full.iter().map(Problem::to_string).collect())
    }

    fn move_aside(&self, key: &str, problems: Vec<String>) -> Result<Lookup, StoreError> {
        let from = self.object_dir(key);
        let to = self
            .base
            .join("corrupt")
            .join(format!("{key}.{}", unique_suffix()));
        match std::fs::rename(&from, &to) {
            Ok(()) => Ok(Lookup::Corrupt {
                problems,
                moved_to: to,
            }),
            // Someone else moved it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lookup::Missing),
            Err(e) => Err(io("cannot move aside corrupt object", &from)(e)),
        }
    }

    /// Take the lock of `key`, waiting (cancellably) while another process holds it.
    pub fn lock(
        &self,
        key: &str,
        cancel: &AtomicBool,
        on_wait: impl FnMut(),
    ) -> Result<KeyLock, StoreError> {
        Ok(KeyLock::acquire(&self.lock_path(key), cancel, on_wait)?)
    }

    /// Create a fresh staging dir for `key` after removing stale ones. The caller holds the
    /// key's lock, so any other staging dir of this key belongs to a dead attempt.
    pub fn begin(&self, key: &str, _lock: &KeyLock) -> Result<Staging, StoreError> {
        self.use_key(key)?;
        let staging = self.base.join("staging");
        if let Ok(entries) = std::fs::read_dir(&staging) {
            for e in entries.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{key}."))
                {
                    let _ = remove_tree(&e.path());
                }
            }
        }
        let dir = staging.join(format!("{key}.{}.{}", std::process::id(), unique_suffix()));
        std::fs::create_dir_all(&dir).map_err(io("cannot create staging dir", &dir))?;
        let partial = self.partial_dir(key);
        std::fs::create_dir_all(&partial).map_err(io("cannot create partial dir", &partial))?;
        Ok(Staging {
            key: key.to_string(),
            dir,
        })
    }

    /// Commit a finished staging dir: hash its files, write the manifest, make the files
    /// read-only, rename it into `objects/<key>` (replacing an existing object, for `--force`),
    /// record the node's ref and drop the partial area. Requires the key's lock.
    pub fn commit(
        &self,
        staging: Staging,
        pipeline: &str,
        node: &str,
        cache_key: &CacheKey,
        metrics: std::collections::BTreeMap<String, f64>,
        lock: &KeyLock,
    ) -> Result<Manifest, StoreError> {
        let files = match manifest::scan(&staging.dir) {
            Ok(files) => files,
            Err(e) => {
                // Refused or unreadable outputs: nothing of them stays (removing a link or a
                // FIFO never opens it).
                let err = io("refused the outputs in", &staging.dir)(e);
                self.discard(staging);
                return Err(err);
            }
        };
        let manifest = Manifest {
            store_format: STORE_FORMAT,
            key: staging.key.clone(),
            node: node.to_string(),
            cache_key: cache_key.clone(),
            files,
            metrics,
            created: crate::runs::now_rfc3339(),
        };
        self.install(staging, manifest, pipeline, node, lock)
    }

    /// Install a staging dir whose files `manifest` describes (hashed by the caller): write the
    /// manifest, make the files read-only, sync, rename into `objects/<key>` (replacing an
    /// existing object), record the node's ref and drop the partial area. Requires the key's
    /// lock. Used by [`Store::commit`] and by fetches from a remote.
    pub fn install(
        &self,
        staging: Staging,
        manifest: Manifest,
        pipeline: &str,
        node: &str,
        _lock: &KeyLock,
    ) -> Result<Manifest, StoreError> {
        manifest
            .write(&staging.dir)
            .map_err(io("cannot write manifest in", &staging.dir))?;
        manifest::make_read_only(&staging.dir).map_err(io("cannot protect", &staging.dir))?;
        // Data on disk before the rename makes it visible: a power cut must not leave a
        // committed object with empty files.
        manifest::sync_tree(&staging.dir).map_err(io("cannot sync", &staging.dir))?;
        // The ref first: a kill after the rename below must not leave an object no ref names
        // (which `gc` would remove). A ref naming a key not (yet) committed is a plain miss.
        self.write_ref(&NodeRef {
            pipeline: pipeline.to_string(),
            node: node.to_string(),
            key: staging.key.clone(),
            cache_key: manifest.cache_key.clone(),
        })?;
        let target = self.object_dir(&staging.key);
        if target.exists() {
            let trash = self.base.join("corrupt").join(format!(
                "{}.replaced.{}",
                staging.key,
                unique_suffix()
            ));
            std::fs::rename(&target, &trash).map_err(io("cannot replace object", &target))?;
            let _ = remove_tree(&trash);
        }
        std::fs::rename(&staging.dir, &target).map_err(io("cannot commit object", &target))?;
        if let Ok(d) = std::fs::File::open(self.base.join("objects")) {
            let _ = d.sync_all();
        }
        let _ = remove_tree(&self.partial_dir(&staging.key));
        Ok(manifest)
    }

    /// Drop the partial (resume) area of a committed key. A kill between [`Store::install`]'s
    /// rename and its removal of the area leaves one behind, which a later hit would keep
    /// forever. Done only when nobody holds the key's lock (a `--force` rerun may be filling it).
    pub fn drop_stale_partial(&self, key: &str) {
        let partial = self.partial_dir(key);
        if !partial.exists() || !self.object_dir(key).exists() {
            return;
        }
        if let Ok(Some(_lock)) = KeyLock::try_acquire(&self.lock_path(key)) {
            if self.object_dir(key).exists() {
                let _ = remove_tree(&partial);
            }
        }
    }

    /// Throw a staging dir away (failed or interrupted stage). The partial area stays.
    pub fn discard(&self, staging: Staging) {
        let _ = remove_tree(&staging.dir);
    }

    fn ref_path(&self, pipeline: &str, node: &str) -> PathBuf {
        self.base
            .join("refs")
            .join(file_safe(pipeline))
            .join(format!("{}.json", file_safe(node)))
    }

    /// The last committed key of `node` in `pipeline`, if any.
    pub fn read_ref(&self, pipeline: &str, node: &str) -> Option<NodeRef> {
        let bytes = std::fs::read(self.ref_path(pipeline, node)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Record `r` as the node's last committed key (temp file + rename).
    pub fn write_ref(&self, r: &NodeRef) -> Result<(), StoreError> {
        let path = self.ref_path(&r.pipeline, &r.node);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
        }
        let tmp = path.with_extension(format!("tmp.{}", unique_suffix()));
        let text =
            serde_json::to_vec_pretty(r).map_err(|e| io("cannot encode", &path)(e.into()))?;
        std::fs::write(&tmp, text).map_err(io("cannot write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("cannot write", &path))
    }

    /// Record that `node` of `pipeline` used the committed object `m` (a cache hit): its ref
    /// names what the latest run used, which is what `gc` keeps. Written only when it changes.
    pub fn record_use(&self, pipeline: &str, node: &str, m: &Manifest) -> Result<(), StoreError> {
        if self
            .read_ref(pipeline, node)
            .is_some_and(|r| r.key == m.key)
        {
            return Ok(());
        }
        self.write_ref(&NodeRef {
            pipeline: pipeline.to_string(),
            node: node.to_string(),
            key: m.key.clone(),
            cache_key: m.cache_key.clone(),
        })
    }

    /// Every ref of one pipeline.
    pub fn refs_of(&self, pipeline: &str) -> Vec<NodeRef> {
        read_refs(&self.base.join("refs").join(file_safe(pipeline)))
    }

    /// Every ref of every pipeline.
    pub fn all_refs(&self) -> Vec<NodeRef> {
        read_dir_sorted(&self.base.join("refs"))
            .iter()
            .flat_map(|d| read_refs(d))
            .collect()
    }
}

/// The project-relative name of an object directory, `artifacts/v1/objects/<key>`, when `dir`
/// is one (of any project). Outputs that name another object (an adapter's base model) record
/// this instead of an absolute path, so an object's bytes do not depend on where its project
/// lives, and a copy fetched by another machine names the same thing there.
pub fn object_name(dir: &Path) -> Option<String> {
    let mut parts = dir.components().rev().map(|c| c.as_os_str().to_str());
    let (key, objects, version, artifacts) = (
        parts.next()??,
        parts.next()??,
        parts.next()??,
        parts.next()??,
    );
    let is_key = key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (is_key
        && objects == "objects"
        && version == format!("v{STORE_FORMAT}")
        && artifacts == "artifacts")
        .then(|| format!("artifacts/{version}/objects/{key}"))
}

fn read_refs(dir: &Path) -> Vec<NodeRef> {
    read_dir_sorted(dir)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "json"))
        .filter_map(|f| std::fs::read(f).ok())
        .filter_map(|b| serde_json::from_slice::<NodeRef>(&b).ok())
        .collect()
}

pub(super) fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Remove a directory tree whose files may be read-only.
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// A file name for a node id or pipeline name: readable characters kept, the rest replaced, and
/// a short hash of the original appended so two ids never share a file.
fn file_safe(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_=,.[]".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let h = blake3::hash(s.as_bytes()).to_hex();
    format!("{}-{}", clean.trim_start_matches('.'), &h[..8])
}

pub(crate) fn unique_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}
