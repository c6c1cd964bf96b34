//! The preprocess fast path against the `tokenizers` crate itself: for any text, the ids of
//! `data::fastenc` (hand-written GPT-2 split, per-piece memo, added tokens split out) equal
//! `Tokenizer::encode(text, false)` on a byte-level BPE trained as the `tokenizer` stage
//! trains it, with a cold memo and a warm one.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use t2s::data::builtin::generate_row;
use t2s::data::fastenc::{Encoder, Memo};
use t2s::data::tokenizer::train_bpe;
use tokenizers::Tokenizer;

fn tokenizer() -> &'static Tokenizer {
    static TK: OnceLock<Tokenizer> = OnceLock::new();
    TK.get_or_init(|| {
        let rows: Vec<_> = (0..300).map(|i| generate_row(7, i)).collect();
        train_bpe(&rows, 1024, 2).expect("training a BPE on built-in rows")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tk = tokenizer();
    let enc = Encoder::new(tk);
    assert!(enc.is_fast(), "the stage's tokenizer takes the fast path");
    let want = tk
        .encode(text, false)
        .expect("tokenizers encodes")
        .get_ids()
        .to_vec();
    let mut memo = Memo::new();
    assert_eq!(
        enc.encode(text, &mut memo).unwrap(),
        want,
        "cold memo: {text:?}"
    );
    assert_eq!(
        enc.encode(text, &mut memo).unwrap(),
        want,
        "warm memo: {text:?}"
    );
});
