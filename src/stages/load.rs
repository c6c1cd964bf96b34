//! The `load` stage: a source (`builtin:<n>`, a local jsonl/csv/parquet file, or
//! `hf://owner/name`) → validated rows (`rows.jsonl`), `quarantine.jsonl`, `load_report.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::params::{ParamSet, Typed};
use super::{StageContext, StageError, StageKind, StageOutcome};
use crate::data::hub::{self, Kind};
use crate::data::load::{load_with, write_output, LoadParams};

pub struct LoadStage;

static PARAMS: Typed<LoadParams> = Typed::new();

/// Load parameters from resolved stage params; relative paths resolve against the pipeline.
fn load_params(p: &Map<String, Value>, pipeline_dir: &Path) -> Result<LoadParams, StageError> {
    let mut lp = PARAMS.read(p)?;
    lp.base_dir = pipeline_dir.to_path_buf();
    Ok(lp)
}

impl StageKind for LoadStage {
    fn kind(&self) -> &'static str {
        "load"
    }
    fn about(&self) -> &'static str {
        "A source (built-in generator, a local gretel-schema file, or a hub dataset) → validated rows (`rows.jsonl`), `quarantine.jsonl` (bad rows with the reason), `load_report.json`."
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> &'static dyn ParamSet {
        &PARAMS
    }
    fn key_facts(
        &self,
        params: &Map<String, Value>,
        pipeline_dir: &Path,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let lp = load_params(params, pipeline_dir)?;
        let mut f = BTreeMap::new();
        if lp.source.starts_with("builtin:") {
            f.insert(
                "generator_version".into(),
                crate::data::builtin::GENERATOR_VERSION.to_string(),
            );
        } else if lp.source.starts_with("hf://") {
            let uri = hub::parse_uri(&lp.source)?;
            let files = crate::data::load::hub_files(&lp.source)?;
            let wanted = hub::Wanted::Files(files.into_iter().map(|(_, n)| n).collect());
            let pin = hub::pin(Kind::Dataset, &uri.repo, &lp.revision, lp.offline, &wanted)?;
            f = pin.key_facts(&wanted, "")?;
        } else {
            let path = lp.base_dir.join(&lp.source);
            let digest = crate::cache::file_digest::digest_file(&path).map_err(|e| {
                anyhow::anyhow!(
                    "source {}: cannot read it ({e:#}); check the path",
                    path.display()
                )
            })?;
            f.insert("source_blake3".into(), digest);
        }
        Ok(f)
    }
    fn key_params(&self, params: &Map<String, Value>) -> Map<String, Value> {
        super::model_source::hub_key_params(params, "source")
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let lp = load_params(ctx.params, ctx.pipeline_dir)?;
        ctx.metrics
            .progress(0, None, &format!("loading {}", lp.source));
        let loaded = load_with(&lp, &super::common::show_download(ctx))?;
        write_output(ctx.out_dir, &loaded)?;
        let mut o = StageOutcome::default();
        o.metrics.insert("rows".into(), loaded.report.rows as f64);
        o.metrics
            .insert("quarantined".into(), loaded.report.quarantined as f64);
        Ok(o)
    }
}
