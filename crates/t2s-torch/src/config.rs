//! Gemma-3 text config: serde of HF `config.json` (field names are the HF keys), resolved into
//! the facts the model needs (layer types, RoPE bases, attention scale).
//!
//! Both config generations are read: the older flat one (`rope_theta`, `rope_local_base_freq`,
//! `sliding_window_pattern`) and the newer one (`layer_types`, `rope_parameters` keyed by layer
//! type). Defaults for absent keys are transformers' `Gemma3TextConfig` defaults.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ModelError, Result};

fn d_eps() -> f64 {
    1e-6
}
fn d_theta() -> f64 {
    1_000_000.0
}
fn d_local() -> f64 {
    10_000.0
}
fn d_scalar() -> f64 {
    256.0
}
fn d_max_pos() -> i64 {
    131_072
}
fn d_true() -> bool {
    true
}
fn d_act() -> String {
    "gelu_pytorch_tanh".into()
}
fn d_window() -> i64 {
    4096
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_key_value_heads: i64,
    pub head_dim: i64,
    #[serde(default = "d_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "d_theta")]
    pub rope_theta: f64,
    #[serde(default = "d_local")]
    pub rope_local_base_freq: f64,
    #[serde(default)]
    pub rope_scaling: Option<Value>,
    #[serde(default)]
    pub rope_parameters: Option<Value>,
    #[serde(default = "d_window")]
    pub sliding_window: i64,
    #[serde(default)]
    pub sliding_window_pattern: Option<i64>,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    #[serde(default = "d_scalar")]
    pub query_pre_attn_scalar: f64,
    #[serde(default = "d_max_pos")]
    pub max_position_embeddings: i64,
    #[serde(default = "d_true")]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    #[serde(default = "d_act")]
    pub hidden_activation: String,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub use_bidirectional_attention: bool,
    #[serde(default)]
    pub bos_token_id: Option<Value>,
    #[serde(default)]
    pub eos_token_id: Option<Value>,
    #[serde(default)]
    pub pad_token_id: Option<Value>,
}

/// RoPE of one layer type: base and linear scaling factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    pub theta: f64,
    /// Linear scaling: positions are divided by this (1.0 = default RoPE).
    pub factor: f64,
}

/// Config facts derived once.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub sliding: Vec<bool>,
    pub rope_local: Rope,
    pub rope_global: Rope,
    /// `query_pre_attn_scalar^-0.5`.
    pub scaling: f64,
}

/// Ids as a list: `1`, `[1, 106]` or null.
pub fn id_list(v: &Option<Value>) -> Vec<i64> {
    match v {
        Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_i64()).collect(),
        _ => Vec::new(),
    }
}

fn rope_of(v: &Value, what: &str, file: &Path) -> Result<Rope> {
    let err = |m: String| ModelError::Config {
        file: file.to_path_buf(),
        message: m,
    };
    let theta = v
        .get("rope_theta")
        .and_then(|x| x.as_f64())
        .ok_or_else(|| err(format!("rope_parameters.{what} has no numeric rope_theta")))?;
    let kind = v
        .get("rope_type")
        .and_then(|x| x.as_str())
        .unwrap_or("default");
    let factor = scaling_factor(kind, v, file)?;
    Ok(Rope { theta, factor })
}

fn scaling_factor(kind: &str, v: &Value, file: &Path) -> Result<f64> {
    match kind {
        "default" => Ok(1.0),
        "linear" => v
            .get("factor")
            .and_then(|x| x.as_f64())
            .ok_or_else(|| ModelError::Config {
                file: file.to_path_buf(),
                message: "linear rope scaling without a numeric `factor`".into(),
            }),
        other => Err(ModelError::Config {
            file: file.to_path_buf(),
            message: format!("rope type `{other}` is not supported (only `default` and `linear`)"),
        }),
    }
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Config {
            file: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        serde_json::from_str(&text).map_err(|e| ModelError::Config {
            file: path.to_path_buf(),
            message: format!("not a Gemma-3 text config: {e}"),
        })
    }

    /// Validate and derive. `file` is used in messages.
    pub fn resolve(&self, file: &Path) -> Result<Resolved> {
        let err = |m: String| ModelError::Config {
            file: file.to_path_buf(),
            message: m,
        };
        let n = self.num_hidden_layers;
        if n <= 0 || self.hidden_size <= 0 || self.head_dim <= 0 || self.vocab_size <= 0 {
            return Err(err("sizes must be positive".into()));
        }
        if self.num_key_value_heads <= 0 || self.num_attention_heads % self.num_key_value_heads != 0
        {
            return Err(err(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            )));
        }
        if self.head_dim % 2 != 0 {
            return Err(err("head_dim must be even for RoPE".into()));
        }
        if self.attn_logit_softcapping.is_some() {
            return Err(err(
                "attn_logit_softcapping is set; Gemma-3 has none and t2s does not support it"
                    .into(),
            ));
        }
        if self.attention_bias {
            return Err(err(
                "attention_bias = true is not supported (Gemma-3 has none)".into(),
            ));
        }
        if self.use_bidirectional_attention {
            return Err(err("use_bidirectional_attention is not supported".into()));
        }
        if !matches!(
            self.hidden_activation.as_str(),
            "gelu_pytorch_tanh" | "gelu_tanh"
        ) {
            return Err(err(format!(
                "hidden_activation `{}` is not supported (Gemma-3 uses gelu_pytorch_tanh)",
                self.hidden_activation
            )));
        }
        if self.sliding_window <= 0 {
            return Err(err("sliding_window must be positive".into()));
        }
        let sliding = match &self.layer_types {
            Some(t) => {
                if t.len() as i64 != n {
                    return Err(err(format!(
                        "layer_types has {} entries for {n} layers",
                        t.len()
                    )));
                }
                t.iter()
                    .map(|s| match s.as_str() {
                        "sliding_attention" => Ok(true),
                        "full_attention" => Ok(false),
                        o => Err(err(format!("unknown layer type `{o}`"))),
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            None => {
                let p = self.sliding_window_pattern.unwrap_or(6);
                if p <= 0 {
                    return Err(err("sliding_window_pattern must be positive".into()));
                }
                (0..n).map(|i| (i + 1) % p != 0).collect()
            }
        };
        let (rope_local, rope_global) = match &self.rope_parameters {
            Some(rp) if rp.get("full_attention").is_some() => (
                match rp.get("sliding_attention") {
                    Some(v) => rope_of(v, "sliding_attention", file)?,
                    None => Rope {
                        theta: self.rope_local_base_freq,
                        factor: 1.0,
                    },
                },
                rope_of(&rp["full_attention"], "full_attention", file)?,
            ),
            Some(rp) if rp.get("rope_theta").is_some() => (
                Rope {
                    theta: self.rope_local_base_freq,
                    factor: 1.0,
                },
                rope_of(rp, "rope_parameters", file)?,
            ),
            _ => {
                let factor = match &self.rope_scaling {
                    Some(v) if v.is_object() => {
                        let kind = v
                            .get("rope_type")
                            .or_else(|| v.get("type"))
                            .and_then(|x| x.as_str())
                            .unwrap_or("default");
                        scaling_factor(kind, v, file)?
                    }
                    _ => 1.0,
                };
                (
                    Rope {
                        theta: self.rope_local_base_freq,
                        factor: 1.0,
                    },
                    Rope {
                        theta: self.rope_theta,
                        factor,
                    },
                )
            }
        };
        Ok(Resolved {
            sliding,
            rope_local,
            rope_global,
            scaling: self.query_pre_attn_scalar.powf(-0.5),
        })
    }
}
