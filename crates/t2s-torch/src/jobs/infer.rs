//! `infer`: one Text-to-SQL request through the chat template; returns the reply and its SQL.

use anyhow::Context;
use serde_json::{json, Value};
use t2s::worker::jobs::InferJob;
use t2s::worker::protocol::JobSpec;

use super::{model, Events};
use crate::generate::generate;
use t2s::data::format::chat_prompt;
use t2s::eval::extract::extract_sql;

pub fn run(spec: &JobSpec, job: &InferJob, ev: &Events) -> anyhow::Result<Value> {
    let (prompt, context, raw) = (job.prompt.as_str(), job.context.as_str(), job.raw);
    let l = model::load(spec, &job.generation)?;
    let opt = model::gen_options(spec, &job.generation, &l)?;
    let text = chat_prompt(prompt, context);
    let ids = l.tok.encode(&text)?;
    ev.log(
        "info",
        format!(
            "prompt of {} tokens on {}",
            ids.len(),
            crate::device::device_name(l.device)
        ),
    );
    let t0 = std::time::Instant::now();
    let out = generate(&l.model, std::slice::from_ref(&ids), &opt)
        .context("generation failed")?
        .pop()
        .context("no output row")?;
    let dt = t0.elapsed().as_secs_f64();
    let reply = l.tok.decode(&out.tokens)?;
    let sql = if raw {
        Value::Null
    } else {
        json!(extract_sql(&reply))
    };
    Ok(json!({
        "text": reply,
        "sql": sql,
        "prompt_tokens": ids.len(),
        "new_tokens": out.tokens.len(),
        "stopped": out.stopped,
        "seconds": dt,
    }))
}
