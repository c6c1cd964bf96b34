//! Pipelines that read the hub, through the real `t2s` binary and a stand-in of the hub
//! (tests/fixtures/hub_server.rs) reached by `HF_ENDPOINT`: a moved branch is stale in `status`
//! (naming both commits) and recomputed under a new key, a `refs/main` refreshed by another
//! tool gives another key offline, and no key ever names two contents.

use crate::hub_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hub_server::{start, Hub};
use t2s::data::builtin;

/// A project dir, an HF cache and a home of its own (no token, no user cache touched).
struct World {
    dir: tempfile::TempDir,
    endpoint: String,
}

impl World {
    fn root(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    fn t2s(&self, extra_env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_t2s"));
        c.arg("--root")
            .arg(self.root())
            .current_dir(self.dir.path())
            .env("HF_ENDPOINT", &self.endpoint)
            .env("HF_HUB_CACHE", self.dir.path().join("hf"))
            .env("HOME", self.dir.path().join("home"))
            .env_remove("HF_HOME")
            .env_remove("HF_TOKEN")
            .env_remove("HF_TOKEN_PATH")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("T2S_ROOT")
            .env_remove("RUST_LOG");
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c
    }

    fn ok(&self, args: &[&str], extra_env: &[(&str, &str)]) -> String {
        let out: Output = self.t2s(extra_env).args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "t2s {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// The `load` node's key as `status` computes it, and whether it is cached.
    fn load_key(&self, pipeline: &Path, extra_env: &[(&str, &str)]) -> (String, String) {
        let p = pipeline.display().to_string();
        let out = self.ok(&["status", &p, "--json"], extra_env);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let node = &v["nodes"][0];
        (
            node["key"].as_str().unwrap().to_string(),
            node["state"].as_str().unwrap().to_string(),
        )
    }

    /// Every committed object's key → the digest of its `rows.jsonl`.
    fn contents(&self) -> BTreeMap<String, String> {
        let objects = self.root().join("artifacts/v1/objects");
        std::fs::read_dir(objects)
            .unwrap()
            .map(|e| {
                let m = t2s::cache::Manifest::read(&e.unwrap().path()).unwrap();
                (m.key.clone(), m.files["rows.jsonl"].blake3.clone())
            })
            .collect()
    }
}

fn rows_jsonl(seed: u64, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for r in builtin::generate(seed, n) {
        out.extend(serde_json::to_vec(&r).unwrap());
        out.push(b'\n');
    }
    out
}

/// Record `key → content` and check that no key ever named two contents.
fn record(seen: &mut BTreeMap<String, String>, w: &World) {
    for (k, c) in w.contents() {
        let old = seen.insert(k.clone(), c.clone());
        assert!(
            old.as_ref().is_none_or(|o| *o == c),
            "key {k} names two contents: {old:?} and {c}"
        );
    }
}

#[test]
fn a_moved_branch_is_stale_naming_both_commits_and_gets_a_new_key() {
    let hub = Hub::default();
    let c1 = hub.push(
        "/datasets/acme/rows",
        "main",
        &[("train.jsonl", &rows_jsonl(1, 12))],
    );
    let (endpoint, hub) = start(hub);
    let w = World {
        dir: tempfile::tempdir().unwrap(),
        endpoint,
    };
    std::fs::create_dir_all(w.root()).unwrap();
    let pipeline = w.dir.path().join("rows.yaml");
    std::fs::write(
        &pipeline,
        "name: rows\nstages:\n  load:\n    kind: load\n    params: {source: \"hf://acme/rows/train.jsonl\", revision: main}\n",
    )
    .unwrap();
    let p = pipeline.display().to_string();
    let offline = [("HF_HUB_OFFLINE", "1")];
    let mut seen = BTreeMap::new();

    w.ok(&["run", &p], &[]);
    let (k1, state) = w.load_key(&pipeline, &[]);
    assert_eq!(state, "cached");
    let status = w.ok(&["status", &p], &[]);
    assert!(
        status.contains(&format!("hub: acme/rows@main = {c1} (asked the hub)")),
        "{status}"
    );
    record(&mut seen, &w);
    // Offline, the cache's refs/main (written by the run) gives the same key.
    assert_eq!(
        w.load_key(&pipeline, &offline),
        (k1.clone(), "cached".into())
    );

    // The hub's main moves: stale, naming the old and the new commit.
    let c2 = hub.push(
        "/datasets/acme/rows",
        "main",
        &[("train.jsonl", &rows_jsonl(2, 15))],
    );
    let status = w.ok(&["status", &p], &[]);
    let line = status.lines().find(|l| l.starts_with("load")).unwrap();
    assert!(
        line.contains("stale") && line.contains(&format!("fact.hub_commit: {c1} → {c2}")),
        "{status}"
    );
    // A forced reload while the branch moved used to reload the old rows under the old key.
    w.ok(&["run", &p, "--force", "load"], &[]);
    let (k2, state) = w.load_key(&pipeline, &[]);
    assert_eq!(state, "cached");
    assert_ne!(k1, k2);
    record(&mut seen, &w);
    assert_eq!(seen.len(), 2);

    // Another tool moves the cache's refs/main back to c1's files and forward again (as an
    // `hf download` of another mirror would): offline, each ref gives its own key, never the
    // same key with other rows.
    let cache = w.dir.path().join("hf/datasets--acme--rows/refs/main");
    std::fs::write(&cache, &c1).unwrap();
    w.ok(&["run", &p, "--force", "load"], &offline);
    assert_eq!(w.load_key(&pipeline, &offline).0, k1);
    record(&mut seen, &w);
    let c3 = hub.push(
        "/datasets/acme/rows",
        "main",
        &[("train.jsonl", &rows_jsonl(3, 9))],
    );
    let env = t2s::data::hub::HubEnv::from_lookup(|k| match k {
        "HF_ENDPOINT" => Some(w.endpoint.clone()),
        "HF_HUB_CACHE" => Some(w.dir.path().join("hf").display().to_string()),
        _ => None,
    });
    t2s::data::hub::fetch_in(
        &env,
        t2s::data::hub::Kind::Dataset,
        "acme/rows",
        &c3,
        "train.jsonl",
        false,
    )
    .unwrap();
    std::fs::write(&cache, &c3).unwrap();
    w.ok(&["run", &p, "--force", "load"], &offline);
    let (k3, _) = w.load_key(&pipeline, &offline);
    assert!(k3 != k1 && k3 != k2);
    record(&mut seen, &w);
    // Online, the hub's c3 gives the key the cache's ref gave: cached, nothing to redo.
    assert_eq!(w.load_key(&pipeline, &[]), (k3, "cached".into()));
    assert_eq!(seen.len(), 3);
}
