//! The SentencePiece-style BPE shape of Gemma-3's tokenizer.json: normalizer Replace(" " → "▁"),
//! pre-tokenizer Split(" ", MergedWithPrevious) or none, a BPE (byte fallback) over the
//! normalized text.
//!
//! After the normalizer no space is left, so the pre-tokenizer splits nothing and `tokenizers`
//! runs BPE on each whole text between added tokens: slow on long texts. This path cuts such a
//! text into pieces before each "▁" that follows a non-"▁" char, runs BPE per piece and memoizes
//! each piece's ids. Why that is exact: BPE only ever merges two adjacent symbols into a symbol
//! whose string (their concatenation) is a vocabulary token. A symbol left of a cut ends with
//! the char `c` before it (when `c` is itself a token: otherwise byte fallback or unk) and the
//! one right of it starts with "▁", so a merge across the cut makes a token containing `c▁`.
//! The vocabulary is scanned once for such tokens (Gemma-3 has one, `>▁</`); no cut is made
//! after their `c`, nor after a char that is not a token, so no merge can cross a cut and BPE
//! on the pieces equals BPE on the whole.

use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::{
    Model, ModelWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

use super::{plain_bpe, Memo, Pieces};

/// What the normalizer turns a space into.
const META: char = '▁';
const META_STR: &str = "▁";

pub(super) struct Spm {
    /// ASCII chars after which a piece may end (the next piece starting at a "▁").
    ascii_cut: [bool; 128],
    /// Chars followed by "▁" inside some vocabulary token: no piece ends after them.
    joiners: Vec<char>,
}

impl Spm {
    /// The shape, if `tk` has it.
    pub(super) fn of(tk: &Tokenizer) -> Option<Self> {
        let space = Replace::new(" ", META_STR).ok()?;
        let Some(NormalizerWrapper::Replace(normalizer)) = tk.get_normalizer() else {
            return None;
        };
        if *normalizer != space {
            return None;
        }
        match tk.get_pre_tokenizer() {
            None => {}
            Some(PreTokenizerWrapper::Split(split)) => {
                let noop =
                    Split::new(" ", SplitDelimiterBehavior::MergedWithPrevious, false).ok()?;
                if *split != noop {
                    return None;
                }
            }
            Some(_) => return None,
        }
        // With ignore_merges a whole text that is a token stays one: per piece it would not.
        let bpe = plain_bpe(tk)?;
        if bpe.ignore_merges || bpe.token_to_id(META_STR).is_none() {
            return None;
        }
        let mut joiners = Vec::new();
        for token in bpe.get_vocab().keys() {
            if !token.trim_start_matches(META).contains(META) {
                continue;
            }
            let chars: Vec<char> = token.chars().collect();
            for w in chars.windows(2) {
                if w[0] != META && w[1] == META && !joiners.contains(&w[0]) {
                    joiners.push(w[0]);
                }
            }
        }
        let mut ascii_cut = [false; 128];
        for (b, cut) in ascii_cut.iter_mut().enumerate() {
            let c = b as u8 as char;
            *cut = !joiners.contains(&c) && bpe.token_to_id(&c.to_string()).is_some();
        }
        Some(Spm { ascii_cut, joiners })
    }

    /// Whether a piece may end after `c` (see the module comment).
    fn cut_after(&self, model: &ModelWrapper, c: char) -> bool {
        if c.is_ascii() {
            return self.ascii_cut[c as usize];
        }
        let mut buf = [0u8; 4];
        !self.joiners.contains(&c) && model.token_to_id(c.encode_utf8(&mut buf)).is_some()
    }

    /// Appends the ids of `seg` (a text between added tokens) to `ids`.
    pub(super) fn encode_segment(
        &self,
        model: &ModelWrapper,
        seg: &str,
        memo: &mut Memo,
        ids: &mut Vec<u32>,
    ) -> anyhow::Result<()> {
        let mut p = Pieces { model, memo, ids };
        // Pieces are cut on the raw text (a space is a "▁" to be) and memoized by it: the
        // normalizer maps char by char, so a raw piece determines its normalized form.
        let is_meta = |c: char| c == ' ' || c == META;
        let mut start = 0;
        let mut prev: Option<char> = None;
        for (i, c) in seg.char_indices() {
            if is_meta(c) && prev.is_some_and(|p| !is_meta(p) && self.cut_after(model, p)) {
                let piece = &seg[start..i];
                p.push(piece, || piece.replace(' ', META_STR))?;
                start = i;
            }
            prev = Some(c);
        }
        let piece = &seg[start..];
        p.push(piece, || piece.replace(' ', META_STR))
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use serde_json::json;
    use tokenizers::Tokenizer;

    use super::super::{Encoder, Memo};

    /// A tiny tokenizer of Gemma-3's shape: the 256 byte tokens, `chars` as tokens, and
    /// `merges` (pairs; each result is added to the vocabulary).
    fn tiny(chars: &str, merges: &[(&str, &str)], added: &[&str]) -> Tokenizer {
        let mut vocab = serde_json::Map::new();
        let mut add = |t: String| {
            let n = vocab.len();
            vocab.entry(t).or_insert(json!(n));
        };
        add("<unk>".into());
        for b in 0..=255u8 {
            add(format!("<0x{b:02X}>"));
        }
        for c in chars.chars() {
            add(c.to_string());
        }
        for (a, b) in merges {
            add(format!("{a}{b}"));
        }
        let n = vocab.len();
        let added: Vec<_> = added
            .iter()
            .enumerate()
            .map(|(i, t)| {
                json!({"id": n + i, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let j = json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
            "pre_tokenizer": {"type": "Split", "pattern": {"String": " "},
                              "behavior": "MergedWithPrevious", "invert": false},
            "post_processor": null, "decoder": null,
            "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                      "vocab": vocab, "merges": merges},
        });
        Tokenizer::from_str(&j.to_string()).unwrap()
    }

    fn assert_same(tk: &Tokenizer, texts: &[&str]) {
        let enc = Encoder::new(tk);
        assert!(enc.is_fast());
        let mut memo = Memo::new();
        for t in texts {
            let want = tk.encode(*t, false).unwrap().get_ids().to_vec();
            assert_eq!(enc.encode(t, &mut memo).unwrap(), want, "cold: {t:?}");
            assert_eq!(enc.encode(t, &mut memo).unwrap(), want, "warm: {t:?}");
        }
    }

    const WORDS: &[(&str, &str)] = &[("▁", "a"), ("▁a", "b"), ("a", "b"), ("▁", "▁")];

    #[test]
    fn a_token_spanning_a_cut_keeps_the_pieces_together() {
        // Like Gemma-3's `>▁</`: BPE on the whole text merges across the "▁" after `>`, so
        // the pieces there must stay one.
        let mut merges = WORDS.to_vec();
        merges.extend([("▁", "<"), ("▁<", "/"), (">", "▁</")]);
        let tk = tiny("ab<>/▁", &merges, &["<bos>"]);
        let gt = tk.token_to_id(">▁</").unwrap();
        let ids = tk.encode("ab> </ab", false).unwrap().get_ids().to_vec();
        assert!(ids.contains(&gt), "{ids:?}");
        assert_same(
            &tk,
            &[
                "ab> </ab",
                "> </",
                ">  </",
                "a>> </> </",
                "<bos>> </<bos> ab  ab ",
                "",
                " ",
            ],
        );
    }

    #[test]
    fn a_char_without_a_token_keeps_the_pieces_together() {
        // `é` is not a token: byte fallback spells it `<0xC3><0xA9>`, and a merge of its last
        // byte with the "▁" after it crosses where a cut would be.
        let merges = [("<0xA9>", "▁"), ("▁", "a")];
        let tk = tiny("ab▁", &merges, &[]);
        let spanning = tk.token_to_id("<0xA9>▁").unwrap();
        let ids = tk.encode("aé a", false).unwrap().get_ids().to_vec();
        assert!(ids.contains(&spanning), "{ids:?}");
        assert_same(&tk, &["aé a", "é é", "éa a", "✓ a", "a\u{0} a"]);
    }

    #[test]
    fn only_the_gemma_shape_is_eligible() {
        let base = tiny("ab▁", WORDS, &["<bos>"]);
        assert!(Encoder::new(&base).is_fast());
        let fast_after = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut j: serde_json::Value =
                serde_json::from_str(&base.to_string(false).unwrap()).unwrap();
            change(&mut j);
            let tk = Tokenizer::from_str(&j.to_string()).unwrap();
            let text = "<bos>ab  ab a";
            let want = tk.encode(text, false).unwrap().get_ids().to_vec();
            let enc = Encoder::new(&tk);
            assert_eq!(enc.encode(text, &mut Memo::new()).unwrap(), want);
            enc.is_fast()
        };
        assert!(fast_after(&|j| j["pre_tokenizer"] = json!(null)));
        assert!(!fast_after(&|j| j["normalizer"]["content"] = json!("_")));
        assert!(!fast_after(&|j| j["model"]["ignore_merges"] = json!(true)));
        assert!(!fast_after(
            &|j| j["pre_tokenizer"]["behavior"] = json!("Isolated")
        ));
        assert!(!fast_after(&|j| {
            j["pre_tokenizer"] = json!({"type": "Metaspace", "replacement": "▁",
                                         "prepend_scheme": "always", "split": true})
        }));
        assert!(!fast_after(
            &|j| j["added_tokens"][0]["normalized"] = json!(true)
        ));
    }
}
