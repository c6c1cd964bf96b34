//! The data stage kinds wired end to end through `StageKind::run`: load (builtin) → tokenizer →
//! preprocess → split, and eda; plus the load stage's clear failure over the bad-row threshold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde_json::{json, Map, Value};
use t2s::stages::{registry, MetricsSink, StageContext, StageInput, StageOutcome};
use t2s::worker::WorkerLauncher;

struct NoMetrics;
impl MetricsSink for NoMetrics {
    fn metric(&self, _: &str, _: Option<i64>, _: f64) {}
}

fn run(
    kind: &str,
    params: Value,
    inputs: &[(&str, &Path)],
    out: &Path,
) -> anyhow::Result<StageOutcome> {
    let k = registry::lookup(kind).unwrap_or_else(|| panic!("kind {kind} registered"));
    let p = k
        .params()
        .resolve(params.as_object().unwrap())
        .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
    let inputs: Vec<StageInput> = inputs
        .iter()
        .map(|(kind, dir)| StageInput {
            stage: kind.to_string(),
            node: kind.to_string(),
            kind: kind.to_string(),
            matrix: BTreeMap::new(),
            dir: dir.to_path_buf(),
        })
        .collect();
    std::fs::create_dir_all(out)?;
    let partial = out.with_extension("partial");
    let cancel = AtomicBool::new(false);
    let worker = WorkerLauncher {
        exe: PathBuf::from("t2s-worker"),
    };
    let ctx = StageContext {
        node_id: kind,
        stage_name: kind,
        params: &p,
        inputs: &inputs,
        out_dir: out,
        partial_dir: &partial,
        pipeline_dir: out.parent().unwrap(),
        metrics: &NoMetrics,
        cancel: &cancel,
        worker: &worker,
    };
    Ok(k.run(&ctx)?)
}

#[test]
fn data_stages_run_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let o = run(
        "load",
        json!({"source": "builtin:600", "seed": 5}),
        &[],
        &d("load"),
    )
    .unwrap();
    assert_eq!(o.metrics["rows"], 600.0);
    assert_eq!(t2s::data::read_rows(&d("load")).unwrap().len(), 600);
    run(
        "tokenizer",
        json!({"vocab_size": 700}),
        &[("load", &d("load"))],
        &d("tok"),
    )
    .unwrap();
    let rep: Value =
        serde_json::from_slice(&std::fs::read(d("tok").join("tokenizer_report.json")).unwrap())
            .unwrap();
    assert_eq!(rep["special_ids"]["bos"], 2);
    assert_eq!(rep["special_ids"]["end_of_turn"], 5);
    let o = run(
        "preprocess",
        json!({"max_length": 400, "truncation": "truncate_context"}),
        &[("load", &d("load")), ("tokenizer", &d("tok"))],
        &d("pre"),
    )
    .unwrap();
    assert_eq!(o.metrics["examples"] + o.metrics["dropped"], 600.0);
    let ex = t2s::data::read_examples(&d("pre")).unwrap();
    assert!(ex
        .iter()
        .all(|e| e.input_ids.len() <= 400 && e.input_ids[0] == 2));
    run(
        "split",
        json!({"stratify": "sql_complexity", "validation_size": 60, "test_size": 0.1}),
        &[("preprocess", &d("pre"))],
        &d("split"),
    )
    .unwrap();
    let sizes: Vec<usize> = ["train", "validation", "test"]
        .iter()
        .map(|s| t2s::data::load_split(&d("split"), s).unwrap().len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), ex.len());
    assert!(
        sizes[1].abs_diff(60) <= 4 && sizes[2].abs_diff(ex.len() / 10) <= 4,
        "{sizes:?}"
    );
    assert!(d("split").join("tokenizer.json").is_file());
    run(
        "eda",
        json!({}),
        &[("load", &d("load")), ("tokenizer", &d("tok"))],
        &d("eda"),
    )
    .unwrap();
    for f in [
        "eda_stats.json",
        "figures/complexity.png",
        "figures/tokens.svg",
    ] {
        assert!(d("eda").join(f).is_file(), "{f}");
    }

    // Passthrough of an existing tokenizer.json: same bytes out, its blake3 in the key facts.
    std::fs::copy(d("tok").join("tokenizer.json"), d("mine.json")).unwrap();
    run("tokenizer", json!({"from": "mine.json"}), &[], &d("tok2")).unwrap();
    assert_eq!(
        std::fs::read(d("tok2").join("tokenizer.json")).unwrap(),
        std::fs::read(d("mine.json")).unwrap()
    );
    let k = registry::lookup("tokenizer").unwrap();
    let mut p = Map::new();
    p.insert("from".into(), json!("mine.json"));
    let facts = k.key_facts(&p, tmp.path()).unwrap();
    let fp = t2s::data::tokenizer::fingerprint(&d("mine.json")).unwrap();
    assert_eq!(facts.get("tokenizer_blake3"), Some(&fp));

    // A load over the bad-row threshold fails, naming the file.
    let bad = d("bad.jsonl");
    std::fs::write(&bad, "{\"id\": 1}\n{\"id\": 2}\n").unwrap();
    let e = run("load", json!({"source": "bad.jsonl"}), &[], &d("load_bad")).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("bad.jsonl") && msg.contains("2 of 2"), "{msg}");
}

/// A corpus split with the task's split among its needs drops every row whose request or
/// query is in the task's validation or test set (pretraining must not see eval answers).
#[test]
fn corpus_split_is_decontaminated_against_the_task_split() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    // Two domains: the generator repeats requests, so the corpus overlaps the task.
    let domains = json!(["banking", "music"]);
    for (name, seed, rows) in [("load", 5, 300), ("corpus", 77, 900)] {
        let src = format!("builtin:{rows}");
        run(
            "load",
            json!({"source": src, "seed": seed, "domains": domains}),
            &[],
            &d(name),
        )
        .unwrap();
    }
    run(
        "tokenizer",
        json!({"vocab_size": 600}),
        &[("load", &d("load"))],
        &d("tok"),
    )
    .unwrap();
    for (name, src, format) in [("pre", "load", "chat"), ("cpre", "corpus", "commented")] {
        run(
            "preprocess",
            json!({"format": format, "max_length": 2000}),
            &[("load", &d(src)), ("tokenizer", &d("tok"))],
            &d(name),
        )
        .unwrap();
    }
    run(
        "split",
        json!({"validation_size": 30, "test_size": 60}),
        &[("preprocess", &d("pre"))],
        &d("split"),
    )
    .unwrap();
    let o = run(
        "split",
        json!({"validation_size": 20, "test_size": 0}),
        &[("preprocess", &d("cpre")), ("split", &d("split"))],
        &d("csplit"),
    )
    .unwrap();
    let dropped = o.metrics["decontaminated_rows"] as usize;
    assert!(dropped > 0, "the corpus should overlap the task here");
    let held: Vec<_> = ["validation", "test"]
        .iter()
        .flat_map(|s| t2s::data::load_split(&d("split"), s).unwrap())
        .collect();
    let corpus: Vec<_> = ["train", "validation"]
        .iter()
        .flat_map(|s| t2s::data::load_split(&d("csplit"), s).unwrap())
        .collect();
    assert_eq!(corpus.len() + dropped, 900);
    for c in &corpus {
        assert!(
            held.iter()
                .all(|h| h.row.sql_prompt != c.row.sql_prompt && h.row.sql != c.row.sql),
            "corpus row {} leaks an evaluation request or query",
            c.row.id
        );
    }
    let rep: Value =
        serde_json::from_slice(&std::fs::read(d("csplit").join("split_report.json")).unwrap())
            .unwrap();
    assert_eq!(rep["decontaminated"], json!(dropped));
}
