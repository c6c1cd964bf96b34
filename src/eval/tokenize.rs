//! Tokenizers the text metrics use, ported character for character from their references:
//! sacrebleu's `13a` (also copied by HF `evaluate` bleu) and rouge_score's default tokenizer.
//!
//! Both are written as explicit scans instead of regexes: every rule of the originals matches a
//! fixed one- or two-character pattern, and a left-to-right scan that skips past each match is
//! exactly Python's `re.sub` (leftmost, non-overlapping).

/// Python's `str.isspace` / `str.split()` notion of whitespace (wider than Rust's: it includes
/// the ASCII separators 0x1C..=0x1F).
pub fn is_py_space(c: char) -> bool {
    matches!(c, '\u{1c}'..='\u{1f}') || c.is_whitespace()
}

/// Python's `str.split()` with no argument.
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

/// Python's `str.rstrip()` with no argument.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

/// Characters that rule 1 of `TokenizerRegexp` pads with spaces:
/// `[\{-\~\[-\` -\&\(-\+\:-\@\/]`.
fn is_13a_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// Apply one `(A)(B)` → replacement rule with Python `re.sub` semantics.
fn sub_pairs(
    chars: &[char],
    first: impl Fn(char) -> bool,
    second: impl Fn(char) -> bool,
    repl: impl Fn(char, char, &mut Vec<char>),
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && first(chars[i]) && second(chars[i + 1]) {
            repl(chars[i], chars[i + 1], &mut out);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// sacrebleu `TokenizerRegexp` (the four regex rules), then `' '.join(line.split())`.
fn regexp_post(line: &str) -> Vec<String> {
    // Rule 1: r'([\{-\~\[-\` -\&\(-\+\:-\@\/])' -> r' \1 '
    let mut chars = Vec::with_capacity(line.len() * 2);
    for c in line.chars() {
        if is_13a_symbol(c) {
            chars.extend([' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    let is_digit = |c: char| c.is_ascii_digit();
    let is_dot_comma = |c: char| c == '.' || c == ',';
    // Rule 2: r'([^0-9])([\.,])' -> r'\1 \2 '
    let chars = sub_pairs(
        &chars,
        |c| !is_digit(c),
        is_dot_comma,
        |a, b, out| out.extend([a, ' ', b, ' ']),
    );
    // Rule 3: r'([\.,])([^0-9])' -> r' \1 \2'
    let chars = sub_pairs(
        &chars,
        is_dot_comma,
        |c| !is_digit(c),
        |a, b, out| out.extend([' ', a, ' ', b]),
    );
    // Rule 4: r'([0-9])(-)' -> r'\1 \2 '
    let chars = sub_pairs(
        &chars,
        is_digit,
        |c| c == '-',
        |a, b, out| out.extend([a, ' ', b, ' ']),
    );
    let s: String = chars.into_iter().collect();
    py_split(&s).map(str::to_string).collect()
}

/// sacrebleu / HF `Tokenizer13a`: returns the token list (what `.split()` of the joined result
/// gives). No lowercasing.
pub fn tokenize_13a(line: &str) -> Vec<String> {
    let mut line = line.replace("<skipped>", "");
    line = line.replace("-\n", "");
    line = line.replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"");
        line = line.replace("&amp;", "&");
        line = line.replace("&lt;", "<");
        line = line.replace("&gt;", ">");
    }
    regexp_post(&format!(" {line} "))
}

/// rouge_score's default tokenizer (`rouge/tokenize.py`, no stemmer): lowercase, replace every
/// run of characters outside `[a-z0-9]` with a space, split, keep `^[a-z0-9]+$` tokens.
pub fn tokenize_rouge(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut tokens = Vec::new();
    let mut cur = String::new();
    for c in lower.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            cur.push(c);
        } else if !cur.is_empty() {
            tokens.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_sql_like_sacrebleu() {
        // Values checked with sacrebleu 2.6 `Tokenizer13a()(...)`.
        assert_eq!(
            tokenize_13a("SELECT COUNT(*) FROM t WHERE a >= 1.5;").join(" "),
            "SELECT COUNT ( * ) FROM t WHERE a > = 1.5 ;"
        );
        assert_eq!(
            tokenize_13a("x='a,b', 3,000 2020-01-01 t.col").join(" "),
            "x = 'a , b' , 3,000 2020 - 01 - 01 t . col"
        );
        assert_eq!(tokenize_13a("a &amp; b &lt;c").join(" "), "a & b < c");
        assert!(tokenize_13a("   ").is_empty());
    }

    #[test]
    fn rouge_tokenizer_drops_punctuation_and_non_ascii() {
        assert_eq!(
            tokenize_rouge("SELECT AVG(t.price) FROM café_2;"),
            vec!["select", "avg", "t", "price", "from", "caf", "2"]
        );
        assert!(tokenize_rouge("();").is_empty());
    }
}
