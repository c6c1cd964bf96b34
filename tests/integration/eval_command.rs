//! `t2s evaluate --predictions`: a file from outside is scored with all metrics; bad lines are
//! reported with file:line; several files are compared pairwise.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;
use t2s::commands::evaluate::{evaluate_files, EvaluateArgs};
use t2s::eval::nearmiss;

fn args(files: Vec<PathBuf>, json: bool) -> EvaluateArgs {
    EvaluateArgs {
        predictions: files,
        json,
        per_example: None,
        seed: 1,
        max_instructions: 50_000_000,
        scoring: t2s::eval::scoring::Scoring {
            bootstrap_samples: 200,
            test_suite_instances: 8,
            ..Default::default()
        },
    }
}

fn write_jsonl(path: &Path, rows: &[serde_json::Value]) {
    let mut f = std::fs::File::create(path).unwrap();
    for r in rows {
        writeln!(f, "{r}").unwrap();
    }
}

/// Real gretel rows (ids 5097-5099, `shared/reference/data_and_metrics.md` §1.4).
fn gretel_rows() -> Vec<serde_json::Value> {
    vec![
        json!({"id": 5097, "domain": "forestry", "sql_complexity": "single join", "sql_task_type": "analytics and reporting",
            "sql_context": "CREATE TABLE salesperson (salesperson_id INT, name TEXT, region TEXT); INSERT INTO salesperson (salesperson_id, name, region) VALUES (1, 'John Doe', 'North'), (2, 'Jane Smith', 'South'); CREATE TABLE timber_sales (sales_id INT, salesperson_id INT, volume REAL, sale_date DATE); INSERT INTO timber_sales (sales_id, salesperson_id, volume, sale_date) VALUES (1, 1, 120, '2021-01-01'), (2, 1, 150, '2021-02-01'), (3, 2, 180, '2021-01-01');",
            "sql": "SELECT salesperson_id, name, SUM(volume) as total_volume FROM timber_sales JOIN salesperson ON timber_sales.salesperson_id = salesperson.salesperson_id GROUP BY salesperson_id, name ORDER BY total_volume DESC;",
            "prediction": "SELECT s.salesperson_id, s.name, SUM(t.volume) AS total_volume FROM timber_sales t JOIN salesperson s ON t.salesperson_id = s.salesperson_id GROUP BY s.salesperson_id, s.name ORDER BY total_volume DESC;"}),
        json!({"id": 5098, "domain": "defense industry", "sql_complexity": "aggregation", "sql_task_type": "analytics and reporting",
            "sql_context": "CREATE TABLE equipment_maintenance (equipment_type VARCHAR(255), maintenance_frequency INT);",
            "sql": "SELECT equipment_type, SUM(maintenance_frequency) AS total_maintenance_frequency FROM equipment_maintenance GROUP BY equipment_type;",
            "predicted_sql": "select equipment_type, sum(maintenance_frequency) as total_maintenance_frequency from equipment_maintenance group by equipment_type"}),
        json!({"id": 5099, "domain": "marine biology", "sql_complexity": "basic SQL", "sql_task_type": "analytics and reporting",
            "sql_context": "CREATE TABLE marine_species (name VARCHAR(50), common_name VARCHAR(50), location VARCHAR(50));",
            "gold": "SELECT COUNT(*) FROM marine_species WHERE location = 'Southern Ocean';",
            "pred": "SELECT COUNT(*) FROM marine_species WHERE location = 'Arctic Ocean';"}),
    ]
}

fn generated(seed: u64, n: usize) -> Vec<serde_json::Value> {
    nearmiss::generate(n, seed)
        .into_iter()
        .map(|it| json!({"id": it.id, "sql_context": it.context, "sql": it.gold, "prediction": it.pred,
                         "sql_complexity": it.sql_complexity, "sql_task_type": it.sql_task_type, "domain": it.domain}))
        .collect()
}

#[test]
fn scores_a_file_from_outside_with_all_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("preds.jsonl");
    let mut rows = gretel_rows();
    rows.extend(generated(3, 80));
    write_jsonl(&p, &rows);
    let out = evaluate_files(&args(vec![p.clone()], true)).unwrap();
    let j = &out.json;
    assert_eq!(j["n"], 83);
    for k in [
        "bleu",
        "sacrebleu",
        "rouge1",
        "rouge2",
        "rougeL",
        "exact_match",
        "valid_sql",
        "execution_accuracy",
    ] {
        let v = j[k]["value"]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} missing"));
        let (lo, hi) = (
            j[k]["ci_low"].as_f64().unwrap(),
            j[k]["ci_high"].as_f64().unwrap(),
        );
        assert!(lo <= v && v <= hi, "{k}: {lo} <= {v} <= {hi}");
        let top = if k == "sacrebleu" { 100.0 } else { 1.0 };
        assert!(
            v > 0.0 && v < top,
            "{k} = {v} should be strictly inside (0, {top})"
        );
    }
    // Row 5097's gold is ambiguous in SQLite: bucketed, not scored.
    assert!(j["buckets"]["gold_fails"].as_u64().unwrap() >= 1);
    // The scored examples by outcome: they add up, the right ones are the correct count, and
    // the near-miss generator's wrong predictions land in more than one kind of failure.
    let b = &j["buckets"];
    let scored = b["gold_empty"].as_u64().unwrap() + b["gold_nonempty"].as_u64().unwrap();
    let correct =
        b["gold_empty_correct"].as_u64().unwrap() + b["gold_nonempty_correct"].as_u64().unwrap();
    let outcomes = j["outcomes"].as_object().unwrap();
    assert_eq!(
        outcomes.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        scored,
        "{outcomes:?}"
    );
    assert_eq!(outcomes["correct"].as_u64(), Some(correct));
    assert!(outcomes.len() >= 3, "{outcomes:?}");
    assert!(
        out.text.contains("outcomes (scored): correct "),
        "{}",
        out.text
    );
    assert!(
        j["breakdowns"]["sql_complexity"]["single join"]["n"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(out.text.contains("execution_accuracy") && out.text.contains("by domain"));

    // Per-example output: one line per input row.
    let mut a = args(vec![p], false);
    let pe = dir.path().join("per.jsonl");
    a.per_example = Some(pe.clone());
    evaluate_files(&a).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&pe)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 83);
    assert_eq!(lines[1]["id"], "5098");
    assert_eq!(lines[1]["scores"]["exact_match"], true);
    // Row 5099 has no data rows: both counts are 0, so execution agrees though the literal
    // differs (the weakness the buckets and exact match make visible).
    assert_eq!(lines[2]["scores"]["exec"]["correct"], true);
    assert_eq!(lines[2]["scores"]["exact_match"], false);
    assert_eq!(lines[0]["scores"]["exec"]["bucket"], "gold_fails");
}

#[test]
fn bad_lines_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.jsonl");
    std::fs::write(
        &p,
        "{\"sql_context\": \"\", \"sql\": \"SELECT 1\"}\n{oops\n",
    )
    .unwrap();
    // No usable line at all: an error listing every line.
    let e = evaluate_files(&args(vec![p.clone()], true))
        .unwrap_err()
        .to_string();
    let shown = p.display().to_string();
    assert!(e.contains(&format!("{shown}:1: missing field")), "{e}");
    assert!(e.contains(&format!("{shown}:2: invalid JSON")), "{e}");
    let missing = dir.path().join("nope.jsonl");
    let e = evaluate_files(&args(vec![missing], true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read predictions file"), "{e}");
}

/// Regression: one line that was not UTF-8 or not JSON refused the whole file (exit 1, no line
/// number). Now the bad lines are rejected with line and reason, and the rest are scored.
#[test]
fn bad_lines_are_rejected_and_the_rest_scored() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mixed.jsonl");
    let good = r#"{"sql_context": "CREATE TABLE t (a INT); INSERT INTO t VALUES (1);", "sql": "SELECT a FROM t", "prediction": "SELECT a FROM t"}"#;
    let mut bytes = format!("{good}\n{{oops\n").into_bytes();
    bytes.extend_from_slice(
        b"{\"sql_context\": \"\", \"sql\": \"SELECT 1\", \"prediction\": \"\xff\"}\n",
    );
    bytes.extend_from_slice(format!("{good}\n").as_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let out = evaluate_files(&args(vec![p.clone()], false)).unwrap();
    assert_eq!(out.rejected, 2);
    assert_eq!(out.json["n"], 2, "{}", out.json);
    assert_eq!(out.json["execution_accuracy"]["value"], 1.0);
    let rejected = out.json["rejected"].as_array().unwrap();
    assert_eq!(
        (rejected[0]["line"].as_u64(), rejected[1]["line"].as_u64()),
        (Some(2), Some(3))
    );
    assert!(rejected[1]["reason"]
        .as_str()
        .unwrap()
        .contains("not valid UTF-8"));
    let shown = p.display().to_string();
    assert!(out.text.contains("2 line(s) rejected"), "{}", out.text);
    assert!(
        out.text.contains(&format!("{shown}:2: invalid JSON")),
        "{}",
        out.text
    );

    // Through the binary: the scores on stdout, and exit status 1 for the rejected lines.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_t2s"))
        .args(["evaluate", "--bootstrap-samples", "10", "--predictions"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("execution_accuracy"), "{stdout}");
    assert!(
        stdout.contains(&format!("{shown}:3: not valid UTF-8")),
        "{stdout}"
    );
}

#[test]
fn several_files_are_compared_pairwise() {
    let dir = tempfile::tempdir().unwrap();
    let gold_rows = generated(11, 120);
    // "base": the near-miss predictions; "tuned": gold copied as prediction (always right).
    let base = dir.path().join("base.jsonl");
    write_jsonl(&base, &gold_rows);
    let tuned_rows: Vec<serde_json::Value> = gold_rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["prediction"] = r["sql"].clone();
            r
        })
        .collect();
    let tuned = dir.path().join("tuned.jsonl");
    write_jsonl(&tuned, &tuned_rows);
    let out = evaluate_files(&args(vec![base, tuned], true)).unwrap();
    let c = &out.json["comparisons"][0];
    assert_eq!(
        (c["a"].as_str(), c["b"].as_str()),
        (Some("tuned"), Some("base"))
    );
    assert!(c["diff"].as_f64().unwrap() > 0.0);
    assert_eq!(c["only_b"], 0);
    assert!(c["mcnemar_p"].as_f64().unwrap() < 0.01);
    assert_eq!(
        out.json["systems"]["tuned"]["execution_accuracy"]["value"],
        1.0
    );
    assert!(out.text.contains("paired comparisons"));
}

/// The same through the real binary: `t2s evaluate --predictions FILE --json` prints one JSON
/// object with every metric and its CI; a bad line exits non-zero naming file:line.
#[test]
fn t2s_binary_evaluate_predictions_json() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("preds.jsonl");
    write_jsonl(&file, &gretel_rows());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_t2s"))
        .args(["evaluate", "--predictions"])
        .arg(&file)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let v = if v.get("n").is_some() {
        v
    } else {
        v["systems"]
            .as_object()
            .and_then(|m| m.values().next())
            .cloned()
            .unwrap_or(v)
    };
    assert_eq!(v["n"], 3, "{v}");
    for k in [
        "bleu",
        "sacrebleu",
        "rouge1",
        "rouge2",
        "rougeL",
        "exact_match",
        "valid_sql",
        "execution_accuracy",
    ] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
    std::fs::write(&file, "{\"sql\": \"SELECT 1\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_t2s"))
        .args(["evaluate", "--predictions"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("preds.jsonl:1"), "{err}");
}

/// Test-suite accuracy sits beside execution accuracy in the JSON and the tables, never above
/// it; the false positives it catches are counted; `--test-suite-instances 0` turns it off;
/// two files get paired tests on it too.
#[test]
fn test_suite_accuracy_is_reported_beside_execution_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = "CREATE TABLE forests (forest_id INT, name VARCHAR(50), region VARCHAR(50), area INT); \
               INSERT INTO forests (forest_id, name, region, area) VALUES (1, 'Green Valley', 'North', 1200), \
               (2, 'Pine Ridge', 'North', 800), (3, 'Oak Hollow', 'South', 3000);";
    let gold = "SELECT name FROM forests WHERE area > 1000;";
    let mut rows = generated(5, 60);
    rows.push(json!({"id": "fp", "sql_context": ctx, "sql": gold,
        "prediction": "SELECT name FROM forests WHERE area >= 1000;"}));
    let p = dir.path().join("a.jsonl");
    write_jsonl(&p, &rows);
    let out = evaluate_files(&args(vec![p.clone()], true)).unwrap();
    let ts = &out.json["test_suite"];
    let (t, e) = (
        ts["accuracy"]["value"].as_f64().unwrap(),
        out.json["execution_accuracy"]["value"].as_f64().unwrap(),
    );
    assert!(t <= e, "{t} <= {e}");
    assert!(ts["false_positives_caught"].as_u64().unwrap() >= 1, "{ts}");
    assert_eq!(ts["instances"].as_u64(), Some(8));
    assert!(out.text.contains("test_suite_accuracy") && out.text.contains("false positive"));
    let mut off = args(vec![p.clone()], true);
    off.scoring.test_suite_instances = 0;
    let out = evaluate_files(&off).unwrap();
    assert!(out.json.get("test_suite").is_none(), "{}", out.json);
    assert!(!out.text.contains("test_suite_accuracy"));
    let q = dir.path().join("b.jsonl");
    write_jsonl(&q, &generated(6, 60));
    let out = evaluate_files(&args(vec![p, q], false)).unwrap();
    assert!(
        out.text
            .contains("paired comparisons (test-suite accuracy)"),
        "{}",
        out.text
    );
}
