//! Device and dtype selection from the job spec (`auto`, `cpu`, `cuda`, `cuda:N`;
//! `auto|fp32|bf16`), and the libtorch version facts.

use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};

/// Parse a device string; `auto` is the first CUDA device when one is available.
pub fn parse_device(s: &str) -> Result<Device> {
    let s = s.trim();
    match s {
        "" | "auto" => Ok(if tch::Cuda::is_available() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => cuda(0),
        _ => match s.strip_prefix("cuda:") {
            Some(n) => match n.parse::<usize>() {
                Ok(i) => cuda(i),
                Err(_) => Err(ModelError::Input(format!(
                    "device `{s}`: expected auto, cpu, cuda or cuda:N"
                ))),
            },
            None => Err(ModelError::Input(format!(
                "device `{s}`: expected auto, cpu, cuda or cuda:N"
            ))),
        },
    }
}

fn cuda(i: usize) -> Result<Device> {
    let n = tch::Cuda::device_count() as usize;
    if n == 0 {
        return Err(ModelError::Input(
            "a CUDA device was requested but libtorch sees none (is this a GPU machine with the CUDA build of torch?)".into(),
        ));
    }
    if i >= n {
        return Err(ModelError::Input(format!(
            "device cuda:{i} requested but only {n} CUDA device(s) exist"
        )));
    }
    Ok(Device::Cuda(i))
}

/// Copy host data `t` to `dev` without making the host wait for the device. A copy from
/// pageable host memory may wait for the stream to drain (the driver stages it through pinned
/// memory), which would stall the host mid-step; from pinned memory it is a queued DMA, and
/// libtorch's pinned allocator keeps the buffer alive until the copy is done. The CPU gets `t`
/// as is.
pub fn upload(t: &Tensor, dev: Device) -> Result<Tensor> {
    if !dev.is_cuda() || t.device() == dev {
        return Ok(t.f_to_device(dev)?);
    }
    // Unpinned (if pinning fails) the copy is still right, only maybe waited for.
    let src = t.f_pin_memory(dev).unwrap_or_else(|_| t.shallow_clone());
    Ok(src.f_to_device_(dev, src.kind(), true, false)?)
}

/// Parse a dtype; `auto` is bf16 on CUDA and fp32 on the CPU.
pub fn parse_kind(s: &str, dev: Device) -> Result<Kind> {
    match s.trim() {
        "" | "auto" => Ok(if dev.is_cuda() {
            Kind::BFloat16
        } else {
            Kind::Float
        }),
        "fp32" | "float32" | "f32" => Ok(Kind::Float),
        "bf16" | "bfloat16" => Ok(Kind::BFloat16),
        "fp16" | "float16" | "f16" => Ok(Kind::Half),
        o => Err(ModelError::Input(format!(
            "dtype `{o}`: expected auto, fp32, bf16 or fp16"
        ))),
    }
}

pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The libtorch version actually loaded, and where it was read.
///
/// tch exposes no version API. The loaded `libtorch_cpu.so` is found in `/proc/self/maps`;
/// the PyPI torch package that ships it has `version.py` one directory up (`torch/lib/..`).
/// Falls back to the version the worker was built against (`T2S_TORCH_BUILD_VERSION`, set by
/// build.rs from the venv's torch).
pub fn libtorch_version() -> (String, String) {
    if let Ok(maps) = std::fs::read_to_string("/proc/self/maps") {
        for line in maps.lines() {
            let Some(path) = line.split_whitespace().nth(5) else {
                continue;
            };
            if !path.ends_with("/libtorch_cpu.so") {
                continue;
            }
            let p = std::path::Path::new(path);
            if let Some(torch_dir) = p.parent().and_then(|l| l.parent()) {
                let vf = torch_dir.join("version.py");
                if let Ok(text) = std::fs::read_to_string(&vf) {
                    for l in text.lines() {
                        if let Some(rest) = l.strip_prefix("__version__") {
                            let v = rest
                                .trim_start_matches([' ', '=', ':'])
                                .split('#')
                                .next()
                                .unwrap_or("")
                                .trim()
                                .trim_matches(['\'', '"']);
                            if !v.is_empty() {
                                return (v.to_string(), vf.display().to_string());
                            }
                        }
                    }
                }
            }
        }
    }
    match option_env!("T2S_TORCH_BUILD_VERSION") {
        Some(v) if !v.is_empty() => (v.to_string(), "build time (torch of the build venv)".into()),
        _ => ("unknown".into(), "not found".into()),
    }
}

/// `(used, total)` bytes of CUDA device memory as the driver sees it (`cudaMemGetInfo` of the
/// current device): memory held by libtorch's caching allocator plus the CUDA context, i.e. an
/// upper bound of the peak allocated tensors (the caching allocator does not give memory back
/// during a run). `None` when the CUDA runtime is not loaded.
///
/// tch has no binding to the caching allocator's statistics; the CUDA runtime library that
/// libtorch loaded is found in `/proc/self/maps` and the function looked up with `dlsym`.
pub fn cuda_mem_used() -> Option<(u64, u64)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let path = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            std::path::Path::new(p)
                .file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with("libcudart.so"))
        })?
        .to_string();
    let cpath = std::ffi::CString::new(path).ok()?;
    // SAFETY: dlopen with RTLD_NOLOAD only returns a handle to a library already mapped in
    // this process; the symbol has the documented C signature
    // `cudaError_t cudaMemGetInfo(size_t *free, size_t *total)`.
    unsafe {
        let h = libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if h.is_null() {
            return None;
        }
        let sym = libc::dlsym(h, c"cudaMemGetInfo".as_ptr());
        if sym.is_null() {
            libc::dlclose(h);
            return None;
        }
        let f: extern "C" fn(*mut usize, *mut usize) -> i32 = std::mem::transmute(sym);
        let (mut free, mut total) = (0usize, 0usize);
        let rc = f(&mut free, &mut total);
        libc::dlclose(h);
        (rc == 0).then_some(((total - free) as u64, total as u64))
    }
}
