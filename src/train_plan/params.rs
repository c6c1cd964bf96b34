//! The `train` stage's parameters as one typed struct, shared by the stage (validation, job
//! spec) and the worker (which deserializes the resolved params of its job spec).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::batching::BatchBy;
use super::schedule::SchedulerKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Train adapters only.
    Lora,
    /// Train all weights.
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// Start from the weights of `model` (or the upstream model artifact).
    Pretrained,
    /// Start from random weights of the shape in `model_config` (tiny offline models).
    Random,
}

/// The dtype of the weights a worker job computes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// bf16 on CUDA, fp32 on the CPU.
    Auto,
    /// fp32 weights.
    #[serde(alias = "fp32")]
    Float32,
    /// bf16 weights (on the CPU too; training keeps fp32 master weights).
    #[serde(alias = "bf16")]
    Bfloat16,
}

impl Dtype {
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::Auto => "auto",
            Dtype::Float32 => "float32",
            Dtype::Bfloat16 => "bfloat16",
        }
    }
}

/// The `train` stage's params, shared by the stage (validation, job spec) and the worker
/// (which deserializes the resolved params of its job spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TrainParams {
    /// lora: train adapters only; full: all weights.
    pub method: Method,
    /// random: a fresh tiny model of shape `model_config` (method full).
    pub init: Init,
    /// HF model directory (relative to the pipeline) or hf://owner/name; empty: an upstream
    /// model artifact.
    pub model: String,
    /// Hub revision for an hf:// model.
    pub revision: String,
    /// Resolve an hf:// model from the local HF cache only.
    pub offline: bool,
    /// Gemma3TextConfig fields for `init: random` (`vocab_size` defaults to the tokenizer's).
    pub model_config: Map<String, Value>,
    /// LoRA rank.
    pub lora_r: u64,
    /// LoRA alpha (scale alpha/r).
    pub lora_alpha: f64,
    /// Dropout on the LoRA input.
    pub lora_dropout: f64,
    /// Modules that get adapters (PEFT matching).
    pub target_modules: Vec<String>,
    /// Scale alpha/sqrt(r) (rsLoRA).
    pub use_rslora: bool,
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW betas [b1, b2].
    pub betas: Vec<f64>,
    /// AdamW epsilon.
    pub eps: f64,
    /// AdamW decoupled weight decay (not on norms/biases).
    pub weight_decay: f64,
    /// Clip the global gradient norm (0: off).
    pub max_grad_norm: f64,
    /// Warmup steps = ceil(ratio x total steps).
    pub warmup_ratio: f64,
    /// Warmup steps (wins over warmup_ratio when > 0).
    pub warmup_steps: u64,
    /// Decay after warmup.
    pub scheduler: SchedulerKind,
    /// Micro-batches per optimizer step.
    pub grad_accum: u64,
    /// Examples per micro-batch.
    pub batch_size: u64,
    /// > 0: micro-batches of at most this many padded tokens instead of `batch_size` examples.
    pub token_budget: u64,
    /// Longer examples are left out (counted).
    pub max_length: u64,
    /// Pad batch lengths to a multiple of N, within max_length and token_budget (0: 64 on
    /// CUDA, 1 on the CPU; see [`TrainParams::pad_multiple`]).
    pub pad_to_multiple_of: u64,
    /// Bucket examples of similar length (less padding).
    pub group_by_length: bool,
    /// Visit batches in a seeded order each epoch.
    pub shuffle: bool,
    /// Passes over the train split.
    pub epochs: f64,
    /// > 0: optimizer steps (wins over epochs).
    pub max_steps: i64,
    /// When positive, stop at this optimizer step of the `max_steps` schedule, keeping the
    /// checkpoint (a halving rung of a search; set by t2s): the output is the model at that
    /// step, and a later run of the same training resumes from it. 0: train to the end.
    pub stop_at_step: u64,
    /// Eval loss on the validation split every N steps (0: never).
    pub eval_steps: u64,
    /// Checkpoint every N steps for resume (0: never).
    pub save_steps: u64,
    /// trainer_state.json log every N steps.
    pub logging_steps: u64,
    /// Stop after N evaluations without improvement (0: off).
    pub early_stopping_patience: u64,
    /// Minimum eval-loss improvement that counts.
    pub early_stopping_threshold: f64,
    /// Output the weights of the best evaluation.
    pub load_best_model_at_end: bool,
    /// Seed of init, data order and dropout.
    pub seed: u64,
    /// auto | cpu | cuda | cuda:N.
    pub device: String,
    /// auto: bf16 on CUDA, fp32 on the CPU.
    pub dtype: Dtype,
    /// Continue from the newest checkpoint of this key.
    pub resume: bool,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            method: Method::Lora,
            init: Init::Pretrained,
            model: String::new(),
            revision: "main".into(),
            offline: false,
            model_config: Map::new(),
            lora_r: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.05,
            target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"]
                .map(String::from)
                .to_vec(),
            use_rslora: false,
            lr: 2e-4,
            betas: vec![0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            warmup_ratio: 0.0,
            warmup_steps: 0,
            scheduler: SchedulerKind::Linear,
            grad_accum: 1,
            batch_size: 8,
            token_budget: 0,
            max_length: crate::data::preprocess::DEFAULT_MAX_LENGTH as u64,
            pad_to_multiple_of: 0,
            group_by_length: true,
            shuffle: true,
            epochs: 1.0,
            max_steps: -1,
            stop_at_step: 0,
            eval_steps: 0,
            save_steps: 50,
            logging_steps: 10,
            early_stopping_patience: 0,
            early_stopping_threshold: 0.0,
            load_best_model_at_end: false,
            seed: 42,
            device: "auto".into(),
            dtype: Dtype::Auto,
            resume: true,
        }
    }
}

impl crate::stages::params::Params for TrainParams {
    fn problems(&self) -> Vec<(String, String)> {
        TrainParams::problems(self)
    }
}

impl TrainParams {
    pub fn from_json(v: &Value) -> Result<Self, String> {
        serde_json::from_value(v.clone()).map_err(|e| format!("invalid train params: {e}"))
    }

    pub fn batch_by(&self) -> BatchBy {
        if self.token_budget > 0 {
            BatchBy::Tokens(self.token_budget as usize)
        } else {
            BatchBy::Examples(self.batch_size as usize)
        }
    }

    /// The multiple batch lengths are padded to. Automatic: 64 on CUDA, where every new batch
    /// shape costs planning on the host (cuDNN builds an attention graph per shape), so a
    /// 512-token limit gives at most 8 lengths; 1 on the CPU, where padding is only extra work.
    /// Real tokens never attend to right padding and padding carries no loss, so the losses
    /// and gradients are the same either way.
    pub fn pad_multiple(&self, cuda: bool) -> usize {
        match self.pad_to_multiple_of {
            0 if cuda => 64,
            0 => 1,
            n => n as usize,
        }
    }

    /// The longest a padded batch of `rows` examples may become: `max_length`, and with a
    /// token budget no longer than the budget allows (rounding up must not break it).
    pub fn pad_limit(&self, rows: usize) -> usize {
        let limit = self.max_length as usize;
        match self.token_budget as usize {
            0 => limit,
            budget => limit.min(budget / rows.max(1)),
        }
    }

    /// LoRA scale: alpha / r, or alpha / sqrt(r) with rsLoRA (PEFT).
    pub fn lora_scaling(&self) -> f64 {
        let r = self.lora_r as f64;
        if self.use_rslora {
            self.lora_alpha / r.sqrt()
        } else {
            self.lora_alpha / r
        }
    }

    /// Every problem with the values, as `(param, message)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        let mut bad = |name: &str, msg: String| p.push((name.to_string(), msg));
        if self.method == Method::Lora {
            if self.lora_r == 0 {
                bad("lora_r", "must be at least 1".into());
            }
            if self.target_modules.is_empty() {
                bad(
                    "target_modules",
                    "name at least one module, e.g. [q_proj, v_proj]".into(),
                );
            }
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            bad(
                "lora_dropout",
                format!("must be in [0, 1), got {}", self.lora_dropout),
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bad("lr", format!("must be a positive number, got {}", self.lr));
        }
        if self.betas.len() != 2 || self.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            bad(
                "betas",
                format!(
                    "must be two numbers in [0, 1), e.g. [0.9, 0.999]; got {:?}",
                    self.betas
                ),
            );
        }
        if self.eps.is_nan() || self.eps <= 0.0 {
            bad("eps", "must be positive, e.g. 1e-8".into());
        }
        if self.weight_decay < 0.0 {
            bad("weight_decay", "must not be negative".into());
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            bad(
                "warmup_ratio",
                format!("must be in [0, 1], got {}", self.warmup_ratio),
            );
        }
        if self.grad_accum == 0 {
            bad("grad_accum", "must be at least 1".into());
        }
        if self.batch_size == 0 {
            bad("batch_size", "must be at least 1".into());
        }
        if self.max_length < 2 {
            bad("max_length", "must be at least 2 tokens".into());
        }
        if self.token_budget > 0 && self.token_budget < self.max_length {
            bad("token_budget", format!("is smaller than max_length {}: a full-length example would not fit; raise it or lower max_length", self.max_length));
        }
        if self.stop_at_step > 0
            && !(self.max_steps > 0 && self.stop_at_step <= self.max_steps as u64)
        {
            bad(
                "stop_at_step",
                format!(
                    "must be at most max_steps ({}), which must be set",
                    self.max_steps
                ),
            );
        }
        if self.max_steps <= 0 && (self.epochs.is_nan() || self.epochs <= 0.0) {
            bad("epochs", "must be positive (or set max_steps)".into());
        }
        if self.logging_steps == 0 {
            bad("logging_steps", "must be at least 1".into());
        }
        if (self.early_stopping_patience > 0 || self.load_best_model_at_end) && self.eval_steps == 0
        {
            let which = if self.early_stopping_patience > 0 {
                "early_stopping_patience"
            } else {
                "load_best_model_at_end"
            };
            bad(which, "needs an evaluation: set eval_steps > 0".into());
        }
        if !valid_device(&self.device) {
            bad(
                "device",
                format!("`{}` is not one of auto, cpu, cuda, cuda:N", self.device),
            );
        }
        if self.init == Init::Random && self.method == Method::Lora {
            bad(
                "init",
                "`random` needs `method: full` (a LoRA on random weights learns nothing useful)"
                    .into(),
            );
        }
        if self.init == Init::Random {
            for problem in crate::model_config::model_config_problems(&self.model_config) {
                let name = match problem.field.as_str() {
                    "" => "model_config".to_string(),
                    f => format!("model_config.{f}"),
                };
                bad(&name, problem.message);
            }
        } else if !self.model_config.is_empty() {
            bad(
                "model_config",
                "shapes a model trained from random weights: it needs `init: random` (a pretrained model's shape is its config.json)".into(),
            );
        }
        p
    }
}

/// `auto | cpu | cuda | cuda:N`.
pub fn valid_device(d: &str) -> bool {
    matches!(d, "auto" | "cpu" | "cuda")
        || d.strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<usize>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_from_an_empty_map_and_unknown_fields_are_rejected() {
        assert_eq!(
            TrainParams::from_json(&serde_json::json!({})).unwrap(),
            TrainParams::default()
        );
        let e = TrainParams::from_json(&serde_json::json!({"lora_rank": 4})).unwrap_err();
        assert!(e.contains("lora_rank"), "{e}");
    }

    #[test]
    fn problems_name_the_param() {
        let p = TrainParams {
            betas: vec![0.9],
            eval_steps: 0,
            early_stopping_patience: 2,
            device: "gpu".into(),
            token_budget: 100,
            ..Default::default()
        };
        let names: Vec<String> = p.problems().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["betas", "token_budget", "early_stopping_patience", "device"]
        );
        assert!(TrainParams::default().problems().is_empty());
    }

    #[test]
    fn padding_stays_within_max_length_and_the_token_budget() {
        let p = TrainParams {
            max_length: 512,
            ..Default::default()
        };
        assert_eq!(p.pad_limit(8), 512);
        let p = TrainParams {
            token_budget: 2048,
            ..p
        };
        assert_eq!(p.pad_limit(8), 256);
        assert_eq!(p.pad_limit(2), 512);
        assert_eq!((p.pad_multiple(true), p.pad_multiple(false)), (64, 1));
    }

    #[test]
    fn rslora_scales_by_sqrt_r() {
        let p = TrainParams {
            lora_r: 16,
            lora_alpha: 32.0,
            ..Default::default()
        };
        assert_eq!(p.lora_scaling(), 2.0);
        let p = TrainParams {
            use_rslora: true,
            ..p
        };
        assert_eq!(p.lora_scaling(), 8.0);
        assert!(valid_device("cuda:1") && !valid_device("cuda:x"));
    }
}
