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

/// libfuzzer-sys aborts at any panic, even one caught; `load` catches the parquet reader's own
/// panics (a corrupt file is an error, not a crash), so they unwind here as in t2s. A panic
/// anywhere else still aborts (libfuzzer-sys aborts when one leaves the target). Panics inside
/// dependencies are not printed: the parquet reader's are frequent and handled.
fn unwind_like_t2s() {
    std::panic::set_hook(Box::new(|info| {
        let in_dependency = info
            .location()
            .is_some_and(|l| l.file().contains("/.cargo/registry/"));
        if !in_dependency {
            eprintln!("{info}");
        }
    }));
}

fuzz_target!(init: unwind_like_t2s(), |data: &[u8]| {
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
