//! The `tokenizer` stage: trains a byte-level BPE on the loaded corpus (Gemma's special tokens
//! at ids 0–5), or passes an HF `tokenizer.json` through (local path or `hf://owner/name`).
//! Output: `tokenizer.json` + `tokenizer_report.json` (fingerprint, vocab size, special ids).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::common::{copy_into, input_with};
use super::params::{ParamSet, Params, Typed};
use super::{StageContext, StageError, StageKind, StageOutcome};
use crate::data::hub::{self, Kind, Pin, Wanted};
use crate::data::tokenizer::{fingerprint, load, train_bpe, SpecialIds};

pub struct TokenizerStage;

/// The `tokenizer` stage's params.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerParams {
    /// Empty: train a BPE on the corpus; else a tokenizer.json path or
    /// hf://owner/name[/tokenizer.json].
    pub from: String,
    /// BPE vocabulary size (trained; at least 300).
    pub vocab_size: u64,
    /// Minimum pair frequency (trained).
    pub min_frequency: u64,
    /// Train on at most this many rows (0: all).
    pub max_rows: u64,
    /// Hub revision for hf:// sources.
    pub revision: String,
    /// Resolve hf:// from the local HF cache only.
    pub offline: bool,
}

impl Default for TokenizerParams {
    fn default() -> Self {
        Self {
            from: String::new(),
            vocab_size: 2048,
            min_frequency: 2,
            max_rows: 0,
            revision: "main".into(),
            offline: false,
        }
    }
}

impl Params for TokenizerParams {
    fn problems(&self) -> Vec<(String, String)> {
        let v = self.vocab_size;
        if v < 300 {
            return vec![("vocab_size".into(), format!("{v} is too small: a byte-level BPE needs at least 262 entries (256 bytes + 6 special tokens); use e.g. 2048"))];
        }
        Vec::new()
    }
}

static PARAMS: Typed<TokenizerParams> = Typed::new();

/// The pin of an `hf://` `from` and the file it names (default `tokenizer.json`).
fn hub_source(p: &TokenizerParams) -> anyhow::Result<Option<(Pin, Wanted)>> {
    if !p.from.starts_with("hf://") {
        return Ok(None);
    }
    let uri = hub::parse_uri(&p.from)?;
    let wanted = Wanted::Files(vec![uri.file.unwrap_or_else(|| "tokenizer.json".into())]);
    let pin = hub::pin(Kind::Model, &uri.repo, &p.revision, p.offline, &wanted)?;
    Ok(Some((pin, wanted)))
}

/// The tokenizer file `from` names and how the report shows it (a hub file with its commit).
fn resolve_from(
    p: &TokenizerParams,
    pipeline_dir: &Path,
    on: hub::OnBytes<'_>,
) -> anyhow::Result<(PathBuf, String)> {
    match hub_source(p)? {
        Some((pin, wanted)) => {
            let file = pin.used(&wanted)?.remove(0);
            let path = pin.fetch_with(&hub::HubEnv::from_process(), &file, on)?;
            Ok((path, format!("{} at commit {}", p.from, pin.commit)))
        }
        None => Ok((pipeline_dir.join(&p.from), p.from.clone())),
    }
}

impl StageKind for TokenizerStage {
    fn kind(&self) -> &'static str {
        "tokenizer"
    }
    fn about(&self) -> &'static str {
        "Trains a byte-level BPE on the loaded corpus with Gemma's special tokens (ids 0–5), or passes an HF `tokenizer.json` through (`from:`). Output: `tokenizer.json`, `tokenizer_report.json`."
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> &'static dyn ParamSet {
        &PARAMS
    }
    fn key_facts(
        &self,
        p: &Map<String, Value>,
        pipeline_dir: &Path,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let p = PARAMS.read(p)?;
        let mut f = BTreeMap::new();
        if let Some((pin, wanted)) = hub_source(&p)? {
            f = pin.key_facts(&wanted, "tokenizer_")?;
        } else if !p.from.is_empty() {
            f.insert(
                "tokenizer_blake3".into(),
                fingerprint(&pipeline_dir.join(&p.from))?,
            );
        }
        Ok(f)
    }
    fn key_params(&self, p: &Map<String, Value>) -> Map<String, Value> {
        super::model_source::hub_key_params(p, "from")
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let p = PARAMS.read(ctx.params)?;
        let out = ctx.out_dir.join("tokenizer.json");
        let source = if p.from.is_empty() {
            let dir = input_with(ctx, crate::data::load::REPORT_FILE, "the `load` artifact")?;
            let mut rows = crate::data::read_rows(&dir)?;
            let max = p.max_rows as usize;
            if max > 0 {
                rows.truncate(max);
            }
            let vocab = p.vocab_size as usize;
            ctx.metrics.progress(
                0,
                None,
                &format!("training a {vocab}-entry BPE on {} rows", rows.len()),
            );
            let tk = train_bpe(&rows, vocab, p.min_frequency)?;
            tk.save(&out, false)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
            format!("trained on {} rows", rows.len())
        } else {
            let on = super::common::show_download(ctx);
            let (path, shown) = resolve_from(&p, ctx.pipeline_dir, &on)?;
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
        super::common::write_json(&ctx.out_dir.join("tokenizer_report.json"), &report)?;
        let mut o = StageOutcome::default();
        o.metrics
            .insert("vocab_size".into(), tk.get_vocab_size(true) as f64);
        Ok(o)
    }
}
