//! Acceptance 9 of issue 2 (orchestrator side): `t2s doctor` asks the worker, and a worker that
//! crashes, is killed or is missing makes doctor exit 1 with a message naming what happened.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use assert_cmd::Command;

fn fake_worker(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("fake-worker");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn doctor(root: &Path, worker: &Path) -> std::process::Output {
    Command::cargo_bin("t2s")
        .unwrap()
        .args(["doctor", "--root"])
        .arg(root)
        .env("T2S_WORKER", worker)
        .output()
        .unwrap()
}

#[test]
fn worker_killed_by_a_signal_fails_doctor_naming_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let worker = fake_worker(dir.path(), "echo 'loading libtorch' >&2\nkill -9 $$");
    let out = doctor(dir.path(), &worker);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("worker for job `doctor` exited with signal 9"),
        "{stderr}"
    );
    assert!(
        stderr.contains("loading libtorch"),
        "stderr tail is quoted: {stderr}"
    );
    assert!(stderr.contains(&worker.display().to_string()), "{stderr}");
}

#[test]
fn worker_exiting_with_an_error_status_fails_doctor() {
    let dir = tempfile::tempdir().unwrap();
    let worker = fake_worker(
        dir.path(),
        "echo 'libtorch_cuda.so: cannot open shared object' >&2\nexit 3",
    );
    let out = doctor(dir.path(), &worker);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exited with exit status 3"), "{stderr}");
    assert!(stderr.contains("libtorch_cuda.so"), "{stderr}");
}

#[test]
fn missing_worker_fails_doctor_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = doctor(dir.path(), &dir.path().join("no-such-worker"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot start the worker"), "{stderr}");
}

#[test]
fn working_worker_report_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let worker = fake_worker(
        dir.path(),
        r#"echo '{"event":"log","level":"info","message":"hi"}'
echo '{"event":"result","value":{"libtorch":"2.11.0","cuda_devices":[]}}'"#,
    );
    let out = doctor(dir.path(), &worker);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("libtorch   2.11.0"), "{stdout}");
    assert!(stdout.contains("cuda_devices []"), "{stdout}");
    assert!(
        stdout.contains(&format!("root       {}", dir.path().display())),
        "{stdout}"
    );
}

#[test]
fn t2s_binary_does_not_link_libtorch() {
    let bin = assert_cmd::cargo::cargo_bin("t2s");
    let out = std::process::Command::new("ldd")
        .arg(&bin)
        .output()
        .expect("ldd is part of glibc");
    let libs = String::from_utf8_lossy(&out.stdout);
    assert!(libs.contains("libc.so"), "ldd output looks wrong: {libs}");
    assert!(
        !libs.to_lowercase().contains("torch"),
        "t2s must not link libtorch:\n{libs}"
    );
    assert!(
        !libs.contains("libcuda") && !libs.contains("libcudart"),
        "{libs}"
    );
}
