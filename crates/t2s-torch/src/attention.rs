//! How each layer type attends in one forward call: the causal flag alone where that is exact
//! (so SDPA can take the flash path), no mask for unpadded one-token decode steps, or an
//! explicit boolean mask built from TF's predicates (`masking_utils.py`):
//! key `k` is visible to query `q` iff `k <= q`, and for sliding layers also `k > q - window`,
//! and the key is not padding. Indices are slots in the (cached) sequence, padding included.

use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// The attention variant of one layer type for one forward call.
#[derive(Debug)]
pub enum AttnMode {
    /// No cache, no padding, every key in the window: SDPA `is_causal`.
    Causal,
    /// All keys from slot `key_start` on are visible (one-token decode, no padding).
    All { key_start: i64 },
    /// Explicit mask `[B|1, 1, S, K]` (true = attend) over keys from slot `key_start` on.
    Masked { mask: Tensor, key_start: i64 },
}

impl AttnMode {
    /// First key slot this call attends over (older cached keys are out of the window).
    pub fn key_start(&self) -> i64 {
        match self {
            AttnMode::Causal => 0,
            AttnMode::All { key_start } | AttnMode::Masked { key_start, .. } => *key_start,
        }
    }
}

/// The modes of the full and the sliding layers for one call.
#[derive(Debug)]
pub struct Masks {
    pub full: AttnMode,
    pub sliding: AttnMode,
}

fn build(
    past: i64,
    s: i64,
    key_start: i64,
    window: Option<i64>,
    key_valid: Option<&Tensor>,
    dev: Device,
) -> Result<Tensor> {
    let q = Tensor::f_arange_start(past, past + s, (Kind::Int64, dev))?.f_unsqueeze(1)?;
    let k = Tensor::f_arange_start(key_start, past + s, (Kind::Int64, dev))?.f_unsqueeze(0)?;
    let mut allowed = k.f_le_tensor(&q)?;
    if let Some(w) = window {
        allowed = allowed.f_logical_and(&k.f_gt_tensor(&q.f_sub_scalar(w)?)?)?;
    }
    let mut m = allowed.f_unsqueeze(0)?.f_unsqueeze(0)?; // [1,1,S,K]
    if let Some(valid) = key_valid {
        let kl = past + s - key_start;
        let v = valid
            .f_narrow(1, key_start, kl)?
            .f_unsqueeze(1)?
            .f_unsqueeze(1)?; // [B,1,1,K]
        m = m.f_logical_and(&v)?;
    }
    // A query always sees itself, so rows of padding queries are never empty (an empty row
    // would give NaN that 0-probability pads would spread). Real queries are unaffected.
    let diag = k.f_eq_tensor(&q)?.f_unsqueeze(0)?.f_unsqueeze(0)?;
    Ok(m.f_logical_or(&diag)?)
}

impl Masks {
    /// One decode step at the device-side `slot: [1]` int64 over the whole cache
    /// (`key_valid: [B, capacity]`, false at padding): key `k` is visible iff it is valid and
    /// `k <= slot`, and for sliding layers also `k > slot - window`. Built from tensors only,
    /// so it can be captured in a CUDA graph.
    pub fn at_slot(slot: &Tensor, key_valid: &Tensor, window: i64) -> Result<Self> {
        let cap = key_valid.size()[1];
        let k = Tensor::f_arange(cap, (Kind::Int64, key_valid.device()))?;
        let seen = k.f_le_tensor(slot)?.f_logical_and(key_valid)?; // [B, cap]
        let in_window = k.f_gt_tensor(&slot.f_sub_scalar(window)?)?;
        let as_mask = |m: Tensor| -> Result<AttnMode> {
            Ok(AttnMode::Masked {
                mask: m.f_unsqueeze(1)?.f_unsqueeze(1)?,
                key_start: 0,
            })
        };
        Ok(Self {
            sliding: as_mask(seen.f_logical_and(&in_window)?)?,
            full: as_mask(seen)?,
        })
    }

    /// `past`: slots already in the cache; `s`: new slots; `key_valid: [B, past + s]` or `None`
    /// when no slot is padding.
    pub fn new(
        past: i64,
        s: i64,
        window: i64,
        key_valid: Option<&Tensor>,
        dev: Device,
    ) -> Result<Self> {
        let padded = key_valid.is_some();
        let full = if !padded && past == 0 {
            AttnMode::Causal
        } else if !padded && s == 1 {
            AttnMode::All { key_start: 0 }
        } else {
            AttnMode::Masked {
                mask: build(past, s, 0, None, key_valid, dev)?,
                key_start: 0,
            }
        };
        let ks = (past - (window - 1)).max(0);
        let sliding = if !padded && past == 0 && s <= window {
            AttnMode::Causal
        } else if !padded && s == 1 {
            AttnMode::All { key_start: ks }
        } else {
            AttnMode::Masked {
                mask: build(past, s, ks, Some(window), key_valid, dev)?,
                key_start: ks,
            }
        };
        Ok(Self { full, sliding })
    }
}
