//! The shape of a row's database as the instance generator needs it: its tables, their
//! insertable columns with a value kind and a role (the table's own key, a key referring to
//! another table, or a plain column), and the original rows. Read from a [`Sandbox`] built
//! from `sql_context`; no values are invented here.

use crate::eval::sandbox::{Sandbox, SandboxError};
use crate::eval::value::Value;

/// What values a column holds (from its declared type, corrected by what it holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Real,
    Text,
    /// Text that looks like `YYYY-MM-DD...`.
    Date,
}

/// How a column's new values relate to other rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The table's key: unique and never NULL in new rows.
    OwnKey,
    /// An id naming another row (`..._id`): never NULL, drawn from values that join.
    RefKey,
    Plain,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    pub role: Role,
    pub not_null: bool,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    /// The context's rows, in storage order, one value per column.
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        other => other.to_string(),
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// SQLite's affinity rules (datatype3 §3.1), mapped onto value kinds.
fn declared_kind(decl: &str) -> Kind {
    let d = decl.to_ascii_uppercase();
    if d.contains("INT") {
        Kind::Int
    } else if d.contains("DATE") || d.contains("TIME") {
        Kind::Date
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        Kind::Text
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        Kind::Real
    } else if d.contains("DEC") || d.contains("NUM") {
        // DECIMAL(10,2) holds what it is given: integers stay integers.
        Kind::Real
    } else {
        Kind::Text
    }
}

fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[7] == b'-'
}

/// The kind of what a column holds when that disagrees with its declaration (SQLite stores
/// `'abc'` in an INT column): the kind most of its non-NULL values have.
fn observed_kind(declared: Kind, values: &[&Value]) -> Kind {
    let (mut ints, mut reals, mut texts, mut dates) = (0, 0, 0, 0);
    for v in values {
        match v {
            Value::Int(_) => ints += 1,
            Value::Real(_) => reals += 1,
            Value::Text(s) if looks_like_date(s) => dates += 1,
            Value::Text(_) => texts += 1,
            _ => {}
        }
    }
    let n = ints + reals + texts + dates;
    if n == 0 {
        return declared;
    }
    let top = [
        (texts, Kind::Text),
        (dates, Kind::Date),
        (reals, Kind::Real),
        (ints, Kind::Int),
    ]
    .into_iter()
    .max_by_key(|(c, _)| *c)
    .map(|(_, k)| k)
    .unwrap_or(declared);
    match (declared, top) {
        // A DECIMAL column holding integers only: keep generating halves too.
        (Kind::Real, Kind::Int) => Kind::Real,
        _ => top,
    }
}

/// `id`, `..._id` or `...id` (`customerid`), ASCII case-insensitive.
pub fn id_like(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "id" || n.ends_with("_id") || (n.len() > 2 && n.ends_with("id"))
}

/// True when the schema of `db` has triggers (loading instance rows must not fire them).
pub fn has_triggers(db: &Sandbox) -> Result<bool, SandboxError> {
    let t = db.trusted_query("SELECT 1 FROM sqlite_master WHERE type = 'trigger' LIMIT 1")?;
    Ok(!t.is_empty())
}

/// Read the tables of `db` (not views, not SQLite's own), their insertable columns and rows.
pub fn read(db: &Sandbox) -> Result<Vec<Table>, SandboxError> {
    let names = db.trusted_query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY rowid",
    )?;
    let mut out = Vec::new();
    for n in &names {
        let name = text(&n[0]);
        // table_xinfo: cid, name, type, notnull, dflt, pk, hidden (generated columns: 2, 3).
        let info = db.trusted_query(&format!("PRAGMA table_xinfo({})", quote(&name)))?;
        let info: Vec<&Vec<Value>> = info
            .iter()
            .filter(|c| matches!(c[6], Value::Int(0)))
            .collect();
        if info.is_empty() {
            continue;
        }
        let col_list: Vec<String> = info.iter().map(|c| quote(&text(&c[1]))).collect();
        let rows = db.trusted_query(&format!(
            "SELECT {} FROM {}",
            col_list.join(", "),
            quote(&name)
        ))?;
        let pk_cols = info
            .iter()
            .filter(|c| !matches!(c[5], Value::Int(0)))
            .count();
        let columns = info
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let cname = text(&c[1]);
                let values: Vec<&Value> = rows.iter().map(|r| &r[j]).collect();
                let kind = observed_kind(declared_kind(&text(&c[2])), &values);
                let declared_pk = !matches!(c[5], Value::Int(0));
                let role = if (declared_pk && pk_cols == 1)
                    || (j == 0 && pk_cols == 0 && id_like(&cname))
                {
                    Role::OwnKey
                } else if id_like(&cname) {
                    Role::RefKey
                } else {
                    Role::Plain
                };
                Column {
                    name: cname,
                    kind,
                    role,
                    not_null: !matches!(c[3], Value::Int(0)) || declared_pk,
                }
            })
            .collect();
        out.push(Table {
            name,
            columns,
            rows,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::sandbox::Limits;

    #[test]
    fn roles_kinds_and_rows() {
        let db = Sandbox::from_context(
            "CREATE TABLE forests (forest_id INT, name VARCHAR(50), area INT); \
             CREATE TABLE sales (sale_id INTEGER PRIMARY KEY, forest_id INT, volume DECIMAL(10,2), \
             sale_date DATE, note TEXT NOT NULL); \
             CREATE VIEW v AS SELECT 1; \
             INSERT INTO forests VALUES (1, 'Oak', 10), (2, 'Pine', 'big'), (3, 'Elm', 'n/a'); \
             INSERT INTO sales VALUES (1, 1, 2.5, '2020-01-02', 'x');",
            &Limits::default(),
        )
        .unwrap();
        let t = read(&db).unwrap();
        assert_eq!(t.len(), 2);
        let f = &t[0].columns;
        assert_eq!((f[0].role, f[0].kind), (Role::OwnKey, Kind::Int));
        assert_eq!((f[1].role, f[1].kind), (Role::Plain, Kind::Text));
        // Two of three values are text: the INT column is generated as text.
        assert_eq!(f[2].kind, Kind::Text);
        let s = &t[1].columns;
        assert_eq!((s[0].role, s[0].not_null), (Role::OwnKey, true));
        assert_eq!(
            (s[1].role, s[2].kind, s[3].kind),
            (Role::RefKey, Kind::Real, Kind::Date)
        );
        assert!(s[4].not_null && !s[2].not_null);
        assert_eq!(t[0].rows.len(), 3);
    }
}
