//! `t2s run ... 2>/dev/full` (issue 30): progress lines that cannot be written are dropped,
//! not a panic of a node thread that left the scheduler waiting forever.

use std::time::Duration;

#[test]
fn a_run_whose_stderr_cannot_be_written_still_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("full.yaml");
    std::fs::write(
        &pipeline,
        "name: full\nstages:\n  hello:\n    kind: command\n    params:\n      cmd: echo hi\n  \
         after:\n    kind: command\n    needs: [hello]\n    params:\n      cmd: 'false'\n",
    )
    .unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_t2s"))
        .arg("--root")
        .arg(dir.path())
        .arg("run")
        .arg(&pipeline)
        .current_dir(dir.path())
        .env_remove("T2S_ROOT")
        .stdout(std::process::Stdio::piped())
        .stderr(full)
        .spawn()
        .unwrap();
    // Bounded so the regression (a hang) fails instead of blocking the suite; a normal run of
    // two `echo`-sized nodes takes a fraction of this.
    let mut status = None;
    for _ in 0..3000 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("t2s run hung with stderr on /dev/full");
    }
    let mut stdout = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    // The failing node fails the run (exit 1, not a panic's 101), and the table says why.
    assert_eq!(status.unwrap().code(), Some(1), "{stdout}");
    assert!(stdout.contains("run 1 failed"), "{stdout}");
    assert!(
        stdout.contains("ran") && stdout.contains("hello"),
        "{stdout}"
    );
}
