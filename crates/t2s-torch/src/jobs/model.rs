//! Loading what the generation jobs share: model (+ merged adapter), tokenizer, stop ids.

use std::path::PathBuf;

use anyhow::Context;
use t2s::worker::jobs::Generation;
use t2s::worker::protocol::JobSpec;
use tch::Device;

use super::input_dir;
use crate::device::{parse_device, parse_kind};
use crate::generate::{Decoder, GenOptions, Sampling};
use crate::tok::{stop_ids, Tok};
use crate::{lora, Gemma3};

pub struct Loaded {
    pub model: Gemma3,
    pub tok: Tok,
    pub stop_ids: Vec<i64>,
    pub pad_id: i64,
    pub device: Device,
    pub model_dir: PathBuf,
}

/// Model from input `model`, adapter from input `adapter` (merged unless `merge_adapter` is
/// false), in `dtype` (auto: bf16 on CUDA, fp32 on CPU) on the spec's device.
pub fn load(spec: &JobSpec, g: &Generation) -> anyhow::Result<Loaded> {
    let model_dir = input_dir(spec, "model")?.with_context(|| {
        format!(
            "job `{}` needs input `model` (an HF model directory)",
            spec.job
        )
    })?;
    let device = parse_device(&spec.device)?;
    let kind = parse_kind(g.dtype.as_str(), device)?;
    let mut model = Gemma3::load(&model_dir, kind, device)?;
    if let Some(adapter) = input_dir(spec, "adapter")? {
        lora::load(&mut model, &adapter)
            .with_context(|| format!("loading adapter {}", adapter.display()))?;
        // Merged for speed unless asked not to (param `merge_adapter`): merging into bf16
        // weights rounds the adapter's delta to the weights' precision.
        if g.merge_adapter {
            lora::merge(&mut model)?;
        }
    }
    let tok = Tok::load_for(&model_dir, &model.cfg)?;
    let stop = stop_ids(&model_dir, &model.cfg, &tok)?;
    let pad_id = crate::config::id_list(&model.cfg.pad_token_id)
        .first()
        .copied()
        .unwrap_or(0);
    Ok(Loaded {
        model,
        tok,
        stop_ids: stop,
        pad_id,
        device,
        model_dir,
    })
}

/// Generation options (`max_new_tokens`, `greedy`, `temperature`, `top_k`, `top_p`, `seed`,
/// `decoder`); seeds libtorch's generator.
pub fn gen_options(spec: &JobSpec, g: &Generation, l: &Loaded) -> anyhow::Result<GenOptions> {
    let (greedy, temperature, top_p) = (g.greedy, g.temperature, g.top_p);
    if !(0.0..=1.0).contains(&top_p) || top_p == 0.0 {
        anyhow::bail!("job `{}`: top_p must be in (0, 1], got {top_p}", spec.job);
    }
    if !greedy && temperature <= 0.0 {
        anyhow::bail!(
            "job `{}`: temperature must be > 0 when sampling, got {temperature}",
            spec.job
        );
    }
    tch::manual_seed(g.seed as i64);
    Ok(GenOptions {
        max_new_tokens: g.max_new_tokens as i64,
        stop_ids: l.stop_ids.clone(),
        pad_id: l.pad_id,
        sampling: Sampling {
            greedy,
            temperature,
            top_k: g.top_k as i64,
            top_p,
        },
        decoder: Decoder::parse(&g.decoder)?,
    })
}
