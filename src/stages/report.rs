//! `report`: the comparison report of a sweep, from the artifacts of the nodes it gathers
//! (`evaluate` → metrics and paired tests, `train` → loss curves, `eda` → figures).
//! Writes `report.md`, `report.html` (self-contained) and PNG figures. After a run, `t2s run`
//! and `t2s report RUN` re-render it with the run's provenance from the tracking DB.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::params::{ParamSet, Params, Typed};
use super::{StageContext, StageError, StageInput, StageKind, StageOutcome};
use crate::report::{self, load, ReportData, RunInfo};

pub struct ReportStage;

/// The `report` stage's params.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ReportParams {
    /// Report title (empty: "<pipeline>: comparison report").
    pub title: String,
    /// Notes printed in the report.
    pub notes: Vec<String>,
    /// Resamples of the paired bootstrap.
    pub bootstrap_samples: u64,
    /// Seed of the paired bootstrap.
    pub seed: u64,
    /// Set by `t2s run` when the pipeline searches: every trial's params and objective, the
    /// best trial, the compute spent (not written by hand).
    pub search: Option<Value>,
}

impl Default for ReportParams {
    fn default() -> Self {
        Self {
            title: String::new(),
            notes: Vec::new(),
            bootstrap_samples: 1000,
            seed: 0,
            search: None,
        }
    }
}

impl Params for ReportParams {}

static PARAMS: Typed<ReportParams> = Typed::new();

/// The report param `t2s run` fills with a search's outcome.
pub const SEARCH_PARAM: &str = "search";

/// Build the report data from gathered inputs. `run` carries provenance when known.
pub fn build(
    inputs: &[StageInput],
    params: &Map<String, Value>,
    mut run: RunInfo,
) -> anyhow::Result<ReportData> {
    let params = PARAMS.read(params)?;
    let mut facts: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut variants = Vec::new();
    let mut execs = Vec::new();
    let mut suite_execs = Vec::new();
    let mut loss_curves = Vec::new();
    let mut eda_figures = Vec::new();
    for input in inputs {
        match input.kind.as_str() {
            "evaluate" => {
                let e = load::evaluate_dir(&input.dir, &input.node)?;
                facts
                    .entry("generation device")
                    .or_default()
                    .extend(e.devices);
                for v in e.variants {
                    if !variants.iter().any(|x: &report::Variant| x.name == v.name) {
                        variants.push(v);
                    }
                }
                for (all, new) in [(&mut execs, e.execs), (&mut suite_execs, e.suite_execs)] {
                    for s in new {
                        if !all
                            .iter()
                            .any(|x: &crate::eval::compare::SystemExec| x.name == s.name)
                        {
                            all.push(s);
                        }
                    }
                }
            }
            "train" => {
                if let Some(c) = load::train_dir(&input.dir, &input.node)? {
                    loss_curves.push(c);
                }
                facts
                    .entry("training device")
                    .or_default()
                    .extend(load::train_device(&input.dir));
            }
            "eda" => eda_figures.extend(load::eda_figures(&input.dir)),
            "model" => facts
                .entry("model")
                .or_default()
                .extend(load::model_provenance(&input.dir)),
            _ => {}
        }
    }
    for (fact, mut found) in facts {
        found.sort();
        found.dedup();
        if !found.is_empty() {
            run.facts.insert(fact.to_string(), found.join(", "));
        }
    }
    variants.sort_by_key(|v| crate::report::model::display_order(&v.name));
    let paired = load::paired(
        execs,
        suite_execs,
        params.bootstrap_samples as usize,
        params.seed,
    );
    let search = params
        .search
        .map(serde_json::from_value::<crate::search::Outcome>)
        .transpose()?;
    let mut notes = params.notes;
    notes.extend(alpha_confound_note(inputs));
    let title = match params.title.as_str() {
        "" => format!("{}: comparison report", run.pipeline),
        t => t.to_string(),
    };
    Ok(ReportData {
        title,
        run,
        compare: None,
        variants,
        paired,
        loss_curves,
        nodes: Vec::new(),
        eda_figures,
        notes,
        search,
    })
}

/// A fixed `lora_alpha` across different ranks changes the LoRA scale (alpha/r) with r, which
/// confounds a rank comparison: say so when the gathered adapters show it.
fn alpha_confound_note(inputs: &[StageInput]) -> Option<String> {
    let mut by_alpha: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for i in inputs.iter().filter(|i| i.kind == "train") {
        let Ok(text) = std::fs::read_to_string(i.dir.join("adapter_config.json")) else {
            continue;
        };
        let Ok(cfg) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let (Some(r), Some(alpha)) = (cfg.get("r").and_then(Value::as_i64), cfg.get("lora_alpha"))
        else {
            continue;
        };
        if cfg.get("use_rslora").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        by_alpha.entry(alpha.to_string()).or_default().push(r);
    }
    by_alpha.into_iter().find(|(_, rs)| rs.len() > 1).map(|(alpha, mut rs)| {
        rs.sort();
        format!(
            "The adapters with r ∈ {rs:?} share lora_alpha = {alpha}, so their LoRA scale alpha/r differs ({}): rank and effective learning rate are confounded. Compare with alpha = 2r (pipelines/rank_sweep_scaled.yaml) or use_rslora.",
            rs.iter().map(|r| format!("{:.2}", alpha.parse::<f64>().unwrap_or(0.0) / *r as f64)).collect::<Vec<_>>().join(", ")
        )
    })
}

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
        let json = serde_json::to_vec_pretty(&data).map_err(anyhow::Error::from)?;
        std::fs::write(ctx.out_dir.join("report.json"), json).map_err(anyhow::Error::from)?;
        let mut outcome = StageOutcome::default();
        outcome
            .metrics
            .insert("variants".into(), data.variants.len() as f64);
        Ok(outcome)
    }
}
