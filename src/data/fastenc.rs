//! A fast path for encoding with byte-level BPE tokenizers (GPT-2 style, like the one the
//! `tokenizer` stage trains): added tokens are split out, ASCII text is pre-tokenized by a
//! hand-written equivalent of the GPT-2 split pattern, and each piece's ids are memoized per
//! thread, so the BPE model runs once per distinct word. It produces exactly the ids of
//! `Tokenizer::encode(text, false)` (the preprocess parity test checks every row against HF
//! `tokenizers`); tokenizers of other shapes, and non-ASCII text, take the generic path.

use std::collections::HashMap;

use tokenizers::{Model, Tokenizer};

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

/// Whether the tokenizer has the shape the fast path reproduces exactly.
fn eligible(tk: &Tokenizer) -> Option<Vec<(String, u32)>> {
    let v = serde_json::to_value(tk).ok()?;
    let pt = &v["pre_tokenizer"];
    let m = &v["model"];
    let ok = v["normalizer"].is_null()
        && v["truncation"].is_null()
        && v["padding"].is_null()
        && pt["type"] == "ByteLevel"
        && pt["add_prefix_space"] == false
        && pt.get("use_regex").map(|u| u == true).unwrap_or(true)
        && m["type"] == "BPE"
        && m["dropout"].is_null()
        && m["continuing_subword_prefix"]
            .as_str()
            .unwrap_or("")
            .is_empty()
        && m["end_of_word_suffix"].as_str().unwrap_or("").is_empty();
    if !ok {
        return None;
    }
    let mut added = Vec::new();
    for t in v["added_tokens"].as_array()? {
        if t["single_word"] == true
            || t["lstrip"] == true
            || t["rstrip"] == true
            || t["normalized"] == true
        {
            return None;
        }
        added.push((t["content"].as_str()?.to_string(), t["id"].as_u64()? as u32));
    }
    // The serialized list must be the whole of what `encode` splits out. It is not when two
    // added tokens share an id (a hand-edited vocabulary): one of them is then left out of it.
    let splits = tk.get_added_vocabulary().get_vocab();
    if splits.len() != added.len()
        || added
            .iter()
            .any(|(content, id)| splits.get(content) != Some(id))
    {
        return None;
    }
    added.sort_by_key(|a| std::cmp::Reverse(a.0.len()));
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
