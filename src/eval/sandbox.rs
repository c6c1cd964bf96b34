//! A SQLite sandbox for untrusted SQL: the row's database is built from its `sql_context` in a
//! private in-memory connection, then one statement runs under limits.
//!
//! Defences, each independent of the others:
//! - statement allowlist by first keyword (SELECT, WITH, VALUES, INSERT, REPLACE, UPDATE,
//!   DELETE, CREATE, DROP, ALTER): no PRAGMA, ATTACH, DETACH, VACUUM, transactions;
//! - an authorizer that denies ATTACH/DETACH, PRAGMA (except read-only schema pragmas used by
//!   the evaluator itself), virtual tables, transactions and savepoints, and the functions
//!   `load_extension`, `readfile`, `writefile`, `edit`, `fts3_tokenizer`;
//! - `SQLITE_LIMIT_ATTACHED = 0` (ATTACH and VACUUM INTO cannot open a file), defensive mode,
//!   extension loading off, temp store in memory;
//! - `SQLITE_LIMIT_LENGTH` (largest string/blob/row) and `SQLITE_LIMIT_SQL_LENGTH`;
//! - a progress handler enforcing an instruction budget (deterministic), a wall-clock limit and
//!   a process-wide SQLite heap ceiling (the only memory knob SQLite has; it is global, so
//!   under parallel scoring a memory hog can also interrupt its neighbours: it is set high);
//! - caps on result rows and on a result's total bytes (rows × value size alone allow ~10 GB);
//!   exactly one statement (`prepare` rejects a non-empty tail);
//! - no NUL byte in SQL text: SQLite's `prepare` stops reading at the first NUL, so whatever
//!   follows it (`SELECT 1\0; DROP TABLE t`) would be silently ignored, not checked.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use rusqlite::StatementStatus;

use super::value::Value;

/// Resource limits of one statement.
#[derive(Debug, Clone)]
pub struct Limits {
    /// SQLite VM instructions per statement (counted in steps of [`PROGRESS_STEP`]).
    pub max_instructions: u64,
    /// Wall-clock time per statement.
    pub max_wall: Duration,
    /// Rows a query may return.
    pub max_rows: usize,
    /// Largest string, blob or row, in bytes (`SQLITE_LIMIT_LENGTH`).
    pub max_value_bytes: i32,
    /// Longest SQL text, in bytes (`SQLITE_LIMIT_SQL_LENGTH`).
    pub max_sql_bytes: i32,
    /// Process-wide SQLite heap ceiling, in bytes, checked by the progress handler.
    pub max_heap_bytes: i64,
    /// Total bytes of one result (text and blob lengths, 8 per number), the memory its copy
    /// takes; `max_rows` × `max_value_bytes` alone would allow ~10 GB.
    pub max_result_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_instructions: 50_000_000,
            max_wall: Duration::from_secs(5),
            max_rows: 10_000,
            max_value_bytes: 1_000_000,
            max_sql_bytes: 100_000,
            max_heap_bytes: 2 << 30,
            max_result_bytes: 64 << 20,
        }
    }
}

/// Instructions between two progress-handler calls.
pub const PROGRESS_STEP: i32 = 1000;

/// Why a statement did not produce a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SandboxError {
    #[error("the SQL is empty")]
    Empty,
    #[error("statement kind `{0}` is not allowed (only queries, writes and DDL)")]
    Forbidden(String),
    #[error("more than one statement")]
    MultipleStatements,
    #[error("resource limit: {0}")]
    Limit(String),
    #[error("result has more than {0} rows")]
    TooManyRows(usize),
    #[error("result is larger than {0} bytes")]
    ResultTooLarge(usize),
    #[error("the SQL contains a NUL byte (SQLite would silently ignore what follows it)")]
    NulByte,
    #[error("sqlite: {0}")]
    Sqlite(String),
}

/// What a statement did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// True for statements that do not change the database (`sqlite3_stmt_readonly`).
    pub readonly: bool,
}

const ALLOWED_FIRST: &[&str] = &[
    "SELECT", "WITH", "VALUES", "INSERT", "REPLACE", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER",
];
const DENIED_FUNCTIONS: &[&str] = &[
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
];
const READ_PRAGMAS: &[&str] = &["table_info", "table_xinfo", "index_list", "index_info"];

/// Shared state of the progress handler.
struct Budget {
    ticks: AtomicU64,
    max_ticks: AtomicU64,
    /// SQLite VM steps of the untrusted statements and row loads since the connection opened,
    /// counted exactly (SQLite's own per-statement counter): the test suite's budget.
    spent: AtomicU64,
    /// A tighter tick limit than `Limits::max_instructions` (`u64::MAX`: none); what is left of
    /// the test suite's per-prediction budget.
    tick_cap: AtomicU64,
    deadline_ms: AtomicU64,
    max_heap: AtomicU64,
    tripped: AtomicU64,
    origin: Instant,
}

/// Predicted or gold SQL.
const MODE_UNTRUSTED: u8 = 0;
/// The row's `sql_context` script: transactions are allowed too.
const MODE_CONTEXT: u8 = 1;
/// The evaluator's own snapshot queries: read-only schema pragmas are allowed too.
const MODE_EVALUATOR: u8 = 2;

const TRIP_NONE: u64 = 0;
const TRIP_INSTR: u64 = 1;
const TRIP_WALL: u64 = 2;
const TRIP_HEAP: u64 = 3;

/// One private in-memory database.
pub struct Sandbox {
    conn: Connection,
    limits: Limits,
    budget: Arc<Budget>,
    /// Who runs SQL now: [`MODE_UNTRUSTED`], [`MODE_CONTEXT`] or [`MODE_EVALUATOR`].
    mode: Arc<AtomicU8>,
}

fn sq(e: rusqlite::Error) -> SandboxError {
    SandboxError::Sqlite(e.to_string())
}

impl Sandbox {
    /// A fresh empty database with all defences on.
    pub fn new(limits: &Limits) -> Result<Self, SandboxError> {
        let conn = Connection::open_in_memory().map_err(sq)?;
        // Before the authorizer exists: settings only the evaluator may change.
        conn.execute_batch("PRAGMA temp_store = MEMORY;")
            .map_err(sq)?;
        use rusqlite::config::DbConfig;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
            .map_err(sq)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, true)
            .map_err(sq)?;
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)
            .map_err(sq)?;
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, limits.max_value_bytes)
            .map_err(sq)?;
        conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, limits.max_sql_bytes)
            .map_err(sq)?;
        conn.set_limit(Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 10)
            .map_err(sq)?;
        // Gold, neighbours and prediction of a test suite, and the instance loads, stay cached.
        conn.set_prepared_statement_cache_capacity(64);
        let mode = Arc::new(AtomicU8::new(MODE_UNTRUSTED));
        let m2 = mode.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            authorize(ctx, m2.load(Ordering::Relaxed))
        }));
        let budget = Arc::new(Budget {
            ticks: AtomicU64::new(0),
            max_ticks: AtomicU64::new(u64::MAX),
            spent: AtomicU64::new(0),
            tick_cap: AtomicU64::new(u64::MAX),
            deadline_ms: AtomicU64::new(u64::MAX),
            max_heap: AtomicU64::new(limits.max_heap_bytes.max(0) as u64),
            tripped: AtomicU64::new(TRIP_NONE),
            origin: Instant::now(),
        });
        let b2 = budget.clone();
        conn.progress_handler(PROGRESS_STEP, Some(move || progress(&b2)));
        Ok(Self {
            conn,
            limits: limits.clone(),
            budget,
            mode,
        })
    }

    /// A database built by running the row's `sql_context` script (several statements).
    pub fn from_context(context: &str, limits: &Limits) -> Result<Self, SandboxError> {
        let sb = Self::new(limits)?;
        if context.contains('\0') {
            return Err(SandboxError::NulByte);
        }
        if !context.trim().is_empty() {
            sb.arm();
            sb.mode.store(MODE_CONTEXT, Ordering::Relaxed);
            let r = sb.conn.execute_batch(context);
            sb.mode.store(MODE_UNTRUSTED, Ordering::Relaxed);
            sb.check_trip(r.map_err(sq))?;
        }
        Ok(sb)
    }

    /// The underlying connection (for the evaluator's own snapshot queries).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    fn arm(&self) {
        let b = &self.budget;
        b.ticks.store(0, Ordering::Relaxed);
        b.tripped.store(TRIP_NONE, Ordering::Relaxed);
        b.max_ticks.store(
            (self.limits.max_instructions / PROGRESS_STEP as u64)
                .min(b.tick_cap.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        let now = b.origin.elapsed().as_millis() as u64;
        b.deadline_ms.store(
            now.saturating_add(self.limits.max_wall.as_millis() as u64),
            Ordering::Relaxed,
        );
    }

    /// SQLite instructions (VM steps) of the untrusted statements run and the rows loaded on
    /// this connection so far: a measure of work that, unlike time, does not depend on the
    /// machine or its load.
    pub fn instructions_spent(&self) -> u64 {
        self.budget.spent.load(Ordering::Relaxed)
    }

    /// Count what `stmt` ran since it was last counted (its VM-step counter is reset, so a
    /// cached statement is counted once per run).
    fn charge(&self, stmt: &rusqlite::Statement<'_>) {
        let steps = stmt.reset_status(StatementStatus::VmStep).max(0) as u64;
        self.budget.spent.fetch_add(steps, Ordering::Relaxed);
    }

    /// Limit each following statement to `cap` instructions as well (`None`: only
    /// `Limits::max_instructions`), to the granularity of [`PROGRESS_STEP`]. A statement
    /// stopped by it fails like one over the limit.
    pub fn cap_instructions(&self, cap: Option<u64>) {
        let ticks = cap.map_or(u64::MAX, |c| c / PROGRESS_STEP as u64);
        self.budget.tick_cap.store(ticks, Ordering::Relaxed);
    }

    /// Turn an interrupted statement into the limit that stopped it.
    fn check_trip<T>(&self, r: Result<T, SandboxError>) -> Result<T, SandboxError> {
        let limit = |what: &str| Err(SandboxError::Limit(what.to_string()));
        match self.budget.tripped.load(Ordering::Relaxed) {
            TRIP_INSTR => limit(&format!(
                "more than {} SQLite instructions",
                self.budget.max_ticks.load(Ordering::Relaxed) * PROGRESS_STEP as u64
            )),
            TRIP_WALL => limit(&format!("ran longer than {:?}", self.limits.max_wall)),
            TRIP_HEAP => limit("SQLite heap ceiling reached"),
            _ => r,
        }
    }

    /// Prepare and check `sql` without running it (SQL validity).
    pub fn check(&self, sql: &str) -> Result<(), SandboxError> {
        let sql = precheck(sql)?;
        self.arm();
        let r = self.conn.prepare(sql).map(|_| ()).map_err(map_prepare_err);
        self.check_trip(r)
    }

    /// Prepare `sql` (all checks of [`Sandbox::run`]) and tell whether it leaves the database
    /// unchanged (`sqlite3_stmt_readonly`), without running it.
    pub fn readonly(&self, sql: &str) -> Result<bool, SandboxError> {
        let sql = precheck(sql)?;
        self.arm();
        // Cached, like `run`: the statement is usually run next.
        let r = self
            .conn
            .prepare_cached(sql)
            .map(|s| s.readonly())
            .map_err(map_prepare_err);
        self.check_trip(r)
    }

    /// Run exactly one untrusted statement and collect its rows.
    pub fn run(&self, sql: &str) -> Result<Outcome, SandboxError> {
        let sql = precheck(sql)?;
        self.arm();
        let r = self.run_inner(sql);
        self.check_trip(r)
    }

    fn run_inner(&self, sql: &str) -> Result<Outcome, SandboxError> {
        // Cached: the test suite runs the same statements on many instances. The authorizer
        // saw the statement when it was first prepared, in this same untrusted mode (SQLite
        // prepares it again, authorizer included, when the schema changes).
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_prepare_err)?;
        let readonly = stmt.readonly();
        let columns: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let ncol = columns.len();
        let rows_out = self.collect(stmt.raw_query(), ncol, Some(self.limits.max_rows));
        self.charge(&stmt);
        let rows_out = rows_out?;
        Ok(Outcome {
            columns,
            rows: rows_out,
            readonly,
        })
    }

    /// Run the evaluator's own trusted read query (schema pragmas allowed), under the limits.
    pub fn trusted_query(&self, sql: &str) -> Result<Vec<Vec<Value>>, SandboxError> {
        self.mode.store(MODE_EVALUATOR, Ordering::Relaxed);
        self.arm();
        let r = (|| {
            let mut stmt = self.conn.prepare(sql).map_err(sq)?;
            let n = stmt.column_count();
            self.collect(stmt.raw_query(), n, None)
        })();
        self.mode.store(MODE_UNTRUSTED, Ordering::Relaxed);
        self.check_trip(r)
    }
}

impl Sandbox {
    /// Replace the rows of `table` by `rows` (values for `columns`, in order) as the evaluator:
    /// bound parameters, rows a constraint rejects skipped (`INSERT OR IGNORE`), under the
    /// limits. `triggers`: the schema has triggers; they are switched off while the rows go in
    /// (a test-suite instance is data, not an event). Only then: switching expires every
    /// prepared statement.
    pub fn replace_rows(
        &self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Value>],
        triggers: bool,
    ) -> Result<(), SandboxError> {
        use rusqlite::config::DbConfig;
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let cols: Vec<String> = columns.iter().map(|c| q(c)).collect();
        let marks = vec!["?"; cols.len()].join(", ");
        let insert = format!(
            "INSERT OR IGNORE INTO {} ({}) VALUES ({marks})",
            q(table),
            cols.join(", ")
        );
        if triggers {
            self.conn
                .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)
                .map_err(sq)?;
        }
        self.mode.store(MODE_EVALUATOR, Ordering::Relaxed);
        self.arm();
        let r = (|| {
            let mut delete = self
                .conn
                .prepare_cached(&format!("DELETE FROM {}", q(table)))
                .map_err(sq)?;
            let deleted = delete.execute([]);
            self.charge(&delete);
            deleted.map_err(sq)?;
            if cols.is_empty() {
                return Ok(());
            }
            let mut stmt = self.conn.prepare_cached(&insert).map_err(sq)?;
            let inserted = rows.iter().try_for_each(|row| {
                stmt.execute(rusqlite::params_from_iter(row.iter()))
                    .map(|_| ())
            });
            self.charge(&stmt);
            inserted.map_err(sq)
        })();
        self.mode.store(MODE_UNTRUSTED, Ordering::Relaxed);
        let on = if triggers {
            self.conn
                .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, true)
                .map(|_| ())
                .map_err(sq)
        } else {
            Ok(())
        };
        self.check_trip(r).and(on)
    }

    /// Run `f` inside a transaction the evaluator opens and always rolls back: a write runs on
    /// a test-suite instance and leaves it as it was for the next statement. Untrusted SQL
    /// cannot end the transaction (the authorizer denies it).
    pub fn rolled_back<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, SandboxError>,
    ) -> Result<T, SandboxError> {
        self.mode.store(MODE_CONTEXT, Ordering::Relaxed);
        let begun = self.conn.execute_batch("SAVEPOINT t2s_suite").map_err(sq);
        self.mode.store(MODE_UNTRUSTED, Ordering::Relaxed);
        begun?;
        let r = f(self);
        self.mode.store(MODE_CONTEXT, Ordering::Relaxed);
        let undone = self
            .conn
            .execute_batch("ROLLBACK TO t2s_suite; RELEASE t2s_suite")
            .map_err(sq);
        self.mode.store(MODE_UNTRUSTED, Ordering::Relaxed);
        let v = r?;
        undone?;
        Ok(v)
    }

    /// Copy a statement's rows, under the row cap (if any) and the result-bytes budget.
    fn collect(
        &self,
        mut rows: rusqlite::Rows<'_>,
        ncol: usize,
        max_rows: Option<usize>,
    ) -> Result<Vec<Vec<Value>>, SandboxError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(row) = rows.next().map_err(sq)? {
            if max_rows.is_some_and(|m| out.len() >= m) {
                return Err(SandboxError::TooManyRows(out.len()));
            }
            let mut vals = Vec::with_capacity(ncol);
            for i in 0..ncol {
                let v = row.get_ref(i).map_err(sq)?;
                // Counted before the copy is made, so the budget bounds the memory taken.
                bytes = bytes.saturating_add(match v {
                    ValueRef::Text(b) | ValueRef::Blob(b) => b.len(),
                    _ => 8,
                });
                if bytes > self.limits.max_result_bytes {
                    return Err(SandboxError::ResultTooLarge(self.limits.max_result_bytes));
                }
                vals.push(Value::from_ref(v));
            }
            out.push(vals);
        }
        Ok(out)
    }
}

/// Checks before SQLite sees the text: no NUL, non-empty and an allowed statement kind.
fn precheck(sql: &str) -> Result<&str, SandboxError> {
    if sql.contains('\0') {
        return Err(SandboxError::NulByte);
    }
    let trimmed = sql.trim();
    let toks = super::sqllex::lex(trimmed);
    if toks.is_empty() {
        return Err(SandboxError::Empty);
    }
    let kw = super::sqllex::first_keyword_of(&toks).unwrap_or_default();
    if !ALLOWED_FIRST.contains(&kw.as_str()) {
        let shown = if kw.is_empty() { "?".to_string() } else { kw };
        return Err(SandboxError::Forbidden(shown));
    }
    Ok(trimmed)
}

fn map_prepare_err(e: rusqlite::Error) -> SandboxError {
    match e {
        rusqlite::Error::MultipleStatement => SandboxError::MultipleStatements,
        other => sq(other),
    }
}

fn progress(b: &Budget) -> bool {
    let ticks = b.ticks.fetch_add(1, Ordering::Relaxed) + 1;
    let trip = if ticks > b.max_ticks.load(Ordering::Relaxed) {
        TRIP_INSTR
    } else if b.origin.elapsed().as_millis() as u64 > b.deadline_ms.load(Ordering::Relaxed) {
        TRIP_WALL
    } else if heap_used() > b.max_heap.load(Ordering::Relaxed) {
        TRIP_HEAP
    } else {
        TRIP_NONE
    };
    if trip != TRIP_NONE {
        b.tripped.store(trip, Ordering::Relaxed);
        return true;
    }
    false
}

fn heap_used() -> u64 {
    // SAFETY: sqlite3_memory_used only reads a global counter; it is thread-safe in a
    // SQLITE_THREADSAFE=1 build (the bundled one).
    let used = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    used.max(0) as u64
}

fn authorize(ctx: AuthContext<'_>, mode: u8) -> Authorization {
    match ctx.action {
        AuthAction::Attach { .. }
        | AuthAction::Detach { .. }
        | AuthAction::CreateVtable { .. }
        | AuthAction::DropVtable { .. } => Authorization::Deny,
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
            if mode == MODE_CONTEXT {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        AuthAction::Pragma { pragma_name, .. } => {
            if mode == MODE_EVALUATOR
                && READ_PRAGMAS
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(pragma_name))
            {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        AuthAction::Function { function_name } => {
            if DENIED_FUNCTIONS
                .iter()
                .any(|f| f.eq_ignore_ascii_case(function_name))
            {
                Authorization::Deny
            } else {
                Authorization::Allow
            }
        }
        AuthAction::Unknown { .. } => Authorization::Deny,
        _ => Authorization::Allow,
    }
}

impl Value {
    /// Copy a borrowed SQLite value; text is decoded lossily (like the Spider evaluator's
    /// `errors="ignore"` decoder, but with U+FFFD so different bytes stay different).
    pub fn from_ref(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Int(i),
            ValueRef::Real(f) => Value::real(f),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput::Borrowed;
        Ok(Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connection-level defences hold even when the keyword allowlist is bypassed.
    #[test]
    fn connection_refuses_file_access_without_precheck() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.db");
        let sb = Sandbox::from_context("CREATE TABLE t (a INT);", &Limits::default()).unwrap();
        let c = sb.conn();
        assert!(c
            .execute_batch(&format!("ATTACH '{}' AS e", f.display()))
            .is_err());
        assert!(c
            .execute_batch(&format!("VACUUM INTO '{}'", f.display()))
            .is_err());
        assert!(c.execute_batch("PRAGMA writable_schema = 1").is_err());
        assert!(c.execute_batch("SELECT load_extension('x')").is_err());
        assert!(!f.exists());
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    /// Work is counted exactly, statement by statement, small ones included (SQLite's progress
    /// handler never fires for a statement under `PROGRESS_STEP` steps), and a cached statement
    /// is counted once per run.
    #[test]
    fn instructions_are_counted_exactly_per_run() {
        let sb = Sandbox::from_context("CREATE TABLE t (a INT);", &Limits::default()).unwrap();
        assert_eq!(sb.instructions_spent(), 0);
        sb.run("SELECT count(*) FROM t").unwrap();
        let once = sb.instructions_spent();
        assert!(once > 0 && once < PROGRESS_STEP as u64, "{once}");
        sb.run("SELECT count(*) FROM t").unwrap();
        assert_eq!(sb.instructions_spent(), 2 * once);
        sb.replace_rows("t", &["a".into()], &[vec![Value::Int(1)]], false)
            .unwrap();
        assert!(sb.instructions_spent() > 2 * once);
    }

    #[test]
    fn limits_are_reported_and_reset() {
        let lim = Limits {
            max_instructions: 100_000,
            ..Limits::default()
        };
        let sb = Sandbox::from_context("CREATE TABLE t (a INT);", &lim).unwrap();
        let e = sb
            .run("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT max(x) FROM c")
            .unwrap_err();
        assert!(matches!(e, SandboxError::Limit(_)), "{e}");
        assert_eq!(sb.run("SELECT 1").unwrap().rows.len(), 1);
        assert_eq!(sb.run("  ").unwrap_err(), SandboxError::Empty);
        assert_eq!(sb.run("-- nothing").unwrap_err(), SandboxError::Empty);
    }
}
