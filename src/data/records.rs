//! Readers for local files in gretel's schema (JSONL, CSV, Parquet). They yield raw records
//! (field values before validation) with their location, so bad rows can be quarantined with a
//! line or row number instead of failing the whole file.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::Context;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

/// One field's value as found in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    /// Bytes that are not UTF-8; the offset of the first bad byte.
    BadUtf8(usize),
    /// A nested or otherwise unsupported value, described.
    Other(String),
}

/// A record before validation: where it came from and its fields by name.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// 1-based line (JSONL, CSV) or row (Parquet) number.
    pub number: usize,
    /// Set when the record could not be parsed at all (bad JSON, bad UTF-8 line).
    pub parse_error: Option<String>,
    pub fields: BTreeMap<String, RawValue>,
    /// The raw text (truncated) for the quarantine file.
    pub raw: String,
}

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
    Parquet,
}

impl Format {
    /// The format of a path, from its extension (`.jsonl`/`.json`, `.csv`, `.parquet`).
    pub fn of(path: &Path) -> anyhow::Result<Format> {
        let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("");
        if name.ends_with(".jsonl") || name.ends_with(".json") || name.ends_with(".ndjson") {
            Ok(Format::Jsonl)
        } else if name.ends_with(".csv") {
            Ok(Format::Csv)
        } else if name.ends_with(".parquet") {
            Ok(Format::Parquet)
        } else {
            anyhow::bail!(
                "{}: unknown data file type; use a .jsonl, .csv or .parquet file in the gretel schema",
                path.display()
            )
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

const RAW_KEEP: usize = 300;

fn clip(s: &str) -> String {
    if s.len() <= RAW_KEEP {
        return s.to_string();
    }
    let mut end = RAW_KEEP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Read all records of a file.
pub fn read_records(path: &Path) -> anyhow::Result<Vec<RawRecord>> {
    match Format::of(path)? {
        Format::Jsonl => read_jsonl(path),
        Format::Csv => read_csv(path),
        Format::Parquet => read_parquet(path),
    }
}

fn json_value(v: &serde_json::Value) -> RawValue {
    match v {
        serde_json::Value::Null => RawValue::Null,
        serde_json::Value::String(s) => RawValue::Str(s.clone()),
        serde_json::Value::Bool(b) => RawValue::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => RawValue::Int(i),
            None => RawValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        other => RawValue::Other(format!(
            "a JSON {}",
            if other.is_array() { "array" } else { "object" }
        )),
    }
}

fn read_jsonl(path: &Path) -> anyhow::Result<Vec<RawRecord>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let number = i + 1;
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                out.push(RawRecord {
                    number,
                    parse_error: Some(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
                    fields: BTreeMap::new(),
                    raw: clip(&String::from_utf8_lossy(line)),
                });
                continue;
            }
        };
        let mut rec = RawRecord {
            number,
            parse_error: None,
            fields: BTreeMap::new(),
            raw: clip(text),
        };
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(m)) => {
                rec.fields = m.iter().map(|(k, v)| (k.clone(), json_value(v))).collect();
            }
            Ok(_) => rec.parse_error = Some("not a JSON object".into()),
            Err(e) => rec.parse_error = Some(format!("invalid JSON: {e}")),
        }
        out.push(rec);
    }
    Ok(out)
}

fn read_csv(path: &Path) -> anyhow::Result<Vec<RawRecord>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let headers: Vec<String> = rdr
        .byte_headers()
        .with_context(|| format!("{}: reading the CSV header", path.display()))?
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    let mut out = Vec::new();
    let mut rec = csv::ByteRecord::new();
    loop {
        let number = rdr.position().line() as usize;
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                out.push(RawRecord {
                    number,
                    parse_error: Some(format!("invalid CSV: {e}")),
                    fields: BTreeMap::new(),
                    raw: String::new(),
                });
                continue;
            }
        }
        let number = rec.position().map(|p| p.line() as usize).unwrap_or(number);
        let mut fields = BTreeMap::new();
        let mut raw = Vec::new();
        for (h, v) in headers.iter().zip(rec.iter()) {
            let val = match std::str::from_utf8(v) {
                Ok(s) => RawValue::Str(s.to_string()),
                Err(e) => RawValue::BadUtf8(e.valid_up_to()),
            };
            raw.push(String::from_utf8_lossy(v).into_owned());
            fields.insert(h.clone(), val);
        }
        out.push(RawRecord {
            number,
            parse_error: None,
            fields,
            raw: clip(&raw.join(",")),
        });
    }
    Ok(out)
}

fn parquet_value(f: &Field) -> RawValue {
    match f {
        Field::Null => RawValue::Null,
        Field::Str(s) => RawValue::Str(s.clone()),
        Field::Bytes(b) => match std::str::from_utf8(b.data()) {
            Ok(s) => RawValue::Str(s.to_string()),
            Err(e) => RawValue::BadUtf8(e.valid_up_to()),
        },
        Field::Bool(b) => RawValue::Bool(*b),
        Field::Byte(v) => RawValue::Int(*v as i64),
        Field::Short(v) => RawValue::Int(*v as i64),
        Field::Int(v) => RawValue::Int(*v as i64),
        Field::Long(v) => RawValue::Int(*v),
        Field::UByte(v) => RawValue::Int(*v as i64),
        Field::UShort(v) => RawValue::Int(*v as i64),
        Field::UInt(v) => RawValue::Int(*v as i64),
        Field::ULong(v) => RawValue::Int(*v as i64),
        Field::Float(v) => RawValue::Float(*v as f64),
        Field::Double(v) => RawValue::Float(*v),
        other => RawValue::Other(format!("a parquet {other:?}")),
    }
}

/// Parquet rows. A file the reader cannot go on with is an error that names it and the row
/// where reading stopped, never a partial load: the parquet reader returns the same error for
/// every later row once a row group fails (reading on would never end), and it may panic on
/// malformed metadata, which is caught here and reported like any other corrupt file.
fn read_parquet(path: &Path) -> anyhow::Result<Vec<RawRecord>> {
    crate::panics::catch(|| read_parquet_rows(path)).unwrap_or_else(|why| {
        anyhow::bail!(
            "{}: not a readable parquet file (the parquet reader failed: {why})",
            path.display()
        )
    })
}

fn read_parquet_rows(path: &Path) -> anyhow::Result<Vec<RawRecord>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = SerializedFileReader::new(file)
        .with_context(|| format!("{}: not a readable parquet file", path.display()))?;
    let iter = reader
        .get_row_iter(None)
        .with_context(|| format!("{}: reading parquet rows", path.display()))?;
    let mut out = Vec::new();
    for (i, row) in iter.enumerate() {
        let number = i + 1;
        match row {
            Ok(row) => {
                let fields: BTreeMap<String, RawValue> = row
                    .get_column_iter()
                    .map(|(k, v)| (k.clone(), parquet_value(v)))
                    .collect();
                let raw = clip(&format!("{fields:?}"));
                out.push(RawRecord {
                    number,
                    parse_error: None,
                    fields,
                    raw,
                });
            }
            Err(e) => anyhow::bail!(
                "{}: corrupt parquet data at row {number} ({} rows read before it): {e}",
                path.display(),
                number - 1
            ),
        }
    }
    Ok(out)
}
