//! `t2s export` through the real orchestrator binary and worker, against PEFT's
//! `merge_and_unload()` + `save_pretrained` (`scripts/oracles/peft_merge.py`): the same tensor
//! names, dtypes and values, in fp32 and in bf16, and transformers loads the export with the
//! merged model's logits. Bad inputs fail with a message that names them, and leave no model
//! and no staging directory behind.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{compare_tensors, peft_adapter, python, read_model, read_st, run_py, t2s, tiny_model};
use serde_json::Value;
use tch::{Kind, Tensor};

fn export(model: &Path, adapter: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(t2s())
        .arg("export")
        .arg("--model")
        .arg(model)
        .arg("--adapter")
        .arg(adapter)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("T2S_WORKER", env!("CARGO_BIN_EXE_t2s-worker"))
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "t2s export failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// PEFT's merge of `adapter` into `model` (in `dtype`) written to `out`, with the logits of
/// t2s's export `ours` loaded by transformers compared to it.
fn peft_merge(
    py: &str,
    model: &Path,
    adapter: &Path,
    out: &Path,
    ours: &Path,
    dtype: &str,
    save_base: Option<&Path>,
) -> Value {
    let mut args = vec![
        "--model".to_string(),
        model.display().to_string(),
        "--adapter".into(),
        adapter.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--dtype".into(),
        dtype.into(),
    ];
    if let Some(b) = save_base {
        args.extend(["--save-base".into(), b.display().to_string()]);
    }
    if ours.exists() {
        args.extend(["--t2s".into(), ours.display().to_string()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    serde_json::from_str(run_py(py, "peft_merge.py", &refs).trim()).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Float) - b.to_kind(Kind::Float))
        .abs()
        .max()
        .double_value(&[])
}

const Q: &str = "model.layers.0.self_attn.q_proj.weight";
const K: &str = "model.layers.0.self_attn.k_proj.weight";

#[test]
fn export_equals_peft_merge_and_unload_in_fp32_and_bf16() {
    let Some(py) = python() else { return };
    let model = tiny_model(&py, 1, false);
    let work = tempfile::tempdir().unwrap();
    let adapter = work.path().join("adapter");
    // Some modules only: the others must come through untouched.
    peft_adapter(
        &py,
        &model,
        &adapter,
        &[
            "--r",
            "4",
            "--alpha",
            "8",
            "--targets",
            "q_proj,v_proj,o_proj,down_proj",
        ],
    );

    // fp32: PEFT's merge is the same arithmetic on the same libtorch.
    let ours = work.path().join("out/merged");
    let said = ok(&export(&model, &adapter, &ours, &[]));
    assert!(said.contains("into 16 modules"), "{said}");
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(ours.join(f).is_file(), "{f} not copied");
    }
    let theirs = work.path().join("peft-fp32");
    let report = peft_merge(&py, &model, &adapter, &theirs, &ours, "float32", None);
    let worst = compare_tensors(&ours, &theirs);
    assert!(
        worst <= 1e-6,
        "fp32 merged weights differ from PEFT's by {worst}"
    );
    assert_eq!(report["same_names"], true, "{report}");
    let logits = report["logits_max_diff"].as_f64().unwrap();
    assert!(
        logits <= 1e-4,
        "transformers on the export: logits differ by {logits} ({report})"
    );
    // The merge happened where the adapter is, and nowhere else.
    let base = read_st(&model.join("model.safetensors"));
    let merged = read_st(&ours.join("model.safetensors"));
    assert!(max_diff(&base[Q], &merged[Q]) > 1e-3);
    assert_eq!(max_diff(&base[K], &merged[K]), 0.0);
    // No staging directory is left beside the export.
    let beside: Vec<_> = std::fs::read_dir(ours.parent().unwrap()).unwrap().collect();
    assert_eq!(beside.len(), 1);

    // Sharded as transformers shards: numbered files and an index that covers every tensor;
    // transformers loads it, and the values are the single file's.
    let sharded = work.path().join("merged-sharded");
    let said = ok(&export(
        &model,
        &adapter,
        &sharded,
        &["--max-shard-size", "100KB"],
    ));
    assert!(!sharded.join("model.safetensors").exists());
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(sharded.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let files: std::collections::BTreeSet<&str> = index["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(files.len() > 1, "{said}");
    let n = files.len();
    for (i, f) in files.iter().enumerate() {
        assert_eq!(*f, format!("model-{:05}-of-{n:05}.safetensors", i + 1));
        assert!(sharded.join(f).is_file());
    }
    let all = read_model(&sharded);
    assert_eq!(index["weight_map"].as_object().unwrap().len(), all.len());
    let total: i64 = all.values().map(|t| t.numel() as i64 * 4).sum();
    assert_eq!(index["metadata"]["total_size"].as_i64(), Some(total));
    for (name, t) in &merged {
        assert!(all[name].equal(t), "{name}");
    }
    let theirs_again = work.path().join("peft-fp32-again");
    let report = peft_merge(
        &py,
        &model,
        &adapter,
        &theirs_again,
        &sharded,
        "float32",
        None,
    );
    assert_eq!(report["same_names"], true, "{report}");
    assert!(
        report["logits_max_diff"].as_f64().unwrap() <= 1e-4,
        "{report}"
    );

    // bf16 base: PEFT adds the fp32 delta to the bf16 weight and rounds once, as t2s does.
    let base16 = work.path().join("base-bf16");
    let theirs16 = work.path().join("peft-bf16");
    peft_merge(
        &py,
        &model,
        &adapter,
        &theirs16,
        Path::new("/nonexistent"),
        "bfloat16",
        Some(&base16),
    );
    let ours16 = work.path().join("merged-bf16");
    ok(&export(&base16, &adapter, &ours16, &[]));
    let worst = compare_tensors(&ours16, &theirs16);
    assert_eq!(
        worst, 0.0,
        "bf16 merged weights differ from PEFT's by {worst}"
    );

    // --dtype converts after the merge (one rounding of W + ΔW), and the config says so.
    let converted = work.path().join("merged-as-bf16");
    ok(&export(
        &model,
        &adapter,
        &converted,
        &["--dtype", "bfloat16"],
    ));
    let conv = read_st(&converted.join("model.safetensors"));
    for (name, t) in &merged {
        assert_eq!(conv[name].kind(), Kind::BFloat16, "{name}");
        assert_eq!(
            max_diff(&conv[name], &t.to_kind(Kind::BFloat16)),
            0.0,
            "{name}"
        );
    }
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(converted.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["torch_dtype"], "bfloat16");
}

#[test]
fn export_refuses_bad_inputs_and_leaves_nothing_behind() {
    let Some(py) = python() else { return };
    let model = tiny_model(&py, 1, false);
    let other = tiny_model(&py, 2, false);
    let work = tempfile::tempdir().unwrap();
    let adapter = work.path().join("adapter");
    peft_adapter(&py, &model, &adapter, &["--r", "4"]);

    // An --out that holds something is never overwritten.
    let taken = work.path().join("taken");
    std::fs::create_dir_all(&taken).unwrap();
    std::fs::write(taken.join("keep.txt"), "mine").unwrap();
    let o = export(&model, &adapter, &taken, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an empty directory"));
    assert_eq!(
        std::fs::read_to_string(taken.join("keep.txt")).unwrap(),
        "mine"
    );

    // An adapter made for another base (2 KV heads: k/v projections of another width).
    let out = work.path().join("parent/merged");
    let o = export(&other, &adapter, &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("k_proj.lora_B.weight") && err.contains("shape"),
        "{err}"
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(out.parent().unwrap()).unwrap().count(),
        0,
        "staging left behind"
    );

    // Missing directories and files are usage errors.
    let o = export(&model, &work.path().join("nope"), &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--adapter"));
}

/// An adapter whose base is a hub id (as PEFT writes for a hub model) takes its base from the
/// Hugging Face cache, offline, at the adapter's `revision`, sharded checkpoint included: the
/// same export as with `--model`. A revision the cache lacks is a usage error that names the
/// repo and the revision.
#[test]
fn export_takes_a_hub_base_from_the_hf_cache() {
    let Some(py) = python() else { return };
    let model = tiny_model(&py, 1, true);
    let work = tempfile::tempdir().unwrap();
    let adapter = work.path().join("adapter");
    peft_adapter(&py, &model, &adapter, &["--r", "4"]);
    let config_file = adapter.join("adapter_config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_file).unwrap()).unwrap();
    let set_base = |config: &mut Value, revision: &str| {
        config["base_model_name_or_path"] = Value::from("acme/tiny-gemma");
        config["revision"] = Value::from(revision);
        std::fs::write(&config_file, config.to_string()).unwrap();
    };
    set_base(&mut config, "v1");
    // The HF cache layout: refs/v1 → a commit whose snapshot holds the model's files.
    let hub = work.path().join("hub");
    let repo = hub.join("models--acme--tiny-gemma");
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/v1"), commit).unwrap();
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    let mut shards = 0;
    for entry in std::fs::read_dir(&model).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        shards += usize::from(name.starts_with("model-"));
        std::fs::copy(&path, snapshot.join(&name)).unwrap();
    }
    assert!(shards > 1, "the tiny model is sharded");

    let by_model = work.path().join("by_model");
    ok(&export(&model, &adapter, &by_model, &[]));
    let from_hub = |out: &Path| {
        Command::new(t2s())
            .arg("export")
            .arg("--adapter")
            .arg(&adapter)
            .arg("--out")
            .arg(out)
            .env("T2S_WORKER", env!("CARGO_BIN_EXE_t2s-worker"))
            .env("HF_HUB_CACHE", &hub)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap()
    };
    let by_hub = work.path().join("by_hub");
    ok(&from_hub(&by_hub));
    for file in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(by_hub.join(file)).unwrap(),
            std::fs::read(by_model.join(file)).unwrap(),
            "{file}"
        );
    }

    set_base(&mut config, "v2");
    let out = work.path().join("missing");
    let o = from_hub(&out);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("acme/tiny-gemma") && err.contains("revision v2") && err.contains("--model"),
        "{err}"
    );
    assert!(!out.exists());
}
