//! The `train` stage's parameters as one typed struct, shared by the stage (validation, job
//! spec) and the worker (which deserializes the resolved params of its job spec).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::batching::BatchBy;
use super::schedule::SchedulerKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Lora,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// Start from the weights of `model` (or the upstream model artifact).
    Pretrained,
    /// Start from random weights of the shape in `model_config` (tiny offline models).
    Random,
}

/// Resolved `train` params. Defaults equal the stage's declared defaults (tested).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainParams {
    pub method: Method,
    pub init: Init,
    /// A local model directory or hub id; empty: the upstream model artifact.
    pub model: String,
    /// Gemma3TextConfig fields for `init: random` (`vocab_size` defaults to the tokenizer's).
    pub model_config: Map<String, Value>,
    pub lora_r: u64,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    pub use_rslora: bool,
    pub lr: f64,
    pub betas: Vec<f64>,
    pub eps: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub warmup_ratio: f64,
    pub warmup_steps: u64,
    pub scheduler: SchedulerKind,
    pub grad_accum: u64,
    pub batch_size: u64,
    /// > 0: batches hold at most this many (padded) tokens instead of `batch_size` examples.
    pub token_budget: u64,
    pub max_length: u64,
    /// Pad each micro-batch's length up to a multiple of this, never past
    /// [`TrainParams::pad_limit`]; 0: automatic, see [`TrainParams::pad_multiple`].
    pub pad_to_multiple_of: u64,
    pub group_by_length: bool,
    pub shuffle: bool,
    pub epochs: f64,
    /// > 0 wins over `epochs`.
    pub max_steps: i64,
    /// 0: no evaluation.
    pub eval_steps: u64,
    /// 0: no checkpoints (no resume).
    pub save_steps: u64,
    pub logging_steps: u64,
    /// 0: no early stopping.
    pub early_stopping_patience: u64,
    pub early_stopping_threshold: f64,
    pub load_best_model_at_end: bool,
    pub seed: u64,
    /// `auto | cpu | cuda | cuda:N`.
    pub device: String,
    /// `auto` (bf16 on CUDA, fp32 on CPU) | `float32` | `bfloat16`.
    pub dtype: String,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            method: Method::Lora,
            init: Init::Pretrained,
            model: String::new(),
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
            max_length: 512,
            pad_to_multiple_of: 0,
            group_by_length: true,
            shuffle: true,
            epochs: 1.0,
            max_steps: -1,
            eval_steps: 0,
            save_steps: 50,
            logging_steps: 10,
            early_stopping_patience: 0,
            early_stopping_threshold: 0.0,
            load_best_model_at_end: false,
            seed: 42,
            device: "auto".into(),
            dtype: "auto".into(),
        }
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
        if !["auto", "float32", "bfloat16"].contains(&self.dtype.as_str()) {
            bad(
                "dtype",
                format!("`{}` is not one of auto, float32, bfloat16", self.dtype),
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
