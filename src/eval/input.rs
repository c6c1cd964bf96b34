//! Reading predictions files (JSONL) for `t2s evaluate --predictions`: one object per line with
//! the row's schema script, the gold SQL and the predicted SQL, under a few accepted names.
//! Every problem is reported with `file:line` and what to fix.

use std::path::Path;

use serde_json::{Map, Value};

use super::score::ScoreItem;

/// Accepted field names, first match wins.
pub const CONTEXT_FIELDS: &[&str] = &["sql_context", "context"];
pub const GOLD_FIELDS: &[&str] = &["sql", "gold", "gold_sql"];
pub const PRED_FIELDS: &[&str] = &["prediction", "predicted_sql", "pred"];

/// Problems in a predictions file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read predictions file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{count} problem(s) in {path}:\n{list}")]
    Lines {
        path: String,
        count: usize,
        list: String,
    },
    #[error("{path} holds no predictions (expected one JSON object per line)")]
    Empty { path: String },
}

/// Most problems listed in one error.
const MAX_LISTED: usize = 20;

fn get_str(
    obj: &Map<String, Value>,
    names: &[&str],
    required: bool,
) -> Result<Option<String>, String> {
    for n in names {
        match obj.get(*n) {
            None => continue,
            Some(Value::String(s)) => return Ok(Some(s.clone())),
            Some(Value::Null) if !required => return Ok(None),
            Some(Value::Null) => return Ok(Some(String::new())),
            Some(other) => {
                return Err(format!(
                    "field `{n}` must be a string, found {}",
                    type_name(other)
                ))
            }
        }
    }
    if required {
        Err(format!(
            "missing field: one of {} is required",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        Ok(None)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parse one line into an item; `line_no` is 1-based and becomes the id when none is given.
fn parse_line(text: &str, line_no: usize) -> Result<ScoreItem, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = v else {
        return Err(format!("expected a JSON object, found {}", type_name(&v)));
    };
    let mut problems = Vec::new();
    let mut take = |names: &[&str], required: bool| match get_str(&obj, names, required) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            problems.push(e);
            String::new()
        }
    };
    let context = take(CONTEXT_FIELDS, true);
    let gold = take(GOLD_FIELDS, true);
    let pred = take(PRED_FIELDS, true);
    let sql_complexity = take(&["sql_complexity"], false);
    let sql_task_type = take(&["sql_task_type"], false);
    let domain = take(&["domain"], false);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => format!("line{line_no}"),
    };
    Ok(ScoreItem {
        id,
        context,
        gold,
        pred,
        sql_complexity,
        sql_task_type,
        domain,
    })
}

/// Parse JSONL text; `path` only names the source in errors. Blank lines are skipped.
pub fn parse_predictions(text: &str, path: &str) -> Result<Vec<ScoreItem>, InputError> {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line, i + 1) {
            Ok(it) => items.push(it),
            Err(e) => errors.push(format!("  {path}:{}: {e}", i + 1)),
        }
    }
    if !errors.is_empty() {
        let count = errors.len();
        let mut list: Vec<String> = errors.into_iter().take(MAX_LISTED).collect();
        if count > MAX_LISTED {
            list.push(format!("  ... and {} more", count - MAX_LISTED));
        }
        list.push(format!(
            "  each line needs {} (schema), {} (gold) and {} (prediction) as strings",
            CONTEXT_FIELDS.join("|"),
            GOLD_FIELDS.join("|"),
            PRED_FIELDS.join("|")
        ));
        return Err(InputError::Lines {
            path: path.to_string(),
            count,
            list: list.join("\n"),
        });
    }
    if items.is_empty() {
        return Err(InputError::Empty {
            path: path.to_string(),
        });
    }
    Ok(items)
}

/// Read and parse a predictions file.
pub fn read_predictions(path: &Path) -> Result<Vec<ScoreItem>, InputError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| InputError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_predictions(&text, &shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_alternative_names_and_reports_lines() {
        let ok = r#"{"id": 7, "sql_context": "CREATE TABLE t (a INT);", "sql": "SELECT a FROM t", "prediction": "SELECT a FROM t", "domain": "retail"}
{"context": "", "gold": "SELECT 1", "pred": "SELECT 1"}"#;
        let items = parse_predictions(ok, "p.jsonl").unwrap();
        assert_eq!(items[0].id, "7");
        assert_eq!(items[1].id, "line2");
        assert_eq!(items[0].domain, "retail");

        let bad = "{\"sql_context\": \"\", \"sql\": \"SELECT 1\"}\n\nnot json\n{\"sql_context\": 1, \"sql\": \"x\", \"pred\": \"y\"}";
        let e = parse_predictions(bad, "p.jsonl").unwrap_err().to_string();
        assert!(
            e.contains("p.jsonl:1: missing field: one of `prediction`"),
            "{e}"
        );
        assert!(e.contains("p.jsonl:3: invalid JSON"), "{e}");
        assert!(
            e.contains("p.jsonl:4: field `sql_context` must be a string, found a number"),
            "{e}"
        );
        assert!(matches!(
            parse_predictions("\n", "e.jsonl"),
            Err(InputError::Empty { .. })
        ));
    }
}
