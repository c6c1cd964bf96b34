//! Row validation: turns raw records into `Row`s or quarantine entries with a reason, and keeps
//! per-file counts for the load report.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::records::{RawRecord, RawValue};
use super::row::{Row, FIELDS};

/// Fields that must be present, non-null and non-empty. The other fields default to "".
pub const REQUIRED: [&str; 6] = [
    "id",
    "sql_prompt",
    "sql_context",
    "sql",
    "sql_complexity",
    "sql_task_type",
];

/// One quarantined record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quarantined {
    pub file: String,
    /// 1-based line (JSONL/CSV) or row (Parquet) number.
    pub number: usize,
    /// Short machine-readable kind: missing_field, null_field, empty_field, invalid_utf8,
    /// too_long, bad_id, duplicate_id, unparseable.
    pub kind: String,
    /// Human-readable reason naming the field.
    pub reason: String,
    pub raw: String,
}

/// Validation settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Rows whose fields add up to more characters than this are quarantined.
    pub max_row_chars: usize,
}

/// Validates records, remembering ids across files to catch duplicates.
#[derive(Debug, Default)]
pub struct Validator {
    seen_ids: HashSet<i64>,
}

fn text(rec: &RawRecord, name: &str, required: bool) -> Result<String, (&'static str, String)> {
    match rec.fields.get(name) {
        None if required => Err(("missing_field", format!("missing required field `{name}`"))),
        None => Ok(String::new()),
        Some(RawValue::Null) if required => {
            Err(("null_field", format!("required field `{name}` is null")))
        }
        Some(RawValue::Null) => Ok(String::new()),
        Some(RawValue::Str(s)) => {
            if required && s.trim().is_empty() {
                Err(("empty_field", format!("required field `{name}` is empty")))
            } else {
                Ok(s.clone())
            }
        }
        Some(RawValue::BadUtf8(at)) => Err((
            "invalid_utf8",
            format!("field `{name}` is not valid UTF-8 (bad byte at offset {at})"),
        )),
        Some(RawValue::Int(i)) => Ok(i.to_string()),
        Some(RawValue::Float(f)) => Ok(f.to_string()),
        Some(RawValue::Bool(b)) => Ok(b.to_string()),
        Some(RawValue::Other(what)) => Err((
            "unparseable",
            format!("field `{name}` holds {what}, expected a string"),
        )),
    }
}

fn id_of(rec: &RawRecord) -> Result<i64, (&'static str, String)> {
    match rec.fields.get("id") {
        Some(RawValue::Int(i)) => Ok(*i),
        Some(RawValue::Str(s)) if !s.trim().is_empty() => s.trim().parse::<i64>().map_err(|_| {
            (
                "bad_id",
                format!("field `id` is {s:?}, expected an integer"),
            )
        }),
        Some(RawValue::Float(f)) if f.fract() == 0.0 => Ok(*f as i64),
        _ => text(rec, "id", true).and_then(|s| {
            Err((
                "bad_id",
                format!("field `id` is {s:?}, expected an integer"),
            ))
        }),
    }
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Validate one record; `Err` carries the quarantine entry.
    pub fn check(&mut self, file: &str, rec: &RawRecord, lim: Limits) -> Result<Row, Quarantined> {
        let q = |kind: &str, reason: String| Quarantined {
            file: file.to_string(),
            number: rec.number,
            kind: kind.to_string(),
            reason,
            raw: rec.raw.clone(),
        };
        if let Some(e) = &rec.parse_error {
            let kind = if e.contains("UTF-8") {
                "invalid_utf8"
            } else {
                "unparseable"
            };
            return Err(q(kind, e.clone()));
        }
        let id = id_of(rec).map_err(|(k, r)| q(k, r))?;
        let mut vals: BTreeMap<&str, String> = BTreeMap::new();
        for name in &FIELDS[1..] {
            let v = text(rec, name, REQUIRED.contains(name)).map_err(|(k, r)| q(k, r))?;
            vals.insert(name, v);
        }
        let chars: usize = vals.values().map(|v| v.chars().count()).sum();
        if chars > lim.max_row_chars {
            return Err(q(
                "too_long",
                format!(
                    "row has {chars} characters, more than max_row_chars {}",
                    lim.max_row_chars
                ),
            ));
        }
        if !self.seen_ids.insert(id) {
            return Err(q("duplicate_id", format!("id {id} appears more than once")));
        }
        let mut take = |k: &str| vals.remove(k).unwrap_or_default();
        Ok(Row {
            id,
            domain: take("domain"),
            domain_description: take("domain_description"),
            sql_complexity: take("sql_complexity"),
            sql_complexity_description: take("sql_complexity_description"),
            sql_task_type: take("sql_task_type"),
            sql_task_type_description: take("sql_task_type_description"),
            sql_prompt: take("sql_prompt"),
            sql_context: take("sql_context"),
            sql: take("sql"),
            sql_explanation: take("sql_explanation"),
        })
    }
}

/// Counts for one input file, as written to the load report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FileCounts {
    pub file: String,
    pub format: String,
    pub split: String,
    pub records: usize,
    pub loaded: usize,
    pub quarantined: usize,
    pub reasons: BTreeMap<String, usize>,
    /// sha256 of the file, when computed (hub files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// True when size and sha256 matched the pinned values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

impl FileCounts {
    pub fn bad_fraction(&self) -> f64 {
        if self.records == 0 {
            0.0
        } else {
            self.quarantined as f64 / self.records as f64
        }
    }
}
