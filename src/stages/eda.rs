//! The `eda` stage: statistics of the loaded corpus (`eda_stats.json`) and figures as PNG and
//! SVG under `figures/`: complexity distribution, character lengths, SQL keyword frequency and
//! (with a tokenizer input) token counts of the chat-formatted examples.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{find_input, input_with};
use super::params::{ParamSet, Params, Typed};
use super::{StageContext, StageError, StageKind, StageOutcome};
use crate::data::eda::compute;
use crate::data::plots::render;

pub struct EdaStage;

/// The `eda` stage's params.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EdaParams {
    /// Analyse at most this many rows (0: all).
    pub max_rows: u64,
}

impl Params for EdaParams {}

static PARAMS: Typed<EdaParams> = Typed::new();

impl StageKind for EdaStage {
    fn kind(&self) -> &'static str {
        "eda"
    }
    fn about(&self) -> &'static str {
        "Statistics of the loaded corpus (`eda_stats.json`) and figures under `figures/`: complexity distribution, character lengths, SQL keyword frequency and, with a tokenizer among the needs, token counts of the chat-formatted examples."
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> &'static dyn ParamSet {
        &PARAMS
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let dir = input_with(ctx, crate::data::load::REPORT_FILE, "the `load` artifact")?;
        let mut rows = crate::data::read_loaded(&dir)?;
        let max = PARAMS.read(ctx.params)?.max_rows as usize;
        if max > 0 {
            rows.truncate(max);
        }
        let tk = match find_input(ctx, "tokenizer.json") {
            Some(d) => Some(crate::data::tokenizer::load(&d.join("tokenizer.json"))?),
            None => None,
        };
        let (stats, series) = compute(&rows, tk.as_ref())?;
        super::common::write_json(&ctx.out_dir.join("eda_stats.json"), &stats)?;
        render(&ctx.out_dir.join("figures"), &stats, &series)?;
        let mut o = StageOutcome::default();
        o.metrics.insert("rows".into(), stats.rows as f64);
        if let Some(t) = &stats.tokens {
            o.metrics.insert("mean_tokens".into(), t.mean);
        }
        Ok(o)
    }
}
