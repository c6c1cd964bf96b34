//! The kernels' image: compiled by NVRTC for a compute capability, kept on disk per GPU
//! architecture and NVRTC ([`crate::kernel_cache`]), loaded on a device.

#[cfg(t2s_shim)]
use super::ffi::c as ffi;
#[cfg(not(t2s_shim))]
use super::ffi::no_shim;
use crate::error::{ModelError, Result};
use crate::kernel_cache::{load_kernels, KernelCache};

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
pub(super) fn prepare(index: usize) -> Result<()> {
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
