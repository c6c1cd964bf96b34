//! Golden outputs: every stage kind on a fixed tiny input (tests/fixtures/golden/), each
//! node's cache key and output digest pinned below. A kind whose output changes under the same
//! key (same version, params and inputs) fails here until its version is bumped — otherwise an
//! upgraded t2s would reuse results the new code would not produce.
//!
//! When a pin must change (a version bump, a new param default, an upstream change), print
//! the new table with `T2S_GOLDEN=print cargo test --release --test stage_golden -- --nocapture`
//! and paste it. The digests of `train` and `evaluate` are libtorch's float results on the CI
//! machine class (x86-64 CPU, one intra-op thread): on another CPU they may differ.

use std::collections::BTreeMap;
use std::path::Path;

use assert_cmd::Command;

mod common;

/// node → (kind, cache key, output digest).
const PINS: &[(&str, &str, &str, &str)] = &[];


fn run(root: &Path, pipeline: &Path) {
    let out = Command::cargo_bin("t2s")
        .unwrap()
        .env("T2S_ROOT", root)
        .env("T2S_WORKER", common::worker())
        // One intra-op thread: libtorch's reductions then add in one order on any core count.
        .env("OMP_NUM_THREADS", "1")
        .env("HF_HUB_OFFLINE", "1")
        .args(["run", "--quiet"])
        .arg(pipeline)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// node → (kind, key, digest) of every object under `root`.
fn produced(root: &Path) -> BTreeMap<String, (String, String, String)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(root.join("artifacts/v1/objects")).unwrap() {
        let m = t2s::cache::Manifest::read(&e.unwrap().path()).unwrap();
        let kind = m.cache_key.kind.clone();
        out.insert(m.node.clone(), (kind, m.key.clone(), m.digest()));
    }
    out
}

#[test]
fn every_kind_keeps_its_output_for_the_same_key() {
    let project = tempfile::tempdir().unwrap();
    let root = project.path();
    let fixtures = common::repo_dir().join("tests/fixtures/golden");
    for f in ["golden.yaml", "golden_model.yaml"] {
        std::fs::copy(fixtures.join(f), root.join(f)).unwrap();
    }
    run(root, &root.join("golden.yaml"));
    // The `model` kind reads a model directory: golden.yaml's trained base, copied.
    let base = produced(root)["base"].1.clone();
    let from = root.join("artifacts/v1/objects").join(&base);
    let to = root.join("base_model");
    std::fs::create_dir_all(&to).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    run(root, &root.join("golden_model.yaml"));

    let got = produced(root);
    if std::env::var("T2S_GOLDEN").as_deref() == Ok("print") {
        for (node, (kind, key, digest)) in &got {
            println!("    (\"{node}\", \"{kind}\", \"{key}\", \"{digest}\"),");
        }
    }
    let kinds: Vec<&str> = got.values().map(|(k, _, _)| k.as_str()).collect();
    for kind in t2s::stages::registry::kind_names() {
        assert!(kinds.contains(&kind), "the golden pipelines have no `{kind}` node");
    }
    let mut problems = Vec::new();
    for (node, kind, key, digest) in PINS {
        match got.get(*node) {
            None => problems.push(format!("{node}: not produced")),
            Some((_, k, d)) if k == key && d != digest => problems.push(format!(
                "{node}: kind `{kind}` produced other output ({d}) under the same key: bump \
                 the kind's version (src/stages/{kind}.rs) and re-pin"
            )),
            Some((_, k, _)) if k != key => problems.push(format!(
                "{node}: its key changed ({key} → {k}): re-pin (T2S_GOLDEN=print)"
            )),
            Some(_) => {}
        }
    }
    for node in got.keys() {
        if !PINS.iter().any(|(n, ..)| n == node) {
            problems.push(format!("{node}: not pinned (T2S_GOLDEN=print)"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
