//! CUDA graphs (and the CUDA device facts `doctor` reports, from the same shim): record a fixed-shape piece of work once and replay it with one launch, so a
//! decode step of a 1B model costs its GPU time instead of ~1,800 kernel launches from the
//! host. tch has no binding; `csrc/cuda_graph.cpp` wraps `at::cuda::CUDAGraph` (compiled by
//! `build.rs` when the CUDA headers that come with PyPI's torch are present).
//!
//! As with `torch.cuda.graph`: the work runs once eagerly on a side stream (warm-up: lazy
//! cuBLAS/allocator setup), is captured on that stream, and every replay reads the same
//! input tensors and writes the same output tensors (allocated in the graph's private memory
//! pool during capture). Callers update inputs in place between replays.

use crate::error::{ModelError, Result};

#[cfg(t2s_cuda_graph)]
mod ffi {
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
        pub fn t2s_profile_start(cuda: c_int, err: *mut *mut c_char) -> c_int;
        pub fn t2s_profile_stop(path: *const c_char, err: *mut *mut c_char) -> c_int;
    }
}

/// Whether this build can capture CUDA graphs (and a CUDA device is present).
pub fn available() -> bool {
    cfg!(t2s_cuda_graph) && tch::Cuda::is_available()
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
    #[cfg(t2s_cuda_graph)]
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
    #[cfg(not(t2s_cuda_graph))]
    {
        let _ = index;
        None
    }
}

/// The environment variable that switches SDPA's cuDNN attention backend: `0` off, `1` on,
/// unset or empty: libtorch's choice. libtorch 2.11 tries cuDNN attention first on sm90/sm100
/// and builds one cuDNN graph per new problem shape (batch, lengths), host time that a run of
/// ever-changing shapes pays again and again; `0` leaves flash and memory-efficient attention.
pub const SDPA_CUDNN_ENV: &str = "T2S_SDPA_CUDNN";

/// Apply [`SDPA_CUDNN_ENV`] (a bad value is an error naming it). Without the shim the switch
/// cannot be reached: setting it is then an error rather than a silent no-op.
pub fn apply_sdpa_cudnn_env() -> Result<()> {
    let value = std::env::var(SDPA_CUDNN_ENV).unwrap_or_default();
    let enabled = match value.trim() {
        "" => return Ok(()),
        "0" => false,
        "1" => true,
        other => {
            return Err(ModelError::Input(format!(
                "{SDPA_CUDNN_ENV}={other}: expected 0 (no cuDNN attention) or 1"
            )))
        }
    };
    #[cfg(t2s_cuda_graph)]
    {
        // SAFETY: plain value in, error slot owned by `call`.
        call("SDPA cuDNN switch", |e| unsafe {
            ffi::t2s_sdp_set_cudnn(enabled as i32, e)
        })
    }
    #[cfg(not(t2s_cuda_graph))]
    Err(ModelError::Input(format!(
        "{SDPA_CUDNN_ENV}={} needs a worker built with the CUDA shim (see `t2s doctor`)",
        enabled as i32
    )))
}

/// Whether SDPA may choose cuDNN attention (`None` without the shim).
pub fn sdpa_cudnn_enabled() -> Option<bool> {
    #[cfg(t2s_cuda_graph)]
    {
        // SAFETY: reads a flag of libtorch's global context.
        Some(unsafe { ffi::t2s_sdp_cudnn_enabled() } != 0)
    }
    #[cfg(not(t2s_cuda_graph))]
    None
}

/// Start libtorch's profiler (CPU ops; with `cuda`, CUDA kernels too). Needs the shim.
pub fn profile_start(cuda: bool) -> Result<()> {
    #[cfg(t2s_cuda_graph)]
    {
        // SAFETY: plain value in, error slot owned by `call`.
        call("profiler start", |e| unsafe {
            ffi::t2s_profile_start(cuda as i32, e)
        })
    }
    #[cfg(not(t2s_cuda_graph))]
    Err(ModelError::Input(format!(
        "profiling (cuda: {cuda}) needs a worker built with the CUDA shim (see `t2s doctor`)"
    )))
}

/// Stop the profiler and save its Chrome trace at `path`.
pub fn profile_stop(path: &std::path::Path) -> Result<()> {
    let c_path = std::ffi::CString::new(path.to_string_lossy().as_bytes()).map_err(|_| {
        ModelError::Input(format!("profile path {}: has a NUL byte", path.display()))
    })?;
    #[cfg(t2s_cuda_graph)]
    {
        // SAFETY: the path outlives the call; error slot owned by `call`.
        call("profiler stop", |e| unsafe {
            ffi::t2s_profile_stop(c_path.as_ptr(), e)
        })
    }
    #[cfg(not(t2s_cuda_graph))]
    {
        drop(c_path);
        Err(ModelError::Input(
            "profiling needs a worker built with the CUDA shim".into(),
        ))
    }
}

/// A captured graph. Dropping it releases the graph; its memory pool is freed once the
/// output tensors from the capture are dropped too.
pub struct CudaGraph {
    #[cfg(t2s_cuda_graph)]
    handle: *mut std::os::raw::c_void,
}

#[cfg(t2s_cuda_graph)]
fn check(rc: std::os::raw::c_int, err: *mut std::os::raw::c_char, what: &str) -> Result<()> {
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
#[cfg(t2s_cuda_graph)]
fn call(
    what: &str,
    f: impl FnOnce(*mut *mut std::os::raw::c_char) -> std::os::raw::c_int,
) -> Result<()> {
    let mut err = std::ptr::null_mut();
    let rc = f(&mut err);
    check(rc, err, what)
}

impl CudaGraph {
    /// Run `work` once eagerly (warm-up), then capture it on a side stream of `device`.
    /// Returns the graph and what the captured call returned (its output tensors, which every
    /// replay overwrites). `work` must only launch device work on fixed shapes: no host
    /// synchronisation, no host-to-device copies, no shape that depends on data.
    #[cfg(t2s_cuda_graph)]
    pub fn capture<T>(device: usize, mut work: impl FnMut() -> Result<T>) -> Result<(Self, T)> {
        use std::ptr::null_mut;
        let mut err = null_mut();
        // SAFETY: plain C ABI calls on a handle this struct owns; errors come back as codes.
        let handle = unsafe { ffi::t2s_graph_new(device as i32, &mut err) };
        if handle.is_null() {
            check(1, err, "create")?;
        }
        let graph = Self { handle };
        call("graph side stream", |e| unsafe {
            ffi::t2s_graph_enter(handle, e)
        })?;
        let captured = (|| -> Result<T> {
            work()?;
            call("graph capture", |e| unsafe {
                ffi::t2s_graph_capture_begin(handle, e)
            })?;
            let out = work();
            // End the capture even when the work failed, so the stream leaves capture mode.
            let end = call("graph capture end", |e| unsafe {
                ffi::t2s_graph_capture_end(handle, e)
            });
            let out = out?;
            end?;
            Ok(out)
        })();
        let left = call("graph: leave side stream", |e| unsafe {
            ffi::t2s_graph_leave(handle, e)
        });
        let out = captured?;
        left?;
        Ok((graph, out))
    }

    #[cfg(not(t2s_cuda_graph))]
    pub fn capture<T>(_device: usize, _work: impl FnMut() -> Result<T>) -> Result<(Self, T)> {
        Err(ModelError::Input(
            "this t2s-worker was built without CUDA graph support (no CUDA headers next to torch at build time)".into(),
        ))
    }

    /// Launch the captured work once (on the current stream).
    pub fn replay(&self) -> Result<()> {
        #[cfg(t2s_cuda_graph)]
        {
            let handle = self.handle;
            call("graph replay", |e| unsafe {
                ffi::t2s_graph_replay(handle, e)
            })
        }
        #[cfg(not(t2s_cuda_graph))]
        Ok(())
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        #[cfg(t2s_cuda_graph)]
        // SAFETY: the handle came from t2s_graph_new and is freed exactly once.
        unsafe {
            ffi::t2s_graph_free(self.handle)
        };
    }
}
