//! `t2s infer` through the real orchestrator binary (which hands the work to `t2s-worker`):
//! `--raw --greedy` text equals transformers' greedy `generate` decoded with the same
//! tokenizer, `@file` contexts work, and each bad input fails cleanly with a message that
//! names it (exit 2 for usage errors found before the worker starts, 1 for the worker's).

mod common;

use std::process::{Command, Output};

use common::{peft_adapter, python, run_py, t2s, tiny_model};
use serde_json::Value;

fn infer(args: &[&str]) -> Output {
    Command::new(t2s())
        .arg("infer")
        .args(args)
        .env("T2S_WORKER", env!("CARGO_BIN_EXE_t2s-worker"))
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn t2s_infer_raw_greedy_equals_transformers_and_rejects_bad_inputs() {
    let Some(py) = python() else { return };
    let model = tiny_model(&py, 1, false);
    let m = model.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (prompt, context) = (
        "How many users are older than 30?",
        "CREATE TABLE users (id INTEGER, age INTEGER);",
    );
    let ctx_file = work.path().join("schema.sql");
    std::fs::write(&ctx_file, context).unwrap();
    let ctx_arg = format!("@{}", ctx_file.display());

    let out = infer(&[
        "--model",
        m,
        "--prompt",
        prompt,
        "--context",
        &ctx_arg,
        "--raw",
        "--greedy",
        "--max-new-tokens",
        "24",
        "--device",
        "cpu",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rendered = t2s::data::format::chat_prompt(prompt, context);
    let hf: Value = serde_json::from_str(&run_py(
        &py,
        "hf_infer.py",
        &[
            "--model",
            m,
            "--text",
            &rendered,
            "--max-new",
            "24",
            "--eos",
            "1,106",
        ],
    ))
    .unwrap();
    assert_eq!(
        stdout.strip_suffix('\n').unwrap_or(&stdout),
        hf["text"].as_str().unwrap()
    );

    // Without --raw the extracted SQL is printed: the evaluator's extraction of that text.
    let out = infer(&[
        "--model",
        m,
        "--prompt",
        prompt,
        "--context",
        context,
        "--max-new-tokens",
        "24",
        "--device",
        "cpu",
    ]);
    let (sql, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        sql.trim_end_matches('\n'),
        t2s::eval::extract::extract_sql(hf["text"].as_str().unwrap())
    );

    // A missing model directory: a usage error before the worker starts.
    let missing = work.path().join("nope");
    let out = infer(&["--model", missing.to_str().unwrap(), "--prompt", prompt]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--model")
            && stderr.contains("nope")
            && stderr.contains("no such directory"),
        "{stderr}"
    );
    // A directory without the model files.
    let out = infer(&["--model", work.path().to_str().unwrap(), "--prompt", prompt]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing config.json"), "{stderr}");
    // An unreadable @file.
    let out = infer(&[
        "--model",
        m,
        "--prompt",
        prompt,
        "--context",
        "@/nonexistent/schema.sql",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/schema.sql"), "{stderr}");
    // An adapter made for another base (2 KV heads: k/v shapes differ).
    let other = tiny_model(&py, 2, false);
    let adapter = work.path().join("adapter-kv2");
    peft_adapter(&py, &other, &adapter, &[]);
    let out = infer(&[
        "--model",
        m,
        "--adapter",
        adapter.to_str().unwrap(),
        "--prompt",
        prompt,
        "--device",
        "cpu",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("k_proj") && stderr.contains("another base model"),
        "{stderr}"
    );
    // A prompt beyond the model's context (max_position_embeddings 512 in the tiny config).
    let long = "SELECT name FROM users; ".repeat(200);
    let out = infer(&[
        "--model",
        m,
        "--prompt",
        prompt,
        "--context",
        &long,
        "--device",
        "cpu",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("max_position_embeddings"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
