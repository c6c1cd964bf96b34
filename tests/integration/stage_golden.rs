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

use crate::common;

/// node → (kind, cache key, output digest).
const PINS: &[(&str, &str, &str, &str)] = &[
    (
        "base",
        "train",
        "0688ec41948a3d60178adeffec9e530c094249f95f9e594cbc6bb8dc482610be",
        "33cec64b79f94c1a8c2b9104235eda9a0ab2cefcfa85e9667cecbb7c82491e85",
    ),
    (
        "count",
        "command",
        "664b4458b85444533976f27953272cac77fc7f93d8502a773acc79ef68e42e3b",
        "ddbc2a6ceed2d0d09c84a36135b3305baeaa8a7d60496a8996da91ad9eb6226c",
    ),
    (
        "eda",
        "eda",
        "b918f3ed454902804fe1d422cc2672c12f4faefaf002416052050b800be58153",
        "b9047a3446a7be9003529775a86dc13a8328f2e4e3c04aea48f52d123ccf029c",
    ),
    (
        "evaluate",
        "evaluate",
        "509b25e741171df49739e68bc1dc4acac05f67d2cdf762315c3cc55d21e411b6",
        "c7ea3541099360487d754346cec3b5d98bf72034e4e08ee0b51cb0216c2e8db0",
    ),
    (
        "load",
        "load",
        "465d9370a45023e89213b60b0fca0959b9364b57c0cdc579e50b2902dd07beff",
        "26e1d27654b3355270bd1c37e7d6a8c7fa1bd1fda46662fb139866dcda114135",
    ),
    (
        "lora",
        "train",
        "5d0d7825c5926b6f69fdf032f08cdc4bdefe218dc1a67e4d767e59fe3bf3258a",
        "b91a881e405f0814302b55891c396162c99859b52caac25a0c1586a71c67edb9",
    ),
    (
        "model",
        "model",
        "2f78b2e14b70275e09f98196de0425e27b2bf773cb848fdcb133cd02e74663ac",
        "dbd9ed9a67349b5c696bbdf075c4b1a16087afba3e9bf4f01993988330e4db13",
    ),
    (
        "preprocess",
        "preprocess",
        "0c0d8bdefdf5f77e29fb99b952086f5a0704d65e550af5432981b78f98a3feb9",
        "61c1b90c339cfefe01d2bdab713e24cbea34f3480c5ef26b828d58782f1acb4f",
    ),
    (
        "report",
        "report",
        "7ddfa28070438b782ffd76b44f7addae5a0afc49ade51dc889687f3a7bfe4801",
        "37b87425b31604ecaa3cb82b0153c8d89f8779076cf50bb23af27d0e5846246c",
    ),
    (
        "split",
        "split",
        "4a07af670aba876855c2626bd7650e28305c037b580db9ce622ed6c060e5132c",
        "d3982f5beb1ad3ce9bb7d7bcd6201505cb2d256fd21c69962e18a383a741ae27",
    ),
    (
        "tokenizer",
        "tokenizer",
        "25ec8122691eb4f9f6e3c636aa04eaf467f8481e80123ffb46016d39ebc58216",
        "413fefd76101c3811f4d60a113b039e4ca0d3f79761c4651542818265afc9f51",
    ),
];

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
        assert!(
            kinds.contains(&kind),
            "the golden pipelines have no `{kind}` node"
        );
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
