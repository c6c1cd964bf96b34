//! The shim's C entry points for the fused kernels and the glue that calls them.

#[cfg(not(t2s_shim))]
use crate::error::ModelError;
#[cfg(t2s_shim)]
use crate::error::Result;
#[cfg(t2s_shim)]
use tch::Tensor;

/// A tensor handle as the shim takes it (`at::Tensor*`, which tch's `C_tensor` is).
#[cfg(t2s_shim)]
pub(super) fn ptr(t: &Tensor) -> *mut std::os::raw::c_void {
    t.as_ptr() as *mut _
}

/// Call a shim entry point that stores a new `at::Tensor*` in its `out` slot, and own it.
#[cfg(t2s_shim)]
pub(super) fn new_tensor(
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
pub(super) fn no_shim(what: &str) -> ModelError {
    ModelError::Input(format!(
        "{what} needs a worker built with the CUDA shim (see `t2s doctor`)"
    ))
}

#[cfg(t2s_shim)]
pub(super) mod c {
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
