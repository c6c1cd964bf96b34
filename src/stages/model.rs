//! `model`: a pretrained model as a pipeline artifact — a local HF model directory or an
//! `hf://owner/name` hub model (HF cache, revision, `HF_TOKEN`, offline mode), so `train` and
//! `evaluate` nodes find it among their needs like any upstream model. Files are hard-linked
//! into the artifact when the filesystem allows (no second copy of the weights), else copied.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::model_source::{hub_key_params, hub_pin, is_model_dir, model_facts, resolve_model};
use super::params::{ParamSet, Params, Typed};
use super::{StageContext, StageError, StageKind, StageOutcome};
use crate::data::hub::Wanted;

pub struct ModelStage;

/// Files of an HF model directory that an artifact keeps (`t2s_provenance.json`: where
/// `scripts/fetch_gemma.py` got the weights, e.g. a dequantized GGUF; reports show it).
const MODEL_FILES: [&str; 8] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "model.safetensors",
    "model.safetensors.index.json",
    PROVENANCE_FILE,
];

/// Where a model directory's weights came from, when they are not the hub's own files.
pub const PROVENANCE_FILE: &str = "t2s_provenance.json";

/// An `hf://` model's repo, revision, commit and file tags, written into its artifact.
pub const HUB_SOURCE_FILE: &str = "t2s_hub_source.json";

/// The `model` stage's params.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelParams {
    /// HF model directory (relative to the pipeline) or hf://owner/name.
    pub model: String,
    /// Hub revision (a commit pins it).
    #[serde(default = "main_revision")]
    pub revision: String,
    /// Resolve hf:// from the local HF cache only (also HF_HUB_OFFLINE=1).
    #[serde(default)]
    pub offline: bool,
}

pub(crate) fn main_revision() -> String {
    "main".into()
}

impl Params for ModelParams {}

static PARAMS: Typed<ModelParams> = Typed::new();

impl StageKind for ModelStage {
    fn kind(&self) -> &'static str {
        "model"
    }
    fn about(&self) -> &'static str {
        "A pretrained model as an artifact: a local HF model directory or an `hf://owner/name` model at a commit (HF cache, `HF_TOKEN`, offline mode), hard-linked when the filesystem allows."
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
        model_facts(p, pipeline_dir)
    }
    fn key_params(&self, p: &Map<String, Value>) -> Map<String, Value> {
        hub_key_params(p, "model")
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let shown = super::common::show_download(ctx);
        let dir = resolve_model(ctx.params, ctx.pipeline_dir, &shown)?.ok_or_else(|| {
            StageError::Failed(
                "`model` is empty: name an HF model directory or hf://owner/name".into(),
            )
        })?;
        let mut shards = Vec::new();
        if let Ok(text) = std::fs::read_to_string(dir.join("model.safetensors.index.json")) {
            let index: Value =
                serde_json::from_str(&text).context("model.safetensors.index.json is not JSON")?;
            if let Some(map) = index.get("weight_map").and_then(Value::as_object) {
                shards = map
                    .values()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect();
                shards.sort();
                shards.dedup();
            }
        }
        for name in MODEL_FILES.iter().map(|s| s.to_string()).chain(shards) {
            let src = dir.join(&name);
            if !src.is_file() {
                continue;
            }
            let src = std::fs::canonicalize(&src)
                .with_context(|| format!("resolving {}", src.display()))?;
            let dst = ctx.out_dir.join(&name);
            if std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst)
                    .with_context(|| format!("copying {} into the artifact", src.display()))?;
            }
        }
        if let Some(pin) = hub_pin(ctx.params, &Wanted::Model)? {
            // Where the files came from, for `show` and reports: the commit, not the branch.
            let files: BTreeMap<String, String> = pin
                .used(&Wanted::Model)
                .map_err(anyhow::Error::from)?
                .into_iter()
                .map(|f| {
                    let tag = pin.files[&f].clone();
                    (f, tag)
                })
                .collect();
            let source = json!({
                "repo": pin.repo,
                "revision": pin.revision,
                "commit": pin.commit,
                "files": files,
            });
            super::common::write_json(&ctx.out_dir.join(HUB_SOURCE_FILE), &source)
                .context("writing the hub source into the artifact")?;
        }
        if !is_model_dir(ctx.out_dir) {
            return Err(StageError::Failed(format!(
                "{}: no config.json + model.safetensors (or a sharded index) found",
                dir.display()
            )));
        }
        Ok(StageOutcome::default())
    }
}
