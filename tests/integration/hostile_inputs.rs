//! Hostile inputs that once crashed or fooled t2s (issue 30): a YAML file nested tens of
//! thousands deep, a prediction hiding a second statement behind a NUL byte, and a short
//! prediction whose result would take gigabytes.

use t2s::eval::exec::execution_match;
use t2s::eval::sandbox::{Limits, Sandbox, SandboxError};

const CTX: &str = "CREATE TABLE t (a INT); INSERT INTO t VALUES (1), (2);";

/// Regression: YAML nested ~30k deep overflowed the stack (SIGABRT) while loading; now the
/// binary exits 2 with the file and line of the first level too deep.
#[test]
fn deeply_nested_yaml_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deep.yaml");
    // Block style: each line opens a list inside the one above.
    let mut text = String::from("name: deep\nstages:\n  x:\n");
    for i in 0..30_000 {
        text.push_str(&format!("{}-\n", " ".repeat(4 + i)));
    }
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_t2s"))
        .arg("dag")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("deep.yaml:130:"), "{err}");
    assert!(err.contains("nested more than 128"), "{err}");
}

/// Regression: SQLite's prepare stops at a NUL byte, so `SELECT ...\0; DROP TABLE t` was
/// scored as the query before the NUL (correct). A NUL makes the SQL invalid.
#[test]
fn a_nul_byte_makes_a_prediction_invalid() {
    let lim = Limits::default();
    let r = execution_match(
        CTX,
        "SELECT a FROM t",
        "SELECT a FROM t\0; DROP TABLE t",
        &lim,
    );
    assert!(!r.correct && !r.valid_sql, "{r:?}");
    assert!(
        r.pred_error.as_deref().unwrap_or("").contains("NUL"),
        "{r:?}"
    );
    let sb = Sandbox::from_context(CTX, &lim).unwrap();
    assert_eq!(sb.run("SELECT 1\0").unwrap_err(), SandboxError::NulByte);
    assert_eq!(sb.check("SELECT 1\0 x").unwrap_err(), SandboxError::NulByte);
    assert!(Sandbox::from_context("CREATE TABLE u (b INT);\0garbage", &lim).is_err());
}

/// Regression: a result was bounded only by max_rows × max_value_bytes (~10 GB): a 60-byte
/// prediction returning 200 rows of 1 MB blobs was copied whole. Now a result over the
/// byte budget is a runtime error that names the budget.
#[test]
fn a_result_over_the_byte_budget_is_refused() {
    let lim = Limits::default();
    let big = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200) \
               SELECT zeroblob(1000000) FROM c";
    let sb = Sandbox::from_context(CTX, &lim).unwrap();
    let e = sb.run(big).unwrap_err();
    assert_eq!(e, SandboxError::ResultTooLarge(lim.max_result_bytes));
    assert!(e.to_string().contains("larger than"), "{e}");
    let r = execution_match(CTX, "SELECT a FROM t", big, &lim);
    assert!(r.valid_sql && !r.correct, "{r:?}");
    assert!(
        r.pred_error
            .as_deref()
            .unwrap_or("")
            .contains("larger than"),
        "{r:?}"
    );
    // Under the budget, results are unchanged.
    assert_eq!(sb.run("SELECT zeroblob(1000000)").unwrap().rows.len(), 1);
}
