//! Acceptance 1: the built-in generator is deterministic, its gold SQL runs in SQLite against
//! its own context, SELECTs return rows, writes change the database, and all classes and task
//! types appear.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::types::Value;
use rusqlite::Connection;
use t2s::data::builtin::{self, Class, Task};
use t2s::data::Row;

/// Everything observable about a database: its schema and every table's rows.
fn snapshot(conn: &Connection) -> Vec<String> {
    let mut out = Vec::new();
    let mut st = conn
        .prepare("SELECT type, name, COALESCE(sql, '') FROM sqlite_master ORDER BY type, name")
        .unwrap();
    let objs: Vec<(String, String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for (ty, name, sql) in objs {
        out.push(format!("{ty} {name} {sql}"));
        if ty == "table" {
            let mut st = conn.prepare(&format!("SELECT * FROM \"{name}\"")).unwrap();
            let n = st.column_count();
            let mut rows = st.query([]).unwrap();
            let mut lines = Vec::new();
            while let Some(r) = rows.next().unwrap() {
                let vals: Vec<String> = (0..n)
                    .map(|i| format!("{:?}", r.get::<_, Value>(i).unwrap()))
                    .collect();
                lines.push(vals.join("|"));
            }
            lines.sort();
            out.extend(lines);
        }
    }
    out
}

fn is_select(sql: &str) -> bool {
    let s = sql.trim_start().to_ascii_uppercase();
    s.starts_with("SELECT") || s.starts_with("WITH")
}

#[test]
fn same_seed_gives_identical_rows_and_prefixes_agree() {
    let a = builtin::generate(7, 300);
    let b = builtin::generate(7, 300);
    let ja = serde_json::to_string(&a).unwrap();
    assert_eq!(ja, serde_json::to_string(&b).unwrap());
    let c = builtin::generate(8, 300);
    assert_ne!(ja, serde_json::to_string(&c).unwrap(), "seed must matter");
    let prefix = builtin::generate(7, 100);
    assert_eq!(&a[..100], &prefix[..]);
}

#[test]
fn gold_sql_executes_selects_return_rows_writes_change_db() {
    let rows: Vec<Row> = builtin::generate(42, 3000);
    let mut selects = 0usize;
    let mut nonempty = 0usize;
    let mut classes: BTreeMap<String, usize> = BTreeMap::new();
    let mut tasks: BTreeMap<String, usize> = BTreeMap::new();
    let mut domains = BTreeSet::new();
    for r in &rows {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&r.sql_context)
            .unwrap_or_else(|e| panic!("row {} context fails: {e}\n{}", r.id, r.sql_context));
        if is_select(&r.sql) {
            selects += 1;
            let mut st = conn
                .prepare(&r.sql)
                .unwrap_or_else(|e| panic!("row {} gold fails: {e}\n{}", r.id, r.sql));
            let mut q = st.query([]).unwrap();
            if q.next().unwrap().is_some() {
                nonempty += 1;
            }
        } else {
            let before = snapshot(&conn);
            conn.execute_batch(&r.sql)
                .unwrap_or_else(|e| panic!("row {} gold fails: {e}\n{}", r.id, r.sql));
            assert_ne!(
                before,
                snapshot(&conn),
                "row {}: write changed nothing: {}",
                r.id,
                r.sql
            );
        }
        *classes.entry(r.sql_complexity.clone()).or_default() += 1;
        *tasks.entry(r.sql_task_type.clone()).or_default() += 1;
        domains.insert(r.domain.clone());
        for (f, v) in [
            ("prompt", &r.sql_prompt),
            ("explanation", &r.sql_explanation),
            ("domain_description", &r.domain_description),
            ("complexity_description", &r.sql_complexity_description),
            ("task_description", &r.sql_task_type_description),
        ] {
            assert!(!v.trim().is_empty(), "row {}: empty {f}", r.id);
        }
    }
    assert!(
        nonempty * 100 >= selects * 95,
        "{nonempty} of {selects} SELECTs return rows"
    );
    for c in Class::ALL {
        assert!(
            classes.get(c.label()).copied().unwrap_or(0) > 100,
            "{classes:?}"
        );
    }
    for t in Task::ALL {
        assert!(tasks.get(t.label()).copied().unwrap_or(0) > 50, "{tasks:?}");
    }
    assert_eq!(classes.len(), 8);
    assert_eq!(tasks.len(), 4);
    assert!(domains.len() >= 30, "{} domains", domains.len());
}

#[test]
fn prompts_vary_and_rarely_repeat() {
    let rows = builtin::generate(1, 2000);
    let distinct: BTreeSet<&str> = rows.iter().map(|r| r.sql_prompt.as_str()).collect();
    assert!(
        distinct.len() * 10 >= rows.len() * 8,
        "{} distinct prompts",
        distinct.len()
    );
    // Context lengths stay compact for the tiny quickstart model.
    let max = rows.iter().map(|r| r.sql_context.len()).max().unwrap();
    assert!(max < 1200, "longest context {max} chars");
}

#[test]
fn domain_subset_draws_only_those_domains_and_all_domains_is_the_default() {
    let names = vec!["banking".to_string(), "music".to_string()];
    let ds = builtin::domains_named(&names).unwrap();
    let rows = builtin::generate_in(3, 400, &ds);
    let seen: BTreeSet<&str> = rows.iter().map(|r| r.domain.as_str()).collect();
    assert_eq!(seen, BTreeSet::from(["banking", "music"]));
    // Every domain listed is the same as no restriction: identical rows.
    let all: Vec<String> = builtin::domains::domains()
        .iter()
        .map(|d| d.name.to_string())
        .collect();
    let every = builtin::domains_named(&all).unwrap();
    assert_eq!(
        builtin::generate_in(3, 50, &every),
        builtin::generate(3, 50)
    );
    // A typo names itself and lists the known domains.
    let err = builtin::domains_named(&["bankin".to_string()]).unwrap_err();
    assert!(err.contains("`bankin`") && err.contains("banking"), "{err}");
}
