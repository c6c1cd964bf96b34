//! A row's context, its gold SQL and an untrusted prediction (NUL-separated) through execution
//! matching in the SQLite sandbox: never a panic, and the gold, predicted, is correct
//! wherever the row is scored.
#![no_main]

use libfuzzer_sys::fuzz_target;
use t2s::eval::exec::{execution_match, Bucket};
use t2s::eval::sandbox::Limits;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let (Some(context), Some(gold)) = (parts.next(), parts.next()) else {
        return;
    };
    let pred = parts.next().unwrap_or(gold);
    let limits = Limits {
        max_wall: std::time::Duration::from_millis(200),
        max_instructions: 2_000_000,
        ..Limits::default()
    };
    let _ = execution_match(context, gold, pred, &limits);
    let same = execution_match(context, gold, gold, &limits);
    if matches!(same.bucket, Bucket::GoldEmpty | Bucket::GoldNonempty) {
        assert!(same.correct, "the gold, predicted, is wrong: {same:?}");
    }
});
