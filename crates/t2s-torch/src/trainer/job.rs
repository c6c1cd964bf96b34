//! The worker's `train` job: resolve the model (pretrained directory, upstream artifact, or a
//! random tiny model), read the split, run the loop, write the artifact.
//!
//! Inputs by role: `data` (a split artifact: `train/`, optional `validation/`), `model`
//! (an HF model directory; else the `model` param), `tokenizer` (a directory holding
//! `tokenizer.json`, for `init: random`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};
use t2s::train_plan::{Init, Method, TrainParams};
use t2s::worker::protocol::{JobSpec, WorkerEvent};
use tch::{Device, Kind};

use super::run::{train, RunConfig};
use super::{FullModel, LoraModel, TrainExample, Trainable};
use crate::device::{parse_device, parse_kind};
use crate::events::Events;
use crate::gemma3::Gemma3;
use crate::jobs::input_dir;
use crate::lora::LoraConfig;
use crate::weights::{Checkpoint, RandomInit};

fn examples(dir: &Path, name: &str) -> anyhow::Result<Vec<TrainExample>> {
    Ok(t2s::data::load_split(dir, name)?
        .into_iter()
        .map(|e| TrainExample {
            input_ids: e.input_ids,
            labels: e.labels,
        })
        .collect())
}

fn tokenizer_files(dir: &Path) -> Vec<PathBuf> {
    [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "special_tokens_map.json",
    ]
    .iter()
    .map(|f| dir.join(f))
    .filter(|f| f.is_file())
    .collect()
}

/// `config.json` of a random tiny model: Gemma-3 defaults, the user's `model_config`, and the
/// vocabulary size of the tokenizer unless given.
fn random_config(user: &Map<String, Value>, tokenizer: &Path) -> anyhow::Result<Value> {
    let tk = t2s::data::tokenizer::load(tokenizer)?;
    Ok(t2s::model_config::random_model_config(
        user,
        tk.get_vocab_size(true),
    ))
}

/// The model to train and the facts of its config.json the loop needs.
fn build_model(
    spec: &JobSpec,
    p: &TrainParams,
    device: Device,
    kind: Kind,
    out: &Path,
) -> anyhow::Result<(Box<dyn Trainable>, Ids)> {
    let model_dir = match input_dir(spec, "model")? {
        Some(d) => Some(d),
        None if !p.model.is_empty() => Some(PathBuf::from(&p.model)),
        None => None,
    };
    tch::manual_seed(p.seed as i64);
    match (p.init, p.method) {
        (Init::Random, _) => {
            let tok = match input_dir(spec, "tokenizer")? {
                Some(d) => d.join("tokenizer.json"),
                None => model_dir
                    .as_ref()
                    .map(|d| d.join("tokenizer.json"))
                    .context("`init: random` needs a tokenizer: a `tokenizer` stage among the needs (or `model` naming a directory with tokenizer.json)")?,
            };
            let cfg = random_config(&p.model_config, &tok)?;
            std::fs::create_dir_all(out)?;
            let cfg_file = out.join("config.json");
            std::fs::write(&cfg_file, serde_json::to_string_pretty(&cfg)?)?;
            let std = cfg
                .get("initializer_range")
                .and_then(Value::as_f64)
                .unwrap_or(0.02);
            let files = tokenizer_files(tok.parent().unwrap_or(Path::new(".")));
            let m = FullModel::new(&cfg_file, &RandomInit::new(std), kind, device, files)?;
            Ok((Box::new(m), Ids::of(&cfg, &cfg_file)))
        }
        (Init::Pretrained, method) => {
            let dir = model_dir.context("no model to train: give `model` (an HF model directory) or put a model artifact (e.g. a `train` with method full) in the stage's needs")?;
            let cfg_file = dir.join("config.json");
            let cfg: Value =
                serde_json::from_str(&std::fs::read_to_string(&cfg_file).with_context(|| {
                    format!(
                        "{}: missing; point `model` at an HF model directory",
                        cfg_file.display()
                    )
                })?)
                .with_context(|| format!("{} is not valid JSON", cfg_file.display()))?;
            let ids = Ids::of(&cfg, &cfg_file);
            if method == Method::Full {
                let ck = Checkpoint::open(&dir)?;
                let m = FullModel::new(&cfg_file, &ck, kind, device, tokenizer_files(&dir))?;
                return Ok((Box::new(m), ids));
            }
            let model = Gemma3::load(&dir, kind, device)?;
            let lc = LoraConfig {
                r: p.lora_r as i64,
                lora_alpha: p.lora_alpha,
                lora_dropout: p.lora_dropout,
                target_modules: p.target_modules.clone(),
                target_regex: None,
                use_rslora: p.use_rslora,
                layers_to_transform: None,
            };
            // An upstream node's model is named by its project-relative object name, so the
            // adapter's bytes do not depend on where the project lives (PEFT run from the
            // project root loads it; t2s resolves it in the project's store).
            let base = if p.model.is_empty() {
                t2s::cache::store::object_name(&dir).unwrap_or_else(|| dir.display().to_string())
            } else {
                p.model.clone()
            };
            Ok((Box::new(LoraModel::new(model, lc, base)?), ids))
        }
    }
}

/// What the loop needs of a model's config.json: its pad id, and its vocabulary size, which
/// every token id of the data must stay under.
struct Ids {
    pad: i64,
    vocab_size: Option<i64>,
    config: PathBuf,
}

impl Ids {
    fn of(cfg: &Value, file: &Path) -> Ids {
        let pad = match cfg.get("pad_token_id") {
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(Value::Array(a)) => a.first().and_then(Value::as_i64).unwrap_or(0),
            _ => 0,
        };
        Ids {
            pad,
            vocab_size: cfg.get("vocab_size").and_then(Value::as_i64),
            config: file.to_path_buf(),
        }
    }

    /// A token id with no embedding row means the data was tokenized for another model: say
    /// so before training (libtorch would fail deep inside the embedding with an index error).
    fn check(&self, split: &str, examples: &[TrainExample]) -> anyhow::Result<()> {
        let Some(vocab) = self.vocab_size else {
            return Ok(());
        };
        let worst = examples.iter().flat_map(|e| e.input_ids.iter()).max();
        if let Some(&id) = worst.filter(|&&id| i64::from(id) >= vocab) {
            bail!(
                "token id {id} in the {split} split is outside the model's vocabulary \
                 ({}: vocab_size {vocab}): the data was tokenized with a tokenizer of another \
                 model; give the `preprocess` stage this model's tokenizer",
                self.config.display()
            );
        }
        Ok(())
    }
}

/// Run the `train` job.
pub fn run(spec: &JobSpec, p: &TrainParams, ev: &Events) -> anyhow::Result<Value> {
    if let Some((name, msg)) = p.problems().first() {
        bail!("train param `{name}` {msg}");
    }
    let out = spec.out_dir.clone().context("job `train` needs out_dir")?;
    let data = input_dir(spec, "data")?
        .context("job `train` needs input `data` (a split artifact with train/ and validation/)")?;
    let train_ex = examples(&data, "train")?;
    let valid_ex = if data.join("validation").is_dir() {
        examples(&data, "validation")?
    } else {
        Vec::new()
    };
    let device = parse_device(&spec.device)?;
    let kind = parse_kind(p.dtype.as_str(), device)?;
    let (model, ids) = build_model(spec, p, device, kind, &out)?;
    ids.check("train", &train_ex)?;
    ids.check("validation", &valid_ex)?;
    let cfg = RunConfig {
        params: p,
        pad_id: ids.pad,
        partial_dir: spec.partial_dir.as_deref(),
        stop_after: None,
    };
    let outcome = train(model.as_ref(), &train_ex, &valid_ex, &cfg, &mut |e| {
        ev.emit(&e)
    })?;
    model.export(&out)?;
    std::fs::write(
        out.join("trainer_state.json"),
        serde_json::to_string_pretty(&outcome.state)?,
    )?;
    let last_eval = outcome
        .state
        .log_history
        .iter()
        .rev()
        .find_map(|l| l.eval_loss);
    let mut metrics = Map::new();
    metrics.insert("train_loss".into(), json!(outcome.train_loss));
    metrics.insert("global_step".into(), json!(outcome.state.global_step));
    metrics.insert("train_tokens".into(), json!(outcome.train_tokens));
    if let Some(b) = outcome.state.best_metric {
        metrics.insert("best_eval_loss".into(), json!(b));
    }
    if let Some(l) = last_eval {
        metrics.insert("eval_loss".into(), json!(l));
    }
    for (k, v) in &metrics {
        if let Some(x) = v.as_f64() {
            ev.emit(&WorkerEvent::Metric {
                name: k.clone(),
                step: None,
                value: x,
            });
        }
    }
    // How much memory the training took: for the tracking DB only (a measurement, so never
    // part of the artifact, whose digest feeds downstream keys).
    if let Some(mb) = crate::jobs::peak_rss_mb() {
        ev.emit(&WorkerEvent::Metric {
            name: "peak_rss_mb".into(),
            step: None,
            value: mb,
        });
    }
    Ok(json!({
        "metrics": metrics,
        "resumed_from": outcome.resumed_from,
        "best_global_step": outcome.state.best_global_step,
        "loaded_best": outcome.loaded_best,
        "dropped_too_long": outcome.dropped_too_long,
        "method": p.method,
        "device": crate::device::device_name(device),
    }))
}
