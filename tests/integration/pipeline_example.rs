//! The example pipeline `pipelines/examples/commands.yaml` run node by node through the
//! `command` stage kind (a minimal in-test executor; the real executor's tests live elsewhere):
//! its scripts produce the report, and the stand-in trainer resumes from its checkpoints to the
//! same result as an uninterrupted run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde_json::{json, Map, Value};
use t2s::pipeline::{load, Node, Pipeline};
use t2s::stages::command::CommandStage;
use t2s::stages::{MetricsSink, StageError, StageInput, StageKind, StageOutcome};
use t2s::worker::WorkerLauncher;

#[derive(Default)]
struct Sink(Mutex<Vec<(String, Option<i64>, f64)>>);

impl MetricsSink for Sink {
    fn metric(&self, name: &str, step: Option<i64>, value: f64) {
        self.0.lock().unwrap().push((name.to_string(), step, value));
    }
}

fn example(sets: &[&str]) -> Pipeline {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    load(Path::new("pipelines/examples/commands.yaml"), &sets).unwrap_or_else(|d| panic!("{d}"))
}

fn art(root: &Path, p: &Pipeline, id: &str) -> PathBuf {
    root.join(format!("art{}", p.index_of(id).unwrap()))
}

fn run_node(
    p: &Pipeline,
    n: &Node,
    root: &Path,
    partial: &Path,
    cancel: &AtomicBool,
) -> (Result<StageOutcome, StageError>, Sink) {
    let inputs: Vec<StageInput> = n
        .needs
        .iter()
        .map(|id| {
            let up = p.node(id).unwrap();
            StageInput {
                stage: up.stage.clone(),
                node: up.id.clone(),
                kind: up.kind.clone(),
                matrix: up.matrix.clone(),
                dir: art(root, p, id),
            }
        })
        .collect();
    let out = art(root, p, &n.id);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(partial).unwrap();
    let sink = Sink::default();
    let worker = WorkerLauncher {
        exe: PathBuf::from("/nonexistent/t2s-worker"),
    };
    let ctx = t2s::stages::StageContext {
        node_id: &n.id,
        stage_name: &n.stage,
        params: &n.params,
        inputs: &inputs,
        out_dir: &out,
        partial_dir: partial,
        pipeline_dir: p.dir(),
        metrics: &sink,
        cancel,
        worker: &worker,
    };
    let r = CommandStage.run(&ctx);
    (r, sink)
}

fn fast(p: &mut Pipeline) {
    for n in &mut p.nodes {
        if let Some(env) = n.params.get_mut("env").and_then(Value::as_object_mut) {
            if env.contains_key("STEP_SECONDS") {
                env.insert("STEP_SECONDS".into(), json!("0.01"));
            }
        }
    }
}

#[test]
fn all_nodes_run_and_the_report_gathers_every_rank() {
    let mut p = example(&[]);
    fast(&mut p);
    let tmp = tempfile::tempdir().unwrap();
    let mut finals: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for n in &p.nodes {
        // Every dep exists: the key facts can be computed.
        let facts = CommandStage.key_facts(&n.params, p.dir()).unwrap();
        assert!(!facts.is_empty(), "{}", n.id);
        let partial = tmp
            .path()
            .join(format!("partial{}", p.index_of(&n.id).unwrap()));
        let (r, _) = run_node(&p, n, tmp.path(), &partial, &AtomicBool::new(false));
        let out = r.unwrap_or_else(|e| panic!("{}: {e}", n.id));
        finals.insert(
            n.id.clone(),
            out.metrics
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect(),
        );
    }
    assert_eq!(finals["load"]["rows"], json!(40.0));
    assert_eq!(finals["split"]["test_rows"], json!(8.0));
    let report = std::fs::read_to_string(art(tmp.path(), &p, "report").join("report.md")).unwrap();
    for r in [4, 8, 16] {
        assert!(report.contains(&format!("| {r} |")), "{report}");
        let m = &finals[&format!("evaluate[lora_r={r}]")]["exact_match"];
        assert!(
            report.contains(&format!("{:.4}", m.as_f64().unwrap())),
            "{report}"
        );
    }
    assert_eq!(finals["report"]["best_rank"], json!(16.0));
}

#[test]
fn killed_training_resumes_to_the_uninterrupted_result() {
    let mut p = example(&[]);
    fast(&mut p);
    let tmp = tempfile::tempdir().unwrap();
    // Prepare the inputs of train: load, preprocess, split.
    for id in ["load", "preprocess", "split"] {
        let n = p.node(id).unwrap();
        run_node(
            &p,
            n,
            tmp.path(),
            &tmp.path().join(format!("p-{id}")),
            &AtomicBool::new(false),
        )
        .0
        .unwrap();
    }
    let train = p.node("train[lora_r=8]").unwrap().clone();

    // Uninterrupted reference.
    let ref_root = tmp.path().join("ref");
    for id in ["load", "preprocess", "split"] {
        let from = art(tmp.path(), &p, id);
        let to = art(&ref_root, &p, id);
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(&from).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
    let (r, _) = run_node(
        &p,
        &train,
        &ref_root,
        &tmp.path().join("p-ref"),
        &AtomicBool::new(false),
    );
    assert!(!r.unwrap().resumed);
    let reference = std::fs::read(art(&ref_root, &p, &train.id).join("adapter.json")).unwrap();

    // Slow steps so the cancel lands mid-run, after the second checkpoint.
    let mut slow = train.clone();
    slow.params["env"]["STEP_SECONDS"] = json!("0.2");
    let partial = tmp.path().join("p-train");
    let cancel = AtomicBool::new(false);
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            while !partial.join("ckpt-2.json").exists() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            cancel.store(true, Ordering::Relaxed);
        });
        run_node(&p, &slow, tmp.path(), &partial, &cancel).0
    });
    assert!(matches!(r, Err(StageError::Interrupted)), "{r:?}");
    assert!(!art(tmp.path(), &p, &train.id).join("adapter.json").exists());

    // Rerun into a fresh staging dir: it resumes and logs only the remaining steps.
    std::fs::remove_dir_all(art(tmp.path(), &p, &train.id)).unwrap();
    let (r, sink) = run_node(&p, &train, tmp.path(), &partial, &AtomicBool::new(false));
    assert!(r.unwrap().resumed);
    let steps: Vec<i64> = sink
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.0 == "loss")
        .filter_map(|m| m.1)
        .collect();
    assert!(
        !steps.is_empty() && steps[0] > 2,
        "resumed run logged steps {steps:?}"
    );
    assert_eq!(*steps.last().unwrap(), 5);
    let resumed = std::fs::read(art(tmp.path(), &p, &train.id).join("adapter.json")).unwrap();
    assert_eq!(resumed, reference);
}

#[test]
fn override_of_one_stage_changes_only_its_nodes_params() {
    let base = example(&[]);
    let edited =
        example(&["train.cmd=python3 -B scripts/train.py --rank ${matrix.lora_r} --unused"]);
    for (a, b) in base.nodes.iter().zip(&edited.nodes) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.params == b.params, a.stage != "train", "{}", a.id);
    }
}
