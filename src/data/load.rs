//! Loading a source (built-in generator, local file, or hub dataset) into validated rows, and
//! the normalized artifact the `load` stage writes: `rows.jsonl` (one row per line with its
//! source split), `quarantine.jsonl` and `load_report.json`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::hub::{self, Kind, GRETEL_FILES, GRETEL_REPO, GRETEL_REVISION};
use super::records::{read_records, Format};
use super::validate::{FileCounts, Limits, Quarantined, Validator};
use super::Row;

pub const ROWS_FILE: &str = "rows.jsonl";
pub const QUARANTINE_FILE: &str = "quarantine.jsonl";
pub const REPORT_FILE: &str = "load_report.json";

/// A row with the dataset split it came from (`train` or `test`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadedRow {
    pub split: String,
    #[serde(flatten)]
    pub row: Row,
}

/// What to load and how strictly: the `load` stage's params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LoadParams {
    /// builtin:<n> generated rows, a local .jsonl/.csv/.parquet path, or
    /// hf://owner/name[/file].
    pub source: String,
    /// Seed of the built-in generator.
    pub seed: u64,
    /// Hub revision (commit) to load; pinned by default.
    pub revision: String,
    /// Share of bad rows per file above which the stage fails (0 to 1).
    pub max_bad_fraction: f64,
    /// Rows with more characters than this are quarantined.
    pub max_row_chars: usize,
    /// Resolve hub files from the local HF cache only (also HF_HUB_OFFLINE=1).
    pub offline: bool,
    /// Keep at most this many rows per split (0: all).
    pub limit: usize,
    /// Built-in sources: generate rows of these domains only (empty: all 34).
    pub domains: Vec<String>,
    /// Relative local paths resolve against this directory (the pipeline's).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl Default for LoadParams {
    fn default() -> Self {
        LoadParams {
            source: "builtin:20000".into(),
            seed: 42,
            revision: GRETEL_REVISION.to_string(),
            max_bad_fraction: 0.01,
            max_row_chars: 20_000,
            offline: false,
            limit: 0,
            domains: Vec::new(),
            base_dir: PathBuf::from("."),
        }
    }
}

impl LoadParams {
    pub fn new(source: &str) -> Self {
        LoadParams {
            source: source.to_string(),
            ..Self::default()
        }
    }
}

impl crate::stages::params::Params for LoadParams {
    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let x = self.max_bad_fraction;
        if !(0.0..=1.0).contains(&x) {
            out.push((
                "max_bad_fraction".into(),
                format!("{x} is not between 0 and 1"),
            ));
        }
        let src = &self.source;
        if let Some(n) = src.strip_prefix("builtin:") {
            if n.trim().parse::<usize>().map(|n| n == 0).unwrap_or(true) {
                out.push((
                    "source".into(),
                    format!("`{src}`: write builtin:<rows>, e.g. builtin:20000"),
                ));
            }
        }
        if !self.domains.is_empty() {
            if !src.starts_with("builtin:") {
                out.push((
                    "domains".into(),
                    format!("only built-in sources have domains to choose; remove it or use builtin:<rows> (source is `{src}`)"),
                ));
            } else if let Err(e) = super::builtin::domains_named(&self.domains) {
                out.push(("domains".into(), e));
            }
        }
        if src.starts_with("hf://") {
            if let Err(e) = hub::parse_uri(src) {
                out.push(("source".into(), e.to_string()));
            }
        }
        out
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadReport {
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The commit `revision` resolved to (hub sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub files: Vec<FileCounts>,
    pub rows: usize,
    pub quarantined: usize,
    pub splits: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub rows: Vec<LoadedRow>,
    pub quarantine: Vec<Quarantined>,
    pub report: LoadReport,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "{file}: {bad} of {total} records ({pct:.1}%) are bad, above max_bad_fraction {max} \
         (reasons: {reasons}). Fix the file, or raise `max_bad_fraction` to accept it"
    )]
    TooManyBad {
        file: String,
        bad: usize,
        total: usize,
        pct: f64,
        max: f64,
        reasons: String,
    },
    #[error("{0}: no rows could be loaded")]
    Empty(String),
}

/// The split a local file holds, from its name: `*test*` → test, else train.
fn split_of_name(path: &Path) -> &'static str {
    let stem = path
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let words: Vec<&str> = stem.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    if words.contains(&"test") {
        "test"
    } else {
        "train"
    }
}

/// The files an `hf://` source loads, with their splits: the one it names, or gretel's two.
pub fn hub_files(source: &str) -> anyhow::Result<Vec<(String, String)>> {
    let uri = hub::parse_uri(source)?;
    Ok(match &uri.file {
        Some(f) => vec![(split_of_name(Path::new(f)).to_string(), f.clone())],
        None if uri.repo == GRETEL_REPO => GRETEL_FILES
            .iter()
            .map(|k| (k.split.to_string(), k.name.to_string()))
            .collect(),
        None => anyhow::bail!(
            "source `{source}`: name the file to load, e.g. hf://{}/data/train.parquet",
            uri.repo
        ),
    })
}

/// Load the source.
pub fn load(p: &LoadParams) -> anyhow::Result<Loaded> {
    load_with(p, &|_, _, _| {})
}

/// [`load`], reporting hub downloads to `on`.
pub fn load_with(p: &LoadParams, on: hub::OnBytes<'_>) -> anyhow::Result<Loaded> {
    let mut out = Loaded::default();
    out.report.source = p.source.clone();
    if let Some(n) = p.source.strip_prefix("builtin:") {
        let n: usize = n.trim().parse().with_context(|| {
            format!(
                "source `{}`: expected builtin:<number of rows>, e.g. builtin:20000",
                p.source
            )
        })?;
        let rows = if p.domains.is_empty() {
            super::builtin::generate(p.seed, n)
        } else {
            let ds = super::builtin::domains_named(&p.domains)
                .map_err(|e| anyhow::anyhow!("source `{}`: {e}", p.source))?;
            super::builtin::generate_in(p.seed, n, &ds)
        };
        out.report.files.push(FileCounts {
            file: p.source.clone(),
            format: "builtin".into(),
            split: "train".into(),
            records: n,
            loaded: n,
            ..Default::default()
        });
        out.rows = rows
            .into_iter()
            .map(|row| LoadedRow {
                split: "train".into(),
                row,
            })
            .collect();
    } else if p.source.starts_with("hf://") {
        let uri = hub::parse_uri(&p.source)?;
        let files = hub_files(&p.source)?;
        let wanted = hub::Wanted::Files(files.iter().map(|(_, n)| n.clone()).collect());
        // The commit the cache key was made with (the process resolves each revision once).
        let pin = hub::pin(Kind::Dataset, &uri.repo, &p.revision, p.offline, &wanted)?;
        pin.used(&wanted)?;
        out.report.revision = Some(p.revision.clone());
        out.report.commit = Some(pin.commit.clone());
        let env = hub::HubEnv::from_process();
        let mut v = Validator::new();
        for (split, name) in files {
            let path = pin.fetch_with(&env, &name, on)?;
            let known = GRETEL_FILES.iter().find(|k| {
                uri.repo == GRETEL_REPO && pin.commit == GRETEL_REVISION && k.name == name
            });
            let (sha, verified) = match known {
                Some(k) => (hub::verify(&path, k, &pin.commit)?, Some(true)),
                None => (hub::sha256_file(&path)?, Some(false)),
            };
            let mut counts = load_file(&path, &split, p, &mut v, &mut out)?;
            counts.file = format!("{}@{}/{}", uri.repo, pin.commit, name);
            counts.sha256 = Some(sha);
            counts.verified = verified;
            out.report.files.push(counts);
        }
    } else {
        let path = p.base_dir.join(&p.source);
        let mut v = Validator::new();
        let counts = load_file(&path, split_of_name(&path), p, &mut v, &mut out)?;
        out.report.files.push(counts);
    }
    if p.limit > 0 {
        let mut kept: BTreeMap<String, usize> = BTreeMap::new();
        out.rows.retain(|r| {
            let k = kept.entry(r.split.clone()).or_default();
            *k += 1;
            *k <= p.limit
        });
    }
    if out.rows.is_empty() {
        return Err(LoadError::Empty(p.source.clone()).into());
    }
    out.report.rows = out.rows.len();
    out.report.quarantined = out.quarantine.len();
    for r in &out.rows {
        *out.report.splits.entry(r.split.clone()).or_default() += 1;
    }
    Ok(out)
}

fn load_file(
    path: &Path,
    split: &str,
    p: &LoadParams,
    v: &mut Validator,
    out: &mut Loaded,
) -> anyhow::Result<FileCounts> {
    let fmt = Format::of(path)?;
    let recs = read_records(path)?;
    let name = path.display().to_string();
    let lim = Limits {
        max_row_chars: p.max_row_chars,
    };
    let mut c = FileCounts {
        file: name.clone(),
        format: fmt.name().into(),
        split: split.into(),
        records: recs.len(),
        ..Default::default()
    };
    for rec in &recs {
        match v.check(&name, rec, lim) {
            Ok(row) => {
                c.loaded += 1;
                out.rows.push(LoadedRow {
                    split: split.to_string(),
                    row,
                });
            }
            Err(q) => {
                c.quarantined += 1;
                *c.reasons.entry(q.kind.clone()).or_default() += 1;
                out.quarantine.push(q);
            }
        }
    }
    if c.bad_fraction() > p.max_bad_fraction {
        let reasons: Vec<String> = c.reasons.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        return Err(LoadError::TooManyBad {
            file: name,
            bad: c.quarantined,
            total: c.records,
            pct: 100.0 * c.bad_fraction(),
            max: p.max_bad_fraction,
            reasons: reasons.join(", "),
        }
        .into());
    }
    Ok(c)
}

fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> anyhow::Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(f);
    for it in items {
        serde_json::to_writer(&mut w, it)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

/// Write the normalized artifact into `dir`.
pub fn write_output(dir: &Path, l: &Loaded) -> anyhow::Result<()> {
    write_jsonl(&dir.join(ROWS_FILE), &l.rows)?;
    write_jsonl(&dir.join(QUARANTINE_FILE), &l.quarantine)?;
    std::fs::write(dir.join(REPORT_FILE), serde_json::to_vec_pretty(&l.report)?)?;
    Ok(())
}

/// Read the rows (with their source split) of a `load` artifact.
pub fn read_loaded(dir: &Path) -> anyhow::Result<Vec<LoadedRow>> {
    let path = dir.join(ROWS_FILE);
    let f = std::fs::File::open(&path)
        .with_context(|| format!("{}: not a load artifact (no {ROWS_FILE})", dir.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", path.display(), i + 1))?;
        if line.is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: bad row", path.display(), i + 1))?,
        );
    }
    Ok(out)
}

/// Read just the rows of a `load` artifact.
pub fn read_rows(dir: &Path) -> anyhow::Result<Vec<Row>> {
    Ok(read_loaded(dir)?.into_iter().map(|r| r.row).collect())
}
