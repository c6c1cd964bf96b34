//! Where new instance values come from, per column: the original rows, the gold query's
//! literals attributed to the column they are compared with (so filters stay satisfiable),
//! values just beside each numeric or date literal (so `>` and `>=` disagree somewhere), and
//! the values of the columns it joins with (same-named ids, and the gold's `a.x = b.y`).
//! Literals are found with the SQL lexer, never inside string literals by accident.

use std::collections::{BTreeSet, HashMap};

use super::schema::{id_like, Kind, Table};
use crate::eval::sqllex::{lex, Tok};
use crate::eval::value::Value;

/// Value sources of every column, indexed `[table][column]`.
#[derive(Debug, Clone, Default)]
pub struct Pools {
    /// Original values and attributed literals.
    pub values: Vec<Vec<Vec<Value>>>,
    /// Values beside attributed literals (±1, ±0.5, the day before and after).
    pub bounds: Vec<Vec<Vec<Value>>>,
    /// Group of columns whose values join (`[table][column]` → group id).
    pub group: Vec<Vec<usize>>,
    /// Literals not attributed to a column: numbers and strings.
    pub loose_numbers: Vec<Value>,
    pub loose_strings: Vec<Value>,
}

fn unquote(t: &Tok) -> Option<String> {
    match t {
        Tok::Word(w) => Some(w.to_ascii_lowercase()),
        Tok::Quoted(q) if q.len() >= 2 => Some(q[1..q.len() - 1].to_ascii_lowercase()),
        _ => None,
    }
}

/// A literal token's value (`-` applied by the caller).
fn literal(t: &Tok) -> Option<Value> {
    match t {
        Tok::Str(s) => {
            let inner = s.strip_prefix('\'')?;
            let inner = inner.strip_suffix('\'').unwrap_or(inner);
            Some(Value::Text(inner.replace("''", "'")))
        }
        Tok::Number(n) => {
            if let Some(hex) = n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
                return i64::from_str_radix(hex, 16).ok().map(Value::Int);
            }
            n.parse::<i64>()
                .map(Value::Int)
                .ok()
                .or_else(|| n.parse::<f64>().ok().map(Value::real))
        }
        _ => None,
    }
}

fn negate(v: Value) -> Value {
    match v {
        Value::Int(i) => Value::Int(i.saturating_neg()),
        Value::Real(f) => Value::real(-f),
        other => other,
    }
}

const SKIPPED_WORDS: &[&str] = &["IN", "BETWEEN", "NOT", "LIKE", "GLOB", "IS", "ESCAPE"];
const SKIPPED_PUNCT: &[&str] = &[
    "=", "==", "!=", "<>", "<", ">", "<=", ">=", "(", ",", "-", "+",
];
const COMPARISONS: &[&str] = &["=", "==", "!=", "<>", "<", ">", "<=", ">="];

/// The column a literal at `i` is compared with: `literal op column`, else walking back over
/// operators, `IN (`, `BETWEEN .. AND` and sibling literals to a column name.
fn attributed(toks: &[Tok], i: usize, names: &BTreeSet<String>) -> Option<String> {
    let column = |k: usize| unquote(toks.get(k)?).filter(|n| names.contains(n));
    if matches!(toks.get(i + 1), Some(Tok::Punct(p)) if COMPARISONS.contains(&p.as_str())) {
        // `5 < x` or `5 < t.x`.
        let k = if matches!(toks.get(i + 3), Some(Tok::Punct(p)) if p == ".") {
            i + 4
        } else {
            i + 2
        };
        if let Some(n) = column(k) {
            return Some(n);
        }
    }
    let is_lit = |k: usize| matches!(toks.get(k), Some(Tok::Str(_) | Tok::Number(_)));
    let mut j = i;
    while j > 0 && i - j < 16 {
        j -= 1;
        let t = &toks[j];
        if let Some(n) = column(j) {
            return Some(n);
        }
        if t.is_kw("AND") {
            // Only `BETWEEN lo AND`: any other AND ends the comparison.
            let lo = j.checked_sub(1).filter(|&k| is_lit(k));
            let before = lo.and_then(|k| k.checked_sub(1)).map(|k| {
                if matches!(&toks[k], Tok::Punct(p) if p == "-") {
                    k.saturating_sub(1)
                } else {
                    k
                }
            });
            if before.is_some_and(|k| toks[k].is_kw("BETWEEN")) {
                continue;
            }
            break;
        }
        if unquote(t).is_some() {
            if SKIPPED_WORDS.iter().any(|k| t.is_kw(k)) {
                continue;
            }
            break;
        }
        match t {
            Tok::Punct(p) if SKIPPED_PUNCT.contains(&p.as_str()) => {}
            Tok::Str(_) | Tok::Number(_) => {}
            _ => break,
        }
    }
    None
}

/// Values just beside `v` in a column of `kind`.
fn beside(v: &Value, kind: Kind) -> Vec<Value> {
    match (v, kind) {
        (Value::Int(i), Kind::Real) => vec![
            Value::Int(i.saturating_sub(1)),
            Value::Int(i.saturating_add(1)),
            Value::real(*i as f64 - 0.5),
            Value::real(*i as f64 + 0.5),
        ],
        (Value::Int(i), _) => vec![
            Value::Int(i.saturating_sub(1)),
            Value::Int(i.saturating_add(1)),
        ],
        (Value::Real(f), _) => vec![
            Value::real(f - 0.5),
            Value::real(f + 0.5),
            Value::real(f.floor()),
        ],
        (Value::Text(s), Kind::Date) => shift_date(s),
        _ => vec![],
    }
}

/// The day before and after a `YYYY-MM-DD...` date (days kept in 1..=28, so always valid).
fn shift_date(s: &str) -> Vec<Value> {
    let (Some(y), Some(m), Some(d)) = (s.get(0..4), s.get(5..7), s.get(8..10)) else {
        return vec![];
    };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i32>(), m.parse::<u32>(), d.parse::<u32>()) else {
        return vec![];
    };
    let rest = &s[10..];
    let mk = |y: i32, m: u32, d: u32| Value::Text(format!("{y:04}-{m:02}-{d:02}{rest}"));
    let mut out = vec![mk(y, m, d.clamp(2, 28) - 1), mk(y, m, (d + 1).min(28))];
    out.push(mk(y - 1, m, d.min(28)));
    out.push(mk(y + 1, m, d.min(28)));
    out
}

/// Strings a `LIKE` pattern matches (and one it nearly matches).
fn like_matches(pattern: &str) -> Vec<Value> {
    let plain: String = pattern.replace('%', "").replace('_', "x");
    let padded: String = pattern.replace('%', "zz").replace('_', "y");
    vec![Value::Text(plain), Value::Text(padded)]
}

/// True when an operand (not a binary operator's right side) begins after `t`, so a `-` that
/// follows is unary: `BETWEEN -5`, `= -5`, `(-5`, but not `x - 5` or `) - 5`.
fn starts_operand(t: &Tok) -> bool {
    const BEFORE_OPERAND: &[&str] = &[
        "AND", "OR", "NOT", "BETWEEN", "WHERE", "THEN", "WHEN", "ELSE", "SELECT", "IN", "IS",
        "LIKE", "ON", "HAVING", "VALUES", "SET", "LIMIT", "OFFSET",
    ];
    match t {
        Tok::Punct(p) => p != ")",
        Tok::Word(_) => BEFORE_OPERAND.iter().any(|k| t.is_kw(k)),
        _ => false,
    }
}

struct Union(Vec<usize>);
impl Union {
    fn find(&mut self, x: usize) -> usize {
        if self.0[x] != x {
            let r = self.find(self.0[x]);
            self.0[x] = r;
        }
        self.0[x]
    }
    fn join(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        self.0[ra] = rb;
    }
}

/// Build the pools of `tables` for the gold statement `gold`.
pub fn build(tables: &[Table], gold: &str) -> Pools {
    let mut values: Vec<Vec<Vec<Value>>> = tables
        .iter()
        .map(|t| {
            (0..t.columns.len())
                .map(|j| {
                    let set: BTreeSet<Value> = t
                        .rows
                        .iter()
                        .map(|r| r[j].clone())
                        .filter(|v| *v != Value::Null)
                        .collect();
                    set.into_iter().collect()
                })
                .collect()
        })
        .collect();
    let mut bounds: Vec<Vec<Vec<Value>>> = tables
        .iter()
        .map(|t| vec![Vec::new(); t.columns.len()])
        .collect();
    // Every column by lower-cased name.
    let mut by_name: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
    let mut flat = Vec::new();
    for (ti, t) in tables.iter().enumerate() {
        for (ci, c) in t.columns.iter().enumerate() {
            by_name
                .entry(c.name.to_ascii_lowercase())
                .or_default()
                .push((ti, ci));
            flat.push((ti, ci));
        }
    }
    let index = |tc: (usize, usize)| flat.iter().position(|x| *x == tc).unwrap_or(0);
    let names: BTreeSet<String> = by_name.keys().cloned().collect();
    let mut union = Union((0..flat.len()).collect());
    for (name, cols) in &by_name {
        if id_like(name) {
            for w in cols.windows(2) {
                union.join(index(w[0]), index(w[1]));
            }
        }
    }

    let toks = lex(gold);
    let mut loose_numbers = Vec::new();
    let mut loose_strings = Vec::new();
    for i in 0..toks.len() {
        // Join equalities: `x = y` with column names on both sides joins their values.
        if matches!(&toks[i], Tok::Punct(p) if p == "=" || p == "==") && i > 0 {
            let (l, r) = (unquote(&toks[i - 1]), toks.get(i + 1).and_then(unquote));
            let r = match (toks.get(i + 2), toks.get(i + 3)) {
                (Some(Tok::Punct(p)), Some(t)) if p == "." => unquote(t),
                _ => r,
            };
            if let (Some(l), Some(r)) = (l, r) {
                if let (Some(a), Some(b)) = (by_name.get(&l), by_name.get(&r)) {
                    union.join(index(a[0]), index(b[0]));
                    for w in a.iter().chain(b).collect::<Vec<_>>().windows(2) {
                        union.join(index(*w[0]), index(*w[1]));
                    }
                }
            }
        }
        let Some(mut v) = literal(&toks[i]) else {
            continue;
        };
        let unary_minus = i >= 1
            && matches!(&toks[i - 1], Tok::Punct(p) if p == "-")
            && (i == 1 || starts_operand(&toks[i - 2]));
        if unary_minus {
            v = negate(v);
        }
        let like = i >= 1 && (toks[i - 1].is_kw("LIKE") || toks[i - 1].is_kw("GLOB"));
        match attributed(&toks, i, &names) {
            Some(n) => {
                for &(ti, ci) in &by_name[&n] {
                    let kind = tables[ti].columns[ci].kind;
                    if like {
                        if let Value::Text(p) = &v {
                            values[ti][ci].extend(like_matches(p));
                        }
                        continue;
                    }
                    bounds[ti][ci].extend(beside(&v, kind));
                    if !values[ti][ci].contains(&v) {
                        values[ti][ci].push(v.clone());
                    }
                }
            }
            None => match v {
                Value::Text(_) => loose_strings.push(v),
                Value::Null => {}
                _ => loose_numbers.push(v),
            },
        }
    }
    let group = tables
        .iter()
        .enumerate()
        .map(|(ti, t)| {
            (0..t.columns.len())
                .map(|ci| union.find(index((ti, ci))))
                .collect()
        })
        .collect();
    Pools {
        values,
        bounds,
        group,
        loose_numbers,
        loose_strings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::sandbox::{Limits, Sandbox};
    use crate::eval::testsuite::schema;

    #[test]
    fn literals_land_in_their_columns_and_ids_join() {
        let db = Sandbox::from_context(
            "CREATE TABLE f (forest_id INT, name TEXT, area INT); \
             CREATE TABLE s (sale_id INT, forest_id INT, vol REAL, region TEXT); \
             INSERT INTO f VALUES (1, 'Oak', 10);",
            &Limits::default(),
        )
        .unwrap();
        let t = schema::read(&db).unwrap();
        let p = build(
            &t,
            "SELECT f.name FROM f JOIN s ON f.forest_id = s.forest_id \
             WHERE s.region IN ('North', 'O''Brien') AND area BETWEEN -5 AND 20 \
             AND 3 < vol AND name LIKE '%ak' AND x = 'it''s = 7'",
        );
        assert_eq!(
            p.values[1][3],
            vec![Value::Text("North".into()), Value::Text("O'Brien".into())]
        );
        assert!(
            p.values[0][2].contains(&Value::Int(-5)) && p.values[0][2].contains(&Value::Int(20))
        );
        assert!(
            p.bounds[0][2].contains(&Value::Int(21)) && p.bounds[0][2].contains(&Value::Int(-6))
        );
        assert!(p.values[1][2].contains(&Value::Int(3)));
        assert!(p.values[0][1].contains(&Value::Text("ak".into())));
        assert_eq!(p.group[0][0], p.group[1][1]);
        assert_ne!(p.group[0][0], p.group[1][0]);
        // The literal compared with an unknown column is loose; nothing inside it was lexed.
        assert_eq!(p.loose_strings, vec![Value::Text("it's = 7".into())]);
        assert!(p.loose_numbers.is_empty());
    }
}
