//! A predictions file and a requests file (JSONL, as `t2s evaluate --predictions` and `t2s
//! infer --input` read them): rows or an error naming a line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use t2s::eval::input::{parse_predictions, parse_requests};

fuzz_target!(|data: &[u8]| {
    // Predictions are read as bytes: a line that is not UTF-8 is a rejected row, not an error.
    if let Err(e) = parse_predictions(data, "fuzz.jsonl") {
        assert!(
            e.to_string().contains("fuzz.jsonl"),
            "error without the file: {e}"
        );
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = parse_requests(text, "fuzz.jsonl") {
        assert!(
            e.to_string().contains("fuzz.jsonl"),
            "error without the file: {e}"
        );
    }
});
