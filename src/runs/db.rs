//! Opening the database, migrations, and the writes a run makes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::{NodeStatus, RunStatus};

/// Tracking DB failures.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("tracking database {path}: {source}")]
    Sql {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tracking database {path} has schema version {found}, newer than this t2s knows ({known}); upgrade t2s")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("no run `{0}` in the tracking database; `t2s runs` lists them")]
    NoSuchRun(String),
}

/// Numbered schema migrations, applied in order, each once.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "CREATE TABLE runs(
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        file TEXT NOT NULL,
        file_digest TEXT NOT NULL,
        started TEXT NOT NULL,
        ended TEXT,
        status TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        git_rev TEXT,
        t2s_version TEXT NOT NULL,
        argv TEXT NOT NULL,
        error TEXT
    );
    CREATE TABLE nodes(
        run INTEGER NOT NULL REFERENCES runs(id),
        node TEXT NOT NULL,
        stage TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT,
        status TEXT NOT NULL,
        started TEXT,
        ended TEXT,
        duration_s REAL,
        artifact TEXT,
        error TEXT,
        PRIMARY KEY(run, node)
    );
    CREATE TABLE params(
        run INTEGER NOT NULL REFERENCES runs(id),
        node TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY(run, node, name)
    );
    CREATE TABLE metrics(
        id INTEGER PRIMARY KEY,
        run INTEGER NOT NULL REFERENCES runs(id),
        node TEXT NOT NULL,
        name TEXT NOT NULL,
        step INTEGER,
        value REAL NOT NULL,
        time TEXT NOT NULL
    );
    CREATE INDEX metrics_by_node ON metrics(run, node, name, step);
    CREATE TABLE artifacts(
        run INTEGER NOT NULL REFERENCES runs(id),
        node TEXT NOT NULL,
        key TEXT NOT NULL,
        digest TEXT NOT NULL,
        path TEXT NOT NULL,
        files INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        PRIMARY KEY(run, node)
    );",
    // 2: where each node that ran was executed (local, or a Slurm job with its state and log).
    "CREATE TABLE executions(
        run INTEGER NOT NULL REFERENCES runs(id),
        node TEXT NOT NULL,
        executor TEXT NOT NULL,
        job_id TEXT,
        state TEXT,
        log TEXT,
        updated TEXT NOT NULL,
        PRIMARY KEY(run, node)
    );",
];

/// One metric value: name, step (`None` for final values), value, time (RFC 3339).
pub type MetricPoint = (String, Option<i64>, f64, String);

/// Facts about a run, recorded when it starts.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub pipeline: String,
    pub file: String,
    pub file_digest: String,
    pub git_rev: Option<String>,
    pub argv: Vec<String>,
}

/// Everything recorded about one node of a run.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    pub node: String,
    pub stage: String,
    pub kind: String,
    pub key: Option<String>,
    pub status: NodeStatus,
    pub started: Option<String>,
    pub ended: Option<String>,
    pub duration_s: Option<f64>,
    pub error: Option<String>,
    /// Resolved params (name → JSON value).
    pub params: Vec<(String, serde_json::Value)>,
    /// Final metrics to record (step NULL).
    pub final_metrics: Vec<(String, f64)>,
    /// The committed artifact: (path, digest, files, bytes).
    pub artifact: Option<(String, String, i64, i64)>,
    /// Where it was executed (`None` for nodes that did not run: cached, skipped).
    pub exec: Option<super::ExecRecord>,
}

/// A connection to the tracking DB; usable from several threads.
pub struct Tracker {
    pub(super) conn: Mutex<Connection>,
    pub(super) path: PathBuf,
}

impl Tracker {
    /// The DB path of a project root.
    pub fn path_for(root: &Path) -> PathBuf {
        root.join("experiments").join("t2s.db")
    }

    /// Open (creating and migrating as needed) the DB of a project root.
    pub fn open(root: &Path) -> Result<Tracker, TrackerError> {
        let path = Self::path_for(root);
        if let Some(dir) = path.parent() {
            if !dir.is_dir() {
                std::fs::create_dir_all(dir).map_err(|source| TrackerError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
        }
        let sql = |source| TrackerError::Sql {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(sql)?;
        // Two processes opening a fresh database at once: switching it to WAL (or the first
        // statements after) can return SQLITE_BUSY without consulting the busy handler
        // (WAL-index recovery). Retry the whole setup a while instead of failing the run
        // (regression: two concurrent first runs).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match setup(&mut conn) {
                Err(MigrateError::Sql(rusqlite::Error::SqliteFailure(e, _)))
                    if matches!(
                        e.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Ok(()) => break,
                Err(MigrateError::Sql(source)) => return Err(sql(source)),
                Err(MigrateError::TooNew(found)) => {
                    return Err(TrackerError::TooNew {
                        path: path.clone(),
                        found,
                        known: MIGRATIONS.len() as i64,
                    })
                }
            }
        }
        Ok(Tracker {
            conn: Mutex::new(conn),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn sql_err(&self, source: rusqlite::Error) -> TrackerError {
        TrackerError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite rolls back.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record the start of a run; returns its id.
    pub fn start_run(&self, info: &RunInfo) -> Result<i64, TrackerError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO runs(pipeline, file, file_digest, started, status, host, pid, git_rev,
                              t2s_version, argv)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                info.pipeline,
                info.file,
                info.file_digest,
                super::now_rfc3339(),
                RunStatus::Running,
                super::host_name(),
                std::process::id() as i64,
                info.git_rev,
                env!("CARGO_PKG_VERSION"),
                serde_json::to_string(&info.argv).unwrap_or_default(),
            ],
        )
        .map_err(|e| self.sql_err(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Record the end of a run.
    pub fn finish_run(
        &self,
        run: i64,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), TrackerError> {
        self.lock()
            .execute(
                "UPDATE runs SET status = ?2, ended = ?3, error = ?4 WHERE id = ?1",
                params![run, status, super::now_rfc3339(), error],
            )
            .map_err(|e| self.sql_err(e))?;
        Ok(())
    }

    /// Write node records (with their params, final metrics and artifact) in one transaction.
    /// A record replaces an earlier one of the same node (e.g. its `running` row), except that
    /// a cache hit leaves a finished record of the same run alone.
    pub fn record_nodes(&self, run: i64, records: &[NodeRecord]) -> Result<(), TrackerError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.sql_err(e))?;
        {
            let mut node = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO nodes(run, node, stage, kind, key, status, started,
                         ended, duration_s, artifact, error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(|e| self.sql_err(e))?;
            let mut param = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO params(run, node, name, value) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(|e| self.sql_err(e))?;
            let mut metric = tx
                .prepare_cached(
                    "INSERT INTO metrics(run, node, name, step, value, time) VALUES (?1, ?2, ?3, NULL, ?4, ?5)",
                )
                .map_err(|e| self.sql_err(e))?;
            let mut artifact = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO artifacts(run, node, key, digest, path, files, bytes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(|e| self.sql_err(e))?;
            let mut earlier = tx
                .prepare_cached("SELECT status FROM nodes WHERE run = ?1 AND node = ?2")
                .map_err(|e| self.sql_err(e))?;
            let now = super::now_rfc3339();
            for r in records {
                // A run that passes a node again (a search runs its pipeline in rounds) keeps
                // what the node did the first time: a later cache hit of it is no news.
                if r.status == super::NodeStatus::Cached {
                    let before: Option<NodeStatus> = earlier
                        .query_row(params![run, r.node], |row| row.get(0))
                        .optional()
                        .map_err(|e| self.sql_err(e))?;
                    if before.is_some_and(|b| b != NodeStatus::Running) {
                        continue;
                    }
                }
                node.execute(params![
                    run,
                    r.node,
                    r.stage,
                    r.kind,
                    r.key,
                    r.status,
                    r.started,
                    r.ended,
                    r.duration_s,
                    r.artifact.as_ref().map(|a| &a.0),
                    r.error,
                ])
                .map_err(|e| self.sql_err(e))?;
                for (name, value) in &r.params {
                    param
                        .execute(params![run, r.node, name, value.to_string()])
                        .map_err(|e| self.sql_err(e))?;
                }
                for (name, value) in &r.final_metrics {
                    metric
                        .execute(params![run, r.node, name, value, now])
                        .map_err(|e| self.sql_err(e))?;
                }
                if let (Some((path, digest, files, bytes)), Some(key)) = (&r.artifact, &r.key) {
                    artifact
                        .execute(params![run, r.node, key, digest, path, files, bytes])
                        .map_err(|e| self.sql_err(e))?;
                }
                if let Some(exec) = &r.exec {
                    super::executions::write(&tx, run, &r.node, exec)
                        .map_err(|e| self.sql_err(e))?;
                }
            }
        }
        tx.commit().map_err(|e| self.sql_err(e))
    }

    /// Append step/final metrics of one node in one transaction.
    pub fn record_metrics(
        &self,
        run: i64,
        node: &str,
        metrics: &[MetricPoint],
    ) -> Result<(), TrackerError> {
        if metrics.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.sql_err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO metrics(run, node, name, step, value, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(|e| self.sql_err(e))?;
            for (name, step, value, time) in metrics {
                stmt.execute(params![run, node, name, step, value, time])
                    .map_err(|e| self.sql_err(e))?;
            }
        }
        tx.commit().map_err(|e| self.sql_err(e))
    }
}

enum MigrateError {
    Sql(rusqlite::Error),
    TooNew(i64),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sql(e)
    }
}

/// Pragmas and migrations of a freshly opened connection.
fn setup(conn: &mut Connection) -> Result<(), MigrateError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let known = MIGRATIONS.len() as i64;
    let current: Option<i64> = conn
        .query_row("SELECT max(version) FROM migrations", [], |r| r.get(0))
        .optional()
        .unwrap_or(None)
        .flatten();
    if current == Some(known) {
        return Ok(());
    }
    // Serialize concurrent first opens: the IMMEDIATE transaction takes the write lock, then we
    // re-read the version inside it.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS migrations(version INTEGER PRIMARY KEY, applied TEXT NOT NULL)",
    )?;
    let current: i64 = tx.query_row(
        "SELECT coalesce(max(version), 0) FROM migrations",
        [],
        |r| r.get(0),
    )?;
    if current > known {
        return Err(MigrateError::TooNew(current));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO migrations(version, applied) VALUES (?1, ?2)",
            params![i as i64 + 1, super::now_rfc3339()],
        )?;
    }
    tx.commit()?;
    Ok(())
}
