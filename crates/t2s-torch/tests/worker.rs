//! The `t2s-worker` binary end to end: doctor, infer (text equal to transformers' greedy
//! generate; clean failures), generate (JSONL in/out, resume), bench-train.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value};
use t2s::worker::protocol::{JobSpec, WorkerEvent};

struct Run {
    code: i32,
    events: Vec<WorkerEvent>,
}

impl Run {
    fn result(&self) -> &Value {
        assert_eq!(self.code, 0, "worker failed: {:?}", self.events);
        match self.events.last() {
            Some(WorkerEvent::Result { value }) => value,
            other => panic!("last event is not a result: {other:?}"),
        }
    }
    fn error(&self) -> String {
        assert_ne!(self.code, 0, "worker should fail: {:?}", self.events);
        match self.events.last() {
            Some(WorkerEvent::Error { message }) => message.clone(),
            other => panic!("last event is not an error: {other:?}"),
        }
    }
}

fn run_job(dir: &Path, spec: &JobSpec) -> Run {
    run_job_env(dir, spec, None)
}

/// `run_job` with `T2S_SDPA_CUDNN` set to `sdpa_cudnn` (removed when `None`).
fn run_job_env(dir: &Path, spec: &JobSpec, sdpa_cudnn: Option<&str>) -> Run {
    run_job_with(
        dir,
        spec,
        &[("T2S_SDPA_CUDNN", sdpa_cudnn), ("T2S_SDPA", None)],
    )
}

/// `run_job` with each named variable set to its value, or removed where `None`.
fn run_job_with(dir: &Path, spec: &JobSpec, vars: &[(&str, Option<&str>)]) -> Run {
    let f = dir.join(format!("spec-{}.json", spec.job));
    std::fs::write(&f, serde_json::to_string(spec).unwrap()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_t2s-worker"));
    for (name, value) in vars {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd.arg(&f).output().unwrap();
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}")))
        .collect();
    Run {
        code: out.status.code().unwrap_or(-1),
        events,
    }
}

fn spec(job: &str, params: Value, inputs: &[(&str, &Path)]) -> JobSpec {
    let mut s = JobSpec::new(job, params);
    s.device = "cpu".into();
    for (k, p) in inputs {
        s.inputs.insert(k.to_string(), p.to_path_buf());
    }
    s
}

#[test]
fn doctor_reports_libtorch_and_devices() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_job(dir.path(), &spec("doctor", json!({}), &[]));
    let v = r.result();
    assert!(
        v["libtorch_version"]
            .as_str()
            .unwrap()
            .starts_with("2.11.0"),
        "{v}"
    );
    assert_eq!(v["default_device"], "cpu");
    assert!(v["cuda_available"].is_boolean() && v["cuda_device_count"].is_i64());
}

#[test]
fn doctor_says_where_compiled_kernels_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let doctor = spec("doctor", json!({}), &[]);
    let kept = dir.path().join("kernels");
    let named = run_job_with(
        dir.path(),
        &doctor,
        &[("T2S_KERNEL_CACHE", Some(kept.to_str().unwrap()))],
    );
    assert_eq!(
        named.result()["kernel_cache"],
        json!(kept.to_str().unwrap())
    );
    let xdg = run_job_with(
        dir.path(),
        &doctor,
        &[
            ("T2S_KERNEL_CACHE", None),
            ("XDG_CACHE_HOME", Some(dir.path().to_str().unwrap())),
        ],
    );
    assert_eq!(
        xdg.result()["kernel_cache"],
        json!(dir.path().join("t2s/kernels").to_str().unwrap())
    );
    let off = run_job_with(dir.path(), &doctor, &[("T2S_KERNEL_CACHE", Some("off"))]);
    assert_eq!(off.result()["kernel_cache"], Value::Null);
}

#[test]
fn the_sdpa_cudnn_switch_is_applied_and_a_bad_value_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let doctor = spec("doctor", json!({}), &[]);
    let default = run_job_env(dir.path(), &doctor, None).result()["sdpa_cudnn"].clone();
    let off = run_job_env(dir.path(), &doctor, Some("0"));
    if default.is_null() {
        // A worker without the CUDA shim cannot reach the switch: an error, not a no-op.
        assert!(off
            .error()
            .contains("needs a worker built with the CUDA shim"));
    } else {
        assert_eq!(
            default,
            json!(false),
            "t2s turns cuDNN attention off unless asked for it"
        );
        assert_eq!(off.result()["sdpa_cudnn"], json!(false));
        let on = run_job_env(dir.path(), &doctor, Some("1"));
        assert_eq!(on.result()["sdpa_cudnn"], json!(true));
        // Backends named in T2S_SDPA are what they say: cudnn among them stays on.
        let named = run_job_with(
            dir.path(),
            &doctor,
            &[("T2S_SDPA", Some("cudnn,flash")), ("T2S_SDPA_CUDNN", None)],
        );
        assert_eq!(named.result()["sdpa_cudnn"], json!(true));
        assert_eq!(named.result()["sdpa_backends"], json!(["flash", "cudnn"]));
    }
    let bad = run_job_env(dir.path(), &doctor, Some("yes")).error();
    assert!(
        bad.contains("T2S_SDPA_CUDNN=yes") && bad.contains("expected 0"),
        "{bad}"
    );
}

#[test]
fn unknown_job_and_bad_spec_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let msg = run_job(dir.path(), &spec("nope", json!({}), &[])).error();
    assert!(msg.contains("unknown job `nope`"), "{msg}");
    let f = dir.path().join("bad.json");
    std::fs::write(&f, "{").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_t2s-worker"))
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"event\":\"error\""));
}

#[test]
fn infer_raw_greedy_equals_transformers_and_fails_cleanly() {
    let Some(py) = python() else { return };
    let dir = tiny_model(&py, 1, false);
    let work = tempfile::tempdir().unwrap();
    let (prompt, context) = (
        "How many users are older than 30?",
        "CREATE TABLE users (id INTEGER, age INTEGER);",
    );
    let params = json!({"prompt": prompt, "context": context, "raw": true, "greedy": true, "max_new_tokens": 24});
    let r = run_job(
        work.path(),
        &spec("infer", params.clone(), &[("model", &dir)]),
    );
    let v = r.result().clone();
    let rendered = t2s::data::format::chat_prompt(prompt, context);
    let hf: Value = serde_json::from_str(&run_py(
        &py,
        "hf_infer.py",
        &[
            "--model",
            dir.to_str().unwrap(),
            "--text",
            &rendered,
            "--max-new",
            "24",
            "--eos",
            "1,106",
        ],
    ))
    .unwrap();
    assert_eq!(v["text"], hf["text"], "worker {v} vs HF {hf}");
    assert_eq!(
        v["new_tokens"].as_u64().unwrap() as usize,
        hf["ids"].as_array().unwrap().len()
    );
    assert!(v["sql"].is_null());
    // Not raw: the SQL extraction is applied.
    let mut p2 = params.clone();
    p2["raw"] = json!(false);
    let v2 = run_job(work.path(), &spec("infer", p2, &[("model", &dir)]))
        .result()
        .clone();
    assert_eq!(
        v2["sql"].as_str().unwrap(),
        t2s::eval::extract::extract_sql(v2["text"].as_str().unwrap())
    );

    // Missing model directory.
    let msg = run_job(
        work.path(),
        &spec(
            "infer",
            params.clone(),
            &[("model", &work.path().join("nope"))],
        ),
    )
    .error();
    assert!(
        msg.contains("input `model`") && msg.contains("nope"),
        "{msg}"
    );
    // No config.json there.
    let msg = run_job(
        work.path(),
        &spec("infer", params.clone(), &[("model", work.path())]),
    )
    .error();
    assert!(msg.contains("config.json"), "{msg}");
    // An adapter made for another base (2 KV heads: k/v shapes differ).
    let other = tiny_model(&py, 2, false);
    let ad = work.path().join("adapter-kv2");
    peft_adapter(&py, &other, &ad, &[]);
    let msg = run_job(
        work.path(),
        &spec(
            "infer",
            params.clone(),
            &[("model", &dir), ("adapter", &ad)],
        ),
    )
    .error();
    assert!(
        msg.contains("k_proj") && msg.contains("another base model"),
        "{msg}"
    );
    // A prompt beyond max_position_embeddings (512 in the tiny config).
    let mut p3 = params.clone();
    p3["context"] = json!("SELECT name FROM users; ".repeat(200));
    let msg = run_job(work.path(), &spec("infer", p3, &[("model", &dir)])).error();
    assert!(msg.contains("max_position_embeddings"), "{msg}");
}

#[test]
fn generate_job_writes_jsonl_and_resumes() {
    let Some(py) = python() else { return };
    let dir = tiny_model(&py, 1, false);
    let work = tempfile::tempdir().unwrap();
    let prompts = work.path().join("prompts.jsonl");
    let rows: Vec<String> = (0..5)
        .map(|i| {
            let text = t2s::data::format::chat_prompt_from_content(&format!(
                "Request {i}: list {} users",
                "all ".repeat(i)
            ));
            json!({"id": format!("r{i}"), "text": text}).to_string()
        })
        .collect();
    std::fs::write(&prompts, rows.join("\n") + "\n").unwrap();
    let out = work.path().join("out/gen.jsonl");
    let params = json!({"prompts_file": prompts, "out_file": out, "max_new_tokens": 12, "batch_size": 2, "greedy": true});
    let r = run_job(
        work.path(),
        &spec("generate", params.clone(), &[("model", &dir)]),
    );
    let v = r.result().clone();
    assert_eq!(v["rows"], 5);
    assert!(r.events.iter().any(|e| matches!(
        e,
        WorkerEvent::Progress {
            done: 5,
            total: Some(5),
            ..
        }
    )));
    let first = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Value> = first
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    // Same text as generating one prompt alone through infer-like single batches.
    let p1 = json!({"prompts_file": prompts, "out_file": work.path().join("single.jsonl"), "max_new_tokens": 12, "batch_size": 1, "greedy": true});
    run_job(work.path(), &spec("generate", p1, &[("model", &dir)])).result();
    let single = std::fs::read_to_string(work.path().join("single.jsonl")).unwrap();
    let by_id = |s: &str| -> std::collections::BTreeMap<String, Value> {
        s.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (v["id"].as_str().unwrap().to_string(), v)
            })
            .collect()
    };
    assert_eq!(by_id(&first), by_id(&single), "batch_size 2 vs 1");
    // Resume: nothing to do.
    let v = run_job(
        work.path(),
        &spec("generate", params.clone(), &[("model", &dir)]),
    )
    .result()
    .clone();
    assert_eq!(
        (v["rows"].as_u64(), v["generated_rows"].as_u64()),
        (Some(5), Some(0))
    );
    // A torn last line (crash mid-write) is cut off and its row regenerated.
    let kept: Vec<&str> = first.lines().take(3).collect();
    std::fs::write(&out, kept.join("\n") + "\n{\"id\": \"r").unwrap();
    let v = run_job(work.path(), &spec("generate", params, &[("model", &dir)]))
        .result()
        .clone();
    assert_eq!(
        (v["rows"].as_u64(), v["generated_rows"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(
        by_id(&std::fs::read_to_string(&out).unwrap()),
        by_id(&first)
    );
}

#[test]
fn bench_train_runs_the_tiny_shape() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_job(
        dir.path(),
        &spec(
            "bench-train",
            json!({"shape": "tiny", "batch": 2, "seq": 32, "rank": 4, "steps": 2, "warmup": 1}),
            &[],
        ),
    );
    let v = r.result();
    assert!(v["tokens_per_s"].as_f64().unwrap() > 0.0);
    let loss = v["final_loss"].as_f64().unwrap();
    // Random init: loss ≈ ln(4096) ≈ 8.3.
    assert!((loss - 4096f64.ln()).abs() < 1.0, "{loss}");
    assert_eq!(v["lora_matmul"], json!("kernels"));
}

#[test]
fn bench_train_takes_how_the_lora_products_multiply() {
    let dir = tempfile::tempdir().unwrap();
    let params = |mm: &str| {
        json!({"shape": "tiny", "batch": 1, "seq": 8, "rank": 4, "steps": 1, "warmup": 0,
               "lora_matmul": mm})
    };
    let r = run_job(dir.path(), &spec("bench-train", params("gemm"), &[]));
    assert_eq!(r.result()["lora_matmul"], json!("gemm"));
    let r = run_job(dir.path(), &spec("bench-train", params("tensor"), &[]));
    assert!(r.error().contains("lora_matmul: `tensor`"), "{}", r.error());
}

#[test]
fn bench_train_profile_writes_a_trace_and_summarises_it() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.json");
    let job = spec(
        "bench-train",
        json!({"shape": "tiny", "batch": 2, "seq": 32, "rank": 4, "steps": 1, "warmup": 0,
               "profile": trace}),
        &[],
    );
    let shim = run_job(dir.path(), &spec("doctor", json!({}), &[])).result()["cuda_graphs_built"]
        == json!(true);
    let r = run_job(dir.path(), &job);
    if !shim {
        assert!(r
            .error()
            .contains("needs a worker built with the CUDA shim"));
        return;
    }
    let p = &r.result()["profile"];
    assert!(trace.is_file());
    assert_eq!(p["steps"], json!(2));
    let ops: Vec<&str> = p["top_cpu_ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(
        ops.contains(&"aten::mm"),
        "matrix products dominate a step: {ops:?}"
    );
    // On the CPU no kernel runs on a GPU.
    assert_eq!(p["kernels_per_step"], json!(0.0));
}

/// `merge_adapter: false` keeps the adapter separate (fp32) and generates what the merged
/// model generates (greedy, fp32: the same tokens); the adapter does change the output.
#[test]
fn generate_with_the_adapter_merged_or_kept_separate_gives_the_same_text() {
    let Some(py) = python() else { return };
    let dir = tiny_model(&py, 1, false);
    let work = tempfile::tempdir().unwrap();
    let ad = work.path().join("adapter");
    peft_adapter(&py, &dir, &ad, &[]);
    let prompts = work.path().join("prompts.jsonl");
    let rows: Vec<String> = (0..3)
        .map(|i| {
            let text = t2s::data::format::chat_prompt_from_content(&format!("Request {i}"));
            json!({"id": format!("r{i}"), "text": text}).to_string()
        })
        .collect();
    std::fs::write(&prompts, rows.join("\n") + "\n").unwrap();
    let gen = |name: &str, extra: Value, adapter: bool| -> String {
        let out = work.path().join(format!("{name}.jsonl"));
        let mut params = json!({"prompts_file": prompts, "out_file": out, "max_new_tokens": 10,
                                "batch_size": 3, "greedy": true, "dtype": "float32"});
        for (k, v) in extra.as_object().unwrap() {
            params[k] = v.clone();
        }
        let mut inputs = vec![("model", dir.as_path())];
        if adapter {
            inputs.push(("adapter", ad.as_path()));
        }
        run_job(work.path(), &spec("generate", params, &inputs)).result();
        std::fs::read_to_string(out).unwrap()
    };
    let merged = gen("merged", json!({}), true);
    let separate = gen("separate", json!({"merge_adapter": false}), true);
    let base = gen("base", json!({}), false);
    assert_eq!(merged, separate);
    assert_ne!(merged, base, "the adapter should change the generations");
    // A bad value is a clear error naming the param.
    let out = work.path().join("bad.jsonl");
    let params = json!({"prompts_file": prompts, "out_file": out, "merge_adapter": "no"});
    let msg = run_job(
        work.path(),
        &spec("generate", params, &[("model", &dir), ("adapter", &ad)]),
    )
    .error();
    assert!(msg.contains("merge_adapter"), "{msg}");
}
