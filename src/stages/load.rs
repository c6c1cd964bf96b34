//! The `load` stage: a source (`builtin:<n>`, a local jsonl/csv/parquet file, or
//! `hf://owner/name`) → validated rows (`rows.jsonl`), `quarantine.jsonl`, `load_report.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::{ParamSpec, ParamType, StageContext, StageError, StageKind, StageOutcome};
use crate::data::hub::{self, Kind, GRETEL_REVISION};
use crate::data::load::{load_with, write_output, LoadParams};

pub struct LoadStage;

static PARAMS: [ParamSpec; 8] = [
    ParamSpec::optional(
        "source",
        ParamType::Str,
        || json!("builtin:20000"),
        "builtin:<n> generated rows, a local .jsonl/.csv/.parquet path, or hf://owner/name",
    ),
    ParamSpec::optional(
        "seed",
        ParamType::Count,
        || json!(42),
        "seed of the built-in generator",
    ),
    ParamSpec::optional(
        "revision",
        ParamType::Str,
        || json!(GRETEL_REVISION),
        "hub revision (commit) to load; pinned by default",
    ),
    ParamSpec::optional(
        "max_bad_fraction",
        ParamType::Float,
        || json!(0.01),
        "share of bad rows per file above which the stage fails",
    ),
    ParamSpec::optional(
        "max_row_chars",
        ParamType::Count,
        || json!(20000),
        "rows with more characters than this are quarantined",
    ),
    ParamSpec::optional(
        "offline",
        ParamType::Bool,
        || json!(false),
        "resolve hub files from the local HF cache only (also HF_HUB_OFFLINE=1)",
    ),
    ParamSpec::optional(
        "limit",
        ParamType::Count,
        || json!(0),
        "keep at most this many rows per split (0 = all)",
    ),
    ParamSpec::optional(
        "domains",
        ParamType::StrList,
        || json!([]),
        "builtin sources: generate rows of these domains only (empty = all 34)",
    ),
];

fn str_param<'a>(p: &'a Map<String, Value>, k: &str, d: &'a str) -> &'a str {
    p.get(k).and_then(Value::as_str).unwrap_or(d)
}

/// Build load parameters from resolved stage params.
pub fn load_params(p: &Map<String, Value>, pipeline_dir: &Path) -> LoadParams {
    let mut lp = LoadParams::new(str_param(p, "source", "builtin:20000"));
    lp.seed = p.get("seed").and_then(Value::as_u64).unwrap_or(42);
    lp.revision = str_param(p, "revision", GRETEL_REVISION).to_string();
    lp.max_bad_fraction = p
        .get("max_bad_fraction")
        .and_then(Value::as_f64)
        .unwrap_or(0.01);
    lp.max_row_chars = p
        .get("max_row_chars")
        .and_then(Value::as_u64)
        .unwrap_or(20000) as usize;
    lp.offline = p.get("offline").and_then(Value::as_bool).unwrap_or(false);
    lp.limit = p.get("limit").and_then(Value::as_u64).unwrap_or(0) as usize;
    lp.domains = p
        .get("domains")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    lp.base_dir = pipeline_dir.to_path_buf();
    lp
}

impl StageKind for LoadStage {
    fn kind(&self) -> &'static str {
        "load"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> &'static [ParamSpec] {
        &PARAMS
    }
    fn key_facts(
        &self,
        params: &Map<String, Value>,
        pipeline_dir: &Path,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let lp = load_params(params, pipeline_dir);
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
    fn check_params(&self, params: &Map<String, Value>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(x) = params.get("max_bad_fraction").and_then(Value::as_f64) {
            if !(0.0..=1.0).contains(&x) {
                out.push((
                    "max_bad_fraction".into(),
                    format!("{x} is not between 0 and 1"),
                ));
            }
        }
        let src = str_param(params, "source", "");
        if let Some(n) = src.strip_prefix("builtin:") {
            if n.trim().parse::<usize>().map(|n| n == 0).unwrap_or(true) {
                out.push((
                    "source".into(),
                    format!("`{src}`: write builtin:<rows>, e.g. builtin:20000"),
                ));
            }
        }
        let domains = load_params(params, Path::new(".")).domains;
        if !domains.is_empty() {
            if !src.starts_with("builtin:") {
                out.push((
                    "domains".into(),
                    format!("only built-in sources have domains to choose; remove it or use builtin:<rows> (source is `{src}`)"),
                ));
            } else if let Err(e) = crate::data::builtin::domains_named(&domains) {
                out.push(("domains".into(), e));
            }
        }
        if src.starts_with("hf://") {
            if let Err(e) = crate::data::hub::parse_uri(src) {
                out.push(("source".into(), e.to_string()));
            }
        }
        out
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let lp = load_params(ctx.params, ctx.pipeline_dir);
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
