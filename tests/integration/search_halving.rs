//! Issue 34: successive halving on a real `train` stage (the smoke pipeline's toy sizes, the
//! libtorch worker). A trial stopped at a rung keeps its checkpoint; promoting it resumes from
//! there, and the fully trained trial is bit for bit the training run straight to the end
//! (same key, same files), so halving changes what runs, never what a trial produces.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const UPSTREAM: &str = r#"
stages:
  load:
    kind: load
    params: {source: "builtin:240", seed: 7}
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
    params: {seed: 0, validation_size: 16, test_size: 24}
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
      batch_size: 16
      max_steps: 6
      max_length: 384
      seed: 1
      device: cpu
  train:
    kind: train
    needs: [split, base]
"#;

const TRAIN_PARAMS: &str = r#"    params:
      method: lora
      lora_r: R
      lr: LR
      lora_alpha: 16
      lora_dropout: 0.0
      scheduler: cosine
      batch_size: 8
      max_steps: 8
      eval_steps: 2
      save_steps: 2
      logging_steps: 2
      max_length: 512
      seed: 2
      device: cpu
"#;

const SEARCH: &str = r#"    search:
      space:
        lora_r: {values: [4, 8, 16]}
        lr: {values: [0.001, 0.002, 0.004]}
      strategy: random
      trials: 4
      seed: 1
      objective: {stage: train, metric: eval_loss}
      halving: {min_steps: 2, reduction_factor: 2}
"#;

fn worker() -> PathBuf {
    common::worker()
}

fn t2s(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_t2s"));
    c.current_dir(root)
        .env("T2S_WORKER", worker())
        .env("T2S_ROOT", root)
        .env("OMP_NUM_THREADS", "1")
        .env_remove("RUST_LOG");
    c
}

/// `t2s run FILE` in `root`, asserting success: (stdout, stderr).
fn run(root: &Path, file: &Path) -> (String, String) {
    let out = t2s(root).arg("run").arg(file).output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "t2s run failed\n{o}\n{e}");
    (o, e)
}

/// node id → (key, file → blake3) of every committed object under `root`.
fn objects(root: &Path) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
    std::fs::read_dir(root.join("artifacts/v1/objects"))
        .unwrap()
        .map(|e| {
            let m = t2s::cache::Manifest::read(&e.unwrap().path()).unwrap();
            let files = m
                .files
                .iter()
                .map(|(k, v)| (k.clone(), v.blake3.clone()))
                .collect();
            (m.node.clone(), (m.key.clone(), files))
        })
        .collect()
}

#[test]
fn halving_stops_trials_at_rungs_and_a_promoted_trial_resumes_to_the_straight_result() {
    let dir = tempfile::tempdir().unwrap();
    let searched = dir.path().join("search.yaml");
    let params = TRAIN_PARAMS
        .replace("lora_r: R", "lora_r: ${matrix.lora_r}")
        .replace("lr: LR", "lr: ${matrix.lr}");
    std::fs::write(
        &searched,
        format!("name: halving{UPSTREAM}{SEARCH}{params}"),
    )
    .unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let (out, err) = run(&root, &searched);
    let statuses = common::statuses(&out);

    // Rungs 2, 4, 8: four trials stop at step 2, two at 4, one trains fully.
    let rung = |steps: u32| {
        statuses
            .keys()
            .filter(|n| n.ends_with(&format!(",rung_steps={steps}]")))
            .count()
    };
    assert_eq!((rung(2), rung(4)), (4, 2), "{out}");
    let full: Vec<&String> = statuses
        .keys()
        .filter(|n| n.starts_with("train[") && !n.contains("rung_steps"))
        .collect();
    assert_eq!(full.len(), 1, "{out}");
    // Promotions resume from the rung's checkpoint instead of restarting.
    assert_eq!(statuses[full[0]], "resumed", "{out}");
    assert!(
        statuses
            .iter()
            .filter(|(n, _)| n.ends_with(",rung_steps=4]"))
            .all(|(_, s)| s == "resumed"),
        "{out}"
    );
    assert!(err.contains("search of `train`"), "{err}");
    assert!(err.contains("(best)"), "{err}");
    // Each trial trained to the last rung it reached: 2 + 2 + 4 + 8 of the grid's 9 × 8.
    assert!(
        err.contains("training steps: 16 (22% of the full grid's 72)"),
        "{err}"
    );

    // The same trial trained straight to the end, without a search: the same key and files.
    let id = full[0].clone();
    let (_, values) = t2s::pipeline::parse_node_id(&id);
    let value = |k: &str| values.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let plain = TRAIN_PARAMS
        .replace("lora_r: R", &format!("lora_r: {}", value("lora_r")))
        .replace("lr: LR", &format!("lr: {}", value("lr")));
    let straight = dir.path().join("straight.yaml");
    std::fs::write(&straight, format!("name: straight{UPSTREAM}{plain}")).unwrap();
    let root2 = dir.path().join("root2");
    std::fs::create_dir_all(&root2).unwrap();
    let (out2, _) = run(&root2, &straight);
    assert_eq!(common::statuses(&out2)["train"], "ran", "{out2}");
    assert_eq!(
        objects(&root)[&id],
        objects(&root2)["train"],
        "the promoted trial differs from the straight training"
    );
}
