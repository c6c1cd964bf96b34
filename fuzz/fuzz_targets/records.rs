//! A local data file in gretel's schema as `load` reads it (`source: data.parquet`, `.csv`,
//! `.jsonl`), then each record through validation: records or an error that names the file,
//! never a panic. The first byte picks the format, the rest is the file.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use t2s::data::records::read_records;
use t2s::data::validate::{Limits, Validator};

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("t2s-fuzz-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ext = ["parquet", "csv", "jsonl"][pick as usize % 3];
    let path = scratch().join(format!("data.{ext}"));
    std::fs::write(&path, body).expect("writing the scratch file");
    match read_records(&path) {
        Ok(records) => {
            let mut v = Validator::new();
            let lim = Limits {
                max_row_chars: 100_000,
            };
            for r in &records {
                let _ = v.check("data", r, lim);
            }
        }
        Err(e) => {
            let text = format!("{e:#}");
            assert!(
                text.contains("data."),
                "an error that does not name the file: {text}"
            );
        }
    }
});
