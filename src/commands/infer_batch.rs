//! `t2s infer --input requests.jsonl --out predictions.jsonl`: generation for a file of
//! requests in the worker's `generate` job (batched, sorted by length, the adapter merged).
//! The work lives in `.<out>.t2s-infer/` beside `--out` until the file is whole: a rerun of
//! the same command (same weights, input and settings) continues where an interrupted one
//! stopped, any other starts over. `--out` is written once, complete, in input order (a
//! temporary file renamed), and never over an existing file.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use serde_json::{json, Value};

use super::lookup::Weights;
use super::UsageError;
use crate::cli::InferArgs;
use crate::data::format::chat_prompt;
use crate::eval::extract::extract_sql;
use crate::eval::input::{read_requests, Request};
use crate::worker::generate::{read_generations, Batch, Generations};
use crate::worker::{WorkerEvent, WorkerLauncher};

/// Set by Ctrl-C or SIGTERM: the worker stops; what it generated is kept for the rerun.
static CANCEL: AtomicBool = AtomicBool::new(false);

/// The fingerprint file in the work directory: what the generations there were made with.
const FINGERPRINT: &str = "fingerprint";

pub fn run(
    worker: &WorkerLauncher,
    args: &InferArgs,
    weights: &Weights,
    input: &Path,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let requests = read_requests(input).map_err(|e| UsageError(format!("--input: {e}")))?;
    if out.exists() {
        return Err(UsageError(format!(
            "--out {}: exists; name a new file (an infer never overwrites one)",
            out.display()
        ))
        .into());
    }
    let work = work_dir(out)?;
    let resumed = prepare_work(&work, &fingerprint(args, weights, input)?)?;

    let batch = Batch {
        dir: &work,
        model: &weights.model,
        adapter: weights.adapter.as_deref(),
        device: &args.device,
        batch_size: args.batch_size.max(1),
        generation: super::infer::generation(args),
    };
    let spec = batch.job(
        requests
            .iter()
            .map(|r| (r.id.clone(), chat_prompt(&r.prompt, &r.context))),
    )?;
    let generations = batch.out_file();
    let before = if resumed {
        read_generations(&generations).map_or(0, |g| g.len())
    } else {
        0
    };
    if before > 0 {
        eprintln!(
            "t2s infer: resuming: {before} of {} already generated",
            requests.len()
        );
    }

    // Setting the handler fails only if one is set already (tests calling commands in-process).
    let _ = ctrlc::set_handler(|| CANCEL.store(true, Ordering::SeqCst));
    let total = requests.len();
    let live = std::io::stderr().is_terminal();
    let outcome = worker.run(
        &spec,
        |ev| {
            if let WorkerEvent::Progress { done, .. } = ev {
                if live {
                    eprint!("\rgenerated {}/{total}", before as u64 + done);
                }
            }
        },
        &CANCEL,
    );
    if live {
        eprintln!();
    }
    if CANCEL.load(Ordering::SeqCst) {
        let done = read_generations(&generations).map_or(0, |g| g.len());
        eprintln!(
            "t2s infer: interrupted with {done} of {total} generated; rerun the same command to \
             resume"
        );
        return Ok(ExitCode::from(130));
    }
    let result = outcome.with_context(|| {
        format!(
            "generating for {} (rerun the same command to resume)",
            input.display()
        )
    })?;
    let new_tokens = write_predictions(&requests, &read_generations(&generations)?, out)?;
    let _ = std::fs::remove_dir_all(&work);
    let speed = result
        .pointer("/tokens_per_s")
        .and_then(Value::as_f64)
        .map(|t| format!(", {t:.0} new tokens/s"))
        .unwrap_or_default();
    println!(
        "wrote {total} predictions to {} ({new_tokens} new tokens{speed})",
        out.display()
    );
    if requests
        .iter()
        .any(|r| r.row.contains_key("sql") && !r.context.is_empty())
    {
        println!("score them: t2s evaluate --predictions {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The work directory beside `out` (created with `out`'s folder): prompts, generations and
/// the fingerprint of what they were made with, kept until the output is whole.
fn work_dir(out: &Path) -> anyhow::Result<PathBuf> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| {
        UsageError(format!(
            "--out {}: cannot create its folder: {e}",
            out.display()
        ))
    })?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    Ok(parent.join(format!(".{name}.t2s-infer")))
}

/// Each request row with its `prediction`, `generation` and `new_tokens`, in input order,
/// written whole to `out`; the new tokens in all.
fn write_predictions(requests: &[Request], gens: &Generations, out: &Path) -> anyhow::Result<u64> {
    let mut text = String::new();
    let mut new_tokens = 0;
    for r in requests {
        let Some((generation, tokens)) = gens.get(&r.id) else {
            anyhow::bail!(
                "the worker wrote no generation for id {}; rerun the same command to resume",
                r.id
            );
        };
        new_tokens += tokens;
        let mut row = r.row.clone();
        row.insert("prediction".into(), json!(extract_sql(generation)));
        row.insert("generation".into(), json!(generation));
        row.insert("new_tokens".into(), json!(tokens));
        text.push_str(&Value::Object(row).to_string());
        text.push('\n');
    }
    write_whole(out, &text)?;
    Ok(new_tokens)
}

/// What the generations depend on: the weights' files, the input's bytes and the decoding
/// settings. blake3 hex.
fn fingerprint(args: &InferArgs, weights: &Weights, input: &Path) -> anyhow::Result<String> {
    let digest = crate::cache::file_digest::digest_file;
    let adapter = match &weights.adapter {
        Some(a) => json!([
            digest(&a.join("adapter_config.json"))?,
            digest(&a.join("adapter_model.safetensors"))?
        ]),
        None => Value::Null,
    };
    let facts = json!({
        "model": crate::stages::model_source::model_digest(&weights.model)?,
        "adapter": adapter,
        "input": digest(input)?,
        "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
        "sample": args.sample, "temperature": args.temperature, "top_k": args.top_k,
        "top_p": args.top_p, "seed": args.seed, "device": args.device,
    });
    Ok(blake3::hash(facts.to_string().as_bytes())
        .to_hex()
        .to_string())
}

/// Make `work` hold generations for `fingerprint`: kept when it does already (a resume:
/// `true`), else emptied and stamped.
fn prepare_work(work: &Path, fingerprint: &str) -> anyhow::Result<bool> {
    let stamp = work.join(FINGERPRINT);
    if std::fs::read_to_string(&stamp).is_ok_and(|f| f.trim() == fingerprint) {
        return Ok(true);
    }
    if work.exists() {
        std::fs::remove_dir_all(work)
            .with_context(|| format!("cannot clear the old work in {}", work.display()))?;
    }
    std::fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    std::fs::write(&stamp, fingerprint)
        .with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(false)
}

/// Write `text` to `path` through a temporary file in the same folder, renamed when whole.
fn write_whole(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
