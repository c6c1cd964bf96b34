//! The `preprocess` stage: loaded rows + a tokenizer → token ids and labels (chat format with
//! the prompt masked, or raw pretraining text), with `max_length` and a truncation policy.
//! Output: the examples layout of `data::examples`, `tokenizer.json`, `meta.json`,
//! `preprocess_report.json`.

use serde_json::json;

use super::common::{copy_into, input_with, write_json};
use super::params::{ParamSet, Typed};
use super::{StageContext, StageError, StageKind, StageOutcome};
use crate::data::examples::write_stored;
use crate::data::preprocess::{preprocess, Params};
use crate::data::tokenizer::{fingerprint, load, SpecialIds};

pub struct PreprocessStage;

static PARAMS: Typed<Params> = Typed::new();

impl StageKind for PreprocessStage {
    fn kind(&self) -> &'static str {
        "preprocess"
    }
    fn about(&self) -> &'static str {
        "Loaded rows + a tokenizer → token ids and labels (the chat format with the prompt masked, or raw pretraining text), with `max_length` and a truncation policy."
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> &'static dyn ParamSet {
        &PARAMS
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let params = PARAMS.read(ctx.params)?;
        let rows_dir = input_with(ctx, crate::data::load::REPORT_FILE, "the `load` artifact")?;
        let tok_dir = input_with(ctx, "tokenizer.json", "a `tokenizer` artifact")?;
        let tok_path = tok_dir.join("tokenizer.json");
        let tk = load(&tok_path)?;
        let special = SpecialIds::of(&tk)?;
        let rows = crate::data::read_loaded(&rows_dir)?;
        ctx.metrics
            .progress(0, Some(rows.len() as u64), "tokenizing");
        let (examples, report) = preprocess(&tk, rows, &params)?;
        if ctx.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StageError::Interrupted);
        }
        if examples.is_empty() {
            return Err(StageError::Failed(format!(
                "preprocess: all {} rows were dropped as longer than max_length {}; raise max_length or use truncation: truncate_context",
                report.rows, params.max_length
            )));
        }
        write_stored(ctx.out_dir, &examples)?;
        copy_into(&tok_path, ctx.out_dir, "tokenizer.json")?;
        let meta = json!({
            "format": params.mode,
            "max_length": params.max_length,
            "truncation": params.truncation,
            "tokenizer_blake3": fingerprint(&tok_path)?,
            "special_ids": special,
        });
        write_json(&ctx.out_dir.join("meta.json"), &meta)?;
        // Through a `Value`: its keys sorted, as the artifact has always had them.
        let sorted = serde_json::to_value(&report)?;
        write_json(&ctx.out_dir.join("preprocess_report.json"), &sorted)?;
        let mut o = StageOutcome::default();
        o.metrics.insert("examples".into(), report.kept as f64);
        o.metrics.insert("dropped".into(), report.dropped as f64);
        o.metrics
            .insert("truncated".into(), report.truncated as f64);
        o.metrics.insert("mean_tokens".into(), report.mean_tokens);
        Ok(o)
    }
}
