//! Pulling the SQL statement out of a model's generated text. Pure; shared with the worker.
//!
//! Rules, in order:
//! 0. Everything from the first end marker (`<end_of_turn>`, `<eos>`) on is dropped, in case
//!    the decoder kept special tokens.
//! 1. If the text has a fenced code block (```` ```sql ```` or ```` ``` ````), take the first
//!    block's body (an unterminated fence runs to the end).
//! 2. Otherwise, if a line starts with the seed's `SQL:` prefix (any case), take the text after
//!    the first such prefix.
//! 3. Cut trailing prose: stop at the first `;` outside string literals and quoted identifiers
//!    (the `;` is kept), else at the first blank line, else at a line that starts like prose
//!    (`Explanation`, `Note`, `This query`, `The query`, `Answer`).
//! 4. Trim whitespace.

/// Extract the SQL statement from generated text (see the module doc).
pub fn extract_sql(text: &str) -> String {
    let text = END_MARKERS
        .iter()
        .filter_map(|m| text.find(m))
        .min()
        .map_or(text, |i| &text[..i]);
    let body = fenced_block(text)
        .or_else(|| after_sql_prefix(text))
        .unwrap_or(text);
    cut_prose(body).trim().to_string()
}

const END_MARKERS: &[&str] = &["<end_of_turn>", "<eos>"];

fn fenced_block(text: &str) -> Option<&str> {
    let start = text.find("```")?;
    let after = &text[start + 3..];
    // Skip the info string (e.g. `sql`) up to the end of the fence line.
    let body_start = after.find('\n').map(|i| i + 1).unwrap_or(after.len());
    let info = after[..body_start].trim();
    let body = if info.chars().all(|c| c.is_ascii_alphanumeric()) {
        &after[body_start..]
    } else {
        // ```SELECT ...``` on one line: the "info string" is the SQL itself.
        after
    };
    Some(match body.find("```") {
        Some(end) => &body[..end],
        None => body,
    })
}

fn after_sql_prefix(text: &str) -> Option<&str> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("sql:"))
        {
            let lead = line.len() - trimmed.len();
            return Some(&text[offset + lead + 4..]);
        }
        offset += line.len();
    }
    None
}

const PROSE_STARTS: &[&str] = &["explanation", "note", "this query", "the query", "answer"];

fn cut_prose(s: &str) -> &str {
    // 1. First `;` outside quotes.
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '\'' | '"' | '`') => quote = Some(c),
            None if c == '[' => quote = Some(']'),
            None if c == ';' => return &s[..i + 1],
            None => {}
        }
    }
    // 2./3. First blank line or prose line after some SQL.
    let mut offset = 0;
    let mut seen_sql = false;
    for line in s.split_inclusive('\n') {
        let t = line.trim();
        let lower = t.to_lowercase();
        if seen_sql && (t.is_empty() || PROSE_STARTS.iter().any(|p| lower.starts_with(p))) {
            return &s[..offset];
        }
        if !t.is_empty() {
            seen_sql = true;
        }
        offset += line.len();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_output_does_not_panic() {
        // Regression: a byte slice at 4 inside a multi-byte char panicked (random-model output).
        assert_eq!(extract_sql("ÀÀÀ"), "ÀÀÀ");
        assert_eq!(extract_sql("éé SQL: x"), "éé SQL: x");
        assert_eq!(extract_sql("\u{1F600}\nSQL: SELECT 1;"), "SELECT 1;");
    }

    #[test]
    fn seed_prefix_and_trailing_prose() {
        assert_eq!(
            extract_sql("SQL: SELECT a FROM t WHERE b = 'x;y'; This returns a."),
            "SELECT a FROM t WHERE b = 'x;y';"
        );
        assert_eq!(
            extract_sql("Here you go.\nsql: SELECT 1\n\nThe query selects one."),
            "SELECT 1"
        );
    }

    #[test]
    fn code_fences() {
        assert_eq!(
            extract_sql("Sure:\n```sql\nSELECT *\nFROM t\n```\nExplanation: all rows"),
            "SELECT *\nFROM t"
        );
        assert_eq!(extract_sql("```SELECT 2```"), "SELECT 2");
        assert_eq!(extract_sql("```\nSELECT 3"), "SELECT 3");
    }

    #[test]
    fn plain_sql_and_prose_line() {
        assert_eq!(extract_sql("  SELECT 4  "), "SELECT 4");
        assert_eq!(
            extract_sql("SELECT a\nFROM t\nExplanation: picks a"),
            "SELECT a\nFROM t"
        );
        assert_eq!(extract_sql(""), "");
        assert_eq!(extract_sql("SELECT 5<end_of_turn>\nmore"), "SELECT 5");
        assert_eq!(extract_sql("SQL: ```sql\nSELECT 6\n```<eos>"), "SELECT 6");
    }
}
