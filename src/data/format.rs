//! The seed's prompt and Gemma's chat template, shared by preprocess, the worker, evaluation
//! and inference. One BOS: encode these strings with `add_special_tokens = false`.

pub const BOS: &str = "<bos>";
pub const EOS: &str = "<eos>";
pub const START_OF_TURN: &str = "<start_of_turn>";
pub const END_OF_TURN: &str = "<end_of_turn>";
pub const PAD: &str = "<pad>";
pub const UNK: &str = "<unk>";

/// The seed's user message for a request and its database context.
pub fn format_prompt(prompt: &str, context: &str) -> String {
    format!(
        "Generate the SQL query for the following request based on the provided context.\n\n\
         Request: {prompt}\n\nDatabase Context:\n{context}"
    )
}

/// A user turn in Gemma's chat template with the generation prompt: what the model sees
/// before it answers. Content is trimmed as the template's `| trim` does.
pub fn chat_prompt_from_content(content: &str) -> String {
    format!(
        "{BOS}{START_OF_TURN}user\n{}{END_OF_TURN}\n{START_OF_TURN}model\n",
        content.trim()
    )
}

/// [`chat_prompt_from_content`] of [`format_prompt`].
pub fn chat_prompt(prompt: &str, context: &str) -> String {
    chat_prompt_from_content(&format_prompt(prompt, context))
}

/// The supervised response: `SQL: {sql}<eos>`.
pub fn response(sql: &str) -> String {
    format!("SQL: {sql}{EOS}")
}

/// Raw pretraining text for a tiny base model: `<bos>{context}\n{sql}<eos>`.
pub fn raw_text(context: &str, sql: &str) -> String {
    format!("{BOS}{context}\n{sql}{EOS}")
}

/// Commented SQL, as code corpora have it: `<bos>-- {request}\n{context}\n{sql}<eos>`, each
/// line of the request behind its own `-- `. Pretraining text that pairs requests with
/// queries without the chat template, in the chat prompt's order (request, then context).
pub fn commented_text(request: &str, context: &str, sql: &str) -> String {
    let comment: Vec<String> = request.trim().lines().map(|l| format!("-- {l}")).collect();
    format!("{BOS}{}\n{context}\n{sql}{EOS}", comment.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_prompt_matches_gemma_template() {
        let p = chat_prompt("How many?", "CREATE TABLE t (a INT);");
        assert_eq!(
            p,
            "<bos><start_of_turn>user\nGenerate the SQL query for the following request based on \
             the provided context.\n\nRequest: How many?\n\nDatabase Context:\nCREATE TABLE t (a INT);\
             <end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(p.matches("<bos>").count(), 1);
        assert_eq!(response("SELECT 1;"), "SQL: SELECT 1;<eos>");
    }

    #[test]
    fn commented_text_puts_each_request_line_behind_a_comment() {
        assert_eq!(
            commented_text(
                " How many?\nOnly open ones. ",
                "CREATE TABLE t (a INT);",
                "SELECT 1;"
            ),
            "<bos>-- How many?\n-- Only open ones.\nCREATE TABLE t (a INT);\nSELECT 1;<eos>"
        );
    }
}
