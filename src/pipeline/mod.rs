//! Pipeline files: raw YAML → validated, matrix-expanded graph of nodes.
//!
//! The types below are the contract the executor consumes; parsing, validation, matrix expansion
//! and graph rendering live in the submodules:
//! `yaml` (located YAML tree) → `raw` (fields with positions) → `overrides` (`--set`) →
//! `graph` (needs, cycles, order) → `matrix` (scope, fan-out, substitution) → `validate`
//! (params against the kind's params struct). Every problem is collected into `Diagnostics`.
//!
//! The file format, field by field: docs/pipeline.md (the params of each kind:
//! docs/params.md, generated from the kinds' params structs).

mod diag;
mod graph;
mod located;
mod matrix;
mod overrides;
mod raw;
pub mod render;
mod search;
mod slurm;
mod validate;
mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use diag::{suggest, Diagnostic, Diagnostics, SET_FILE};
pub use matrix::parse_node_id;
pub use slurm::{valid_mem, valid_time, ExecutorKind, SlurmResources};
pub use yaml::plain;

use crate::search::{SearchSpec, Trial, RUNG_KEY};
use crate::stages::train::STOP_PARAM;
use crate::stages::{registry, StageKind};

/// A validated pipeline with its matrix expanded.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// `name:` from the file (defaults to the file stem).
    pub name: String,
    /// `description:` from the file.
    pub description: Option<String>,
    /// The pipeline file.
    pub file: PathBuf,
    /// blake3 of the file bytes.
    pub file_digest: String,
    /// The file's text as read: a search's later rounds are built from it, so an edit of the
    /// file during a search cannot mix two pipelines in one search.
    pub source: String,
    /// `settings:` from the file.
    pub settings: Settings,
    /// Nodes in a topological order (every node after all its needs).
    pub nodes: Vec<Node>,
    /// The `search:` of a stage, if the file has one; its trials are the searched stage's
    /// instances.
    pub search: Option<SearchSpec>,
}

/// The stage param that `settings.device` gives a default to.
const DEVICE_PARAM: &str = "device";

/// Run settings a pipeline file may carry (command-line flags win over them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// Parallel jobs (`--jobs`).
    pub jobs: Option<usize>,
    /// Device to run GPU stages on, e.g. `cuda:0` or `cpu`: the default `device` of every
    /// stage that takes one (a stage's own `device` wins).
    pub device: Option<String>,
    /// Where nodes run (`--executor`).
    pub executor: Option<ExecutorKind>,
    /// A remote cache directory, as written (relative to the pipeline file's directory):
    /// missing objects are fetched from it (`--remote`).
    pub remote: Option<String>,
    /// Push each node's output the remote lacks as soon as it is done (`--push`).
    pub push: bool,
}

/// One executable node: a stage instance (one matrix combination of a fanned-out stage).
/// Serializable: the Slurm executor hands the node to its job as JSON.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// Stable id: the stage name, plus `[k=v,...]` for matrix instances (keys sorted).
    pub id: String,
    /// Stage name in the file.
    pub stage: String,
    /// Stage kind (a registry name).
    pub kind: String,
    /// Resolved params: defaults filled, overrides applied, `${matrix.x}` substituted.
    pub params: Map<String, Value>,
    /// Matrix values of this instance, inherited from fanned-out needs included.
    pub matrix: BTreeMap<String, Value>,
    /// Ids of upstream nodes, in `needs` order.
    pub needs: Vec<String>,
    /// Whether the node takes a GPU slot: the stage's `gpu:` if given, else the kind's
    /// `uses_gpu` of the resolved params.
    pub gpu: bool,
    /// `gather: true`: the node receives every instance of its fanned-out needs.
    pub gather: bool,
    /// Slurm resources (`settings.slurm` merged with the stage's `slurm:`); used only by the
    /// Slurm executor, not part of the cache key.
    pub slurm: SlurmResources,
}

impl Pipeline {
    /// The directory of the pipeline file (relative paths in params resolve against it).
    pub fn dir(&self) -> &Path {
        match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }
}

/// What to do about a YAML syntax error, from the parser's message.
fn yaml_hint(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("tab") {
        "indent with spaces: YAML does not allow tabs for indentation"
    } else if m.contains("quoted scalar") {
        "close the quote that starts here"
    } else if m.contains("flow sequence") || m.contains("flow mapping") {
        "close the `[` or `{`, and quote values that contain `,` `[` `]` `{` `}`"
    } else if m.contains("mapping values are not allowed") {
        "quote values that contain `: `, e.g. `cmd: \"echo a: b\"`"
    } else if m.contains("indentation") || m.contains("expected key") {
        "check the indentation: the keys of one mapping must start in the same column"
    } else {
        "fix the YAML syntax here"
    }
}

/// Load, validate and expand a pipeline file. `overrides` are `--set stage.param=value`
/// arguments (the value is YAML; it applies to every matrix instance of the stage).
/// On failure every problem found is returned, sorted by position.
pub fn load(file: &Path, overrides: &[String]) -> Result<Pipeline, Diagnostics> {
    let mut diags = diag::Collector::new(file, overrides);
    let start = yaml::Loc::START;
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            diags.add(
                start,
                "",
                format!("cannot read the pipeline file: {e}"),
                Some("check the path given to t2s".into()),
            );
            return Err(diags.finish());
        }
    };
    let Ok(src) = std::str::from_utf8(&bytes) else {
        diags.add(start, "", "the pipeline file is not UTF-8 text", None);
        return Err(diags.finish());
    };
    load_source_with(file, src, overrides, None)
}

impl Pipeline {
    /// This pipeline again, from the text it was read from, with the searched stage's
    /// instances given by the search driver.
    pub fn with_trials(&self, overrides: &[String], trials: &[Trial]) -> Result<Self, Diagnostics> {
        load_source_with(&self.file, &self.source, overrides, Some(trials))
    }
}

/// [`load`] of a pipeline file's text `src` (`file` names it in diagnostics and is where
/// relative paths resolve from).
pub fn load_source(file: &Path, src: &str, overrides: &[String]) -> Result<Pipeline, Diagnostics> {
    load_source_with(file, src, overrides, None)
}

/// Each stage's kind (`None`: unknown, reported with the closest name), its params checked
/// against the kind's.
fn stage_kinds(
    stages: &[raw::RawStage],
    diags: &mut diag::Collector,
) -> Vec<Option<&'static dyn StageKind>> {
    let known_kinds = registry::kind_names();
    let mut kinds = Vec::with_capacity(stages.len());
    for s in stages {
        let kind = s.kind.as_ref().and_then(|k| {
            let found = registry::lookup(&k.v);
            if found.is_none() {
                diags.add(
                    k.loc,
                    &format!("stages.{}.kind", s.name.v),
                    format!("unknown stage kind `{}`", k.v),
                    Some(diag::suggest(&k.v, "known kinds", &known_kinds)),
                );
            }
            found
        });
        if let Some(kind) = kind {
            validate::unknown_params(s, kind, diags);
        }
        kinds.push(kind);
    }
    kinds
}

fn load_source_with(
    file: &Path,
    src: &str,
    overrides: &[String],
    trials: Option<&[Trial]>,
) -> Result<Pipeline, Diagnostics> {
    let mut diags = diag::Collector::new(file, overrides);
    let root = match yaml::parse(src) {
        Ok(root) => root,
        Err(e) => {
            diags.add(
                e.loc,
                "",
                format!("invalid YAML: {}", e.message),
                Some(match yaml::unclosed_bracket(src, e.loc) {
                    Some((at, c)) => format!(
                        "the `{c}` at line {}, column {} is never closed; close it, or quote values that contain `{c}`",
                        at.line, at.col
                    ),
                    None => yaml_hint(&e.message).into(),
                }),
            );
            return Err(diags.finish());
        }
    };
    let mut raw = raw::read_file(root.as_ref(), yaml::Loc::START, &mut diags);
    overrides::apply(overrides, &mut raw.stages, &mut diags);

    let kinds = stage_kinds(&raw.stages, &mut diags);

    let mut nodes = Vec::new();
    let search_spec;
    {
        let g = graph::stage_graph(&raw.stages, &mut diags);
        search_spec = search::read(&mut raw.stages, &g, &kinds, trials, &mut diags);
        let broken = matrix::check_scope(&raw.stages, &g, &mut diags);
        let instances = matrix::expand(&raw.stages, &g, &mut diags);
        for &si in &g.order {
            let s = &raw.stages[si];
            let Some(kind) = kinds[si] else { continue };
            let written: Map<String, Value> = s
                .params
                .iter()
                .map(|(k, v)| (k.v.clone(), v.clone()))
                .collect();
            for inst in &instances[si] {
                let substituted = matrix::substitute(&Value::Object(written.clone()), &inst.matrix);
                let Value::Object(mut substituted) = substituted else {
                    continue;
                };
                // `settings.device` is the default of every stage kind that takes a device.
                if let Some(device) = &raw.settings.device {
                    if kind.params().spec(DEVICE_PARAM).is_some() {
                        substituted
                            .entry(DEVICE_PARAM)
                            .or_insert_with(|| Value::String(device.clone()));
                    }
                }
                if let Some(step) = inst.matrix.get(RUNG_KEY) {
                    substituted.insert(STOP_PARAM.to_string(), step.clone());
                }
                let Some(params) =
                    validate::resolve(s, kind, &substituted, &broken[si], &mut diags)
                else {
                    continue;
                };
                nodes.push(Node {
                    id: inst.id.clone(),
                    stage: s.name.v.clone(),
                    kind: kind.kind().to_string(),
                    gpu: s.gpu.unwrap_or_else(|| kind.uses_gpu(&params)),
                    params,
                    matrix: inst.matrix.clone(),
                    needs: inst.needs.clone(),
                    gather: s.gather,
                    slurm: raw.slurm.merged(&s.slurm),
                });
            }
        }
    }
    let name = match raw.name {
        Some(n) => {
            validate::pipeline_name(&n.v, n.loc, &mut diags);
            n.v
        }
        None => validate::name_from_stem(file),
    };
    if !diags.is_empty() {
        return Err(diags.finish());
    }
    Ok(Pipeline {
        name,
        description: raw.description,
        file: file.to_path_buf(),
        file_digest: blake3::hash(src.as_bytes()).to_hex().to_string(),
        source: src.to_string(),
        settings: raw.settings,
        nodes,
        search: search_spec,
    })
}
