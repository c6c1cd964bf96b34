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

/// `t2s infer --input FILE --out FILE`: every request of a JSONL file generated in batches,
/// its row written back with `prediction` (the same SQL `t2s infer --prompt` gives the request
/// alone), in input order, that `t2s evaluate --predictions` scores. An interrupted file
/// resumes from what was generated; an existing --out is refused; bad lines are named.
#[test]
fn t2s_infer_generates_for_a_file_of_requests_and_resumes() {
    let Some(py) = python() else { return };
    let model = tiny_model(&py, 1, false);
    let m = model.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let context = "CREATE TABLE users (id INTEGER, age INTEGER, name TEXT); \
                   INSERT INTO users VALUES (1, 31, 'a'), (2, 25, 'b');";
    let requests: Vec<Value> = (0..12)
        .map(|i| {
            serde_json::json!({"id": format!("r{i}"), "sql_prompt": format!("List users older than {}", 20 + i),
                               "sql_context": context, "sql": format!("SELECT name FROM users WHERE age > {};", 20 + i)})
        })
        .collect();
    let input = work.path().join("requests.jsonl");
    let lines: Vec<String> = requests.iter().map(Value::to_string).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let run = |out: &std::path::Path, batch: &str| {
        infer(&[
            "--model",
            m,
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--max-new-tokens",
            "24",
            "--batch-size",
            batch,
            "--device",
            "cpu",
        ])
    };
    let read = |out: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };

    let out = work.path().join("out/preds.jsonl");
    let o = run(&out, "1");
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("wrote 12 predictions"), "{stdout}");
    assert!(stdout.contains("t2s evaluate --predictions"), "{stdout}");
    let rows = read(&out);
    assert_eq!(rows.len(), 12);
    for (row, req) in rows.iter().zip(&requests) {
        assert_eq!(row["id"], req["id"], "input order");
        assert_eq!(row["sql"], req["sql"], "the row is kept");
        assert!(row["new_tokens"].as_u64().unwrap() > 0);
        assert_eq!(
            row["prediction"].as_str().unwrap(),
            t2s::eval::extract::extract_sql(row["generation"].as_str().unwrap())
        );
    }
    // The same SQL as each request alone.
    for (row, req) in rows.iter().zip(&requests).take(3) {
        let single = infer(&[
            "--model",
            m,
            "--prompt",
            req["sql_prompt"].as_str().unwrap(),
            "--context",
            context,
            "--max-new-tokens",
            "24",
            "--device",
            "cpu",
        ]);
        let (sql, stderr) = text(&single);
        assert!(single.status.success(), "{stderr}");
        assert_eq!(
            sql.trim_end_matches('\n'),
            row["prediction"].as_str().unwrap()
        );
    }
    // Nothing left beside the file; `t2s evaluate` scores it; an existing --out is refused.
    let names: Vec<String> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["preds.jsonl"]);
    let scored = Command::new(t2s())
        .args(["evaluate", "--json", "--predictions"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(scored.status.success(), "{}", text(&scored).1);
    let report: Value = serde_json::from_slice(&scored.stdout).unwrap();
    assert_eq!(report["n"], 12);
    let again = run(&out, "1");
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).1.contains("exists"), "{}", text(&again).1);

    // Interrupted once a generation is on disk: exit 130, the work kept, no --out; the rerun
    // resumes from it and writes the same predictions.
    let out2 = work.path().join("out/resumed.jsonl");
    let generations = work
        .path()
        .join("out/.resumed.jsonl.t2s-infer/generations.jsonl");
    let child = Command::new(t2s())
        .arg("infer")
        .args(["--model", m, "--input", input.to_str().unwrap(), "--out"])
        .arg(&out2)
        .args([
            "--max-new-tokens",
            "24",
            "--batch-size",
            "1",
            "--device",
            "cpu",
        ])
        .env("T2S_WORKER", env!("CARGO_BIN_EXE_t2s-worker"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&generations).map_or(0, |t| t.matches('\n').count()) < 1 {
        assert!(t0.elapsed().as_secs() < 120, "no generation written");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("rerun the same command to resume"),
        "{stderr}"
    );
    assert!(!out2.exists() && generations.is_file());
    let o = run(&out2, "1");
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("resuming: "), "{stderr}");
    let resumed = read(&out2);
    let predictions = |rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|r| r["prediction"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(predictions(&resumed), predictions(&rows));

    // A line without a request: a usage error naming the file and line, nothing written.
    let bad = work.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"sql_prompt\": \"a\"}\n{\"sql_context\": \"\"}\n").unwrap();
    let out3 = work.path().join("out/bad-preds.jsonl");
    let o = infer(&[
        "--model",
        m,
        "--input",
        bad.to_str().unwrap(),
        "--out",
        out3.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.jsonl:2: missing field"), "{stderr}");
    assert!(!out3.exists());
}
