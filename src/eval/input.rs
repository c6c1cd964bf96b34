//! Reading predictions files (JSONL) for `t2s evaluate --predictions`: one object per line with
//! the row's schema script, the gold SQL and the predicted SQL, under a few accepted names; a
//! row with a model's raw `generation` instead of a prediction is scored on the SQL that
//! [`extract_sql`] takes from it, the rule evaluate applies to t2s's own generations.
//! Every problem is reported with `file:line` and what to fix. A predictions file is scored
//! even when some lines are bad (not JSON, not UTF-8, a field missing): each bad line becomes
//! a [`Rejected`] row with its reason, the rest are scored; only a file with no usable line
//! at all is an error.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::extract::extract_sql;
use super::score::ScoreItem;

/// Accepted field names, first match wins.
pub const CONTEXT_FIELDS: &[&str] = &["sql_context", "context"];
pub const GOLD_FIELDS: &[&str] = &["sql", "gold", "gold_sql"];
pub const PRED_FIELDS: &[&str] = &["prediction", "predicted_sql", "pred"];
/// A model's raw output, used when a row has none of [`PRED_FIELDS`].
pub const GENERATION_FIELDS: &[&str] = &["generation"];

/// Problems in a predictions file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
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

/// The `evaluate` stage's own predictions.jsonl nests the test row under `row`: its fields
/// count as the line's own (the line's fields win), so t2s's output scores as it is.
fn with_row_fields(obj: Map<String, Value>) -> Map<String, Value> {
    let Some(Value::Object(row)) = obj.get("row") else {
        return obj;
    };
    let mut merged = row.clone();
    merged.extend(obj.into_iter().filter(|(k, _)| k != "row"));
    merged
}

/// Parse one line into an item; `line_no` is 1-based and becomes the id when none is given.
fn parse_line(text: &str, line_no: usize) -> Result<ScoreItem, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = v else {
        return Err(format!("expected a JSON object, found {}", type_name(&v)));
    };
    let obj = with_row_fields(obj);
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
    let has = |names: &[&str]| names.iter().any(|n| obj.contains_key(*n));
    let pred = if has(GENERATION_FIELDS) && !has(PRED_FIELDS) {
        extract_sql(&take(GENERATION_FIELDS, true))
    } else {
        take(PRED_FIELDS, true)
    };
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

/// A line of a predictions file that could not be scored, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rejected {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

/// The usable rows of a predictions file and the lines that were not.
#[derive(Debug, Clone)]
pub struct Predictions {
    pub items: Vec<ScoreItem>,
    pub rejected: Vec<Rejected>,
}

fn predictions_hint() -> String {
    format!(
        "each line needs {} (schema), {} (gold) and {} (prediction, or {} to extract it from) as strings",
        CONTEXT_FIELDS.join("|"),
        GOLD_FIELDS.join("|"),
        PRED_FIELDS.join("|"),
        GENERATION_FIELDS.join("|")
    )
}

/// Parse JSONL bytes line by line; `path` only names the source in errors. Blank lines are
/// skipped; a line that is not UTF-8, not JSON or lacks a field is rejected with its reason.
/// An error only when no line is usable.
pub fn parse_predictions(bytes: &[u8], path: &str) -> Result<Predictions, InputError> {
    let mut items = Vec::new();
    let mut rejected = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let parsed = match std::str::from_utf8(raw) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => parse_line(text, line_no),
            Err(e) => Err(format!(
                "not valid UTF-8 (at byte {} of the line)",
                e.valid_up_to() + 1
            )),
        };
        match parsed {
            Ok(it) => items.push(it),
            Err(reason) => rejected.push(Rejected {
                line: line_no,
                reason,
            }),
        }
    }
    if items.is_empty() && !rejected.is_empty() {
        return Err(lines_error(
            path,
            rejected
                .iter()
                .map(|r| format!("  {path}:{}: {}", r.line, r.reason))
                .collect(),
            &predictions_hint(),
        ));
    }
    if items.is_empty() {
        return Err(InputError::Empty {
            path: path.to_string(),
        });
    }
    Ok(Predictions { items, rejected })
}

/// All of `errors` (already `path:line: ...`) as one error, the first [`MAX_LISTED`] listed.
fn lines_error(path: &str, errors: Vec<String>, hint: &str) -> InputError {
    let count = errors.len();
    let mut list: Vec<String> = errors.into_iter().take(MAX_LISTED).collect();
    if count > MAX_LISTED {
        list.push(format!("  ... and {} more", count - MAX_LISTED));
    }
    list.push(format!("  {hint}"));
    InputError::Lines {
        path: path.to_string(),
        count,
        list: list.join("\n"),
    }
}

/// Every non-blank line of `text` through `parse` (its 1-based number and the ids seen so far
/// with their lines), or all problems as one error, `path:line` each, ending with `hint`.
fn parse_lines<T>(
    text: &str,
    path: &str,
    hint: &str,
    mut parse: impl FnMut(&str, usize, &mut HashMap<String, usize>) -> Result<T, String>,
) -> Result<Vec<T>, InputError> {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    let mut ids = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse(line, i + 1, &mut ids) {
            Ok(it) => items.push(it),
            Err(e) => errors.push(format!("  {path}:{}: {e}", i + 1)),
        }
    }
    if !errors.is_empty() {
        return Err(lines_error(path, errors, hint));
    }
    if items.is_empty() {
        return Err(InputError::Empty {
            path: path.to_string(),
        });
    }
    Ok(items)
}

/// Accepted names of a request's text, first match wins.
pub const REQUEST_FIELDS: &[&str] = &["sql_prompt", "prompt", "request", "question"];

/// One line of a requests file (`t2s infer --input`): the request, its database context, an id
/// (the `id` field, else `line<N>`) and the whole row, kept for the output.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: String,
    pub prompt: String,
    pub context: String,
    pub row: Map<String, Value>,
}

/// Parse a requests file's JSONL text; ids must be unique (a run resumes by them).
pub fn parse_requests(text: &str, path: &str) -> Result<Vec<Request>, InputError> {
    let hint = format!(
        "each line needs {} (the request) as a string; {} (the schema) is optional; ids \
         (`id`, else the line number) must be unique",
        REQUEST_FIELDS.join("|"),
        CONTEXT_FIELDS.join("|")
    );
    parse_lines(text, path, &hint, |line, line_no, ids| {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
        let Value::Object(row) = v else {
            return Err(format!("expected a JSON object, found {}", type_name(&v)));
        };
        let prompt = get_str(&row, REQUEST_FIELDS, true)?.unwrap_or_default();
        let context = get_str(&row, CONTEXT_FIELDS, false)?.unwrap_or_default();
        let id = match row.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            None | Some(Value::Null) => format!("line{line_no}"),
            Some(other) => {
                return Err(format!(
                    "field `id` must be a string or a number, found {}",
                    type_name(other)
                ))
            }
        };
        if let Some(first) = ids.insert(id.clone(), line_no) {
            return Err(format!("id {id} is also on line {first}"));
        }
        Ok(Request {
            id,
            prompt,
            context,
            row,
        })
    })
}

/// Read and parse a requests file.
pub fn read_requests(path: &Path) -> Result<Vec<Request>, InputError> {
    let (text, shown) = read_text(path, "requests file")?;
    parse_requests(&text, &shown)
}

/// Read and parse a predictions file (bytes: one line that is not UTF-8 must not refuse the
/// whole file).
pub fn read_predictions(path: &Path) -> Result<Predictions, InputError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| InputError::Read {
        what: "predictions file",
        path: shown.clone(),
        source,
    })?;
    parse_predictions(&bytes, &shown)
}

/// A file's text and its name as errors show it.
fn read_text(path: &Path, what: &'static str) -> Result<(String, String), InputError> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text, shown)),
        Err(source) => Err(InputError::Read {
            what,
            path: shown,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_alternative_names_and_reports_lines() {
        let ok = r#"{"id": 7, "sql_context": "CREATE TABLE t (a INT);", "sql": "SELECT a FROM t", "prediction": "SELECT a FROM t", "domain": "retail"}
{"context": "", "gold": "SELECT 1", "pred": "SELECT 1"}"#;
        let items = parse_predictions(ok.as_bytes(), "p.jsonl").unwrap().items;
        assert_eq!(items[0].id, "7");
        assert_eq!(items[1].id, "line2");
        assert_eq!(items[0].domain, "retail");

        let bad = "{\"sql_context\": \"\", \"sql\": \"SELECT 1\"}\n\nnot json\n{\"sql_context\": 1, \"sql\": \"x\", \"pred\": \"y\"}";
        let e = parse_predictions(bad.as_bytes(), "p.jsonl")
            .unwrap_err()
            .to_string();
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
            parse_predictions(b"\n", "e.jsonl"),
            Err(InputError::Empty { .. })
        ));
    }

    #[test]
    fn the_evaluate_stages_own_lines_score_as_they_are() {
        let text = r#"{"system": "lora_r=4", "row": {"id": 9, "sql_context": "CREATE TABLE t (a INT);", "sql": "SELECT a FROM t", "domain": "retail"}, "generation": "SQL: SELECT a FROM t", "prediction": "SELECT a FROM t", "scores": {}}"#;
        let p = parse_predictions(text.as_bytes(), "predictions.jsonl").unwrap();
        assert!(p.rejected.is_empty(), "{:?}", p.rejected);
        let it = &p.items[0];
        assert_eq!(
            (it.id.as_str(), it.gold.as_str(), it.pred.as_str()),
            ("9", "SELECT a FROM t", "SELECT a FROM t")
        );
        assert_eq!(it.domain, "retail");
    }

    #[test]
    fn a_raw_generation_is_scored_on_the_sql_extracted_from_it() {
        let text = r#"{"sql_context": "", "sql": "SELECT 1", "generation": "SQL: SELECT 1;\n\nThis query returns one.<end_of_turn>"}
{"sql_context": "", "sql": "SELECT 1", "generation": "junk", "prediction": "SELECT 2"}"#;
        let items = parse_predictions(text.as_bytes(), "g.jsonl").unwrap().items;
        assert_eq!(items[0].pred, "SELECT 1;");
        assert_eq!(items[1].pred, "SELECT 2", "a prediction field wins");
    }

    /// Regression: one line that was not UTF-8 or not JSON refused the whole file (no line
    /// number for the UTF-8 case); now each bad line is rejected with its reason and the rest
    /// are kept.
    #[test]
    fn bad_lines_are_rejected_one_by_one() {
        let good = r#"{"sql_context": "", "sql": "SELECT 1", "prediction": "SELECT 1"}"#;
        let mut file = Vec::new();
        file.extend_from_slice(good.as_bytes());
        file.extend_from_slice(b"\n{\"sql_context\": \"\", \"sql\": \"SELECT 1\", \"prediction\": \"SELECT \xff\"}\r\n");
        file.extend_from_slice(b"{oops\n\n");
        file.extend_from_slice(good.as_bytes());
        let p = parse_predictions(&file, "p.jsonl").unwrap();
        assert_eq!(
            p.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            ["line1", "line5"]
        );
        assert_eq!(p.rejected.len(), 2, "{:?}", p.rejected);
        assert_eq!(p.rejected[0].line, 2);
        assert!(
            p.rejected[0].reason.contains("not valid UTF-8"),
            "{:?}",
            p.rejected
        );
        assert_eq!(p.rejected[1].line, 3);
        assert!(
            p.rejected[1].reason.contains("invalid JSON"),
            "{:?}",
            p.rejected
        );
    }

    #[test]
    fn requests_take_any_request_name_keep_the_row_and_need_unique_ids() {
        let ok = r#"{"id": 7, "sql_prompt": "How many?", "sql_context": "CREATE TABLE t (a INT);", "sql": "SELECT COUNT(*) FROM t"}
{"question": "All rows"}"#;
        let r = parse_requests(ok, "r.jsonl").unwrap();
        assert_eq!(
            (
                r[0].id.as_str(),
                r[0].prompt.as_str(),
                r[0].context.as_str()
            ),
            ("7", "How many?", "CREATE TABLE t (a INT);")
        );
        assert_eq!(r[0].row["sql"], "SELECT COUNT(*) FROM t");
        assert_eq!(
            (
                r[1].id.as_str(),
                r[1].prompt.as_str(),
                r[1].context.as_str()
            ),
            ("line2", "All rows", "")
        );

        let bad = "{\"sql_context\": \"\"}\n{\"id\": 1, \"prompt\": \"a\"}\n{\"id\": 1, \"prompt\": \"b\"}\n{\"id\": [1], \"prompt\": \"c\"}\n[1]";
        let e = parse_requests(bad, "r.jsonl").unwrap_err().to_string();
        for want in [
            "r.jsonl:1: missing field: one of `sql_prompt`, `prompt`, `request`, `question`",
            "r.jsonl:3: id 1 is also on line 2",
            "r.jsonl:4: field `id` must be a string or a number, found an array",
            "r.jsonl:5: expected a JSON object, found an array",
            "(the schema) is optional",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
