//! The `train` stage kind end to end: it finds the split and model among its inputs, runs the
//! worker's `train` job, forwards per-step metrics to the sink, reports final metrics, and a
//! second run of the same key (same partial area) reports that it resumed.

mod train_util;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use serde_json::{json, Map, Value};
use t2s::stages::{registry, MetricsSink, StageContext, StageError, StageInput};
use t2s::worker::WorkerLauncher;
use train_util::*;

#[derive(Default)]
struct Sink {
    metrics: Mutex<Vec<(String, Option<i64>, f64)>>,
    progress: Mutex<Vec<u64>>,
}

impl MetricsSink for Sink {
    fn metric(&self, name: &str, step: Option<i64>, value: f64) {
        self.metrics
            .lock()
            .unwrap()
            .push((name.into(), step, value));
    }
    fn progress(&self, done: u64, _total: Option<u64>, _message: &str) {
        self.progress.lock().unwrap().push(done);
    }
}

fn input(stage: &str, kind: &str, dir: &std::path::Path) -> StageInput {
    StageInput {
        stage: stage.into(),
        node: stage.into(),
        kind: kind.into(),
        matrix: BTreeMap::new(),
        dir: dir.to_path_buf(),
    }
}

#[test]
fn the_train_stage_runs_the_worker_and_resumes_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let model = tiny_model_dir(&root.join("model"), 48);
    let split = root.join("split");
    write_split(&split, &examples(12, 48, 8, 4), &examples(4, 48, 8, 5));
    let stage = registry::lookup("train").expect("train is registered");

    let mut params: Map<String, Value> = stage
        .params()
        .specs()
        .iter()
        .map(|s| (s.name.clone(), s.default.clone().unwrap()))
        .collect();
    for (k, v) in [
        ("lora_r", json!(2)),
        ("batch_size", json!(4)),
        ("max_steps", json!(4)),
        ("eval_steps", json!(2)),
        ("save_steps", json!(2)),
        ("logging_steps", json!(1)),
        ("device", json!("cpu")),
        ("max_length", json!(64)),
    ] {
        params.insert(k.into(), v);
    }
    let params = stage.params().resolve(&params).expect("valid params");
    assert!(!stage.uses_gpu(&params));
    let inputs = vec![
        input("split", "split", &split),
        input("base", "train", &model),
    ];
    let launcher = WorkerLauncher { exe: worker() };
    let cancel = AtomicBool::new(false);
    let partial = root.join("partial");
    let run = |out: &std::path::Path, sink: &Sink| {
        std::fs::create_dir_all(out).unwrap();
        let ctx = StageContext {
            node_id: "train",
            stage_name: "train",
            params: &params,
            inputs: &inputs,
            out_dir: out,
            partial_dir: &partial,
            pipeline_dir: root,
            metrics: sink,
            cancel: &cancel,
            worker: &launcher,
        };
        stage.run(&ctx)
    };
    let sink = Sink::default();
    let o = run(&root.join("out1"), &sink).unwrap();
    assert!(!o.resumed);
    assert_eq!(o.metrics["global_step"], 4.0);
    assert!(o.metrics.contains_key("train_loss") && o.metrics.contains_key("best_eval_loss"));
    let m = sink.metrics.lock().unwrap();
    let steps: Vec<i64> = m
        .iter()
        .filter(|(n, _, _)| n == "loss")
        .filter_map(|(_, s, _)| *s)
        .collect();
    assert_eq!(steps, [1, 2, 3, 4]);
    assert_eq!(
        m.iter()
            .filter(|(n, s, _)| n == "eval_loss" && s.is_some())
            .count(),
        2
    );
    assert!(m.iter().any(|(n, _, _)| n == "tokens_per_s"));
    assert_eq!(*sink.progress.lock().unwrap(), [1, 2, 3, 4]);
    assert!(root.join("out1/adapter_model.safetensors").is_file());
    assert!(root.join("out1/trainer_state.json").is_file());

    // Same key again: the newest checkpoint (step 4) is complete, so it resumes there.
    let sink2 = Sink::default();
    let o2 = run(&root.join("out2"), &sink2).unwrap();
    assert!(o2.resumed);
    assert_eq!(
        std::fs::read(root.join("out1/adapter_model.safetensors")).unwrap(),
        std::fs::read(root.join("out2/adapter_model.safetensors")).unwrap()
    );

    // A missing split is a clear stage error.
    let inputs_bad = vec![input("base", "train", &model)];
    let sink3 = Sink::default();
    let ctx = StageContext {
        node_id: "train",
        stage_name: "train",
        params: &params,
        inputs: &inputs_bad,
        out_dir: &root.join("out3"),
        partial_dir: &partial,
        pipeline_dir: root,
        metrics: &sink3,
        cancel: &cancel,
        worker: &launcher,
    };
    match stage.run(&ctx) {
        Err(StageError::Failed(m)) => assert!(m.contains("needs a split artifact"), "{m}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}
