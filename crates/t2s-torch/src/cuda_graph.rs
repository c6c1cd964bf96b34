//! CUDA graphs: record a fixed-shape piece of work once and replay it with one launch, so a
//! decode step of a 1B model costs its GPU time instead of ~1,800 kernel launches from the
//! host. tch has no binding; [`crate::shim`] wraps `at::cuda::CUDAGraph`.
//!
//! As with `torch.cuda.graph`: the work runs once eagerly on a side stream (warm-up: lazy
//! cuBLAS/allocator setup), is captured on that stream, and every replay reads the same
//! input tensors and writes the same output tensors (allocated in the graph's private memory
//! pool during capture). Callers update inputs in place between replays.

#[cfg(not(t2s_shim))]
use crate::error::ModelError;
use crate::error::Result;
#[cfg(t2s_shim)]
use crate::shim::{call, check, ffi};

/// Whether this build can capture CUDA graphs (and a CUDA device is present).
pub fn available() -> bool {
    cfg!(t2s_shim) && tch::Cuda::is_available()
}

/// A captured graph. Dropping it releases the graph; its memory pool is freed once the
/// output tensors from the capture are dropped too.
pub struct CudaGraph {
    #[cfg(t2s_shim)]
    handle: *mut std::os::raw::c_void,
}

impl CudaGraph {
    /// Run `work` once eagerly (warm-up), then capture it on a side stream of `device`.
    /// Returns the graph and what the captured call returned (its output tensors, which every
    /// replay overwrites). `work` must only launch device work on fixed shapes: no host
    /// synchronisation, no host-to-device copies, no shape that depends on data.
    #[cfg(t2s_shim)]
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

    #[cfg(not(t2s_shim))]
    pub fn capture<T>(_device: usize, _work: impl FnMut() -> Result<T>) -> Result<(Self, T)> {
        Err(ModelError::Input(
            "this t2s-worker was built without CUDA graph support (no CUDA headers next to torch at build time)".into(),
        ))
    }

    /// Launch the captured work once (on the current stream).
    pub fn replay(&self) -> Result<()> {
        #[cfg(t2s_shim)]
        {
            let handle = self.handle;
            call("graph replay", |e| unsafe {
                ffi::t2s_graph_replay(handle, e)
            })
        }
        #[cfg(not(t2s_shim))]
        Ok(())
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        #[cfg(t2s_shim)]
        // SAFETY: the handle came from t2s_graph_new and is freed exactly once.
        unsafe {
            ffi::t2s_graph_free(self.handle)
        };
    }
}
