//! The worker stops when its event stream cannot be written (issue 30): nobody reads the job
//! any more (t2s was killed or closed the pipe), and a worker computing on could race a
//! rerun's worker in the same resume area.

use std::process::{Command, Stdio};

use t2s::worker::protocol::JobSpec;

#[test]
fn a_worker_whose_stdout_is_closed_exits_instead_of_running_on() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    let job = JobSpec::new("doctor", serde_json::json!({}));
    std::fs::write(&spec, serde_json::to_string(&job).unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_t2s-worker"))
        .arg(&spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The reading end goes away, as when t2s is killed.
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(t2s_torch::events::EXIT_ORPHANED),
        "{status}"
    );
}
