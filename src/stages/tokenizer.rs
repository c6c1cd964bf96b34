//! The `tokenizer` stage: trains a byte-level BPE on the loaded corpus (Gemma's special tokens
//! at ids 0–5), or passes an HF `tokenizer.json` through (local path or `hf://owner/name`).
//! Output: `tokenizer.json` + `tokenizer_report.json` (fingerprint, vocab size, special ids).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::common::{bool_param, copy_into, input_with, str_param, u64_param};
use super::{ParamSpec, ParamType, StageContext, StageError, StageKind, StageOutcome};
use crate::data::hub::{self, Kind, Pin, Wanted};
use crate::data::tokenizer::{fingerprint, load, train_bpe, SpecialIds};

pub struct TokenizerStage;

static PARAMS: [ParamSpec; 6] = [
    ParamSpec::optional("from", ParamType::Str, || json!(""),
        "empty: train a BPE on the corpus; else a tokenizer.json path or hf://owner/name[/tokenizer.json]"),
    ParamSpec::optional("vocab_size", ParamType::Count, || json!(2048), "BPE vocabulary size (trained)"),
    ParamSpec::optional("min_frequency", ParamType::Count, || json!(2), "minimum pair frequency (trained)"),
    ParamSpec::optional("max_rows", ParamType::Count, || json!(0), "train on at most this many rows (0 = all)"),
    ParamSpec::optional("revision", ParamType::Str, || json!("main"), "hub revision for hf:// sources"),
    ParamSpec::optional("offline", ParamType::Bool, || json!(false), "resolve hf:// from the local HF cache only"),
];

/// The pin of an `hf://` `from` and the file it names (default `tokenizer.json`).
fn hub_source(p: &Map<String, Value>) -> anyhow::Result<Option<(Pin, Wanted)>> {
    let from = str_param(p, "from", "");
    if !from.starts_with("hf://") {
        return Ok(None);
    }
    let uri = hub::parse_uri(from)?;
    let wanted = Wanted::Files(vec![uri.file.unwrap_or_else(|| "tokenizer.json".into())]);
    let pin = hub::pin(
        Kind::Model,
        &uri.repo,
        str_param(p, "revision", "main"),
        bool_param(p, "offline", false),
        &wanted,
    )?;
    Ok(Some((pin, wanted)))
}

/// The tokenizer file `from` names and how the report shows it (a hub file with its commit).
fn resolve_from(
    from: &str,
    p: &Map<String, Value>,
    pipeline_dir: &Path,
    on: hub::OnBytes<'_>,
) -> anyhow::Result<(PathBuf, String)> {
    match hub_source(p)? {
        Some((pin, wanted)) => {
            let file = pin.used(&wanted)?.remove(0);
            let path = pin.fetch_with(&hub::HubEnv::from_process(), &file, on)?;
            Ok((path, format!("{from} at commit {}", pin.commit)))
        }
        None => Ok((pipeline_dir.join(from), from.to_string())),
    }
}

impl StageKind for TokenizerStage {
    fn kind(&self) -> &'static str {
        "tokenizer"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> &'static [ParamSpec] {
        &PARAMS
    }
    fn key_facts(
        &self,
        p: &Map<String, Value>,
        pipeline_dir: &Path,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let from = str_param(p, "from", "");
        let mut f = BTreeMap::new();
        if let Some((pin, wanted)) = hub_source(p)? {
            f = pin.key_facts(&wanted, "tokenizer_")?;
        } else if !from.is_empty() {
            f.insert(
                "tokenizer_blake3".into(),
                fingerprint(&pipeline_dir.join(from))?,
            );
        }
        Ok(f)
    }
    fn key_params(&self, p: &Map<String, Value>) -> Map<String, Value> {
        super::model_source::hub_key_params(p, "from")
    }
    fn check_params(&self, p: &Map<String, Value>) -> Vec<(String, String)> {
        let v = u64_param(p, "vocab_size", 2048);
        if v < 300 {
            return vec![("vocab_size".into(), format!("{v} is too small: a byte-level BPE needs at least 262 entries (256 bytes + 6 special tokens); use e.g. 2048"))];
        }
        Vec::new()
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let p = ctx.params;
        let from = str_param(p, "from", "");
        let out = ctx.out_dir.join("tokenizer.json");
        let source = if from.is_empty() {
            let dir = input_with(ctx, crate::data::load::REPORT_FILE, "the `load` artifact")?;
            let mut rows = crate::data::read_rows(&dir)?;
            let max = u64_param(p, "max_rows", 0) as usize;
            if max > 0 {
                rows.truncate(max);
            }
            let vocab = u64_param(p, "vocab_size", 2048) as usize;
            ctx.metrics.progress(
                0,
                None,
                &format!("training a {vocab}-entry BPE on {} rows", rows.len()),
            );
            let tk = train_bpe(&rows, vocab, u64_param(p, "min_frequency", 2))?;
            tk.save(&out, false)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
            format!("trained on {} rows", rows.len())
        } else {
            let on = super::common::show_download(ctx);
            let (path, shown) = resolve_from(from, p, ctx.pipeline_dir, &on)?;
            load(&path)?;
            copy_into(&path, ctx.out_dir, "tokenizer.json")?;
            shown
        };
        let tk = load(&out)?;
        let special = SpecialIds::of(&tk)?;
        let fp = fingerprint(&out)?;
        let report = json!({
            "source": source,
            "vocab_size": tk.get_vocab_size(true),
            "blake3": fp,
            "special_ids": special,
        });
        std::fs::write(
            ctx.out_dir.join("tokenizer_report.json"),
            serde_json::to_vec_pretty(&report).map_err(anyhow::Error::from)?,
        )
        .map_err(anyhow::Error::from)?;
        let mut o = StageOutcome::default();
        o.metrics
            .insert("vocab_size".into(), tk.get_vocab_size(true) as f64);
        Ok(o)
    }
}
