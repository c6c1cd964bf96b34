//! The search space: each dimension a list of choices or a numeric range (integer or real,
//! linear or log scale), read from a pipeline's `search.space` and sampled with a seeded RNG.
//!
//! ```yaml
//! space:
//!   lora_r: {values: [4, 8, 16]}
//!   lr: {low: 1.0e-4, high: 1.0e-2, log: true}
//!   warmup_steps: {low: 0, high: 20, int: true}
//! ```

use rand::Rng;
use serde_json::{Map, Value};

use super::Params;

/// One dimension of the space.
#[derive(Debug, Clone, PartialEq)]
pub enum Dimension {
    /// One of these values (strings, numbers or booleans).
    Choice(Vec<Value>),
    /// A number in `[low, high]`; `int` rounds to integers; `log` samples uniformly in log
    /// space (both bounds positive).
    Range {
        low: f64,
        high: f64,
        log: bool,
        int: bool,
    },
}

/// A space's dimensions, in name order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Space {
    pub dims: Vec<(String, Dimension)>,
}

/// A problem in a space as written: the path under `space` (`lr.low`) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceError {
    pub path: String,
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> SpaceError {
    SpaceError {
        path: path.into(),
        message: message.into(),
    }
}

const RANGE_FIELDS: [&str; 4] = ["low", "high", "log", "int"];

impl Space {
    /// Read a space from its written form; every problem is returned.
    pub fn parse(v: &Value) -> Result<Space, Vec<SpaceError>> {
        let Value::Object(dims) = v else {
            return Err(vec![err(
                "",
                "expected a mapping of param names to `{values: [...]}` or `{low, high}`",
            )]);
        };
        if dims.is_empty() {
            return Err(vec![err("", "the space has no dimensions")]);
        }
        let mut out = Space::default();
        let mut problems = Vec::new();
        for (name, body) in dims {
            match Dimension::parse(name, body) {
                Ok(d) => out.dims.push((name.clone(), d)),
                Err(mut e) => problems.append(&mut e),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }

    /// A uniform draw from every dimension.
    pub fn sample(&self, rng: &mut impl Rng) -> Params {
        self.dims
            .iter()
            .map(|(name, d)| (name.clone(), d.sample(rng)))
            .collect()
    }

    /// Every combination of the choices (ranges must have been discretised: `None` if a
    /// dimension is a range), in the order a `matrix:` expands them.
    pub fn grid(&self) -> Option<Vec<Params>> {
        let mut out = vec![Params::new()];
        for (name, d) in &self.dims {
            let Dimension::Choice(values) = d else {
                return None;
            };
            out = out
                .into_iter()
                .flat_map(|p| {
                    values.iter().map(move |v| {
                        let mut q = p.clone();
                        q.insert(name.clone(), v.clone());
                        q
                    })
                })
                .collect();
        }
        Some(out)
    }
}

impl Dimension {
    fn parse(name: &str, body: &Value) -> Result<Dimension, Vec<SpaceError>> {
        let Value::Object(fields) = body else {
            return Err(vec![err(
                name,
                "expected `{values: [...]}` or `{low: .., high: ..}`",
            )]);
        };
        if let Some(values) = fields.get("values") {
            if let Some(extra) = fields.keys().find(|k| *k != "values") {
                return Err(vec![err(
                    format!("{name}.{extra}"),
                    "a choice dimension takes only `values`",
                )]);
            }
            return parse_choice(name, values).map_err(|e| vec![e]);
        }
        parse_range(name, fields)
    }

    /// A uniform draw.
    pub fn sample(&self, rng: &mut impl Rng) -> Value {
        match self {
            Dimension::Choice(values) => values[rng.random_range(0..values.len())].clone(),
            Dimension::Range { .. } => self.value_at(rng.random::<f64>()),
        }
    }

    /// The range's value at `u` in [0, 1] of its (linear or log) extent, rounded for
    /// integers. Choices: the value at index `floor(u * n)`.
    pub fn value_at(&self, u: f64) -> Value {
        let u = u.clamp(0.0, 1.0);
        match self {
            Dimension::Choice(values) => {
                let i = ((u * values.len() as f64) as usize).min(values.len() - 1);
                values[i].clone()
            }
            Dimension::Range {
                low,
                high,
                log,
                int,
            } => {
                let x = if *log {
                    (low.ln() + u * (high.ln() - low.ln())).exp()
                } else {
                    low + u * (high - low)
                };
                number(x.clamp(*low, *high), *int, (*low, *high))
            }
        }
    }

    /// Where `v` lies in [0, 1] of the range's (linear or log) extent; `None` for choices or
    /// a value that is not a number.
    pub fn position(&self, v: &Value) -> Option<f64> {
        let Dimension::Range { low, high, log, .. } = self else {
            return None;
        };
        let x = v.as_f64()?;
        let u = if *log {
            (x.ln() - low.ln()) / (high.ln() - low.ln())
        } else {
            (x - low) / (high - low)
        };
        Some(u.clamp(0.0, 1.0))
    }
}

/// A JSON number: an integer when `int` (rounded), else the float to three significant
/// digits (finer is noise for a hyperparameter, and the value is part of the trial's node
/// id), kept within `bounds`.
fn number(x: f64, int: bool, bounds: (f64, f64)) -> Value {
    if int {
        Value::from(x.round() as i64)
    } else {
        let rounded = format!("{x:.2e}").parse::<f64>().unwrap_or(x);
        let x = rounded.clamp(bounds.0, bounds.1);
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

fn parse_choice(name: &str, values: &Value) -> Result<Dimension, SpaceError> {
    let path = format!("{name}.values");
    let Value::Array(items) = values else {
        return Err(err(
            path,
            "expected a list of values, e.g. `values: [4, 8, 16]`",
        ));
    };
    if items.is_empty() {
        return Err(err(path, "no values to choose from"));
    }
    for (i, v) in items.iter().enumerate() {
        if matches!(v, Value::Array(_) | Value::Object(_) | Value::Null) {
            return Err(err(
                format!("{path}[{i}]"),
                "choices must be strings, numbers or booleans",
            ));
        }
        if items[..i].contains(v) {
            return Err(err(format!("{path}[{i}]"), format!("{v} is listed twice")));
        }
    }
    Ok(Dimension::Choice(items.clone()))
}

fn parse_range(name: &str, fields: &Map<String, Value>) -> Result<Dimension, Vec<SpaceError>> {
    let mut problems = Vec::new();
    if let Some(extra) = fields.keys().find(|k| !RANGE_FIELDS.contains(&k.as_str())) {
        problems.push(err(
            format!("{name}.{extra}"),
            format!(
                "unknown field `{extra}`: a range takes low, high, log and int (a choice: values)"
            ),
        ));
    }
    let mut bound = |key: &str| match fields.get(key) {
        Some(v) if v.as_f64().is_some_and(f64::is_finite) => v.as_f64(),
        Some(v) => {
            problems.push(err(
                format!("{name}.{key}"),
                format!("expected a number, found {v}"),
            ));
            None
        }
        None => {
            problems.push(err(
                name.to_string(),
                format!("missing `{key}` (a range needs low and high; a choice: values)"),
            ));
            None
        }
    };
    let (low, high) = (bound("low"), bound("high"));
    let mut flag = |key: &str| match fields.get(key) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            problems.push(err(
                format!("{name}.{key}"),
                format!("expected true or false, found {v}"),
            ));
            false
        }
    };
    let (log, int) = (flag("log"), flag("int"));
    if let (Some(l), Some(h)) = (low, high) {
        if l >= h {
            problems.push(err(
                name.to_string(),
                format!("the range is empty: low {l} is not below high {h}"),
            ));
        }
        if log && l <= 0.0 {
            problems.push(err(
                format!("{name}.low"),
                format!("a log range needs positive bounds, low is {l}"),
            ));
        }
        if int && (l.fract() != 0.0 || h.fract() != 0.0) {
            problems.push(err(
                name.to_string(),
                format!("an integer range needs integer bounds, got {l} and {h}"),
            ));
        }
    }
    match (low, high) {
        (Some(low), Some(high)) if problems.is_empty() => Ok(Dimension::Range {
            low,
            high,
            log,
            int,
        }),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use serde_json::json;

    fn space(v: Value) -> Space {
        Space::parse(&v).unwrap()
    }

    fn problems(v: Value) -> Vec<String> {
        Space::parse(&v)
            .unwrap_err()
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    #[test]
    fn choices_and_ranges_parse_and_sample_within_bounds() {
        let s = space(json!({
            "lora_r": {"values": [4, 8, 16]},
            "lr": {"low": 1e-4, "high": 1e-2, "log": true},
            "warmup": {"low": 0, "high": 20, "int": true},
        }));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let p = s.sample(&mut rng);
            assert!([4, 8, 16].contains(&p["lora_r"].as_i64().unwrap()));
            let lr = p["lr"].as_f64().unwrap();
            assert!((1e-4..=1e-2).contains(&lr), "{lr}");
            let w = &p["warmup"];
            assert!(w.is_i64() && (0..=20).contains(&w.as_i64().unwrap()), "{w}");
        }
    }

    #[test]
    fn log_ranges_spread_over_orders_of_magnitude() {
        let d = Dimension::Range {
            low: 1e-4,
            high: 1e-2,
            log: true,
            int: false,
        };
        assert!((d.value_at(0.5).as_f64().unwrap() - 1e-3).abs() < 1e-12);
        assert!((d.position(&json!(1e-3)).unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn the_same_seed_draws_the_same_trials() {
        let s = space(json!({"a": {"low": 0, "high": 1}, "b": {"values": ["x", "y"]}}));
        let draw = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            (0..5).map(|_| s.sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn bad_spaces_say_where_and_what() {
        assert_eq!(
            problems(json!({"r": {"values": []}})),
            ["r.values: no values to choose from"]
        );
        assert_eq!(
            problems(json!({"lr": {"low": 0.01, "high": 0.001}})),
            ["lr: the range is empty: low 0.01 is not below high 0.001"]
        );
        assert_eq!(
            problems(json!({"lr": {"low": 0, "high": 0.1, "log": true}})),
            ["lr.low: a log range needs positive bounds, low is 0"]
        );
        assert_eq!(
            problems(json!({"lr": {"low": 1, "hgih": 2}})),
            [
                "lr.hgih: unknown field `hgih`: a range takes low, high, log and int (a choice: values)",
                "lr: missing `high` (a range needs low and high; a choice: values)"
            ]
        );
        assert_eq!(problems(json!({})), [": the space has no dimensions"]);
        assert_eq!(
            problems(json!({"r": {"values": [4, 4]}})),
            ["r.values[1]: 4 is listed twice"]
        );
    }

    #[test]
    fn a_space_of_choices_is_a_grid() {
        let s = space(json!({"a": {"values": [1, 2]}, "b": {"values": ["x", "y", "z"]}}));
        assert_eq!(s.grid().unwrap().len(), 6);
        let r = space(json!({"lr": {"low": 0.1, "high": 1}}));
        assert!(r.grid().is_none());
    }
}
