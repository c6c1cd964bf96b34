//! Preprocessing: rows → token ids and labels, in the Gemma chat format (prompt masked with
//! -100) or the raw pretraining format (all tokens are labels), with an explicit max length
//! and truncation policy. Parallel over rows with rayon.

use std::collections::BTreeMap;

use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::examples::Stored;
use super::fastenc::{Encoder, Memo};
use super::format::{chat_prompt, commented_text, raw_text, response};
use super::load::LoadedRow;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `<bos><start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n` + `SQL: {sql}<eos>`.
    Chat,
    /// `<bos>{context}\n{sql}<eos>`, every token a label.
    Raw,
    /// `<bos>-- {request}\n{context}\n{sql}<eos>`, every token a label.
    Commented,
}

/// What to do with an example longer than `max_length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// Drop the example.
    Drop,
    /// Cut tokens from the end (the response may lose its end).
    TruncateRight,
    /// Remove whole trailing statements of the context until it fits; drop if it never does.
    TruncateContext,
}

/// The `preprocess` stage's params.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// chat: the Gemma chat template, the prompt masked; raw: `<bos>{context}\n{sql}<eos>`;
    /// commented: `<bos>-- {request}\n{context}\n{sql}<eos>` (raw and commented: every token
    /// a label).
    #[serde(rename = "format")]
    pub mode: Mode,
    /// Maximum tokens per example (at least 8).
    pub max_length: usize,
    /// What to do with longer examples.
    pub truncation: Truncation,
}

/// The default sequence length: of preprocessed examples, and of training batches.
pub const DEFAULT_MAX_LENGTH: usize = 512;

impl Default for Params {
    fn default() -> Self {
        Self {
            mode: Mode::Chat,
            max_length: DEFAULT_MAX_LENGTH,
            truncation: Truncation::Drop,
        }
    }
}

impl crate::stages::params::Params for Params {
    fn problems(&self) -> Vec<(String, String)> {
        if self.max_length < 8 {
            return vec![("max_length".into(), "must be at least 8 tokens".into())];
        }
        Vec::new()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub rows: usize,
    pub kept: usize,
    pub dropped: usize,
    pub truncated: usize,
    pub tokens: usize,
    pub max_tokens: usize,
    pub mean_tokens: f64,
    pub by_split: BTreeMap<String, usize>,
}

enum Outcome {
    Kept {
        ids: Vec<u32>,
        prompt_len: u32,
        truncated: bool,
    },
    Dropped,
}

fn encode(tk: &Tokenizer, text: &str) -> anyhow::Result<Vec<u32>> {
    Ok(tk
        .encode_fast(text, false)
        .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?
        .get_ids()
        .to_vec())
}

/// Ids and prompt length of one row, before any truncation (plain `Tokenizer::encode`).
pub fn encode_row(
    tk: &Tokenizer,
    mode: Mode,
    prompt: &str,
    context: &str,
    sql: &str,
) -> anyhow::Result<(Vec<u32>, u32)> {
    encode_parts(mode, prompt, context, sql, |text| encode(tk, text))
}

/// [`encode_row`] through an [`Encoder`] (same ids, faster for byte-level BPE tokenizers).
pub fn encode_row_with(
    enc: &Encoder,
    memo: &mut Memo,
    mode: Mode,
    prompt: &str,
    context: &str,
    sql: &str,
) -> anyhow::Result<(Vec<u32>, u32)> {
    encode_parts(mode, prompt, context, sql, |text| enc.encode(text, memo))
}

/// The texts `mode` renders for a row, each encoded by `encode`: the chat prompt then the
/// response (the prompt's length is the masked part), or one unmasked text.
fn encode_parts(
    mode: Mode,
    prompt: &str,
    context: &str,
    sql: &str,
    mut encode: impl FnMut(&str) -> anyhow::Result<Vec<u32>>,
) -> anyhow::Result<(Vec<u32>, u32)> {
    match mode {
        Mode::Chat => {
            let mut ids = encode(&chat_prompt(prompt, context))?;
            let plen = ids.len() as u32;
            ids.extend(encode(&response(sql))?);
            Ok((ids, plen))
        }
        Mode::Raw => Ok((encode(&raw_text(context, sql))?, 0)),
        Mode::Commented => Ok((encode(&commented_text(prompt, context, sql))?, 0)),
    }
}

fn process(enc: &Encoder, memo: &mut Memo, r: &LoadedRow, p: &Params) -> anyhow::Result<Outcome> {
    let row = &r.row;
    let (mut ids, plen) = encode_row_with(
        enc,
        memo,
        p.mode,
        &row.sql_prompt,
        &row.sql_context,
        &row.sql,
    )?;
    if ids.len() <= p.max_length {
        return Ok(Outcome::Kept {
            ids,
            prompt_len: plen,
            truncated: false,
        });
    }
    match p.truncation {
        Truncation::Drop => Ok(Outcome::Dropped),
        Truncation::TruncateRight => {
            ids.truncate(p.max_length);
            let plen = plen.min(p.max_length as u32);
            Ok(Outcome::Kept {
                ids,
                prompt_len: plen,
                truncated: true,
            })
        }
        Truncation::TruncateContext => {
            let stmts: Vec<&str> = row.sql_context.split_inclusive(';').collect();
            for keep in (0..stmts.len()).rev() {
                let ctx = stmts[..keep].concat();
                let (ids, plen) =
                    encode_row_with(enc, memo, p.mode, &row.sql_prompt, ctx.trim_end(), &row.sql)?;
                if ids.len() <= p.max_length {
                    return Ok(Outcome::Kept {
                        ids,
                        prompt_len: plen,
                        truncated: true,
                    });
                }
            }
            Ok(Outcome::Dropped)
        }
    }
}

/// Tokenize rows in parallel; returns the kept examples (input order) and counts.
pub fn preprocess(
    tk: &Tokenizer,
    rows: Vec<LoadedRow>,
    p: &Params,
) -> anyhow::Result<(Vec<Stored>, Report)> {
    let outcomes: Vec<anyhow::Result<Outcome>> = {
        let enc = Encoder::new(tk);
        rows.par_iter()
            .map_init(Memo::new, |memo, r| process(&enc, memo, r, p))
            .collect()
    };
    let mut rep = Report {
        rows: rows.len(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(rows.len());
    for (r, o) in rows.into_iter().zip(outcomes) {
        match o.map_err(|e| anyhow::anyhow!("row id {}: {e}", r.row.id))? {
            Outcome::Dropped => rep.dropped += 1,
            Outcome::Kept {
                ids,
                prompt_len,
                truncated,
            } => {
                rep.truncated += truncated as usize;
                rep.tokens += ids.len();
                rep.max_tokens = rep.max_tokens.max(ids.len());
                *rep.by_split.entry(r.split.clone()).or_default() += 1;
                out.push(Stored {
                    row: r,
                    ids,
                    prompt_len,
                });
            }
        }
    }
    rep.kept = out.len();
    rep.mean_tokens = if rep.kept > 0 {
        rep.tokens as f64 / rep.kept as f64
    } else {
        0.0
    };
    Ok((out, rep))
}
