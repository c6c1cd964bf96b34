//! Acceptance 7 of issue 2: `t2s runs` / `t2s show` list runs, nodes (ran / cached, durations),
//! params and metrics from the DB, and the DB is plain SQLite (`sqlite3` opens it).

mod common;

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
