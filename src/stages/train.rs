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

use serde_json::{json, Map, Value};

use super::model_source::{hub_key_params, is_model_dir, model_facts, resolve_model};
use super::{ParamSpec, ParamType, StageContext, StageError, StageKind, StageOutcome};
use crate::train_plan::{Init, SchedulerKind, TrainParams};
use crate::worker::{JobSpec, WorkerError, WorkerEvent};

pub struct TrainStage;

use ParamType::{Any, Bool, Count, Enum, Float, Int, Str, StrList};

static PARAMS: [ParamSpec; 38] = [
    ParamSpec::optional("method", Enum(&["lora", "full"]), || json!("lora"), "lora: train adapters only; full: all weights"),
    ParamSpec::optional("init", Enum(&["pretrained", "random"]), || json!("pretrained"), "random: a fresh tiny model of shape model_config (method full)"),
    ParamSpec::optional("model", Str, || json!(""), "HF model directory (relative to the pipeline) or hf://owner/name; empty: an upstream model artifact"),
    ParamSpec::optional("model_config", Any, || json!({}), "Gemma3TextConfig fields for init: random (vocab_size defaults to the tokenizer's)"),
    ParamSpec::optional("lora_r", Count, || json!(8), "LoRA rank"),
    ParamSpec::optional("lora_alpha", Float, || json!(16.0), "LoRA alpha (scale alpha/r)"),
    ParamSpec::optional("lora_dropout", Float, || json!(0.05), "dropout on the LoRA input"),
    ParamSpec::optional("target_modules", StrList, || json!(["q_proj", "k_proj", "v_proj", "o_proj"]), "modules that get adapters (PEFT matching)"),
    ParamSpec::optional("use_rslora", Bool, || json!(false), "scale alpha/sqrt(r) (rsLoRA)"),
    ParamSpec::optional("lr", Float, || json!(2e-4), "peak learning rate"),
    ParamSpec::optional("betas", Any, || json!([0.9, 0.999]), "AdamW betas [b1, b2]"),
    ParamSpec::optional("eps", Float, || json!(1e-8), "AdamW epsilon"),
    ParamSpec::optional("weight_decay", Float, || json!(0.0), "AdamW decoupled weight decay (not on norms/biases)"),
    ParamSpec::optional("max_grad_norm", Float, || json!(1.0), "clip the global gradient norm (0: off)"),
    ParamSpec::optional("warmup_ratio", Float, || json!(0.0), "warmup steps = ceil(ratio x total steps)"),
    ParamSpec::optional("warmup_steps", Count, || json!(0), "warmup steps (wins over warmup_ratio when > 0)"),
    ParamSpec::optional("scheduler", Enum(SchedulerKind::NAMES), || json!("linear"), "decay after warmup"),
    ParamSpec::optional("grad_accum", Count, || json!(1), "micro-batches per optimizer step"),
    ParamSpec::optional("batch_size", Count, || json!(8), "examples per micro-batch"),
    ParamSpec::optional("token_budget", Count, || json!(0), "> 0: micro-batches of at most this many padded tokens instead"),
    ParamSpec::optional("max_length", Count, || json!(512), "longer examples are left out (counted)"),
    ParamSpec::optional("pad_to_multiple_of", Count, || json!(0), "pad batch lengths to a multiple of N, within max_length and token_budget (0: 64 on CUDA, 1 on CPU)"),
    ParamSpec::optional("group_by_length", Bool, || json!(true), "bucket examples of similar length (less padding)"),
    ParamSpec::optional("shuffle", Bool, || json!(true), "visit batches in a seeded order each epoch"),
    ParamSpec::optional("epochs", Float, || json!(1.0), "passes over the train split"),
    ParamSpec::optional("max_steps", Int, || json!(-1), "> 0: optimizer steps (wins over epochs)"),
    ParamSpec::optional("eval_steps", Count, || json!(0), "eval loss on the validation split every N steps (0: never)"),
    ParamSpec::optional("save_steps", Count, || json!(50), "checkpoint every N steps for resume (0: never)"),
    ParamSpec::optional("logging_steps", Count, || json!(10), "trainer_state.json log every N steps"),
    ParamSpec::optional("early_stopping_patience", Count, || json!(0), "stop after N evaluations without improvement (0: off)"),
    ParamSpec::optional("early_stopping_threshold", Float, || json!(0.0), "minimum eval-loss improvement that counts"),
    ParamSpec::optional("load_best_model_at_end", Bool, || json!(false), "output the weights of the best evaluation"),
    ParamSpec::optional("seed", Count, || json!(42), "seed of init, data order and dropout"),
    ParamSpec::optional("device", Str, || json!("auto"), "auto | cpu | cuda | cuda:N"),
    ParamSpec::optional("dtype", Enum(&["auto", "float32", "bfloat16"]), || json!("auto"), "auto: bf16 on CUDA, fp32 on CPU"),
    ParamSpec::optional("revision", Str, || json!("main"), "hub revision for an hf:// model"),
    ParamSpec::optional("offline", Bool, || json!(false), "resolve an hf:// model from the local HF cache only"),
    ParamSpec::optional("resume", Bool, || json!(true), "continue from the newest checkpoint of this key"),
];

/// Params the worker does not take (the stage handles them).
const STAGE_ONLY: [&str; 3] = ["revision", "offline", "resume"];

fn worker_params(p: &Map<String, Value>) -> Map<String, Value> {
    p.iter()
        .filter(|(k, _)| !STAGE_ONLY.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn typed(p: &Map<String, Value>) -> Result<TrainParams, String> {
    TrainParams::from_json(&Value::Object(worker_params(p)))
}

impl StageKind for TrainStage {
    fn kind(&self) -> &'static str {
        "train"
    }
    fn version(&self) -> u32 {
        // 2: `train_result.json` no longer holds `resumed_from` (a version-1 object has it, so
        // the same key would give two digests on two machines).
        2
    }
    fn params(&self) -> &'static [ParamSpec] {
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
        hub_key_params(p, "model")
    }
    fn check_params(&self, p: &Map<String, Value>) -> Vec<(String, String)> {
        match typed(p) {
            Ok(t) => t.problems(),
            Err(e) => vec![("params".into(), e)],
        }
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let p = ctx.params;
        let t = typed(p).map_err(StageError::Failed)?;
        if let Some((name, msg)) = t.problems().into_iter().next() {
            return Err(StageError::Failed(format!("param `{name}` {msg}")));
        }
        let fail = |m: String| StageError::Failed(format!("stage `{}`: {m}", ctx.stage_name));
        let data = ctx
            .inputs
            .iter()
            .find(|i| i.dir.join("train").join("index.bin").is_file())
            .ok_or_else(|| fail("needs a split artifact (with train/) among its needs".into()))?;
        let mut spec = JobSpec::new("train", Value::Object(worker_params(p)));
        spec.device = t.device.clone();
        spec.out_dir = Some(ctx.out_dir.to_path_buf());
        let resume = p.get("resume").and_then(Value::as_bool).unwrap_or(true);
        if !resume && ctx.partial_dir.exists() {
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
        let result_json = serde_json::to_vec_pretty(&result).map_err(anyhow::Error::from)?;
        std::fs::write(
            ctx.out_dir.join(crate::report::load::TRAIN_RESULT),
            result_json,
        )
        .map_err(anyhow::Error::from)?;
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

    fn defaults() -> Map<String, Value> {
        PARAMS
            .iter()
            .map(|s| (s.name.to_string(), (s.default.expect("all optional"))()))
            .collect()
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
    fn declared_defaults_equal_the_typed_defaults() {
        assert_eq!(typed(&defaults()).unwrap(), TrainParams::default());
        assert!(TrainStage.check_params(&defaults()).is_empty());
    }

    #[test]
    fn check_params_names_bad_values_and_uses_gpu_follows_device() {
        let mut p = defaults();
        p.insert("lr".into(), json!(-1.0));
        p.insert("betas".into(), json!([0.9]));
        let names: Vec<String> = TrainStage
            .check_params(&p)
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
