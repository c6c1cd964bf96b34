//! The worker and the `t2s` that started it (issue 30): a `kill -9` of t2s takes the worker
//! with it (it would otherwise compute on and race a rerun's worker in the same resume area),
//! and leaves no job spec file behind.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// Whether `pid` has ended (gone, or a zombie nobody reaped yet).
fn ended(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|st| st.contains(") Z "))
        .unwrap_or(true)
}

fn wait_for(path: &Path) -> String {
    // Bounded so a broken build fails instead of hanging; not a timing assertion.
    for _ in 0..6000 {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.ends_with('\n') {
                return s.trim().to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}

#[test]
fn a_killed_t2s_takes_its_worker_along_and_leaves_no_spec_file() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let tmp = dir.path().join("tmp");
    let seen = dir.path().join("seen");
    for d in [&project, &tmp, &seen] {
        std::fs::create_dir_all(d).unwrap();
    }
    // A stand-in worker: records how it got its spec, then keeps running as a real job would.
    let fake = dir.path().join("fake-worker");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncat \"$1\" > '{s}/spec.json'\necho \"$1\" > '{s}/arg'\necho $$ > '{s}/pid'\nexec sleep 600\n",
            s = seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut t2s = std::process::Command::new(env!("CARGO_BIN_EXE_t2s"))
        .arg("--root")
        .arg(&project)
        .arg("doctor")
        .current_dir(&project)
        .env_remove("T2S_ROOT")
        .env("T2S_WORKER", &fake)
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = wait_for(&seen.join("pid"));
    let arg = wait_for(&seen.join("arg"));
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(seen.join("spec.json")).unwrap()).unwrap();
    assert_eq!(spec["job"], "doctor");
    assert!(
        arg.starts_with("/dev/fd/"),
        "the spec has a name on disk: {arg}"
    );

    t2s.kill().unwrap();
    t2s.wait().unwrap();
    let mut gone = false;
    for _ in 0..3000 {
        if ended(&pid) {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if !gone {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
    }
    assert!(gone, "the worker {pid} outlived the t2s that started it");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "files left in TMPDIR: {left:?}");
}
