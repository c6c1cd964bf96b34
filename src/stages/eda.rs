//! The `eda` stage: statistics of the loaded corpus (`eda_stats.json`) and figures as PNG and
//! SVG under `figures/`: complexity distribution, character lengths, SQL keyword frequency and
//! (with a tokenizer input) token counts of the chat-formatted examples.

use serde_json::json;

use super::common::{find_input, input_with, u64_param};
use super::{ParamSpec, ParamType, StageContext, StageError, StageKind, StageOutcome};
use crate::data::eda::compute;
use crate::data::plots::render;

pub struct EdaStage;

static PARAMS: [ParamSpec; 1] = [ParamSpec::optional(
    "max_rows",
    ParamType::Int,
    || json!(0),
    "analyse at most this many rows (0 = all)",
)];

impl StageKind for EdaStage {
    fn kind(&self) -> &'static str {
        "eda"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> &'static [ParamSpec] {
        &PARAMS
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let dir = input_with(ctx, crate::data::load::REPORT_FILE, "the `load` artifact")?;
        let mut rows = crate::data::read_loaded(&dir)?;
        let max = u64_param(ctx.params, "max_rows", 0) as usize;
        if max > 0 {
            rows.truncate(max);
        }
        let tk = match find_input(ctx, "tokenizer.json") {
            Some(d) => Some(crate::data::tokenizer::load(&d.join("tokenizer.json"))?),
            None => None,
        };
        let (stats, series) = compute(&rows, tk.as_ref())?;
        std::fs::write(
            ctx.out_dir.join("eda_stats.json"),
            serde_json::to_vec_pretty(&stats).map_err(anyhow::Error::from)?,
        )
        .map_err(anyhow::Error::from)?;
        render(&ctx.out_dir.join("figures"), &stats, &series)?;
        let mut o = StageOutcome::default();
        o.metrics.insert("rows".into(), stats.rows as f64);
        if let Some(t) = &stats.tokens {
            o.metrics.insert("mean_tokens".into(), t.mean);
        }
        Ok(o)
    }
}
