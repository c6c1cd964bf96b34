//! `doctor`: what libtorch this worker loaded and which devices it sees.

use serde_json::{json, Value};
use t2s::worker::protocol::JobSpec;

use crate::device::{device_name, libtorch_version, parse_device};

pub fn run(spec: &JobSpec) -> anyhow::Result<Value> {
    let (version, source) = libtorch_version();
    let n = tch::Cuda::device_count();
    let devices: Vec<Value> = (0..n.max(0))
        .map(|i| {
            let mut d = json!({"index": i, "name": format!("cuda:{i}")});
            if let Some(info) = crate::shim::device_info(i as usize) {
                d["gpu"] = json!(info.name);
                d["memory_mib"] = json!(info.total_memory_bytes / (1 << 20));
                d["compute_capability"] =
                    json!(format!("{}.{}", info.capability.0, info.capability.1));
            }
            // The fused bf16 kernels: compiled by NVRTC and self-checked here, or why not.
            let dev = tch::Device::Cuda(i as usize);
            d["fused_kernels"] =
                json!(crate::fused::status(dev).map_or_else(|e| e, |()| "ok".to_string()));
            d["fused_lora_projections"] =
                json!(crate::fused::lora_status(dev).map_or_else(|e| e, |()| "ok".to_string()));
            d["lora_matmul"] = json!(crate::fused::lora_matmul().name());
            d
        })
        .collect();
    let default_device = parse_device(&spec.device)
        .map(device_name)
        .unwrap_or_else(|e| format!("invalid ({e})"));
    Ok(json!({
        "libtorch_version": version,
        "libtorch_version_source": source,
        "built_against": option_env!("T2S_TORCH_BUILD_VERSION").unwrap_or("unknown"),
        "cuda_available": tch::Cuda::is_available(),
        "cuda_device_count": n,
        "cudnn_available": tch::Cuda::cudnn_is_available(),
        "devices": devices,
        "default_device": default_device,
        "threads": tch::get_num_threads(),
        // Decoding with CUDA graphs: built in, and usable here (a CUDA device is present).
        "cuda_graphs_built": cfg!(t2s_shim),
        "cuda_graphs_usable": crate::cuda_graph::available(),
        // Whether SDPA may pick cuDNN attention (off unless T2S_SDPA_CUDNN=1 or T2S_SDPA names it;
        // null: not reachable).
        "sdpa_cudnn": crate::shim::sdpa_cudnn_enabled(),
        // The SDPA backends libtorch may use (T2S_SDPA=flash,cudnn,... restricts them).
        "sdpa_backends": crate::shim::sdpa_backends(),
        // Where compiled fused kernels are kept between workers (T2S_KERNEL_CACHE; null: off).
        "kernel_cache": crate::kernel_cache::KernelCache::from_env()
            .map(|c| c.dir().display().to_string()),
    }))
}
