//! Batched generation with a KV cache: left-padded prefill (HF position ids
//! `cumsum(mask) - 1`), logits only for the last position, greedy or seeded sampling
//! (temperature → top-k → top-p, as HF's warpers), stop tokens, max new tokens, and finished
//! rows dropped from the batch (and the cache).

use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::gemma3::{Gemma3, Inputs};

#[derive(Debug, Clone)]
pub struct Sampling {
    pub greedy: bool,
    pub temperature: f64,
    /// 0 = off.
    pub top_k: i64,
    /// 1.0 = off.
    pub top_p: f64,
}

impl Sampling {
    pub fn greedy() -> Self {
        Self {
            greedy: true,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub max_new_tokens: i64,
    pub stop_ids: Vec<i64>,
    pub pad_id: i64,
    pub sampling: Sampling,
}

/// One finished row: the new tokens (the stop token included when one ended it).
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub tokens: Vec<i64>,
    pub stopped: bool,
}

/// Pick the next token per row from `logits: [B, V]` (fp32).
pub fn select(logits: &Tensor, s: &Sampling) -> Result<Tensor> {
    if s.greedy || s.temperature <= 0.0 {
        return Ok(logits.f_argmax(-1, false)?);
    }
    let mut l = logits.f_div_scalar(s.temperature)?;
    let v = l.size()[1];
    if s.top_k > 0 && s.top_k < v {
        let (top, _) = l.f_topk(s.top_k, -1, true, true)?;
        let kth = top.f_narrow(1, s.top_k - 1, 1)?;
        l = l.f_masked_fill(&l.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?;
    }
    if s.top_p < 1.0 {
        // HF TopPLogitsWarper: sort ascending, drop the tokens whose cumulative probability
        // stays <= 1 - top_p, always keep the most likely one.
        let (sorted, idx) = l.f_sort(-1, false)?;
        let cum = sorted
            .f_softmax(-1, Kind::Float)?
            .f_cumsum(-1, Kind::Float)?;
        let remove = cum.f_le(1.0 - s.top_p)?;
        let remove =
            remove.f_index_fill(1, &Tensor::from_slice(&[v - 1]).f_to_device(l.device())?, 0)?;
        let remove = remove.f_scatter(1, &idx, &remove)?;
        l = l.f_masked_fill(&remove, f64::NEG_INFINITY)?;
    }
    let p = l.f_softmax(-1, Kind::Float)?;
    Ok(p.f_multinomial(1, false)?.f_squeeze_dim(1)?)
}

/// Generate for each prompt (token ids, already including BOS). Rows are returned in prompt
/// order. The model should have its LoRA merged for speed (not required).
pub fn generate(model: &Gemma3, prompts: &[Vec<i64>], opt: &GenOptions) -> Result<Vec<Generated>> {
    let _g = tch::no_grad_guard();
    let dev = model.device;
    let b = prompts.len() as i64;
    if b == 0 {
        return Ok(Vec::new());
    }
    if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
        return Err(ModelError::Input(format!("prompt {i} is empty")));
    }
    let lmax = prompts.iter().map(|p| p.len()).max().unwrap_or(0) as i64;
    let max_pos = model.cfg.max_position_embeddings;
    if lmax + opt.max_new_tokens > max_pos {
        return Err(ModelError::Input(format!(
            "prompt of {lmax} tokens + {} new tokens exceeds the model's context of {max_pos} positions (max_position_embeddings)",
            opt.max_new_tokens
        )));
    }
    let vocab = model.cfg.vocab_size;
    if let Some(bad) = prompts.iter().flatten().find(|&&t| t < 0 || t >= vocab) {
        return Err(ModelError::Input(format!(
            "token id {bad} is outside the model's vocabulary of {vocab}; tokenizer and model do not match"
        )));
    }
    let padded = prompts.iter().any(|p| p.len() as i64 != lmax);
    let mut ids = Vec::with_capacity((b * lmax) as usize);
    let mut mask = Vec::with_capacity((b * lmax) as usize);
    for p in prompts {
        let pad = lmax as usize - p.len();
        ids.extend(std::iter::repeat_n(opt.pad_id, pad).chain(p.iter().copied()));
        mask.extend(std::iter::repeat_n(false, pad).chain(std::iter::repeat_n(true, p.len())));
    }
    let ids = Tensor::f_from_slice(&ids)?
        .f_view([b, lmax])?
        .f_to_device(dev)?;
    let mask = Tensor::f_from_slice(&mask)?
        .f_view([b, lmax])?
        .f_to_device(dev)?;
    let positions = mask
        .f_to_kind(Kind::Int64)?
        .f_cumsum(1, Kind::Int64)?
        .f_sub_scalar(1)?
        .f_clamp_min(0)?;
    let cap = lmax + opt.max_new_tokens;
    // Slots after the prompt are always real tokens.
    let mut key_valid = if padded {
        Some(Tensor::f_cat(
            &[
                mask,
                Tensor::f_ones([b, opt.max_new_tokens], (Kind::Bool, dev))?,
            ],
            1,
        )?)
    } else {
        None
    };
    let mut cache = model.new_cache(b, cap)?;
    let h = model.forward_hidden(
        &Inputs {
            ids: &ids,
            positions: &positions,
            key_valid: key_valid
                .as_ref()
                .map(|k| k.f_narrow(1, 0, lmax))
                .transpose()?
                .as_ref(),
        },
        Some(&mut cache),
        false,
    )?;
    let mut logits = model
        .logits(&h.f_narrow(1, lmax - 1, 1)?.f_squeeze_dim(1)?)?
        .f_to_kind(Kind::Float)?;
    let mut last_pos = positions.f_narrow(1, lmax - 1, 1)?;
    let mut rows: Vec<usize> = (0..prompts.len()).collect();
    let mut out: Vec<Generated> = vec![
        Generated {
            tokens: Vec::new(),
            stopped: false,
        };
        prompts.len()
    ];
    for step in 0..opt.max_new_tokens {
        let next = select(&logits, &opt.sampling)?;
        let host: Vec<i64> = Vec::<i64>::try_from(&next.f_to_device(Device::Cpu)?)?;
        let mut keep = Vec::with_capacity(rows.len());
        for (j, (&row, &tok)) in rows.iter().zip(&host).enumerate() {
            out[row].tokens.push(tok);
            if opt.stop_ids.contains(&tok) {
                out[row].stopped = true;
            } else {
                keep.push(j as i64);
            }
        }
        if keep.is_empty() || step + 1 == opt.max_new_tokens {
            break;
        }
        let mut next = next.f_unsqueeze(1)?;
        if keep.len() < rows.len() {
            let idx = Tensor::f_from_slice(&keep)?.f_to_device(dev)?;
            cache.select_rows(&idx)?;
            next = next.f_index_select(0, &idx)?;
            last_pos = last_pos.f_index_select(0, &idx)?;
            key_valid = key_valid.map(|k| k.f_index_select(0, &idx)).transpose()?;
            rows = keep.iter().map(|&j| rows[j as usize]).collect();
        }
        last_pos = last_pos.f_add_scalar(1)?;
        let kv = key_valid
            .as_ref()
            .map(|k| k.f_narrow(1, 0, cache.len() + 1))
            .transpose()?;
        let h = model.forward_hidden(
            &Inputs {
                ids: &next,
                positions: &last_pos,
                key_valid: kv.as_ref(),
            },
            Some(&mut cache),
            false,
        )?;
        logits = model.logits(&h.f_squeeze_dim(1)?)?.f_to_kind(Kind::Float)?;
    }
    Ok(out)
}
