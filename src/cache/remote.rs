//! A remote cache: a directory (a mounted team share, NFS, a synced bucket mount) holding
//! committed objects in the local store's layout, `<remote>/v1/objects/<key>/`, so machines and
//! people reuse each other's results, as with DVC remotes. Keys hold no paths or host names
//! (see `key`), so a node computed on one machine has the same key on every other.
//!
//! - **push**: a local object (checked against its manifest while it is copied) goes to
//!   `<remote>/v1/staging/<key>.<r>/`, is synced, and renamed into `objects/<key>`: a reader
//!   never sees half an object, and when two machines push the same key the first one stays.
//! - **fetch**: the remote manifest must be for the key asked for (its recorded cache key
//!   hashes to it) and list plain relative paths; exactly those files are copied (regular
//!   files only) into a local staging dir, each checked against its
//!   blake3 and size, then installed like a local commit. A remote object that fails is
//!   reported and nothing of it is kept; the node is computed instead.
//!
//! A remote is trusted like the people who push to it: the checks catch damage and mix-ups,
//! not someone writing a consistent manifest for wrong outputs.

use std::path::{Component, Path, PathBuf};

use super::key::STORE_FORMAT;
use super::lock::KeyLock;
use super::manifest::{self, FileEntry, Manifest};
use super::store::{remove_tree, unique_suffix, Lookup, Store, StoreError};

/// Remote failures, each naming the remote and the path or key involved.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("remote {remote}: {what} {path}: {source}")]
    Io {
        remote: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("remote {remote}: object {key}: {problem}")]
    Bad {
        remote: String,
        key: String,
        problem: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Copied: this many files and bytes.
    Uploaded { files: usize, bytes: u64 },
    /// The remote already had an object for the key.
    Present,
}

/// A directory remote.
#[derive(Debug, Clone)]
pub struct Remote {
    root: PathBuf,
}

impl Remote {
    /// A remote at `root`, which must be an existing directory (a mount point that is not
    /// mounted, or a typo, is said at once rather than discovered as misses).
    pub fn open(root: &Path) -> Result<Remote, RemoteError> {
        match std::fs::metadata(root) {
            Ok(md) if md.is_dir() => Ok(Remote {
                root: root.to_path_buf(),
            }),
            Ok(_) => Err(RemoteError::Io {
                remote: root.display().to_string(),
                what: "is not a directory:",
                path: root.to_path_buf(),
                source: std::io::Error::other("a remote is a directory"),
            }),
            Err(source) => Err(RemoteError::Io {
                remote: root.display().to_string(),
                what: "cannot open",
                path: root.to_path_buf(),
                source,
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn base(&self) -> PathBuf {
        self.root.join(format!("v{STORE_FORMAT}"))
    }

    fn object_dir(&self, key: &str) -> PathBuf {
        self.base().join("objects").join(key)
    }

    fn io<'a>(
        &self,
        what: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> RemoteError + 'a {
        let remote = self.root.display().to_string();
        move |source| RemoteError::Io {
            remote,
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    fn bad(&self, key: &str, problem: impl Into<String>) -> RemoteError {
        RemoteError::Bad {
            remote: self.root.display().to_string(),
            key: key.to_string(),
            problem: problem.into(),
        }
    }

    /// The remote object's manifest for `key`: `None` when the remote has no object for it, an
    /// error when it has one that cannot be used (unreadable, for another key, unsafe paths).
    pub fn manifest(&self, key: &str) -> Result<Option<Manifest>, RemoteError> {
        let dir = self.object_dir(key);
        let path = dir.join(manifest::MANIFEST_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return if dir.exists() {
                    Err(self.bad(key, format!("no {}", manifest::MANIFEST_FILE)))
                } else {
                    Ok(None)
                };
            }
            Err(e) => return Err(self.io("cannot read", &path)(e)),
        };
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| self.bad(key, format!("{}: {e}", path.display())))?;
        if m.store_format != STORE_FORMAT {
            return Err(self.bad(
                key,
                format!("store format {} (this t2s: {STORE_FORMAT})", m.store_format),
            ));
        }
        if m.key != key || m.cache_key.digest() != key {
            return Err(self.bad(key, "its manifest describes another key"));
        }
        if let Some(bad) = m.files.keys().find(|rel| !plain_relative(rel)) {
            return Err(self.bad(key, format!("unsafe file path `{bad}` in its manifest")));
        }
        Ok(Some(m))
    }

    /// Whether the remote holds a usable object for `key` (with `verify`: every file matching
    /// its blake3). A damaged object is `false`; one that cannot be read (permissions, an I/O
    /// error on the share) is an error, so a push never replaces what it could not look at.
    pub fn present(&self, key: &str, verify: bool) -> Result<bool, RemoteError> {
        match self.manifest(key) {
            Ok(Some(m)) => Ok(!verify || m.check_full(&self.object_dir(key)).is_empty()),
            Ok(None) | Err(RemoteError::Bad { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Copy the local object of `key` to the remote, unless the remote has one (with `verify`:
    /// one whose files all match their blake3; a damaged one is replaced).
    pub fn push(&self, store: &Store, key: &str, verify: bool) -> Result<Pushed, RemoteError> {
        let local = match store.lookup(key, false)? {
            Lookup::Hit(m) => m,
            Lookup::Missing => return Err(self.bad(key, "not in the local store")),
            Lookup::Corrupt { problems, moved_to } => {
                return Err(self.bad(
                    key,
                    format!(
                        "the local object failed its check ({}); moved aside to {}",
                        problems.join("; "),
                        moved_to.display()
                    ),
                ))
            }
        };
        if self.present(key, verify)? {
            return Ok(Pushed::Present);
        }
        let staging_root = self.base().join("staging");
        std::fs::create_dir_all(&staging_root).map_err(self.io("cannot create", &staging_root))?;
        sweep_stale(&staging_root, STALE_STAGING);
        let staging = staging_root.join(format!("{key}.{}", unique_suffix()));
        let result = self.push_into(store, key, &local, &staging);
        if result.is_err() {
            let _ = remove_tree(&staging);
        }
        result
    }

    fn push_into(
        &self,
        store: &Store,
        key: &str,
        local: &Manifest,
        staging: &Path,
    ) -> Result<Pushed, RemoteError> {
        let from = store.object_dir(key);
        let mut bytes = 0;
        for (rel, entry) in &local.files {
            let src = from.join(rel);
            let dst = staging.join(rel);
            let (digest, size) = copy_hashing(&src, &dst).map_err(self.io("cannot copy", &src))?;
            if digest != entry.blake3 || size != entry.size {
                return Err(self.bad(
                    key,
                    format!(
                        "local file `{rel}` does not match its manifest; run `t2s run --verify`"
                    ),
                ));
            }
            bytes += size;
        }
        local
            .write(staging)
            .map_err(self.io("cannot write manifest in", staging))?;
        manifest::make_read_only(staging).map_err(self.io("cannot protect", staging))?;
        manifest::sync_tree(staging).map_err(self.io("cannot sync", staging))?;
        let target = self.object_dir(key);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(self.io("cannot create", parent))?;
        }
        if target.exists() {
            // A damaged object (refused by `manifest`, or failing `verify`): replace it, moving
            // it out of the way first so readers never see a mix.
            let trash = self
                .base()
                .join("staging")
                .join(format!("{key}.replaced.{}", unique_suffix()));
            std::fs::rename(&target, &trash).map_err(self.io("cannot replace", &target))?;
            let _ = remove_tree(&trash);
        }
        match std::fs::rename(staging, &target) {
            Ok(()) => Ok(Pushed::Uploaded {
                files: local.files.len(),
                bytes,
            }),
            // Another machine pushed the key meanwhile: theirs stays.
            Err(_) if self.manifest(key).is_ok_and(|m| m.is_some()) => {
                let _ = remove_tree(staging);
                Ok(Pushed::Present)
            }
            Err(e) => Err(self.io("cannot rename into", &target)(e)),
        }
    }

    /// Fetch the remote object `remote` describes (as [`Remote::manifest`] read it) into the
    /// local store (the caller holds its key's lock) and record it as `node`'s output in
    /// `pipeline`. An error (nothing kept locally) when a file fails its checks.
    pub fn fetch(
        &self,
        store: &Store,
        remote: Manifest,
        pipeline: &str,
        node: &str,
        lock: &KeyLock,
    ) -> Result<Manifest, RemoteError> {
        let key = remote.key.clone();
        let staging = store.begin(&key, lock)?;
        let copied = self.fetch_into(&key, &remote, &staging.dir);
        let files = match copied {
            Ok(files) => files,
            Err(e) => {
                store.discard(staging);
                return Err(e);
            }
        };
        let local = Manifest {
            node: node.to_string(),
            files,
            ..remote
        };
        Ok(store.install(staging, local, pipeline, node, lock)?)
    }

    fn fetch_into(
        &self,
        key: &str,
        remote: &Manifest,
        staging: &Path,
    ) -> Result<std::collections::BTreeMap<String, FileEntry>, RemoteError> {
        let from = self.object_dir(key);
        let mut files = std::collections::BTreeMap::new();
        for (rel, entry) in &remote.files {
            let src = from.join(rel);
            if let Some(problem) = not_within(&from, rel) {
                return Err(self.bad(key, format!("`{rel}`: {problem}")));
            }
            let dst = staging.join(rel);
            let (digest, size) = copy_hashing(&src, &dst).map_err(self.io("cannot copy", &src))?;
            if digest != entry.blake3 || size != entry.size {
                return Err(self.bad(
                    key,
                    format!("file `{rel}` does not match its blake3 in the remote manifest"),
                ));
            }
            let mtime_ns = manifest::file_mtime_ns(&dst).map_err(self.io("cannot stat", &dst))?;
            files.insert(
                rel.clone(),
                FileEntry {
                    blake3: digest,
                    size,
                    mtime_ns,
                },
            );
        }
        Ok(files)
    }
}

/// How old a directory under the remote's `staging/` must be to count as left by a killed push
/// (no push takes a day; another machine may be pushing right now, so fresh ones stay).
const STALE_STAGING: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Remove the entries of `dir` last modified more than `age` ago (best effort).
fn sweep_stale(dir: &Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age);
        if old {
            let _ = remove_tree(&e.path());
        }
    }
}

/// Why `object/rel` might resolve outside `object` (`None`: it does not): the object directory
/// and every directory on the way must be real directories, not symlinks, and the file a regular
/// file. `plain_relative` rules out `..` and absolute paths; this rules out links, which a
/// forged remote object could use to install files from anywhere (`sub -> /etc`). The copy
/// itself opens the file without following a link ([`manifest::open_regular`]).
fn not_within(object: &Path, rel: &str) -> Option<String> {
    let mut path = object.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    let check = |path: &Path, want_dir: bool| match std::fs::symlink_metadata(path) {
        Err(e) => Some(format!("cannot read {}: {e}", path.display())),
        Ok(md) if md.file_type().is_symlink() => {
            Some(format!("{} is a symbolic link", path.display()))
        }
        Ok(md) if want_dir && !md.is_dir() => {
            Some(format!("{} is not a directory", path.display()))
        }
        Ok(md) if !want_dir && !md.is_file() => {
            Some(format!("{} is not a regular file", path.display()))
        }
        Ok(_) => None,
    };
    if let Some(p) = check(&path, true) {
        return Some(p);
    }
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        if let Some(p) = check(&path, i + 1 < parts.len()) {
            return Some(p);
        }
    }
    None
}

/// A manifest path that stays inside its object: `/`-separated normal components only.
fn plain_relative(rel: &str) -> bool {
    !rel.is_empty()
        && rel != manifest::MANIFEST_FILE
        && !rel.contains('\0')
        && rel.split('/').all(|part| {
            !part.is_empty()
                && matches!(
                    Path::new(part).components().collect::<Vec<_>>().as_slice(),
                    [Component::Normal(_)]
                )
        })
}

/// Copy `src` to `dst` (creating its parent dirs) and hash what landed: (blake3, size). The copy
/// is the kernel's (`copy_file_range`, a reflink where the filesystem has them); the hash reads
/// the new file, memory-mapped, on all cores.
fn copy_hashing(src: &Path, dst: &Path) -> std::io::Result<(String, u64)> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut from = manifest::open_regular(src)?;
    let mut to = std::fs::File::create(dst)?;
    std::io::copy(&mut from, &mut to)?;
    drop(to);
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap_rayon(dst)?;
    Ok((hasher.finalize().to_hex().to_string(), hasher.count()))
}

#[cfg(test)]
mod tests {
    use super::{plain_relative, sweep_stale};

    #[test]
    fn only_staging_left_long_ago_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let (old, fresh) = (dir.path().join("k.old"), dir.path().join("k.fresh"));
        for d in [&old, &fresh] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("blob.bin"), b"x").unwrap();
        }
        let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86400);
        std::fs::File::open(&old)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        sweep_stale(dir.path(), super::STALE_STAGING);
        assert!(!old.exists(), "a day-old leftover is removed");
        assert!(fresh.exists(), "a push in progress elsewhere is left alone");
    }

    #[test]
    fn manifest_paths_must_stay_inside_the_object() {
        for ok in ["a", "adapter/model.safetensors", "x.y", "..a", "a..b/c"] {
            assert!(plain_relative(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "MANIFEST.json",
            "a/\0b",
        ] {
            assert!(!plain_relative(bad), "{bad:?}");
        }
    }
}
