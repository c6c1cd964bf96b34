//! Hostile predicted SQL: every statement is scored as a failure, stopped by a limit where it
//! would run away, creates no file, and never hangs. One test function only, because it
//! changes the process working directory to a fresh temp dir to catch relative-path files.

use std::time::Duration;

use t2s::eval::exec::execution_match;
use t2s::eval::sandbox::{Limits, Sandbox, SandboxError};

const CTX: &str = "CREATE TABLE t (x INT, s TEXT); \
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200) \
INSERT INTO t SELECT x, 'row' || x FROM c;";
const GOLD: &str = "SELECT COUNT(*) FROM t";

fn limits() -> Limits {
    Limits {
        max_instructions: 5_000_000,
        max_wall: Duration::from_secs(3),
        ..Limits::default()
    }
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn hostile_sql_is_contained() {
    if crate::common::rerun_alone(&format!("{}::hostile_sql_is_contained", module_path!())) {
        return; // it changes the working directory
    }
    let work = tempfile::tempdir().unwrap();
    std::env::set_current_dir(work.path()).unwrap();
    let abs = work.path().join("abs.db");
    let abs = abs.display();
    let deep = format!("SELECT 1{}", " + x".repeat(5000)) + " FROM t";
    let long_sql = format!("SELECT '{}'", "x".repeat(200_000));
    // (prediction, expected error class)
    let cases: Vec<(String, &str)> = vec![
        // runaway computation: must be stopped by the instruction/time budget or the row cap
        ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c".into(), "rows"),
        ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c".into(), "limit"),
        ("SELECT COUNT(*) FROM t a, t b, t c, t d, t e".into(), "limit"),
        ("SELECT a.s || b.s FROM t a, t b, t c ORDER BY 1".into(), "limit"),
        ("SELECT * FROM t a, t b".into(), "rows"),
        // huge values: SQLITE_LIMIT_LENGTH
        ("SELECT zeroblob(2000000000)".into(), "sqlite"),
        ("SELECT randomblob(1000000000)".into(), "sqlite"),
        ("SELECT length(replace(hex(zeroblob(400000)), '0', 'xxxxxxxxxx'))".into(), "sqlite"),
        // SQLite's printf gives NULL rather than a string over the limit
        ("SELECT printf('%.*c', 2000000000, 'x')".into(), "null"),
        ("SELECT length(printf('%2000000000d', 1))".into(), "null"),
        ("WITH RECURSIVE c(x, s) AS (SELECT 1, 'x' UNION ALL SELECT x + 1, s || s FROM c WHERE x < 100) SELECT length(s) FROM c".into(), "sqlite"),
        (long_sql, "sqlite"),
        (deep, "sqlite"),
        // file access
        ("ATTACH DATABASE 'evil.db' AS e".into(), "forbidden"),
        (format!("ATTACH '{abs}' AS e"), "forbidden"),
        ("VACUUM INTO 'copy.db'".into(), "forbidden"),
        (format!("VACUUM INTO '{abs}'"), "forbidden"),
        ("SELECT load_extension('./evil.so')".into(), "sqlite"),
        ("SELECT load_extension('libc.so.6', 'system')".into(), "sqlite"),
        ("SELECT writefile('out.txt', 'x')".into(), "sqlite"),
        ("SELECT readfile('/etc/passwd')".into(), "sqlite"),
        // pragmas and other statement kinds
        ("PRAGMA writable_schema = 1".into(), "forbidden"),
        ("PRAGMA journal_mode = WAL".into(), "forbidden"),
        ("PRAGMA temp_store_directory = '.'".into(), "forbidden"),
        ("BEGIN; SELECT 1; COMMIT".into(), "forbidden"),
        ("DETACH DATABASE main".into(), "forbidden"),
        // more than one statement, including a hidden file access
        ("SELECT COUNT(*) FROM t; DROP TABLE t".into(), "multi"),
        // (the tail is prepared to detect it, and the authorizer refuses the ATTACH first)
        ("SELECT 200; ATTACH 'evil2.db' AS e".into(), "sqlite"),
        ("DELETE FROM t; SELECT 200".into(), "multi"),
        // virtual tables are off
        ("CREATE VIRTUAL TABLE v USING fts5(a)".into(), "sqlite"),
    ];
    let lim = limits();
    for (sql, class) in &cases {
        let shown: String = sql.chars().take(80).collect();
        // As a prediction: a failure.
        let r = execution_match(CTX, GOLD, sql, &lim);
        assert!(r.scored(), "{shown}: gold must run ({:?})", r.gold_error);
        assert!(!r.correct, "{shown}: scored as correct");
        // Directly: the expected kind of refusal.
        let db = Sandbox::from_context(CTX, &lim).unwrap();
        if *class == "null" {
            let out = db.run(sql).unwrap();
            assert_eq!(
                out.rows,
                vec![vec![t2s::eval::value::Value::Null]],
                "{shown}"
            );
            continue;
        }
        let err = db.run(sql).expect_err(&shown);
        let got = match &err {
            SandboxError::Limit(_) => "limit",
            SandboxError::TooManyRows(_) => "rows",
            SandboxError::Forbidden(_) => "forbidden",
            SandboxError::MultipleStatements => "multi",
            SandboxError::Sqlite(_) => "sqlite",
            SandboxError::Empty => "empty",
            SandboxError::ResultTooLarge(_) => "bytes",
            SandboxError::NulByte => "nul",
        };
        assert_eq!(got, *class, "{shown}: {err}");
        // As gold, hostile SQL only lands in the gold-fails bucket.
        let g = execution_match(CTX, sql, GOLD, &lim);
        assert!(!g.correct && !g.scored(), "{shown}: hostile gold scored");
    }
    // The database is still usable after an interrupted statement.
    let db = Sandbox::from_context(CTX, &lim).unwrap();
    assert!(db.run("SELECT COUNT(*) FROM t a, t b, t c, t d").is_err());
    let ok = db.run(GOLD).unwrap();
    assert_eq!(ok.rows.len(), 1);
    // No file was created anywhere we can see.
    assert!(
        files_in(work.path()).is_empty(),
        "{:?}",
        files_in(work.path())
    );
    std::env::set_current_dir(std::env::temp_dir()).unwrap();
}
