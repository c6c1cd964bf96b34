//! Fused CUDA kernels for bf16 models (`csrc/fused.cpp`): the Gemma RMSNorm (fp32 math, bf16
//! in and out, optionally with the residual add after it), the q/k norms with the RoPE after
//! them and the tanh-GELU gate of the MLP (each one kernel forward and one backward instead of
//! a chain of casts and elementwise kernels), the chunked loss's cross-entropy with its
//! gradient (one kernel, in place), LoRA dropout into fp32 copies of a bf16 input (masks
//! regenerated from a seed in the backward, not stored), and the LoRA projections: `A ·
//! dropout(x)` read straight from the bf16 input and `y + u · Bᵀ` written straight into the
//! bf16 output (no fp32 copies of either). NVRTC compiles them at run time for the device at
//! hand, once per GPU architecture and NVRTC: [`crate::kernel_cache`] keeps the image on disk.
//!
//! They serve bf16 CUDA tensors only, and only after a self-check on the device: on first use
//! the kernels are compiled and their outputs and gradients compared with libtorch's unfused
//! ops ([`reference_rms_norm`], [`reference_qk_norm_rope`], [`reference_gelu_gate`],
//! `train::ce_rows_unfused`, [`reference_lora_dropout`]). A failure is logged once and the
//! unfused ops serve from then on, so a broken or missing NVRTC costs speed, never results.
//! The LoRA projections have a check of their own ([`lora_status`], against
//! [`reference_lora_down`] and [`reference_lora_up`]): where it fails, the other kernels still
//! serve.
//! `T2S_FUSED=0` (or [`set_enabled`]) turns them off; `T2S_FUSED_LORA=0` (or
//! [`set_lora_enabled`]) only the LoRA projections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::kernel_cache::{load_kernels, KernelCache};

/// The environment variable that turns the fused kernels off (`0`) or on (`1`, the default).
pub const FUSED_ENV: &str = "T2S_FUSED";

/// The environment variable that turns the fused LoRA projections off (`0`) while the other
/// fused kernels stay on (a with/without comparison on one GPU).
pub const FUSED_LORA_ENV: &str = "T2S_FUSED_LORA";

/// An on/off switch: the environment decides until the process sets it.
struct Switch {
    /// 0: the environment decides; 1: on; 2: off.
    set: AtomicU8,
    env: &'static str,
    from_env: OnceLock<bool>,
}

impl Switch {
    const fn new(env: &'static str) -> Self {
        Self {
            set: AtomicU8::new(0),
            env,
            from_env: OnceLock::new(),
        }
    }

    fn set(&self, on: bool) {
        self.set.store(if on { 1 } else { 2 }, Ordering::Relaxed);
    }

    fn on(&self) -> bool {
        match self.set.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => *self
                .from_env
                .get_or_init(|| std::env::var(self.env).map_or(true, |v| v.trim() != "0")),
        }
    }
}

/// The environment variable that picks how the fused LoRA projections multiply: `kernels` (the
/// default: t2s's kernels on CUDA cores) or `gemm` (cuBLAS on tensor cores, each fp32 operand
/// split into bf16 pieces to keep fp32 accuracy: the down-projection, and the up-projection's
/// gradients; see [`lora_down`], [`lora_up`]).
pub const LORA_MATMUL_ENV: &str = "T2S_LORA_MATMUL";

static KERNELS_ON: Switch = Switch::new(FUSED_ENV);
static LORA_ON: Switch = Switch::new(FUSED_LORA_ENV);

/// Turn the fused kernels on or off for this process (overrides [`FUSED_ENV`]).
pub fn set_enabled(on: bool) {
    KERNELS_ON.set(on);
}

/// Turn the fused LoRA projections on or off for this process (overrides [`FUSED_LORA_ENV`];
/// they also need the other kernels on).
pub fn set_lora_enabled(on: bool) {
    LORA_ON.set(on);
}

/// How the fused LoRA projections multiply ([`LORA_MATMUL_ENV`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraMatmul {
    /// t2s's kernels on CUDA cores (`t2s_lora_down_*`, `t2s_lora_up_*`).
    Kernels,
    /// cuBLAS bf16 GEMMs with fp32 results over bf16 pieces of the fp32 operands.
    Gemm,
}

impl LoraMatmul {
    pub fn name(self) -> &'static str {
        match self {
            LoraMatmul::Kernels => "kernels",
            LoraMatmul::Gemm => "gemm",
        }
    }
}

/// 0: the environment decides; 1: kernels; 2: gemm.
static LORA_MATMUL_SET: AtomicU8 = AtomicU8::new(0);
static LORA_MATMUL_FROM_ENV: OnceLock<LoraMatmul> = OnceLock::new();

/// How the LoRA projections multiply: set by [`set_lora_matmul`], else [`LORA_MATMUL_ENV`] (an
/// unknown value is logged once and the default kept).
pub fn lora_matmul() -> LoraMatmul {
    match LORA_MATMUL_SET.load(Ordering::Relaxed) {
        1 => LoraMatmul::Kernels,
        2 => LoraMatmul::Gemm,
        _ => *LORA_MATMUL_FROM_ENV.get_or_init(|| {
            match std::env::var(LORA_MATMUL_ENV)
                .ok()
                .as_deref()
                .map(str::trim)
            {
                None | Some("") | Some("kernels") => LoraMatmul::Kernels,
                Some("gemm") => LoraMatmul::Gemm,
                Some(other) => {
                    crate::events::Events.log(
                        "warn",
                        format!(
                            "{LORA_MATMUL_ENV}={other}: expected `kernels` or `gemm`; using kernels"
                        ),
                    );
                    LoraMatmul::Kernels
                }
            }
        }),
    }
}

/// Pick how the LoRA projections multiply in this process (overrides [`LORA_MATMUL_ENV`]).
pub fn set_lora_matmul(mode: LoraMatmul) {
    let v = match mode {
        LoraMatmul::Kernels => 1,
        LoraMatmul::Gemm => 2,
    };
    LORA_MATMUL_SET.store(v, Ordering::Relaxed);
}

fn wanted() -> bool {
    KERNELS_ON.on()
}

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

/// Whether the fused LoRA projections ([`lora_down`], [`lora_up`]) are usable on `dev`:
/// [`status`], then their own check on first call.
pub fn lora_status(dev: Device) -> std::result::Result<(), String> {
    status(dev)?;
    if !LORA_ON.on() {
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
    LORA_ON.on()
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

/// Compile the kernels for compute capability `major.minor` with NVRTC alone (no device): a
/// check of the kernel source that runs on any machine with libnvrtc.
pub fn compile_check(major: i32, minor: i32) -> Result<()> {
    compile(major, minor).map(drop)
}

/// The kernels' image for compute capability `major.minor` (a cubin, or PTX where NVRTC does
/// not know the architecture), checked to hold every entry point.
pub fn compile(major: i32, minor: i32) -> Result<Vec<u8>> {
    #[cfg(t2s_shim)]
    {
        let mut image: *mut std::os::raw::c_char = std::ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: plain values in; on success the shim stored a malloc'ed buffer of `len`
        // bytes, copied here and freed by `t2s_fused_free`.
        crate::shim::call("fused kernels NVRTC compile", |e| unsafe {
            ffi::t2s_fused_compile(major, minor, &mut image, &mut len, e)
        })?;
        if image.is_null() {
            return Err(ModelError::Input("NVRTC compiled no image".into()));
        }
        // SAFETY: non-null, `len` bytes long (see above); freed once, after the copy.
        let bytes = unsafe { std::slice::from_raw_parts(image as *const u8, len) }.to_vec();
        unsafe { ffi::t2s_fused_free(image) };
        Ok(bytes)
    }
    #[cfg(not(t2s_shim))]
    Err(no_shim(&format!(
        "compiling the fused kernels for sm_{major}{minor}"
    )))
}

/// The version of the NVRTC that [`compile`] uses.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    #[cfg(t2s_shim)]
    {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: plain outputs, error slot owned by `call`.
        crate::shim::call("NVRTC version", |e| unsafe {
            ffi::t2s_fused_nvrtc_version(&mut major, &mut minor, e)
        })?;
        Ok((major, minor))
    }
    #[cfg(not(t2s_shim))]
    Err(no_shim("NVRTC"))
}

/// Load the kernels on cuda:`index`: from the disk cache ([`crate::kernel_cache`]) where it has
/// them for this GPU and NVRTC, else compiled now (and kept for the next worker).
fn prepare(index: usize) -> Result<()> {
    let (major, minor) = crate::shim::device_info(index)
        .map(|info| info.capability)
        .ok_or_else(|| ModelError::Input(format!("cuda:{index}: no compute capability")))?;
    let key = KernelCache::key((major, minor), nvrtc_version()?);
    load_kernels(
        KernelCache::from_env().as_ref(),
        &key,
        || compile(major, minor),
        |image| load(index, image),
        |warning| crate::events::Events.log("warn", warning),
    )
    .map(drop)
}

/// Load `image` (from [`compile`]) on cuda:`index`.
fn load(index: usize, image: &[u8]) -> Result<()> {
    #[cfg(t2s_shim)]
    {
        // SAFETY: the slice outlives the call, which copies it; error slot owned by `call`.
        crate::shim::call("fused kernels load", |e| unsafe {
            ffi::t2s_fused_load(index as i32, image.as_ptr().cast(), image.len(), e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = image;
        Err(no_shim(&format!("the fused kernels on cuda:{index}")))
    }
}

/// Gemma's RMSNorm of bf16 `x` over its last dim `D`, `(x · rsqrt(mean(x²) + eps)) · w` in
/// fp32, rounded to bf16, then `residual + y` in bf16 when a residual is given. `weight` is
/// fp32 `[D]`, or `[heads, D]` with `x: [..., heads, D]` (the q/k norms, where `x` may be a
/// strided view). Differentiable in `x` and `residual` (the weight is frozen). Call only where
/// [`serves`] holds.
pub fn rms_norm(
    x: &Tensor,
    weight: &Tensor,
    heads: i64,
    eps: f64,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        let res = residual.map_or(std::ptr::null_mut(), ptr);
        // SAFETY: live tensor handles for the call (see `new_tensor`).
        new_tensor("fused RMSNorm", |out, e| unsafe {
            ffi::t2s_fused_rms_norm(ptr(x), ptr(weight), res, heads, eps, out, e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = (x, weight, heads, eps, residual);
        Err(no_shim("the fused RMSNorm"))
    }
}

/// The q/k norms then split-half RoPE: `rope(rms_norm(x) · w)` with the model's roundings,
/// `x: [..., heads, D]` bf16 (may be a strided view), `weight: [heads, D]` fp32, `cos`/`sin`
/// bf16 `[..., 1, D]` (one row per token; `sin` with rotate_half's sign folded in, as
/// `Gemma3`'s RoPE tables). Call only where [`serves`] holds.
pub fn qk_norm_rope(
    x: &Tensor,
    weight: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    heads: i64,
    eps: f64,
) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        // SAFETY: live tensor handles for the call (see `new_tensor`).
        new_tensor("fused q/k norm + RoPE", |out, e| unsafe {
            ffi::t2s_fused_qk_norm_rope(ptr(x), ptr(weight), ptr(cos), ptr(sin), heads, eps, out, e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = (x, weight, cos, sin, heads, eps);
        Err(no_shim("the fused q/k norm + RoPE"))
    }
}

/// Cross-entropy rows of a chunk of logits `z: [rows, V]` (bf16, contiguous) at int64
/// `targets: [rows]` on its device: returns the fp32 NLL per row and overwrites `z` with
/// `softmax(z) − onehot` in bf16 (the gradient of the summed NLL w.r.t. the logits). Not
/// differentiable: for the chunked loss, which hands its gradient to autograd itself. Call
/// only where [`serves`] holds.
pub fn ce_rows(z: &Tensor, targets: &Tensor) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        // SAFETY: live tensor handles for the call (see `new_tensor`); the kernel writes into
        // `z`'s storage, which the caller owns and nothing else reads meanwhile (a fresh
        // logits chunk).
        new_tensor("fused cross-entropy", |out, e| unsafe {
            ffi::t2s_fused_ce_rows(ptr(z), ptr(targets), out, e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = (z, targets);
        Err(no_shim("the fused cross-entropy"))
    }
}

/// `gelu_tanh(gu[..., :I]) · gu[..., I:]` of the fused gate/up projection `gu: [..., 2I]`
/// (bf16), with the unfused program's roundings. Call only where [`serves`] holds.
pub fn gelu_gate(gu: &Tensor) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        // SAFETY: a live tensor handle for the call (see `new_tensor`).
        new_tensor("fused GELU gate", |out, e| unsafe {
            ffi::t2s_fused_gelu_gate(ptr(gu), out, e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = gu;
        Err(no_shim("the fused GELU gate"))
    }
}

/// LoRA dropout of bf16 `x` into `copies` fp32 copies, `[copies, ...x.shape]`: each copy
/// `fp32(x) · mask / (1 − p)` with its own mask (every adapter sharing an input draws its
/// own, as PEFT's separate Dropout modules do). The masks come from a counter-based hash of a
/// seed drawn here from libtorch's CPU generator (so a seeded step draws the same masks) and
/// are regenerated in the backward, which returns the masked sum over the copies in bf16.
/// Call only where [`serves`] holds.
pub fn lora_dropout(x: &Tensor, copies: i64, p: f64) -> Result<Tensor> {
    let seed = Tensor::f_randint(i64::MAX, [1], (Kind::Int64, Device::Cpu))?.f_int64_value(&[0])?;
    lora_dropout_seeded(x, copies, p, seed)
}

/// [`lora_dropout`] with the seed given.
pub fn lora_dropout_seeded(x: &Tensor, copies: i64, p: f64, seed: i64) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        // SAFETY: a live tensor handle for the call (see `new_tensor`).
        new_tensor("fused LoRA dropout", |out, e| unsafe {
            ffi::t2s_fused_lora_dropout(ptr(x), copies, p, seed, out, e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = (x, copies, p, seed);
        Err(no_shim("the fused LoRA dropout"))
    }
}

/// The largest `n · r` (adapters sharing an input × rank) [`lora_down`] and [`lora_up`] take.
pub const LORA_MAX_RANKS: i64 = 128;
/// The most adapters [`lora_up`] takes side by side in one output.
pub const LORA_UP_MAX_PARTS: usize = 4;

/// The LoRA down-projection of bf16 `x` `[..., D]` through `n` adapters' fp32 `a` `[n, r, D]`:
/// `[n, T, r]` fp32 (`T` the rows of `x`), copy `c` being `(fp32(x) · mask_c / (1 − p)) ·
/// a[c]ᵀ` with the masks [`lora_dropout`] would draw from the same seed (`p = 0`: no dropout
/// and no draw). [`lora_matmul`] picks how: t2s's kernels read straight from `x` (no copy
/// of it is made, kept for the backward or read back); `gemm` runs cuBLAS on tensor cores over
/// bf16 pieces of the fp32 operands, to fp32 accuracy, with a masked bf16 copy of `x` per
/// adapter where there is dropout (made again in the backward, not kept). Call only where
/// [`serves_lora`] holds and `n · r ≤` [`LORA_MAX_RANKS`].
pub fn lora_down(x: &Tensor, a: &Tensor, p: f64) -> Result<Tensor> {
    let seed = if p > 0.0 {
        Tensor::f_randint(i64::MAX, [1], (Kind::Int64, Device::Cpu))?.f_int64_value(&[0])?
    } else {
        0
    };
    lora_down_seeded(x, a, p, seed)
}

/// [`lora_down`] with the seed given.
pub fn lora_down_seeded(x: &Tensor, a: &Tensor, p: f64, seed: i64) -> Result<Tensor> {
    lora_down_with(lora_matmul(), x, a, p, seed)
}

/// [`lora_down`] with the seed and the mode given (`gemm` takes any `n · r`).
pub fn lora_down_with(
    mode: LoraMatmul,
    x: &Tensor,
    a: &Tensor,
    p: f64,
    seed: i64,
) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        let gemm = i32::from(mode == LoraMatmul::Gemm);
        // SAFETY: live tensor handles for the call (see `new_tensor`).
        new_tensor("fused LoRA down-projection", |out, e| unsafe {
            ffi::t2s_fused_lora_down(ptr(x), ptr(a), p, seed, gemm, out, e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = (mode, x, a, p, seed);
        Err(no_shim("the fused LoRA down-projection"))
    }
}

/// The `gemm` mode of [`lora_down`] with the dropout masks given as bits `[n, T, ceil(D /
/// 32)]` (int32, bit `d % 32` of word `d / 32` set where copy `c` keeps `(t, d)`; ignored for
/// `p = 0`), on any device: on the CPU the products run in fp32 on the same bf16 pieces and
/// the masks through libtorch's ops, so the tests check its arithmetic without a GPU.
pub fn lora_down_gemm_with_bits(x: &Tensor, a: &Tensor, bits: &Tensor, p: f64) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        // SAFETY: live tensor handles for the call (see `new_tensor`).
        new_tensor("LoRA down-projection (gemm)", |out, e| unsafe {
            ffi::t2s_fused_lora_down_gemm_bits(ptr(x), ptr(a), ptr(bits), p, out, e)
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = (x, a, bits, p);
        Err(no_shim("the LoRA down-projection (gemm)"))
    }
}

/// The LoRA up-projection into bf16 `y` `[..., O]`: `bf16(fp32(y) + u[c] · b[c]ᵀ)` over the
/// columns `offsets[c]..offsets[c + 1]` of adapter `c`, for fp32 `u` `[n, T, r]` (the scaled
/// rank activations, `T` the rows of `y`) and `b` `[O, r]` (the adapters' B matrices
/// stacked). PEFT's `result + lora(x)` in fp32 and cast back, without the fp32 deltas; the
/// backward reads the bf16 gradient as it is. Call only where [`serves_lora`] holds, with at
/// most [`LORA_UP_MAX_PARTS`] adapters, `n · r ≤` [`LORA_MAX_RANKS`] and offsets that are
/// multiples of 4.
pub fn lora_up(y: &Tensor, u: &Tensor, b: &Tensor, offsets: &[i64]) -> Result<Tensor> {
    lora_up_with(lora_matmul(), y, u, b, offsets)
}

/// [`lora_up`] with the mode given: `gemm` takes the gradients as tensor-core GEMMs over bf16
/// pieces (the forward, one pass over the output, is the kernel either way), and runs on the
/// CPU too (its forward there with libtorch's ops), so the tests check its arithmetic.
pub fn lora_up_with(
    mode: LoraMatmul,
    y: &Tensor,
    u: &Tensor,
    b: &Tensor,
    offsets: &[i64],
) -> Result<Tensor> {
    #[cfg(t2s_shim)]
    {
        let gemm = i32::from(mode == LoraMatmul::Gemm);
        // SAFETY: live tensor handles and a slice of `offsets.len()` values for the call.
        new_tensor("fused LoRA up-projection", |out, e| unsafe {
            ffi::t2s_fused_lora_up(
                ptr(y),
                ptr(u),
                ptr(b),
                offsets.as_ptr(),
                offsets.len() as i64,
                gemm,
                out,
                e,
            )
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = (mode, y, u, b, offsets);
        Err(no_shim("the fused LoRA up-projection"))
    }
}

/// What [`lora_up`] computes, with libtorch's ops (the model's unfused path): each adapter's
/// fp32 delta `u[c] · b[c]ᵀ`, side by side, added to `y` in fp32 and rounded once.
pub fn reference_lora_up(y: &Tensor, u: &Tensor, b: &Tensor, offsets: &[i64]) -> Result<Tensor> {
    let deltas = offsets
        .windows(2)
        .enumerate()
        .map(|(c, w)| {
            Ok(u.f_get(c as i64)?
                .f_linear::<Tensor>(&b.f_narrow(0, w[0], w[1] - w[0])?, None)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let delta = Tensor::f_cat(&deltas, -1)?.f_view(y.size().as_slice())?;
    Ok(y.f_add(&delta)?.f_to_kind(y.kind())?)
}

/// What [`lora_down`] computes, with libtorch's ops: the dropped fp32 copies (`keep`, as in
/// [`reference_lora_dropout`], `[n, ...x.shape]`; `None` without dropout) times each `a[c]ᵀ`.
pub fn reference_lora_down(
    x: &Tensor,
    a: &Tensor,
    keep: Option<&Tensor>,
    p: f64,
) -> Result<Tensor> {
    let d = x.size().last().copied().unwrap_or(0);
    let n = a.size()[0];
    let rows = x.f_reshape([-1, d])?;
    let copies = match keep {
        Some(k) => reference_lora_dropout(&rows, &k.f_reshape([n, -1, d])?, p)?,
        None => {
            let r = rows.f_to_kind(Kind::Float)?.f_unsqueeze(0)?;
            let shape = [n, r.size()[1], d];
            r.f_expand(shape.as_slice(), false)?
        }
    };
    Ok(copies.f_bmm(&a.f_transpose(1, 2)?)?)
}

/// What [`lora_dropout`] computes, with libtorch's ops, given the masks it drew (`keep`:
/// `[copies, ...x.shape]`, 1 where kept): `fp32(x) · keep · (1 / (1 − p))`.
pub fn reference_lora_dropout(x: &Tensor, keep: &Tensor, p: f64) -> Result<Tensor> {
    let scale = (1.0 / (1.0 - p)) as f32;
    Ok(x.f_to_kind(Kind::Float)?
        .f_unsqueeze(0)?
        .f_mul(&keep.f_to_kind(Kind::Float)?)?
        .f_mul_scalar(f64::from(scale))?)
}

/// What [`rms_norm`] computes, with libtorch's unfused ops (the model's path without the
/// fused kernels).
pub fn reference_rms_norm(
    x: &Tensor,
    weight: &Tensor,
    heads: i64,
    eps: f64,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let d = x.size().last().copied().unwrap_or(0);
    let w = if heads > 1 && weight.numel() as i64 == heads * d {
        weight.f_view([heads, d])?
    } else {
        weight.f_view([d])?
    };
    let y = x
        .f_to_kind(Kind::Float)?
        .f_rms_norm([d].as_slice(), None::<&Tensor>, eps)?
        .f_mul(&w)?
        .f_to_kind(x.kind())?;
    Ok(match residual {
        Some(r) => r.f_add(&y)?,
        None => y,
    })
}

/// What [`qk_norm_rope`] computes, with libtorch's unfused ops (the model's path).
pub fn reference_qk_norm_rope(
    x: &Tensor,
    weight: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    heads: i64,
    eps: f64,
) -> Result<Tensor> {
    crate::gemma3::rope(&reference_rms_norm(x, weight, heads, eps, None)?, cos, sin)
}

/// What [`gelu_gate`] computes, with libtorch's unfused ops.
pub fn reference_gelu_gate(gu: &Tensor) -> Result<Tensor> {
    let i = gu.size().last().copied().unwrap_or(0) / 2;
    let parts = gu.f_split(i, -1)?;
    Ok(parts[0].f_gelu("tanh")?.f_mul(&parts[1])?)
}

/// A fixed, irregular pattern of roughly unit scale, `sin(0.7·i + seed)·(1 + 0.5·cos(1.3·i))`
/// over the elements in order: input for the self-check that draws nothing from the generator.
fn pattern(shape: impl Into<Vec<i64>>, seed: i64, opts: (Kind, Device)) -> Result<Tensor> {
    let shape: Vec<i64> = shape.into();
    let n: i64 = shape.iter().product();
    let i = Tensor::f_arange(n, (Kind::Float, opts.1))?;
    let v = i
        .f_mul_scalar(0.7)?
        .f_add_scalar(seed as f64)?
        .f_sin()?
        .f_mul(
            &i.f_mul_scalar(1.3)?
                .f_cos()?
                .f_mul_scalar(0.5)?
                .f_add_scalar(1.0)?,
        )?;
    Ok(v.f_reshape(shape.as_slice())?.f_to_kind(opts.0)?)
}

/// Largest |a − b| relative to the larger of 1 and max |b|.
fn relative_gap(a: &Tensor, b: &Tensor) -> Result<f64> {
    let (a, b) = (a.f_to_kind(Kind::Float)?, b.f_to_kind(Kind::Float)?);
    let gap = a.f_sub(&b)?.f_abs()?.f_max()?.f_double_value(&[])?;
    let scale = b.f_abs()?.f_max()?.f_double_value(&[])?.max(1.0);
    Ok(gap / scale)
}

/// Outputs and input gradients of `fused` and `reference` on the same inputs, compared: each
/// within `tol` of the reference's magnitude (bf16 rounding may differ by one unit, 2^-8,
/// where fp32 sums are taken in another order).
fn compare(
    what: &str,
    inputs: &[&Tensor],
    fused: &dyn Fn(&[Tensor]) -> Result<Tensor>,
    reference: &dyn Fn(&[Tensor]) -> Result<Tensor>,
    tol: f64,
) -> Result<()> {
    let run = |f: &dyn Fn(&[Tensor]) -> Result<Tensor>| -> Result<(Tensor, Vec<Tensor>)> {
        let leaves: Vec<Tensor> = inputs
            .iter()
            .map(|t| Ok(t.f_detach()?.f_set_requires_grad(true)?))
            .collect::<Result<_>>()?;
        let y = f(&leaves)?;
        let up = Tensor::f_ones_like(&y)?
            .f_mul_scalar(0.5)?
            .f_add(&y.f_detach()?)?;
        let loss = y
            .f_to_kind(Kind::Float)?
            .f_mul(&up.f_to_kind(Kind::Float)?)?;
        let grads = Tensor::f_run_backward(&[loss.f_sum(Kind::Float)?], &leaves, false, false)?;
        Ok((y.f_detach()?, grads))
    };
    let (yf, gf) = run(fused)?;
    let (yr, gr) = run(reference)?;
    let mut worst = relative_gap(&yf, &yr)?;
    for (a, b) in gf.iter().zip(&gr) {
        worst = worst.max(relative_gap(a, b)?);
    }
    if worst.is_finite() && worst <= tol {
        Ok(())
    } else {
        Err(ModelError::Input(format!(
            "self-check of the fused {what}: differs from libtorch's ops by {worst:.3e} (limit {tol:.1e})"
        )))
    }
}

/// The fused kernels against libtorch's unfused ops on small inputs, outputs and gradients: a
/// hidden-size norm with a residual, per-head norms of a strided view, q/k norms + RoPE, the
/// cross-entropy and the gate. The inputs are fixed patterns, not random draws: the check must
/// not move libtorch's generator (a training step seeds it, then draws its dropout masks).
pub fn self_check(dev: Device) -> Result<()> {
    const TOL: f64 = 2e-2;
    let opts = (Kind::BFloat16, dev);
    let eps = 1e-6;
    let x = pattern([3, 5, 96], 1, opts)?;
    let res = pattern([3, 5, 96], 2, opts)?;
    let w = pattern([96], 3, (Kind::Float, dev))?
        .f_mul_scalar(0.1)?
        .f_add_scalar(1.0)?;
    compare(
        "RMSNorm + residual",
        &[&x, &res],
        &|t| rms_norm(&t[0], &w, 1, eps, Some(&t[1])),
        &|t| reference_rms_norm(&t[0], &w, 1, eps, Some(&t[1])),
        TOL,
    )?;
    // q/k heads of a fused projection: [B, S, 6, D] whose first 5 heads are normalised.
    let qkv = pattern([2, 3, 6, 64], 4, opts)?;
    let wh = pattern([5, 64], 5, (Kind::Float, dev))?
        .f_mul_scalar(0.1)?
        .f_add_scalar(1.0)?;
    compare(
        "per-head RMSNorm",
        &[&qkv],
        &|t| rms_norm(&t[0].f_narrow(2, 0, 5)?, &wh, 5, eps, None),
        &|t| reference_rms_norm(&t[0].f_narrow(2, 0, 5)?, &wh, 5, eps, None),
        TOL,
    )?;
    let (cos, sin) = (
        pattern([2, 3, 1, 64], 6, opts)?,
        pattern([2, 3, 1, 64], 7, opts)?,
    );
    compare(
        "q/k norm + RoPE",
        &[&qkv],
        &|t| qk_norm_rope(&t[0].f_narrow(2, 0, 5)?, &wh, &cos, &sin, 5, eps),
        &|t| reference_qk_norm_rope(&t[0].f_narrow(2, 0, 5)?, &wh, &cos, &sin, 5, eps),
        TOL,
    )?;
    // Cross-entropy rows (no autograd: outputs compared, NLL and the in-place gradient).
    let z = pattern([5, 300], 8, opts)?.f_mul_scalar(3.0)?;
    let t = Tensor::f_from_slice(&[0i64, 299, 17, 150, 3])?.f_to_device(dev)?;
    let (nll_ref, g_ref) = crate::train::ce_rows_unfused(&z, &t.f_view([-1, 1])?, Kind::BFloat16)?;
    let zf = z.f_detach_copy()?;
    let nll = ce_rows(&zf, &t)?;
    let gap = relative_gap(&nll, &nll_ref)?.max(relative_gap(&zf, &g_ref)?);
    if !(gap.is_finite() && gap <= TOL) {
        return Err(ModelError::Input(format!(
            "self-check of the fused cross-entropy: differs from libtorch's ops by {gap:.3e}"
        )));
    }
    let gu = pattern([2, 3, 2 * 80], 9, opts)?;
    compare(
        "GELU gate",
        &[&gu],
        &|t| gelu_gate(&t[0]),
        &|t| reference_gelu_gate(&t[0]),
        TOL,
    )?;
    check_lora_dropout(dev)
}

/// The fused LoRA projections against libtorch's ops, outputs and gradients, over shapes that
/// leave partial tiles and splits everywhere: the down-projection with dropout (the masks read
/// off the fused dropout, checked before, for the same seed) and without, the up-projection
/// over three adapters' columns of unequal width.
fn check_lora_projections(dev: Device) -> Result<()> {
    // 300 tokens and 300 columns: two splits of each reduction, the second partial.
    let (n, r, d) = (3, 5, 300);
    let x = pattern([2, 150, d], 12, (Kind::BFloat16, dev))?;
    let a = pattern([n, r, d], 13, (Kind::Float, dev))?.f_mul_scalar(0.1)?;
    for p in [0.25, 0.0] {
        let keep = if p > 0.0 {
            let ones = Tensor::f_ones([2, 150, d], (Kind::BFloat16, dev))?;
            Some(lora_dropout_seeded(&ones, n, p, 777)?.f_ne(0.0)?)
        } else {
            None
        };
        compare(
            &format!("LoRA down-projection (dropout {p})"),
            &[&x, &a],
            &|t| lora_down_seeded(&t[0], &t[1], p, 777),
            &|t| reference_lora_down(&t[0], &t[1], keep.as_ref(), p),
            2e-2,
        )?;
    }
    // One adapter's columns wider than a split, the others narrower than a tile.
    let offsets = [0i64, 300, 312, 400];
    let y = pattern([2, 150, 400], 14, (Kind::BFloat16, dev))?;
    let u = pattern([3, 300, r], 15, (Kind::Float, dev))?;
    let b = pattern([400, r], 16, (Kind::Float, dev))?.f_mul_scalar(0.1)?;
    compare(
        "LoRA up-projection",
        &[&y, &u, &b],
        &|t| lora_up(&t[0], &t[1], &t[2], &offsets),
        &|t| reference_lora_up(&t[0], &t[1], &t[2], &offsets),
        2e-2,
    )
}

/// The fused LoRA dropout against libtorch's ops with the masks it drew (read off its output:
/// the input pattern has no zeros), forward and backward, and the masks' keep rate.
fn check_lora_dropout(dev: Device) -> Result<()> {
    let (copies, p) = (3, 0.25);
    let x = pattern([4, 5, 96], 10, (Kind::BFloat16, dev))?.f_add_scalar(2.0)?;
    let leaf = x.f_detach()?.f_set_requires_grad(true)?;
    let y = lora_dropout_seeded(&leaf, copies, p, 12345)?;
    let keep = y.f_ne(0.0)?;
    let rate = keep
        .f_to_kind(Kind::Float)?
        .f_mean(Kind::Float)?
        .f_double_value(&[])?;
    let g = pattern(y.size(), 11, (Kind::Float, dev))?;
    let dx =
        &Tensor::f_run_backward(&[y.f_mul(&g)?.f_sum(Kind::Float)?], &[&leaf], false, false)?[0];
    let y_ref = reference_lora_dropout(&x, &keep, p)?;
    let dx_ref = g
        .f_mul(&keep.f_to_kind(Kind::Float)?)?
        .f_mul_scalar(f64::from((1.0 / (1.0 - p)) as f32))?
        .f_sum_dim_intlist([0i64].as_slice(), false, Kind::Float)?
        .f_to_kind(Kind::BFloat16)?;
    let gap = relative_gap(&y, &y_ref)?.max(relative_gap(dx, &dx_ref)?);
    // 1,440 draws at p = 0.25: the keep rate is 0.75 ± 0.011 (one standard deviation).
    if gap.is_finite() && gap <= 2e-2 && (0.65..=0.85).contains(&rate) {
        Ok(())
    } else {
        Err(ModelError::Input(format!(
            "self-check of the fused LoRA dropout: differs from libtorch's ops by {gap:.3e}, keep rate {rate:.3}"
        )))
    }
}

/// A tensor handle as the shim takes it (`at::Tensor*`, which tch's `C_tensor` is).
#[cfg(t2s_shim)]
fn ptr(t: &Tensor) -> *mut std::os::raw::c_void {
    t.as_ptr() as *mut _
}

/// Call a shim entry point that stores a new `at::Tensor*` in its `out` slot, and own it.
#[cfg(t2s_shim)]
fn new_tensor(
    what: &str,
    f: impl FnOnce(*mut *mut std::os::raw::c_void, *mut *mut std::os::raw::c_char) -> i32,
) -> Result<Tensor> {
    let mut out = std::ptr::null_mut();
    crate::shim::call(what, |e| f(&mut out, e))?;
    // SAFETY: on success the shim stored a heap-allocated `at::Tensor*` (tch's `C_tensor`),
    // which the returned `Tensor` now owns and frees.
    Ok(unsafe { Tensor::from_ptr(out as *mut _) })
}

#[cfg(not(t2s_shim))]
fn no_shim(what: &str) -> ModelError {
    ModelError::Input(format!(
        "{what} needs a worker built with the CUDA shim (see `t2s doctor`)"
    ))
}

#[cfg(t2s_shim)]
mod ffi {
    use std::os::raw::{c_char, c_int, c_longlong, c_void};
    extern "C" {
        pub fn t2s_fused_nvrtc_version(
            major: *mut c_int,
            minor: *mut c_int,
            err: *mut *mut c_char,
        ) -> c_int;
        pub fn t2s_fused_compile(
            major: c_int,
            minor: c_int,
            image: *mut *mut c_char,
            len: *mut usize,
            err: *mut *mut c_char,
        ) -> c_int;
        pub fn t2s_fused_free(image: *mut c_char);
        pub fn t2s_fused_load(
            device: c_int,
            image: *const c_char,
            len: usize,
            err: *mut *mut c_char,
        ) -> c_int;
        pub fn t2s_fused_rms_norm(
            x: *mut c_void,
            w: *mut c_void,
            res: *mut c_void,
            heads: c_longlong,
            eps: f64,
            out: *mut *mut c_void,
            err: *mut *mut c_char,
        ) -> c_int;
        pub fn t2s_fused_ce_rows(
            z: *mut c_void,
            targets: *mut c_void,
            out: *mut *mut c_void,
            err: *mut *mut c_char,
        ) -> c_int;
        #[allow(clippy::too_many_arguments)]
        pub fn t2s_fused_qk_norm_rope(
            x: *mut c_void,
            w: *mut c_void,
            cos: *mut c_void,
            sin: *mut c_void,
            heads: c_longlong,
            eps: f64,
            out: *mut *mut c_void,
            err: *mut *mut c_char,
        ) -> c_int;
        pub fn t2s_fused_gelu_gate(
            gu: *mut c_void,
            out: *mut *mut c_void,
            err: *mut *mut c_char,
        ) -> c_int;
        #[allow(clippy::too_many_arguments)]
        pub fn t2s_fused_lora_down(
            x: *mut c_void,
            a: *mut c_void,
            p: f64,
            seed: c_longlong,
            gemm: c_int,
            out: *mut *mut c_void,
            err: *mut *mut c_char,
        ) -> c_int;
        pub fn t2s_fused_lora_down_gemm_bits(
            x: *mut c_void,
            a: *mut c_void,
            bits: *mut c_void,
            p: f64,
            out: *mut *mut c_void,
            err: *mut *mut c_char,
        ) -> c_int;
        #[allow(clippy::too_many_arguments)]
        pub fn t2s_fused_lora_up(
            y: *mut c_void,
            u: *mut c_void,
            b: *mut c_void,
            offsets: *const c_longlong,
            n_offsets: c_longlong,
            gemm: c_int,
            out: *mut *mut c_void,
            err: *mut *mut c_char,
        ) -> c_int;
        pub fn t2s_fused_lora_dropout(
            x: *mut c_void,
            copies: c_longlong,
            p: f64,
            seed: c_longlong,
            out: *mut *mut c_void,
            err: *mut *mut c_char,
        ) -> c_int;
    }
}
