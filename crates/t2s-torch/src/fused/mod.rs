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

mod ffi;
mod nvrtc;
mod ops;
mod reference;
mod self_check;
mod switches;
mod verdicts;

pub use nvrtc::{compile, compile_check, nvrtc_version};
pub use ops::*;
pub use reference::*;
pub use self_check::self_check;
pub use switches::{
    lora_matmul, set_enabled, set_lora_enabled, set_lora_matmul, LoraMatmul, FUSED_ENV,
    FUSED_LORA_ENV, LORA_MATMUL_ENV,
};
pub use verdicts::{lora_status, serves, serves_lora, status};
