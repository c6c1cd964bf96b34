//! The `command` stage kind: environment, failures, declared outputs, dep digests, metrics
//! lines and cancellation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde_json::{json, Map, Value};
use t2s::stages::command::{dep_digest, CommandStage};
use t2s::stages::{MetricsSink, StageError, StageInput, StageKind, StageOutcome};
use t2s::worker::WorkerLauncher;

#[derive(Default)]
struct Sink(Mutex<Vec<(String, Option<i64>, f64)>>);

impl MetricsSink for Sink {
    fn metric(&self, name: &str, step: Option<i64>, value: f64) {
        self.0.lock().unwrap().push((name.to_string(), step, value));
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    pipeline_dir: PathBuf,
    out: PathBuf,
    partial: PathBuf,
    inputs: Vec<StageInput>,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline_dir = tmp.path().join("pipe");
    let out = tmp.path().join("out");
    let partial = tmp.path().join("partial");
    for d in [&pipeline_dir, &out, &partial] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut inputs = Vec::new();
    for (stage, node, m) in [
        ("split", "split", BTreeMap::new()),
        (
            "train",
            "train[lora_r=4]",
            BTreeMap::from([("lora_r".to_string(), json!(4))]),
        ),
        (
            "train",
            "train[lora_r=8]",
            BTreeMap::from([("lora_r".to_string(), json!(8))]),
        ),
    ] {
        let dir = tmp.path().join(format!("art-{}", inputs.len()));
        std::fs::create_dir_all(&dir).unwrap();
        inputs.push(StageInput {
            stage: stage.into(),
            node: node.into(),
            kind: "command".into(),
            matrix: m,
            dir,
        });
    }
    Setup {
        pipeline_dir,
        out,
        partial,
        inputs,
        _tmp: tmp,
    }
}

fn params(v: Value) -> Map<String, Value> {
    let mut m = v.as_object().unwrap().clone();
    m.entry("deps").or_insert(json!([]));
    m.entry("outs").or_insert(json!([]));
    m.entry("env").or_insert(json!({}));
    m
}

fn run(
    s: &Setup,
    node: &str,
    p: &Map<String, Value>,
    sink: &Sink,
    cancel: &AtomicBool,
) -> Result<StageOutcome, StageError> {
    let worker = WorkerLauncher {
        exe: PathBuf::from("/nonexistent/t2s-worker"),
    };
    let ctx = t2s::stages::StageContext {
        node_id: node,
        stage_name: node.split('[').next().unwrap(),
        params: p,
        inputs: &s.inputs,
        out_dir: &s.out,
        partial_dir: &s.partial,
        pipeline_dir: &s.pipeline_dir,
        metrics: sink,
        cancel,
        worker: &worker,
    };
    CommandStage.run(&ctx)
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn environment_reaches_the_command() {
    let s = setup();
    let script = "import json, os; json.dump({k: v for k, v in os.environ.items() if k.startswith('T2S_') or k == 'GREETING'} | {'cwd': os.getcwd()}, open(os.path.join(os.environ['T2S_OUT'], 'env.json'), 'w'))";
    std::fs::write(s.pipeline_dir.join("dump.py"), script).unwrap();
    let p = params(json!({
        "cmd": format!("{} dump.py", python()),
        "deps": ["dump.py"],
        "outs": ["env.json"],
        "env": {"GREETING": "hello"},
    }));
    let out = run(
        &s,
        "evaluate[lora_r=4,temperature=0.7]",
        &p,
        &Sink::default(),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(!out.resumed);
    let env: Value =
        serde_json::from_slice(&std::fs::read(s.out.join("env.json")).unwrap()).unwrap();
    assert_eq!(env["T2S_OUT"], json!(s.out.display().to_string()));
    assert_eq!(env["T2S_PARTIAL"], json!(s.partial.display().to_string()));
    assert_eq!(env["T2S_NODE"], json!("evaluate[lora_r=4,temperature=0.7]"));
    assert_eq!(
        Path::new(env["cwd"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        s.pipeline_dir.canonicalize().unwrap()
    );
    // A single input of a stage gets its own variable; a stage with several instances does not.
    assert_eq!(
        env["T2S_INPUT_SPLIT"],
        json!(s.inputs[0].dir.display().to_string())
    );
    assert!(env.get("T2S_INPUT_TRAIN").is_none());
    let inputs: Value = serde_json::from_str(env["T2S_INPUTS"].as_str().unwrap()).unwrap();
    assert_eq!(inputs.as_array().unwrap().len(), 3);
    assert_eq!(inputs[2]["node"], json!("train[lora_r=8]"));
    assert_eq!(inputs[2]["matrix"], json!({"lora_r": 8}));
    assert_eq!(
        inputs[2]["dir"],
        json!(s.inputs[2].dir.display().to_string())
    );
    assert_eq!(env["T2S_PARAM_DEPS"], json!("[\"dump.py\"]"));
    assert_eq!(env["T2S_PARAM_OUTS"], json!("[\"env.json\"]"));
    assert!(env["T2S_PARAM_CMD"].as_str().unwrap().ends_with("dump.py"));
    assert_eq!(env["T2S_MATRIX_LORA_R"], json!("4"));
    assert_eq!(env["T2S_MATRIX_TEMPERATURE"], json!("0.7"));
    assert_eq!(env["GREETING"], json!("hello"));
}

#[test]
fn nonzero_exit_fails_with_status_and_stderr_tail() {
    let s = setup();
    let p = params(json!({"cmd": "echo first >&2; echo 'no such table: users' >&2; exit 3"}));
    let err = run(&s, "split", &p, &Sink::default(), &AtomicBool::new(false)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StageError::Failed(_)), "{msg}");
    assert!(msg.contains("node `split`"), "{msg}");
    assert!(msg.contains("exit status 3"), "{msg}");
    assert!(msg.contains("no such table: users"), "{msg}");
}

#[test]
fn missing_declared_output_fails_naming_it() {
    let s = setup();
    let p = params(json!({"cmd": "touch \"$T2S_OUT/a.txt\"", "outs": ["a.txt", "sub/b.txt"]}));
    let msg = run(&s, "load", &p, &Sink::default(), &AtomicBool::new(false))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`sub/b.txt`"), "{msg}");
    assert!(!msg.contains("`a.txt`"), "{msg}");
}

#[test]
fn missing_dep_is_a_clear_error() {
    let s = setup();
    let p = params(json!({"cmd": "true", "deps": ["data/missing.csv"]}));
    let e = CommandStage
        .key_facts(&p, &s.pipeline_dir)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`data/missing.csv`"), "{e}");
    let msg = run(&s, "load", &p, &Sink::default(), &AtomicBool::new(false))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`data/missing.csv`"), "{msg}");
}

#[test]
fn dep_digest_follows_content_and_names() {
    let s = setup();
    let data = s.pipeline_dir.join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("a.csv"), "x\n1\n").unwrap();
    std::fs::write(data.join("sub/b.csv"), "y\n2\n").unwrap();
    let p = params(json!({"cmd": "true", "deps": ["data", "data/a.csv"]}));
    let facts = CommandStage.key_facts(&p, &s.pipeline_dir).unwrap();
    assert_eq!(
        facts.keys().collect::<Vec<_>>(),
        ["dep:data", "dep:data/a.csv"]
    );
    let d0 = dep_digest(&s.pipeline_dir, "data").unwrap();
    assert_eq!(d0, dep_digest(&s.pipeline_dir, "data").unwrap(), "stable");
    std::fs::write(data.join("sub/b.csv"), "y\n3\n").unwrap();
    let d1 = dep_digest(&s.pipeline_dir, "data").unwrap();
    assert_ne!(d0, d1, "content change");
    std::fs::rename(data.join("sub/b.csv"), data.join("sub/c.csv")).unwrap();
    assert_ne!(d1, dep_digest(&s.pipeline_dir, "data").unwrap(), "rename");
    // The other dep did not change.
    assert_eq!(
        facts["dep:data/a.csv"],
        CommandStage.key_facts(&p, &s.pipeline_dir).unwrap()["dep:data/a.csv"]
    );
}

#[test]
fn metric_progress_and_resumed_lines() {
    let s = setup();
    let p = params(
        json!({"cmd": "echo '::metric loss 0.5 1'; echo '::metric loss 0.25 2'; echo '::progress 2 5 step two'; echo '::resumed'; echo '::metric accuracy 0.75'; echo plain output"}),
    );
    let sink = Sink::default();
    let out = run(&s, "train", &p, &sink, &AtomicBool::new(false)).unwrap();
    assert!(out.resumed);
    assert_eq!(
        out.metrics,
        BTreeMap::from([("accuracy".to_string(), 0.75)])
    );
    let got = sink.0.lock().unwrap().clone();
    assert_eq!(
        got,
        [
            ("loss".to_string(), Some(1), 0.5),
            ("loss".to_string(), Some(2), 0.25),
            ("accuracy".to_string(), None, 0.75)
        ]
    );
}

#[test]
fn cancel_kills_the_whole_process_group() {
    let s = setup();
    let p = params(json!({"cmd": "sleep 600 & echo $! > \"$T2S_OUT/child.pid\"; wait"}));
    let cancel = AtomicBool::new(false);
    let result = std::thread::scope(|sc| {
        sc.spawn(|| {
            // Wait until the background child exists, then cancel.
            while !s.out.join("child.pid").exists() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            cancel.store(true, Ordering::Relaxed);
        });
        run(&s, "train", &p, &Sink::default(), &cancel)
    });
    assert!(matches!(result, Err(StageError::Interrupted)), "{result:?}");
    let pid = std::fs::read_to_string(s.out.join("child.pid")).unwrap();
    let pid = pid.trim();
    // The grandchild was killed with the group: it disappears (reaped by init).
    let mut gone = false;
    for _ in 0..500 {
        let alive = std::process::Command::new("kill")
            .args(["-0", pid])
            .status()
            .unwrap()
            .success();
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|st| st.contains(") Z "))
            .unwrap_or(true);
        if !alive || zombie {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(gone, "background child {pid} survived cancellation");
}

#[test]
fn check_params_rejects_escaping_outputs_and_bad_env_names() {
    let p = params(
        json!({"cmd": " ", "outs": ["../x", "/abs", "ok.txt"], "env": {"1BAD": "x", "GOOD": "y"}}),
    );
    let problems = CommandStage.params().resolve(&p).unwrap_err();
    let names: Vec<&str> = problems.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["cmd", "outs", "outs", "env"], "{problems:?}");
}

#[test]
fn check_params_problems_are_reported_at_the_param() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.yaml");
    std::fs::write(&f, "stages:\n  a:\n    kind: command\n    params:\n      cmd: 'true'\n      outs: [../escape]\n").unwrap();
    let d = t2s::pipeline::load(&f, &[]).unwrap_err();
    let x = &d.0[0];
    assert_eq!(
        (x.line, x.column, x.path.as_str()),
        (6, 13, "stages.a.params.outs"),
        "{d}"
    );
}

#[test]
fn background_leftovers_are_killed_when_the_command_ends() {
    let s = setup();
    // The background sleep keeps stdout open: without the group kill, run would hang.
    let p = params(json!({"cmd": "sleep 600 & echo $! > \"$T2S_OUT/child.pid\"; echo done"}));
    run(&s, "load", &p, &Sink::default(), &AtomicBool::new(false)).unwrap();
    let pid = std::fs::read_to_string(s.out.join("child.pid")).unwrap();
    let pid = pid.trim();
    let mut gone = false;
    for _ in 0..500 {
        let alive = std::process::Command::new("sh")
            .args(["-c", &format!("kill -0 {pid} 2>/dev/null")])
            .status()
            .unwrap()
            .success();
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|st| st.contains(") Z "))
            .unwrap_or(true);
        if !alive || zombie {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(gone, "background child {pid} outlived its node");
}

#[test]
fn pycache_in_a_dep_directory_does_not_change_the_digest() {
    let s = setup();
    let scripts = s.pipeline_dir.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("a.py"), "print(1)\n").unwrap();
    let before = dep_digest(&s.pipeline_dir, "scripts").unwrap();
    std::fs::create_dir_all(scripts.join("__pycache__")).unwrap();
    std::fs::write(scripts.join("__pycache__/a.cpython-312.pyc"), b"\x00\x01").unwrap();
    assert_eq!(before, dep_digest(&s.pipeline_dir, "scripts").unwrap());
}

#[test]
fn dep_digest_does_not_depend_on_the_project_location() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for root in [a.path(), b.path()] {
        std::fs::create_dir_all(root.join("pipe")).unwrap();
        std::fs::create_dir_all(root.join("data/sub")).unwrap();
        std::fs::write(root.join("data/sub/x.csv"), "1,2\n").unwrap();
    }
    let da = dep_digest(&a.path().join("pipe"), "../data").unwrap();
    let db = dep_digest(&b.path().join("pipe"), "../data").unwrap();
    assert_eq!(da, db);
}
