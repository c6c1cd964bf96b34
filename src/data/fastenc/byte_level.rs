//! The GPT-2 byte-level shape (the `tokenizer` stage trains it): no normalizer, the ByteLevel
//! pre-tokenizer with its split regex, a plain BPE. ASCII text is pre-tokenized by a
//! hand-written equivalent of the split pattern and each piece is mapped through GPT-2's
//! byte → char table before the BPE model runs on it.

use tokenizers::{ModelWrapper, PreTokenizerWrapper, Tokenizer};

use super::{plain_bpe, Memo, Pieces};

pub(super) struct ByteLevel {
    /// GPT-2 byte → char table (boxed: the other shape is small).
    byte_char: Box<[char; 256]>,
}

impl ByteLevel {
    /// The shape, if `tk` has it.
    pub(super) fn of(tk: &Tokenizer) -> Option<Self> {
        let Some(PreTokenizerWrapper::ByteLevel(byte_level)) = tk.get_pre_tokenizer() else {
            return None;
        };
        let ok = tk.get_normalizer().is_none()
            && !byte_level.add_prefix_space
            && byte_level.use_regex
            && plain_bpe(tk).is_some();
        ok.then(|| ByteLevel {
            byte_char: Box::new(byte_table()),
        })
    }

    /// Whether the hand-written split reproduces the regex on `text` (ASCII only).
    pub(super) fn handles(text: &str) -> bool {
        text.bytes()
            .all(|c| (0x20..0x7f).contains(&c) || matches!(c, b'\t' | b'\n' | b'\r'))
    }

    /// Appends the ids of `seg` (a text between added tokens) to `ids`.
    pub(super) fn encode_segment(
        &self,
        model: &ModelWrapper,
        seg: &str,
        memo: &mut Memo,
        ids: &mut Vec<u32>,
    ) -> anyhow::Result<()> {
        let mut pieces = Vec::new();
        split_ascii(seg.as_bytes(), &mut pieces);
        let mut p = Pieces { model, memo, ids };
        for (s, e) in pieces {
            let piece = &seg[s..e];
            p.push(piece, || {
                piece.bytes().map(|c| self.byte_char[c as usize]).collect()
            })?;
        }
        Ok(())
    }
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
