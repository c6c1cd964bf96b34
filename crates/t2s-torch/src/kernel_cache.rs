//! The fused kernels' compiled image, kept on disk so that a worker start on a GPU loads it
//! instead of compiling: NVRTC takes about a second for the kernels, and every node of a sweep
//! starts a worker. PyTorch keeps its fusers' kernels in `~/.cache/torch/kernels` and the
//! driver its PTX builds in `~/.nv/ComputeCache` for the same reason.
//!
//! An entry is addressed by the blake3 of everything that decides the image: the kernel source
//! and the compile code around it (`csrc/fused_kernels.cu`, `csrc/jit.cpp`, built into the
//! binary), the GPU's compute capability and NVRTC's version. Its file starts with the blake3
//! of the image, so a damaged file reads as a miss, never as kernels. Files are written to a
//! temporary name and renamed into place, so concurrent workers and kills leave whole entries
//! or none. An image is stored only once the driver has loaded it, and an entry the driver
//! rejects is removed and compiled afresh. The cache only saves time: when it cannot be read
//! or written the kernels are compiled as before.
//!
//! It stays small on its own: each store keeps the [`KEEP_ENTRIES`] entries used last (a read
//! marks an entry used) and removes the temporary files that a killed worker left behind, once
//! they are older than [`STALE_TEMPORARY`] (a younger one may be a concurrent worker's write).
//! Files that are neither entries nor temporaries are never touched.
//!
//! Where: `$T2S_KERNEL_CACHE` (a directory, or `off`), else `kernels/` in the per-user t2s
//! cache (`$XDG_CACHE_HOME/t2s`, else `~/.cache/t2s`).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::Result;

/// The environment variable naming the kernel cache's directory (`off` or `0`: no cache).
pub const KERNEL_CACHE_ENV: &str = "T2S_KERNEL_CACHE";

/// What decides the compiled image besides the GPU and NVRTC: the kernels and how they are
/// compiled (jit.cpp holds the NVRTC options and the architecture choice).
const SOURCES: [&[u8]; 2] = [
    include_bytes!("../csrc/fused_kernels.cu"),
    include_bytes!("../csrc/jit.cpp"),
];

/// The length of the digest that heads an entry's file.
const DIGEST_LEN: usize = blake3::OUT_LEN;

/// How many entries a store keeps (those used last): one per kernel version, GPU kind and
/// NVRTC version in use, ~230 KB each.
pub const KEEP_ENTRIES: usize = 8;

/// The age past which a temporary file is a killed worker's leftover, not a write in progress
/// (a write takes milliseconds).
pub const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// The prefix of the temporary files entries are written to (`tempfile`'s default).
const TEMPORARY_PREFIX: &str = ".tmp";

/// A directory of compiled kernel images, one file per key.
#[derive(Debug, Clone)]
pub struct KernelCache {
    dir: PathBuf,
}

/// Where an image that was loaded came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Read from the cache.
    Cached,
    /// Compiled by this process (and stored, where the cache could take it).
    Compiled,
}

impl KernelCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache the environment names: [`KERNEL_CACHE_ENV`], else the per-user default;
    /// `None` when it says `off` or no home directory is known.
    pub fn from_env() -> Option<Self> {
        Self::from_setting(
            std::env::var_os(KERNEL_CACHE_ENV),
            t2s::cache::user_cache_dir(),
        )
    }

    /// The cache for a [`KERNEL_CACHE_ENV`] value and the per-user t2s cache directory.
    fn from_setting(value: Option<OsString>, user_dir: Option<PathBuf>) -> Option<Self> {
        match value.filter(|v| !v.is_empty()) {
            Some(v) if v == "off" || v == "0" => None,
            Some(v) => Some(Self::new(v)),
            None => Some(Self::new(user_dir?.join("kernels"))),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of the image for compute capability `capability` compiled by NVRTC `nvrtc`.
    pub fn key(capability: (i32, i32), nvrtc: (i32, i32)) -> String {
        Self::key_of(&SOURCES, capability, nvrtc)
    }

    fn key_of(sources: &[&[u8]], capability: (i32, i32), nvrtc: (i32, i32)) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"t2s fused kernels v1\0");
        for s in sources {
            // Length-prefixed, so moving bytes between the sources changes the key.
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s);
        }
        for v in [capability.0, capability.1, nvrtc.0, nvrtc.1] {
            h.update(&v.to_le_bytes());
        }
        h.finalize().to_hex().to_string()
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.bin"))
    }

    /// The image stored under `key`, if there is one and it is whole; the entry is marked used
    /// (where the cache is writable), so stores keep it.
    pub fn read(&self, key: &str) -> Option<Vec<u8>> {
        let path = self.path(key);
        let bytes = std::fs::read(&path).ok()?;
        if bytes.len() < DIGEST_LEN {
            return None;
        }
        let (digest, image) = bytes.split_at(DIGEST_LEN);
        if blake3::hash(image).as_bytes() != digest {
            return None;
        }
        let _ = set_modified(&path, SystemTime::now());
        Some(image.to_vec())
    }

    /// Store `image` under `key`: written beside the entry, then renamed over it. Then the
    /// directory is swept, best effort (`KernelCache::sweep`).
    pub fn write(&self, key: &str, image: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMPORARY_PREFIX)
            .tempfile_in(&self.dir)?;
        tmp.write_all(blake3::hash(image).as_bytes())?;
        tmp.write_all(image)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.path(key)).map_err(|e| e.error)?;
        // Only housekeeping: the entry is in place whatever the sweep meets.
        let _ = self.sweep(key, SystemTime::now());
        Ok(())
    }

    /// Remove the entries past the [`KEEP_ENTRIES`] used last (never `keep`) and the temporary
    /// files older than [`STALE_TEMPORARY`] at `now`. Other files are left alone.
    fn sweep(&self, keep: &str, now: SystemTime) -> std::io::Result<()> {
        let keep = self.path(keep);
        let mut entries = Vec::new();
        for file in std::fs::read_dir(&self.dir)? {
            let file = file?;
            let name = file.file_name();
            let Some(name) = name.to_str() else { continue };
            // A file another process removed in between has no metadata: skip it.
            let Ok(modified) = file.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            if name.starts_with(TEMPORARY_PREFIX) {
                let age = now.duration_since(modified).unwrap_or_default();
                if age > STALE_TEMPORARY {
                    let _ = std::fs::remove_file(file.path());
                }
            } else if is_entry_name(name) && file.path() != keep {
                entries.push((modified, file.path()));
            }
        }
        // Newest first; the kept entry counts as one of the KEEP_ENTRIES.
        entries.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        for (_, path) in entries.into_iter().skip(KEEP_ENTRIES - 1) {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    /// Remove the entry under `key` (one the driver rejected).
    pub fn evict(&self, key: &str) {
        let _ = std::fs::remove_file(self.path(key));
    }
}

/// Whether `name` is an entry's file name: a key (64 hex digits) and `.bin`.
fn is_entry_name(name: &str) -> bool {
    name.strip_suffix(".bin").is_some_and(|key| {
        key.len() == 2 * blake3::OUT_LEN && key.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Set a file's modification time (the mark of an entry's last use).
fn set_modified(path: &Path, time: SystemTime) -> std::io::Result<()> {
    std::fs::File::options()
        .write(true)
        .open(path)?
        .set_modified(time)
}

/// Load the kernels: the image cached under `key` when there is one the driver takes, else the
/// one `compile` makes, stored for the next worker once `load` has taken it. `warn` hears what
/// the cache could not do (the kernels load all the same).
pub fn load_kernels(
    cache: Option<&KernelCache>,
    key: &str,
    compile: impl FnOnce() -> Result<Vec<u8>>,
    load: impl Fn(&[u8]) -> Result<()>,
    warn: impl Fn(String),
) -> Result<Origin> {
    if let Some(cache) = cache {
        if let Some(image) = cache.read(key) {
            match load(&image) {
                Ok(()) => return Ok(Origin::Cached),
                Err(e) => {
                    cache.evict(key);
                    warn(format!(
                        "the cached fused kernels in {} did not load ({e}); compiling them again",
                        cache.dir().display()
                    ));
                }
            }
        }
    }
    let image = compile()?;
    load(&image)?;
    if let Some(cache) = cache {
        if let Err(e) = cache.write(key, &image) {
            warn(format!(
                "could not keep the compiled fused kernels in {} ({e}; {KERNEL_CACHE_ENV}=off \
                 stops trying): the next worker compiles them again",
                cache.dir().display()
            ));
        }
    }
    Ok(Origin::Compiled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ModelError;
    use std::cell::{Cell, RefCell};

    /// A loader's error as the model layer reports it.
    fn load_error(e: &str) -> ModelError {
        ModelError::Input(format!("fused kernels load: {e}"))
    }

    fn image(n: u8) -> Vec<u8> {
        (0..200).map(|i| i as u8 ^ n).collect()
    }

    #[test]
    fn the_setting_names_the_directory_or_turns_the_cache_off() {
        let user = Some(PathBuf::from("/home/u/.cache/t2s"));
        let dir = |v: Option<&str>, user: Option<PathBuf>| {
            KernelCache::from_setting(v.map(OsString::from), user).map(|c| c.dir)
        };
        assert_eq!(
            dir(None, user.clone()),
            Some(PathBuf::from("/home/u/.cache/t2s/kernels"))
        );
        assert_eq!(
            dir(Some(""), user.clone()),
            Some(PathBuf::from("/home/u/.cache/t2s/kernels"))
        );
        assert_eq!(
            dir(Some("/scratch/k"), user.clone()),
            Some(PathBuf::from("/scratch/k"))
        );
        assert_eq!(dir(Some("off"), user.clone()), None);
        assert_eq!(dir(Some("0"), user), None);
        assert_eq!(dir(None, None), None);
    }

    #[test]
    fn the_key_changes_with_every_input_that_decides_the_image() {
        let base = KernelCache::key_of(&[b"kernels", b"jit"], (9, 0), (13, 0));
        assert_eq!(
            base,
            KernelCache::key_of(&[b"kernels", b"jit"], (9, 0), (13, 0))
        );
        for other in [
            KernelCache::key_of(&[b"kernelz", b"jit"], (9, 0), (13, 0)),
            KernelCache::key_of(&[b"kernels", b"jot"], (9, 0), (13, 0)),
            KernelCache::key_of(&[b"kernel", b"sjit"], (9, 0), (13, 0)),
            KernelCache::key_of(&[b"kernels", b"jit"], (8, 0), (13, 0)),
            KernelCache::key_of(&[b"kernels", b"jit"], (9, 0), (12, 8)),
        ] {
            assert_ne!(base, other);
        }
        // The real key covers the sources built into this binary.
        assert_ne!(
            KernelCache::key((9, 0), (13, 0)),
            KernelCache::key_of(&[b"", b""], (9, 0), (13, 0))
        );
    }

    #[test]
    fn a_compiled_image_is_stored_once_loaded_and_read_back_by_the_next_worker() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KernelCache::new(dir.path().join("kernels"));
        let loaded = RefCell::new(Vec::new());
        let load = |img: &[u8]| {
            loaded.borrow_mut().push(img.to_vec());
            Ok(())
        };
        let first = load_kernels(Some(&cache), "k", || Ok(image(1)), load, |w| panic!("{w}"));
        assert_eq!(first.unwrap(), Origin::Compiled);
        let second = load_kernels(
            Some(&cache),
            "k",
            || panic!("compiled although cached"),
            load,
            |w| panic!("{w}"),
        );
        assert_eq!(second.unwrap(), Origin::Cached);
        assert_eq!(*loaded.borrow(), vec![image(1), image(1)]);
        // Only the entry is left: no temporary files.
        let names: Vec<_> = std::fs::read_dir(cache.dir()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_damaged_entry_reads_as_a_miss_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KernelCache::new(dir.path());
        cache.write("k", &image(1)).unwrap();
        let path = cache.path("k");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(cache.read("k"), None);
        std::fs::write(&path, &bytes[..10]).unwrap(); // shorter than a digest
        assert_eq!(cache.read("k"), None);

        let compiled = Cell::new(0);
        let origin = load_kernels(
            Some(&cache),
            "k",
            || {
                compiled.set(compiled.get() + 1);
                Ok(image(2))
            },
            |_| Ok(()),
            |w| panic!("{w}"),
        );
        assert_eq!(origin.unwrap(), Origin::Compiled);
        assert_eq!(compiled.get(), 1);
        assert_eq!(cache.read("k"), Some(image(2)));
    }

    #[test]
    fn an_entry_the_driver_rejects_is_evicted_and_compiled_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KernelCache::new(dir.path());
        cache.write("k", &image(1)).unwrap();
        let warnings = RefCell::new(Vec::new());
        let origin = load_kernels(
            Some(&cache),
            "k",
            || Ok(image(2)),
            |img: &[u8]| {
                if img == image(1).as_slice() {
                    Err(load_error("CUDA_ERROR_INVALID_IMAGE"))
                } else {
                    Ok(())
                }
            },
            |w| warnings.borrow_mut().push(w),
        );
        assert_eq!(origin.unwrap(), Origin::Compiled);
        assert_eq!(cache.read("k"), Some(image(2)));
        let warnings = warnings.borrow();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("CUDA_ERROR_INVALID_IMAGE"),
            "{warnings:?}"
        );
    }

    #[test]
    fn an_image_the_driver_rejects_is_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KernelCache::new(dir.path());
        let result = load_kernels(
            Some(&cache),
            "k",
            || Ok(image(1)),
            |_| Err(load_error("CUDA_ERROR_NO_BINARY_FOR_GPU")),
            |w| panic!("{w}"),
        );
        let err = result.unwrap_err().to_string();
        assert!(err.contains("CUDA_ERROR_NO_BINARY_FOR_GPU"), "{err}");
        assert_eq!(cache.read("k"), None);
    }

    #[test]
    fn a_cache_that_cannot_be_written_costs_a_warning_not_the_kernels() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the cache directory should be.
        let blocked = dir.path().join("not-a-dir");
        std::fs::write(&blocked, b"x").unwrap();
        let cache = KernelCache::new(&blocked);
        let warnings = RefCell::new(Vec::new());
        let origin = load_kernels(
            Some(&cache),
            "k",
            || Ok(image(1)),
            |_| Ok(()),
            |w| warnings.borrow_mut().push(w),
        );
        assert_eq!(origin.unwrap(), Origin::Compiled);
        let warnings = warnings.borrow();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("not-a-dir") && warnings[0].contains(KERNEL_CACHE_ENV),
            "{warnings:?}"
        );
        // And no cache at all compiles every time.
        let origin = load_kernels(None, "k", || Ok(image(1)), |_| Ok(()), |w| panic!("{w}"));
        assert_eq!(origin.unwrap(), Origin::Compiled);
    }

    /// A key as `KernelCache::key` makes them (64 hex digits).
    fn hex_key(n: u8) -> String {
        blake3::hash(&[n]).to_hex().to_string()
    }

    fn age(cache_dir: &Path, name: &str, by: Duration) {
        set_modified(&cache_dir.join(name), SystemTime::now() - by).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|f| f.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_store_keeps_the_entries_used_last_and_nothing_else_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KernelCache::new(dir.path());
        let entry = |n: u8| format!("{}.bin", hex_key(n));
        // A full cache, entry 0 used longest ago.
        for n in 0..KEEP_ENTRIES as u8 {
            cache.write(&hex_key(n), &image(n)).unwrap();
            let hours = (KEEP_ENTRIES - n as usize) as u64;
            age(dir.path(), &entry(n), Duration::from_secs(3600 * hours));
        }
        assert_eq!(names(dir.path()).len(), KEEP_ENTRIES);
        // Reading the oldest marks it used, so the stores below keep it.
        assert_eq!(cache.read(&hex_key(0)), Some(image(0)));
        // A file that is not the cache's own survives every sweep.
        std::fs::write(dir.path().join("README"), b"mine").unwrap();
        cache.write(&hex_key(100), &image(100)).unwrap();
        cache.write(&hex_key(101), &image(101)).unwrap();

        let kept = names(dir.path());
        assert_eq!(kept.len(), KEEP_ENTRIES + 1, "{kept:?}");
        assert!(kept.contains(&"README".to_string()));
        // Each store removed the entry used longest ago.
        for n in [1, 2] {
            assert!(!kept.contains(&entry(n)), "{n}: {kept:?}");
        }
        for n in [0, 100, 101].into_iter().chain(3..KEEP_ENTRIES as u8) {
            assert_eq!(cache.read(&hex_key(n)), Some(image(n)), "{n}");
        }
    }

    #[test]
    fn a_store_removes_a_killed_workers_temporary_but_not_a_write_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KernelCache::new(dir.path());
        std::fs::write(dir.path().join(".tmpKILLED"), b"half an image").unwrap();
        age(
            dir.path(),
            ".tmpKILLED",
            STALE_TEMPORARY + Duration::from_secs(60),
        );
        std::fs::write(dir.path().join(".tmpWRITING"), b"half an image").unwrap();
        cache.write(&hex_key(1), &image(1)).unwrap();
        assert_eq!(
            names(dir.path()),
            vec![".tmpWRITING".to_string(), format!("{}.bin", hex_key(1))]
        );
    }
}
