//! A small, forgiving SQL lexer (SQLite's quoting rules) for the checks that must not look
//! inside string literals: normalized exact match, "does the outermost query ORDER BY",
//! the first keyword of a statement, and non-deterministic function detection. It never fails:
//! an unterminated literal runs to the end of the input.

/// One lexical token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// Keyword or bare identifier, as written.
    Word(String),
    /// Numeric literal, as written.
    Number(String),
    /// `'...'` string literal with its quotes, as written.
    Str(String),
    /// `"..."`, `` `...` `` or `[...]` quoted identifier with its quotes, as written.
    Quoted(String),
    /// Operator or punctuation (`>=`, `(`, `,`, `;` ...).
    Punct(String),
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Split `sql` into tokens, dropping whitespace and `--` / `/* */` comments.
pub fn lex(sql: &str) -> Vec<Tok> {
    lex_spanned(sql).into_iter().map(|(t, _)| t).collect()
}

/// [`lex`] with each token's byte range in `sql`, for rewrites that keep the rest of the text
/// as written (the test suite's near-miss mutations).
pub fn lex_spanned(sql: &str) -> Vec<(Tok, std::ops::Range<usize>)> {
    let chars: Vec<char> = sql.chars().collect();
    // Byte offset of each char index (and of the end), to turn char ranges into byte ranges.
    let bytes: Vec<usize> = sql
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(sql.len()))
        .collect();
    let mut out: Vec<(Tok, std::ops::Range<usize>)> = Vec::new();
    let mut push = |t: Tok, from: usize, to: usize| out.push((t, bytes[from]..bytes[to]));
    let mut i = 0;
    let take_until = |start: usize, close: char, doubled: bool| -> usize {
        // Returns the index one past the closing quote (or the end).
        let mut j = start + 1;
        while j < chars.len() {
            if chars[j] == close {
                if doubled && j + 1 < chars.len() && chars[j + 1] == close {
                    j += 2;
                    continue;
                }
                return j + 1;
            }
            j += 1;
        }
        chars.len()
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i = (i + 2).min(chars.len());
        } else if c == '\'' {
            let j = take_until(i, '\'', true);
            push(Tok::Str(chars[i..j].iter().collect()), i, j);
            i = j;
        } else if c == '"' || c == '`' {
            let j = take_until(i, c, true);
            push(Tok::Quoted(chars[i..j].iter().collect()), i, j);
            i = j;
        } else if c == '[' {
            let j = take_until(i, ']', false);
            push(Tok::Quoted(chars[i..j].iter().collect()), i, j);
            i = j;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let hex = c == '0' && matches!(chars.get(i + 1), Some('x' | 'X'));
            let mut j = i;
            while j < chars.len() {
                let ch = chars[j];
                let exp_sign =
                    (ch == '+' || ch == '-') && !hex && j > i && matches!(chars[j - 1], 'e' | 'E');
                if ch.is_ascii_alphanumeric() || ch == '.' || exp_sign {
                    j += 1;
                } else {
                    break;
                }
            }
            push(Tok::Number(chars[i..j].iter().collect()), i, j);
            i = j;
        } else if is_word_char(c) {
            let mut j = i;
            while j < chars.len() && is_word_char(chars[j]) {
                j += 1;
            }
            push(Tok::Word(chars[i..j].iter().collect()), i, j);
            i = j;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = match two.as_str() {
                ">=" | "<=" | "<>" | "!=" | "==" | "||" | "<<" | ">>" | "->" => two,
                _ => c.to_string(),
            };
            let j = i + op.chars().count();
            push(Tok::Punct(op), i, j);
            i = j;
        }
    }
    out
}

impl Tok {
    /// The token as written (quotes included).
    pub fn text(&self) -> &str {
        match self {
            Tok::Word(s) | Tok::Number(s) | Tok::Str(s) | Tok::Quoted(s) | Tok::Punct(s) => s,
        }
    }

    /// True when this is the bare word `kw` (ASCII case-insensitive).
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

/// First keyword of the statement (upper-case), skipping leading parentheses.
pub fn first_keyword(sql: &str) -> Option<String> {
    first_keyword_of(&lex(sql))
}

/// [`first_keyword`] of a statement already lexed.
pub fn first_keyword_of(toks: &[Tok]) -> Option<String> {
    toks.iter().find_map(|t| match t {
        Tok::Word(w) => Some(Some(w.to_ascii_uppercase())),
        Tok::Punct(p) if p == "(" => None,
        _ => Some(None),
    })?
}

/// True when the outermost query (parenthesis depth 0, outside literals) has `ORDER BY`.
/// Window `OVER (ORDER BY ...)` and subquery orderings do not count.
pub fn has_outer_order_by(sql: &str) -> bool {
    let toks = lex(sql);
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Punct(p) if p == "(" => depth += 1,
            Tok::Punct(p) if p == ")" => depth -= 1,
            _ if depth == 0
                && t.is_kw("ORDER")
                && toks.get(i + 1).is_some_and(|n| n.is_kw("BY")) =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}

/// Names whose presence makes a query's result depend on the clock or on chance
/// (SQLite-Writes' `NONDETERMINISTIC_TOKENS` plus common dialect spellings). Matched as whole
/// words anywhere, string literals included, so `date('now')` counts.
pub const NONDETERMINISTIC: &[&str] = &[
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "NOW",
    "RANDOM",
    "RANDOMBLOB",
    "UUID",
    "GETDATE",
    "SYSDATE",
    "CURDATE",
    "CURTIME",
    "LOCALTIME",
    "LOCALTIMESTAMP",
];

/// The first non-deterministic name used by `sql`, if any.
pub fn nondeterministic_token(sql: &str) -> Option<&'static str> {
    let mut word = String::new();
    let check = |w: &str| {
        NONDETERMINISTIC
            .iter()
            .find(|k| k.eq_ignore_ascii_case(w))
            .copied()
    };
    for c in sql.chars().chain(std::iter::once(' ')) {
        if is_word_char(c) {
            word.push(c);
        } else if !word.is_empty() {
            if let Some(k) = check(&word) {
                return Some(k);
            }
            word.clear();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes_literals_comments_and_operators() {
        let t = lex("SELECT 'it''s' , \"Col\" FROM [t x] -- c\n WHERE a>=1.5e-3 /* x */;");
        assert_eq!(
            t,
            vec![
                Tok::Word("SELECT".into()),
                Tok::Str("'it''s'".into()),
                Tok::Punct(",".into()),
                Tok::Quoted("\"Col\"".into()),
                Tok::Word("FROM".into()),
                Tok::Quoted("[t x]".into()),
                Tok::Word("WHERE".into()),
                Tok::Word("a".into()),
                Tok::Punct(">=".into()),
                Tok::Number("1.5e-3".into()),
                Tok::Punct(";".into()),
            ]
        );
    }

    #[test]
    fn order_by_only_at_depth_zero() {
        assert!(has_outer_order_by("select a from t order by a"));
        assert!(!has_outer_order_by(
            "select * from (select a from t order by a)"
        ));
        assert!(!has_outer_order_by(
            "select rank() over (order by a) from t where b = 'order by'"
        ));
    }

    #[test]
    fn first_keyword_and_nondeterminism() {
        assert_eq!(first_keyword(" (SELECT 1)").as_deref(), Some("SELECT"));
        assert_eq!(
            first_keyword("with x as (select 1) delete from t").as_deref(),
            Some("WITH")
        );
        assert_eq!(nondeterministic_token("select date('now')"), Some("NOW"));
        assert_eq!(
            nondeterministic_token("select current_date"),
            Some("CURRENT_DATE")
        );
        assert_eq!(nondeterministic_token("select nowhere from t"), None);
    }
}
