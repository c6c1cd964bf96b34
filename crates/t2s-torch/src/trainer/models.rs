//! The two [`Trainable`] models: a Gemma-3 with LoRA adapters (only A/B train, PEFT export)
//! and a fully fine-tuned Gemma-3 (HF-layout export).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tch::{Device, Kind, Tensor};

use super::Trainable;
use crate::gemma3::{Gemma3, Inputs};
use crate::lora::{self, LoraConfig};
use crate::train::{chunked_ce, default_chunk, shift_labels};
use crate::weights::{self, Source};
use crate::ModelError;

/// `[B, S]` positions 0..S for a right-padded batch.
fn positions(ids: &Tensor) -> anyhow::Result<Tensor> {
    let (b, s) = ids.size2()?;
    Ok(Tensor::f_arange(s, (Kind::Int64, ids.device()))?
        .f_unsqueeze(0)?
        .f_expand([b, s], false)?)
}

fn hidden(model: &Gemma3, ids: &Tensor, train: bool) -> anyhow::Result<Tensor> {
    let pos = positions(ids)?;
    // Right padding needs no key mask: under the causal mask no real token sees a pad.
    let inp = Inputs {
        ids,
        positions: &pos,
        key_valid: None,
    };
    Ok(model.forward_hidden(&inp, None, train)?)
}

/// Mean next-token cross-entropy of a right-padded batch through the chunked loss, which
/// sends its gradient to the hidden states and, when the (tied) LM head trains, to the head.
fn causal_lm_loss(
    model: &Gemma3,
    ids: &Tensor,
    labels: &Tensor,
    train: bool,
) -> anyhow::Result<Tensor> {
    let h = hidden(model, ids, train)?;
    let t = shift_labels(labels)?;
    Ok(chunked_ce(
        model,
        &h,
        &t,
        default_chunk(model.cfg.vocab_size),
    )?)
}

/// A frozen Gemma-3 with trainable LoRA adapters.
pub struct LoraModel {
    pub model: Gemma3,
    pub cfg: LoraConfig,
    /// `base_model_name_or_path` written into `adapter_config.json`.
    pub base_name: String,
}

impl LoraModel {
    /// Attach fresh adapters (drawn from libtorch's generator: seed it first).
    pub fn new(mut model: Gemma3, cfg: LoraConfig, base_name: String) -> anyhow::Result<Self> {
        lora::attach(&mut model, &cfg)?;
        Ok(Self {
            model,
            cfg,
            base_name,
        })
    }
}

impl Trainable for LoraModel {
    fn trainable(&self) -> Vec<(String, Tensor)> {
        lora::params(&self.model)
    }

    fn mean_loss(&self, ids: &Tensor, labels: &Tensor, train: bool) -> anyhow::Result<Tensor> {
        causal_lm_loss(&self.model, ids, labels, train)
    }

    fn export(&self, dir: &Path) -> anyhow::Result<()> {
        lora::save(&self.model, &self.cfg, dir, &self.base_name)?;
        Ok(())
    }

    fn device(&self) -> Device {
        self.model.device
    }
}

/// Hands out another source's tensors, marking every one trainable (matrices and the RMSNorm
/// weights, as HF full fine-tuning does) and remembering each by its HF name (for the
/// optimizer, which keeps norms out of weight decay, and the export).
struct Recording<'a> {
    inner: &'a dyn Source,
    seen: RefCell<Vec<(String, Tensor)>>,
}

impl Source for Recording<'_> {
    fn get(
        &self,
        name: &str,
        shape: &[i64],
        kind: Kind,
        device: Device,
    ) -> Result<Tensor, ModelError> {
        let t = self
            .inner
            .get(name, shape, kind, device)?
            .f_set_requires_grad(true)?;
        self.seen
            .borrow_mut()
            .push((name.to_string(), t.shallow_clone()));
        Ok(t)
    }
    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }
    fn origin(&self) -> PathBuf {
        self.inner.origin()
    }
}

/// A Gemma-3 whose weights all train, RMSNorm weights included.
pub struct FullModel {
    pub model: Gemma3,
    /// Every tensor of the checkpoint by HF name, sharing storage with the model.
    tensors: Vec<(String, Tensor)>,
    /// The `config.json` to write next to the weights.
    config_json: String,
    /// Tokenizer files copied into the export.
    tokenizer_files: Vec<PathBuf>,
}

impl FullModel {
    /// Build from `source` (a checkpoint, or random init: seed libtorch's generator first).
    pub fn new(
        cfg_file: &Path,
        source: &dyn Source,
        kind: Kind,
        device: Device,
        tokenizer_files: Vec<PathBuf>,
    ) -> anyhow::Result<Self> {
        let config_json = std::fs::read_to_string(cfg_file)
            .with_context(|| format!("cannot read {}", cfg_file.display()))?;
        let cfg = crate::config::Config::from_file(cfg_file)?;
        let rec = Recording {
            inner: source,
            seen: RefCell::new(Vec::new()),
        };
        let model = Gemma3::from_source(cfg, cfg_file, &rec, kind, device)?;
        Ok(Self {
            model,
            tensors: rec.seen.into_inner(),
            config_json,
            tokenizer_files,
        })
    }
}

impl Trainable for FullModel {
    fn trainable(&self) -> Vec<(String, Tensor)> {
        self.tensors
            .iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect()
    }

    fn mean_loss(&self, ids: &Tensor, labels: &Tensor, train: bool) -> anyhow::Result<Tensor> {
        causal_lm_loss(&self.model, ids, labels, train)
    }

    fn export(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let detached = self
            .tensors
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.f_detach()?)))
            .collect::<Result<Vec<_>, tch::TchError>>()?;
        weights::save(&detached, &dir.join("model.safetensors"))?;
        std::fs::write(dir.join("config.json"), &self.config_json)?;
        for f in &self.tokenizer_files {
            if let Some(name) = f.file_name() {
                std::fs::copy(f, dir.join(name))
                    .with_context(|| format!("cannot copy {}", f.display()))?;
            }
        }
        Ok(())
    }

    fn device(&self) -> Device {
        self.model.device
    }
}
