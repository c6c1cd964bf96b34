//! The Gemma chat template (as saved with the IT tokenizers) for one user turn, the t2s
//! Text-to-SQL instruction, and SQL extraction from a model reply.
//!
//! Rendered text starts with the literal `<bos>`, so it must be tokenized with
//! `add_special_tokens = false` (one BOS, `shared/reference/gemma3.md` §4.2).

/// `<bos><start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n`
/// (content trimmed, as the template's `| trim`).
pub fn render_user_turn(content: &str) -> String {
    format!(
        "<bos><start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\n",
        content.trim()
    )
}

/// The t2s instruction for one request.
pub fn sql_instruction(prompt: &str, context: &str) -> String {
    format!(
        "Generate the SQL query for the following request based on the provided context.\n\nRequest: {prompt}\n\nDatabase Context:\n{context}"
    )
}

/// The SQL in a reply. Rules, in order:
/// 1. If the reply has a fenced code block (```` ``` ```` or ```` ```sql ````), take the first
///    block's body.
/// 2. Strip a leading `SQL:` label (any case).
/// 3. Keep the first statement: cut after the first `;` outside quotes (the `;` is kept), else
///    cut at the first blank line (trailing prose).
/// 4. Trim whitespace.
pub fn extract_sql(reply: &str) -> String {
    let mut s = reply.trim();
    if let Some(start) = s.find("```") {
        let after = &s[start + 3..];
        // Skip the info string (e.g. `sql`) up to the end of the line.
        let body = match after.find('\n') {
            Some(nl)
                if after[..nl]
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric()) =>
            {
                &after[nl + 1..]
            }
            _ => after,
        };
        s = match body.find("```") {
            Some(end) => &body[..end],
            None => body,
        };
        s = s.trim();
    }
    if s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("sql:")) {
        s = s[4..].trim_start();
    }
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '\'' | '"' | '`') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => return s[..=i].trim().to_string(),
            _ => {}
        }
    }
    match s.find("\n\n") {
        Some(i) => s[..i].trim().to_string(),
        None => s.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_bos_and_generation_prompt() {
        assert_eq!(
            render_user_turn(" Hi \n"),
            "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn extracts_sql() {
        assert_eq!(extract_sql("SELECT 1;"), "SELECT 1;");
        assert_eq!(extract_sql("SQL: SELECT a FROM t"), "SELECT a FROM t");
        assert_eq!(
            extract_sql("```sql\nSELECT a FROM t WHERE b = 'x;y';\n```\nThis query..."),
            "SELECT a FROM t WHERE b = 'x;y';"
        );
        assert_eq!(
            extract_sql("SELECT a FROM t;\nExplanation: it selects a."),
            "SELECT a FROM t;"
        );
        assert_eq!(
            extract_sql("SELECT a\nFROM t\n\nThis returns a."),
            "SELECT a\nFROM t"
        );
        assert_eq!(extract_sql("```\nSELECT 2\n```"), "SELECT 2");
        // Multi-byte text never splits a character.
        assert_eq!(extract_sql("ééé; x"), "ééé;");
        assert_eq!(extract_sql("€"), "€");
    }
}
