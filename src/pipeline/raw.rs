//! The pipeline file's structure, read from the located YAML tree: every field keeps its
//! position. Structural problems (unknown fields, wrong shapes) are collected, not fatal.

use std::collections::HashMap;

use serde_json::Value;

use super::diag::{suggest, Collector};
use super::slurm::{self, ExecutorKind, SlurmResources};
use super::yaml::{describe_value, Loc, YKind, YNode};

/// A value with its position.
#[derive(Debug, Clone)]
pub struct Sp<T> {
    pub v: T,
    pub loc: Loc,
}

#[derive(Debug, Clone, Default)]
pub struct RawPipeline {
    pub name: Option<Sp<String>>,
    pub description: Option<String>,
    pub jobs: Option<usize>,
    pub device: Option<String>,
    pub executor: Option<ExecutorKind>,
    /// `settings.remote`: a remote cache directory.
    pub remote: Option<String>,
    /// `settings.push`: push what runs compute to the remote.
    pub push: bool,
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
    pub trials: Vec<std::collections::BTreeMap<String, Value>>,
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

/// A field's reader: what is read so far, the field's key and value, the value's path.
type Reader<T> = fn(&mut T, &Sp<String>, &YNode, &str, &mut Collector);

/// The top-level fields (besides free-form `x-*` ones), each with its reader.
const TOP_FIELDS: &[(&str, Reader<RawPipeline>)] = &[
    ("name", |raw, _, v, path, d| {
        raw.name = want_string(v, path, d).map(|s| Sp { v: s, loc: v.loc })
    }),
    ("description", |raw, _, v, path, d| {
        raw.description = want_string(v, path, d)
    }),
    ("settings", |raw, _, v, _, d| read_settings(v, raw, d)),
    ("stages", read_stages),
];

/// The fields of `settings:`, each with its reader.
const SETTINGS_FIELDS: &[(&str, Reader<RawPipeline>)] = &[
    ("jobs", read_jobs),
    ("device", read_device),
    ("executor", |raw, _, v, path, d| {
        raw.executor = slurm::read_executor(v, path, d)
    }),
    ("slurm", |raw, _, v, path, d| {
        raw.slurm = slurm::read_block(v, path, d)
    }),
    ("remote", read_remote),
    ("push", |raw, _, v, path, d| {
        raw.push = want_bool(v, path, d).unwrap_or(false)
    }),
];

/// The fields of a stage, each with its reader.
const STAGE_FIELDS: &[(&str, Reader<RawStage>)] = &[
    ("kind", |s, _, v, path, d| {
        s.kind = want_string(v, path, d).map(|k| Sp { v: k, loc: v.loc })
    }),
    ("params", read_params),
    ("needs", |s, _, v, path, d| s.needs = read_needs(v, path, d)),
    ("matrix", |s, _, v, path, d| {
        s.matrix = read_matrix(v, path, d)
    }),
    ("gather", |s, _, v, path, d| {
        s.gather = want_bool(v, path, d).unwrap_or(false)
    }),
    ("gpu", |s, _, v, path, d| s.gpu = want_bool(v, path, d)),
    ("slurm", |s, _, v, path, d| {
        s.slurm = slurm::read_block(v, path, d)
    }),
    ("search", read_search),
];

/// Read each of `fields` with its reader in `table`; a field the table lacks is reported
/// with the closest allowed name.
fn read_fields<T>(
    target: &mut T,
    fields: Vec<(Sp<String>, &YNode)>,
    table: &[(&str, Reader<T>)],
    path: &str,
    diags: &mut Collector,
) {
    for (key, v) in fields {
        match table.iter().find(|(name, _)| *name == key.v) {
            Some((_, read)) => read(target, &key, v, &join(path, &key.v), diags),
            // Extension fields, as in Compose files: free-form, typically YAML anchors that
            // stages refer to (`x-domains: &domains [...]`, then `domains: *domains`).
            None if path.is_empty() && key.v.starts_with("x-") => {}
            None => {
                let names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
                unknown_field(&key, path, &names, diags)
            }
        }
    }
}

/// Stage names become node ids and environment variable names: keep them simple.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn entries<'n>(
    node: &'n YNode,
    path: &str,
    what: &str,
    diags: &mut Collector,
) -> Option<Vec<(Sp<String>, &'n YNode)>> {
    let YKind::Map(pairs) = &node.kind else {
        diags.add(
            node.loc,
            path,
            format!("expected {what}, found {}", node.describe()),
            None,
        );
        return None;
    };
    let mut out: Vec<(Sp<String>, &YNode)> = Vec::new();
    for (k, v) in pairs {
        let Some(key) = k.scalar() else {
            diags.add(k.loc, path, "keys must be plain names", None);
            continue;
        };
        if out.iter().any(|(e, _)| e.v == key) {
            diags.add(
                k.loc,
                &join(path, key),
                format!("`{key}` is given twice"),
                Some("remove one of them".into()),
            );
            continue;
        }
        out.push((
            Sp {
                v: key.to_string(),
                loc: k.loc,
            },
            v,
        ));
    }
    Some(out)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn unknown_field(key: &Sp<String>, path: &str, allowed: &[&str], diags: &mut Collector) {
    diags.add(
        key.loc,
        &join(path, &key.v),
        format!("unknown field `{}`", key.v),
        Some(suggest(&key.v, "allowed fields", allowed)),
    );
}

fn want_string(node: &YNode, path: &str, diags: &mut Collector) -> Option<String> {
    match node.to_value() {
        Ok(Value::String(s)) => Some(s),
        Ok(v) => {
            diags.add(
                node.loc,
                path,
                format!("expected a string, found {}", describe_value(&v)),
                None,
            );
            None
        }
        Err(_) => {
            diags.add(
                node.loc,
                path,
                format!("expected a string, found {}", node.describe()),
                None,
            );
            None
        }
    }
}

fn want_bool(node: &YNode, path: &str, diags: &mut Collector) -> Option<bool> {
    match node.to_value() {
        Ok(Value::Bool(b)) => Some(b),
        _ => {
            diags.add(
                node.loc,
                path,
                format!("expected true or false, found {}", node.describe()),
                None,
            );
            None
        }
    }
}

/// Read the document root. `None` of the stages means the file was unusable.
pub fn read(root: Option<&YNode>, default_loc: Loc, diags: &mut Collector) -> RawPipeline {
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
    let Some(fields) = entries(root, "", "a mapping with `stages:`", diags) else {
        return raw;
    };
    let saw_stages = fields.iter().any(|(k, _)| k.v == "stages");
    read_fields(&mut raw, fields, TOP_FIELDS, "", diags);
    if !saw_stages {
        diags.add(
            root.loc,
            "stages",
            "missing field `stages`",
            Some("a pipeline needs a `stages:` mapping of stage name to stage".into()),
        );
    }
    raw
}

fn read_stages(
    raw: &mut RawPipeline,
    _: &Sp<String>,
    node: &YNode,
    path: &str,
    diags: &mut Collector,
) {
    let Some(stages) = entries(node, path, "a mapping of stage names", diags) else {
        return;
    };
    if stages.is_empty() {
        diags.add(
            node.loc,
            path,
            "no stages",
            Some("add at least one stage".into()),
        );
    }
    for (name, body) in stages {
        if let Some(s) = read_stage(name, body, diags) {
            raw.stages.push(s);
        }
    }
}

fn read_settings(node: &YNode, raw: &mut RawPipeline, diags: &mut Collector) {
    if let Some(fields) = entries(node, "settings", "a mapping", diags) {
        read_fields(raw, fields, SETTINGS_FIELDS, "settings", diags);
    }
}

fn read_jobs(raw: &mut RawPipeline, _: &Sp<String>, v: &YNode, path: &str, diags: &mut Collector) {
    match v.to_value() {
        Ok(Value::Number(n)) if n.as_u64().is_some_and(|j| j >= 1) => {
            raw.jobs = n.as_u64().map(|j| j as usize)
        }
        _ => diags.add(
            v.loc,
            path,
            format!("expected a positive integer, found {}", v.describe()),
            None,
        ),
    }
}

fn read_device(
    raw: &mut RawPipeline,
    _: &Sp<String>,
    v: &YNode,
    path: &str,
    diags: &mut Collector,
) {
    raw.device = want_string(v, path, diags).filter(|d| {
        let ok = crate::train_plan::params::valid_device(d);
        if !ok {
            diags.add(
                v.loc,
                path,
                format!("`{d}` is not a device"),
                Some("one of auto, cpu, cuda, cuda:N".into()),
            );
        }
        ok
    })
}

fn read_remote(
    raw: &mut RawPipeline,
    _: &Sp<String>,
    v: &YNode,
    path: &str,
    diags: &mut Collector,
) {
    match want_string(v, path, diags) {
        Some(dir) if dir.trim().is_empty() => diags.add(
            v.loc,
            path,
            "expected a directory, found an empty string".to_string(),
            Some("a path to the remote cache directory, e.g. /mnt/team/t2s-remote".into()),
        ),
        dir => raw.remote = dir,
    }
}

fn read_params(
    stage: &mut RawStage,
    key: &Sp<String>,
    v: &YNode,
    path: &str,
    diags: &mut Collector,
) {
    stage.params_loc = key.loc;
    if matches!(&v.kind, YKind::Scalar { text, plain: true, .. } if text.is_empty()) {
        return; // `params:` with nothing after it
    }
    let Some(ps) = entries(v, path, "a mapping of parameters", diags) else {
        return;
    };
    for (pk, pv) in ps {
        let ppath = join(path, &pk.v);
        match pv.to_value_at(&ppath, &mut stage.locs) {
            Ok(val) => stage.params.push((pk, val)),
            Err(e) => diags.add(e.loc, &ppath, e.message, None),
        }
    }
}

fn read_search(
    stage: &mut RawStage,
    key: &Sp<String>,
    v: &YNode,
    path: &str,
    diags: &mut Collector,
) {
    match v.to_value_at(path, &mut stage.locs) {
        Ok(val) => {
            stage.search = Some(Sp {
                v: val,
                loc: key.loc,
            })
        }
        Err(e) => diags.add(e.loc, path, e.message, None),
    }
}

fn read_stage(name: Sp<String>, body: &YNode, diags: &mut Collector) -> Option<RawStage> {
    let path = format!("stages.{}", name.v);
    if !valid_name(&name.v) {
        diags.add(
            name.loc,
            &path,
            format!("invalid stage name `{}`", name.v),
            Some("use letters, digits, `_` and `-` only".into()),
        );
    }
    let fields = entries(body, &path, "a stage mapping with `kind:`", diags)?;
    let mut stage = RawStage {
        params_loc: name.loc,
        name: name.clone(),
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
    read_fields(&mut stage, fields, STAGE_FIELDS, &path, diags);
    if stage.kind.is_none() {
        diags.add(
            name.loc,
            &path,
            format!("stage `{}` has no `kind`", name.v),
            Some("add `kind:` naming a stage kind, e.g. `kind: command`".into()),
        );
    }
    Some(stage)
}

fn read_needs(v: &YNode, path: &str, diags: &mut Collector) -> Vec<Sp<String>> {
    // A single name is accepted as a one-element list.
    let items: Vec<&YNode> = match &v.kind {
        YKind::Seq(items) => items.iter().collect(),
        YKind::Scalar { .. } => vec![v],
        YKind::Map(_) => {
            diags.add(
                v.loc,
                path,
                "expected a list of stage names, found a mapping",
                Some("write `needs: [a, b]`".into()),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<Sp<String>> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        if let Some(s) = want_string(item, &ipath, diags) {
            if out.iter().any(|o| o.v == s) {
                diags.add(
                    item.loc,
                    &ipath,
                    format!("`{s}` is listed twice"),
                    Some("remove the repeat".into()),
                );
                continue;
            }
            out.push(Sp {
                v: s,
                loc: item.loc,
            });
        }
    }
    out
}

fn read_matrix(v: &YNode, path: &str, diags: &mut Collector) -> Vec<(Sp<String>, Vec<Sp<Value>>)> {
    let Some(keys) = entries(
        v,
        path,
        "a mapping of matrix keys to lists of values",
        diags,
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, list) in keys {
        let kpath = join(path, &key.v);
        if !valid_name(&key.v) {
            diags.add(
                key.loc,
                &kpath,
                format!("invalid matrix key `{}`", key.v),
                Some("use letters, digits, `_` and `-` only".into()),
            );
            continue;
        }
        let YKind::Seq(items) = &list.kind else {
            diags.add(
                list.loc,
                &kpath,
                format!("expected a list of values, found {}", list.describe()),
                Some(format!("write `{}: [a, b, c]`", key.v)),
            );
            out.push((key, Vec::new()));
            continue;
        };
        if items.is_empty() {
            // Kept (without values) so `${matrix.KEY}` uses of it are not reported twice.
            diags.add(
                list.loc,
                &kpath,
                format!("matrix key `{}` has no values", key.v),
                Some("give at least one value, or remove the key".into()),
            );
            out.push((key, Vec::new()));
            continue;
        }
        let mut values: Vec<Sp<Value>> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{kpath}[{i}]");
            match item.to_value() {
                Ok(Value::Array(_)) | Ok(Value::Object(_)) | Ok(Value::Null) => diags.add(
                    item.loc,
                    &ipath,
                    format!(
                        "matrix values must be strings, numbers or booleans, found {}",
                        item.describe()
                    ),
                    None,
                ),
                Ok(Value::String(s)) if s.is_empty() || s.contains([',', '=', '[', ']']) => diags
                    .add(
                        item.loc,
                        &ipath,
                        format!("matrix value {s:?} cannot be part of a node id"),
                        Some("use a non-empty value without `,`, `=`, `[` or `]`".into()),
                    ),
                Ok(val) => {
                    if values.iter().any(|x| x.v == val) {
                        diags.add(
                            item.loc,
                            &ipath,
                            format!("value {val} is listed twice"),
                            Some("remove the repeat".into()),
                        );
                    } else {
                        values.push(Sp {
                            v: val,
                            loc: item.loc,
                        });
                    }
                }
                Err(e) => diags.add(e.loc, &ipath, e.message, None),
            }
        }
        out.push((key, values));
    }
    out
}
