//! The `train` stage: LoRA or full fine-tuning in the libtorch worker (job `train`).
//!
//! Inputs (found among the needs by what they hold): the split artifact (`train/`,
//! `validation/`), optionally a model artifact (`config.json` + safetensors, e.g. an upstream
//! `train` with `method: full`) and a tokenizer (`tokenizer.json`, for `init: random`).
//! Output: a PEFT adapter (`adapter_config.json` + `adapter_model.safetensors`) or full HF
//! weights (`config.json`, `model.safetensors`, `tokenizer.json`), plus `trainer_state.json`.
//! Checkpoints go to the partial area, so a rerun of the same key resumes.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::model_source::{hub_key_params, is_model_dir, model_facts, resolve_model};
use super::params::{ParamSet, Typed};
use super::{StageContext, StageError, StageKind, StageOutcome};
use crate::train_plan::{Init, TrainParams};
use crate::worker::{Job, JobSpec, WorkerError, WorkerEvent};

pub struct TrainStage;

static PARAMS: Typed<TrainParams> = Typed::new();

/// The param that stops a training part way (a halving rung).
pub const STOP_PARAM: &str = "stop_at_step";

/// The final metrics of a training (`train_result.json`'s `metrics`, written by the worker).
pub const METRICS: [&str; 5] = [
    "train_loss",
    "eval_loss",
    "best_eval_loss",
    "global_step",
    "train_tokens",
];

impl StageKind for TrainStage {
    fn kind(&self) -> &'static str {
        "train"
    }
    fn about(&self) -> &'static str {
        "LoRA or full fine-tuning in the libtorch worker → a PEFT adapter (or full HF weights) and `trainer_state.json`; checkpoints in the partial area, so a rerun of the same key resumes."
    }
    fn version(&self) -> u32 {
        // 2: `train_result.json` no longer holds `resumed_from` (a version-1 object has it, so
        // the same key would give two digests on two machines).
        2
    }
    fn params(&self) -> &'static dyn ParamSet {
        &PARAMS
    }
    fn uses_gpu(&self, p: &Map<String, Value>) -> bool {
        super::common::uses_gpu_device(p)
    }
    fn key_facts(
        &self,
        p: &Map<String, Value>,
        pipeline_dir: &Path,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let mut f = BTreeMap::new();
        f.extend([super::common::device_kind_fact(p)]);
        f.extend(model_facts(p, pipeline_dir)?);
        Ok(f)
    }
    fn key_params(&self, p: &Map<String, Value>) -> Map<String, Value> {
        let mut k = hub_key_params(p, "model");
        // Training to the end is what every key before `stop_at_step` existed meant.
        if k.get(STOP_PARAM).and_then(Value::as_u64) == Some(0) {
            k.remove(STOP_PARAM);
        }
        k
    }
    fn metrics(&self) -> Option<Vec<String>> {
        Some(METRICS.map(String::from).to_vec())
    }
    fn resume_params(&self, p: &Map<String, Value>) -> Option<Map<String, Value>> {
        // A training stopped at a step resumes where the same training run to the end does:
        // the schedule is that of `max_steps`, so its checkpoints are that run's.
        p.get(STOP_PARAM)
            .and_then(Value::as_u64)
            .filter(|&s| s > 0)?;
        let mut full = p.clone();
        full.insert(STOP_PARAM.into(), Value::from(0));
        Some(full)
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let p = ctx.params;
        let t = PARAMS.read(p)?;
        let fail = |m: String| StageError::Failed(format!("stage `{}`: {m}", ctx.stage_name));
        let data = ctx
            .inputs
            .iter()
            .find(|i| i.dir.join("train").join("index.bin").is_file())
            .ok_or_else(|| fail("needs a split artifact (with train/) among its needs".into()))?;
        let mut spec = JobSpec::of(&Job::Train(Box::new(t.clone())));
        spec.device = t.device.clone();
        spec.out_dir = Some(ctx.out_dir.to_path_buf());
        if !t.resume && ctx.partial_dir.exists() {
            std::fs::remove_dir_all(ctx.partial_dir)
                .map_err(|e| fail(format!("cannot clear {}: {e}", ctx.partial_dir.display())))?;
        }
        spec.partial_dir = Some(ctx.partial_dir.to_path_buf());
        spec.inputs.insert("data".into(), data.dir.clone());
        let shown = super::common::show_download(ctx);
        let model = match resolve_model(p, ctx.pipeline_dir, &shown)? {
            Some(d) => Some(d),
            None => ctx
                .inputs
                .iter()
                .map(|i| i.dir.clone())
                .find(|d| is_model_dir(d)),
        };
        if let Some(m) = model {
            spec.inputs.insert("model".into(), m);
        } else if t.init == Init::Pretrained {
            return Err(fail("no model to train: set `model` (an HF model directory or hf://owner/name) or add a model artifact (e.g. a `train` with method: full) to needs".into()));
        }
        let tok = ctx
            .inputs
            .iter()
            .filter(|i| i.dir.join("tokenizer.json").is_file())
            .min_by_key(|i| i.kind != "tokenizer")
            .map(|i| i.dir.clone());
        if let Some(d) = tok {
            spec.inputs.insert("tokenizer".into(), d);
        }
        let on_event = |ev: &WorkerEvent| match ev {
            WorkerEvent::Metric { name, step, value } => ctx.metrics.metric(name, *step, *value),
            WorkerEvent::Progress {
                done,
                total,
                message,
            } => ctx.metrics.progress(*done, *total, message),
            WorkerEvent::Log { level, message } => {
                super::common::log_worker_message(ctx.node_id, level, message)
            }
            _ => {}
        };
        let result = ctx
            .worker
            .run(&spec, on_event, ctx.cancel)
            .map_err(|e| match e {
                WorkerError::Interrupted { .. } => StageError::Interrupted,
                WorkerError::JobFailed { message, .. } => fail(message),
                other => fail(other.to_string()),
            })?;
        let (result, resumed_from) = split_provenance(result);
        if let Some(step) = resumed_from {
            // How this attempt got there goes to the tracking DB (this run's record of the
            // node), never into the artifact: see `split_provenance`.
            ctx.metrics.metric(RESUMED_FROM_STEP, None, step as f64);
        }
        let result_file = ctx.out_dir.join(crate::report::load::TRAIN_RESULT);
        super::common::write_json(&result_file, &result)?;
        let metrics = result
            .get("metrics")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(StageOutcome {
            resumed: resumed_from.is_some(),
            metrics,
        })
    }
}

/// The tracking-DB metric naming the step a resumed training continued from.
pub const RESUMED_FROM_STEP: &str = "resumed_from_step";

/// Split the worker's result into what the artifact holds and the step the job resumed from.
/// Whether a training was resumed says how this attempt got there, not what it produced (the
/// weights are the same either way): kept in the artifact it would change the artifact's
/// digest, so one resume would change every downstream key, and caches and remotes diverge.
fn split_provenance(mut result: Value) -> (Value, Option<u64>) {
    let resumed = result
        .as_object_mut()
        .and_then(|o| o.remove("resumed_from"))
        .and_then(|v| v.as_u64());
    (result, resumed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> Map<String, Value> {
        match serde_json::to_value(TrainParams::default()).unwrap() {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_resume_leaves_the_artifacts_result_as_a_straight_run_writes_it() {
        let straight =
            json!({"metrics": {"train_loss": 1.5}, "resumed_from": null, "method": "lora"});
        let resumed = json!({"metrics": {"train_loss": 1.5}, "resumed_from": 12, "method": "lora"});
        let (a, none) = split_provenance(straight);
        let (b, step) = split_provenance(resumed);
        assert_eq!((none, step), (None, Some(12)));
        assert_eq!(
            serde_json::to_vec_pretty(&a).unwrap(),
            serde_json::to_vec_pretty(&b).unwrap()
        );
        assert!(b.get("resumed_from").is_none());
    }

    #[test]
    fn declared_defaults_are_the_typed_defaults() {
        for spec in TrainStage.params().specs() {
            assert_eq!(
                spec.default.as_ref(),
                defaults().get(&spec.name),
                "{}",
                spec.name
            );
        }
        assert_eq!(TrainStage.params().resolve(&defaults()), Ok(defaults()));
    }

    #[test]
    fn check_params_names_bad_values_and_uses_gpu_follows_device() {
        let mut p = defaults();
        p.insert("lr".into(), json!(-1.0));
        p.insert("betas".into(), json!([0.9]));
        let names: Vec<String> = TrainStage
            .params()
            .resolve(&p)
            .unwrap_err()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["lr", "betas"]);
        p.insert("device".into(), json!("cpu"));
        assert!(!TrainStage.uses_gpu(&p));
        p.insert("device".into(), json!("cuda:1"));
        assert!(TrainStage.uses_gpu(&p));
    }
}
