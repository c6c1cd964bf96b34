//! The switches of the fused kernels: on/off from the environment or the process, and how
//! the LoRA projections multiply.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

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
/// gradients; see [`lora_down`](super::lora_down), [`lora_up`](super::lora_up)).
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

pub(super) fn wanted() -> bool {
    KERNELS_ON.on()
}

/// Whether the LoRA projections are wanted ([`FUSED_LORA_ENV`], [`set_lora_enabled`]).
pub(super) fn lora_wanted() -> bool {
    LORA_ON.on()
}
