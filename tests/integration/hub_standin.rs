//! The hub path against a local stand-in of the Hugging Face hub (tests/fixtures/hub_server.rs),
//! reached the way a user behind a mirror reaches it: through `HF_ENDPOINT`. Downloads (LFS
//! through the CDN redirect), refusals (401, 403, 404), resume, offline use of the cache, and
//! revisions pinned to commits: a moved branch, a refreshed `refs/main`, a corrupt blob.

use crate::hub_server;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use hub_server::{start, tag_of, Hub, GRANTED};
use t2s::data::hub::pin::{self, Origin, Wanted};
use t2s::data::hub::{fetch_in, HubEnv, HubError, Kind};

/// Bytes that differ all along, so a misplaced range shows.
fn weights() -> Vec<u8> {
    (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

const CONFIG: &[u8] = b"{\"model_type\": \"gemma3_text\"}";

/// `acme/open` (a config and LFS weights), the gated `acme/gated`, the dataset `acme/rows`;
/// the commit of `acme/open`'s `main`.
fn standin() -> (String, Arc<Hub>, String) {
    let hub = Hub::default();
    let commit = hub.push(
        "/acme/open",
        "main",
        &[("config.json", CONFIG), ("model.safetensors", &weights())],
    );
    hub.push(
        "/acme/gated",
        "main",
        &[("config.json", b"{\"gated\": true}")],
    );
    hub.gate("/acme/gated");
    hub.push(
        "/datasets/acme/rows",
        "main",
        &[("train.jsonl", b"{\"sql\": \"SELECT 1\"}\n")],
    );
    let (endpoint, hub) = start(hub);
    (endpoint, hub, commit)
}

/// The settings a user's shell would give: `HF_ENDPOINT`, `HF_HUB_CACHE`, a home with
/// (or without) `hf auth login`'s token file, and `extra` variables.
fn user_env(endpoint: &str, dir: &Path, login: Option<&str>, extra: &[(&str, &str)]) -> HubEnv {
    let home = dir.join("home");
    if let Some(token) = login {
        let f = home.join(".cache/huggingface/token");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, token).unwrap();
    }
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert("HF_ENDPOINT".into(), endpoint.into());
    vars.insert(
        "HF_HUB_CACHE".into(),
        dir.join("cache").display().to_string(),
    );
    vars.insert("HOME".into(), home.display().to_string());
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    HubEnv::from_lookup(|k| vars.get(k).cloned())
}

fn refusal_text(r: Result<std::path::PathBuf, HubError>) -> (u16, String) {
    match r {
        Err(HubError::Refused(r)) => (r.status, r.to_string()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn files_download_through_hf_endpoint_into_the_cache_and_then_resolve_offline() {
    let (endpoint, hub, commit) = standin();
    let dir = tempfile::tempdir().unwrap();
    let env = user_env(&endpoint, dir.path(), None, &[]);

    let got = fetch_in(&env, Kind::Model, "acme/open", "main", "config.json", false).unwrap();
    assert_eq!(
        std::fs::read(&got).unwrap(),
        b"{\"model_type\": \"gemma3_text\"}"
    );
    let repo_dir = dir.path().join("cache/models--acme--open");
    assert_eq!(
        got,
        repo_dir.join("snapshots").join(&commit).join("config.json")
    );
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main"))
            .unwrap()
            .trim(),
        commit
    );
    let rows = fetch_in(
        &env,
        Kind::Dataset,
        "acme/rows",
        "main",
        "train.jsonl",
        false,
    )
    .unwrap();
    assert!(rows.starts_with(dir.path().join("cache/datasets--acme--rows")));
    // An LFS file, through the hub's redirect to its CDN.
    let w = fetch_in(
        &env,
        Kind::Model,
        "acme/open",
        "main",
        "model.safetensors",
        false,
    )
    .unwrap();
    assert!(std::fs::read(&w).unwrap() == weights());
    let seen = hub.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|p| *p == format!("/cdn/{}", tag_of("model.safetensors", &weights()))),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|p| p == "/mirror/acme/open/resolve/main/config.json")
            && seen
                .iter()
                .any(|p| p == "/mirror/datasets/acme/rows/resolve/main/train.jsonl"),
        "{seen:?}"
    );

    // Offline afterwards: from the cache, without asking the hub.
    let before = hub.seen.lock().unwrap().len();
    let offline = user_env(&endpoint, dir.path(), None, &[("HF_HUB_OFFLINE", "1")]);
    assert_eq!(
        fetch_in(
            &offline,
            Kind::Model,
            "acme/open",
            "main",
            "config.json",
            true
        )
        .unwrap(),
        got
    );
    assert_eq!(hub.seen.lock().unwrap().len(), before);
}

#[test]
fn a_gated_repo_is_refused_with_what_to_do_and_opens_to_the_login_token() {
    let (endpoint, _hub, _) = standin();
    let get = |env: &HubEnv| {
        fetch_in(env, Kind::Model, "acme/gated", "main", "config.json", false).map_err(
            |e| match e {
                HubError::Refused(r) => (r.status, r.to_string()),
                other => panic!("expected a refusal, got {other:?}"),
            },
        )
    };

    // No token anywhere: 401, naming where the token was looked for, the repo's page on the
    // mirror, and the hub's own words.
    let dir = tempfile::tempdir().unwrap();
    let (status, text) = get(&user_env(&endpoint, dir.path(), None, &[])).unwrap_err();
    assert_eq!(status, 401);
    for needle in [
        "401 Unauthorized",
        "No token was sent",
        ".cache/huggingface/token",
        &format!("{endpoint}/acme/gated"),
        "hf auth login",
        "You must have access to it and be authenticated",
        "GatedRepo",
    ] {
        assert!(text.contains(needle), "lacks {needle:?}: {text}");
    }
    // Nothing half-written in the cache.
    assert!(!dir
        .path()
        .join("cache/models--acme--gated/snapshots")
        .exists());

    // A token without access: 403, "accept the license at <page>", naming the token's source.
    let (status, text) = get(&user_env(
        &endpoint,
        dir.path(),
        None,
        &[("HF_TOKEN", "hf_other_account")],
    ))
    .unwrap_err();
    assert_eq!(status, 403);
    for needle in [
        "403 Forbidden",
        &format!("accept the license at {endpoint}/acme/gated"),
        "the token sent (from HF_TOKEN) has no access",
        "not in the authorized list",
    ] {
        assert!(text.contains(needle), "lacks {needle:?}: {text}");
    }
    assert!(!text.contains("hf_other_account"), "{text}");

    // `hf auth login`'s token under HOME is found although HF_HUB_CACHE points elsewhere.
    let dir = tempfile::tempdir().unwrap();
    let env = user_env(&endpoint, dir.path(), Some(GRANTED), &[]);
    let got = get(&env).unwrap();
    assert_eq!(std::fs::read(got).unwrap(), b"{\"gated\": true}");
}

#[test]
fn a_missing_file_is_a_404_that_names_the_tree_to_check() {
    let (endpoint, _hub, _) = standin();
    let dir = tempfile::tempdir().unwrap();
    let env = user_env(&endpoint, dir.path(), None, &[]);
    let (status, text) = refusal_text(fetch_in(
        &env,
        Kind::Model,
        "acme/open",
        "main",
        "tokenizer.json",
        false,
    ));
    assert_eq!(status, 404);
    for needle in [
        "`tokenizer.json`",
        "404 Not Found",
        "(EntryNotFound: \"Entry not found\")",
        &format!("{endpoint}/acme/open/tree/main"),
    ] {
        assert!(text.contains(needle), "lacks {needle:?}: {text}");
    }
}

#[test]
fn an_interrupted_download_resumes_from_its_part_file() {
    let (endpoint, hub, _) = standin();
    let dir = tempfile::tempdir().unwrap();
    let env = user_env(&endpoint, dir.path(), None, &[]);
    // What an interrupted run leaves: the first part of the blob, named by its tag.
    let full = weights();
    let blobs = dir.path().join("cache/models--acme--open/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let part = blobs.join(format!("{}.part", tag_of("model.safetensors", &full)));
    std::fs::write(&part, &full[..75_000]).unwrap();

    let got = fetch_in(
        &env,
        Kind::Model,
        "acme/open",
        "main",
        "model.safetensors",
        false,
    )
    .unwrap();
    // Appending from the part's end gives the blob; a restart from zero would not.
    assert!(std::fs::read(&got).unwrap() == full);
    assert!(!part.exists());
    assert!(hub
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|p| p.starts_with("/cdn/")));
}

/// How many times the stand-in was asked for `acme/open`'s revision `rev`.
fn asked(hub: &Hub, rev: &str) -> usize {
    let url = format!("/mirror/api/models/acme/open/revision/{rev}?blobs=true");
    hub.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| **p == url)
        .count()
}

#[test]
fn a_branch_resolves_to_its_commit_and_a_moved_branch_or_refreshed_ref_gives_other_facts() {
    let (endpoint, hub, c1) = standin();
    let dir = tempfile::tempdir().unwrap();
    let env = user_env(&endpoint, dir.path(), None, &[]);
    let offline = user_env(&endpoint, dir.path(), None, &[("HF_HUB_OFFLINE", "1")]);
    let w = Wanted::Files(vec!["config.json".into(), "model.safetensors".into()]);
    let facts = |p: &pin::Pin| p.key_facts(&w, "").unwrap();

    // Online: the hub names the commit and the files' tags (git blob id; sha256 for LFS).
    let p1 = pin::resolve(&env, Kind::Model, "acme/open", "main", false, &w).unwrap();
    assert_eq!(
        (p1.commit.as_str(), &p1.origin),
        (c1.as_str(), &Origin::Hub)
    );
    assert_eq!(p1.files["config.json"], tag_of("config.json", CONFIG));
    assert_eq!(
        p1.files["model.safetensors"],
        tag_of("model.safetensors", &weights())
    );
    assert_eq!(asked(&hub, "main"), 1);
    // The key holds the commit and tags, not the revision string: main and its commit agree.
    let by_commit = pin::resolve(&env, Kind::Model, "acme/open", &c1, false, &w).unwrap();
    assert_eq!(facts(&by_commit), facts(&p1));
    assert_eq!(facts(&p1)["hub_commit"], c1);

    // Fetched by the commit; afterwards the commit needs no question, and the cache (online
    // by commit, offline by ref) gives the same facts as the hub did.
    assert_eq!(
        std::fs::read(p1.fetch(&env, "config.json").unwrap()).unwrap(),
        CONFIG
    );
    p1.fetch(&env, "model.safetensors").unwrap();
    let before = hub.seen.lock().unwrap().len();
    let cached = pin::resolve(&env, Kind::Model, "acme/open", &c1, false, &w).unwrap();
    assert!(matches!(cached.origin, Origin::Commit { .. }));
    assert_eq!(hub.seen.lock().unwrap().len(), before);
    assert_eq!(facts(&cached), facts(&p1));
    let off = pin::resolve(&offline, Kind::Model, "acme/open", "main", false, &w).unwrap();
    assert_eq!(facts(&off), facts(&p1));
    assert!(off.to_string().contains("may be stale"), "{off}");

    // The branch moves: other facts (the commit and the changed file's tag, not the weights').
    let new_config: &[u8] = b"{\"model_type\": \"gemma3_text\", \"v\": 2}";
    let c2 = hub.push(
        "/acme/open",
        "main",
        &[
            ("config.json", new_config),
            ("model.safetensors", &weights()),
        ],
    );
    let p2 = pin::resolve(&env, Kind::Model, "acme/open", "main", false, &w).unwrap();
    assert_eq!(p2.commit, c2);
    let (f1, f2) = (facts(&p1), facts(&p2));
    assert_ne!(f1["hub_commit"], f2["hub_commit"]);
    assert_ne!(f1["hub_file config.json"], f2["hub_file config.json"]);
    assert_eq!(
        f1["hub_file model.safetensors"],
        f2["hub_file model.safetensors"]
    );
    // The old pin still reads the old commit's bytes, although the hub's main moved.
    assert_eq!(
        std::fs::read(p1.fetch(&env, "config.json").unwrap()).unwrap(),
        CONFIG
    );

    // Another tool refreshes refs/main in the cache (as `hf download` does): offline, the ref
    // now gives c2's facts, and they are the facts the hub gives for c2, so one key never
    // names two contents; c1's files stay where they were.
    for file in ["config.json", "model.safetensors"] {
        fetch_in(&env, Kind::Model, "acme/open", &c2, file, false).unwrap();
    }
    let refs_main = dir.path().join("cache/models--acme--open/refs/main");
    std::fs::write(&refs_main, &c2).unwrap();
    let off2 = pin::resolve(&offline, Kind::Model, "acme/open", "main", false, &w).unwrap();
    assert_eq!(off2.commit, c2);
    assert_eq!(facts(&off2), f2);
    assert_eq!(
        std::fs::read(off2.fetch(&offline, "config.json").unwrap()).unwrap(),
        new_config
    );
    assert_eq!(
        std::fs::read(p1.fetch(&offline, "config.json").unwrap()).unwrap(),
        CONFIG
    );
}

#[test]
fn a_corrupt_download_is_refused_by_its_tag() {
    let (endpoint, hub, _) = standin();
    hub.corrupt(&weights());
    hub.corrupt(CONFIG);
    let dir = tempfile::tempdir().unwrap();
    let env = user_env(&endpoint, dir.path(), None, &[]);
    let w = Wanted::Files(vec!["config.json".into(), "model.safetensors".into()]);
    let p = pin::resolve(&env, Kind::Model, "acme/open", "main", false, &w).unwrap();
    for (file, what) in [
        ("model.safetensors", "sha256 mismatch"),
        ("config.json", "git blob id mismatch"),
    ] {
        match p.fetch(&env, file) {
            Err(e @ HubError::Checksum { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains(what)
                        && text.contains(&p.files[file])
                        && text.contains("delete it"),
                    "{text}"
                );
            }
            other => panic!("{file}: expected a checksum refusal, got {other:?}"),
        }
    }
}

#[test]
fn an_unreachable_hub_falls_back_to_the_cache_ref_and_says_it_may_be_stale() {
    let (endpoint, _hub, commit) = standin();
    let dir = tempfile::tempdir().unwrap();
    let env = user_env(&endpoint, dir.path(), None, &[]);
    let w = Wanted::Files(vec!["config.json".into()]);
    fetch_in(&env, Kind::Model, "acme/open", "main", "config.json", false).unwrap();
    // Nothing listens on port 9.
    let down = user_env("http://127.0.0.1:9/mirror", dir.path(), None, &[]);
    let p = pin::resolve(&down, Kind::Model, "acme/open", "main", false, &w).unwrap();
    assert_eq!(p.commit, commit);
    let shown = p.to_string();
    assert!(
        shown.contains("could not be reached") && shown.contains("may be stale"),
        "{shown}"
    );
    // Nothing cached either: an error that says what to do.
    let empty = tempfile::tempdir().unwrap();
    let down = user_env("http://127.0.0.1:9/mirror", empty.path(), None, &[]);
    let e = pin::resolve(&down, Kind::Model, "acme/open", "main", false, &w).unwrap_err();
    let text = e.to_string();
    for needle in [
        "cannot resolve revision main",
        "refs/main",
        "hf download acme/open",
    ] {
        assert!(text.contains(needle), "lacks {needle:?}: {text}");
    }
    // A commit the cache lacks: the file is named, and nothing says offline mode is on.
    let e = pin::resolve(&down, Kind::Model, "acme/open", &commit, false, &w).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&format!("lacks `config.json` of commit {commit}"))
            && !text.contains("offline mode is on"),
        "{text}"
    );
}

#[test]
fn the_revision_question_to_a_gated_repo_is_refused_with_what_to_do() {
    let (endpoint, _hub, _) = standin();
    let dir = tempfile::tempdir().unwrap();
    let env = user_env(&endpoint, dir.path(), None, &[]);
    let w = Wanted::Files(vec!["config.json".into()]);
    match pin::resolve(&env, Kind::Model, "acme/gated", "main", false, &w) {
        Err(HubError::Refused(r)) => {
            assert_eq!(r.status, 401);
            assert!(r.to_string().contains("hf auth login"), "{r}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let env = user_env(&endpoint, dir.path(), Some(GRANTED), &[]);
    let p = pin::resolve(&env, Kind::Model, "acme/gated", "main", false, &w).unwrap();
    assert_eq!(p.origin, Origin::Hub);
}

#[test]
fn a_download_reports_its_progress() {
    let (endpoint, _hub, _) = standin();
    let dir = tempfile::tempdir().unwrap();
    let env = user_env(&endpoint, dir.path(), None, &[]);
    let calls = std::sync::Mutex::new(Vec::new());
    let on = |done: u64, total: u64, file: &str| {
        calls.lock().unwrap().push((done, total, file.to_string()))
    };
    let file = "model.safetensors";
    t2s::data::hub::fetch_in_with(&env, Kind::Model, "acme/open", "main", file, false, &on)
        .unwrap();
    let calls = calls.into_inner().unwrap();
    let len = weights().len() as u64;
    assert_eq!(
        calls.first(),
        Some(&(0, len, file.to_string())),
        "{calls:?}"
    );
    assert_eq!(
        calls.last(),
        Some(&(len, len, file.to_string())),
        "{calls:?}"
    );
    // From the cache: nothing to report.
    let again = std::sync::Mutex::new(0);
    let count = |_: u64, _: u64, _: &str| *again.lock().unwrap() += 1;
    t2s::data::hub::fetch_in_with(&env, Kind::Model, "acme/open", "main", file, false, &count)
        .unwrap();
    assert_eq!(again.into_inner().unwrap(), 0);
}

/// The only test here that uses the process's environment (`pin::pin`, `fetch_model`), so it
/// runs alone in its own process; the others pass their settings explicitly.
#[test]
fn the_process_pin_of_a_commit_cached_for_a_tokenizer_serves_the_whole_model_later() {
    if crate::common::rerun_alone(&format!(
        "{}::the_process_pin_of_a_commit_cached_for_a_tokenizer_serves_the_whole_model_later",
        module_path!()
    )) {
        return; // it changes the process environment
    }
    let (endpoint, hub, _) = standin();
    let tokenizer: &[u8] = b"{\"model\": {}}";
    let c = hub.push(
        "/acme/full",
        "main",
        &[
            ("config.json", CONFIG),
            ("tokenizer.json", tokenizer),
            ("model.safetensors", &weights()),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("HF_ENDPOINT", &endpoint);
    std::env::set_var("HF_HUB_CACHE", dir.path().join("cache"));
    std::env::remove_var("HF_HUB_OFFLINE");
    let env = HubEnv::from_process();
    // Only the tokenizer of the commit is cached: enough for a tokenizer node, asked first.
    fetch_in(&env, Kind::Model, "acme/full", &c, "tokenizer.json", false).unwrap();
    let tok = Wanted::Files(vec!["tokenizer.json".into()]);
    let t = pin::pin(Kind::Model, "acme/full", &c, false, &tok).unwrap();
    assert!(matches!(t.origin, Origin::Commit { .. }), "{t}");
    // A model node of the same process needs the rest: asked of the hub, same commit.
    let m = pin::pin(Kind::Model, "acme/full", &c, false, &Wanted::Model).unwrap();
    assert_eq!((m.commit.as_str(), &m.origin), (c.as_str(), &Origin::Hub));
    let model_dir = t2s::data::hub::fetch_model("acme/full", &c, false).unwrap();
    assert_eq!(
        std::fs::read(model_dir.join("config.json")).unwrap(),
        CONFIG
    );
    assert!(pin::pins_made().iter().any(|p| p.repo == "acme/full"));
}
