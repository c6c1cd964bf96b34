//! Acceptance: `t2s run pipelines/rank_sweep.yaml`, as a new user runs it, against a stand-in of
//! the hub (tests/fixtures/hub_server.rs) reached by `HF_ENDPOINT`, with CPU-sized `--set`
//! overrides: it downloads the gated model (with the token) and gretel's parquet files, trains
//! the three adapters, evaluates and reports; a second run is all cached.
//!
//! The stand-in serves what the real repos hold, at toy sizes: `google/gemma-3-1b-it` is a
//! Gemma-3 checkpoint with the real config keys and tensor names (a tiny one, made by t2s's
//! own `train` with `init: random`, as pipelines/smoke.yaml makes its base), its
//! `tokenizer.json` a BPE with Gemma's special tokens; `gretelai/synthetic_text_to_sql` has
//! gretel's two parquet files, their names and schema, with built-in rows.

use crate::common;
use crate::data_common;
use crate::hub_server;

use std::path::{Path, PathBuf};
use std::process::Command;

use hub_server::{start, Hub, GRANTED};
use t2s::data::builtin;
use t2s::data::hub::GRETEL_FILES;

/// `t2s --root <root> ARGS` with the stand-in's endpoint, a cache and a home of its own.
fn t2s(dir: &Path, endpoint: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_t2s"))
        .arg("--root")
        .arg(dir.join("project"))
        .args(args)
        .current_dir(t2s_repo())
        .env("T2S_WORKER", common::worker())
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_CACHE", dir.join("hf"))
        .env("HOME", dir.join("home"))
        .env("HF_TOKEN", GRANTED)
        .env_remove("HF_HOME")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("T2S_ROOT")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "t2s {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn t2s_repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tiny Gemma-3 and its tokenizer, made by the real binaries: (config.json,
/// model.safetensors, tokenizer.json).
fn tiny_gemma(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let seed = dir.join("seed.yaml");
    std::fs::write(
        &seed,
        r#"name: seed
settings: {jobs: 1}
stages:
  load:
    kind: load
    params: {source: "builtin:160", seed: 5}
  tokenizer:
    kind: tokenizer
    needs: [load]
    params: {vocab_size: 600}
  preprocess:
    kind: preprocess
    needs: [load, tokenizer]
    params: {format: chat, max_length: 512, truncation: drop}
  split:
    kind: split
    needs: [preprocess]
    params: {seed: 0, validation_size: 8, test_size: 8}
  base:
    kind: train
    needs: [split, tokenizer]
    params:
      method: full
      init: random
      model_config: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
                     num_attention_heads: 2, num_key_value_heads: 1, head_dim: 16,
                     query_pre_attn_scalar: 16, sliding_window: 64, sliding_window_pattern: 2,
                     max_position_embeddings: 1024}
      lr: 3.0e-3
      batch_size: 8
      max_steps: 2
      eval_steps: 2
      save_steps: 2
      logging_steps: 1
      max_length: 512
      seed: 1
      device: cpu
"#,
    )
    .unwrap();
    let seed_root = dir.join("seed");
    std::fs::create_dir_all(&seed_root).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_t2s"))
        .arg("--root")
        .arg(&seed_root)
        .arg("run")
        .arg(&seed)
        .env("T2S_WORKER", common::worker())
        .env_remove("T2S_ROOT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "seed run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = seed_root.join("artifacts/v1/objects");
    let base = std::fs::read_dir(&objects)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|d| t2s::cache::Manifest::read(d).unwrap().node == "base")
        .expect("the seed's base model");
    ["config.json", "model.safetensors", "tokenizer.json"]
        .into_iter()
        .map(|f| (f, std::fs::read(base.join(f)).unwrap()))
        .collect()
}

/// gretel's two parquet files (names and schema), of built-in rows.
fn gretel_files(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    GRETEL_FILES
        .iter()
        .map(|k| {
            let (seed, n, first_id) = if k.split == "train" {
                (11, 120, 0)
            } else {
                (12, 10, 50_000)
            };
            let rows: Vec<_> = builtin::generate(seed, n)
                .into_iter()
                .map(|mut r| {
                    r.id += first_id;
                    r
                })
                .collect();
            let jsonl = dir.join(format!("{}.jsonl", k.split));
            data_common::write_jsonl(&jsonl, &rows);
            let pq = dir.join(k.name);
            data_common::jsonl_to_parquet(&jsonl, &pq);
            (k.name, std::fs::read(&pq).unwrap())
        })
        .collect()
}

#[test]
fn rank_sweep_downloads_trains_evaluates_and_reports_through_hf_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("project")).unwrap();
    let model = tiny_gemma(dir);
    let data = gretel_files(dir);

    let hub = Hub::default();
    let model_commit = hub.push(
        "/google/gemma-3-1b-it",
        "main",
        &model
            .iter()
            .map(|(k, v)| (*k, v.as_slice()))
            .collect::<Vec<_>>(),
    );
    hub.gate("/google/gemma-3-1b-it");
    let data_commit = hub.push(
        "/datasets/gretelai/synthetic_text_to_sql",
        "main",
        &data
            .iter()
            .map(|(k, v)| (*k, v.as_slice()))
            .collect::<Vec<_>>(),
    );
    let (endpoint, hub) = start(hub);

    // The pipeline pins the real commits, which the stand-in cannot serve: its `main`
    // instead. The rest only shrinks the work to CPU size.
    let overrides = [
        "load.revision=main",
        "model.revision=main",
        "tokenizer.revision=main",
        "split.validation_size=8",
        "train.device=cpu",
        "train.max_steps=2",
        "train.grad_accum=1",
        "train.batch_size=4",
        "train.eval_steps=1",
        "train.save_steps=1",
        "train.logging_steps=1",
        "train.max_length=512",
        "evaluate_base.device=cpu",
        "evaluate_base.batch_size=5",
        "evaluate_base.max_new_tokens=8",
        "evaluate.device=cpu",
        "evaluate.batch_size=5",
        "evaluate.max_new_tokens=8",
    ];
    let mut args = vec!["run", "pipelines/rank_sweep.yaml"];
    for o in &overrides {
        args.extend(["--set", o]);
    }
    let out = t2s(dir, &endpoint, &args);
    assert!(out.contains("0 failed"), "{out}");

    // Downloaded: LFS files through the CDN; the hub asked once per repo and revision (the
    // model and the tokenizer share google/gemma-3-1b-it@main).
    let seen = hub.seen.lock().unwrap().clone();
    let asked = |url: &str| seen.iter().filter(|p| p.starts_with(url)).count();
    assert_eq!(
        asked("/mirror/api/models/google/gemma-3-1b-it/revision/main"),
        1,
        "{seen:#?}"
    );
    assert_eq!(
        asked("/mirror/api/datasets/gretelai/synthetic_text_to_sql/revision/main"),
        1
    );
    assert!(
        seen.iter().filter(|p| p.starts_with("/cdn/")).count() >= 3,
        "{seen:#?}"
    );

    // Trained, evaluated, reported; the report names the commit the data came from.
    let report = dir.join("project/experiments/rank_sweep/1/report.md");
    let md = std::fs::read_to_string(&report).unwrap();
    for variant in ["| base |", "| lora_r=4 |", "| lora_r=8 |", "| lora_r=16 |"] {
        assert!(md.contains(variant), "metrics table lacks {variant}:\n{md}");
    }

    // Again: all cached, and `status` names the commits.
    let mut status_args = vec!["status", "pipelines/rank_sweep.yaml"];
    for o in &overrides {
        status_args.extend(["--set", o]);
    }
    let status = t2s(dir, &endpoint, &status_args);
    assert!(status.contains(", 0 stale"), "{status}");
    for line in [
        format!("hub: google/gemma-3-1b-it@main = {model_commit} (asked the hub)"),
        format!("hub: gretelai/synthetic_text_to_sql@main = {data_commit} (asked the hub)"),
    ] {
        assert!(status.contains(&line), "lacks {line:?}:\n{status}");
    }
    // The model artifact records where its files came from.
    let objects = dir.join("project/artifacts/v1/objects");
    let model = std::fs::read_dir(&objects)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|d| t2s::cache::Manifest::read(d).unwrap().node == "model")
        .unwrap();
    let source: serde_json::Value = serde_json::from_slice(
        &std::fs::read(model.join(t2s::stages::model::HUB_SOURCE_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(source["commit"], model_commit.as_str());
    let shown = t2s(dir, &endpoint, &["show", "1"]);
    assert!(
        shown.contains("hub sources:") && shown.contains(&model_commit),
        "{shown}"
    );
    let shown: serde_json::Value =
        serde_json::from_str(&t2s(dir, &endpoint, &["show", "1", "--json"])).unwrap();
    assert!(
        shown["hub"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["node"] == "load" && h["commit"] == data_commit.as_str()),
        "{shown}"
    );
}
