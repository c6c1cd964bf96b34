//! Params against a kind's declared `ParamSpec`s (derived from its params struct): unknown
//! names, required ones, types; defaults filled; then the params read as the kind's struct,
//! with its own `problems`. Also the pipeline's `name`, which becomes a directory
//! (`experiments/<name>/<run>/` for reports).

use std::collections::BTreeSet;

use serde_json::{Map, Number, Value};

use super::diag::{suggest, Collector};
use super::raw::RawStage;
use super::yaml::{describe_value, Loc};
use crate::stages::{ParamSpec, ParamType, StageKind};

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
    let declared: Vec<&str> = kind
        .params()
        .specs()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
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

/// Node-level check of substituted params. Returns the params with defaults filled and values
/// normalised (ints given for floats become floats), or `None` if a problem was found.
/// `skip` names params already reported (unresolvable `${matrix.x}`).
pub fn resolve(
    stage: &RawStage,
    kind: &dyn StageKind,
    params: &Map<String, Value>,
    skip: &BTreeSet<String>,
    diags: &mut Collector,
) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    let mut ok = true;
    for spec in kind.params().specs() {
        let path = format!("stages.{}.params.{}", stage.name.v, spec.name);
        match params.get(&spec.name) {
            Some(_) if skip.contains(&spec.name) => ok = false,
            Some(v) => match check(spec.ty, v, &path) {
                Ok(v) => {
                    out.insert(spec.name.to_string(), v);
                }
                Err((at, msg, mut hint)) => {
                    ok = false;
                    if let Some(key) = exact_matrix_ref(stage, &spec.name) {
                        hint = Some(format!(
                            "a param that is exactly `${{matrix.{key}}}` takes the matrix value with its type; \
                             quote the matrix values or put text around the reference"
                        ));
                    }
                    let loc = locate(stage, &at);
                    diags.add(loc, &at, msg, hint);
                }
            },
            None => match &spec.default {
                Some(v) => {
                    out.insert(spec.name.clone(), v.clone());
                }
                None => {
                    ok = false;
                    diags.add(
                        stage.params_loc,
                        &path,
                        format!(
                            "missing required param `{}` of kind `{}`",
                            spec.name,
                            kind.kind()
                        ),
                        Some(format!(
                            "add `{}:` ({}) under `params:`",
                            spec.name,
                            describe_spec(spec)
                        )),
                    );
                }
            },
        }
    }
    if !ok {
        return None;
    }
    let mut clean = true;
    for (name, msg) in kind.params().check(&out) {
        clean = false;
        let name = name.trim_start_matches('.');
        let path = format!("stages.{}.params.{name}", stage.name.v);
        let path = path.trim_end_matches('.');
        // A problem with a whole param gets the param's description as a hint; one inside
        // it (`model_config.hidden_size`) says enough itself.
        let hint = kind
            .params()
            .specs()
            .iter()
            .find(|s| s.name == name)
            .map(|s| format!("`{}`: {}", s.name, describe_spec(s)));
        diags.add(locate(stage, path), path, msg, hint);
    }
    clean.then_some(out)
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
    format!("{}: {}", expected(spec.ty), spec.doc.trim_end_matches('.'))
}

fn expected(ty: ParamType) -> String {
    ty.describe()
}

type Problem = (String, String, Option<String>);

fn wrong(ty: ParamType, v: &Value, path: &str) -> Problem {
    let hint = match (ty, v) {
        (ParamType::Int | ParamType::Count | ParamType::Float, Value::String(_)) => {
            Some("write the number without quotes".into())
        }
        (ParamType::Count, Value::Number(n)) if n.is_i64() => {
            Some("a count, size or seed cannot be negative".into())
        }
        (ParamType::Str, Value::Number(_) | Value::Bool(_)) => {
            Some("quote the value to make it a string".into())
        }
        (ParamType::StrList | ParamType::IntList, Value::String(_) | Value::Number(_)) => {
            Some(super::located::LIST_HINT.into())
        }
        _ => None,
    };
    (
        path.to_string(),
        format!("expected {}, found {}", expected(ty), describe_value(v)),
        hint,
    )
}

/// Check one value against its type, returning the normalised value.
fn check(ty: ParamType, v: &Value, path: &str) -> Result<Value, Problem> {
    let is_int = |v: &Value| matches!(v, Value::Number(n) if n.is_i64() || n.is_u64());
    match ty {
        ParamType::Any => Ok(v.clone()),
        ParamType::Int if is_int(v) => Ok(v.clone()),
        ParamType::Count if v.is_u64() => Ok(v.clone()),
        ParamType::Float => match v.as_f64().and_then(Number::from_f64) {
            Some(n) if v.is_number() => Ok(Value::Number(n)),
            _ => Err(wrong(ty, v, path)),
        },
        ParamType::Bool if v.is_boolean() => Ok(v.clone()),
        ParamType::Str if v.is_string() => Ok(v.clone()),
        ParamType::Enum(opts) => match v.as_str() {
            Some(s) if opts.contains(&s) => Ok(v.clone()),
            Some(s) => Err((
                path.to_string(),
                format!("{s:?} is not {}", expected(ty)),
                Some(suggest(s, "allowed values", opts)),
            )),
            None => Err(wrong(ty, v, path)),
        },
        ParamType::StrList | ParamType::IntList => {
            let Value::Array(items) = v else {
                return Err(wrong(ty, v, path));
            };
            let elem = if ty == ParamType::StrList {
                ParamType::Str
            } else {
                ParamType::Int
            };
            for (i, x) in items.iter().enumerate() {
                check(elem, x, &format!("{path}[{i}]"))?;
            }
            Ok(v.clone())
        }
        ParamType::StrMap => {
            let Value::Object(m) = v else {
                return Err(wrong(ty, v, path));
            };
            // Scalars are accepted and kept as text: `PORT: 8080` means the string "8080".
            let mut out = Map::new();
            for (k, x) in m {
                let s = match x {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err((
                            format!("{path}.{k}"),
                            format!("expected a string, found {}", describe_value(other)),
                            None,
                        ))
                    }
                };
                out.insert(k.clone(), Value::String(s));
            }
            Ok(Value::Object(out))
        }
        _ => Err(wrong(ty, v, path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(ty: ParamType, v: Value) -> Value {
        check(ty, &v, "p").unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn err(ty: ParamType, v: Value) -> (String, String) {
        let (path, msg, _) = check(ty, &v, "p").unwrap_err();
        (path, msg)
    }

    #[test]
    fn numbers() {
        assert_eq!(ok(ParamType::Int, json!(3)), json!(3));
        assert_eq!(
            err(ParamType::Int, json!(3.5)).1,
            "expected an integer, found the number 3.5"
        );
        assert_eq!(
            err(ParamType::Int, json!("3")).1,
            "expected an integer, found the string \"3\""
        );
        // An int where a float is expected is accepted and normalised, so 1 and 1.0 key alike.
        assert_eq!(ok(ParamType::Float, json!(1)), json!(1.0));
        assert_eq!(
            err(ParamType::Float, json!("abc")).1,
            "expected a number, found the string \"abc\""
        );
        assert!(check(ParamType::Float, &json!(true), "p").is_err());
    }

    #[test]
    fn strings_bools_enums() {
        assert_eq!(ok(ParamType::Str, json!("x")), json!("x"));
        assert!(check(ParamType::Str, &json!(1), "p").is_err());
        assert_eq!(ok(ParamType::Bool, json!(false)), json!(false));
        assert!(check(ParamType::Bool, &json!("yes"), "p").is_err());
        let e = ParamType::Enum(&["bf16", "f32"]);
        assert_eq!(ok(e, json!("f32")), json!("f32"));
        let (_, msg, hint) = check(e, &json!("bf61"), "p").unwrap_err();
        assert_eq!(msg, "\"bf61\" is not one of `bf16`, `f32`");
        assert_eq!(hint.as_deref(), Some("did you mean `bf16`?"));
        assert!(check(e, &json!(16), "p").is_err());
    }

    #[test]
    fn lists_maps_any() {
        assert_eq!(ok(ParamType::IntList, json!([1, 2])), json!([1, 2]));
        assert_eq!(err(ParamType::IntList, json!([1, "2"])).0, "p[1]");
        assert_eq!(err(ParamType::StrList, json!(["a", 2])).0, "p[1]");
        assert!(check(ParamType::StrList, &json!("a"), "p").is_err());
        assert_eq!(
            ok(ParamType::StrMap, json!({"A": 1, "B": true, "C": "x"})),
            json!({"A": "1", "B": "true", "C": "x"})
        );
        assert_eq!(err(ParamType::StrMap, json!({"A": [1]})).0, "p.A");
        assert!(check(ParamType::StrMap, &json!([1]), "p").is_err());
        assert_eq!(
            ok(ParamType::Any, json!({"x": [1, null]})),
            json!({"x": [1, null]})
        );
    }
}
