//! Acceptance 4 of issue 2: `kill -9` of a whole `t2s run` (its process group and the commands
//! it started) at several moments, then a rerun: it completes, no partial artifact was ever
//! promoted (every object verifies, no extra objects), and the results equal an uninterrupted
//! run's. The killed run's DB row reads as interrupted.

use crate::common;

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use common::{kill_everything, Project};

#[test]
fn kill_minus_nine_then_rerun_equals_an_uninterrupted_run() {
    let reference = Project::new();
    reference.run_ok(&[]);
    let expected = reference.objects();
    assert_eq!(expected.len(), 11);

    // Fixed delays, plus one kill point defined by an event: right after the first training
    // checkpoint appears in a partial (resume) area, so the rerun must resume from it.
    let mut resumed_somewhere = false;
    for kill_at in [Some(300u64), Some(1000), Some(1600), Some(2200), None] {
        let p = Project::new();
        let mut child = p
            .t2s_std()
            .arg("run")
            .arg(p.pipeline())
            .args(["--jobs", "4", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        match kill_at {
            Some(ms) => std::thread::sleep(Duration::from_millis(ms)),
            None => wait_for_checkpoint(&p, &mut child),
        }
        let finished_alone = child.try_wait().unwrap().is_some();
        kill_everything(&p, &mut child);

        // Whatever was committed before the kill is whole.
        p.verify_all_objects();
        let runs = p.t2s().arg("runs").output().unwrap();
        let runs = String::from_utf8(runs.stdout).unwrap();
        // A run may record its end and be killed before the process exits: then it reads
        // as having run every node, which is the truth.
        let recorded_whole = runs.contains("succeeded") && runs.contains(" 11 ran");
        if runs.lines().count() > 1 && !finished_alone && !recorded_whole {
            assert!(
                runs.contains("interrupted"),
                "killed run must read as interrupted:\n{runs}"
            );
        }

        let out = p.run_ok(&[]);
        assert!(out.contains("succeeded"), "{out}");
        p.verify_all_objects();
        assert_eq!(
            p.objects(),
            expected,
            "kill at {kill_at:?} ms: results differ"
        );
        let statuses = common::statuses(&out);
        if kill_at.is_none() {
            assert!(
                statuses.values().any(|s| s == "resumed"),
                "a train node resumes:\n{out}"
            );
        }
        resumed_somewhere |= statuses.values().any(|s| s == "resumed");
        let staging = std::fs::read_dir(p.root().join("artifacts/v1/staging"))
            .unwrap()
            .count();
        assert_eq!(staging, 0, "stale staging dirs are cleaned by the rerun");
        let partial = std::fs::read_dir(p.root().join("artifacts/v1/partial"))
            .unwrap()
            .count();
        assert_eq!(partial, 0, "resume areas are dropped after commit");
    }
    assert!(resumed_somewhere);
}

/// Poll until some partial area holds a `ckpt-*.json` (written atomically by train.py).
fn wait_for_checkpoint(p: &Project, child: &mut std::process::Child) {
    loop {
        let found = p.has_checkpoint();
        if found {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before any checkpoint"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
