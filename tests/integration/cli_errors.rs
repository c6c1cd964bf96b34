//! Exit codes of the CLI edge: usage and configuration errors exit 2 with every problem listed,
//! failures exit 1 naming the node.

use crate::common;

use common::Project;

#[test]
fn invalid_pipeline_exits_2_listing_every_problem() {
    let p = Project::new();
    let bad = p.root().join("pipe/bad.yaml");
    std::fs::write(
        &bad,
        "stages:\n  a:\n    kind: nosuchkind\n  b:\n    kind: command\n    needs: [zzz]\n    params: {cmd: 'true'}\n",
    )
    .unwrap();
    for verb in ["run", "status", "dag"] {
        let out = p.t2s().arg(verb).arg(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{verb}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("bad.yaml:3"), "{verb}: {stderr}");
        assert!(stderr.contains("nosuchkind"), "{verb}: {stderr}");
        assert!(stderr.contains("zzz"), "{verb}: {stderr}");
    }
    assert!(
        !p.root().join("experiments/t2s.db").exists(),
        "nothing ran, nothing recorded"
    );
}

#[test]
fn unknown_node_names_exit_2() {
    let p = Project::new();
    for flag in ["--only", "--until", "--force"] {
        let out = p
            .t2s()
            .arg("run")
            .arg(p.pipeline())
            .args([flag, "trian"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{flag} trian: no node or stage has that name")),
            "{stderr}"
        );
    }
    let out = p
        .t2s()
        .args(["run", "--jobs", "0"])
        .arg(p.pipeline())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_failing_command_fails_its_branch_and_the_run_exits_1() {
    let p = Project::new();
    let text = std::fs::read_to_string(p.pipeline()).unwrap();
    // Make the rank-8 trainer fail; the other branches may finish, its dependents are skipped.
    std::fs::write(
        p.pipeline(),
        text.replace(
            "cmd: python3",
            "cmd: test \"$T2S_NODE\" != 'train[lora_r=8]' && python3",
        ),
    )
    .unwrap();
    let out = p
        .t2s()
        .arg("run")
        .arg(p.pipeline())
        .args(["--jobs", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let st = common::statuses(&stdout);
    assert_eq!(st["train[lora_r=8]"], "failed", "{stdout}");
    assert_eq!(st["evaluate[lora_r=8]"], "skipped", "{stdout}");
    assert_eq!(st["report"], "skipped", "{stdout}");
    assert!(
        stderr.contains("error: node `train[lora_r=8]`: command failed"),
        "{stderr}"
    );
    assert!(stderr.contains("exit status 1"), "{stderr}");
    // Nothing of the failed node was committed; the rerun after fixing it reuses the rest.
    assert!(!p.objects().contains_key("train[lora_r=8]"));
    p.verify_all_objects();
    let shown = p.t2s().args(["show", "last"]).output().unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains("run 1: commands (failed)"));
}
