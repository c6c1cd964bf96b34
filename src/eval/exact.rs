//! Normalized exact match ("normalized string match", not Spider's component exact-set-match).
//!
//! Rules, applied to both sides before comparing:
//! 1. The SQL is lexed (SQLite quoting: `'..'` literals, `".."`/`` `..` ``/`[..]` identifiers);
//!    comments are dropped.
//! 2. Whitespace is normalized: tokens are re-joined with exactly one space, so `COUNT( * )`,
//!    `COUNT(*)` and line breaks compare equal.
//! 3. Case: keywords and bare identifiers are lower-cased (SQLite treats both
//!    case-insensitively). String literals and quoted identifiers keep their case.
//! 4. Trailing `;` tokens are removed.
//!
//! Nothing else is normalized: aliases, column order and literal formatting still count.

use super::sqllex::{lex, Tok};

/// The normalized form compared by [`exact_match`].
pub fn normalize_sql(sql: &str) -> String {
    let mut toks = lex(sql);
    while matches!(toks.last(), Some(Tok::Punct(p)) if p == ";") {
        toks.pop();
    }
    let parts: Vec<String> = toks
        .into_iter()
        .map(|t| match t {
            Tok::Word(w) => w.to_lowercase(),
            Tok::Number(n) => n.to_ascii_lowercase(),
            Tok::Str(s) | Tok::Quoted(s) | Tok::Punct(s) => s,
        })
        .collect();
    parts.join(" ")
}

/// True when `prediction` and `gold` are equal after [`normalize_sql`].
pub fn exact_match(prediction: &str, gold: &str) -> bool {
    normalize_sql(prediction) == normalize_sql(gold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_whitespace_keyword_case_and_semicolon() {
        assert!(exact_match(
            "select COUNT( * )\n from  Sales where region='North';",
            "SELECT count(*) FROM sales WHERE region = 'North'"
        ));
        assert!(exact_match("SELECT 1;;", "select 1"));
    }

    #[test]
    fn keeps_literal_case_and_content() {
        assert!(!exact_match(
            "SELECT * FROM t WHERE a = 'north'",
            "SELECT * FROM t WHERE a = 'North'"
        ));
        assert!(!exact_match("SELECT a, b FROM t", "SELECT b, a FROM t"));
        assert!(!exact_match("", "SELECT 1"));
    }
}
