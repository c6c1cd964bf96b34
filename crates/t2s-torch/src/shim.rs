//! The C++ shim `csrc/shim.cpp`: what t2s-worker needs of libtorch that tch does not bind.
//! CUDA graph capture/replay (used by [`crate::cuda_graph`]), the CUDA device facts `doctor`
//! reports, the switch of SDPA's cuDNN attention, and libtorch's profiler. `build.rs` compiles
//! it against the venv's torch headers when the CUDA headers that come with PyPI's torch are
//! present, and sets `cfg(t2s_shim)`; without it these functions say so.

use crate::error::{ModelError, Result};

#[cfg(t2s_shim)]
pub(crate) mod ffi {
    use std::os::raw::{c_char, c_int, c_void};
    extern "C" {
        pub fn t2s_graph_new(device: c_int, err: *mut *mut c_char) -> *mut c_void;
        pub fn t2s_graph_enter(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        pub fn t2s_graph_capture_begin(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        pub fn t2s_graph_capture_end(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        pub fn t2s_graph_leave(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        pub fn t2s_graph_replay(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        pub fn t2s_graph_free(g: *mut c_void);
        pub fn t2s_free_message(m: *mut c_char);
        pub fn t2s_cuda_device_info(
            device: c_int,
            name: *mut c_char,
            name_len: c_int,
            total_bytes: *mut u64,
            major: *mut c_int,
            minor: *mut c_int,
            err: *mut *mut c_char,
        ) -> c_int;
        pub fn t2s_sdp_set_cudnn(enabled: c_int, err: *mut *mut c_char) -> c_int;
        pub fn t2s_sdp_cudnn_enabled() -> c_int;
        pub fn t2s_sdp_set_backends(mask: c_int, err: *mut *mut c_char) -> c_int;
        pub fn t2s_sdp_backends() -> c_int;
        pub fn t2s_profile_start(cuda: c_int, err: *mut *mut c_char) -> c_int;
        pub fn t2s_profile_stop(path: *const c_char, err: *mut *mut c_char) -> c_int;
    }
}

/// What `doctor` reports of one CUDA device.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub name: String,
    pub total_memory_bytes: u64,
    pub capability: (i32, i32),
}

/// Name, memory and compute capability of CUDA device `index` (needs the shim: `None` in a
/// build without it, or when the device cannot be queried).
pub fn device_info(index: usize) -> Option<DeviceInfo> {
    #[cfg(t2s_shim)]
    {
        let mut name = vec![0 as std::os::raw::c_char; 256];
        let (mut total, mut major, mut minor) = (0u64, 0, 0);
        // SAFETY: the buffer outlives the call and its length is passed; outputs are plain.
        call("device properties", |e| unsafe {
            ffi::t2s_cuda_device_info(
                index as i32,
                name.as_mut_ptr(),
                name.len() as i32,
                &mut total,
                &mut major,
                &mut minor,
                e,
            )
        })
        .ok()?;
        // SAFETY: snprintf NUL-terminated the buffer.
        let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Some(DeviceInfo {
            name,
            total_memory_bytes: total,
            capability: (major, minor),
        })
    }
    #[cfg(not(t2s_shim))]
    {
        let _ = index;
        None
    }
}

/// The environment variable that switches SDPA's cuDNN attention backend: `1` on, `0` off;
/// unset or empty: off, unless [`SDPA_ENV`] names the backends. libtorch 2.11 tries cuDNN
/// attention first on sm90/sm100 and builds one cuDNN graph per new problem shape (batch,
/// lengths): host time that training on batches of varying length and op-by-op decoding pay
/// again and again. Measured on an H200 (docs/bench-log.md, the tenth session): a
/// base-training node 13.7 s with it, 3.6 s without; op-by-op generation 5.3× faster without;
/// one fixed training shape 1% faster with it. Off leaves flash and memory-efficient attention.
pub const SDPA_CUDNN_ENV: &str = "T2S_SDPA_CUDNN";

/// Apply [`SDPA_CUDNN_ENV`] (a bad value is an error naming it); `backends_named`: [`SDPA_ENV`]
/// chose the backends, which unset [`SDPA_CUDNN_ENV`] then leaves alone. Without the shim the
/// switch cannot be reached: setting it is then an error rather than a silent no-op.
fn apply_sdpa_cudnn_env(backends_named: bool) -> Result<()> {
    let value = std::env::var(SDPA_CUDNN_ENV).unwrap_or_default();
    let enabled = match value.trim() {
        "" if backends_named => return Ok(()),
        "" => false,
        "0" => false,
        "1" => true,
        other => {
            return Err(ModelError::Input(format!(
                "{SDPA_CUDNN_ENV}={other}: expected 0 (no cuDNN attention) or 1"
            )))
        }
    };
    #[cfg(t2s_shim)]
    {
        // SAFETY: plain value in, error slot owned by `call`.
        call("SDPA cuDNN switch", |e| unsafe {
            ffi::t2s_sdp_set_cudnn(enabled as i32, e)
        })
    }
    #[cfg(not(t2s_shim))]
    if value.trim().is_empty() {
        Ok(()) // the default: nothing to switch in a worker without CUDA
    } else {
        Err(no_shim(&format!("{SDPA_CUDNN_ENV}={}", enabled as i32)))
    }
}

/// The environment variable that names the SDPA backends attention may use, comma-separated
/// from `flash`, `efficient`, `math`, `cudnn`, `fa3` (FlashAttention-3, Hopper, where libtorch
/// has it): e.g. `T2S_SDPA=flash,math`. Unset or empty: libtorch's choice. Applied before
/// [`SDPA_CUDNN_ENV`], which can still switch cuDNN on or off.
pub const SDPA_ENV: &str = "T2S_SDPA";

const SDPA_BACKENDS: [&str; 5] = ["flash", "efficient", "math", "cudnn", "fa3"];

/// The backend bit mask a [`SDPA_ENV`] value names (`None` when unset/empty).
pub fn parse_sdpa_backends(value: &str) -> Result<Option<i32>> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    let mut mask = 0;
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match SDPA_BACKENDS.iter().position(|b| *b == name) {
            Some(i) => mask |= 1 << i,
            None => {
                return Err(ModelError::Input(format!(
                    "{SDPA_ENV}={value}: unknown backend `{name}` (expected a comma-separated list of {})",
                    SDPA_BACKENDS.join(", ")
                )))
            }
        }
    }
    Ok(Some(mask))
}

/// Apply [`SDPA_ENV`], then [`SDPA_CUDNN_ENV`] (a bad value is an error naming it): with
/// neither set, cuDNN attention is off.
pub fn apply_sdpa_env() -> Result<()> {
    let named = parse_sdpa_backends(&std::env::var(SDPA_ENV).unwrap_or_default())?;
    if let Some(mask) = named {
        #[cfg(t2s_shim)]
        // SAFETY: plain value in, error slot owned by `call`.
        call("SDPA backend switch", |e| unsafe {
            ffi::t2s_sdp_set_backends(mask, e)
        })?;
        #[cfg(not(t2s_shim))]
        return Err(no_shim(&format!("{SDPA_ENV} (backend mask {mask})")));
    }
    apply_sdpa_cudnn_env(named.is_some())
}

/// The SDPA backends libtorch may use now, by name (`None` without the shim).
pub fn sdpa_backends() -> Option<Vec<&'static str>> {
    #[cfg(t2s_shim)]
    {
        // SAFETY: reads flags of libtorch's global context.
        let mask = unsafe { ffi::t2s_sdp_backends() };
        Some(
            SDPA_BACKENDS
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, b)| *b)
                .collect(),
        )
    }
    #[cfg(not(t2s_shim))]
    None
}

/// What a call that needs the shim says in a worker built without it.
#[cfg(not(t2s_shim))]
fn no_shim(what: &str) -> ModelError {
    ModelError::Input(format!(
        "{what} needs a worker built with the CUDA shim (see `t2s doctor`)"
    ))
}

/// Whether SDPA may choose cuDNN attention (`None` without the shim).
pub fn sdpa_cudnn_enabled() -> Option<bool> {
    #[cfg(t2s_shim)]
    {
        // SAFETY: reads a flag of libtorch's global context.
        Some(unsafe { ffi::t2s_sdp_cudnn_enabled() } != 0)
    }
    #[cfg(not(t2s_shim))]
    None
}

/// Start libtorch's profiler (CPU ops; with `cuda`, CUDA kernels too). Needs the shim.
pub fn profile_start(cuda: bool) -> Result<()> {
    #[cfg(t2s_shim)]
    {
        // SAFETY: plain value in, error slot owned by `call`.
        call("profiler start", |e| unsafe {
            ffi::t2s_profile_start(cuda as i32, e)
        })
    }
    #[cfg(not(t2s_shim))]
    Err(no_shim(&format!("profiling (cuda: {cuda})")))
}

/// Stop the profiler and save its Chrome trace at `path`.
pub fn profile_stop(path: &std::path::Path) -> Result<()> {
    #[cfg(t2s_shim)]
    {
        let c_path = std::ffi::CString::new(path.to_string_lossy().as_bytes()).map_err(|_| {
            ModelError::Input(format!("profile path {}: has a NUL byte", path.display()))
        })?;
        // SAFETY: the path outlives the call; error slot owned by `call`.
        call("profiler stop", |e| unsafe {
            ffi::t2s_profile_stop(c_path.as_ptr(), e)
        })
    }
    #[cfg(not(t2s_shim))]
    Err(no_shim(&format!("profiling to {}", path.display())))
}

#[cfg(t2s_shim)]
pub(crate) fn check(
    rc: std::os::raw::c_int,
    err: *mut std::os::raw::c_char,
    what: &str,
) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    let msg = if err.is_null() {
        "no message".to_string()
    } else {
        // SAFETY: the shim returns a strdup'ed NUL-terminated string, freed here once.
        let m = unsafe { std::ffi::CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        unsafe { ffi::t2s_free_message(err) };
        m
    };
    Err(ModelError::Input(format!("CUDA {what}: {msg}")))
}

/// Call one shim entry point with a fresh error slot; `what` names the step in the error.
#[cfg(t2s_shim)]
pub(crate) fn call(
    what: &str,
    f: impl FnOnce(*mut *mut std::os::raw::c_char) -> std::os::raw::c_int,
) -> Result<()> {
    let mut err = std::ptr::null_mut();
    let rc = f(&mut err);
    check(rc, err, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdpa_backend_lists_parse_to_libtorch_switch_bits() {
        assert_eq!(parse_sdpa_backends("").unwrap(), None);
        assert_eq!(parse_sdpa_backends(" flash ").unwrap(), Some(1));
        assert_eq!(parse_sdpa_backends("flash,math").unwrap(), Some(1 | 4));
        assert_eq!(parse_sdpa_backends("cudnn, fa3,").unwrap(), Some(8 | 16));
        let e = parse_sdpa_backends("flash,flsh").unwrap_err().to_string();
        assert!(e.contains("T2S_SDPA") && e.contains("`flsh`"), "{e}");
    }
}
