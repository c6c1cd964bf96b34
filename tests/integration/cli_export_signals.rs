//! `t2s export` stopped from outside leaves nothing beside `--out`: Ctrl-C / SIGTERM stops the
//! worker and removes the staging directory (exit 130); a SIGKILLed export's staging directory
//! is removed by the next export into the same folder. A stand-in worker (a shell script)
//! stands still or fails on cue, so the test needs no libtorch and no timing luck.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An executable script standing in for `t2s-worker`.
fn fake_worker(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A model and an adapter directory with the files `t2s export` checks for (the stand-in
/// worker never reads them).
fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let (model, adapter) = (dir.join("model"), dir.join("adapter"));
    std::fs::create_dir_all(&model).unwrap();
    std::fs::create_dir_all(&adapter).unwrap();
    std::fs::write(model.join("config.json"), "{}").unwrap();
    std::fs::write(adapter.join("adapter_config.json"), "{}").unwrap();
    std::fs::write(adapter.join("adapter_model.safetensors"), "").unwrap();
    (model, adapter)
}

fn spawn_export(worker: &Path, model: &Path, adapter: &Path, out: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_t2s"))
        .arg("export")
        .arg("--model")
        .arg(model)
        .arg("--adapter")
        .arg(adapter)
        .arg("--out")
        .arg(out)
        .env("T2S_WORKER", worker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The entries of `dir` by name (none while it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = read
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Wait (up to 20 s) until the export has made its staging directory in `parent` and started
/// the worker (which writes `started` beside itself).
fn wait_for_staging(parent: &Path, started: &Path) -> String {
    let t0 = Instant::now();
    loop {
        let staging: Vec<String> = entries(parent)
            .into_iter()
            .filter(|n| n.starts_with(".t2s-export-"))
            .collect();
        if staging.len() == 1 && started.exists() {
            return staging[0].clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no staging: {staging:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_interrupted_or_killed_export_leaves_nothing_behind() {
    let work = tempfile::tempdir().unwrap();
    let (model, adapter) = inputs(work.path());
    let started = work.path().join("started");
    let waiting = fake_worker(
        work.path(),
        "waiting-worker",
        &format!("touch '{}'\nexec sleep 20", started.display()),
    );
    let parent = work.path().join("exports");
    let out = parent.join("merged");

    // SIGTERM (as Ctrl-C): the worker is stopped, the staging directory removed, exit 130.
    let child = spawn_export(&waiting, &model, &adapter, &out);
    let staging = wait_for_staging(&parent, &started);
    assert!(
        staging.starts_with(&format!(".t2s-export-{}-", child.id())),
        "{staging}"
    );
    // SAFETY: signalling our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("interrupted"));
    assert!(
        parent.is_dir() && entries(&parent).is_empty(),
        "{:?}",
        entries(&parent)
    );

    // SIGKILL leaves its staging directory; the next export into the folder removes it, and
    // its own on failure.
    std::fs::remove_file(&started).unwrap();
    let mut child = spawn_export(&waiting, &model, &adapter, &out);
    let staging = wait_for_staging(&parent, &started);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(entries(&parent), vec![staging]);
    let failing = fake_worker(work.path(), "failing-worker", "exit 3");
    let o = spawn_export(&failing, &model, &adapter, &out)
        .wait_with_output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(entries(&parent).is_empty(), "{:?}", entries(&parent));
    assert!(!out.exists());
}
