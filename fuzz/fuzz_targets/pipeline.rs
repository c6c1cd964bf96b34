//! A pipeline file's text (and `--set` overrides, one per `#set ` line) through loading,
//! validation and matrix expansion: a plan or diagnostics, never a panic; every diagnostic
//! names a line of the file (or a `--set` argument) and a message.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use t2s::pipeline::{load_source, render};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let overrides: Vec<String> = src
        .lines()
        .filter_map(|l| l.strip_prefix("#set "))
        .map(String::from)
        .collect();
    match load_source(Path::new("fuzz.yaml"), src, &overrides) {
        Ok(p) => {
            let _ = (render::text(&p), render::dot(&p), render::mermaid(&p));
        }
        Err(diags) => {
            assert!(
                diags.iter().next().is_some(),
                "an error without a diagnostic"
            );
            // Lines as YAML ends them: `\r\n`, `\n`, or a lone `\r`.
            let lines = src.replace("\r\n", "\n").matches(['\n', '\r']).count() + 1;
            for d in diags.iter() {
                assert!(!d.message.is_empty(), "a diagnostic without a message");
                if d.file == Path::new("fuzz.yaml") {
                    assert!(
                        (1..=lines + 1).contains(&d.line) && d.column >= 1,
                        "{}:{}: outside the file's {lines} lines: {}",
                        d.line,
                        d.column,
                        d.message
                    );
                }
            }
            let _ = diags.to_string();
        }
    }
});
