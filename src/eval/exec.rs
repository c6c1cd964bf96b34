//! Execution accuracy: run gold and predicted SQL on the row's own database (built from
//! `sql_context` in a [`Sandbox`]) and compare what they did.
//!
//! Semantics (Spider test-suite `result_eq`, `shared/reference/data_and_metrics.md` §4.1, with
//! the choices below stated):
//! - Queries (the gold statement is read-only): results compared as **bags** of rows, as a
//!   **list** only when the gold's outermost query has `ORDER BY` (test-suite looks for
//!   "order by" anywhere; window and subquery orderings do not count here). Column order does
//!   not matter: a permutation of the predicted columns must make the rows equal. Two empty
//!   results are equal whatever their columns. Values compare with SQLite equality (1 == 1.0).
//!   `DISTINCT` is **kept** on both sides (test-suite's `--keep_distinct`): queries run as
//!   written. BIRD's set-of-tuples comparison is reported too ([`ExecResult::set_match`]).
//! - Writes (INSERT/UPDATE/DELETE/REPLACE): the prediction must also write, and the databases
//!   after gold and after prediction must be equal: same schema (see DDL) and the same bag of
//!   rows in every table.
//! - DDL (CREATE/DROP/ALTER): same comparison; the schema is every `sqlite_master` object
//!   (type, lower-cased name and table) plus `PRAGMA table_info` of tables and views
//!   (lower-cased column name, declared type upper-cased without spaces, notnull, default, pk).
//! - Buckets: the gold fails (context or gold SQL errors: not scored), the gold is empty (query
//!   returns no rows, or a write/DDL changes nothing), the gold is non-empty. Gold SQL naming a
//!   non-deterministic function ([`nondeterministic_token`]) is excluded and counted.
//! - A prediction that errors, breaks a limit or is not exactly one allowed statement is wrong.

use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use super::sandbox::{Limits, Outcome, Sandbox, SandboxError};
use super::sqllex::{first_keyword, has_outer_order_by, nondeterministic_token};
use super::value::Value;

/// Where a row lands in the execution-accuracy report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// The gold SQL uses a clock or randomness: excluded.
    Nondeterministic,
    /// The context or the gold SQL does not run in SQLite: excluded.
    GoldFails,
    /// The gold query returns no rows / the gold write changes nothing.
    GoldEmpty,
    /// The gold query returns rows / the gold write changes the database.
    GoldNonempty,
}

/// What kind of statement the gold is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StmtKind {
    Query,
    Write,
    Ddl,
    Unknown,
}

/// The execution verdict of one example.
#[derive(Debug, Clone, Serialize)]
pub struct ExecResult {
    pub bucket: Bucket,
    pub kind: StmtKind,
    /// Test-suite style match (see the module doc). Always false outside the scored buckets.
    pub correct: bool,
    /// BIRD style: sets of row tuples equal, column order significant (queries only; for
    /// writes and DDL equal to `correct`).
    pub set_match: bool,
    /// The prediction prepares in the row's database as exactly one allowed statement.
    pub valid_sql: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gold_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pred_error: Option<String>,
}

impl ExecResult {
    /// True for the buckets execution accuracy is computed over.
    pub fn scored(&self) -> bool {
        matches!(self.bucket, Bucket::GoldEmpty | Bucket::GoldNonempty)
    }
}

/// Column-permutation attempts before a bag comparison gives up (counts as a mismatch).
pub const MAX_PERMUTATION_CHECKS: usize = 1000;

/// Score one example.
pub fn execution_match(context: &str, gold: &str, pred: &str, limits: &Limits) -> ExecResult {
    let mut res = ExecResult {
        bucket: Bucket::GoldFails,
        kind: StmtKind::Unknown,
        correct: false,
        set_match: false,
        valid_sql: false,
        gold_error: None,
        pred_error: None,
    };
    let gold_db = match Sandbox::from_context(context, limits) {
        Ok(db) => db,
        Err(e) => {
            res.gold_error = Some(format!("context: {e}"));
            return res;
        }
    };
    // Validity, on the database as the context left it.
    let pred_readonly = match gold_db.readonly(pred) {
        Ok(ro) => {
            res.valid_sql = true;
            Some(ro)
        }
        Err(e) => {
            res.pred_error = Some(e.to_string());
            None
        }
    };
    if let Some(tok) = nondeterministic_token(gold) {
        res.bucket = Bucket::Nondeterministic;
        res.gold_error = Some(format!("gold uses non-deterministic {tok}"));
        return res;
    }
    let gold_readonly = match gold_db.readonly(gold) {
        Ok(ro) => ro,
        Err(e) => {
            res.gold_error = Some(e.to_string());
            return res;
        }
    };
    if gold_readonly {
        query_match(&gold_db, gold, pred, pred_readonly, &mut res);
    } else {
        write_match(
            &gold_db,
            context,
            gold,
            pred,
            pred_readonly,
            limits,
            &mut res,
        );
    }
    res
}

/// The gold is a query: compare results. A read-only prediction runs on the same database
/// (nothing changed it), so only one database is built.
fn query_match(db: &Sandbox, gold: &str, pred: &str, pred_ro: Option<bool>, res: &mut ExecResult) {
    res.kind = StmtKind::Query;
    let gold_out = match db.run(gold) {
        Ok(o) => o,
        Err(e) => {
            res.gold_error = Some(e.to_string());
            return;
        }
    };
    res.bucket = if gold_out.rows.is_empty() {
        Bucket::GoldEmpty
    } else {
        Bucket::GoldNonempty
    };
    match pred_ro {
        None => {}
        Some(false) => {
            res.pred_error = Some("the prediction writes but the gold is a query".into());
        }
        Some(true) => match db.run(pred) {
            Ok(p) => {
                res.correct = result_eq(&gold_out, &p, has_outer_order_by(gold));
                res.set_match = set_eq(&gold_out.rows, &p.rows);
            }
            Err(e) => res.pred_error = Some(e.to_string()),
        },
    }
}

/// The gold writes (DML or DDL): compare the databases after gold and after prediction.
fn write_match(
    gold_db: &Sandbox,
    context: &str,
    gold: &str,
    pred: &str,
    pred_ro: Option<bool>,
    limits: &Limits,
    res: &mut ExecResult,
) {
    res.kind = match first_keyword(gold).as_deref() {
        Some("CREATE" | "DROP" | "ALTER") => StmtKind::Ddl,
        _ => StmtKind::Write,
    };
    let snap = |db: &Sandbox, res: &mut ExecResult| match snapshot(db) {
        Ok(s) => Some(s),
        Err(e) => {
            res.gold_error = Some(format!("snapshot: {e}"));
            None
        }
    };
    let Some(before) = snap(gold_db, res) else {
        return;
    };
    if let Err(e) = gold_db.run(gold) {
        res.gold_error = Some(e.to_string());
        return;
    }
    let Some(after) = snap(gold_db, res) else {
        return;
    };
    res.bucket = if after == before {
        Bucket::GoldEmpty
    } else {
        Bucket::GoldNonempty
    };
    match pred_ro {
        None => {}
        Some(true) => {
            res.pred_error = Some("the prediction does not write but the gold does".into());
        }
        Some(false) => {
            let result = Sandbox::from_context(context, limits)
                .and_then(|db| db.run(pred).map(|_| db))
                .and_then(|db| snapshot(&db));
            match result {
                Ok(s) => {
                    res.correct = s == after;
                    res.set_match = res.correct;
                }
                Err(e) => res.pred_error = Some(e.to_string()),
            }
        }
    }
}

/// One example for [`execution_match_many`].
#[derive(Debug, Clone, Copy)]
pub struct ExecItem<'a> {
    pub context: &'a str,
    pub gold: &'a str,
    pub pred: &'a str,
}

/// Score many examples in parallel (rayon); results are in input order.
pub fn execution_match_many(items: &[ExecItem<'_>], limits: &Limits) -> Vec<ExecResult> {
    items
        .par_iter()
        .map(|it| execution_match(it.context, it.gold, it.pred, limits))
        .collect()
}

/// Test-suite `result_eq` with SQLite value equality (see the module doc).
pub fn result_eq(gold: &Outcome, pred: &Outcome, ordered: bool) -> bool {
    let (g, p) = (&gold.rows, &pred.rows);
    if g.is_empty() && p.is_empty() {
        return true;
    }
    if g.len() != p.len() {
        return false;
    }
    let ncol = g[0].len();
    if p[0].len() != ncol {
        return false;
    }
    let col = |rows: &[Vec<Value>], j: usize| -> Vec<Value> {
        rows.iter().map(|r| r[j].clone()).collect()
    };
    let gcols: Vec<Vec<Value>> = (0..ncol).map(|j| col(g, j)).collect();
    let pcols: Vec<Vec<Value>> = (0..ncol).map(|j| col(p, j)).collect();
    let key = |c: &Vec<Value>| -> Vec<Value> {
        let mut c = c.clone();
        if !ordered {
            c.sort();
        }
        c
    };
    let gkeys: Vec<Vec<Value>> = gcols.iter().map(key).collect();
    let pkeys: Vec<Vec<Value>> = pcols.iter().map(key).collect();
    // Candidates: predicted columns holding the same values (same sequence when ordered).
    // Identical predicted columns are interchangeable: only the first unused one is tried.
    let candidates: Vec<Vec<usize>> = gkeys
        .iter()
        .map(|gk| (0..ncol).filter(|&k| &pkeys[k] == gk).collect())
        .collect();
    if candidates.iter().any(Vec::is_empty) {
        return false;
    }
    let mut gold_sorted = g.clone();
    if !ordered {
        gold_sorted.sort();
    }
    let mut perm = vec![usize::MAX; ncol];
    let mut used = vec![false; ncol];
    let mut checks = 0usize;
    search(
        0,
        &candidates,
        &pcols,
        p,
        &gold_sorted,
        ordered,
        &mut perm,
        &mut used,
        &mut checks,
    )
}

#[allow(clippy::too_many_arguments)]
fn search(
    j: usize,
    candidates: &[Vec<usize>],
    pcols: &[Vec<Value>],
    p: &[Vec<Value>],
    gold_sorted: &[Vec<Value>],
    ordered: bool,
    perm: &mut [usize],
    used: &mut [bool],
    checks: &mut usize,
) -> bool {
    if j == candidates.len() {
        *checks += 1;
        if ordered {
            // Every gold column equals its predicted column as a sequence: rows are equal.
            return true;
        }
        let mut rows: Vec<Vec<Value>> = p
            .iter()
            .map(|r| perm.iter().map(|&k| r[k].clone()).collect())
            .collect();
        rows.sort();
        return rows == gold_sorted;
    }
    let mut tried: Vec<&Vec<Value>> = Vec::new();
    for &k in &candidates[j] {
        if used[k] || tried.contains(&&pcols[k]) {
            continue;
        }
        if *checks >= MAX_PERMUTATION_CHECKS {
            return false;
        }
        tried.push(&pcols[k]);
        used[k] = true;
        perm[j] = k;
        if search(
            j + 1,
            candidates,
            pcols,
            p,
            gold_sorted,
            ordered,
            perm,
            used,
            checks,
        ) {
            return true;
        }
        used[k] = false;
    }
    false
}

/// BIRD EX: `set(pred) == set(gold)` over row tuples (column order significant).
pub fn set_eq(gold: &[Vec<Value>], pred: &[Vec<Value>]) -> bool {
    let g: HashSet<&Vec<Value>> = gold.iter().collect();
    let p: HashSet<&Vec<Value>> = pred.iter().collect();
    g == p
}

/// One `PRAGMA table_info` row: (name, declared type, notnull, default, pk).
pub type ColumnInfo = (String, String, Value, Value, Value);

/// Schema and contents of a database, in a form that compares as described in the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// (type, name, table) of every schema object, lower-cased.
    pub objects: Vec<(String, String, String)>,
    /// Columns of each table and view: (name, declared type, notnull, default, pk).
    pub columns: BTreeMap<String, Vec<ColumnInfo>>,
    /// Sorted rows of each table.
    pub rows: BTreeMap<String, Vec<Vec<Value>>>,
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        other => other.to_string(),
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Take a [`Snapshot`] of a sandbox's main database.
pub fn snapshot(db: &Sandbox) -> Result<Snapshot, SandboxError> {
    let objs = db.trusted_query(
        "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
    )?;
    let mut objects = Vec::new();
    let mut columns = BTreeMap::new();
    let mut rows = BTreeMap::new();
    for o in &objs {
        let (ty, name, tbl) = (text(&o[0]), text(&o[1]), text(&o[2]));
        objects.push((ty.clone(), name.to_lowercase(), tbl.to_lowercase()));
        if ty == "table" || ty == "view" {
            let info = db.trusted_query(&format!("PRAGMA table_info({})", quote_ident(&name)))?;
            let cols = info
                .iter()
                .map(|c| {
                    let decl: String = text(&c[2])
                        .to_uppercase()
                        .chars()
                        .filter(|ch| !ch.is_whitespace())
                        .collect();
                    (
                        text(&c[1]).to_lowercase(),
                        decl,
                        c[3].clone(),
                        c[4].clone(),
                        c[5].clone(),
                    )
                })
                .collect();
            columns.insert(name.to_lowercase(), cols);
        }
        if ty == "table" {
            let mut data = db.trusted_query(&format!("SELECT * FROM {}", quote_ident(&name)))?;
            data.sort();
            rows.insert(name.to_lowercase(), data);
        }
    }
    objects.sort();
    Ok(Snapshot {
        objects,
        columns,
        rows,
    })
}
