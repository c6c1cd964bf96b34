//! A fast path for encoding with byte-level BPE tokenizers (GPT-2 style, like the one the
//! `tokenizer` stage trains): added tokens are split out, ASCII text is pre-tokenized by a
//! hand-written equivalent of the GPT-2 split pattern, and each piece's ids are memoized per
//! thread, so the BPE model runs once per distinct word. It produces exactly the ids of
//! `Tokenizer::encode(text, false)` (the preprocess parity test checks every row against HF
//! `tokenizers`); tokenizers of other shapes, and non-ASCII text, take the generic path.

use std::collections::HashMap;

use tokenizers::{Model, ModelWrapper, PreTokenizerWrapper, Tokenizer};

/// Memo of piece → ids; one per worker thread.
pub type Memo = HashMap<String, Vec<u32>>;

/// An encoder for one tokenizer: the fast path when the tokenizer allows it.
pub struct Encoder<'a> {
    tk: &'a Tokenizer,
    fast: Option<Fast>,
}

struct Fast {
    /// Added tokens (content, id), longest first.
    added: Vec<(String, u32)>,
    /// GPT-2 byte → char table.
    byte_char: [char; 256],
}

/// GPT-2's bytes_to_unicode table.
fn byte_table() -> [char; 256] {
    let mut t = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        t[b as usize] = if printable {
            char::from_u32(b).expect("latin-1 char")
        } else {
            let c = char::from_u32(256 + n).expect("shifted char");
            n += 1;
            c
        };
    }
    t
}

/// Whether the tokenizer has the shape the fast path reproduces exactly; if so, its added
/// tokens (content, id), longest first. Read through the typed API, not by serializing the
/// tokenizer (for a 262k vocabulary that costs time, and `tokenizers` prints a warning on
/// stdout for a vocabulary with holes).
fn eligible(tk: &Tokenizer) -> Option<Vec<(String, u32)>> {
    let Some(PreTokenizerWrapper::ByteLevel(byte_level)) = tk.get_pre_tokenizer() else {
        return None;
    };
    let ModelWrapper::BPE(bpe) = tk.get_model() else {
        return None;
    };
    let ok = tk.get_normalizer().is_none()
        && tk.get_truncation().is_none()
        && tk.get_padding().is_none()
        && !byte_level.add_prefix_space
        && byte_level.use_regex
        && bpe.dropout.is_none()
        && bpe
            .continuing_subword_prefix
            .as_deref()
            .unwrap_or("")
            .is_empty()
        && bpe.end_of_word_suffix.as_deref().unwrap_or("").is_empty();
    if !ok {
        return None;
    }
    // Every token `encode` splits out (content -> id) must be one whose options the fast path
    // honours. Two added tokens sharing an id (a hand-edited vocabulary) leave one of them
    // out of the id -> token table: then the tables disagree and the generic path is taken.
    let splits = tk.get_added_vocabulary().get_vocab();
    let tokens = tk.get_added_tokens_decoder();
    if splits.len() != tokens.len() {
        return None;
    }
    let mut added = Vec::with_capacity(tokens.len());
    for (id, t) in &tokens {
        if t.single_word || t.lstrip || t.rstrip || t.normalized {
            return None;
        }
        if splits.get(&t.content) != Some(id) {
            return None;
        }
        added.push((t.content.clone(), *id));
    }
    added.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    Some(added)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Pieces of an ASCII text under `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
/// ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
fn split_ascii(s: &[u8], out: &mut Vec<(usize, usize)>) {
    let n = s.len();
    let class = |b: u8| -> u8 {
        if b.is_ascii_alphabetic() {
            b'L'
        } else if b.is_ascii_digit() {
            b'N'
        } else if is_space(b) {
            b'S'
        } else {
            b'O'
        }
    };
    let mut i = 0;
    'outer: while i < n {
        if s[i] == b'\'' {
            for c in [&b"s"[..], b"t", b"re", b"ve", b"m", b"ll", b"d"] {
                if s[i + 1..].starts_with(c) {
                    out.push((i, i + 1 + c.len()));
                    i += 1 + c.len();
                    continue 'outer;
                }
            }
        }
        let j = if s[i] == b' ' && i + 1 < n && !is_space(s[i + 1]) {
            i + 1
        } else {
            i
        };
        let cj = class(s[j]);
        if cj != b'S' {
            let mut k = j;
            while k < n && class(s[k]) == cj {
                k += 1;
            }
            out.push((i, k));
            i = k;
            continue;
        }
        let mut k = i;
        while k < n && is_space(s[k]) {
            k += 1;
        }
        let end = if k == n || k - i == 1 { k } else { k - 1 };
        out.push((i, end));
        i = end;
    }
}

impl<'a> Encoder<'a> {
    pub fn new(tk: &'a Tokenizer) -> Self {
        let fast = eligible(tk).map(|added| Fast {
            added,
            byte_char: byte_table(),
        });
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
        let b = text.as_bytes();
        if !b
            .iter()
            .all(|&c| (0x20..0x7f).contains(&c) || matches!(c, b'\t' | b'\n' | b'\r'))
        {
            return self.generic(text);
        }
        let mut ids = Vec::with_capacity(text.len() / 3);
        let mut pieces = Vec::new();
        let mut seg_start = 0;
        let mut i = 0;
        while i <= b.len() {
            let hit = if i < b.len() {
                f.added
                    .iter()
                    .find(|(t, _)| b[i..].starts_with(t.as_bytes()))
            } else {
                None
            };
            if hit.is_none() && i < b.len() {
                i += 1;
                continue;
            }
            if seg_start < i {
                pieces.clear();
                split_ascii(&b[seg_start..i], &mut pieces);
                for &(s, e) in &pieces {
                    let piece = &text[seg_start + s..seg_start + e];
                    if let Some(v) = memo.get(piece) {
                        ids.extend_from_slice(v);
                        continue;
                    }
                    let mapped: String = piece.bytes().map(|c| f.byte_char[c as usize]).collect();
                    let toks = self
                        .tk
                        .get_model()
                        .tokenize(&mapped)
                        .map_err(|e| anyhow::anyhow!("tokenizing {piece:?}: {e}"))?;
                    let v: Vec<u32> = toks.iter().map(|t| t.id).collect();
                    ids.extend_from_slice(&v);
                    memo.insert(piece.to_string(), v);
                }
            }
            match hit {
                Some((t, id)) => {
                    ids.push(*id);
                    i += t.len();
                    seg_start = i;
                }
                None => break,
            }
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

    #[test]
    fn split_matches_the_gpt2_pattern() {
        let s = "Hello  world's  'x' 42ab\n\nCREATE t(a INT);  \n x   ";
        let mut p = Vec::new();
        split_ascii(s.as_bytes(), &mut p);
        let got: Vec<&str> = p.iter().map(|&(a, b)| &s[a..b]).collect();
        assert_eq!(
            got,
            vec![
                "Hello", " ", " world", "'s", " ", " '", "x", "'", " 42", "ab", "\n", "\n",
                "CREATE", " t", "(", "a", " INT", ");", "  \n", " x", "   "
            ]
        );
    }
}
