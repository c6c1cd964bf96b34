//! The data of a comparison report, gathered from the artifacts of the nodes a `report`
//! gathers (`evaluate` → metrics and paired tests, `train` → loss curves, `eda` → figures,
//! `model` → provenance). The `report` stage and `t2s report RUN` both build it here.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{load, ReportData, RunInfo};
use crate::stages::StageInput;

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
            bootstrap_samples: crate::eval::stats::DEFAULT_RESAMPLES as u64,
            seed: 0,
            search: None,
        }
    }
}

/// Build the report data from gathered inputs. `run` carries provenance when known.
pub fn build(
    inputs: &[StageInput],
    params: &Map<String, Value>,
    mut run: RunInfo,
) -> anyhow::Result<ReportData> {
    let params: ReportParams = serde_json::from_value(Value::Object(params.clone()))?;
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
                    if !variants.iter().any(|x: &super::Variant| x.name == v.name) {
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
    variants.sort_by_key(|v| super::model::display_order(&v.name));
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
