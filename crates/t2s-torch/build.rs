//! Keep `libtorch_cuda` in the worker's needed libraries.
//!
//! tch links `torch_cuda` with the linker's default `--as-needed`, and since no symbol of it is
//! referenced directly the linker drops it: CUDA then never registers at run time. Forcing it
//! with `--no-as-needed` is harmless on CPU-only machines as long as the library file exists
//! (PyPI's torch wheels ship it).
fn main() {
    record_torch_version();
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
