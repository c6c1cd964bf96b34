//! Acceptance 7 of issue 2: `t2s runs` / `t2s show` list runs, nodes (ran / cached, durations),
//! params and metrics from the DB, and the DB is plain SQLite (`sqlite3` opens it).

use crate::common;

use common::Project;

fn stdout(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn runs_and_show_list_nodes_params_and_metrics() {
    let p = Project::new();
    p.run_ok(&[]);
    p.run_ok(&[]);

    let runs = stdout(p.t2s().arg("runs").output().unwrap());
    let lines: Vec<&str> = runs.lines().collect();
    assert_eq!(lines.len(), 3, "{runs}");
    assert!(
        lines[1].starts_with("2 ")
            && lines[1].contains("succeeded")
            && lines[1].contains("11 cached"),
        "{runs}"
    );
    assert!(
        lines[2].starts_with("1 ") && lines[2].contains("11 ran"),
        "{runs}"
    );

    let first = stdout(p.t2s().args(["show", "1"]).output().unwrap());
    assert!(first.starts_with("run 1: commands (succeeded)"), "{first}");
    let node_line = first
        .lines()
        .find(|l| l.trim_start().starts_with("train[lora_r=8] "))
        .unwrap();
    assert!(node_line.contains(" ran "), "{node_line}");
    assert!(
        first.contains("scripts/train.py --rank 8\""),
        "params are listed:\n{first}"
    );
    // Final metrics and step series of the trainer.
    let final_loss = first
        .lines()
        .find(|l| l.contains("train[lora_r=4]") && l.contains("final_loss"))
        .unwrap_or_else(|| panic!("no final_loss in\n{first}"));
    assert!(final_loss.trim_end().ends_with("0.166667"), "{final_loss}");
    assert!(
        first.lines().any(|l| l.contains("train[lora_r=4]")
            && l.contains("loss")
            && l.contains("(5 points)")),
        "{first}"
    );

    let second = stdout(p.t2s().args(["show", "last"]).output().unwrap());
    assert!(
        second.starts_with("run 2: commands (succeeded)"),
        "{second}"
    );
    assert!(
        second.lines().filter(|l| l.contains(" cached ")).count() >= 11,
        "{second}"
    );
    assert!(
        second.contains("best_exact_match"),
        "cached nodes keep their final metrics:\n{second}"
    );

    // The same as JSON, for scripts.
    let runs: serde_json::Value =
        serde_json::from_str(&stdout(p.t2s().args(["runs", "--json"]).output().unwrap())).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[0]["id"].as_i64(), runs[0]["nodes"]["cached"].as_i64()),
        (Some(2), Some(11))
    );
    assert_eq!(runs[1]["nodes"]["ran"], 11);
    let shown: serde_json::Value = serde_json::from_str(&stdout(
        p.t2s().args(["show", "1", "--json"]).output().unwrap(),
    ))
    .unwrap();
    assert_eq!(shown["run"]["id"], 1);
    assert_eq!(shown["nodes"].as_array().unwrap().len(), 11);
    let cmd = shown["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"] == "train[lora_r=8]" && p["name"] == "cmd")
        .unwrap();
    assert_eq!(cmd["value"], "python3 -B scripts/train.py --rank 8");
    assert!(shown["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["node"] == "train[lora_r=4]"
            && m["name"] == "final_loss"
            && m["value"] == 0.166667));
    let loss = shown["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node"] == "train[lora_r=4]" && s["name"] == "loss")
        .unwrap();
    assert_eq!(loss["points"].as_array().unwrap().len(), 5);

    let missing = p.t2s().args(["show", "99"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no run `99`"));
}

#[test]
fn database_opens_in_plain_sqlite3() {
    let p = Project::new();
    p.run_ok(&[]);
    let db = p.root().join("experiments/t2s.db");
    let query =
        "SELECT r.status, count(*) FROM runs r JOIN nodes n ON n.run = r.id GROUP BY r.id; \
                 SELECT count(*) FROM metrics WHERE name = 'loss' AND step IS NOT NULL; \
                 SELECT max(version) FROM migrations; \
                 SELECT executor, count(*) FROM executions GROUP BY executor;";
    let out = match common::which("sqlite3") {
        Some(sqlite3) => std::process::Command::new(sqlite3).arg(&db).arg(query).output().unwrap(),
        // No sqlite3 CLI: the same SQLite library through Python's stdlib.
        None => std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .args(["-c", "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nfor q in sys.argv[2].split(';'):\n  q=q.strip()\n  if q:\n    for r in c.execute(q): print('|'.join(map(str,r)))", ])
            .arg(&db)
            .arg(query)
            .output()
            .unwrap(),
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "succeeded|11\n15\n2\nlocal|11\n"
    );
}

#[test]
fn diff_lists_the_params_keys_and_metrics_that_changed_between_two_runs() {
    let p = Project::new();
    p.run_ok(&[]);
    let only_one = p.t2s().arg("diff").output().unwrap();
    assert_eq!(only_one.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&only_one.stderr).contains("only one run"),
        "{}",
        String::from_utf8_lossy(&only_one.stderr)
    );
    p.run_ok(&["--set", "train.env={STEPS: 3, STEP_SECONDS: 0.3}"]);

    // By default the last run against the one before it.
    let text = stdout(p.t2s().arg("diff").output().unwrap());
    assert!(text.starts_with("run 1 → run 2\n"), "{text}");
    let env = text
        .lines()
        .find(|l| l.contains("train[lora_r=4]") && l.contains(" env "))
        .unwrap_or_else(|| panic!("no env change in\n{text}"));
    assert!(
        env.contains(r#""STEPS":"5""#) && env.contains(r#""STEPS":"3""#),
        "{env}"
    );
    // The trainers and everything downstream have new keys; the data stages do not.
    let nodes = text
        .split("\nnodes (")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    assert!(nodes.starts_with("7 with another cache key"), "{nodes}");
    for changed in ["train[lora_r=16]", "evaluate[lora_r=4]", "report"] {
        assert!(nodes.contains(changed), "{changed}: {nodes}");
    }
    assert!(!nodes.contains("  split "), "{nodes}");
    // 1 / (1 + steps · r / 4): 0.166667 after 5 steps of r = 4, 0.25 after 3.
    let loss = text
        .lines()
        .find(|l| l.contains("train[lora_r=4]") && l.contains("final_loss"))
        .unwrap_or_else(|| panic!("no final_loss in\n{text}"));
    let cells: Vec<&str> = loss.split_whitespace().collect();
    assert_eq!(cells[2..], ["0.166667", "0.25", "+0.083333"], "{loss}");

    // The same as JSON, and --all lists the unchanged params too.
    let json: serde_json::Value = serde_json::from_str(&stdout(
        p.t2s().args(["diff", "1", "2", "--json"]).output().unwrap(),
    ))
    .unwrap();
    assert_eq!(json["same"], false);
    assert_eq!(
        (json["a"]["id"].as_i64(), json["b"]["id"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(json["nodes"].as_array().unwrap().len(), 7);
    let changed_params = json["params"].as_array().unwrap().len();
    let all: serde_json::Value = serde_json::from_str(&stdout(
        p.t2s()
            .args(["diff", "1", "2", "--json", "--all"])
            .output()
            .unwrap(),
    ))
    .unwrap();
    assert!(all["params"].as_array().unwrap().len() > changed_params);
    assert_eq!(all["nodes"].as_array().unwrap().len(), 11);

    // A run against itself, and a run that is not there.
    let same = stdout(p.t2s().args(["diff", "last", "last"]).output().unwrap());
    assert!(
        same.contains("the same params, node cache keys and final metrics"),
        "{same}"
    );
    let missing = p.t2s().args(["diff", "1", "9"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no run `9`"));
}
