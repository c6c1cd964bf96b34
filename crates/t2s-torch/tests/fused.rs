//! The fused CUDA kernels (`t2s_torch::fused`): their source compiles with NVRTC on any
//! machine that has libnvrtc (the CPU CI included), and run on the CPU by a host emulation of
//! CUDA threads (`tests/fused_emu/emulate.cpp`) they compute what libtorch's unfused ops do,
//! outputs and gradients; on a CUDA test device
//! (`T2S_TEST_DEVICE=cuda`) they pass their self-check, match libtorch's unfused ops at real
//! widths (1152-wide norms, 6912-wide gate, the LoRA projections of q/k/v and o, more rows
//! than a grid dimension holds), and a bf16
//! model with LoRA gives the same logits and adapter gradients with and without them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use t2s_torch::fused;
use t2s_torch::gemma3::Inputs;
use t2s_torch::lora::{self, LoraConfig};
use tch::{Device, Kind, Tensor};

/// Whether `e` says this worker has no CUDA shim (NVRTC unreachable): those tests skip.
fn built_without_shim(e: &t2s_torch::ModelError) -> bool {
    e.to_string()
        .contains("needs a worker built with the CUDA shim")
}

#[test]
fn kernel_source_compiles_with_nvrtc_for_ampere_and_hopper() {
    for (major, minor) in [(8, 0), (9, 0)] {
        match fused::compile_check(major, minor) {
            Ok(()) => {}
            Err(e) if built_without_shim(&e) => {
                eprintln!("skipped: {e}");
                return;
            }
            Err(e) => panic!("sm_{major}{minor}: {e}"),
        }
    }
}

/// What a GPU worker does at start, minus the driver: the image NVRTC compiles goes to the
/// disk cache once the loader has taken it, and the next worker loads the same bytes from there
/// without compiling.
#[test]
fn compiled_kernels_round_trip_through_the_disk_cache() {
    use t2s_torch::kernel_cache::{load_kernels, KernelCache, Origin};
    let nvrtc = match fused::nvrtc_version() {
        Ok(v) => v,
        Err(e) if built_without_shim(&e) => {
            eprintln!("skipped: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert!(nvrtc.0 >= 12, "NVRTC {nvrtc:?}");
    let dir = tempfile::tempdir().unwrap();
    let cache = KernelCache::new(dir.path());
    let key = KernelCache::key((9, 0), nvrtc);
    let loaded = std::cell::RefCell::new(Vec::new());
    let load = |image: &[u8]| {
        // sm_90 is an architecture NVRTC 12+ knows: a cubin, an ELF file.
        assert_eq!(&image[..4], b"\x7fELF", "not a cubin");
        loaded.borrow_mut().push(image.to_vec());
        Ok(())
    };
    let warn = |w: String| panic!("{w}");
    let first = load_kernels(Some(&cache), &key, || fused::compile(9, 0), load, warn).unwrap();
    let second = load_kernels(
        Some(&cache),
        &key,
        || panic!("compiled although the cache has the image"),
        load,
        warn,
    )
    .unwrap();
    assert_eq!((first, second), (Origin::Compiled, Origin::Cached));
    let loaded = loaded.borrow();
    assert_eq!(loaded[0], loaded[1]);
    assert_eq!(cache.read(&key).as_ref(), Some(&loaded[0]));
}

#[test]
fn the_cpu_is_never_served() {
    let x = Tensor::zeros([2, 8], (Kind::BFloat16, Device::Cpu));
    assert!(!fused::serves(&x));
    assert!(!fused::serves_lora(&x));
    assert!(fused::status(Device::Cpu).is_err());
    assert!(fused::lora_status(Device::Cpu).is_err());
}

/// libtorch's autograd `apply` records every tensor argument (device, dtype, shape) before it
/// calls the Function's forward; an argument it cannot record (an undefined tensor) fails
/// there, on every device, which only a GPU would otherwise show. On the CPU each entry point
/// must get through `apply` to its forward's own first check, that its input is on CUDA.
#[test]
fn every_entry_point_gets_through_autograd_to_its_own_checks() {
    let cpu = Device::Cpu;
    let bf = (Kind::BFloat16, cpu);
    let x = Tensor::zeros([4, 8], bf).set_requires_grad(true);
    let res = Tensor::zeros([4, 8], bf).set_requires_grad(true);
    let w = Tensor::ones([8], (Kind::Float, cpu));
    let heads = Tensor::zeros([4, 2, 8], bf).set_requires_grad(true);
    let w_heads = Tensor::ones([2, 8], (Kind::Float, cpu));
    let rope = Tensor::zeros([4, 1, 8], bf);
    let a = Tensor::zeros([3, 4, 8], (Kind::Float, cpu)).set_requires_grad(true);
    let u = Tensor::zeros([1, 4, 4], (Kind::Float, cpu)).set_requires_grad(true);
    let b = Tensor::zeros([8, 4], (Kind::Float, cpu)).set_requires_grad(true);
    let calls = [
        ("rms_norm", fused::rms_norm(&x, &w, 1, 1e-6, None)),
        (
            "rms_norm with a residual",
            fused::rms_norm(&x, &w, 1, 1e-6, Some(&res)),
        ),
        (
            "qk_norm_rope",
            fused::qk_norm_rope(&heads, &w_heads, &rope, &rope, 2, 1e-6),
        ),
        ("gelu_gate", fused::gelu_gate(&x)),
        ("lora_dropout", fused::lora_dropout_seeded(&x, 3, 0.1, 7)),
        ("lora_down", fused::lora_down_seeded(&x, &a, 0.1, 7)),
        (
            "lora_down (gemm)",
            fused::lora_down_with(fused::LoraMatmul::Gemm, &x, &a, 0.1, 7),
        ),
        ("lora_up", fused::lora_up(&x, &u, &b, &[0])),
    ];
    for (name, result) in calls {
        match result {
            Ok(_) => panic!("{name} served a CPU tensor"),
            Err(e) if built_without_shim(&e) => {
                eprintln!("skipped: {e}");
                return;
            }
            Err(e) => assert!(
                e.to_string().contains("must be a CUDA tensor"),
                "{name} failed before its own checks: {e}"
            ),
        }
    }
}

/// Why the CUDA-device tests are `#[ignore]`d: `cargo test` counts them as ignored on a CPU
/// machine instead of passing them silently; on a GPU, `--include-ignored` runs them
/// (bench/gpu/run.sh and mfu.sh do).
const NEEDS_CUDA: &str = "needs a CUDA device: T2S_TEST_DEVICE=cuda ... -- --include-ignored";

/// The CUDA test device; a run without one fails (the test was asked for by name).
fn cuda_device() -> Option<Device> {
    let dev = test_device();
    assert!(dev.is_cuda(), "{NEEDS_CUDA}");
    Some(dev)
}

/// Output and input gradients of `f` at `inputs` (leaves made here), for a fixed upstream.
fn with_grads(inputs: &[&Tensor], f: &dyn Fn(&[Tensor]) -> Tensor) -> (Tensor, Vec<Tensor>) {
    let leaves: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.detach().set_requires_grad(true))
        .collect();
    let y = f(&leaves);
    let up = y.detach().to_kind(Kind::Float).cos();
    let loss = (y.to_kind(Kind::Float) * up).sum(Kind::Float);
    let g = Tensor::run_backward(&[loss], &leaves, false, false);
    (y.detach(), g)
}

fn relative(a: &Tensor, b: &Tensor) -> f64 {
    max_abs_diff(a, b) / b.abs().max().double_value(&[]).max(1.0)
}

/// The share of elements where `a` and `b` are equal.
fn equal_share(a: &Tensor, b: &Tensor) -> f64 {
    a.eq_tensor(b)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[])
}

#[test]
#[ignore = "needs a CUDA device (T2S_TEST_DEVICE=cuda, --include-ignored)"]
fn kernels_match_unfused_ops_at_model_widths_on_cuda() {
    let Some(dev) = cuda_device() else { return };
    fused::status(dev).expect("fused kernels compile and pass the self-check");
    fused::lora_status(dev).expect("the fused LoRA projections pass their check");
    let bf = (Kind::BFloat16, dev);
    let eps = 1e-6;
    // Hidden-size norm with the residual add, as the 1B model's post-norms.
    let x = Tensor::randn([4, 33, 1152], bf) * 3.0;
    let res = Tensor::randn([4, 33, 1152], bf);
    let w = Tensor::randn([1152], (Kind::Float, dev)) * 0.3 + 1.0;
    let (yf, gf) = with_grads(&[&x, &res], &|t| {
        fused::rms_norm(&t[0], &w, 1, eps, Some(&t[1])).unwrap()
    });
    let (yr, gr) = with_grads(&[&x, &res], &|t| {
        fused::reference_rms_norm(&t[0], &w, 1, eps, Some(&t[1])).unwrap()
    });
    assert!(relative(&yf, &yr) < 1e-2, "norm+residual output");
    for (a, b) in gf.iter().zip(&gr) {
        assert!(relative(a, b) < 1e-2, "norm+residual gradient");
    }
    // q/k norms: 4 query + 1 key heads of 256 inside a [B, S, 6, 256] projection.
    let qkv = Tensor::randn([3, 17, 6, 256], bf);
    let wh = Tensor::randn([5, 256], (Kind::Float, dev)) * 0.3 + 1.0;
    let (yf, gf) = with_grads(&[&qkv], &|t| {
        fused::rms_norm(&t[0].narrow(2, 0, 5), &wh, 5, eps, None).unwrap()
    });
    let (yr, gr) = with_grads(&[&qkv], &|t| {
        fused::reference_rms_norm(&t[0].narrow(2, 0, 5), &wh, 5, eps, None).unwrap()
    });
    assert!(relative(&yf, &yr) < 1e-2, "per-head norm output");
    assert!(relative(&gf[0], &gr[0]) < 1e-2, "per-head norm gradient");
    let (cos, sin) = (
        Tensor::randn([3, 17, 1, 256], bf),
        Tensor::randn([3, 17, 1, 256], bf),
    );
    let (yf, gf2) = with_grads(&[&qkv], &|t| {
        fused::qk_norm_rope(&t[0].narrow(2, 0, 5), &wh, &cos, &sin, 5, eps).unwrap()
    });
    let (yr, gr2) = with_grads(&[&qkv], &|t| {
        fused::reference_qk_norm_rope(&t[0].narrow(2, 0, 5), &wh, &cos, &sin, 5, eps).unwrap()
    });
    assert!(relative(&yf, &yr) < 1e-2, "q/k norm + RoPE output");
    assert!(
        relative(&gf2[0], &gr2[0]) < 1e-2,
        "q/k norm + RoPE gradient"
    );
    // Cross-entropy rows at the 1B vocabulary, in place, and at a vocabulary that is no
    // multiple of 8.
    for v in [262_144i64, 1_004] {
        let z = Tensor::randn([6, v], bf) * 3.0;
        let t = Tensor::from_slice(&[0i64, v - 1, 1, v / 2, 5, 42]).to_device(dev);
        let (nll_ref, g_ref) =
            t2s_torch::train::ce_rows_unfused(&z, &t.view([-1, 1]), Kind::BFloat16).unwrap();
        let zf = z.copy();
        let nll = fused::ce_rows(&zf, &t).unwrap();
        assert!(relative(&nll, &nll_ref) < 1e-5, "cross-entropy NLL (V {v})");
        assert!(
            relative(&zf, &g_ref) < 1e-2,
            "cross-entropy gradient (V {v})"
        );
    }
    // The v heads got no gradient from the norm.
    assert_eq!(
        gf[0].narrow(2, 5, 1).abs().max().double_value(&[]),
        0.0,
        "gradient leaked into the unnormalised heads"
    );
    // LoRA dropout at the 1B width: three copies (q/k/v) and one (o), against libtorch's ops
    // with the masks it drew (the input has no zeros, so a zero output is a dropped element).
    for copies in [3i64, 1] {
        let x = Tensor::randn([4, 33, 1152], bf).abs() + 0.5;
        let leaf = x.detach().set_requires_grad(true);
        let y = fused::lora_dropout(&leaf, copies, 0.05).unwrap();
        let keep = y.ne(0.0);
        let g = Tensor::randn(y.size(), (Kind::Float, dev));
        let dx = Tensor::run_backward(&[(&y * &g).sum(Kind::Float)], &[&leaf], false, false);
        let y_ref = fused::reference_lora_dropout(&x, &keep, 0.05).unwrap();
        assert_eq!(
            max_abs_diff(&y, &y_ref),
            0.0,
            "LoRA dropout output ({copies})"
        );
        let dx_ref = (g * keep.to_kind(Kind::Float) * f64::from((1.0 / 0.95f64) as f32))
            .sum_dim_intlist([0i64].as_slice(), false, Kind::Float)
            .to_kind(Kind::BFloat16);
        assert!(
            relative(&dx[0], &dx_ref) < 1e-2,
            "LoRA dropout gradient ({copies})"
        );
        let rate = keep
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
        assert!((rate - 0.95).abs() < 0.01, "keep rate {rate} ({copies})");
    }
    // The LoRA down-projection at the 1B widths (q/k/v: three adapters on 1152; o: one on
    // 1024), r 16, with dropout (the masks of the fused dropout for the same seed) and without.
    for (copies, width) in [(3i64, 1152i64), (1, 1024)] {
        let x = Tensor::randn([4, 33, width], bf);
        let a = Tensor::randn([copies, 16, width], (Kind::Float, dev)) * 0.05;
        for p in [0.05, 0.0] {
            let keep = (p > 0.0).then(|| {
                let ones = Tensor::ones([4, 33, width], bf);
                fused::lora_dropout_seeded(&ones, copies, p, 99)
                    .unwrap()
                    .ne(0.0)
            });
            let (ur, gr) = with_grads(&[&x, &a], &|t| {
                fused::reference_lora_down(&t[0], &t[1], keep.as_ref(), p).unwrap()
            });
            // Both ways of multiplying: t2s's kernels and cuBLAS over bf16 pieces.
            for mode in [fused::LoraMatmul::Kernels, fused::LoraMatmul::Gemm] {
                let (uf, gf) = with_grads(&[&x, &a], &|t| {
                    fused::lora_down_with(mode, &t[0], &t[1], p, 99).unwrap()
                });
                let what = format!("{copies} x {width}, p {p}, {}", mode.name());
                assert!(relative(&uf, &ur) < 1e-4, "down-projection output ({what})");
                assert!(relative(&gf[0], &gr[0]) < 1e-2, "input gradient ({what})");
                assert!(relative(&gf[1], &gr[1]) < 1e-4, "A's gradient ({what})");
            }
        }
    }
    // The LoRA up-projection at the 1B widths: q/k/v (1,024 + 256 + 256) and o (1,152), r 16.
    for offsets in [vec![0i64, 1024, 1280, 1536], vec![0, 1152]] {
        let (n, o) = (offsets.len() as i64 - 1, offsets[offsets.len() - 1]);
        let y = Tensor::randn([4, 33, o], bf);
        let u = Tensor::randn([n, 4 * 33, 16], (Kind::Float, dev));
        let b = Tensor::randn([o, 16], (Kind::Float, dev)) * 0.05;
        let (yr, gr) = with_grads(&[&y, &u, &b], &|t| {
            fused::reference_lora_up(&t[0], &t[1], &t[2], &offsets).unwrap()
        });
        for mode in [fused::LoraMatmul::Kernels, fused::LoraMatmul::Gemm] {
            let (yf, gf) = with_grads(&[&y, &u, &b], &|t| {
                fused::lora_up_with(mode, &t[0], &t[1], &t[2], &offsets).unwrap()
            });
            let what = format!("offsets {offsets:?}, {}", mode.name());
            assert!(relative(&yf, &yr) < 1e-2, "up-projection output ({what})");
            assert_eq!(max_abs_diff(&gf[0], &gr[0]), 0.0, "y's gradient ({what})");
            assert!(relative(&gf[1], &gr[1]) < 1e-4, "u's gradient ({what})");
            assert!(relative(&gf[2], &gr[2]) < 1e-4, "B's gradient ({what})");
        }
    }
    // The gate at the 1B width, with more rows than one grid dimension holds, and at a width
    // that is no multiple of 8 (one column a thread instead of 16-byte accesses).
    for (rows, i) in [(2 * 129, 6912), (70_000, 64), (5, 60)] {
        let gu = Tensor::randn([rows, 2 * i], bf) * 2.0;
        let (yf, gf) = with_grads(&[&gu], &|t| fused::gelu_gate(&t[0]).unwrap());
        let (yr, gr) = with_grads(&[&gu], &|t| fused::reference_gelu_gate(&t[0]).unwrap());
        assert!(relative(&yf, &yr) < 1e-2, "gate output ({rows} x {i})");
        assert!(
            relative(&gf[0], &gr[0]) < 1e-2,
            "gate gradient ({rows} x {i})"
        );
    }
}

#[test]
#[ignore = "needs a CUDA device (T2S_TEST_DEVICE=cuda, --include-ignored)"]
fn the_lora_switch_turns_off_the_lora_projections_alone() {
    let Some(dev) = cuda_device() else { return };
    let x = Tensor::zeros([2, 8], (Kind::BFloat16, dev));
    fused::set_lora_enabled(false);
    let (kernels, lora) = (fused::serves(&x), fused::serves_lora(&x));
    let why = fused::lora_status(dev);
    fused::set_lora_enabled(true);
    assert!(kernels, "the other kernels went off too");
    assert!(!lora, "the LoRA projections still serve");
    assert!(why.unwrap_err().contains(fused::FUSED_LORA_ENV));
    assert!(fused::serves_lora(&x), "back on");
}

#[test]
#[ignore = "needs a CUDA device (T2S_TEST_DEVICE=cuda, --include-ignored)"]
fn a_bf16_lora_model_gives_the_same_logits_and_gradients_with_and_without_fusion() {
    let Some(dev) = cuda_device() else { return };
    let mut m = random_model_on(1, 7, Kind::BFloat16, dev);
    lora::attach(
        &mut m,
        &LoraConfig::new(4, 8.0, &["q_proj", "k_proj", "v_proj", "o_proj"]),
    )
    .unwrap();
    randomize_b(&mut m, 0.1);
    let (ids, pos) = random_batch(97, 2, 12);
    let (ids, pos) = (ids.to_device(dev), pos.to_device(dev));
    let params = lora::params(&m);
    let run = |on: bool| {
        fused::set_enabled(on);
        let x = m
            .forward(&Inputs {
                ids: &ids,
                positions: &pos,
                key_valid: None,
            })
            .unwrap();
        let loss = x.to_kind(Kind::Float).square().mean(Kind::Float);
        let leaves: Vec<&Tensor> = params.iter().map(|(_, t)| t).collect();
        let g = Tensor::run_backward(&[loss], &leaves, false, false);
        (x.detach(), g)
    };
    let (lu, gu) = run(false);
    fused::set_enabled(true);
    // The LoRA products both ways: t2s's kernels and the tensor-core GEMMs.
    let before = fused::lora_matmul();
    for mode in [fused::LoraMatmul::Kernels, fused::LoraMatmul::Gemm] {
        fused::set_lora_matmul(mode);
        let (lf, gf) = run(true);
        let d = relative(&lf, &lu);
        eprintln!(
            "logits fused ({}) vs unfused: relative max |Δ| {d:.3e}",
            mode.name()
        );
        assert!(d < 0.05, "logits differ by {d} ({})", mode.name());
        for ((a, b), (n, _)) in gf.iter().zip(&gu).zip(&params) {
            let scale = b.abs().max().double_value(&[]);
            assert!(scale > 0.0, "{n}: no gradient");
            assert!(
                max_abs_diff(a, b) <= 0.05 * scale,
                "{n} ({}): max |Δgrad| {} vs max |grad| {scale}",
                mode.name(),
                max_abs_diff(a, b)
            );
        }
    }
    fused::set_lora_matmul(before);
}

// --- the kernels' arithmetic on the CPU, through the host emulation -------------------------

/// `tests/fused_emu/emulate.cpp` built once per test process (a C++20 compiler is needed, as
/// for building the worker's shim; `CXX` names another than `c++`).
fn emulator() -> &'static Path {
    static EMU: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, exe) = EMU.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("emulate");
        let src = repo_root().join("crates/t2s-torch/tests/fused_emu/emulate.cpp");
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        let out = Command::new(&cxx)
            .args([
                "-std=c++20",
                "-O2",
                "-pthread",
                "-fno-strict-aliasing",
                "-o",
            ])
            .arg(&exe)
            .arg(&src)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cxx}: {e}"));
        assert!(
            out.status.success(),
            "building the emulation failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (dir, exe)
    });
    exe
}

fn write_bf16(path: &Path, t: &Tensor) {
    let raw = t.contiguous().view_dtype(Kind::Int16).flatten(0, -1);
    let v = Vec::<i16>::try_from(&raw).unwrap();
    std::fs::write(
        path,
        v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .unwrap();
}

fn write_f32(path: &Path, t: &Tensor) {
    let v = Vec::<f32>::try_from(&t.contiguous().flatten(0, -1)).unwrap();
    std::fs::write(
        path,
        v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .unwrap();
}

fn read_bf16(path: &Path, shape: &[i64]) -> Tensor {
    let bytes = std::fs::read(path).unwrap();
    let v: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    Tensor::from_slice(&v)
        .view_dtype(Kind::BFloat16)
        .reshape(shape)
}

fn read_f32(path: &Path) -> Tensor {
    let bytes = std::fs::read(path).unwrap();
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Tensor::from_slice(&v)
}

fn emulate(args: &[String]) {
    let out = Command::new(emulator()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "emulate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The emulated norm kernels on `x_buf` (the buffer the rows live in) against
/// `reference_rms_norm` on `rows_of(x_buf)`, outputs, rstd and input gradients.
fn check_emulated_norm(
    x_buf: &Tensor,
    rows_of: &dyn Fn(&Tensor) -> Tensor,
    heads: i64,
    w: &Tensor,
    residual: bool,
    threads: i64,
) {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let x = rows_of(x_buf);
    let d = *x.size().last().unwrap();
    let rows = x.numel() as i64 / d;
    let x_tok = if heads > 1 {
        x_buf.stride()[x_buf.dim() - 3]
    } else {
        d
    };
    let res = Tensor::randn(x.size(), (Kind::BFloat16, Device::Cpu));
    let g = Tensor::randn(x.size(), (Kind::BFloat16, Device::Cpu));
    let eps = 1e-6;
    write_bf16(&p("x.bin"), x_buf);
    write_f32(&p("w.bin"), w);
    write_bf16(&p("res.bin"), &res);
    write_bf16(&p("g.bin"), &g);
    let w_heads = w.numel() as i64 / d;
    emulate(&[
        "rms".to_string(),
        dir.path().display().to_string(),
        rows.to_string(),
        heads.to_string(),
        d.to_string(),
        x_tok.to_string(),
        w_heads.to_string(),
        (residual as i32).to_string(),
        eps.to_string(),
        threads.to_string(),
    ]);
    let leaf = x_buf.detach().set_requires_grad(true);
    let xr = rows_of(&leaf);
    let y = fused::reference_rms_norm(&xr, w, heads, eps, residual.then_some(&res)).unwrap();
    let loss = (y.to_kind(Kind::Float) * g.to_kind(Kind::Float)).sum(Kind::Float);
    let dbuf = Tensor::run_backward(&[loss], &[&leaf], false, false).remove(0);
    let dx_ref = rows_of(&dbuf);
    let y_emu = read_bf16(&p("y.bin"), &x.size());
    let dx_emu = read_bf16(&p("dx.bin"), &x.size());
    let rstd_ref = (x
        .to_kind(Kind::Float)
        .square()
        .mean_dim(-1, false, Kind::Float)
        + eps)
        .rsqrt()
        .flatten(0, -1);
    let what = format!("norm D={d} heads={heads} residual={residual} threads={threads}");
    assert!(relative(&y_emu, &y.detach()) < 1e-2, "{what}: output");
    assert!(relative(&dx_emu, &dx_ref) < 1e-2, "{what}: gradient");
    assert!(
        relative(&read_f32(&p("rstd.bin")), &rstd_ref) < 1e-5,
        "{what}: rstd"
    );
    // Teeth: a gradient without the normalisation's own term is far off.
    let w_rows = w.view([w_heads, d]).repeat([rows / w_heads, 1]);
    let naive = (g.reshape([rows, d]).to_kind(Kind::Float) * w_rows * rstd_ref.view([rows, 1]))
        .to_kind(Kind::BFloat16);
    if !residual {
        let gap = relative(&naive, &dx_ref.reshape([rows, d]));
        assert!(gap > 2e-2, "{what}: the check cannot tell ({gap})");
    }
}

#[test]
fn emulated_norm_kernels_match_libtorch() {
    tch::manual_seed(11);
    let w = |n: i64| Tensor::randn([n], (Kind::Float, Device::Cpu)) * 0.3 + 1.0;
    let bf = (Kind::BFloat16, Device::Cpu);
    // Hidden-size rows, with and without the residual, fewer threads than columns.
    let x = Tensor::randn([5, 96], bf) * 3.0;
    check_emulated_norm(&x, &|t| t.shallow_clone(), 1, &w(96), true, 64);
    check_emulated_norm(&x, &|t| t.shallow_clone(), 1, &w(96), false, 32);
    let x = Tensor::randn([2, 1152], bf);
    check_emulated_norm(&x, &|t| t.shallow_clone(), 1, &w(1152), true, 256);
    // q/k norms: the first 5 of 6 heads of a [B, S, 6, D] projection, per-head weights.
    let qkv = Tensor::randn([2, 3, 6, 64], bf);
    let wh = Tensor::randn([5, 64], (Kind::Float, Device::Cpu)) * 0.3 + 1.0;
    check_emulated_norm(&qkv, &|t| t.narrow(2, 0, 5), 5, &wh, false, 64);
}

#[test]
fn emulated_gate_kernels_match_libtorch() {
    tch::manual_seed(12);
    let bf = (Kind::BFloat16, Device::Cpu);
    // 7 rows over a grid 3 rows high (the row loop); 40 columns over blocks of 32 threads,
    // one column a thread or, with 16-byte accesses, eight.
    let (rows, i) = (7i64, 40i64);
    let gu = Tensor::randn([rows, 2 * i], bf) * 2.0;
    let g = Tensor::randn([rows, i], bf);
    let leaf = gu.detach().set_requires_grad(true);
    let y = fused::reference_gelu_gate(&leaf).unwrap();
    let loss = (y.to_kind(Kind::Float) * g.to_kind(Kind::Float)).sum(Kind::Float);
    let dgu = Tensor::run_backward(&[loss], &[&leaf], false, false).remove(0);
    for vec in ["0", "1"] {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        write_bf16(&p("gu.bin"), &gu);
        write_bf16(&p("g.bin"), &g);
        emulate(&[
            "gate".into(),
            dir.path().display().to_string(),
            rows.to_string(),
            i.to_string(),
            "3".into(),
            "32".into(),
            vec.into(),
        ]);
        let out = read_bf16(&p("out.bin"), &[rows, i]);
        let dgu_emu = read_bf16(&p("dgu.bin"), &[rows, 2 * i]);
        assert!(
            relative(&out, &y.detach()) < 1e-2,
            "gate output (vec {vec})"
        );
        assert!(relative(&dgu_emu, &dgu) < 1e-2, "gate gradient (vec {vec})");
        // Bit-level: the same roundings as the unfused program, so nearly every value is equal.
        let equal = equal_share(&out, &y.detach());
        assert!(equal > 0.95, "gate output equal in {equal} (vec {vec})");
    }
}

#[test]
fn emulated_qk_norm_rope_kernels_match_libtorch() {
    tch::manual_seed(13);
    let bf = (Kind::BFloat16, Device::Cpu);
    // 4 query + 1 key heads of D = 64 inside a [2, 3, 6, 64] projection; tables per token.
    let (heads, d) = (5i64, 64i64);
    let qkv = Tensor::randn([2, 3, 6, d], bf) * 2.0;
    let w = Tensor::randn([heads, d], (Kind::Float, Device::Cpu)) * 0.3 + 1.0;
    let ang = Tensor::randn([2, 3, 1, d], (Kind::Float, Device::Cpu));
    let (cos, sin) = (
        ang.cos().to_kind(Kind::BFloat16),
        ang.sin().to_kind(Kind::BFloat16),
    );
    let g = Tensor::randn([2, 3, heads, d], bf);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    write_bf16(&p("x.bin"), &qkv);
    write_f32(&p("w.bin"), &w);
    write_bf16(&p("cos.bin"), &cos);
    write_bf16(&p("sin.bin"), &sin);
    write_bf16(&p("g.bin"), &g);
    let eps = 1e-6;
    emulate(&[
        "rope".into(),
        dir.path().display().to_string(),
        (2 * 3 * heads).to_string(),
        heads.to_string(),
        d.to_string(),
        (6 * d).to_string(),
        eps.to_string(),
        "32".into(),
    ]);
    let leaf = qkv.detach().set_requires_grad(true);
    let y = fused::reference_qk_norm_rope(&leaf.narrow(2, 0, heads), &w, &cos, &sin, heads, eps)
        .unwrap();
    let loss = (y.to_kind(Kind::Float) * g.to_kind(Kind::Float)).sum(Kind::Float);
    let dbuf = Tensor::run_backward(&[loss], &[&leaf], false, false).remove(0);
    let y_emu = read_bf16(&p("y.bin"), &[2, 3, heads, d]);
    let dx_emu = read_bf16(&p("dx.bin"), &[2, 3, heads, d]);
    assert!(
        relative(&y_emu, &y.detach()) < 1e-2,
        "q/k norm + RoPE output"
    );
    assert!(
        relative(&dx_emu, &dbuf.narrow(2, 0, heads)) < 1e-2,
        "q/k norm + RoPE gradient"
    );
    // Teeth: the norm alone (no rotation) is far from the output.
    let unrotated =
        fused::reference_rms_norm(&qkv.narrow(2, 0, heads), &w, heads, eps, None).unwrap();
    assert!(relative(&unrotated, &y.detach()) > 0.1);
}

#[test]
fn emulated_cross_entropy_kernel_matches_libtorch() {
    tch::manual_seed(14);
    // Fewer threads than columns, a row with its target at each end, a dominant logit; one
    // logit a thread per step or, with 16-byte accesses, eight.
    let (rows, v) = (4i64, 200i64);
    let z = Tensor::randn([rows, v], (Kind::BFloat16, Device::Cpu)) * 4.0;
    let _ = z.get(2).get(5).fill_(30.0);
    let t = Tensor::from_slice(&[0i64, 199, 5, 77]);
    let (nll, g) = t2s_torch::train::ce_rows_unfused(&z, &t.view([-1, 1]), Kind::BFloat16).unwrap();
    for vec in ["0", "1"] {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        write_bf16(&p("z.bin"), &z);
        let tv = Vec::<i64>::try_from(&t).unwrap();
        std::fs::write(
            p("t.bin"),
            tv.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
        )
        .unwrap();
        emulate(&[
            "ce".into(),
            dir.path().display().to_string(),
            rows.to_string(),
            v.to_string(),
            "64".into(),
            vec.into(),
        ]);
        let nll_emu = read_f32(&p("nll.bin"));
        let g_emu = read_bf16(&p("grad.bin"), &[rows, v]);
        assert!(
            relative(&nll_emu, &nll) < 1e-5,
            "nll {nll_emu} vs {nll} (vec {vec})"
        );
        assert!(relative(&g_emu, &g) < 1e-2, "gradient (vec {vec})");
        // The target columns carry the −1: the gradient sums to ~0 per row.
        let row_sums = g_emu
            .to_kind(Kind::Float)
            .sum_dim_intlist(-1, false, Kind::Float);
        assert!(
            row_sums.abs().max().double_value(&[]) < 0.05,
            "row sums {row_sums}"
        );
    }
}

#[test]
fn emulated_lora_dropout_kernels_match_libtorch() {
    tch::manual_seed(14);
    // 5 rows of 77 over a grid of 2 blocks of 32 threads (both stride loops), 3 copies.
    let (rows, width, copies, p) = (5i64, 77i64, 3i64, 0.25);
    let numel = rows * width;
    let x = Tensor::randn([numel], (Kind::BFloat16, Device::Cpu)).abs() + 0.5;
    let g = Tensor::randn([copies, numel], (Kind::Float, Device::Cpu));
    let run = |seed: u64| {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n);
        write_bf16(&path("x.bin"), &x);
        write_f32(&path("g.bin"), &g);
        emulate(&[
            "drop".into(),
            dir.path().display().to_string(),
            rows.to_string(),
            width.to_string(),
            copies.to_string(),
            seed.to_string(),
            p.to_string(),
            "2".into(),
            "32".into(),
        ]);
        (
            read_f32(&path("out.bin")).reshape([copies, numel]),
            read_bf16(&path("dx.bin"), &[numel]),
        )
    };
    let (out, dx) = run(12345);
    // The input has no zeros: a zero output is a dropped element, and the rest is exactly
    // fp32(x) / (1 - p), as libtorch's dropout computes it.
    let keep = out.ne(0.0);
    let out_ref = fused::reference_lora_dropout(&x, &keep, p).unwrap();
    assert_eq!(max_abs_diff(&out, &out_ref), 0.0, "dropped copies");
    // The backward regenerates the same masks: the masked, scaled sum over the copies in bf16.
    let scale = f64::from((1.0 / (1.0 - p)) as f32);
    let dx_ref = (&g * keep.to_kind(Kind::Float) * scale)
        .sum_dim_intlist([0i64].as_slice(), false, Kind::Float)
        .to_kind(Kind::BFloat16);
    assert!(relative(&dx, &dx_ref) < 1e-2, "input gradient");
    let equal = equal_share(&dx, &dx_ref);
    assert!(equal > 0.95, "input gradient equal in {equal}");
    // 1,155 draws at p = 0.25: the keep rate is 0.75 ± 0.013 (one standard deviation).
    let rate = keep
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]);
    assert!((rate - 0.75).abs() < 0.065, "keep rate {rate}");
    // Each copy has its own mask (independent masks agree on p² + (1 − p)² = 62.5%), the same
    // seed draws the same masks, another seed others.
    let agree = equal_share;
    assert!(
        agree(&keep.get(0), &keep.get(1)) < 0.8,
        "copies share a mask"
    );
    assert_eq!(
        max_abs_diff(&run(12345).0, &out),
        0.0,
        "same seed, other masks"
    );
    assert!(
        agree(&run(54321).0.ne(0.0), &keep) < 0.8,
        "another seed, same masks"
    );
}

/// The emulated LoRA down-projection kernels against libtorch's ops (`reference_lora_down`
/// with the masks the emulated dropout kernel draws from the same seed): the output, the
/// input's gradient summed over the adapters in bf16, and A's gradient summed over the splits.
fn check_emulated_lora_down(t: i64, d: i64, n: i64, r: i64, p: f64, span: i64, split: i64) {
    let what =
        format!("T {t}, D {d}, n {n}, r {r}, p {p}, splits of {span} tokens, {split} columns");
    let x = Tensor::randn([t, d], (Kind::BFloat16, Device::Cpu));
    let a = Tensor::randn([n, r, d], (Kind::Float, Device::Cpu)) * 0.1;
    let du = Tensor::randn([n, t, r], (Kind::Float, Device::Cpu));
    let seed = 4242u64;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    write_bf16(&path("x.bin"), &x);
    write_f32(&path("a.bin"), &a);
    write_f32(&path("du.bin"), &du);
    let keep = (p > 0.0).then(|| {
        // The dropout kernel's masks for the same seed, read off its copies of an all-ones input.
        write_bf16(
            &path("ones.bin"),
            &Tensor::ones([t * d], (Kind::BFloat16, Device::Cpu)),
        );
        std::fs::rename(path("x.bin"), path("x_saved.bin")).unwrap();
        std::fs::rename(path("ones.bin"), path("x.bin")).unwrap();
        write_f32(
            &path("g.bin"),
            &Tensor::zeros([n, t * d], (Kind::Float, Device::Cpu)),
        );
        emulate(&[
            "drop".into(),
            dir.path().display().to_string(),
            t.to_string(),
            d.to_string(),
            n.to_string(),
            seed.to_string(),
            p.to_string(),
            "3".into(),
            "64".into(),
        ]);
        std::fs::rename(path("x_saved.bin"), path("x.bin")).unwrap();
        read_f32(&path("out.bin")).reshape([n, t, d]).ne(0.0)
    });
    emulate(&[
        "down".into(),
        dir.path().display().to_string(),
        t.to_string(),
        d.to_string(),
        n.to_string(),
        r.to_string(),
        seed.to_string(),
        p.to_string(),
        span.to_string(),
        split.to_string(),
    ]);
    // Partial sums over the splits of the columns (of `split`) and of the tokens (of `span`).
    let d_splits = (d + split - 1) / split;
    let u = read_f32(&path("u.bin"))
        .reshape([d_splits, n, t, r])
        .sum_dim_intlist([0i64].as_slice(), false, Kind::Float);
    let dx = read_bf16(&path("dx.bin"), &[t, d]);
    let splits = (t + span - 1) / span;
    let da = read_f32(&path("da.bin"))
        .reshape([splits, n, r, d])
        .sum_dim_intlist([0i64].as_slice(), false, Kind::Float);

    let (xl, al) = (
        x.detach().set_requires_grad(true),
        a.detach().set_requires_grad(true),
    );
    let u_ref = fused::reference_lora_down(&xl, &al, keep.as_ref(), p).unwrap();
    let g = Tensor::run_backward(
        &[(&u_ref * &du).sum(Kind::Float)],
        &[&xl, &al],
        false,
        false,
    );
    assert!(relative(&u, &u_ref) < 1e-5, "output ({what})");
    assert!(relative(&da, &g[1]) < 1e-5, "A's gradient ({what})");
    assert_eq!(dx.kind(), g[0].kind());
    assert!(relative(&dx, &g[0]) < 1e-2, "input gradient ({what})");
    // Summed in another order, a bf16 rounding may land one unit apart; most agree exactly.
    let equal = equal_share(&dx, &g[0]);
    assert!(equal > 0.9, "input gradient equal in {equal} ({what})");
    if let Some(keep) = keep {
        let rate = keep
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
        assert!((rate - (1.0 - p)).abs() < 0.05, "keep rate {rate} ({what})");
        // The bits the three kernels read: the dropout kernel's masks, clear past column D.
        let words: Vec<u32> = std::fs::read(path("bits.bin"))
            .unwrap()
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
            .collect();
        let w = (d + 31) / 32;
        assert_eq!(words.len() as i64, n * t * w, "mask words ({what})");
        let keep = Vec::<u8>::try_from(keep.to_kind(Kind::Uint8).flatten(0, -1)).unwrap();
        for (row, row_words) in words.chunks_exact(w as usize).enumerate() {
            for col in 0..32 * w {
                let bit = row_words[(col / 32) as usize] >> (col % 32) & 1;
                let want = if col < d {
                    u32::from(keep[row * d as usize + col as usize])
                } else {
                    0
                };
                assert_eq!(bit, want, "mask bit of row {row}, column {col} ({what})");
            }
        }
    }
}

#[test]
fn emulated_lora_down_projection_kernels_match_libtorch() {
    tch::manual_seed(15);
    // Partial tiles everywhere: 70 tokens, 300 columns (two splits of 256 in the row
    // reduction, the second partial; tiles of 128 and 256 columns), ranks not a multiple of 4,
    // token splits of 32 (the last partial).
    check_emulated_lora_down(70, 300, 3, 5, 0.25, 32, 256);
    // No dropout, one adapter; and the widest rank the kernels take (n · r = 120 of 128).
    check_emulated_lora_down(33, 64, 1, 16, 0.0, 256, 256);
    check_emulated_lora_down(40, 36, 3, 40, 0.1, 16, 256);
    // The smallest splits the host picks (32 columns, 32 tokens), the last of each partial.
    check_emulated_lora_down(70, 300, 3, 5, 0.25, 32, 32);
    check_emulated_lora_down(45, 100, 2, 8, 0.1, 32, 48);
}

/// Random dropout bits `[n, t, ceil(d / 32)]` (int32, every bit of a word drawn) and the
/// masks they stand for, bool `[n, t, d]`: bit `d % 32` of word `d / 32` keeps column `d`.
fn random_bits(n: i64, t: i64, d: i64) -> (Tensor, Tensor) {
    let w = (d + 31) / 32;
    let bits = Tensor::randint_low(
        i64::from(i32::MIN),
        i64::from(i32::MAX) + 1,
        [n, t, w],
        (Kind::Int, Device::Cpu),
    );
    let shifts = Tensor::arange(32, (Kind::Int, Device::Cpu));
    let keep = bits
        .unsqueeze(-1)
        .bitwise_right_shift(&shifts)
        .bitwise_and(1)
        .reshape([n, t, 32 * w])
        .narrow(2, 0, d)
        .ne(0);
    (bits, keep)
}

fn write_i32(path: &Path, t: &Tensor) {
    let v = Vec::<i32>::try_from(&t.contiguous().flatten(0, -1)).unwrap();
    std::fs::write(
        path,
        v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .unwrap();
}

/// The emulated mask kernels of the down-projection's `gemm` mode against libtorch's ops:
/// the masked bf16 copies of x exactly, and the masked, scaled sum of the adapters' fp32
/// gradients rounded once to bf16 exactly (the same sum in the same order).
#[test]
fn emulated_lora_mask_kernels_match_libtorch() {
    tch::manual_seed(16);
    // Scalar paths with a partial word and group (300 columns), the 16-byte paths at the 1B
    // model's q/k/v width, and one adapter on a width of 36 (a group of 4 past the last word).
    for (t, d, n, vec) in [
        (33i64, 300i64, 3i64, 0),
        (5, 1152, 3, 1),
        (7, 36, 1, 0),
        (6, 64, 2, 1),
    ] {
        let what = format!("T {t}, D {d}, n {n}, vec {vec}");
        let x = Tensor::randn([t, d], (Kind::BFloat16, Device::Cpu));
        let g = Tensor::randn([n, t, d], (Kind::Float, Device::Cpu));
        let (bits, keep) = random_bits(n, t, d);
        let p = 0.25;
        let scale = (1.0 / (1.0 - p)) as f32;
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        write_bf16(&path("x.bin"), &x);
        write_f32(&path("g.bin"), &g);
        write_i32(&path("bits.bin"), &bits);
        emulate(&[
            "mask".into(),
            dir.path().display().to_string(),
            t.to_string(),
            d.to_string(),
            n.to_string(),
            scale.to_string(),
            vec.to_string(),
        ]);
        let xm = read_bf16(&path("xm.bin"), &[n, t, d]);
        let xm_ref = x
            .unsqueeze(0)
            .where_self(&keep, &x.zeros_like().unsqueeze(0));
        assert!(xm.equal(&xm_ref), "masked copies ({what})");
        let dx = read_bf16(&path("dx.bin"), &[t, d]);
        let kept = (&g * f64::from(scale)).where_self(&keep, &g.zeros_like());
        let mut sum = kept.get(0);
        for c in 1..n {
            sum += kept.get(c);
        }
        assert!(
            dx.equal(&sum.to_kind(Kind::BFloat16)),
            "masked sum ({what})"
        );
        // A mask that keeps half of the elements: the test sees a misplaced bit.
        let rate = keep
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
        assert!((0.35..0.65).contains(&rate), "keep rate {rate} ({what})");
    }
}

/// The down-projection's `gemm` mode run on the CPU (the same bf16 pieces, multiplied in fp32;
/// the masks through libtorch's ops) against libtorch's fp32 ops: the output and A's gradient to
/// fp32 accuracy (a lost piece of A or of u's gradient would cost ~2^-9 or ~2^-17 relative,
/// above the limit of 1e-6, where the full split is ~2e-7), the input's gradient to bf16's rounding.
#[test]
fn lora_down_gemm_mode_matches_fp32_ops_on_the_cpu() {
    tch::manual_seed(17);
    for (t, d, n, r, p) in [
        (70i64, 300i64, 3i64, 5i64, 0.25),
        (70, 300, 3, 5, 0.0),
        (33, 64, 1, 16, 0.1),
        (40, 36, 3, 40, 0.0),
        // More ranks than the kernels take (n · r = 192 > 128): the GEMMs have no limit.
        (20, 96, 3, 64, 0.1),
    ] {
        let what = format!("T {t}, D {d}, n {n}, r {r}, p {p}");
        let x = Tensor::randn([2, t / 2, d], (Kind::BFloat16, Device::Cpu));
        let a = Tensor::randn([n, r, d], (Kind::Float, Device::Cpu)) * 0.1;
        let (bits, keep) = random_bits(n, t / 2 * 2, d);
        let bits = if p > 0.0 {
            bits
        } else {
            Tensor::empty([0], (Kind::Int, Device::Cpu))
        };
        let keep = (p > 0.0).then_some(keep);
        let (u, g) = match with_grads_or_skip(&[&x, &a], &|t| {
            fused::lora_down_gemm_with_bits(&t[0], &t[1], &bits, p)
        }) {
            Some(out) => out,
            None => return,
        };
        let (u_ref, g_ref) = with_grads(&[&x, &a], &|t| {
            fused::reference_lora_down(&t[0], &t[1], keep.as_ref(), p).unwrap()
        });
        assert_eq!(u.size(), vec![n, t / 2 * 2, r], "{what}");
        assert!(
            relative(&u, &u_ref) < 1e-6,
            "output ({what}): {}",
            relative(&u, &u_ref)
        );
        assert!(
            relative(&g[1], &g_ref[1]) < 1e-6,
            "A's gradient ({what}): {}",
            relative(&g[1], &g_ref[1])
        );
        assert_eq!(g[0].kind(), Kind::BFloat16);
        assert!(relative(&g[0], &g_ref[0]) < 1e-2, "input gradient ({what})");
        let equal = equal_share(&g[0], &g_ref[0]);
        assert!(equal > 0.9, "input gradient equal in {equal} ({what})");
    }
}

/// The up-projection's `gemm` mode run on the CPU (its forward with libtorch's ops there, the
/// gradients over the same bf16 pieces multiplied in fp32) against libtorch's fp32 ops: u's
/// and B's gradients to fp32 accuracy, y's exactly the output's, the output to bf16's rounding.
#[test]
fn lora_up_gemm_mode_matches_fp32_ops_on_the_cpu() {
    tch::manual_seed(18);
    // One adapter's columns wide, the others narrow; one adapter alone; ranks not a multiple
    // of 4.
    for (t, r, offsets) in [
        (70i64, 5i64, vec![0i64, 300, 312, 400]),
        (33, 16, vec![0, 64]),
        (40, 3, vec![0, 8, 16, 24, 36]),
    ] {
        let (n, o) = (offsets.len() as i64 - 1, offsets[offsets.len() - 1]);
        let what = format!("T {t}, r {r}, offsets {offsets:?}");
        let y = Tensor::randn([2, t / 2, o], (Kind::BFloat16, Device::Cpu));
        let u = Tensor::randn([n, t / 2 * 2, r], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([o, r], (Kind::Float, Device::Cpu)) * 0.1;
        let Some((out, g)) = with_grads_or_skip(&[&y, &u, &b], &|t| {
            fused::lora_up_with(fused::LoraMatmul::Gemm, &t[0], &t[1], &t[2], &offsets)
        }) else {
            return;
        };
        let (out_ref, g_ref) = with_grads(&[&y, &u, &b], &|t| {
            fused::reference_lora_up(&t[0], &t[1], &t[2], &offsets).unwrap()
        });
        assert_eq!(out.kind(), Kind::BFloat16);
        assert!(relative(&out, &out_ref) < 1e-2, "output ({what})");
        let equal = equal_share(&out, &out_ref);
        assert!(equal > 0.9, "output equal in {equal} ({what})");
        assert_eq!(max_abs_diff(&g[0], &g_ref[0]), 0.0, "y's gradient ({what})");
        let (du, db) = (relative(&g[1], &g_ref[1]), relative(&g[2], &g_ref[2]));
        assert!(du < 1e-6, "u's gradient ({what}): {du:e}");
        assert!(db < 1e-6, "B's gradient ({what}): {db:e}");
    }
}

/// [`with_grads`] for a fallible `f`: `None` (the test skips) on a worker without the shim.
fn with_grads_or_skip(
    inputs: &[&Tensor],
    f: &dyn Fn(&[Tensor]) -> t2s_torch::Result<Tensor>,
) -> Option<(Tensor, Vec<Tensor>)> {
    let probe: Vec<Tensor> = inputs.iter().map(|t| t.detach()).collect();
    if let Err(e) = f(&probe) {
        if built_without_shim(&e) {
            eprintln!("skipped: {e}");
            return None;
        }
        panic!("{e}");
    }
    Some(with_grads(inputs, &|t| f(t).unwrap()))
}

/// The emulated LoRA up-projection kernels against libtorch's ops (`reference_lora_up`): the
/// bf16 output, the rank activations' gradient and B's gradient summed over the splits.
fn check_emulated_lora_up(t: i64, r: i64, offsets: &[i64], span: i64, split: i64) {
    let (n, o) = (offsets.len() as i64 - 1, offsets[offsets.len() - 1]);
    let what =
        format!("T {t}, r {r}, offsets {offsets:?}, splits of {span} tokens, {split} columns");
    let y = Tensor::randn([t, o], (Kind::BFloat16, Device::Cpu));
    let u = Tensor::randn([n, t, r], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([o, r], (Kind::Float, Device::Cpu)) * 0.1;
    let g = Tensor::randn([t, o], (Kind::BFloat16, Device::Cpu));
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    write_bf16(&path("y.bin"), &y);
    write_f32(&path("u.bin"), &u);
    write_f32(&path("b.bin"), &b);
    write_bf16(&path("g.bin"), &g);
    let mut args: Vec<String> = vec![
        "up".into(),
        dir.path().display().to_string(),
        t.to_string(),
        o.to_string(),
        r.to_string(),
        span.to_string(),
        split.to_string(),
    ];
    args.extend(offsets.iter().map(|v| v.to_string()));
    emulate(&args);
    let out = read_bf16(&path("out.bin"), &[t, o]);
    // Partial sums over the splits of each adapter's columns (of `split`) and of the tokens
    // (of `span`, B's gradient transposed).
    let widest = offsets.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    let o_splits = ((widest + split - 1) / split).max(1);
    let du = read_f32(&path("du.bin"))
        .reshape([o_splits, n, t, r])
        .sum_dim_intlist([0i64].as_slice(), false, Kind::Float);
    let splits = (t + span - 1) / span;
    let db = read_f32(&path("db.bin"))
        .reshape([splits, r, o])
        .sum_dim_intlist([0i64].as_slice(), false, Kind::Float)
        .tr();

    let (ul, bl) = (
        u.detach().set_requires_grad(true),
        b.detach().set_requires_grad(true),
    );
    let out_ref = fused::reference_lora_up(&y, &ul, &bl, offsets).unwrap();
    let grads = Tensor::run_backward(
        &[(out_ref.to_kind(Kind::Float) * g.to_kind(Kind::Float)).sum(Kind::Float)],
        &[&ul, &bl],
        false,
        false,
    );
    assert!(relative(&out, &out_ref) < 1e-2, "output ({what})");
    let equal = equal_share(&out, &out_ref);
    assert!(equal > 0.9, "output equal in {equal} ({what})");
    assert!(relative(&du, &grads[0]) < 1e-5, "u's gradient ({what})");
    assert!(relative(&db, &grads[1]) < 1e-5, "B's gradient ({what})");
}

#[test]
fn emulated_lora_up_projection_kernels_match_libtorch() {
    tch::manual_seed(16);
    // q/k/v-like parts of unequal width (multiples of 4, none of a tile; the first wider than
    // a 256-column split), over 70 tokens.
    check_emulated_lora_up(70, 5, &[0, 300, 312, 400], 32, 256);
    // One adapter (o), and four parts at the widest rank taken (n · r = 128).
    check_emulated_lora_up(33, 16, &[0, 64], 256, 256);
    check_emulated_lora_up(20, 32, &[0, 8, 16, 24, 40], 8, 256);
    // The smallest column splits the host picks: parts narrower than a split and wider than
    // several, splits that end inside a part.
    check_emulated_lora_up(70, 5, &[0, 300, 312, 400], 32, 32);
    check_emulated_lora_up(45, 8, &[0, 100, 148], 48, 48);
}
