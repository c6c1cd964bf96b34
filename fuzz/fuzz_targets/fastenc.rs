//! The preprocess fast path against the `tokenizers` crate itself: for any text, the ids of
//! `data::fastenc` (added tokens split out, the text cut into pieces, per-piece memo) equal
//! `Tokenizer::encode(text, false)`, with a cold memo and a warm one, for a byte-level BPE
//! trained as the `tokenizer` stage trains it and, when `T2S_FUZZ_GEMMA_DIR` names the
//! directory of the real Gemma-3 tokenizer.json (fuzz/run.sh sets it from
//! scripts/fetch_gemma.py), for Gemma-3's SentencePiece-style BPE.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use t2s::data::builtin::generate_row;
use t2s::data::fastenc::{Encoder, Memo};
use t2s::data::tokenizer::train_bpe;
use tokenizers::Tokenizer;

fn tokenizers() -> &'static [Tokenizer] {
    static TK: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    TK.get_or_init(|| {
        let rows: Vec<_> = (0..300).map(|i| generate_row(7, i)).collect();
        let mut tks = vec![train_bpe(&rows, 1024, 2).expect("training a BPE on built-in rows")];
        if let Some(dir) = std::env::var_os("T2S_FUZZ_GEMMA_DIR") {
            let path = std::path::Path::new(&dir).join("tokenizer.json");
            tks.push(t2s::data::tokenizer::load(&path).expect("the Gemma-3 tokenizer.json"));
        }
        tks
    })
}

/// One encoder per tokenizer, built once (Gemma's scans 262k tokens).
fn encoders() -> &'static [Encoder<'static>] {
    static ENC: OnceLock<Vec<Encoder<'static>>> = OnceLock::new();
    ENC.get_or_init(|| {
        let encs: Vec<_> = tokenizers().iter().map(Encoder::new).collect();
        assert!(
            encs.iter().all(Encoder::is_fast),
            "each takes the fast path"
        );
        encs
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (tk, enc) in tokenizers().iter().zip(encoders()) {
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
    }
});
