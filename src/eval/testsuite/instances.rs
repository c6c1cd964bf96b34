//! One generated database instance of a row's schema: the original rows kept, new rows added
//! (values from the column's pools, values beside the gold's literals, fresh values of the
//! column's kind, copies of other rows, NULLs where allowed), keys that stay unique, ids that
//! join, and every table's rows in a new order. Pure: the same generator state gives the same
//! instance.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::pools::Pools;
use super::schema::{Column, Kind, Role, Table};
use crate::eval::value::Value;

/// The rows of every table of the schema (same order as the schema's tables).
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub tables: Vec<Vec<Vec<Value>>>,
}

impl Instance {
    /// The same rows, each table in reverse storage order (the check that the gold does not
    /// depend on the order rows are stored in).
    pub fn reversed(&self) -> Instance {
        Instance {
            tables: self
                .tables
                .iter()
                .map(|rows| rows.iter().rev().cloned().collect())
                .collect(),
        }
    }
}

/// Most rows a table gains in one instance.
pub const MAX_NEW_ROWS: usize = 12;
/// Chance that a new row copies another row (what `DISTINCT` and `GROUP BY` are about).
const COPY_P: f64 = 0.15;
/// Chance that a nullable plain column is NULL in a new row.
const NULL_P: f64 = 0.1;

fn int_range(pool: &[Value]) -> (i64, i64) {
    let nums: Vec<f64> = pool
        .iter()
        .filter_map(|v| match v {
            Value::Int(i) => Some(*i as f64),
            Value::Real(f) => Some(*f),
            _ => None,
        })
        .collect();
    if nums.is_empty() {
        return (0, 100);
    }
    let lo = nums.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = nums.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) / 2.0).max(2.0);
    ((lo - pad).floor() as i64, (hi + pad).ceil() as i64)
}

/// A value of `kind` not taken from a pool.
fn fresh(kind: Kind, pool: &[Value], rng: &mut ChaCha8Rng) -> Value {
    match kind {
        Kind::Int => {
            let (lo, hi) = int_range(pool);
            Value::Int(rng.random_range(lo..=hi))
        }
        Kind::Real => {
            // Quarters: exact in binary, so sums do not depend on the order rows are added in.
            let (lo, hi) = int_range(pool);
            Value::real(rng.random_range(lo * 4..=hi * 4) as f64 / 4.0)
        }
        Kind::Text => {
            let texts: Vec<&String> = pool
                .iter()
                .filter_map(|v| match v {
                    Value::Text(s) => Some(s),
                    _ => None,
                })
                .collect();
            match texts.choose(rng) {
                // Near a known value: another case, a suffix (what `=` vs `LIKE` tells apart).
                Some(s) => Value::Text(match rng.random_range(0..3) {
                    0 => s.to_lowercase(),
                    1 => format!("{s} {}", rng.random_range(2..9)),
                    _ => format!("New {s}"),
                }),
                None => Value::Text(format!("v{}", rng.random_range(0..1000))),
            }
        }
        Kind::Date => {
            let y = rng.random_range(2015..=2025);
            Value::Text(format!(
                "{y}-{:02}-{:02}",
                rng.random_range(1..=12),
                rng.random_range(1..=28)
            ))
        }
    }
}

fn plain(
    col: &Column,
    values: &[Value],
    bounds: &[Value],
    pools: &Pools,
    rng: &mut ChaCha8Rng,
) -> Value {
    if !col.not_null && rng.random_bool(NULL_P) {
        return Value::Null;
    }
    let loose = match col.kind {
        Kind::Int | Kind::Real => &pools.loose_numbers,
        Kind::Text | Kind::Date => &pools.loose_strings,
    };
    let r: f64 = rng.random();
    let pick = |xs: &[Value], rng: &mut ChaCha8Rng| xs.choose(rng).cloned();
    let v = if r < 0.45 {
        pick(values, rng)
    } else if r < 0.65 {
        pick(bounds, rng)
    } else if r < 0.72 {
        pick(loose, rng)
    } else {
        None
    };
    v.unwrap_or_else(|| fresh(col.kind, values, rng))
}

fn max_int(vals: impl Iterator<Item = Value>) -> i64 {
    vals.filter_map(|v| match v {
        Value::Int(i) => Some(i),
        Value::Real(f) => Some(f.ceil() as i64),
        _ => None,
    })
    .max()
    .unwrap_or(0)
}

/// Generate one instance of `tables` from the generator state `rng`.
pub fn generate(tables: &[Table], pools: &Pools, rng: &mut ChaCha8Rng) -> Instance {
    let counts: Vec<usize> = tables
        .iter()
        .map(|t| {
            let hi = if t.rows.is_empty() {
                8
            } else {
                (2 * t.rows.len()).clamp(3, MAX_NEW_ROWS)
            };
            let lo = if t.rows.is_empty() { 2 } else { 0 };
            rng.random_range(lo..=hi)
        })
        .collect();
    // Own keys first (unique: above every value the column holds), so ids that refer to them
    // can be drawn from them.
    let mut new_keys: Vec<Vec<Vec<Value>>> = Vec::new();
    for (ti, t) in tables.iter().enumerate() {
        let mut cols = Vec::new();
        for (ci, c) in t.columns.iter().enumerate() {
            if c.role != Role::OwnKey {
                cols.push(Vec::new());
                continue;
            }
            let text = matches!(c.kind, Kind::Text | Kind::Date);
            let mut next = max_int(pools.values[ti][ci].iter().cloned()) + 1;
            let keys = (0..counts[ti])
                .map(|k| {
                    next += rng.random_range(0..3);
                    let v = next + k as i64;
                    if text {
                        Value::Text(format!("K{v}"))
                    } else {
                        Value::Int(v)
                    }
                })
                .collect();
            cols.push(keys);
        }
        new_keys.push(cols);
    }
    // Values that join, per group: the members' pools and new own keys.
    let mut joinable: std::collections::HashMap<usize, Vec<Value>> = Default::default();
    for (ti, table_keys) in new_keys.iter().enumerate() {
        for (ci, keys) in table_keys.iter().enumerate() {
            let g = joinable.entry(pools.group[ti][ci]).or_default();
            g.extend(pools.values[ti][ci].iter().cloned());
            g.extend(keys.iter().cloned());
        }
    }
    let mut out = Vec::with_capacity(tables.len());
    for (ti, t) in tables.iter().enumerate() {
        let mut rows: Vec<Vec<Value>> = t.rows.clone();
        // `k` is the new row's number: it picks the row's own key in `new_keys` (by column).
        #[allow(clippy::needless_range_loop)]
        for k in 0..counts[ti] {
            let copy_of = if !rows.is_empty() && rng.random_bool(COPY_P) {
                Some(rng.random_range(0..rows.len()))
            } else {
                None
            };
            let row: Vec<Value> = t
                .columns
                .iter()
                .enumerate()
                .map(|(ci, c)| match (c.role, copy_of) {
                    (Role::OwnKey, _) => new_keys[ti][ci][k].clone(),
                    (_, Some(src)) => rows[src][ci].clone(),
                    (Role::RefKey, None) => {
                        let pool = &joinable[&pools.group[ti][ci]];
                        match pool.choose(rng) {
                            Some(v) if rng.random_bool(0.85) => v.clone(),
                            // A dangling id: what tells an inner join from an outer one.
                            _ => Value::Int(
                                max_int(pool.iter().cloned()) + rng.random_range(50..100),
                            ),
                        }
                    }
                    (Role::Plain, None) => {
                        plain(c, &pools.values[ti][ci], &pools.bounds[ti][ci], pools, rng)
                    }
                })
                .collect();
            rows.push(row);
        }
        rows.shuffle(rng);
        out.push(rows);
    }
    Instance { tables: out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::sandbox::{Limits, Sandbox};
    use crate::eval::testsuite::{pools, schema};
    use rand::SeedableRng;

    #[test]
    fn keeps_rows_keys_unique_ids_join_and_is_seeded() {
        let db = Sandbox::from_context(
            "CREATE TABLE f (forest_id INT, name TEXT NOT NULL, area INT); \
             CREATE TABLE s (sale_id INT, forest_id INT, vol DECIMAL(10,2)); \
             INSERT INTO f VALUES (1, 'Oak', 10), (2, 'Pine', 20); \
             INSERT INTO s VALUES (1, 1, 5.5), (2, 2, 7);",
            &Limits::default(),
        )
        .unwrap();
        let t = schema::read(&db).unwrap();
        let p = pools::build(&t, "SELECT name FROM f WHERE area > 15");
        let gen = |seed| generate(&t, &p, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(gen(3), gen(3));
        assert_ne!(gen(3), gen(4));
        let mut joined = 0;
        for seed in 0..20 {
            let inst = gen(seed);
            for (ti, table) in t.iter().enumerate() {
                for orig in &table.rows {
                    assert!(inst.tables[ti].contains(orig));
                }
                let mut keys: Vec<&Value> = inst.tables[ti].iter().map(|r| &r[0]).collect();
                let n = keys.len();
                keys.sort();
                keys.dedup();
                assert_eq!(keys.len(), n, "own keys stay unique");
            }
            assert!(inst.tables[0].iter().all(|r| r[1] != Value::Null));
            let ids: Vec<&Value> = inst.tables[0].iter().map(|r| &r[0]).collect();
            joined += inst.tables[1]
                .iter()
                .filter(|r| ids.contains(&&r[1]))
                .count();
            // Quarters only: exact sums.
            for r in &inst.tables[1] {
                if let Value::Real(f) = r[2] {
                    assert_eq!((f * 4.0).fract(), 0.0);
                }
            }
        }
        assert!(joined > 40, "{joined}");
    }
}
