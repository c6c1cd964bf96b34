//! Whether the kernels serve a device: compiled, loaded and self-checked once per CUDA
//! device, then answered lock-free per op.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use tch::{Device, Kind, Tensor};

use super::nvrtc::prepare;
use super::self_check::{check_lora_projections, self_check};
use super::switches::{lora_wanted, wanted, FUSED_ENV, FUSED_LORA_ENV};

/// One check's outcome per CUDA device: run once under a lock, then read lock-free by the
/// per-op `serves*` (asked several times per layer: after the first check, atomic loads).
struct Verdicts {
    /// [`UNKNOWN`] until the check ran, then [`READY`] or [`UNUSABLE`]; devices past its end
    /// take the locked path.
    fast: [AtomicU8; 64],
    checked: OnceLock<Mutex<HashMap<usize, std::result::Result<(), String>>>>,
}

const UNKNOWN: u8 = 0;
const READY: u8 = 1;
const UNUSABLE: u8 = 2;

impl Verdicts {
    const fn new() -> Self {
        Self {
            fast: [const { AtomicU8::new(UNKNOWN) }; 64],
            checked: OnceLock::new(),
        }
    }

    /// The verdict for device `index` if known, without locking.
    fn known(&self, index: usize) -> Option<bool> {
        match self.fast.get(index).map(|v| v.load(Ordering::Acquire)) {
            Some(READY) => Some(true),
            Some(UNUSABLE) => Some(false),
            _ => None,
        }
    }

    /// The verdict for device `index`, running `check` the first time.
    fn get_or_check(
        &self,
        index: usize,
        check: impl FnOnce() -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String> {
        let mut done = self
            .checked
            .get_or_init(|| Mutex::new(HashMap::new()))
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(r) = done.get(&index) {
            return r.clone();
        }
        let result = check();
        done.insert(index, result.clone());
        if let Some(v) = self.fast.get(index) {
            v.store(
                if result.is_ok() { READY } else { UNUSABLE },
                Ordering::Release,
            );
        }
        result
    }
}

/// The kernels compiled and self-checked (all but the LoRA down-projection), per device.
static KERNELS: Verdicts = Verdicts::new();
/// The LoRA projections' own check, per device: the newest kernels, checked apart so that a
/// failure there leaves the others serving.
static LORA: Verdicts = Verdicts::new();

/// The CUDA device index of `dev` where the fused kernels may serve, else why not.
fn cuda_index(dev: Device) -> std::result::Result<usize, String> {
    let Device::Cuda(index) = dev else {
        return Err("the fused kernels are CUDA kernels".into());
    };
    if !wanted() {
        return Err(format!("turned off ({FUSED_ENV}=0)"));
    }
    Ok(index)
}

/// A check that failed, as a worker log event (the orchestrator shows it with the node's
/// output), passed through.
fn logged(
    result: std::result::Result<(), String>,
    what: impl FnOnce(&str) -> String,
) -> std::result::Result<(), String> {
    if let Err(e) = &result {
        crate::events::Events.log("warn", what(e));
    }
    result
}

/// Whether the fused kernels are usable on `dev`: compiles and self-checks them on first call
/// for a CUDA device (`Err` says why not; the CPU is never served). Not while `wanted` is off.
pub fn status(dev: Device) -> std::result::Result<(), String> {
    let index = cuda_index(dev)?;
    KERNELS.get_or_check(index, || {
        let result = prepare(index)
            .and_then(|()| tch::with_grad(|| self_check(dev)))
            .map_err(|e| e.to_string());
        logged(result, |e| {
            format!("fused CUDA kernels off on cuda:{index}, unfused ops serve: {e}")
        })
    })
}

/// Whether the fused LoRA projections ([`lora_down`](super::lora_down), [`lora_up`](super::lora_up)) are usable on `dev`:
/// [`status`], then their own check on first call.
pub fn lora_status(dev: Device) -> std::result::Result<(), String> {
    status(dev)?;
    if !lora_wanted() {
        return Err(format!("turned off ({FUSED_LORA_ENV}=0)"));
    }
    let index = cuda_index(dev)?;
    LORA.get_or_check(index, || {
        let result = tch::with_grad(|| check_lora_projections(dev)).map_err(|e| e.to_string());
        logged(result, |e| {
            format!(
                "fused LoRA projections off on cuda:{index}, the dropout kernel and \
                 libtorch's GEMMs serve: {e}"
            )
        })
    })
}

/// Whether `x` goes through the fused kernels: a bf16 CUDA tensor on a device where they
/// passed their self-check.
pub fn serves(x: &Tensor) -> bool {
    cuda_bf16(x).is_some_and(|index| {
        KERNELS
            .known(index)
            .unwrap_or_else(|| status(x.device()).is_ok())
    })
}

/// Whether bf16 `x` (an adapted layer's input or base output) goes through the fused LoRA
/// projections: [`lora_status`], whose verdict implies [`status`]'s, so one lookup.
pub fn serves_lora(x: &Tensor) -> bool {
    lora_wanted()
        && cuda_bf16(x).is_some_and(|index| {
            LORA.known(index)
                .unwrap_or_else(|| lora_status(x.device()).is_ok())
        })
}

/// The device index of a bf16 CUDA tensor while the kernels are wanted.
fn cuda_bf16(x: &Tensor) -> Option<usize> {
    match x.device() {
        Device::Cuda(index) if x.kind() == Kind::BFloat16 && wanted() => Some(index),
        _ => None,
    }
}
