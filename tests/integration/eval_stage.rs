//! The `evaluate` stage end to end with a stand-in worker (tests/fixtures/fake_worker.py):
//! prompts in the chat format, resume from the partial area, SQL extraction, scoring of the base
//! model and an adapter, paired comparison, files and metrics.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use serde_json::{json, Map, Value};
use t2s::data::examples::{write_stored, Stored};
use t2s::data::{LoadedRow, Row};
use t2s::eval::nearmiss;
use t2s::stages::{registry, MetricsSink, StageContext, StageInput};
use t2s::worker::WorkerLauncher;

#[derive(Default)]
struct Sink(Mutex<Vec<(String, f64)>>);
impl MetricsSink for Sink {
    fn metric(&self, name: &str, _step: Option<i64>, value: f64) {
        self.0.lock().unwrap().push((name.to_string(), value));
    }
}

fn input(stage: &str, node: &str, dir: &std::path::Path) -> StageInput {
    StageInput {
        stage: stage.into(),
        node: node.into(),
        kind: stage.into(),
        matrix: BTreeMap::new(),
        dir: dir.to_path_buf(),
    }
}

#[test]
fn evaluates_base_and_adapter_with_resume() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    // Split artifact with a test subset of generated gretel-like rows.
    let items = nearmiss::generate(30, 8);
    let stored: Vec<Stored> = items
        .iter()
        .enumerate()
        .map(|(i, it)| Stored {
            row: LoadedRow {
                split: "test".into(),
                row: Row {
                    id: 1000 + i as i64,
                    domain: it.domain.clone(),
                    domain_description: String::new(),
                    sql_complexity: it.sql_complexity.clone(),
                    sql_complexity_description: String::new(),
                    sql_task_type: it.sql_task_type.clone(),
                    sql_task_type_description: String::new(),
                    sql_prompt: format!("question {i}"),
                    sql_context: it.context.clone(),
                    sql: it.gold.clone(),
                    sql_explanation: String::new(),
                },
            },
            ids: vec![1, 2, 3],
            prompt_len: 2,
        })
        .collect();
    let split = r.join("split");
    write_stored(&split.join("test"), &stored).unwrap();
    let model = r.join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("config.json"), "{}").unwrap();
    let adapter = r.join("train_r8");
    std::fs::create_dir_all(&adapter).unwrap();
    std::fs::write(adapter.join("adapter_config.json"), "{}").unwrap();

    // Answers: the base model gives the near-miss with the seed's prefix; the adapter gives the
    // gold in a code fence followed by prose.
    let mut base = Map::new();
    let mut tuned = Map::new();
    for (i, it) in items.iter().enumerate() {
        let id = (1000 + i).to_string();
        base.insert(id.clone(), json!(format!("SQL: {}", it.pred)));
        tuned.insert(
            id,
            json!(format!("```sql\n{}\n```\nExplanation: done.", it.gold)),
        );
    }
    let answers = r.join("answers.json");
    std::fs::write(
        &answers,
        json!({"base": base, adapter.display().to_string(): tuned}).to_string(),
    )
    .unwrap();
    let log = r.join("gen.log");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let exe = r.join("fake-worker");
    let script = std::env::current_dir()
        .unwrap()
        .join("tests/fixtures/fake_worker.py");
    std::fs::write(
        &exe,
        format!(
            "#!/bin/sh\nexport FAKE_T2S_ANSWERS=\"{}\" FAKE_T2S_LOG=\"{}\"\n\
             exec \"{python}\" \"{}\" \"$@\"\n",
            answers.display(),
            log.display(),
            script.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // A previous, interrupted attempt generated the first 5 base examples.
    let partial = r.join("partial");
    std::fs::create_dir_all(partial.join("base")).unwrap();
    let mut f = std::fs::File::create(partial.join("base/generations.jsonl")).unwrap();
    for i in 0..5 {
        let id = (1000 + i).to_string();
        writeln!(
            f,
            "{}",
            json!({"id": id, "text": base[&id],
                "new_tokens": base[&id].as_str().unwrap().split_whitespace().count()})
        )
        .unwrap();
    }
    drop(f);

    let stage = registry::lookup("evaluate").expect("evaluate is registered");
    let mut params = Map::new();
    for spec in stage.params().specs() {
        params.insert(spec.name.clone(), spec.default.clone().unwrap());
    }
    params.insert("bootstrap_samples".into(), json!(200));
    params.insert("device".into(), json!("cpu"));
    let inputs = vec![
        input("split", "split", &split),
        input("model", "model", &model),
        input("train", "train[lora_r=8]", &adapter),
    ];
    let out = r.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let sink = Sink::default();
    let cancel = AtomicBool::new(false);
    let worker = WorkerLauncher { exe };
    let ctx = StageContext {
        node_id: "evaluate",
        stage_name: "evaluate",
        params: &params,
        inputs: &inputs,
        out_dir: &out,
        partial_dir: &partial,
        pipeline_dir: r,
        metrics: &sink,
        cancel: &cancel,
        worker: &worker,
    };
    assert!(!stage.uses_gpu(&params));
    let outcome = stage.run(&ctx).unwrap();
    assert!(outcome.resumed);

    // Resume: the base system generated only the 25 missing examples; the adapter all 30.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged.lines().filter(|l| l.starts_with("base ")).count(),
        25
    );
    assert_eq!(
        logged.lines().filter(|l| !l.starts_with("base ")).count(),
        30
    );

    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    let tuned_ex = &m["systems"]["train[lora_r=8]"]["execution_accuracy"];
    assert_eq!(tuned_ex["value"], 1.0);
    assert_eq!(m["systems"]["train[lora_r=8]"]["exact_match"]["value"], 1.0);
    let base_ex = m["systems"]["base"]["execution_accuracy"]["value"]
        .as_f64()
        .unwrap();
    assert!(base_ex < 1.0);
    assert_eq!(m["systems"]["base"]["generation"]["rows"], 30);
    let c = &m["comparisons"][0];
    assert_eq!(
        (c["a"].as_str(), c["b"].as_str()),
        (Some("train[lora_r=8]"), Some("base"))
    );
    assert!((c["diff"].as_f64().unwrap() - (1.0 - base_ex)).abs() < 1e-12);

    let preds: Vec<Value> = std::fs::read_to_string(out.join("predictions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(preds.len(), 60);
    let first_tuned = preds
        .iter()
        .find(|p| p["system"] == "train[lora_r=8]")
        .unwrap();
    assert_eq!(
        first_tuned["prediction"].as_str().unwrap(),
        items[0].gold.trim_end_matches(';').to_string() + ";"
    );
    assert_eq!(first_tuned["row"]["sql"], items[0].gold.as_str());
    assert!(first_tuned["scores"]["exec"]["correct"].as_bool().unwrap());

    let recorded = sink.0.lock().unwrap();
    assert!(recorded
        .iter()
        .any(|(k, v)| k == "train[lora_r=8]/execution_accuracy" && *v == 1.0));
    assert!(recorded.iter().any(|(k, _)| k == "base/gen_tokens_per_s"));
    assert_eq!(outcome.metrics["base/execution_accuracy"], base_ex);

    // Test-suite accuracy beside execution accuracy: the tuned system copies the gold, so it
    // stays right; the base's can only drop; paired tests on it; per-example verdicts.
    let tuned_ts = &m["systems"]["train[lora_r=8]"]["test_suite"];
    assert_eq!(tuned_ts["accuracy"]["value"], 1.0);
    assert_eq!(tuned_ts["false_positives_caught"], 0);
    let base_ts = m["systems"]["base"]["test_suite"]["accuracy"]["value"]
        .as_f64()
        .unwrap();
    assert!(base_ts <= base_ex);
    assert_eq!(
        m["comparisons_test_suite"][0]["a"].as_str(),
        Some("train[lora_r=8]")
    );
    assert!(first_tuned["scores"]["test_suite"]["correct"]
        .as_bool()
        .unwrap());
    assert_eq!(outcome.metrics["base/test_suite_accuracy"], base_ts);
    drop(recorded);

    // The same evaluation straight through, in fresh areas: the resumed one is the same bytes
    // (regression: its metrics.json recorded how many rows the attempt generated, so a resume
    // changed the artifact and the report's key).
    let (partial2, out2) = (r.join("partial2"), r.join("out2"));
    std::fs::create_dir_all(&out2).unwrap();
    let ctx2 = StageContext {
        out_dir: &out2,
        partial_dir: &partial2,
        ..ctx
    };
    assert!(!stage.run(&ctx2).unwrap().resumed);
    for file in ["metrics.json", "predictions.jsonl"] {
        assert!(
            std::fs::read(out.join(file)).unwrap() == std::fs::read(out2.join(file)).unwrap(),
            "{file} of the resumed evaluation differs from the uninterrupted one's"
        );
    }
}
