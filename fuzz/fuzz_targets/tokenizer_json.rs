//! A `tokenizer.json` (from a model directory, or a tokenizer artifact on disk): a tokenizer
//! or an error naming the file, never a panic; when the preprocess fast path accepts it, its
//! ids equal `tokenizers`' own `encode` on rendered gretel rows (special tokens included).
//!
//! The `tokenizers` crate panics on some malformed files; t2s catches that (`parse`). libFuzzer's
//! panic hook would abort on the caught panic too, so a quiet hook stands in for it while
//! `parse` runs; a panic that escapes `parse` still aborts (libfuzzer-sys catches the unwind
//! and aborts), and the target's own checks run under libFuzzer's hook.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use t2s::data::builtin::generate_row;
use t2s::data::fastenc::{Encoder, Memo};
use t2s::data::format::{chat_prompt, commented_text, response};
use t2s::data::tokenizer::parse;

fuzz_target!(|data: &[u8]| {
    let fuzzer_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let parsed = parse(data, Path::new("fuzz/tokenizer.json"));
    std::panic::set_hook(fuzzer_hook);
    let tk = match parsed {
        Ok(tk) => tk,
        Err(e) => {
            assert!(e.to_string().contains("fuzz/tokenizer.json"), "{e}");
            return;
        }
    };
    let enc = Encoder::new(&tk);
    if !enc.is_fast() {
        return;
    }
    let row = generate_row(7, data.len() as u64 % 97);
    let texts = [
        chat_prompt(&row.sql_prompt, &row.sql_context),
        response(&row.sql),
        commented_text(&row.sql_prompt, &row.sql_context, &row.sql),
    ];
    let mut memo = Memo::new();
    for text in &texts {
        let Ok(want) = tk.encode(text.as_str(), false) else {
            continue;
        };
        assert_eq!(
            enc.encode(text, &mut memo).ok().as_deref(),
            Some(want.get_ids()),
            "fast path differs on {text:?}"
        );
    }
});
