//! LoRA with PEFT semantics on any set of linear modules, and the PEFT on-disk layout.
//!
//! PEFT facts (`shared/reference/gemma3.md` §5): A ~ U(±1/√in) (kaiming_uniform, a=√5), B = 0,
//! scale `alpha/r` (or `alpha/√r` with rsLoRA), dropout on the LoRA input only, adapter weights
//! in fp32. Saved as `adapter_config.json` + `adapter_model.safetensors` with tensor names
//! `base_model.model.<module>.lora_{A,B}.weight`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::gemma3::Gemma3;
use crate::linear::{Linear, LoraAdapter};
use crate::weights::{self, Checkpoint};

const PREFIX: &str = "base_model.model.";

/// The LoRA settings (the subset of PEFT's `LoraConfig` that t2s supports).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub r: i64,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    /// Module names matched as PEFT does for a list (the full name or a `.`-suffix), or the
    /// single entry `all-linear`; `target_regex` instead for a PEFT string pattern.
    pub target_modules: Vec<String>,
    pub target_regex: Option<String>,
    pub use_rslora: bool,
    pub layers_to_transform: Option<Vec<i64>>,
}

impl LoraConfig {
    pub fn new(r: i64, alpha: f64, targets: &[&str]) -> Self {
        Self {
            r,
            lora_alpha: alpha,
            lora_dropout: 0.0,
            target_modules: targets.iter().map(|s| s.to_string()).collect(),
            target_regex: None,
            use_rslora: false,
            layers_to_transform: None,
        }
    }

    /// `alpha / r`, or `alpha / √r` with rsLoRA.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// Does the module `name` (e.g. `model.layers.3.self_attn.q_proj`) get an adapter?
    pub fn targets(&self, name: &str) -> Result<bool> {
        let hit = if let Some(re) = &self.target_regex {
            let re = regex::Regex::new(&format!("^(?:{re})$"))
                .map_err(|e| ModelError::Input(format!("target_modules regex `{re}`: {e}")))?;
            re.is_match(name)
        } else {
            self.target_modules
                .iter()
                .any(|t| t == "all-linear" || name == t || name.ends_with(&format!(".{t}")))
        };
        if !hit {
            return Ok(false);
        }
        match &self.layers_to_transform {
            None => Ok(true),
            Some(layers) => {
                let idx = name
                    .strip_prefix("model.layers.")
                    .and_then(|r| r.split('.').next())
                    .and_then(|i| i.parse::<i64>().ok());
                Ok(idx.is_some_and(|i| layers.contains(&i)))
            }
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.problem().map_or(Ok(()), |p| Err(ModelError::Input(p)))
    }

    /// What makes this config unusable, if anything.
    fn problem(&self) -> Option<String> {
        if self.r <= 0 {
            return Some(format!("LoRA rank r must be positive, got {}", self.r));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Some(format!(
                "lora_dropout must be in [0, 1), got {}",
                self.lora_dropout
            ));
        }
        if !self.lora_alpha.is_finite() {
            return Some(format!(
                "lora_alpha must be a number, got {}",
                self.lora_alpha
            ));
        }
        if self.target_modules.is_empty() && self.target_regex.is_none() {
            return Some("LoRA target_modules is empty".into());
        }
        if let Some(re) = &self.target_regex {
            if let Err(e) = regex::Regex::new(&format!("^(?:{re})$")) {
                return Some(format!("target_modules regex `{re}`: {e}"));
            }
        }
        None
    }
}

/// Add fresh adapters (A uniform ±1/√in, B zero, fp32, trainable) to every targeted linear.
/// A is drawn from libtorch's CPU generator and moved to the model's device, so a seed gives
/// the same adapters on every device. Returns how many modules got one.
pub fn attach(model: &mut Gemma3, cfg: &LoraConfig) -> Result<usize> {
    cfg.validate()?;
    let scale = cfg.scale();
    let mut n = 0;
    for lin in model.linears_mut() {
        if !cfg.targets(&lin.name)? {
            continue;
        }
        let (out, inp) = (lin.out_features(), lin.in_features());
        let dev = lin.weight.device();
        let bound = 1.0 / (inp as f64).sqrt();
        let a = Tensor::f_empty([cfg.r, inp], (Kind::Float, Device::Cpu))?
            .f_uniform_(-bound, bound)?
            .f_to_device(dev)?
            .f_set_requires_grad(true)?;
        let b = Tensor::f_zeros([out, cfg.r], (Kind::Float, dev))?.f_set_requires_grad(true)?;
        lin.lora = Some(LoraAdapter {
            a,
            b,
            scale,
            dropout: cfg.lora_dropout,
            merged: false,
        });
        n += 1;
    }
    if n == 0 {
        return Err(ModelError::Input(format!(
            "LoRA target_modules {:?} match no linear module of the model (names look like model.layers.0.self_attn.q_proj)",
            cfg.target_modules
        )));
    }
    Ok(n)
}

/// The adapter tensors with their PEFT names (`base_model.model.<module>.lora_A.weight`),
/// sharing storage with the model (so gradients and optimizer updates apply in place).
pub fn params(model: &Gemma3) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for lin in model.linears() {
        if let Some(l) = &lin.lora {
            out.push((
                format!("{PREFIX}{}.lora_A.weight", lin.name),
                l.a.shallow_clone(),
            ));
            out.push((
                format!("{PREFIX}{}.lora_B.weight", lin.name),
                l.b.shallow_clone(),
            ));
        }
    }
    out
}

pub fn merge(model: &mut Gemma3) -> Result<()> {
    model.linears_mut().try_for_each(Linear::merge)
}

pub fn unmerge(model: &mut Gemma3) -> Result<()> {
    model.linears_mut().try_for_each(Linear::unmerge)
}

/// Write `adapter_config.json` and `adapter_model.safetensors` (fp32) in PEFT's layout.
pub fn save(model: &Gemma3, cfg: &LoraConfig, dir: &Path, base_model: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::Adapter {
        dir: dir.to_path_buf(),
        message: format!("cannot create: {e}"),
    })?;
    let tensors: Vec<(String, Tensor)> = params(model)
        .into_iter()
        .map(|(n, t)| Ok((n, t.f_detach()?.f_to_kind(Kind::Float)?)))
        .collect::<Result<_>>()?;
    weights::save(&tensors, &dir.join("adapter_model.safetensors"))?;
    let targets: Value = match &cfg.target_regex {
        Some(r) => json!(r),
        None if cfg.target_modules == ["all-linear"] => json!("all-linear"),
        None => json!(cfg.target_modules),
    };
    let conf = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "revision": null,
        "inference_mode": true,
        "r": cfg.r,
        "lora_alpha": cfg.lora_alpha,
        "lora_dropout": cfg.lora_dropout,
        "target_modules": targets,
        "exclude_modules": null,
        "fan_in_fan_out": false,
        "bias": "none",
        "lora_bias": false,
        "use_rslora": cfg.use_rslora,
        "use_dora": false,
        "modules_to_save": null,
        "init_lora_weights": true,
        "layers_to_transform": cfg.layers_to_transform,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "megatron_config": null,
        "megatron_core": "megatron.core",
        "loftq_config": {},
        "layer_replication": null,
    });
    let text = serde_json::to_string_pretty(&conf).map_err(|e| ModelError::Input(e.to_string()))?;
    std::fs::write(dir.join("adapter_config.json"), text).map_err(|e| ModelError::Adapter {
        dir: dir.to_path_buf(),
        message: format!("cannot write adapter_config.json: {e}"),
    })
}

/// PEFT's adapter_config.json, lenient: unknown keys ignored, missing keys defaulted.
#[derive(Debug, Deserialize, Serialize)]
struct PeftConfigFile {
    #[serde(default)]
    peft_type: Option<String>,
    #[serde(default = "d_r")]
    r: i64,
    #[serde(default = "d_alpha")]
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f64,
    #[serde(default)]
    target_modules: Option<Value>,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    bias: Option<String>,
    #[serde(default)]
    modules_to_save: Option<Value>,
    #[serde(default)]
    rank_pattern: Option<Value>,
    #[serde(default)]
    alpha_pattern: Option<Value>,
    #[serde(default)]
    layers_to_transform: Option<Value>,
}
fn d_r() -> i64 {
    8
}
fn d_alpha() -> f64 {
    8.0
}

fn non_empty(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

/// Read a PEFT `adapter_config.json` into a `LoraConfig`, rejecting features t2s lacks.
pub fn read_config(dir: &Path) -> Result<LoraConfig> {
    let err = |m: String| ModelError::Adapter {
        dir: dir.to_path_buf(),
        message: m,
    };
    let f = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&f)
        .map_err(|e| err(format!("cannot read adapter_config.json: {e}")))?;
    let c: PeftConfigFile = serde_json::from_str(&text)
        .map_err(|e| err(format!("adapter_config.json is not a PEFT config: {e}")))?;
    if let Some(t) = &c.peft_type {
        if t != "LORA" {
            return Err(err(format!(
                "peft_type is {t}; only LORA adapters are supported"
            )));
        }
    }
    if c.use_dora {
        return Err(err("DoRA adapters (use_dora) are not supported".into()));
    }
    if c.fan_in_fan_out {
        return Err(err(
            "fan_in_fan_out adapters are not supported (Gemma uses nn.Linear)".into(),
        ));
    }
    if c.bias.as_deref().is_some_and(|b| b != "none") {
        return Err(err(format!(
            "bias = {:?} is not supported (only \"none\")",
            c.bias
        )));
    }
    if non_empty(&c.modules_to_save) {
        return Err(err("modules_to_save is not supported".into()));
    }
    if non_empty(&c.rank_pattern) || non_empty(&c.alpha_pattern) {
        return Err(err("rank_pattern / alpha_pattern are not supported".into()));
    }
    let (target_modules, target_regex) = match &c.target_modules {
        Some(Value::String(s)) if s == "all-linear" => (vec![s.clone()], None),
        Some(Value::String(s)) => (Vec::new(), Some(s.clone())),
        Some(Value::Array(a)) => (
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            None,
        ),
        _ => return Err(err("adapter_config.json has no target_modules".into())),
    };
    let layers_to_transform = match &c.layers_to_transform {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_i64().map(|i| vec![i]),
        Some(Value::Array(a)) => Some(a.iter().filter_map(|x| x.as_i64()).collect()),
        Some(o) => return Err(err(format!("layers_to_transform {o} is not understood"))),
    };
    Ok(LoraConfig {
        r: c.r,
        lora_alpha: c.lora_alpha,
        lora_dropout: c.lora_dropout,
        target_modules,
        target_regex,
        use_rslora: c.use_rslora,
        layers_to_transform,
    })
}

/// The adapter's `adapter_model.safetensors`, which must be there.
pub fn adapter_file(dir: &Path) -> Result<std::path::PathBuf> {
    let file = dir.join("adapter_model.safetensors");
    if file.is_file() {
        return Ok(file);
    }
    let hint = if dir.join("adapter_model.bin").is_file() {
        " (only adapter_model.bin is there: re-save the adapter with safe_serialization=True)"
    } else {
        ""
    };
    Err(ModelError::Adapter {
        dir: dir.to_path_buf(),
        message: format!("adapter_model.safetensors is missing{hint}"),
    })
}

/// The module and the matrix (`lora_A` / `lora_B`) a PEFT adapter tensor name stands for:
/// `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` →
/// (`model.layers.0.self_attn.q_proj`, `lora_A`).
pub fn module_of(tensor: &str) -> Option<(&str, &str)> {
    let rest = tensor.strip_prefix(PREFIX)?.strip_suffix(".weight")?;
    let (module, matrix) = rest.rsplit_once('.')?;
    matches!(matrix, "lora_A" | "lora_B").then_some((module, matrix))
}

/// Load a PEFT adapter directory onto `model` (adapters in fp32). Fails clearly when the
/// adapter was made for another base: a tensor naming a module this model lacks, a targeted
/// module without tensors, or a shape that does not fit.
pub fn load(model: &mut Gemma3, dir: &Path) -> Result<LoraConfig> {
    let cfg = read_config(dir)?;
    if let Some(why) = cfg.problem() {
        return Err(ModelError::Adapter {
            dir: dir.to_path_buf(),
            message: format!("adapter_config.json: {why}"),
        });
    }
    let ck = Checkpoint::open(&adapter_file(dir)?)?;
    let known: std::collections::HashSet<String> = model
        .linears()
        .flat_map(|l| ["lora_A", "lora_B"].map(|ab| format!("{PREFIX}{}.{ab}.weight", l.name)))
        .collect();
    if let Some(stray) = ck.names().find(|n| !known.contains(*n)) {
        return Err(ModelError::Adapter {
            dir: dir.to_path_buf(),
            message: format!(
                "tensor `{stray}` matches no LoRA module of this base model ({} layers); the adapter was made for another base model",
                model.layers.len()
            ),
        });
    }
    let scale = cfg.scale();
    let mut n = 0;
    for lin in model.linears_mut() {
        let an = format!("{PREFIX}{}.lora_A.weight", lin.name);
        let bn = format!("{PREFIX}{}.lora_B.weight", lin.name);
        let present = ck.contains(&an) || ck.contains(&bn);
        if !cfg.targets(&lin.name)? && !present {
            continue;
        }
        let dev = lin.weight.device();
        let a = ck
            .get(&an, &[cfg.r, lin.in_features()], Kind::Float, dev)?
            .f_set_requires_grad(true)?;
        let b = ck
            .get(&bn, &[lin.out_features(), cfg.r], Kind::Float, dev)?
            .f_set_requires_grad(true)?;
        lin.lora = Some(LoraAdapter {
            a,
            b,
            scale,
            dropout: cfg.lora_dropout,
            merged: false,
        });
        n += 1;
    }
    if n == 0 {
        return Err(ModelError::Adapter {
            dir: dir.to_path_buf(),
            message: "the adapter holds no LoRA tensor for this model".into(),
        });
    }
    Ok(cfg)
}
