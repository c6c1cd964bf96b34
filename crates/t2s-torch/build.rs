//! Keep `libtorch_cuda` in the worker's needed libraries.
//!
//! tch links `torch_cuda` with the linker's default `--as-needed`, and since no symbol of it is
//! referenced directly the linker drops it: CUDA then never registers at run time. Forcing it
//! with `--no-as-needed` is harmless on CPU-only machines as long as the library file exists
//! (PyPI's torch wheels ship it).
fn main() {
    record_torch_version();
    build_shim();
    let libtorch = std::env::var("LIBTORCH").ok().or_else(|| {
        let out = std::process::Command::new(
            std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()),
        )
        .args([
            "-c",
            "import torch, os; print(os.path.dirname(torch.__file__))",
        ])
        .output()
        .ok()?;
        Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
    });
    if let Some(dir) = libtorch {
        let lib = std::path::Path::new(&dir).join("lib");
        if lib.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-L{}", lib.display());
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-lc10_cuda");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=PYTHON");
}

/// `T2S_TORCH_BUILD_VERSION`: the torch version of the build environment, reported by
/// `t2s-worker doctor` when the loaded library's version file cannot be found.
fn record_torch_version() {
    let out =
        std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .args(["-c", "import torch; print(torch.__version__)"])
            .output();
    if let Ok(out) = out {
        if let Ok(v) = String::from_utf8(out.stdout) {
            println!("cargo:rustc-env=T2S_TORCH_BUILD_VERSION={}", v.trim());
        }
    }
}

/// Compile `csrc/shim.cpp` (CUDA graph capture/replay, SDPA backend switch, profiler: what tch
/// lacks) and `csrc/fused.cpp` (fused CUDA kernels, compiled at run time by NVRTC) against the venv's libtorch headers and the CUDA runtime headers PyPI's torch brings
/// along (`nvidia/*/include`), and set `cfg(t2s_shim)`. Without those headers (a CPU-only torch
/// build) the worker builds without it: it decodes eagerly and cannot profile.
fn build_shim() {
    println!("cargo::rustc-check-cfg=cfg(t2s_shim)");
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/fused.cpp");
    println!("cargo:rerun-if-changed=csrc/fused_kernels.cu");
    println!("cargo:rerun-if-changed=csrc/guarded.h");
    println!("cargo:rerun-if-changed=csrc/jit.cpp");
    println!("cargo:rerun-if-changed=csrc/jit.h");
    // T2S_NO_SHIM=1 builds without it, as on a machine without the CUDA headers (CI checks that
    // this build compiles too).
    println!("cargo:rerun-if-env-changed=T2S_NO_SHIM");
    if std::env::var_os("T2S_NO_SHIM").is_some_and(|v| v == "1") {
        println!("cargo:warning=T2S_NO_SHIM=1: building t2s-worker without the C++ shim");
        return;
    }
    let probe = r#"
import glob, os, torch
t = os.path.dirname(torch.__file__)
site = os.path.dirname(t)
def dirs(pattern, depth):
    found = sorted(glob.glob(os.path.join(site, pattern)))
    return [os.path.dirname(f) if depth == 1 else os.path.dirname(os.path.dirname(f)) for f in found]
# cuda_runtime_api.h from nvidia-cuda-runtime; crt/host_config.h, which nvcc's package would
# bring, from the copy triton (a torch dependency) bundles.
api = dirs("nvidia/*/include/cuda_runtime_api.h", 1) + dirs("triton/backends/nvidia/include/cuda_runtime_api.h", 1)
crt = dirs("nvidia/*/include/crt/host_config.h", 2) + dirs("triton/backends/nvidia/include/crt/host_config.h", 2)
print(t)
print(int(torch._C._GLIBCXX_USE_CXX11_ABI))
print(os.pathsep.join(api[:1] + crt[:1]) if api and crt else "")
"#;
    let Ok(out) =
        std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .args(["-c", probe])
            .output()
    else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    let [torch_dir, abi, cuda_includes] = lines[..] else {
        println!("cargo:warning=torch not importable: building without CUDA graphs");
        return;
    };
    let torch_include = std::path::Path::new(torch_dir).join("include");
    let cuda_lib = std::path::Path::new(torch_dir).join("lib/libtorch_cuda.so");
    if cuda_includes.is_empty()
        || !torch_include.join("ATen/cuda/CUDAGraph.h").is_file()
        || !cuda_lib.is_file()
    {
        println!("cargo:warning=no CUDA headers next to torch: building without CUDA graphs");
        return;
    }
    // The kernel source as a C++ raw string literal for fused.cpp to hand to NVRTC.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let kernels = std::fs::read_to_string("csrc/fused_kernels.cu").expect("csrc/fused_kernels.cu");
    std::fs::write(
        out_dir.join("fused_kernels.inc"),
        format!("R\"CUDA({kernels})CUDA\"\n"),
    )
    .expect("write fused_kernels.inc");
    cc::Build::new()
        .cpp(true)
        .include(&out_dir)
        .file("csrc/shim.cpp")
        .file("csrc/fused.cpp")
        .file("csrc/jit.cpp")
        .include(&torch_include)
        .include(torch_include.join("torch/csrc/api/include"))
        .includes(std::env::split_paths(cuda_includes))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .warnings(false)
        .compile("t2s_shim");
    println!("cargo:rustc-cfg=t2s_shim");
}
