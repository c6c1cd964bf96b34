//! The Hugging Face hub source: `hf://owner/name[/file]` URIs, the standard HF cache layout,
//! offline resolution from that cache without any network, online download through `hf-hub`
//! (from `HF_ENDPOINT`, with the user's token: see [`env`]), revisions resolved to commits
//! ([`pin`], asking the hub in `ask`), files checked against the hub's tags ([`tag`]), and the
//! pinned sizes and sha256 digests of gretel's parquet files.

// Hub errors carry the repo, revision, file and cache path the user needs to act on; they
// are rare, so their size does not matter.
#![allow(clippy::result_large_err)]

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

mod ask;
pub mod env;
mod error;
pub mod pin;
pub mod tag;

pub use env::HubEnv;
pub use error::{HubError, Refusal};
pub use pin::{pin, Origin, Pin, Wanted};

pub const GRETEL_REPO: &str = "gretelai/synthetic_text_to_sql";
pub const GRETEL_REVISION: &str = "740ab236e64503fba51be1101df7a1be83bf455d";

/// A file with known size and digest at the pinned revision.
#[derive(Debug, Clone, Copy)]
pub struct KnownFile {
    pub split: &'static str,
    pub name: &'static str,
    pub size: u64,
    pub sha256: &'static str,
}

/// gretel's files at [`GRETEL_REVISION`] (data_and_metrics.md §1.2).
pub const GRETEL_FILES: [KnownFile; 2] = [
    KnownFile {
        split: "train",
        name: "synthetic_text_to_sql_train.snappy.parquet",
        size: 32_363_736,
        sha256: "2bee9ac07cf5057d36b5ea30fb47d948697e882f42bd1cc661185396287c0180",
    },
    KnownFile {
        split: "test",
        name: "synthetic_text_to_sql_test.snappy.parquet",
        size: 1_901_018,
        sha256: "f2056edcd897db59c89d12bde149a36d4e242ac0d2c6d4d42b1f2bc764318993",
    },
];

/// A parsed `hf://owner/name[/file]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubUri {
    pub repo: String,
    pub file: Option<String>,
}

pub fn parse_uri(s: &str) -> Result<HubUri, HubError> {
    let rest = s
        .strip_prefix("hf://")
        .ok_or_else(|| HubError::BadUri(s.to_string()))?;
    let rest = rest.strip_prefix("datasets/").unwrap_or(rest);
    let parts: Vec<&str> = rest.splitn(3, '/').collect();
    if parts.len() < 2 || parts[0].is_empty() || parts[1].is_empty() {
        return Err(HubError::BadUri(s.to_string()));
    }
    Ok(HubUri {
        repo: format!("{}/{}", parts[0], parts[1]),
        file: parts
            .get(2)
            .filter(|f| !f.is_empty())
            .map(|f| f.to_string()),
    })
}

/// Dataset or model repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    Dataset,
    Model,
}

impl Kind {
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Kind::Dataset => "datasets",
            Kind::Model => "models",
        }
    }
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Dataset => "dataset",
            Kind::Model => "model",
        }
    }
}

/// Look a file up in the standard cache layout: `<cache>/<kind>s--owner--name/snapshots/<rev>/<file>`,
/// where `<rev>` is the revision itself or the commit `refs/<rev>` points to.
pub fn resolve_cached(
    cache: &Path,
    kind: Kind,
    repo: &str,
    revision: &str,
    file: &str,
) -> Option<PathBuf> {
    let dir = cache.join(format!("{}--{}", kind.prefix(), repo.replace('/', "--")));
    let direct = dir.join("snapshots").join(revision).join(file);
    if direct.is_file() {
        return Some(direct);
    }
    let commit = std::fs::read_to_string(dir.join("refs").join(revision)).ok()?;
    let via_ref = dir.join("snapshots").join(commit.trim()).join(file);
    via_ref.is_file().then_some(via_ref)
}

/// Get a hub file at `revision`, resolved to a commit once per process ([`pin()`]), fetched by
/// that commit and checked against the hub's tag.
pub fn fetch(
    kind: Kind,
    repo: &str,
    revision: &str,
    file: &str,
    offline: bool,
) -> Result<PathBuf, HubError> {
    let p = pin(
        kind,
        repo,
        revision,
        offline,
        &Wanted::Files(vec![file.into()]),
    )?;
    p.used(&Wanted::Files(vec![file.into()]))?;
    p.fetch(&HubEnv::from_process(), file)
}

/// Get a hub file by revision or commit as `hf-hub` does, without resolving or checking it:
/// the cache when present, else (online only) a download into the cache. [`Pin::fetch`] calls
/// it with the commit.
pub fn fetch_in(
    env: &HubEnv,
    kind: Kind,
    repo: &str,
    revision: &str,
    file: &str,
    offline: bool,
) -> Result<PathBuf, HubError> {
    fetch_in_with(env, kind, repo, revision, file, offline, &|_, _, _| {})
}

/// What a download reports as it goes: bytes done, bytes in all, the file's name.
pub type OnBytes<'a> = &'a dyn Fn(u64, u64, &str);

/// `hf-hub`'s progress calls turned into [`OnBytes`] calls, at most one per MiB.
struct Reporter<'a> {
    on: OnBytes<'a>,
    file: String,
    done: u64,
    total: u64,
    shown: u64,
}

impl hf_hub::api::Progress for Reporter<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        (self.total, self.done, self.file) = (size as u64, 0, filename.to_string());
        (self.on)(0, self.total, &self.file);
    }
    fn update(&mut self, size: usize) {
        self.done += size as u64;
        if self.done >= self.shown + (1 << 20) {
            self.shown = self.done;
            (self.on)(self.done, self.total, &self.file);
        }
    }
    fn finish(&mut self) {
        (self.on)(self.done, self.total, &self.file);
    }
}

/// [`fetch_in`], reporting a download's progress to `on`.
pub fn fetch_in_with(
    env: &HubEnv,
    kind: Kind,
    repo: &str,
    revision: &str,
    file: &str,
    offline: bool,
    on: OnBytes<'_>,
) -> Result<PathBuf, HubError> {
    let cache = env.cache.clone();
    if let Some(p) = resolve_cached(&cache, kind, repo, revision, file) {
        return Ok(p);
    }
    if offline || env.offline {
        let why = if env.offline {
            "HF_HUB_OFFLINE is set"
        } else {
            "param offline: true"
        };
        return Err(HubError::NotCached {
            repo: repo.to_string(),
            revision: revision.to_string(),
            file: file.to_string(),
            cache: cache.display().to_string(),
            kind: kind.name().to_string(),
            why: why.to_string(),
        });
    }
    let dl_err = |msg: String| HubError::Download {
        repo: repo.to_string(),
        revision: revision.to_string(),
        file: file.to_string(),
        kind: kind.name().to_string(),
        endpoint: env.endpoint.clone(),
        msg,
    };
    // `from_cache` alone would talk to huggingface.co whatever HF_ENDPOINT says.
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(cache.clone()))
        .with_endpoint(env.endpoint.clone())
        .with_token(env.token.as_ref().map(|t| t.value.clone()))
        .with_progress(false)
        .build()
        .map_err(|e| dl_err(e.to_string()))?;
    let rtype = match kind {
        Kind::Dataset => hf_hub::RepoType::Dataset,
        Kind::Model => hf_hub::RepoType::Model,
    };
    let r = api.repo(hf_hub::Repo::with_revision(
        repo.to_string(),
        rtype,
        revision.to_string(),
    ));
    let reporter = Reporter {
        on,
        file: file.to_string(),
        done: 0,
        total: 0,
        shown: 0,
    };
    // Not `get`: the cache was looked at above, by our own rules.
    r.download_with_progress(file, reporter)
        .map_err(|e| match error::http_status(&e) {
            Some((status, hub_code, hub_message)) => HubError::Refused(Box::new(Refusal {
                kind,
                repo: repo.to_string(),
                revision: revision.to_string(),
                file: file.to_string(),
                endpoint: env.endpoint.clone(),
                status,
                hub_code,
                hub_message,
                token: env.token.as_ref().map(|t| t.source.clone()),
                token_path: env.token_path.display().to_string(),
            })),
            None => dl_err(e.to_string()),
        })
}

/// A hub model's local directory (its snapshot in the cache at the commit `revision` resolves
/// to), with what t2s reads fetched into it and checked: `config.json`, `tokenizer.json`, the
/// weights (`model.safetensors`, or the shards `model.safetensors.index.json` names) and,
/// where the repo has them, the tokenizer and generation configs ([`pin::MODEL_EXTRAS`]).
pub fn fetch_model(repo: &str, revision: &str, offline: bool) -> Result<PathBuf, HubError> {
    let p = pin(Kind::Model, repo, revision, offline, &Wanted::Model)?;
    fetch_pinned_model(&HubEnv::from_process(), &p, &|_, _, _| {})
}

/// [`fetch_model`] with the hub settings given (resolved afresh, without the process's memo).
pub fn fetch_model_in(
    env: &HubEnv,
    repo: &str,
    revision: &str,
    offline: bool,
) -> Result<PathBuf, HubError> {
    let p = pin::resolve(env, Kind::Model, repo, revision, offline, &Wanted::Model)?;
    fetch_pinned_model(env, &p, &|_, _, _| {})
}

/// The files of [`fetch_model`] at a pin's commit, downloads reported to `on`; their directory.
pub fn fetch_pinned_model(env: &HubEnv, p: &Pin, on: OnBytes<'_>) -> Result<PathBuf, HubError> {
    let used = p.used(&Wanted::Model)?;
    let config = p.fetch_with(env, "config.json", on)?;
    for file in &used {
        if file.ends_with(".safetensors") {
            continue; // shards: those the index names, below
        }
        let path = p.fetch_with(env, file, on)?;
        if file == "model.safetensors.index.json" {
            for shard in shards_of(&path)? {
                if !p.files.contains_key(&shard) {
                    // The index names a shard the listing lacks: the error that names it.
                    p.used(&Wanted::Files(vec![shard.clone()]))?;
                }
                p.fetch_with(env, &shard, on)?;
            }
        }
    }
    if used.iter().any(|f| f == "model.safetensors") {
        p.fetch_with(env, "model.safetensors", on)?;
    }
    Ok(config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| env.cache.clone()))
}

/// The shard files a `model.safetensors.index.json` maps tensors to, each once, sorted.
fn shards_of(index: &Path) -> Result<Vec<String>, HubError> {
    let bad = |msg: String| {
        HubError::Io(
            index.display().to_string(),
            std::io::Error::new(std::io::ErrorKind::InvalidData, msg),
        )
    };
    let text =
        std::fs::read_to_string(index).map_err(|e| HubError::Io(index.display().to_string(), e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut shards = map
        .values()
        .map(|v| {
            v.as_str()
                .filter(|s| !s.is_empty() && !s.contains("..") && !s.starts_with('/'))
                .map(String::from)
                .ok_or_else(|| bad(format!("`weight_map` names a bad shard: {v}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, HubError> {
    digest_file::<Sha256>(path, |_| Vec::new())
}

/// Hex digest `D` of a file's bytes after `header(file length)` (git hashes a blob as
/// `blob <len>\0` + its bytes), read in 1 MiB pieces.
pub fn digest_file<D: Digest>(
    path: &Path,
    header: impl FnOnce(u64) -> Vec<u8>,
) -> Result<String, HubError> {
    let io = |e| HubError::Io(path.display().to_string(), e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut h = D::new();
    h.update(header(len));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Check a fetched file against its pinned size and digest. Returns its sha256.
pub fn verify(path: &Path, known: &KnownFile, revision: &str) -> Result<String, HubError> {
    let size = std::fs::metadata(path)
        .map_err(|e| HubError::Io(path.display().to_string(), e))?
        .len();
    let err = |what, expected: String, actual: String| HubError::Checksum {
        path: path.display().to_string(),
        file: known.name.to_string(),
        revision: revision.to_string(),
        what,
        expected,
        actual,
    };
    if size != known.size {
        return Err(err("size", known.size.to_string(), size.to_string()));
    }
    let sha = sha256_file(path)?;
    if sha != known.sha256 {
        return Err(err("sha256", known.sha256.to_string(), sha));
    }
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings that reach no network: this cache, an endpoint nothing listens on.
    fn in_cache(cache: &Path) -> HubEnv {
        HubEnv {
            endpoint: "http://127.0.0.1:9".into(),
            cache: cache.to_path_buf(),
            token: None,
            token_path: cache.join("no-token"),
            offline: false,
        }
    }

    /// A model repo in the cache layout, `refs/main` → a commit whose snapshot holds `files`.
    fn cached_repo(cache: &Path, repo: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = cache.join(format!("models--{}", repo.replace('/', "--")));
        let commit = "0123456789abcdef0123456789abcdef01234567";
        std::fs::create_dir_all(dir.join("refs")).unwrap();
        std::fs::write(dir.join("refs/main"), commit).unwrap();
        let snap = dir.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        for (name, text) in files {
            std::fs::write(snap.join(name), text).unwrap();
        }
        snap
    }

    #[test]
    fn a_cached_model_resolves_offline_single_file_or_sharded() {
        let cache = tempfile::tempdir().unwrap();
        let single = cached_repo(
            cache.path(),
            "acme/one",
            &[
                ("config.json", "{}"),
                ("tokenizer.json", "{}"),
                ("model.safetensors", "w"),
            ],
        );
        let got = fetch_model_in(&in_cache(cache.path()), "acme/one", "main", true).unwrap();
        assert_eq!(got, single);
        // By commit as well as by ref.
        let commit = single.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(
            fetch_model_in(&in_cache(cache.path()), "acme/one", &commit, true).unwrap(),
            single
        );

        let index = r#"{"metadata": {"total_size": 2}, "weight_map": {
            "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",
            "c": "model-00001-of-00002.safetensors"}}"#;
        let sharded = cached_repo(
            cache.path(),
            "acme/two",
            &[
                ("config.json", "{}"),
                ("tokenizer.json", "{}"),
                ("model.safetensors.index.json", index),
                ("model-00001-of-00002.safetensors", "w1"),
                ("model-00002-of-00002.safetensors", "w2"),
            ],
        );
        assert_eq!(
            fetch_model_in(&in_cache(cache.path()), "acme/two", "main", true).unwrap(),
            sharded
        );
        // A shard missing from the cache is named; so is a revision the cache lacks.
        std::fs::remove_file(sharded.join("model-00002-of-00002.safetensors")).unwrap();
        let e = fetch_model_in(&in_cache(cache.path()), "acme/two", "main", true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("model-00002-of-00002.safetensors"), "{e}");
        let e = fetch_model_in(&in_cache(cache.path()), "acme/one", "v2", true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("revision v2") && e.contains("config.json"),
            "{e}"
        );
        // No weights at all: the single file's name is the one shown.
        cached_repo(
            cache.path(),
            "acme/none",
            &[("config.json", "{}"), ("tokenizer.json", "{}")],
        );
        let e = fetch_model_in(&in_cache(cache.path()), "acme/none", "main", true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`model.safetensors`"), "{e}");
    }

    #[test]
    fn a_bad_shard_index_is_an_error_that_names_it() {
        let cache = tempfile::tempdir().unwrap();
        for (repo, index) in [
            ("acme/a", "not json"),
            ("acme/b", r#"{"metadata": {}}"#),
            ("acme/c", r#"{"weight_map": {"x": "../../etc/passwd"}}"#),
        ] {
            cached_repo(
                cache.path(),
                repo,
                &[
                    ("config.json", "{}"),
                    ("tokenizer.json", "{}"),
                    ("model.safetensors.index.json", index),
                ],
            );
            let e = fetch_model_in(&in_cache(cache.path()), repo, "main", true)
                .unwrap_err()
                .to_string();
            assert!(e.contains("model.safetensors.index.json"), "{repo}: {e}");
        }
    }

    #[test]
    fn uris_parse() {
        let u = parse_uri("hf://gretelai/synthetic_text_to_sql").unwrap();
        assert_eq!(u.repo, GRETEL_REPO);
        assert_eq!(u.file, None);
        let u = parse_uri("hf://a/b/dir/x.parquet").unwrap();
        assert_eq!(
            (u.repo.as_str(), u.file.as_deref()),
            ("a/b", Some("dir/x.parquet"))
        );
        assert!(parse_uri("hf://onlyowner").is_err());
        assert!(parse_uri("gretelai/x").is_err());
    }
}
