//! A fast path for encoding with the tokenizer shapes t2s meets: GPT-2 byte-level BPE (the
//! one the `tokenizer` stage trains; [`byte_level`]) and Gemma-3's SentencePiece-style BPE
//! ([`spm`]). Added tokens are split out as `tokenizers` splits them (Aho-Corasick, leftmost
//! longest), the text between them is cut into pieces the BPE model can run on one by one,
//! and each piece's ids are memoized per thread, so the model runs once per distinct piece.
//! It produces exactly the ids of `Tokenizer::encode(text, false)` (the preprocess parity
//! tests check every row against HF `tokenizers`); tokenizers of other shapes take the
//! generic path, and so does non-ASCII text on the byte-level shape.

mod byte_level;
mod spm;

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use tokenizers::models::bpe::BPE;
use tokenizers::{Model, ModelWrapper, Tokenizer};

use byte_level::ByteLevel;
use spm::Spm;

/// Memo of piece → ids; one per worker thread (and per encoder: the key is the raw piece).
pub type Memo = HashMap<String, Vec<u32>>;

/// An encoder for one tokenizer: the fast path when the tokenizer allows it.
pub struct Encoder<'a> {
    tk: &'a Tokenizer,
    fast: Option<Fast>,
}

struct Fast {
    /// The added tokens `encode` splits out, matched as `tokenizers` matches them.
    added: AhoCorasick,
    /// Their ids, by pattern index.
    added_ids: Vec<u32>,
    shape: Shape,
}

enum Shape {
    ByteLevel(ByteLevel),
    Spm(Spm),
}

/// The model as a BPE without the options the fast paths do not reproduce.
fn plain_bpe(tk: &Tokenizer) -> Option<&BPE> {
    let ModelWrapper::BPE(bpe) = tk.get_model() else {
        return None;
    };
    let ok = bpe.dropout.is_none()
        && bpe
            .continuing_subword_prefix
            .as_deref()
            .unwrap_or("")
            .is_empty()
        && bpe.end_of_word_suffix.as_deref().unwrap_or("").is_empty();
    ok.then_some(bpe)
}

/// The added tokens `encode` splits out, if the fast path honours all of their options:
/// matched on the raw text (not normalized), without stripping or word boundaries. Read
/// through the typed API, not by serializing the tokenizer (for a 262k vocabulary that costs
/// time, and `tokenizers` prints a warning on stdout for a vocabulary with holes).
fn added_tokens(tk: &Tokenizer) -> Option<(AhoCorasick, Vec<u32>)> {
    // Two added tokens sharing an id (a hand-edited vocabulary) leave one of them out of the
    // id -> token table: then the tables disagree and the generic path is taken.
    let splits = tk.get_added_vocabulary().get_vocab();
    let tokens = tk.get_added_tokens_decoder();
    if splits.len() != tokens.len() {
        return None;
    }
    let mut added = Vec::with_capacity(tokens.len());
    for (id, t) in &tokens {
        if t.single_word || t.lstrip || t.rstrip || t.normalized || t.content.is_empty() {
            return None;
        }
        if splits.get(&t.content) != Some(id) {
            return None;
        }
        added.push((t.content.clone(), *id));
    }
    let ac = AhoCorasickBuilder::new()
        .match_kind(MatchKind::LeftmostLongest)
        .build(added.iter().map(|(t, _)| t))
        .ok()?;
    Some((ac, added.into_iter().map(|(_, id)| id).collect()))
}

/// Runs the model on pieces, through the memo.
struct Pieces<'m> {
    model: &'m ModelWrapper,
    memo: &'m mut Memo,
    ids: &'m mut Vec<u32>,
}

impl Pieces<'_> {
    /// Appends the ids of `piece`; `model_input` is what the model sees for it.
    fn push(&mut self, piece: &str, model_input: impl FnOnce() -> String) -> anyhow::Result<()> {
        if piece.is_empty() {
            return Ok(());
        }
        if let Some(v) = self.memo.get(piece) {
            self.ids.extend_from_slice(v);
            return Ok(());
        }
        let toks = self
            .model
            .tokenize(&model_input())
            .map_err(|e| anyhow::anyhow!("tokenizing {piece:?}: {e}"))?;
        let v: Vec<u32> = toks.iter().map(|t| t.id).collect();
        self.ids.extend_from_slice(&v);
        self.memo.insert(piece.to_string(), v);
        Ok(())
    }
}

impl<'a> Encoder<'a> {
    pub fn new(tk: &'a Tokenizer) -> Self {
        let fast = (|| {
            if tk.get_truncation().is_some() || tk.get_padding().is_some() {
                return None;
            }
            let shape = match ByteLevel::of(tk) {
                Some(b) => Shape::ByteLevel(b),
                None => Shape::Spm(Spm::of(tk)?),
            };
            let (added, added_ids) = added_tokens(tk)?;
            Some(Fast {
                added,
                added_ids,
                shape,
            })
        })();
        Encoder { tk, fast }
    }

    /// True when the fast path is in use.
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    fn generic(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        Ok(self
            .tk
            .encode_fast(text, false)
            .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?
            .get_ids()
            .to_vec())
    }

    /// The ids of `Tokenizer::encode(text, add_special_tokens = false)`.
    pub fn encode(&self, text: &str, memo: &mut Memo) -> anyhow::Result<Vec<u32>> {
        let Some(f) = &self.fast else {
            return self.generic(text);
        };
        if matches!(f.shape, Shape::ByteLevel(_)) && !ByteLevel::handles(text) {
            return self.generic(text);
        }
        let model = self.tk.get_model();
        let mut ids = Vec::with_capacity(text.len() / 3);
        let mut segment = |seg: &str, ids: &mut Vec<u32>| match &f.shape {
            Shape::ByteLevel(b) => b.encode_segment(model, seg, memo, ids),
            Shape::Spm(s) => s.encode_segment(model, seg, memo, ids),
        };
        let mut start = 0;
        for m in f.added.find_iter(text) {
            if start < m.start() {
                segment(&text[start..m.start()], &mut ids)?;
            }
            ids.push(f.added_ids[m.pattern().as_usize()]);
            start = m.end();
        }
        if start < text.len() {
            segment(&text[start..], &mut ids)?;
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::normalizers::Lowercase;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::AddedToken;

    #[test]
    fn only_the_shape_the_fast_path_reproduces_is_eligible() {
        let rows: Vec<_> = (0..40)
            .map(|i| crate::data::builtin::generate_row(3, i))
            .collect();
        let base = crate::data::tokenizer::train_bpe(&rows, 400, 1).unwrap();
        assert!(Encoder::new(&base).is_fast());
        let fast_after = |change: &dyn Fn(&mut Tokenizer)| {
            let mut t = base.clone();
            change(&mut t);
            let fast = Encoder::new(&t).is_fast();
            let text = "<bos>SELECT name FROM t WHERE x = 'a b';";
            let want = t.encode(text, false).unwrap().get_ids().to_vec();
            assert_eq!(
                Encoder::new(&t).encode(text, &mut Memo::new()).unwrap(),
                want
            );
            fast
        };
        assert!(fast_after(&|t| {
            t.add_tokens(&[AddedToken::from("SELECT", false).normalized(false)]);
        }));
        // A non-special added token is matched after normalization by default.
        assert!(!fast_after(&|t| {
            t.add_tokens(&[AddedToken::from("FROM", false)]);
        }));
        assert!(!fast_after(&|t| {
            t.with_normalizer(Some(Lowercase));
        }));
        assert!(!fast_after(&|t| {
            t.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(true)));
        }));
        assert!(!fast_after(&|t| {
            t.add_tokens(&[AddedToken::from("name", false).lstrip(true)]);
        }));
        assert!(!fast_after(&|t| {
            t.add_tokens(&[AddedToken::from("WHERE", false).single_word(true)]);
        }));
    }
}
