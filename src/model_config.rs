//! Gemma-3 text config: serde of HF `config.json` (field names are the HF keys), checked and
//! resolved into the facts the model needs (layer types, RoPE bases, attention scale).
//!
//! Both config generations are read: the older flat one (`rope_theta`, `rope_local_base_freq`,
//! `sliding_window_pattern`) and the newer one (`layer_types`, `rope_parameters` keyed by layer
//! type). Defaults for absent keys are transformers' `Gemma3TextConfig` defaults.
//!
//! It lives here, in the crate without libtorch, so that `t2s run` checks a train stage's
//! `model_config` (the shape of a model trained from random weights) when it reads the
//! pipeline, with the same rules the worker applies when it builds the model.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

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

#[derive(Debug, Clone, Deserialize, Serialize)]
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

/// What is wrong with one field of a config (`field` is a dotted path; empty: the whole).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}` {}", self.field, self.message)
        }
    }
}

/// A config file that cannot be read or used: the file and what is wrong in it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub problem: Problem,
}

/// Ids as a list: `1`, `[1, 106]` or null.
pub fn id_list(v: &Option<Value>) -> Vec<i64> {
    match v {
        Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_i64()).collect(),
        _ => Vec::new(),
    }
}

/// More layers than any released model has, by far; a larger count is a typo.
const MAX_LAYERS: i64 = 4096;

fn positive_finite(field: &str, x: f64) -> Result<f64, Problem> {
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(Problem::new(
            field,
            format!("must be a positive number, got {x}"),
        ))
    }
}

fn rope_of(v: &Value, at: &str) -> Result<Rope, Problem> {
    let theta_field = format!("{at}.rope_theta");
    let theta = v
        .get("rope_theta")
        .and_then(Value::as_f64)
        .ok_or_else(|| Problem::new(&theta_field, "is missing or not a number"))?;
    let kind = v
        .get("rope_type")
        .and_then(Value::as_str)
        .unwrap_or("default");
    Ok(Rope {
        theta: positive_finite(&theta_field, theta)?,
        factor: scaling_factor(kind, v, at)?,
    })
}

fn scaling_factor(kind: &str, v: &Value, at: &str) -> Result<f64, Problem> {
    let factor_field = format!("{at}.factor");
    match kind {
        "default" => Ok(1.0),
        "linear" => {
            let f = v.get("factor").and_then(Value::as_f64).ok_or_else(|| {
                Problem::new(
                    &factor_field,
                    "is missing or not a number (linear rope scaling)",
                )
            })?;
            positive_finite(&factor_field, f)
        }
        other => Err(Problem::new(
            &format!("{at}.rope_type"),
            format!("`{other}` is not supported (only `default` and `linear`)"),
        )),
    }
}

/// Deserialize, naming the field a type error is in.
fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Config, Problem>
where
    D::Error: std::fmt::Display,
{
    serde_path_to_error::deserialize(d).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Problem::new("", format!("not a Gemma-3 text config: {inner}"))
        } else {
            Problem::new(
                &path,
                format!("is not a Gemma-3 text config value: {inner}"),
            )
        }
    })
}

impl Config {
    /// Read an HF `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let fail = |problem| ConfigError {
            file: path.to_path_buf(),
            problem,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(Problem::new("", format!("cannot read: {e}"))))?;
        deserialize(&mut serde_json::Deserializer::from_str(&text)).map_err(fail)
    }

    /// A config given as JSON (e.g. a pipeline's `model_config` merged over defaults).
    pub fn from_value(v: Value) -> Result<Self, Problem> {
        deserialize(v)
    }

    /// Validate and derive; `file` is named in the error.
    pub fn resolve(&self, file: &Path) -> Result<Resolved, ConfigError> {
        self.check().map_err(|problem| ConfigError {
            file: file.to_path_buf(),
            problem,
        })
    }

    /// The fields that must be positive integers, with their values.
    fn sizes(&self) -> [(&'static str, i64); 9] {
        [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("sliding_window", self.sliding_window),
            ("max_position_embeddings", self.max_position_embeddings),
        ]
    }

    /// Validate and derive: the first problem, naming its field.
    pub fn check(&self) -> Result<Resolved, Problem> {
        for (field, n) in self.sizes() {
            if n <= 0 {
                return Err(Problem::new(field, format!("must be positive, got {n}")));
            }
        }
        // A per-layer table is built from this count before any weight is read.
        if self.num_hidden_layers > MAX_LAYERS {
            return Err(Problem::new(
                "num_hidden_layers",
                format!(
                    "must be at most {MAX_LAYERS}, got {}",
                    self.num_hidden_layers
                ),
            ));
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(Problem::new(
                "num_attention_heads",
                format!(
                    "must be a multiple of num_key_value_heads ({}), got {}",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            ));
        }
        if self.head_dim % 2 != 0 {
            return Err(Problem::new(
                "head_dim",
                format!("must be even for RoPE, got {}", self.head_dim),
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0) {
            return Err(Problem::new(
                "rms_norm_eps",
                format!("must be a number >= 0, got {}", self.rms_norm_eps),
            ));
        }
        positive_finite("query_pre_attn_scalar", self.query_pre_attn_scalar)?;
        if let Some(cap) = self.final_logit_softcapping {
            positive_finite("final_logit_softcapping", cap)?;
        }
        if self.attn_logit_softcapping.is_some() {
            return Err(Problem::new(
                "attn_logit_softcapping",
                "is set; Gemma-3 has none and t2s does not support it",
            ));
        }
        if self.attention_bias {
            return Err(Problem::new(
                "attention_bias",
                "= true is not supported (Gemma-3 has none)",
            ));
        }
        if self.use_bidirectional_attention {
            return Err(Problem::new(
                "use_bidirectional_attention",
                "is not supported",
            ));
        }
        if !matches!(
            self.hidden_activation.as_str(),
            "gelu_pytorch_tanh" | "gelu_tanh"
        ) {
            return Err(Problem::new(
                "hidden_activation",
                format!(
                    "`{}` is not supported (Gemma-3 uses gelu_pytorch_tanh)",
                    self.hidden_activation
                ),
            ));
        }
        let sliding = self.layer_kinds()?;
        let (rope_local, rope_global) = self.ropes()?;
        Ok(Resolved {
            sliding,
            rope_local,
            rope_global,
            scaling: self.query_pre_attn_scalar.powf(-0.5),
        })
    }

    /// Per layer: sliding-window attention (true) or full attention.
    fn layer_kinds(&self) -> Result<Vec<bool>, Problem> {
        let n = self.num_hidden_layers;
        match &self.layer_types {
            Some(t) => {
                if t.len() as i64 != n {
                    return Err(Problem::new(
                        "layer_types",
                        format!("has {} entries for {n} layers", t.len()),
                    ));
                }
                t.iter()
                    .enumerate()
                    .map(|(i, s)| match s.as_str() {
                        "sliding_attention" => Ok(true),
                        "full_attention" => Ok(false),
                        o => Err(Problem::new(
                            &format!("layer_types[{i}]"),
                            format!(
                                "`{o}` is not a layer type (sliding_attention or full_attention)"
                            ),
                        )),
                    })
                    .collect()
            }
            None => {
                let p = self.sliding_window_pattern.unwrap_or(6);
                if p <= 0 {
                    return Err(Problem::new(
                        "sliding_window_pattern",
                        format!("must be positive, got {p}"),
                    ));
                }
                Ok((0..n).map(|i| (i + 1) % p != 0).collect())
            }
        }
    }

    /// RoPE of the sliding layers and of the full-attention layers.
    fn ropes(&self) -> Result<(Rope, Rope), Problem> {
        let local_default = || -> Result<Rope, Problem> {
            Ok(Rope {
                theta: positive_finite("rope_local_base_freq", self.rope_local_base_freq)?,
                factor: 1.0,
            })
        };
        match &self.rope_parameters {
            Some(rp) if rp.get("full_attention").is_some() => Ok((
                match rp.get("sliding_attention") {
                    Some(v) => rope_of(v, "rope_parameters.sliding_attention")?,
                    None => local_default()?,
                },
                rope_of(&rp["full_attention"], "rope_parameters.full_attention")?,
            )),
            Some(rp) if rp.get("rope_theta").is_some() => {
                Ok((local_default()?, rope_of(rp, "rope_parameters")?))
            }
            _ => {
                let factor = match &self.rope_scaling {
                    Some(v) if v.is_object() => {
                        let kind = v
                            .get("rope_type")
                            .or_else(|| v.get("type"))
                            .and_then(Value::as_str)
                            .unwrap_or("default");
                        scaling_factor(kind, v, "rope_scaling")?
                    }
                    _ => 1.0,
                };
                Ok((
                    local_default()?,
                    Rope {
                        theta: positive_finite("rope_theta", self.rope_theta)?,
                        factor,
                    },
                ))
            }
        }
    }
}

/// Keys a pipeline's `model_config` may set besides the config fields: the init std.
const RANDOM_INIT_KEYS: [&str; 1] = ["initializer_range"];

/// `config.json` of a model trained from random weights: a tiny Gemma-3 shape, then the
/// user's `model_config` over it. `vocab_size` is the tokenizer's unless the user sets it.
pub fn random_model_config(user: &Map<String, Value>, vocab_size: usize) -> Value {
    let mut cfg = json!({
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "vocab_size": vocab_size,
        "hidden_size": 192,
        "intermediate_size": 768,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 48,
        "query_pre_attn_scalar": 48,
        "sliding_window": 128,
        "sliding_window_pattern": 6,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0,
        "hidden_activation": "gelu_pytorch_tanh",
        "initializer_range": 0.02,
        "tie_word_embeddings": true,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
        "torch_dtype": "float32",
    });
    let obj = cfg.as_object_mut().expect("a JSON object literal");
    for (k, v) in user {
        obj.insert(k.clone(), v.clone());
    }
    cfg
}

/// The keys `model_config` may hold: the config fields and `initializer_range`.
pub fn model_config_keys() -> Vec<String> {
    let probe = Config::from_value(random_model_config(&Map::new(), 1))
        .expect("the random-model defaults are a valid config");
    let fields = serde_json::to_value(probe).expect("a config serializes");
    let mut keys: Vec<String> = fields
        .as_object()
        .expect("a config serializes to an object")
        .keys()
        .cloned()
        .collect();
    keys.extend(RANDOM_INIT_KEYS.iter().map(|k| k.to_string()));
    keys.sort();
    keys
}

/// Problems of a pipeline's `model_config`, checked as the worker will build the model (the
/// tokenizer's vocabulary size is not known yet: a stand-in is used unless it is given).
pub fn model_config_problems(user: &Map<String, Value>) -> Vec<Problem> {
    let keys = model_config_keys();
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let unknown: Vec<Problem> = user
        .keys()
        .filter(|k| !names.contains(&k.as_str()))
        .map(|k| {
            Problem::new(
                k,
                format!(
                    "is not a Gemma-3 text config field: {}",
                    crate::pipeline::suggest(k, "the fields are", &names)
                ),
            )
        })
        .collect();
    if !unknown.is_empty() {
        return unknown;
    }
    if let Some(r) = user.get("initializer_range") {
        if !r.as_f64().is_some_and(|x| x.is_finite() && x >= 0.0) {
            return vec![Problem::new(
                "initializer_range",
                format!("must be a number >= 0, got {r}"),
            )];
        }
    }
    match Config::from_value(random_model_config(user, 1)).and_then(|c| c.check()) {
        Ok(_) => Vec::new(),
        Err(p) => vec![p],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Value {
        random_model_config(&Map::new(), 97)
    }

    fn with(key: &str, v: Value) -> Result<Resolved, Problem> {
        let mut c = tiny();
        c[key] = v;
        Config::from_value(c)?.check()
    }

    #[test]
    fn the_random_model_defaults_resolve() {
        let r = Config::from_value(tiny()).unwrap().check().unwrap();
        assert_eq!(r.sliding, [true, true, true, true]);
        assert_eq!(r.rope_global.theta, 1_000_000.0);
        assert!((r.scaling - 48f64.powf(-0.5)).abs() < 1e-15);
    }

    #[test]
    fn each_bad_value_names_its_field() {
        let cases: [(&str, Value, &str); 15] = [
            ("num_attention_heads", json!(0), "num_attention_heads"),
            ("num_attention_heads", json!(-4), "num_attention_heads"),
            ("intermediate_size", json!(0), "intermediate_size"),
            (
                "max_position_embeddings",
                json!(-1),
                "max_position_embeddings",
            ),
            ("num_key_value_heads", json!(3), "num_attention_heads"),
            ("head_dim", json!(7), "head_dim"),
            ("query_pre_attn_scalar", json!(0), "query_pre_attn_scalar"),
            ("rms_norm_eps", json!(-1e-6), "rms_norm_eps"),
            ("rope_theta", json!(0), "rope_theta"),
            ("rope_local_base_freq", json!(-10), "rope_local_base_freq"),
            (
                "final_logit_softcapping",
                json!(0),
                "final_logit_softcapping",
            ),
            ("sliding_window_pattern", json!(0), "sliding_window_pattern"),
            (
                "num_hidden_layers",
                json!(1_000_000_000_000i64),
                "num_hidden_layers",
            ),
            (
                "rope_scaling",
                json!({"rope_type": "linear", "factor": 0}),
                "rope_scaling.factor",
            ),
            ("vocab_size", json!("big"), "vocab_size"),
        ];
        for (key, v, field) in cases {
            let p = with(key, v.clone()).expect_err(&format!("{key} = {v} must be refused"));
            assert_eq!(p.field, field, "{key} = {v}: {p}");
        }
    }

    #[test]
    fn rope_parameters_of_the_newer_configs_are_checked_per_layer_type() {
        let p = with(
            "rope_parameters",
            json!({"full_attention": {"rope_theta": 1e6},
                   "sliding_attention": {"rope_theta": -1.0}}),
        )
        .unwrap_err();
        assert_eq!(p.field, "rope_parameters.sliding_attention.rope_theta");
        let p = with("layer_types", json!(["full_attention", "x", "y", "z"])).unwrap_err();
        assert_eq!(p.field, "layer_types[1]", "{p}");
    }

    #[test]
    fn model_config_typos_are_caught_with_a_suggestion() {
        let user: Map<String, Value> =
            serde_json::from_value(json!({"num_layers": 2, "hidden_size": 64})).unwrap();
        let p = model_config_problems(&user);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].field, "num_layers");
        assert!(p[0].message.contains("num_hidden_layers"), "{}", p[0]);
    }

    #[test]
    fn model_config_is_checked_over_the_defaults() {
        let ok: Map<String, Value> = serde_json::from_value(
            json!({"hidden_size": 32, "num_attention_heads": 2, "head_dim": 16,
                   "initializer_range": 0.05}),
        )
        .unwrap();
        assert!(model_config_problems(&ok).is_empty());
        let bad: Map<String, Value> =
            serde_json::from_value(json!({"num_attention_heads": 3, "num_key_value_heads": 2}))
                .unwrap();
        assert_eq!(model_config_problems(&bad)[0].field, "num_attention_heads");
        let bad: Map<String, Value> =
            serde_json::from_value(json!({"initializer_range": -1})).unwrap();
        assert_eq!(model_config_problems(&bad)[0].field, "initializer_range");
    }

    #[test]
    fn a_config_file_error_names_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.json");
        let mut c = tiny();
        c["head_dim"] = json!(1.5);
        std::fs::write(&f, serde_json::to_string_pretty(&c).unwrap()).unwrap();
        let e = Config::from_file(&f).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains("`head_dim`") && e.contains("line"),
            "{e}"
        );
        std::fs::write(&f, "{\"hidden_size\": 8}").unwrap();
        let e = Config::from_file(&f).unwrap_err().to_string();
        assert!(
            e.contains("not a Gemma-3 text config") && e.contains("missing field"),
            "{e}"
        );
    }
}
