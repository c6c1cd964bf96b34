//! `generate`: batched generation over a JSONL file of rendered prompts, resumable.
//!
//! Input lines `{"id": ..., "text": "<bos><start_of_turn>user\n..."}`; output lines
//! `{"id", "text", "new_tokens"}` appended to `out_file` and flushed after every batch. Ids
//! already in `out_file` are skipped (a torn last line from a crash is cut off first). Prompts
//! are processed sorted by length (less padding), so output order differs from input order.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use t2s::worker::jobs::GenerateJob;
use t2s::worker::protocol::JobSpec;

use super::{model, Events};
use crate::generate::generate_report;

fn id_key(v: &Value) -> String {
    v.to_string()
}

/// Ids already written; truncates a torn (unparsable) last line.
fn done_ids(out: &Path) -> anyhow::Result<HashSet<String>> {
    let mut ids = HashSet::new();
    if !out.exists() {
        return Ok(ids);
    }
    let text =
        std::fs::read_to_string(out).with_context(|| format!("cannot read {}", out.display()))?;
    let mut good_len = 0usize;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let complete = line.ends_with('\n');
        match serde_json::from_str::<Value>(line.trim()) {
            Ok(v) if complete => {
                let id = v.get("id").with_context(|| {
                    format!("{}:{}: output line without `id`", out.display(), i + 1)
                })?;
                ids.insert(id_key(id));
                good_len += line.len();
            }
            _ if i + 1 == lines.len() => break,
            Err(e) => bail!(
                "{}:{}: not JSON ({e}); remove the file to start over",
                out.display(),
                i + 1
            ),
            Ok(_) => unreachable!("only the last line can lack its newline"),
        }
    }
    if good_len < text.len() {
        let f = std::fs::OpenOptions::new().write(true).open(out)?;
        f.set_len(good_len as u64)?;
    }
    Ok(ids)
}

pub fn run(spec: &JobSpec, job: &GenerateJob, ev: &Events) -> anyhow::Result<Value> {
    let prompts_file = job.prompts_file.as_path();
    let out_file = job.out_file.as_path();
    let batch_size = job.batch_size.max(1) as usize;
    let done = done_ids(out_file)?;
    let f = std::fs::File::open(prompts_file)
        .with_context(|| format!("cannot open prompts_file {}", prompts_file.display()))?;
    let mut rows: Vec<(Value, String)> = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", prompts_file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", prompts_file.display(), i + 1))?;
        let id = v
            .get("id")
            .cloned()
            .with_context(|| format!("{}:{}: missing `id`", prompts_file.display(), i + 1))?;
        let text = v.get("text").and_then(|t| t.as_str()).with_context(|| {
            format!(
                "{}:{}: missing string `text`",
                prompts_file.display(),
                i + 1
            )
        })?;
        if !seen.insert(id_key(&id)) {
            bail!("{}:{}: duplicate id {id}", prompts_file.display(), i + 1);
        }
        if !done.contains(&id_key(&id)) {
            rows.push((id, text.to_string()));
        }
    }
    let skipped = done.len();
    let l = model::load(spec, &job.generation)?;
    let mut opt = model::gen_options(spec, &job.generation, &l)?;
    let mut enc: Vec<(Value, Vec<i64>)> = rows
        .into_iter()
        .map(|(id, t)| Ok((id, l.tok.encode(&t)?)))
        .collect::<anyhow::Result<_>>()?;
    let max_pos = l.model.cfg.max_position_embeddings;
    if let Some((id, ids)) = enc
        .iter()
        .find(|(_, ids)| ids.len() as i64 + opt.max_new_tokens > max_pos)
    {
        bail!(
            "prompt {id} has {} tokens; with max_new_tokens {} it exceeds the model's context of {max_pos}",
            ids.len(),
            opt.max_new_tokens
        );
    }
    enc.sort_by_key(|(_, ids)| std::cmp::Reverse(ids.len()));
    if let Some(dir) = out_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out_file)
        .with_context(|| format!("cannot open out_file {}", out_file.display()))?;
    let total = enc.len() as u64;
    let (mut written, mut new_tokens) = (0u64, 0u64);
    let t0 = std::time::Instant::now();
    opt.decoder = opt.decoder.resolve(l.device)?;
    let mut graph_fallback = None;
    // A failed capture falls back to `static` for its batch; later batches start there.
    for batch in enc.chunks(batch_size) {
        let prompts: Vec<Vec<i64>> = batch.iter().map(|(_, ids)| ids.clone()).collect();
        let report = generate_report(&l.model, &prompts, &opt)?;
        opt.decoder = report.decoder;
        graph_fallback = graph_fallback.or(report.graph_fallback);
        let gens = report.rows;
        let mut buf = String::new();
        for ((id, _), g) in batch.iter().zip(&gens) {
            let body: Vec<i64> = g
                .tokens
                .iter()
                .copied()
                .filter(|t| !(g.stopped && opt.stop_ids.contains(t)))
                .collect();
            let text = l.tok.decode(&body)?;
            new_tokens += g.tokens.len() as u64;
            buf.push_str(
                &json!({"id": id, "text": text, "new_tokens": g.tokens.len()}).to_string(),
            );
            buf.push('\n');
        }
        out.write_all(buf.as_bytes())?;
        out.flush()?;
        written += batch.len() as u64;
        let dt = t0.elapsed().as_secs_f64();
        ev.progress(
            written,
            Some(total),
            format!("{:.0} new tokens/s", new_tokens as f64 / dt.max(1e-9)),
        );
    }
    let dt = t0.elapsed().as_secs_f64();
    Ok(json!({
        "rows": written as usize + skipped,
        "generated_rows": written,
        "skipped_rows": skipped,
        "new_tokens": new_tokens,
        "tokens_per_s": if dt > 0.0 { new_tokens as f64 / dt } else { 0.0 },
        "seconds": dt,
        "device": crate::device::device_name(l.device),
        "decoder": opt.decoder.name(),
        "graph_fallback": graph_fallback,
    }))
}
