//! Helpers shared by the data tests: the venv Python, JSONL and parquet writers.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::Command;

use t2s::data::Row;

pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

pub fn write_jsonl(path: &Path, rows: &[Row]) {
    let mut f = std::fs::File::create(path).unwrap();
    for r in rows {
        serde_json::to_writer(&mut f, r).unwrap();
        f.write_all(b"\n").unwrap();
    }
}

/// Convert a JSONL file of gretel rows into a snappy parquet file with gretel's column types
/// (id int32, the rest strings), using pyarrow.
pub fn jsonl_to_parquet(jsonl: &Path, parquet: &Path) {
    let script = r#"
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
F = ["domain", "domain_description", "sql_complexity", "sql_complexity_description",
     "sql_task_type", "sql_task_type_description", "sql_prompt", "sql_context", "sql",
     "sql_explanation"]
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
schema = pa.schema([("id", pa.int32())] + [(f, pa.string()) for f in F])
pq.write_table(pa.Table.from_pylist(rows, schema=schema), sys.argv[2], compression="snappy")
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(jsonl)
        .arg(parquet)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
