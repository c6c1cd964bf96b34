//! `MANIFEST.json` of a committed artifact: every file with its blake3, size and mtime, plus the
//! cache key the artifact was computed for and the stage's final metrics.
//!
//! Integrity is checked cheap-first: sizes, mtimes and the file set on every use (a few `stat`s),
//! full blake3 only on `--verify` or when the cheap check sees a difference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::key::CacheKey;

/// The manifest file name inside an object directory (never listed in `files`).
pub const MANIFEST_FILE: &str = "MANIFEST.json";

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub blake3: String,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch, for the cheap check.
    pub mtime_ns: i128,
}

/// A committed artifact's description.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub store_format: u32,
    /// The object's key (`CacheKey::digest`).
    pub key: String,
    /// Node id that produced it (informative: objects are shared by key, not by node).
    pub node: String,
    /// The full key, field by field, so `status` can explain a change.
    pub cache_key: CacheKey,
    /// Files by relative path (`/`-separated).
    pub files: BTreeMap<String, FileEntry>,
    /// Final metrics the stage reported, so cached reuse can still show them.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    pub created: String,
}

/// What the integrity check found wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    Missing(String),
    Extra(String),
    Size(String),
    Mtime(String),
    Content(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing(p) => write!(f, "file `{p}` is missing"),
            Problem::Extra(p) => write!(f, "file `{p}` is not in the manifest"),
            Problem::Size(p) => write!(f, "file `{p}` changed size"),
            Problem::Mtime(p) => write!(f, "file `{p}` was modified"),
            Problem::Content(p) => write!(f, "file `{p}` does not match its blake3"),
        }
    }
}

impl Manifest {
    /// The artifact's content digest: blake3 of the sorted file list (path, blake3, size).
    /// Downstream keys use it, so a recomputed but identical artifact keeps them cached.
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new();
        for (path, e) in &self.files {
            h.update(path.as_bytes());
            h.update(b"\0");
            h.update(e.blake3.as_bytes());
            h.update(b"\0");
            h.update(e.size.to_string().as_bytes());
            h.update(b"\n");
        }
        h.finalize().to_hex().to_string()
    }

    pub fn total_size(&self) -> u64 {
        self.files.values().map(|e| e.size).sum()
    }

    pub fn read(dir: &Path) -> std::io::Result<Manifest> {
        let bytes = std::fs::read(dir.join(MANIFEST_FILE))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    /// Write `MANIFEST.json` into `dir` through a temp file and a rename.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!(".{MANIFEST_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(MANIFEST_FILE))
    }

    /// Cheap check: the file set, sizes and mtimes. No file is read.
    pub fn check_cheap(&self, dir: &Path) -> Vec<Problem> {
        let mut problems = Vec::new();
        let present = match list_files(dir) {
            Ok(files) => files,
            Err(e) => return vec![Problem::Missing(format!(".: {e}"))],
        };
        for rel in present.keys() {
            if !self.files.contains_key(rel) {
                problems.push(Problem::Extra(rel.clone()));
            }
        }
        for (rel, entry) in &self.files {
            match present.get(rel) {
                None => problems.push(Problem::Missing(rel.clone())),
                Some(path) => match std::fs::metadata(path) {
                    Err(_) => problems.push(Problem::Missing(rel.clone())),
                    Ok(md) if md.len() != entry.size => problems.push(Problem::Size(rel.clone())),
                    Ok(md) if mtime_ns(&md) != entry.mtime_ns => {
                        problems.push(Problem::Mtime(rel.clone()))
                    }
                    Ok(_) => {}
                },
            }
        }
        problems
    }

    /// Full check: the file set and every file's blake3 (mtimes are not compared).
    pub fn check_full(&self, dir: &Path) -> Vec<Problem> {
        let present = match list_files(dir) {
            Ok(files) => files,
            Err(e) => return vec![Problem::Missing(format!(".: {e}"))],
        };
        let mut problems: Vec<Problem> = present
            .keys()
            .filter(|rel| !self.files.contains_key(*rel))
            .map(|rel| Problem::Extra(rel.clone()))
            .collect();
        let content: Vec<Problem> = self
            .files
            .par_iter()
            .filter_map(|(rel, entry)| match present.get(rel) {
                None => Some(Problem::Missing(rel.clone())),
                Some(path) => match hash_file(path) {
                    Ok((digest, size)) if digest == entry.blake3 && size == entry.size => None,
                    Ok(_) => Some(Problem::Content(rel.clone())),
                    Err(_) => Some(Problem::Missing(rel.clone())),
                },
            })
            .collect();
        problems.extend(content);
        problems
    }
}

/// Hash every file under `dir` (except a manifest) into manifest entries.
pub fn scan(dir: &Path) -> std::io::Result<BTreeMap<String, FileEntry>> {
    let files: Vec<(String, PathBuf)> = list_files(dir)?.into_iter().collect();
    files
        .into_par_iter()
        .map(|(rel, path)| {
            let (blake3, size) = hash_file(&path)?;
            let md = std::fs::metadata(&path)?;
            Ok((
                rel,
                FileEntry {
                    blake3,
                    size,
                    mtime_ns: mtime_ns(&md),
                },
            ))
        })
        .collect()
}

/// Relative path (`/`-separated) → absolute path of every regular file under `dir`, skipping
/// the manifest and its temp file. Anything else than regular files and directories (a
/// symlink, a FIFO, a socket, a device) is an error naming it: a link could carry a file from
/// outside the project into the store (and on to a remote), and opening a FIFO or a device
/// would block or never end. Entries are examined with `symlink_metadata`, which opens nothing.
pub fn list_files(dir: &Path) -> std::io::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if prefix.is_empty()
                && (name == MANIFEST_FILE || name == format!(".{MANIFEST_FILE}.tmp"))
            {
                continue;
            }
            let path = entry.path();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let kind = std::fs::symlink_metadata(&path)?.file_type();
            if kind.is_dir() {
                stack.push((path, rel));
            } else if kind.is_file() {
                out.insert(rel, path);
            } else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    NotAFile {
                        rel,
                        what: describe(&kind),
                    },
                ));
            }
        }
    }
    Ok(out)
}

/// An output entry that is neither a regular file nor a directory.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{rel}` is {what}: only regular files and directories can be a node's output \
     (copy the file's content instead of linking to it)"
)]
pub struct NotAFile {
    pub rel: String,
    pub what: &'static str,
}

fn describe(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_block_device() || kind.is_char_device() {
            return "a device";
        }
    }
    if kind.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Open `path` for reading only if it is a regular file, without following a final symlink
/// and without blocking on a FIFO: what was checked by `list_files` may have been swapped since.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            NotAFile {
                rel: path.display().to_string(),
                what: describe(&kind),
            },
        ));
    }
    Ok(file)
}

fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut h = blake3::Hasher::new();
    let file = open_regular(path)?;
    h.update_reader(file)?;
    let size = h.count();
    Ok((h.finalize().to_hex().to_string(), size))
}

/// The modification time of `path` as the manifest records it.
pub fn file_mtime_ns(path: &Path) -> std::io::Result<i128> {
    Ok(mtime_ns(&std::fs::metadata(path)?))
}

fn mtime_ns(md: &std::fs::Metadata) -> i128 {
    md.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Make every file under `dir` read-only, so an accidental edit of a cached artifact fails
/// loudly instead of silently poisoning downstream nodes.
pub fn make_read_only(dir: &Path) -> std::io::Result<()> {
    for path in list_files(dir)?.values() {
        let md = std::fs::symlink_metadata(path)?;
        let mut perms = md.permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(path, perms)?;
    }
    Ok(())
}

/// fsync every file under `dir`, then `dir` itself.
pub fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for path in list_files(dir)?.values() {
        std::fs::File::open(path)?.sync_all()?;
    }
    std::fs::File::open(dir)?.sync_all()
}
