//! The `command` stage and what its command starts (issue 30): a child that leaves the
//! node's process group (`setsid`) and keeps the output pipes, or a detached daemon, must not
//! keep the node waiting nor outlive it; and one enormous output line must not become an
//! enormous error text.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::{json, Map, Value};
use t2s::stages::command::CommandStage;
use t2s::stages::{MetricsSink, StageError, StageKind, StageOutcome};
use t2s::worker::WorkerLauncher;

struct Sink;

impl MetricsSink for Sink {
    fn metric(&self, _: &str, _: Option<i64>, _: f64) {}
}

fn run(dir: &Path, cmd: &str) -> Result<StageOutcome, StageError> {
    let out = dir.join("out");
    let partial = dir.join("partial");
    for d in [&out, &partial] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut params = Map::new();
    params.insert("cmd".into(), Value::String(cmd.into()));
    for (k, v) in [("deps", json!([])), ("outs", json!([])), ("env", json!({}))] {
        params.insert(k.into(), v);
    }
    let worker = WorkerLauncher {
        exe: PathBuf::from("/nonexistent/t2s-worker"),
    };
    let cancel = AtomicBool::new(false);
    let ctx = t2s::stages::StageContext {
        node_id: "escape",
        stage_name: "escape",
        params: &params,
        inputs: &[],
        out_dir: &out,
        partial_dir: &partial,
        pipeline_dir: dir,
        metrics: &Sink,
        cancel: &cancel,
        worker: &worker,
    };
    CommandStage.run(&ctx)
}

/// Whether `pid` has ended (gone, or a zombie nobody reaped yet).
fn ended(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|st| st.contains(") Z "))
        .unwrap_or(true)
}

fn ends_soon(pid: &str) -> bool {
    // Bounded so a regression fails instead of hanging; not a timing assertion.
    for _ in 0..1000 {
        if ended(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::process::Command::new("kill")
        .args(["-9", pid])
        .status();
    false
}

/// Regression: a `setsid` child holding the pipes kept the node waiting until it exited
/// (here 20 minutes), and a detached daemon (double fork, new session, output elsewhere)
/// outlived the run. Both now die with the node, and the node ends.
#[test]
fn escaped_children_die_with_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // The runner of this test must not wait 20 minutes on an old build: run the stage on a
    // thread and give up (failing) after a bound far above a normal run.
    let cmd = format!(
        "setsid sleep 1200 & echo $! > '{d}/setsid.pid'; \
         ( setsid sh -c 'sleep 1200 & echo $! > \"{d}/daemon.pid\"' </dev/null >/dev/null 2>&1 & ); \
         while [ ! -s '{d}/daemon.pid' ]; do sleep 0.01; done; echo started"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let path = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(run(&path, &cmd).map(|_| ()).map_err(|e| e.to_string()));
    });
    let result = rx.recv_timeout(Duration::from_secs(300));
    let setsid = std::fs::read_to_string(dir.path().join("setsid.pid")).unwrap();
    let daemon = std::fs::read_to_string(dir.path().join("daemon.pid")).unwrap();
    let (setsid, daemon) = (setsid.trim(), daemon.trim());
    let (setsid_gone, daemon_gone) = (ends_soon(setsid), ends_soon(daemon));
    assert!(
        matches!(result, Ok(Ok(()))),
        "the node did not end with its command: {result:?}"
    );
    assert!(setsid_gone, "the setsid child {setsid} outlived its node");
    assert!(
        daemon_gone,
        "the detached daemon {daemon} outlived its node"
    );
}

/// Regression: a command printing one 1 GB stderr line had it read whole (3 GB of memory), and
/// the node's error quoting it was refused by the tracking DB. Lines are now cut, with a
/// marker, so the error stays small (here 16 MB in, well under 1 MB of error out).
#[test]
fn one_enormous_stderr_line_gives_a_bounded_error() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = "head -c 16000000 /dev/zero | tr '\\0' x >&2; echo >&2; echo last >&2; exit 3";
    let err = run(dir.path(), cmd).unwrap_err().to_string();
    assert!(err.len() < 1_000_000, "error text of {} bytes", err.len());
    assert!(
        err.contains("exit status 3"),
        "{}",
        &err[..200.min(err.len())]
    );
    assert!(err.contains("line truncated"), "no truncation marker");
    assert!(
        err.ends_with("last"),
        "the lines after the long one are kept"
    );
}
