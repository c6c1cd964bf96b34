//! `run --dry-run / --force / --only / --until`, Ctrl-C, and `gc`, on the example pipeline.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::{statuses, Project};

fn plan(p: &Project, extra: &[&str]) -> Vec<(String, String, String)> {
    let out = p
        .t2s()
        .arg("run")
        .arg(p.pipeline())
        .arg("--dry-run")
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            let node = w.next().unwrap_or_default().to_string();
            let what = w.next().unwrap_or_default().to_string();
            (node, what, l.to_string())
        })
        .collect()
}

#[test]
fn dry_run_runs_nothing_and_explains_each_node() {
    let p = Project::new();
    let before = plan(&p, &[]);
    assert_eq!(before.len(), 11);
    assert!(p.commands_run().is_empty(), "a dry run executes nothing");
    assert!(
        !p.root().join("experiments/t2s.db").exists(),
        "and records nothing"
    );
    let load = &before[0];
    assert_eq!((load.0.as_str(), load.1.as_str()), ("load", "run"));
    assert!(load.2.contains("never computed"), "{}", load.2);
    let split = before.iter().find(|n| n.0 == "split").unwrap();
    assert!(
        split.2.contains("upstream preprocess will run"),
        "{}",
        split.2
    );

    p.run_ok(&[]);
    let forced = plan(&p, &["--force", "train"]);
    for (node, what, line) in &forced {
        // Forced trainers run; downstream keys are known only after they ran, so those run too.
        let downstream =
            node.starts_with("train[") || node.starts_with("evaluate[") || node == "report";
        let expected = if downstream { "run" } else { "hit" };
        assert_eq!(what, expected, "{line}");
    }
    assert!(forced.iter().any(|n| n.2.contains("forced")));
}

#[test]
fn force_reruns_matching_nodes_and_identical_outputs_keep_downstream_cached() {
    let p = Project::new();
    p.run_ok(&[]);
    let objects = p.objects();
    p.clear_log();
    let out = p.run_ok(&["--force", "train[lora_r=8]"]);
    assert_eq!(p.commands_run(), vec!["train[lora_r=8]"], "{out}");
    let st = statuses(&out);
    assert_eq!(st["train[lora_r=8]"], "ran");
    assert_eq!(
        st["evaluate[lora_r=8]"], "cached",
        "same output bytes, same downstream key"
    );
    assert_eq!(p.objects(), objects);
    p.verify_all_objects();
}

#[test]
fn until_runs_a_node_and_its_ancestors_only_and_only_needs_cached_inputs() {
    let p = Project::new();
    let out = p.run_ok(&["--until", "split"]);
    let mut ran = p.commands_run();
    ran.sort();
    assert_eq!(ran, vec!["load", "preprocess", "split"], "{out}");
    assert_eq!(statuses(&out).len(), 3, "{out}");

    // --only a node whose input is cached: runs just it.
    p.clear_log();
    p.run_ok(&["--only", "eda"]);
    assert_eq!(p.commands_run(), vec!["eda"]);

    // --only a node whose input is not cached: fails naming the missing input, runs nothing.
    p.clear_log();
    let out = p
        .t2s()
        .arg("run")
        .arg(p.pipeline())
        .args(["--only", "evaluate[lora_r=4]"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("train[lora_r=4]") && stderr.contains("left out by --only/--until"),
        "{stderr}"
    );
    assert!(p.commands_run().is_empty());
}

#[test]
fn ctrl_c_marks_the_run_interrupted_and_commits_nothing_partial() {
    let p = Project::new();
    let child = p
        .t2s_std()
        .arg("run")
        .arg(p.pipeline())
        .args(["--jobs", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once a trainer is mid-way (its first checkpoint exists).
    let started = std::time::Instant::now();
    loop {
        let ckpt = p.has_checkpoint();
        if ckpt {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(" interrupted:"), "{stdout}");
    assert!(
        statuses(&stdout).values().any(|s| s == "interrupted"),
        "{stdout}"
    );
    // The summary counts interrupted nodes as such, not as failed.
    let count = |want: &str| statuses(&stdout).values().filter(|s| *s == want).count();
    let summary = format!(
        "{} failed, {} interrupted, ",
        count("failed"),
        count("interrupted")
    );
    assert!(stdout.contains(&summary), "{summary}:\n{stdout}");
    let objects = p.objects();
    assert!(
        objects
            .keys()
            .all(|n| !n.starts_with("train[") && !n.starts_with("evaluate[") && n != "report"),
        "{objects:?}"
    );
    p.verify_all_objects();
    let show = p.t2s().args(["show", "last"]).output().unwrap();
    assert!(String::from_utf8_lossy(&show.stdout).starts_with("run 1: commands (interrupted)"));

    let planned = plan(&p, &[]);
    assert!(
        planned
            .iter()
            .any(|n| n.0.starts_with("train[") && n.1 == "resume"),
        "{planned:?}"
    );
    let rerun = p.run_ok(&[]);
    assert!(statuses(&rerun).values().any(|s| s == "resumed"), "{rerun}");
}

#[test]
fn gc_keeps_latest_objects_and_removes_replaced_ones() {
    let p = Project::new();
    p.run_ok(&[]);
    let text = std::fs::read_to_string(p.pipeline()).unwrap();
    std::fs::write(p.pipeline(), text.replace("TEST_EVERY: 5", "TEST_EVERY: 4")).unwrap();
    p.run_ok(&[]);
    let all = std::fs::read_dir(p.objects_dir()).unwrap().count();
    assert!(all > 11);

    let dry = p.t2s().args(["gc", "--dry-run"]).output().unwrap();
    let dry = String::from_utf8(dry.stdout).unwrap();
    assert!(
        dry.contains(&format!("would remove {} objects", all - 11)),
        "{dry}"
    );
    assert_eq!(std::fs::read_dir(p.objects_dir()).unwrap().count(), all);

    let gc = p.t2s().arg("gc").output().unwrap();
    assert!(gc.status.success());
    assert_eq!(std::fs::read_dir(p.objects_dir()).unwrap().count(), 11);
    p.clear_log();
    let out = p.run_ok(&[]);
    assert!(
        p.commands_run().is_empty(),
        "gc kept everything the current pipeline uses: {out}"
    );
}
