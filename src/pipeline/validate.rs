//! Params against the kind's params struct: unknown names (stage level), then each node's
//! params read as the struct, every problem placed where it was written with a hint; the
//! resolved params come back with defaults filled. Also the pipeline's `name`, which becomes
//! a directory (`experiments/<name>/<run>/` for reports).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::diag::{suggest, Collector};
use super::located::explain;
use super::raw::RawStage;
use super::yaml::Loc;
use crate::stages::params::ANY_VALUE;
use crate::stages::{ParamSpec, StageKind};

/// Names that would land on a file t2s keeps in `experiments/` itself.
const RESERVED_NAMES: &[&str] = &["slurm"];

/// Whether `name` can be a pipeline's name: one plain path component under `experiments/`
/// (no `/`, no `..`, not hidden, not one of t2s's own files there).
fn plain_pipeline_name(name: &str) -> Result<(), &'static str> {
    let plain = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !plain {
        Err(
            "must be 1 to 100 letters, digits, `_`, `-` or `.`, not starting with `.` \
             (it becomes the directory experiments/<name>/)",
        )
    } else if RESERVED_NAMES.contains(&name) || name.starts_with("t2s.db") {
        Err("is reserved by t2s (a file or directory it keeps in experiments/)")
    } else {
        Ok(())
    }
}

/// Check the `name:` field (at `loc`).
pub fn pipeline_name(name: &str, loc: Loc, diags: &mut Collector) {
    if let Err(why) = plain_pipeline_name(name) {
        diags.add(
            loc,
            "name",
            format!("pipeline name `{name}` {why}"),
            Some("choose a plain name, e.g. `name: sweep`".to_string()),
        );
    }
}

/// The name of a pipeline without `name:`: its file stem, made plain (other characters become
/// `_`, leading dots go), since a file name is not something to reject the pipeline for.
pub fn name_from_stem(file: &std::path::Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let clean: String = stem
        .trim_start_matches('.')
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match plain_pipeline_name(&clean) {
        Ok(()) => clean,
        Err(_) if clean.is_empty() => "pipeline".to_string(),
        Err(_) => format!("pipeline-{clean}"),
    }
}

/// Stage-level check: params the kind does not declare.
pub fn unknown_params(stage: &RawStage, kind: &dyn StageKind, diags: &mut Collector) {
    let declared = kind.params().names();
    for (key, _) in &stage.params {
        if !declared.contains(&key.v.as_str()) {
            diags.add(
                key.loc,
                &format!("stages.{}.params.{}", stage.name.v, key.v),
                format!("unknown param `{}` for kind `{}`", key.v, kind.kind()),
                Some(suggest(&key.v, "its params", &declared)),
            );
        }
    }
}

/// Node-level check of substituted params, read as the kind's params struct. Returns the
/// params with defaults filled and values normalised (ints given for floats become floats),
/// or `None` if a problem was found. `skip` names params already reported (unresolvable
/// `${matrix.x}`).
pub fn resolve(
    stage: &RawStage,
    kind: &dyn StageKind,
    params: &Map<String, Value>,
    skip: &BTreeSet<String>,
    diags: &mut Collector,
) -> Option<Map<String, Value>> {
    let set = kind.params();
    let given: Map<String, Value> = params
        .iter()
        .filter(|(k, _)| !skip.contains(*k) && set.spec(k).is_some())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let problems = match set.resolve(&given) {
        Ok(resolved) if skip.is_empty() => return Some(resolved),
        Ok(_) => return None,
        Err(problems) => problems,
    };
    for (at, message) in problems {
        let (mut message, mut hint) = explain(&message);
        let param = at.split(['.', '[']).next().unwrap_or_default();
        if let Some(missing) = message.strip_prefix("missing field `") {
            let name = missing.trim_end_matches('`');
            // A param written but left out (unresolvable, or failed above) is not missing.
            let written = skip.contains(name) || given.contains_key(name);
            let spec = set.spec(name);
            if let Some(spec) = spec.filter(|_| !written) {
                diags.add(
                    stage.params_loc,
                    &format!("stages.{}.params.{name}", stage.name.v),
                    format!("missing required param `{name}` of kind `{}`", kind.kind()),
                    Some(format!(
                        "add `{name}:` ({}) under `params:`",
                        describe_spec(spec)
                    )),
                );
            }
            continue;
        }
        let spec = set.spec(param);
        if let Some(spec) = spec.filter(|_| at == param) {
            // serde says `a list`; the param says what of (when its type has words).
            if let Some((_, found)) = message
                .split_once(", found ")
                .filter(|_| message.starts_with("expected ") && spec.takes != ANY_VALUE)
            {
                message = format!("expected {}, found {found}", spec.takes);
            }
            hint = hint.or_else(|| Some(format!("`{param}`: {}", describe_spec(spec))));
        }
        if let Some(key) =
            exact_matrix_ref(stage, param).filter(|_| message.starts_with("expected "))
        {
            hint = Some(format!(
                "a param that is exactly `${{matrix.{key}}}` takes the matrix value with its type; \
                 quote the matrix values or put text around the reference"
            ));
        }
        let path = format!("stages.{}.params.{at}", stage.name.v);
        let path = path.trim_end_matches('.');
        diags.add(locate(stage, path), path, message, hint);
    }
    None
}

/// The matrix key when the param as written is exactly `${matrix.KEY}`.
fn exact_matrix_ref<'s>(stage: &'s RawStage, param: &str) -> Option<&'s str> {
    let (_, v) = stage.params.iter().find(|(k, _)| k.v == param)?;
    v.as_str()?.strip_prefix("${matrix.")?.strip_suffix('}')
}

/// The position of a param's field path, or of its closest recorded parent within the param,
/// or of the param's key.
fn locate(stage: &RawStage, path: &str) -> Loc {
    let params = format!("stages.{}.params", stage.name.v);
    stage.nearest_loc(path, params.len()).unwrap_or_else(|| {
        stage
            .params
            .iter()
            .find(|(k, _)| path.starts_with(&format!("{params}.{}", k.v)))
            .map_or(stage.params_loc, |(k, _)| k.loc)
    })
}

fn describe_spec(spec: &ParamSpec) -> String {
    format!("{}: {}", spec.takes, spec.doc.trim_end_matches('.'))
}
