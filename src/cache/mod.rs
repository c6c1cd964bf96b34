//! The content-addressed artifact store and the cache keys that address it.
//!
//! - `key`: the one canonical struct every input of a node's result is a field of, its blake3
//!   digest, and the field-by-field diff `status` uses to say *why* a node is stale.
//! - `manifest`: `MANIFEST.json` of a committed object (file → blake3, size, mtime, plus the key),
//!   the cheap (size/mtime) and full (blake3) integrity checks.
//! - `store`: the `artifacts/v1/` layout: staging → atomic commit into `objects/<key>/`, the
//!   partial (resume) area, refs (node id → latest used key).
//! - `gc`: what garbage collection keeps (refs, leases, a grace period) and removes.
//! - `remote`: a directory remote (team share, NFS) that objects are pushed to and fetched
//!   from, checked file by file, so machines reuse each other's results.
//! - `file_digest`: blake3 of external input files, memoised by (path, inode, size, mtime).
//! - `lock`: per-key file locks so concurrent runs never compute the same key twice.
//! - `lease`: which keys live processes use, and the lock `gc` takes, so `gc` is safe to run
//!   while runs are active.
//! - [`user_cache_dir`]: where per-user accelerators (the digest memo, the worker's compiled
//!   kernels) live, outside any project.
//!
//! Nothing here knows about YAML, the tracking DB or how stages run.

pub mod file_digest;
pub mod gc;
pub mod key;
pub mod lease;
pub mod lock;
pub mod manifest;
pub mod remote;
pub mod store;

pub use gc::{GcOptions, GcReport};
pub use key::{CacheKey, FieldChange, KeyInput, STORE_FORMAT};
pub use lock::KeyLock;
pub use manifest::{FileEntry, Manifest};
pub use remote::{Pushed, Remote, RemoteError};
pub use store::{Lookup, NodeRef, Staging, Store, StoreError};

#[cfg(test)]
mod remote_tests;
#[cfg(test)]
mod store_tests;

use std::path::PathBuf;

/// The per-user cache directory of t2s: `$XDG_CACHE_HOME/t2s`, else `~/.cache/t2s` (`None`
/// without either). It holds only accelerators that are rebuilt when missing.
pub fn user_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("t2s"))
}
