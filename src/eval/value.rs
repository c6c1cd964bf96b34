//! A SQLite result value with SQLite's equality: `1 == 1.0`, and nothing else crosses types
//! (`'1' != 1`, like Python's `==` on sqlite3 values in the Spider evaluator). Reals holding an
//! integral value are stored as integers, so `Eq`, `Hash` and `Ord` agree with that equality and
//! values can be bagged and sorted. NaN (which SQLite never returns) becomes NULL.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

/// One cell of a result or table snapshot.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Int(i64),
    /// Always finite-or-infinite and non-integral (see [`Value::real`]).
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    /// A real in canonical form: integral values in `i64` range become `Int`.
    pub fn real(f: f64) -> Self {
        if f.is_nan() {
            return Value::Null;
        }
        // 2^63 is exactly representable; the range check keeps the cast exact.
        if f.fract() == 0.0
            && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
        {
            return Value::Int(f as i64);
        }
        Value::Real(f)
    }

    fn tag(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Int(_) => 1,
            Value::Real(_) => 2,
            Value::Text(_) => 3,
            Value::Blob(_) => 4,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Value {}

impl Ord for Value {
    /// A total order consistent with equality (by type, then value); not SQLite's sort order.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Real(a), Value::Real(b)) => a.total_cmp(b),
            (Value::Text(a), Value::Text(b)) => a.cmp(b),
            (Value::Blob(a), Value::Blob(b)) => a.cmp(b),
            _ => self.tag().cmp(&other.tag()),
        }
    }
}
impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.tag().hash(state);
        match self {
            Value::Null => {}
            Value::Int(i) => i.hash(state),
            Value::Real(f) => f.to_bits().hash(state),
            Value::Text(s) => s.hash(state),
            Value::Blob(b) => b.hash(state),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => write!(f, "NULL"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Real(x) => write!(f, "{x}"),
            Value::Text(s) => write!(f, "'{s}'"),
            Value::Blob(b) => write!(f, "x'{}'", hex::encode(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_reals_equal_integers() {
        assert_eq!(Value::real(1.0), Value::Int(1));
        assert_eq!(Value::real(-0.0), Value::Int(0));
        assert_ne!(Value::real(1.5), Value::Int(1));
        assert_ne!(Value::Text("1".into()), Value::Int(1));
        assert_eq!(Value::real(f64::NAN), Value::Null);
        assert_eq!(Value::real(1e300), Value::Real(1e300));
    }
}
