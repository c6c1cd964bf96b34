//! GPU device slots: nodes that use the GPU never run at the same time with one slot, even with
//! many jobs. Each command takes a directory "lock" with `mkdir` (atomic) and fails if it is
//! taken, so any overlap fails the run.

use assert_cmd::Command;

const PIPELINE: &str = r#"
name: slots
stages:
  train:
    kind: command
    gpu: true
    matrix:
      r: [1, 2, 3, 4]
    params:
      cmd: mkdir busy.d && echo ${matrix.r} > "$T2S_OUT/r" && sleep 0.2 && rmdir busy.d
  cpu:
    kind: command
    matrix:
      r: [1, 2]
    params:
      cmd: echo ${matrix.r} > "$T2S_OUT/r"
"#;

#[test]
fn gpu_nodes_share_one_device_slot_while_others_run_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slots.yaml");
    std::fs::write(&file, PIPELINE).unwrap();
    let out = Command::cargo_bin("t2s")
        .unwrap()
        .arg("--root")
        .arg(dir.path())
        .arg("run")
        .arg(&file)
        .args(["--jobs", "6", "--gpu-slots", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("6 ran"), "{stdout}");
}
