//! `t2s infer`: one-shot or interactive Text-to-SQL generation with a model and an optional
//! LoRA adapter (a file of requests: `infer_batch`). The work runs in the libtorch worker
//! (`infer` job); this side checks inputs, reads `@file` arguments and prints the result.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use serde_json::Value;

use super::lookup::{self, Weights};
use super::{check_dir, UsageError};
use crate::cli::InferArgs;
use crate::worker::jobs::{Generation, InferJob, Job};
use crate::worker::{JobSpec, WorkerLauncher};

pub fn infer(root: &Path, args: InferArgs) -> anyhow::Result<ExitCode> {
    let weights = lookup::weights(
        root,
        &args.from,
        args.model.as_deref(),
        args.adapter.as_deref(),
    )?;
    check_dir(
        &weights.model,
        "--model",
        &["config.json", "tokenizer.json"],
    )?;
    let worker = WorkerLauncher::locate()?;
    if let (Some(input), Some(out)) = (&args.input, &args.out) {
        return super::infer_batch::run(&worker, &args, &weights, input, out);
    }
    match &args.prompt {
        Some(prompt) => {
            let prompt = read_arg(prompt, "--prompt")?;
            let context = match &args.context {
                Some(c) => read_arg(c, "--context")?,
                None => String::new(),
            };
            let out = ask(&worker, &args, &weights, &prompt, &context)?;
            print_result(&args, &out);
            Ok(ExitCode::SUCCESS)
        }
        None => interactive(&worker, &args, &weights),
    }
}

fn interactive(
    worker: &WorkerLauncher,
    args: &InferArgs,
    weights: &Weights,
) -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut context = match &args.context {
        Some(c) => read_arg(c, "--context")?,
        None => String::new(),
    };
    eprintln!("t2s infer: type a request (empty line or Ctrl-D quits; `:context TEXT|@file` sets the database context)");
    loop {
        eprint!("request> ");
        let _ = std::io::stderr().flush();
        let Some(line) = lines.next() else { break };
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        if let Some(c) = line.strip_prefix(":context") {
            context = read_arg(c.trim(), ":context")?;
            eprintln!("context set ({} characters)", context.len());
            continue;
        }
        match ask(worker, args, weights, line, &context) {
            Ok(out) => print_result(args, &out),
            Err(e) => eprintln!("error: {e:#}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ask(
    worker: &WorkerLauncher,
    args: &InferArgs,
    weights: &Weights,
    prompt: &str,
    context: &str,
) -> anyhow::Result<Value> {
    let mut spec = JobSpec::of(&Job::Infer(InferJob {
        prompt: prompt.to_string(),
        context: context.to_string(),
        raw: args.raw,
        generation: generation(args),
    }));
    spec.device = args.device.clone();
    spec.inputs.insert("model".into(), weights.model.clone());
    if let Some(a) = &weights.adapter {
        spec.inputs.insert("adapter".into(), a.clone());
    }
    let cancel = AtomicBool::new(false);
    Ok(worker.run(&spec, |_| {}, &cancel)?)
}

/// How `t2s infer` decodes, from its flags (one request or a file of them).
pub(super) fn generation(args: &InferArgs) -> Generation {
    Generation {
        max_new_tokens: args.max_new_tokens,
        greedy: !args.sample,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        ..Generation::default()
    }
}

fn print_result(args: &InferArgs, out: &Value) {
    let text = out.get("text").and_then(Value::as_str).unwrap_or_default();
    if args.raw {
        println!("{text}");
    } else {
        println!("{}", out.get("sql").and_then(Value::as_str).unwrap_or(text));
    }
}

/// `@path` reads the file; anything else is the text itself.
fn read_arg(value: &str, flag: &str) -> anyhow::Result<String> {
    match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("{flag} @{path}: cannot read the file: {e}")).into()),
        None => Ok(value.to_string()),
    }
}
