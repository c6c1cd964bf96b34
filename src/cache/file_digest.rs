//! blake3 of input files (datasets, model weights) without rereading unchanged ones.
//!
//! Planning a run needs the digest of every external file a node depends on: a 2 GB
//! `model.safetensors` would cost seconds on every `t2s run`, `status` and `--dry-run`. Like
//! DVC's state DB and git's index, a memo maps a file's identity (path, device, inode, size,
//! mtime) to its digest, so an unchanged file is a single `stat`. The memo is a SQLite file,
//! per user (`$T2S_DIGEST_CACHE`, else `$XDG_CACHE_HOME/t2s/file-digests.sqlite`, else
//! `~/.cache/t2s/...`). It is only an accelerator: when it cannot be opened or written the file
//! is hashed, never trusted blindly.
//!
//! A file modified within the clock granularity after it was hashed could keep its mtime
//! ("racy git"): entries whose mtime is less than [`RACY_WINDOW`] before the moment of hashing
//! are not memoised, so such a file is hashed again next time.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};

/// Files changed this recently when hashed are not memoised.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Where the memo lives.
pub fn memo_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("T2S_DIGEST_CACHE").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    Some(super::user_cache_dir()?.join("file-digests.sqlite"))
}

/// The identity a memo entry is valid for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    path: String,
    dev: i64,
    ino: i64,
    size: i64,
    mtime_ns: i64,
}

impl Identity {
    fn of(path: &Path, md: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            path: path.to_string_lossy().into_owned(),
            dev: md.dev() as i64,
            ino: md.ino() as i64,
            size: md.len() as i64,
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        }
    }
}

/// The blake3 hex digest of a file's bytes, from the memo when the file is unchanged.
pub fn digest_file(path: &Path) -> anyhow::Result<String> {
    digest_file_with(path, memo_path().as_deref())
}

/// [`digest_file`] with an explicit memo location (`None`: no memo).
pub fn digest_file_with(path: &Path, memo: Option<&Path>) -> anyhow::Result<String> {
    let abs =
        std::fs::canonicalize(path).with_context(|| format!("cannot read {}", path.display()))?;
    let md = std::fs::metadata(&abs).with_context(|| format!("cannot read {}", abs.display()))?;
    let id = Identity::of(&abs, &md);
    let db = memo.and_then(|m| match open(m) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!("file digest memo {} unavailable: {e:#}", m.display());
            None
        }
    });
    if let Some(db) = &db {
        if let Ok(Some(d)) = lookup(db, &id) {
            return Ok(d);
        }
    }
    let hashed_at = SystemTime::now();
    let digest = hash(&abs)?;
    let changed_long_ago = md
        .modified()
        .ok()
        .and_then(|m| hashed_at.duration_since(m).ok())
        .is_some_and(|age| age >= RACY_WINDOW);
    if let (Some(db), true) = (&db, changed_long_ago) {
        if let Err(e) = store(db, &id, &digest) {
            tracing::debug!("file digest memo not updated: {e:#}");
        }
    }
    Ok(digest)
}

/// blake3 of the file, memory-mapped and hashed on all cores for large files.
fn hash(path: &Path) -> anyhow::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(h.finalize().to_hex().to_string())
}

fn open(path: &Path) -> anyhow::Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(5))?;
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS digests(
            path TEXT PRIMARY KEY,
            dev INTEGER NOT NULL, ino INTEGER NOT NULL,
            size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
            blake3 TEXT NOT NULL)",
    )?;
    Ok(c)
}

fn lookup(c: &Connection, id: &Identity) -> rusqlite::Result<Option<String>> {
    c.query_row(
        "SELECT blake3 FROM digests
         WHERE path = ?1 AND dev = ?2 AND ino = ?3 AND size = ?4 AND mtime_ns = ?5",
        params![id.path, id.dev, id.ino, id.size, id.mtime_ns],
        |r| r.get(0),
    )
    .optional()
}

fn store(c: &Connection, id: &Identity, digest: &str) -> rusqlite::Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO digests(path, dev, ino, size, mtime_ns, blake3)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id.path, id.dev, id.ino, id.size, id.mtime_ns, digest],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn age(path: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn digest_is_blake3_of_the_bytes_with_or_without_memo() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.bin");
        std::fs::write(&f, b"weights").unwrap();
        let want = blake3::hash(b"weights").to_hex().to_string();
        assert_eq!(digest_file_with(&f, None).unwrap(), want);
        let memo = dir.path().join("memo.sqlite");
        assert_eq!(digest_file_with(&f, Some(&memo)).unwrap(), want);
    }

    #[test]
    fn unchanged_file_comes_from_the_memo_and_an_edit_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let memo = dir.path().join("memo.sqlite");
        let f = dir.path().join("data.parquet");
        std::fs::write(&f, b"first").unwrap();
        age(&f, 60);
        let first = digest_file_with(&f, Some(&memo)).unwrap();
        // Poison the memo entry: an unchanged file must be answered from it, unread.
        let c = open(&memo).unwrap();
        assert_eq!(
            c.execute("UPDATE digests SET blake3 = 'from-memo'", [])
                .unwrap(),
            1
        );
        assert_eq!(digest_file_with(&f, Some(&memo)).unwrap(), "from-memo");
        // An edit changes size or mtime: the file is hashed again.
        std::fs::write(&f, b"second!").unwrap();
        age(&f, 30);
        let second = digest_file_with(&f, Some(&memo)).unwrap();
        assert_eq!(second, blake3::hash(b"second!").to_hex().to_string());
        assert_ne!(second, first);
    }

    #[test]
    fn a_file_changed_just_now_is_not_memoised() {
        let dir = tempfile::tempdir().unwrap();
        let memo = dir.path().join("memo.sqlite");
        let f = dir.path().join("fresh.json");
        std::fs::write(&f, b"{}").unwrap();
        digest_file_with(&f, Some(&memo)).unwrap();
        let n: i64 = open(&memo)
            .unwrap()
            .query_row("SELECT count(*) FROM digests", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn an_unusable_memo_falls_back_to_hashing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, b"x").unwrap();
        // A directory where the memo file should be: cannot be opened as SQLite.
        let memo = dir.path().join("memo");
        std::fs::create_dir(&memo).unwrap();
        assert_eq!(
            digest_file_with(&f, Some(&memo)).unwrap(),
            blake3::hash(b"x").to_hex().to_string()
        );
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let err = digest_file_with(Path::new("/nonexistent/model.safetensors"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/model.safetensors"), "{err}");
    }
}
