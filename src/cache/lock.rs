//! Per-key exclusive file locks (`artifacts/v1/locks/<key>.lock`).
//!
//! Two `t2s run`s that reach the same node take the same lock: the first computes, the second
//! waits and then finds the committed object. Locks are advisory OS locks (`flock` on Unix), so
//! a killed process releases its locks automatically.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A held lock; released on drop.
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
    pub path: PathBuf,
}

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted while waiting for the lock {path}")]
    Interrupted { path: PathBuf },
}

impl KeyLock {
    /// Try once; `Ok(None)` when another process holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<KeyLock>, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            // `gc` may have unlinked the file between our open and lock: then we hold a lock on
            // an orphan inode nobody else will ever see. Retry on the current file.
            if same_file(&file, path) {
                return Ok(Some(KeyLock {
                    _file: file,
                    path: path.to_path_buf(),
                }));
            }
        }
    }

    /// Wait for the lock, polling so that `cancel` (Ctrl-C) can end the wait. `on_wait` is
    /// called once, when the lock is found taken.
    pub fn acquire(
        path: &Path,
        cancel: &AtomicBool,
        mut on_wait: impl FnMut(),
    ) -> Result<KeyLock, LockError> {
        let mut waited = false;
        loop {
            if let Some(lock) = Self::try_acquire(path)? {
                return Ok(lock);
            }
            if !waited {
                on_wait();
                waited = true;
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(LockError::Interrupted {
                    path: path.to_path_buf(),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_until_the_first_releases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let first = KeyLock::try_acquire(&path).unwrap().expect("free lock");
        assert!(KeyLock::try_acquire(&path).unwrap().is_none());
        drop(first);
        assert!(KeyLock::try_acquire(&path).unwrap().is_some());
    }

    #[test]
    fn waiting_ends_on_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let _held = KeyLock::try_acquire(&path).unwrap().unwrap();
        let cancel = AtomicBool::new(true);
        let mut waits = 0;
        let err = KeyLock::acquire(&path, &cancel, || waits += 1).unwrap_err();
        assert!(matches!(err, LockError::Interrupted { .. }));
        assert_eq!(waits, 1);
    }
}
