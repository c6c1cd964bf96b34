//! Acceptance 5 of issue 2: two `t2s run` of the same pipeline at once both succeed, and each
//! node's command executes once (per-key locks: the second waits, then finds it cached).

use crate::common;

use std::process::Stdio;

use common::{statuses, Project, NODES};

#[test]
fn two_concurrent_runs_both_succeed_and_each_node_runs_once() {
    let p = Project::new();
    let spawn = || {
        p.t2s_std()
            .arg("run")
            .arg(p.pipeline())
            .args(["--jobs", "4", "--quiet"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for out in [&a, &b] {
        assert!(
            out.status.success(),
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut ran = p.commands_run();
    ran.sort();
    let mut expected: Vec<String> = NODES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(
        ran, expected,
        "every node's command exactly once across both runs"
    );

    // Between them, every node ran once and was cached once.
    let (sa, sb) = (
        statuses(&String::from_utf8_lossy(&a.stdout)),
        statuses(&String::from_utf8_lossy(&b.stdout)),
    );
    for node in NODES {
        let mut pair = [sa[node].as_str(), sb[node].as_str()];
        pair.sort();
        assert_eq!(pair, ["cached", "ran"], "{node}");
    }
    p.verify_all_objects();
}
