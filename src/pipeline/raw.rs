//! The pipeline file's structure: typed structs read by the located deserializer (each field
//! declared once, with its type and doc), then what types cannot say (names usable as ids,
//! matrix values, repeats) checked here. Settings and each stage are read on their own, so
//! one stage's mistake does not hide another's.

use std::collections::{BTreeMap, HashMap};

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::diag::Collector;
pub use super::located::Sp;
use super::located::{checked, hinted, read};
use super::slurm::{ExecutorKind, SlurmBlock, SlurmResources};
use super::yaml::{describe_value, Loc, YKind, YNode};
use super::Settings;

#[derive(Debug, Clone, Default)]
pub struct RawPipeline {
    pub name: Option<Sp<String>>,
    pub description: Option<String>,
    pub settings: Settings,
    /// `settings.slurm`: Slurm resources of every stage.
    pub slurm: SlurmResources,
    pub stages: Vec<RawStage>,
}

/// One stage as written. `params` are converted to JSON; `locs` maps field paths
/// (`stages.x.params.y[0]`) to positions for later messages.
#[derive(Debug, Clone)]
pub struct RawStage {
    pub name: Sp<String>,
    pub kind: Option<Sp<String>>,
    /// Position of the `params:` key (or the stage name when absent).
    pub params_loc: Loc,
    pub params: Vec<(Sp<String>, Value)>,
    /// Positions of param values and their elements, by field path.
    pub locs: HashMap<String, Loc>,
    pub needs: Vec<Sp<String>>,
    /// Keys in file order, each with its values.
    pub matrix: Vec<(Sp<String>, Vec<Sp<Value>>)>,
    pub gather: bool,
    pub gpu: Option<bool>,
    /// The stage's own `slurm:` block.
    pub slurm: SlurmResources,
    /// `search:` as written (positions in `locs`, under `stages.NAME.search`).
    pub search: Option<Sp<Value>>,
    /// The searched stage's trials (matrix values of each instance), set by the loader.
    pub trials: Vec<BTreeMap<String, Value>>,
}

impl RawStage {
    /// The position recorded for the field path `path` or, when it has none, for its nearest
    /// enclosing field whose path is longer than `floor` bytes.
    pub fn nearest_loc(&self, path: &str, floor: usize) -> Option<Loc> {
        let mut p = path;
        loop {
            if let Some(l) = self.locs.get(p) {
                return Some(*l);
            }
            match p.rfind(['.', '[']) {
                Some(i) if i > floor => p = &p[..i],
                _ => return None,
            }
        }
    }
}

/// The top level (besides free-form `x-*` fields, as in Compose files: typically YAML anchors
/// that stages refer to, `x-domains: &domains [...]`, then `domains: *domains`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `stages:`")]
struct FileTop {
    name: Option<Sp<String>>,
    description: Option<String>,
    /// Read on its own: [`SettingsFile`].
    #[serde(default, rename = "settings")]
    _settings: IgnoredAny,
    /// Stage name → stage, each read on its own: [`StageFile`].
    stages: BTreeMap<String, IgnoredAny>,
}

/// `settings:`: run settings (command-line flags win over them).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of settings")]
struct SettingsFile {
    jobs: Option<Jobs>,
    device: Option<Device>,
    executor: Option<ExecutorKind>,
    #[serde(default)]
    slurm: SlurmBlock,
    remote: Option<Remote>,
    #[serde(default)]
    push: bool,
}

checked!(
    /// Parallel jobs: 1 or more.
    Jobs(usize),
    |v| v.as_u64().filter(|j| *j >= 1).map(|j| j as usize).ok_or_else(|| {
        format!("expected a positive integer, found {}", describe_value(v))
    })
);

checked!(
    /// A device name (`auto`, `cpu`, `cuda`, `cuda:N`).
    Device(String),
    |v| match v.as_str() {
        Some(d) if crate::train_plan::params::valid_device(d) => Ok(d.to_string()),
        Some(d) => Err(hinted(format!("`{d}` is not a device"), "one of auto, cpu, cuda, cuda:N")),
        None => Err(format!("expected a string, found {}", describe_value(v))),
    }
);

checked!(
    /// A remote cache directory.
    Remote(String),
    |v| match v.as_str() {
        Some(d) if !d.trim().is_empty() => Ok(d.to_string()),
        _ => Err(hinted(
            format!("expected a directory, found {}", describe_value(v)),
            "a path to the remote cache directory, e.g. /mnt/team/t2s-remote",
        )),
    }
);

/// A stage as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a stage mapping with `kind:`")]
struct StageFile {
    kind: Sp<String>,
    /// Read with the position of every value: [`read_values`].
    #[serde(rename = "params")]
    _params: Option<BTreeMap<String, IgnoredAny>>,
    /// A single name is a one-element list.
    #[serde(default)]
    needs: Vec<Sp<String>>,
    /// Read key by key: [`matrix`].
    #[serde(rename = "matrix")]
    _matrix: Option<BTreeMap<String, IgnoredAny>>,
    #[serde(default)]
    gather: bool,
    gpu: Option<bool>,
    #[serde(default)]
    slurm: SlurmBlock,
    /// Read with the position of every value: [`read_values`].
    #[serde(rename = "search")]
    _search: Option<IgnoredAny>,
}

/// Stage names become node ids and environment variable names: keep them simple.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Read the document root.
pub fn read_file(root: Option<&YNode>, default_loc: Loc, diags: &mut Collector) -> RawPipeline {
    let mut raw = RawPipeline::default();
    let Some(root) = root else {
        diags.add(
            default_loc,
            "",
            "the pipeline file is empty",
            Some("a pipeline needs a `stages:` mapping".into()),
        );
        return raw;
    };
    let mut top = root.clone();
    if let YKind::Map(entries) = &mut top.kind {
        entries.retain(|(k, _)| !k.scalar().is_some_and(|k| k.starts_with("x-")));
    }
    if let Some(t) = read::<FileTop>(&top, "", diags) {
        raw.name = t.name;
        raw.description = t.description;
        if t.stages.is_empty() {
            let at = root.entry("stages").map_or(root.loc, |(_, v)| v.loc);
            diags.add(
                at,
                "stages",
                "no stages",
                Some("add at least one stage".into()),
            );
        }
    }
    if let Some((_, node)) = root.entry("settings") {
        let s = read::<SettingsFile>(node, "settings", diags).unwrap_or_default();
        raw.slurm = s.slurm.resources("settings.slurm", diags);
        raw.settings = Settings {
            jobs: s.jobs.map(|j| j.0),
            device: s.device.map(|d| d.0),
            executor: s.executor,
            remote: s.remote.map(|r| r.0),
            push: s.push,
        };
    }
    if let Some((
        _,
        YNode {
            kind: YKind::Map(stages),
            ..
        },
    )) = root.entry("stages")
    {
        for (key, body) in stages {
            let Some(name) = key.scalar() else { continue };
            if raw.stages.iter().all(|s| s.name.v != name) {
                let name = Sp {
                    v: name.to_string(),
                    loc: key.loc,
                };
                raw.stages.push(read_stage(name, body, diags));
            }
        }
    }
    raw
}

fn read_stage(name: Sp<String>, body: &YNode, diags: &mut Collector) -> RawStage {
    let path = format!("stages.{}", name.v);
    if !valid_name(&name.v) {
        diags.add(
            name.loc,
            &path,
            format!("invalid stage name `{}`", name.v),
            Some("use letters, digits, `_` and `-` only".into()),
        );
    }
    let mut stage = RawStage {
        params_loc: name.loc,
        name,
        kind: None,
        params: Vec::new(),
        locs: HashMap::new(),
        needs: Vec::new(),
        matrix: Vec::new(),
        gather: false,
        gpu: None,
        slurm: SlurmResources::default(),
        search: None,
        trials: Vec::new(),
    };
    // `needs: a` is `needs: [a]`.
    let mut body = body.clone();
    if let YKind::Map(entries) = &mut body.kind {
        for (k, v) in entries.iter_mut() {
            if k.scalar() == Some("needs") && matches!(v.kind, YKind::Scalar { .. }) {
                v.kind = YKind::Seq(vec![v.clone()]);
            }
        }
    }
    // A stage that cannot be read stays, without a kind: other stages may name it.
    let Some(s) = read::<StageFile>(&body, &path, diags) else {
        return stage;
    };
    stage.kind = Some(s.kind);
    stage.gather = s.gather;
    stage.gpu = s.gpu;
    stage.slurm = s.slurm.resources(&format!("{path}.slurm"), diags);
    stage.needs = unique(s.needs, &format!("{path}.needs"), diags);
    if let Some((_, node)) = body.entry("matrix") {
        stage.matrix = matrix(node, &format!("{path}.matrix"), diags);
    }
    if let Some((key, node)) = body.entry("params") {
        stage.params_loc = key.loc;
        if let YKind::Map(entries) = &node.kind {
            for (k, v) in entries {
                let Some(name) = k.scalar() else {
                    continue; // reported by the typed read
                };
                let ppath = format!("{path}.params.{name}");
                if let Some(value) = read_values(v, &ppath, &mut stage.locs, diags) {
                    let key = Sp {
                        v: name.to_string(),
                        loc: k.loc,
                    };
                    stage.params.push((key, value));
                }
            }
        }
    }
    if let Some((key, node)) = body.entry("search") {
        let spath = format!("{path}.search");
        stage.search =
            read_values(node, &spath, &mut stage.locs, diags).map(|v| Sp { v, loc: key.loc });
    }
    stage
}

/// `node` as JSON, the position of each value under `path` recorded in `locs`.
fn read_values(
    node: &YNode,
    path: &str,
    locs: &mut HashMap<String, Loc>,
    diags: &mut Collector,
) -> Option<Value> {
    node.to_value_at(path, locs)
        .map_err(|e| diags.add(e.loc, path, e.message, None))
        .ok()
}

/// `needs` without repeats (each repeat reported, at `path[i]`).
fn unique(items: Vec<Sp<String>>, path: &str, diags: &mut Collector) -> Vec<Sp<String>> {
    let mut out: Vec<Sp<String>> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        if out.iter().any(|o| o.v == item.v) {
            let message = format!("`{}` is listed twice", item.v);
            diags.add(
                item.loc,
                &format!("{path}[{i}]"),
                message,
                Some("remove the repeat".into()),
            );
        } else {
            out.push(item);
        }
    }
    out
}

/// A matrix's keys and values, checked: names usable in ids, a list of at least one value
/// each, scalar values without the characters ids are made of, no repeats.
fn matrix(node: &YNode, path: &str, diags: &mut Collector) -> Vec<(Sp<String>, Vec<Sp<Value>>)> {
    let YKind::Map(keys) = &node.kind else {
        return Vec::new(); // reported by the typed read
    };
    let mut out = Vec::new();
    for (k, list) in keys {
        let Some(name) = k.scalar() else {
            continue; // reported by the typed read
        };
        let key = Sp {
            v: name.to_string(),
            loc: k.loc,
        };
        let kpath = format!("{path}.{}", key.v);
        if !valid_name(&key.v) {
            diags.add(
                key.loc,
                &kpath,
                format!("invalid matrix key `{}`", key.v),
                Some("use letters, digits, `_` and `-` only".into()),
            );
            continue;
        }
        let items = match &list.kind {
            YKind::Seq(items) if !items.is_empty() => items,
            // Kept (without values) so `${matrix.KEY}` uses of it are not reported twice.
            YKind::Seq(_) => {
                diags.add(
                    list.loc,
                    &kpath,
                    format!("matrix key `{}` has no values", key.v),
                    Some("give at least one value, or remove the key".into()),
                );
                out.push((key, Vec::new()));
                continue;
            }
            _ => {
                diags.add(
                    list.loc,
                    &kpath,
                    format!("expected a list of values, found {}", list.describe()),
                    Some(format!("write `{}: [a, b, c]`", key.v)),
                );
                out.push((key, Vec::new()));
                continue;
            }
        };
        let mut values: Vec<Sp<Value>> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{kpath}[{i}]");
            let v = match item.to_value() {
                Ok(v) => v,
                Err(e) => {
                    diags.add(e.loc, &ipath, e.message, None);
                    continue;
                }
            };
            let (message, hint) = match &v {
                Value::Array(_) | Value::Object(_) | Value::Null => (
                    format!(
                        "matrix values must be strings, numbers or booleans, found {}",
                        describe_value(&v)
                    ),
                    None,
                ),
                Value::String(s) if s.is_empty() || s.contains([',', '=', '[', ']']) => (
                    format!("matrix value {s:?} cannot be part of a node id"),
                    Some("use a non-empty value without `,`, `=`, `[` or `]`".into()),
                ),
                _ if values.iter().any(|x| x.v == v) => (
                    format!("value {v} is listed twice"),
                    Some("remove the repeat".into()),
                ),
                _ => {
                    values.push(Sp { v, loc: item.loc });
                    continue;
                }
            };
            diags.add(item.loc, &ipath, message, hint);
        }
        out.push((key, values));
    }
    out
}
