//! A hub revision resolved to a commit, with the hub's tag of every file at that commit (the
//! git blob id, or the sha256 of an LFS file: the names the HF cache gives its blobs). Cache
//! keys of nodes that read hub files hold the commit and the tags of the files they use, never
//! the revision string: a branch that moves gives a new key, and a branch name and its commit
//! give the same one.
//!
//! Online, the hub's repo-info API is asked once per repo and revision and process; offline
//! (`HF_HUB_OFFLINE`, or the stage's `offline: true`) or when the hub cannot be reached, the
//! cache's `refs/<revision>` answers, which another tool may have moved and which may be stale
//! (the pin says so). A full commit hash whose files are all in the cache needs no question.
//! Files are then fetched by the commit, never by the branch, and checked against their tags
//! ([`check_tag`]), so one key never names two contents.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::tag::check_tag;
use super::{HubEnv, HubError, Kind};

/// Where a pin's commit came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Origin {
    /// The hub answered.
    Hub,
    /// The revision is a full commit hash (or names a snapshot directory itself), answered by
    /// the cache (online: all its used files are there; offline: for the reason given).
    Commit { why: String },
    /// The cache's `refs/<revision>`, for the reason given: it may be stale.
    CacheRef { why: String },
}

/// One repo at one revision, resolved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pin {
    pub kind: Kind,
    pub repo: String,
    pub revision: String,
    pub commit: String,
    /// File path in the repo → tag (online: every file the hub lists; offline: the snapshot's).
    pub files: BTreeMap<String, String>,
    pub origin: Origin,
    /// The hub and cache it was resolved against, for messages.
    pub endpoint: String,
    pub cache: PathBuf,
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{} = {}", self.repo, self.revision, self.commit)?;
        match &self.origin {
            Origin::Hub => write!(f, " (asked the hub)"),
            Origin::Commit { .. } => write!(f, " (a commit, from the cache)"),
            Origin::CacheRef { why } => write!(
                f,
                " (the cache's refs/{}, {why}: it may be stale)",
                self.revision
            ),
        }
    }
}

/// Which files of a repo a node uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// These, each required.
    Files(Vec<String>),
    /// A model: `config.json`, `tokenizer.json`, the weights (`model.safetensors`, or the
    /// index and the shards listed beside it) and the optional configs t2s reads.
    Model,
}

/// Optional files of a model repo, used when present (tokenizer and generation defaults).
pub const MODEL_EXTRAS: [&str; 3] = [
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
];

const INDEX: &str = "model.safetensors.index.json";

impl Wanted {
    /// The used files among `listed`, sorted; `Err(name)`: a required file that is missing.
    pub fn pick(&self, listed: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut need = |name: &str| {
            if listed.contains_key(name) {
                out.push(name.to_string());
                Ok(())
            } else {
                Err(name.to_string())
            }
        };
        match self {
            Wanted::Files(names) => names.iter().try_for_each(|n| need(n))?,
            Wanted::Model => {
                need("config.json")?;
                need("tokenizer.json")?;
                if listed.contains_key(INDEX) {
                    need(INDEX)?;
                    out.extend(
                        listed
                            .keys()
                            .filter(|n| n.ends_with(".safetensors") && !n.contains('/'))
                            .cloned(),
                    );
                } else {
                    need("model.safetensors")?;
                }
                out.extend(
                    MODEL_EXTRAS
                        .iter()
                        .filter(|n| listed.contains_key(**n))
                        .map(|n| n.to_string()),
                );
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl Pin {
    /// The cache-key facts of a node using `wanted` of this pin: the repo, the commit and each
    /// used file's tag. `prefix` keeps two pins of one node apart (e.g. `model_`).
    pub fn key_facts(
        &self,
        wanted: &Wanted,
        prefix: &str,
    ) -> Result<BTreeMap<String, String>, HubError> {
        let used = self.used(wanted)?;
        let mut f = BTreeMap::new();
        f.insert(
            format!("{prefix}hub_repo"),
            format!("{}:{}", self.kind.name(), self.repo),
        );
        f.insert(format!("{prefix}hub_commit"), self.commit.clone());
        for name in used {
            let tag = self.files[&name].clone();
            f.insert(format!("{prefix}hub_file {name}"), tag);
        }
        Ok(f)
    }

    /// The used files, or the error that names the first missing one.
    pub fn used(&self, wanted: &Wanted) -> Result<Vec<String>, HubError> {
        wanted.pick(&self.files).map_err(|file| match &self.origin {
            Origin::Hub => HubError::NotInRepo {
                repo: self.repo.clone(),
                revision: self.revision.clone(),
                commit: self.commit.clone(),
                file,
                tree: format!("{}/tree/{}", self.page(), self.commit),
            },
            Origin::Commit { why } | Origin::CacheRef { why } => HubError::NotCached {
                repo: self.repo.clone(),
                revision: self.revision.clone(),
                file,
                cache: self.cache.display().to_string(),
                kind: self.kind.name().to_string(),
                why: why.clone(),
            },
        })
    }

    /// The repo's page on the hub it was resolved against.
    pub fn page(&self) -> String {
        match self.kind {
            Kind::Model => format!("{}/{}", self.endpoint, self.repo),
            Kind::Dataset => format!("{}/datasets/{}", self.endpoint, self.repo),
        }
    }

    /// Fetch a used file by the commit (from the cache, else downloaded) and check it against
    /// its tag.
    pub fn fetch(&self, env: &HubEnv, file: &str) -> Result<PathBuf, HubError> {
        self.fetch_with(env, file, &|_, _, _| {})
    }

    /// [`Pin::fetch`], reporting a download's progress to `on`.
    pub fn fetch_with(
        &self,
        env: &HubEnv,
        file: &str,
        on: super::OnBytes<'_>,
    ) -> Result<PathBuf, HubError> {
        let offline = !matches!(self.origin, Origin::Hub);
        let path =
            super::fetch_in_with(env, self.kind, &self.repo, &self.commit, file, offline, on)
                .map_err(|e| e.at_revision(&self.revision))?;
        if let Some(tag) = self.files.get(file) {
            check_tag(&path, file, tag, &self.commit)?;
        }
        // A revision that would climb out of refs/ is the user's typo, not a ref to keep.
        let plain = !self.revision.split('/').any(|c| c.is_empty() || c == "..");
        if self.origin == Origin::Hub && self.revision != self.commit && plain {
            self.write_ref()?;
        }
        Ok(path)
    }

    /// Point the cache's `refs/<revision>` at the commit the hub named, as `hf download` does,
    /// so that offline runs find the branch (atomically: a reader never sees half a hash).
    fn write_ref(&self) -> Result<(), HubError> {
        let refs = repo_dir(&self.cache, self.kind, &self.repo).join("refs");
        let target = refs.join(&self.revision);
        if std::fs::read_to_string(&target).is_ok_and(|c| c.trim() == self.commit) {
            return Ok(());
        }
        let io = |e| HubError::Io(target.display().to_string(), e);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = target.with_extension(format!("t2s-{}.tmp", std::process::id()));
        std::fs::write(&tmp, &self.commit).map_err(io)?;
        std::fs::rename(&tmp, &target).map_err(io)
    }
}

pub(super) fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

fn repo_dir(cache: &Path, kind: Kind, repo: &str) -> PathBuf {
    cache.join(format!("{}--{}", kind.prefix(), repo.replace('/', "--")))
}

/// The files of a cached snapshot and their tags: a blob link's target name (the tag the hub
/// gave when it was downloaded), else `blake3:<digest>` of a plain file (a cache laid out by
/// hand or by a tool that copies).
fn snapshot_files(snap: &Path) -> Result<BTreeMap<String, String>, HubError> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let dir = snap.join(&rel);
        let io = |e| HubError::Io(dir.display().to_string(), e);
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let rel = rel.join(entry.file_name());
            let path = entry.path();
            if path.is_dir() {
                todo.push(rel);
                continue;
            }
            if !path.is_file() {
                continue; // a dangling link: its blob is gone, as if not cached
            }
            let name = rel.to_string_lossy().replace('\\', "/");
            let tag = match std::fs::read_link(&path) {
                Ok(target)
                    if target.parent().and_then(Path::file_name) == Some("blobs".as_ref()) =>
                {
                    target
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default()
                }
                _ => {
                    let d = crate::cache::file_digest::digest_file(&path).map_err(|e| {
                        HubError::Io(path.display().to_string(), std::io::Error::other(e))
                    })?;
                    format!("blake3:{d}")
                }
            };
            out.insert(name, tag);
        }
    }
    Ok(out)
}

/// Whether `revision` names its files for good: a commit, or a snapshot directory named by the
/// revision itself (a name a tool gave the files it laid out, e.g. scripts/fetch_gemma.py).
fn names_snapshot(env: &HubEnv, kind: Kind, repo: &str, revision: &str) -> bool {
    is_commit(revision)
        || repo_dir(&env.cache, kind, repo)
            .join("snapshots")
            .join(revision)
            .is_dir()
}

/// Resolve from the cache alone: a commit's snapshot, or `refs/<revision>`'s.
fn from_cache(
    env: &HubEnv,
    kind: Kind,
    repo: &str,
    revision: &str,
    why: &str,
) -> Result<Option<Pin>, HubError> {
    let dir = repo_dir(&env.cache, kind, repo);
    let why = why.to_string();
    let (commit, origin) = if names_snapshot(env, kind, repo, revision) {
        (revision.to_string(), Origin::Commit { why })
    } else {
        match std::fs::read_to_string(dir.join("refs").join(revision)) {
            Ok(c) => (c.trim().to_string(), Origin::CacheRef { why }),
            Err(_) => return Ok(None),
        }
    };
    let snap = dir.join("snapshots").join(&commit);
    let files = if snap.is_dir() {
        snapshot_files(&snap)?
    } else {
        BTreeMap::new()
    };
    Ok(Some(Pin {
        kind,
        repo: repo.to_string(),
        revision: revision.to_string(),
        commit,
        files,
        origin,
        endpoint: env.endpoint.clone(),
        cache: env.cache.clone(),
    }))
}

/// Resolve `revision` of `repo` to a commit and its files' tags (no memo: see [`pin`]).
pub fn resolve(
    env: &HubEnv,
    kind: Kind,
    repo: &str,
    revision: &str,
    offline: bool,
    wanted: &Wanted,
) -> Result<Pin, HubError> {
    if offline || env.offline {
        let why = if env.offline {
            "HF_HUB_OFFLINE is set"
        } else {
            "param offline: true"
        };
        return from_cache(env, kind, repo, revision, why)?.ok_or_else(|| {
            let first = match wanted {
                Wanted::Files(f) => f.first().cloned().unwrap_or_default(),
                Wanted::Model => "config.json".into(),
            };
            HubError::NotCached {
                repo: repo.to_string(),
                revision: revision.to_string(),
                file: first,
                cache: env.cache.display().to_string(),
                kind: kind.name().to_string(),
                why: why.to_string(),
            }
        });
    }
    // A commit names its files for good: when they are all cached, there is nothing to ask.
    if names_snapshot(env, kind, repo, revision) {
        if let Some(pin) = from_cache(env, kind, repo, revision, "online")? {
            if pin.used(wanted).is_ok() {
                return Ok(pin);
            }
        }
    }
    match super::ask::ask_hub(env, kind, repo, revision) {
        Ok(pin) => Ok(pin),
        // As `huggingface_hub` does: no connection, so the cache answers if it can.
        Err(HubError::Unreachable { msg, .. }) => {
            let why = format!("the hub at {} could not be reached ({msg})", env.endpoint);
            let unreachable = |missing: String| HubError::Unreachable {
                repo: repo.to_string(),
                revision: revision.to_string(),
                kind: kind.name().to_string(),
                endpoint: env.endpoint.clone(),
                cache: env.cache.display().to_string(),
                msg: msg.clone(),
                missing,
            };
            match from_cache(env, kind, repo, revision, &why)? {
                None => Err(unreachable(format!("refs/{revision}"))),
                Some(pin) => match pin.used(wanted) {
                    Ok(_) => Ok(pin),
                    Err(HubError::NotCached { file, .. }) => {
                        Err(unreachable(format!("`{file}` of commit {}", pin.commit)))
                    }
                    Err(e) => Err(e),
                },
            }
        }
        Err(e) => Err(e),
    }
}

type MemoKey = (String, PathBuf, &'static str, String, String, bool);

/// Pins made by this process, in the order they were made (the memo of [`pin`]).
static PINS: Mutex<Vec<(MemoKey, Pin)>> = Mutex::new(Vec::new());

/// [`resolve`] with this process's hub settings, once per repo and revision: planning, the
/// run and `status` all see the commit the first question got, even if the branch moves
/// meanwhile. Errors are not kept (a later try may succeed). A commit answered from the cache
/// for one node's files is resolved again for a node that uses files the cache lacks (a
/// commit's files never change, so both nodes still see the same commit).
pub fn pin(
    kind: Kind,
    repo: &str,
    revision: &str,
    offline: bool,
    wanted: &Wanted,
) -> Result<Pin, HubError> {
    let env = HubEnv::from_process();
    let key: MemoKey = (
        env.endpoint.clone(),
        env.cache.clone(),
        kind.name(),
        repo.to_string(),
        revision.to_string(),
        offline || env.offline,
    );
    // A poisoned lock only means another thread panicked while pushing: the list is intact.
    let known = PINS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, p)| p.clone());
    let online = !(offline || env.offline);
    let partial =
        |p: &Pin| online && matches!(p.origin, Origin::Commit { .. }) && p.used(wanted).is_err();
    if let Some(p) = known.filter(|p| !partial(p)) {
        return Ok(p);
    }
    let p = resolve(&env, kind, repo, revision, offline, wanted)?;
    let mut pins = PINS.lock().unwrap_or_else(|p| p.into_inner());
    match pins.iter_mut().find(|(k, _)| *k == key) {
        Some((_, known)) if partial(known) => *known = p.clone(),
        Some((_, first)) => return Ok(first.clone()),
        None => pins.push((key, p.clone())),
    }
    Ok(p)
}

/// A pin this process made, with whether it was made offline: what another process running
/// part of the same run (a Slurm job) [`adopt`]s so that it fetches the commits the run was
/// keyed by, even if a branch moved since.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MadePin {
    pub offline: bool,
    pub pin: Pin,
}

/// Every pin this process made (see [`MadePin`]).
pub fn made() -> Vec<MadePin> {
    PINS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, p)| MadePin {
            offline: k.5,
            pin: p.clone(),
        })
        .collect()
}

/// Take pins another process made for this run as this process's own answers (a pin it made
/// itself wins), keyed with this process's hub settings.
pub fn adopt(pins: Vec<MadePin>) {
    let env = HubEnv::from_process();
    let mut known = PINS.lock().unwrap_or_else(|p| p.into_inner());
    for MadePin { offline, pin } in pins {
        let key: MemoKey = (
            env.endpoint.clone(),
            env.cache.clone(),
            pin.kind.name(),
            pin.repo.clone(),
            pin.revision.clone(),
            offline || env.offline,
        );
        if !known.iter().any(|(k, _)| *k == key) {
            known.push((key, pin));
        }
    }
}

/// The `(repo, commit)` pairs [`Pin::key_facts`] wrote into a key's facts (`model:owner/name`).
pub fn commits_in(facts: &BTreeMap<String, String>) -> Vec<(String, String)> {
    facts
        .iter()
        .filter_map(|(k, repo)| {
            let prefix = k.strip_suffix("hub_repo")?;
            let commit = facts.get(&format!("{prefix}hub_commit"))?;
            Some((repo.clone(), commit.clone()))
        })
        .collect()
}

/// Every pin this process made, each once, for `status` and `run` to show.
pub fn pins_made() -> Vec<Pin> {
    PINS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(_, p)| p.clone())
        .collect()
}

/// Error helpers that keep `error.rs` free of pin details.
impl HubError {
    /// A fetch by commit reports the revision the user wrote, with the commit it resolved to.
    fn at_revision(self, revision: &str) -> HubError {
        match self {
            HubError::NotCached {
                repo,
                revision: commit,
                file,
                cache,
                kind,
                why,
            } if commit != revision => HubError::NotCached {
                repo,
                revision: format!("{revision} = {commit}"),
                file,
                cache,
                kind,
                why,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a Slurm job resolved the revision again, so a branch that moved between
    /// planning and the job gave content of the new commit under the old commit's key.
    #[test]
    fn a_pin_handed_over_by_the_controller_answers_the_job_without_asking() {
        let planned = Pin {
            kind: Kind::Model,
            repo: "t2s-test/handed-over".into(),
            revision: "main".into(),
            commit: "c".repeat(40),
            files: BTreeMap::new(),
            origin: Origin::Hub,
            endpoint: "http://controller.invalid".into(),
            cache: PathBuf::from("/controller/cache"),
        };
        let spec = serde_json::to_string(&vec![MadePin {
            offline: false,
            pin: planned.clone(),
        }])
        .unwrap();
        adopt(serde_json::from_str(&spec).unwrap());
        let got = pin(
            Kind::Model,
            "t2s-test/handed-over",
            "main",
            false,
            &Wanted::Files(vec![]),
        )
        .unwrap();
        assert_eq!(got, planned);
        assert!(made().iter().any(|m| m.pin == planned));
    }

    fn listed(names: &[&str]) -> BTreeMap<String, String> {
        names.iter().map(|n| (n.to_string(), "t".into())).collect()
    }

    #[test]
    fn a_model_uses_its_config_tokenizer_weights_and_present_extras() {
        let single = listed(&[
            "config.json",
            "tokenizer.json",
            "model.safetensors",
            "README.md",
            "special_tokens_map.json",
        ]);
        assert_eq!(
            Wanted::Model.pick(&single).unwrap(),
            [
                "config.json",
                "model.safetensors",
                "special_tokens_map.json",
                "tokenizer.json"
            ]
        );
        let sharded = listed(&[
            "config.json",
            "tokenizer.json",
            INDEX,
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ]);
        assert_eq!(Wanted::Model.pick(&sharded).unwrap().len(), 5);
        assert_eq!(
            Wanted::Model.pick(&listed(&["config.json", "tokenizer.json"])),
            Err("model.safetensors".to_string())
        );
    }
}
