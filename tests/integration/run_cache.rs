//! Acceptance 1–3 of issue 2: a cached rerun runs nothing; changing one matrix branch re-runs
//! only it and its dependents (and `status` names the changed field first); an altered cached
//! artifact is detected and recomputed, never used.

use crate::common;

use common::{statuses, Project, NODES};

#[test]
fn second_run_executes_no_command_and_reports_every_node_cached() {
    let p = Project::new();
    let first = p.run_ok(&[]);
    let ran = statuses(&first);
    assert_eq!(ran.len(), 11, "{first}");
    for node in NODES {
        assert_eq!(ran[node], "ran", "{node} in\n{first}");
    }
    let mut logged = p.commands_run();
    logged.sort();
    let mut expected: Vec<String> = NODES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(logged, expected, "each node's command ran exactly once");

    p.clear_log();
    let second = p.run_ok(&[]);
    assert!(
        p.commands_run().is_empty(),
        "no command may run: {:?}",
        p.commands_run()
    );
    let st = statuses(&second);
    assert_eq!(st.len(), 11, "{second}");
    assert!(st.values().all(|s| s == "cached"), "{second}");
    assert!(second.contains("0 ran, 0 resumed, 11 cached"), "{second}");

    // The plan agrees: every node is a hit.
    let plan = p
        .t2s()
        .arg("run")
        .arg(p.pipeline())
        .arg("--dry-run")
        .output()
        .unwrap();
    let plan = String::from_utf8(plan.stdout).unwrap();
    assert_eq!(
        plan.lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("hit"))
            .count(),
        11,
        "{plan}"
    );
}

#[test]
fn changing_one_branch_reruns_only_that_branch_and_status_says_why() {
    let p = Project::new();
    p.run_ok(&[]);

    // Change the rank of the third branch in the file: 16 → 32.
    let text = std::fs::read_to_string(p.pipeline()).unwrap();
    assert!(text.contains("lora_r: [4, 8, 16]"));
    std::fs::write(
        p.pipeline(),
        text.replace("lora_r: [4, 8, 16]", "lora_r: [4, 8, 32]"),
    )
    .unwrap();

    let status = p.t2s().arg("status").arg(p.pipeline()).output().unwrap();
    assert!(status.status.success());
    let status = String::from_utf8(status.stdout).unwrap();
    let line = |node: &str| {
        status
            .lines()
            .find(|l| l.split_whitespace().next() == Some(node))
            .unwrap_or_else(|| panic!("{node} missing in\n{status}"))
            .to_string()
    };
    for node in [
        "load",
        "eda",
        "preprocess",
        "split",
        "train[lora_r=4]",
        "evaluate[lora_r=8]",
    ] {
        assert!(line(node).contains(" cached "), "{}", line(node));
    }
    // The new branch is compared with the instance it replaced, naming the changed field.
    let train = line("train[lora_r=32]");
    assert!(train.contains("stale"), "{train}");
    assert!(
        train.contains("new node; vs train[lora_r=16]: params.cmd: \""),
        "{train}"
    );
    assert!(
        train.contains("scripts/train.py --rank 16\" → \""),
        "{train}"
    );
    assert!(
        train.trim_end().ends_with("scripts/train.py --rank 32\""),
        "{train}"
    );
    assert!(line("evaluate[lora_r=32]").contains("upstream train[lora_r=32] will run"));
    assert!(line("report").contains("stale"));

    p.clear_log();
    let out = p.run_ok(&[]);
    let mut ran = p.commands_run();
    ran.sort();
    assert_eq!(
        ran,
        vec!["evaluate[lora_r=32]", "report", "train[lora_r=32]"],
        "{out}"
    );
    let st = statuses(&out);
    assert_eq!(st.values().filter(|s| *s == "cached").count(), 8, "{out}");

    // A --set of one param: status names exactly that field before anything runs.
    let status = p
        .t2s()
        .args(["status"])
        .arg(p.pipeline())
        .args(["--set", "split.env={TEST_EVERY: 4}"])
        .output()
        .unwrap();
    let status = String::from_utf8(status.stdout).unwrap();
    let split = status.lines().find(|l| l.starts_with("split ")).unwrap();
    assert!(split.contains(" stale "), "{split}");
    let why = split
        .split_once(" params.")
        .map(|(_, w)| w)
        .unwrap_or_default();
    assert!(
        why.starts_with("env: {") && why.contains('5') && why.contains("→ {") && why.contains('4'),
        "{split}"
    );
    assert!(status
        .lines()
        .find(|l| l.starts_with("preprocess "))
        .unwrap()
        .contains(" cached "));

    // For scripts: JSON, and `-q`, which says by its exit code whether anything is stale.
    let quiet = |set: &[&str]| {
        let o = p
            .t2s()
            .args(["status", "-q"])
            .arg(p.pipeline())
            .args(set)
            .output()
            .unwrap();
        assert!(
            o.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        o.status.code()
    };
    assert_eq!(quiet(&[]), Some(0));
    assert_eq!(quiet(&["--set", "split.env={TEST_EVERY: 4}"]), Some(1));
    let json = p
        .t2s()
        .args(["status", "--json"])
        .arg(p.pipeline())
        .args(["--set", "split.env={TEST_EVERY: 4}"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let nodes = json["nodes"].as_array().unwrap();
    let split = nodes.iter().find(|n| n["node"] == "split").unwrap();
    assert_eq!(split["state"], "stale");
    assert!(
        split["reason"].as_str().unwrap().contains("params.env"),
        "{split}"
    );
    assert_eq!(
        json["stale"].as_u64().unwrap() + json["cached"].as_u64().unwrap(),
        nodes.len() as u64
    );
    assert_eq!(json["cached"], 3, "{json}");
}

#[test]
fn altered_cached_artifact_is_detected_and_recomputed() {
    let p = Project::new();
    p.run_ok(&[]);
    let before = p.objects();
    let split_dir = p.object_of("split");
    common::overwrite(&split_dir.join("train.jsonl"), "{\"poisoned\": true}\n");

    p.clear_log();
    let out = p
        .t2s()
        .arg("run")
        .arg(p.pipeline())
        .args(["--jobs", "4"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("failed its check"), "{stderr}");
    assert!(stderr.contains("train.jsonl"), "{stderr}");
    // Only split recomputes: its output is identical again, so every downstream key still hits.
    assert_eq!(p.commands_run(), vec!["split"], "{stdout}");
    assert_eq!(statuses(&stdout)["split"], "ran");
    assert_eq!(
        p.objects(),
        before,
        "recomputed artifact equals the original"
    );
    p.verify_all_objects();
    // The poisoned copy was moved aside, not deleted silently and not used.
    let corrupt = p.root().join("artifacts/v1/corrupt");
    assert_eq!(std::fs::read_dir(corrupt).unwrap().count(), 1);
}

#[test]
fn verify_catches_an_edit_the_cheap_check_cannot_see() {
    let p = Project::new();
    p.run_ok(&[]);
    let file = p.object_of("eda").join("eda.json");
    let original = std::fs::read(&file).unwrap();
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let mut changed = original.clone();
    let last = changed.iter().rposition(|b| b.is_ascii_digit()).unwrap();
    changed[last] = if changed[last] == b'9' {
        b'8'
    } else {
        changed[last] + 1
    };
    common::overwrite(&file, std::str::from_utf8(&changed).unwrap());
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();

    p.clear_log();
    p.run_ok(&[]);
    assert!(
        p.commands_run().is_empty(),
        "same size and mtime: only --verify can tell"
    );
    p.run_ok(&["--verify"]);
    assert_eq!(p.commands_run(), vec!["eda"]);
    p.verify_all_objects();
}
