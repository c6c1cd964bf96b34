//! `report`: the comparison report of a sweep, from the artifacts of the nodes it gathers
//! (`evaluate` → metrics and paired tests, `train` → loss curves, `eda` → figures).
//! Writes `report.md`, `report.html` (self-contained) and PNG figures. After a run, `t2s run`
//! and `t2s report RUN` re-render it with the run's provenance from the tracking DB.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::params::{ParamSet, Params, Typed};
use super::{StageContext, StageError, StageKind, StageOutcome};
use crate::report::gather::{build, ReportParams};
use crate::report::{self, RunInfo};

pub struct ReportStage;

impl Params for ReportParams {}

static PARAMS: Typed<ReportParams> = Typed::new();

/// The report param `t2s run` fills with a search's outcome.
pub const SEARCH_PARAM: &str = "search";

impl StageKind for ReportStage {
    fn kind(&self) -> &'static str {
        "report"
    }
    fn about(&self) -> &'static str {
        "The comparison report of the gathered evaluate, train and eda artifacts: `report.md`, a self-contained `report.html`, figures."
    }
    /// 2: the Failures section (outcomes per variant, examples). 3: no raw HTML in the HTML
    /// report; class names escaped in the breakdown tables. 4: EDA figures copied under `eda/`
    /// and linked relatively (no absolute path of the computing machine in the artifact).
    /// 5: test-suite accuracy in the metrics table, paired tests and verdict; false positives
    /// of execution accuracy the suite caught, with examples, in the Failures section.
    fn version(&self) -> u32 {
        5
    }
    fn params(&self) -> &'static dyn ParamSet {
        &PARAMS
    }
    fn key_params(&self, params: &Map<String, Value>) -> Map<String, Value> {
        let mut k = params.clone();
        // No search: the key every report had before searches existed.
        if k.get(SEARCH_PARAM).is_some_and(Value::is_null) {
            k.remove(SEARCH_PARAM);
        }
        k
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let run = RunInfo {
            id: 0,
            pipeline: ctx.stage_name.to_string(),
            started: String::new(),
            ended: None,
            status: "artifact".into(),
            host: String::new(),
            t2s_version: env!("CARGO_PKG_VERSION").into(),
            facts: BTreeMap::new(),
        };
        let mut data = build(ctx.inputs, ctx.params, run)?;
        report::write(&data, ctx.out_dir)?;
        // report.json names the figures as the Markdown links them, relative to this folder.
        data.eda_figures = report::eda_links(&data.eda_figures)
            .into_iter()
            .map(Into::into)
            .collect();
        super::common::write_json(&ctx.out_dir.join("report.json"), &data)?;
        let mut outcome = StageOutcome::default();
        outcome
            .metrics
            .insert("variants".into(), data.variants.len() as f64);
        Ok(outcome)
    }
}
