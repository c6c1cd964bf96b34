//! A stage kind's params as one typed struct (`Deserialize + Serialize + JsonSchema`, with
//! `deny_unknown_fields` and doc comments): the single description of their names, types,
//! defaults and docs. Pipeline validation, `--set`, `t2s kinds` and the stage's own reading of
//! its params all come from it, so they cannot drift apart (issue 32: the hand-kept tables
//! and use-site defaults they replace had).
//!
//! Validation reads a node's params as the struct (serde, with the field path of a failure):
//! a param that fails is left out and the rest read again, so one run lists every problem;
//! then the struct's `problems` check ranges and combinations. Written back, the struct gives
//! the resolved params (defaults filled, values normalised) that the cache key hashes. The
//! JSON schema gives the names, defaults and words of `t2s kinds`.

use std::marker::PhantomData;
use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{ParamSpec, StageError};

/// A stage kind's params type.
pub trait Params: Serialize + DeserializeOwned + JsonSchema + 'static {
    /// Checks beyond what the types say (ranges, combinations): `(param, message)`.
    fn problems(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// The object-safe face of a kind's params type, for validation and listings.
pub trait ParamSet: Send + Sync {
    /// The params as declared: name, accepted type, default (`None`: required), doc.
    fn specs(&self) -> &[ParamSpec];
    /// The declared param names.
    fn names(&self) -> Vec<&str> {
        self.specs().iter().map(|p| p.name.as_str()).collect()
    }
    /// The declared param `name`.
    fn spec(&self, name: &str) -> Option<&ParamSpec> {
        self.specs().iter().find(|p| p.name == name)
    }
    /// `params` read as the struct and written back: defaults filled, values normalised (an
    /// integer given for a float becomes a float). Else every problem as `(param path,
    /// message)`: a param that fails is left out and the rest read again, so all are found;
    /// the struct's `problems` once every param reads.
    fn resolve(&self, params: &Map<String, Value>) -> Result<Map<String, Value>, Vec<Problem>>;
}

/// A problem with params: the param path (`betas[1]`; empty for the whole) and a message.
pub type Problem = (String, String);

/// A kind's params type `P`, as the `static` the kind hands out.
pub struct Typed<P> {
    specs: OnceLock<Vec<ParamSpec>>,
    _params: PhantomData<fn() -> P>,
}

impl<P> Typed<P> {
    pub const fn new() -> Self {
        Self {
            specs: OnceLock::new(),
            _params: PhantomData,
        }
    }
}

impl<P> Default for Typed<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Params> Typed<P> {
    /// Resolved params (validated, defaults filled) as `P`.
    pub fn read(&self, params: &Map<String, Value>) -> Result<P, StageError> {
        let p = read::<P>(params)
            .map_err(|(path, msg)| StageError::Failed(format!("param `{path}`: {msg}")))?;
        match p.problems().into_iter().next() {
            Some((path, msg)) => Err(StageError::Failed(format!("param `{path}`: {msg}"))),
            None => Ok(p),
        }
    }
}

impl<P: Params> ParamSet for Typed<P> {
    fn specs(&self) -> &[ParamSpec] {
        self.specs.get_or_init(specs_of::<P>)
    }
    fn resolve(&self, params: &Map<String, Value>) -> Result<Map<String, Value>, Vec<Problem>> {
        let mut params = params.clone();
        let mut problems = Vec::new();
        loop {
            match read::<P>(&params) {
                Ok(_) if !problems.is_empty() => return Err(problems),
                Ok(p) => {
                    let problems = p.problems();
                    if !problems.is_empty() {
                        return Err(problems);
                    }
                    return match serde_json::to_value(p) {
                        Ok(Value::Object(resolved)) => Ok(resolved),
                        _ => Err(vec![(String::new(), "cannot be written back".into())]),
                    };
                }
                Err((path, message)) => {
                    let param = path
                        .split(['.', '['])
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    problems.push((path, message));
                    if params.remove(&param).is_none() {
                        return Err(problems);
                    }
                }
            }
        }
    }
}

/// Read params as `P`; a failure names the param path (`betas[1]`) and says what is wrong
/// in the words validation uses elsewhere.
fn read<P: DeserializeOwned>(params: &Map<String, Value>) -> Result<P, Problem> {
    serde_path_to_error::deserialize(Value::Object(params.clone())).map_err(|e| {
        let path = e.path().to_string().trim_start_matches('.').to_string();
        let message = plain_serde_message(&e.into_inner().to_string());
        (path, message)
    })
}

/// serde's `invalid type: integer `-4`, expected u64` → `expected a non-negative integer,
/// found the number -4` (values described as `yaml::describe_value` does); other messages (custom ones, unknown variants) as they are.
pub fn plain_serde_message(msg: &str) -> String {
    let Some(rest) = msg
        .strip_prefix("invalid type: ")
        .or_else(|| msg.strip_prefix("invalid value: "))
    else {
        return msg.to_string();
    };
    let Some((found, expected)) = rest.rsplit_once(", expected ") else {
        return msg.to_string();
    };
    let found = [
        ("integer ", "the number "),
        ("floating point ", "the number "),
        ("boolean ", "the boolean "),
        ("string ", "the string "),
    ]
    .iter()
    .find_map(|(serde, ours)| {
        Some(format!(
            "{ours}{}",
            found.strip_prefix(serde)?.trim_matches('`')
        ))
    })
    .unwrap_or_else(|| match found {
        "sequence" => "a list".into(),
        "map" => "a mapping".into(),
        "null" | "unit value" => "nothing (null)".into(),
        other => other.to_string(),
    });
    let expected = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a sequence" => "a list",
        "a map" => "a mapping",
        other => other,
    };
    format!("expected {expected}, found {found}")
}

/// The declared params of `P`, from its JSON schema: one per property, in name order.
fn specs_of<P: JsonSchema>() -> Vec<ParamSpec> {
    let schema = schemars::schema_for!(P);
    let root = schema.as_value();
    let defs = root.get("$defs").cloned().unwrap_or(Value::Null);
    let required: Vec<&str> = root
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = root.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, prop)| ParamSpec {
            name: name.clone(),
            takes: takes(prop, &defs),
            default: (!required.contains(&name.as_str()))
                .then(|| prop.get("default").cloned().unwrap_or(Value::Null)),
            doc: doc_of(prop),
        })
        .collect()
}

/// The doc comment of a property (schemars splits a first paragraph into `title`).
fn doc_of(prop: &Value) -> String {
    let text = ["title", "description"]
        .iter()
        .filter_map(|k| prop.get(*k).and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `{"$ref": "#/$defs/Name"}` (or an `allOf` of one such) → the definition it names (itself
/// otherwise).
fn deref<'a>(s: &'a Value, defs: &'a Value) -> &'a Value {
    if let Some([only]) = s.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        return deref(only, defs);
    }
    s.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| defs.get(name))
        .unwrap_or(s)
}

/// The words of a param whose type has none of its own (a list of numbers, a nested config).
pub const ANY_VALUE: &str = "any value";

/// What a property takes, in words ("a non-negative integer", "one of `a`, `b`").
fn takes(prop: &Value, defs: &Value) -> String {
    let s = deref(prop, defs);
    if let Some(names) = enum_names(s, defs) {
        let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        return format!("one of {}", names.join(", "));
    }
    let inner = |k: &str| s.get(k).map(|i| takes(i, defs));
    let non_negative = s
        .get("minimum")
        .and_then(Value::as_f64)
        .is_some_and(|m| m >= 0.0);
    match s.get("type").and_then(Value::as_str) {
        Some("integer") if non_negative => "a non-negative integer".into(),
        Some("integer") => "an integer".into(),
        Some("number") => "a number".into(),
        Some("boolean") => "true or false".into(),
        Some("string") => "a string".into(),
        Some("array") => match inner("items").as_deref() {
            Some("a string") => "a list of strings".into(),
            Some("an integer" | "a non-negative integer") => "a list of integers".into(),
            _ => ANY_VALUE.into(),
        },
        Some("object") if inner("additionalProperties").as_deref() == Some("a string") => {
            "a mapping of names to strings".into()
        }
        _ => ANY_VALUE.into(),
    }
}

/// The names of a string enum (`enum: [...]`, or `oneOf` of `const`s when variants have docs).
fn enum_names(s: &Value, defs: &Value) -> Option<Vec<String>> {
    if let Some(Value::Array(items)) = s.get("enum") {
        return items.iter().map(|v| v.as_str().map(String::from)).collect();
    }
    let alternatives = s.get("oneOf").or_else(|| s.get("anyOf"))?.as_array()?;
    let mut out = Vec::new();
    for alt in alternatives {
        let alt = deref(alt, defs);
        match alt.get("const").and_then(Value::as_str) {
            Some(c) => out.push(c.to_string()),
            None => out.extend(enum_names(alt, defs)?),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        /// First.
        Fast,
        /// Second: every variant documented keeps their order in the schema.
        Slow,
    }

    /// A params struct with one of each shape.
    #[derive(Debug, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Example {
        /// Required text.
        name: String,
        /// A count.
        #[serde(default = "eight")]
        count: u64,
        /// May be negative.
        #[serde(default)]
        offset: i64,
        /// A rate.
        #[serde(default)]
        rate: f64,
        #[serde(default = "fast")]
        mode: Mode,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        env: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        betas: Vec<f64>,
    }
    fn eight() -> u64 {
        8
    }
    fn fast() -> Mode {
        Mode::Fast
    }
    impl Params for Example {
        fn problems(&self) -> Vec<(String, String)> {
            if self.count == 0 {
                vec![("count".into(), "must be at least 1".into())]
            } else {
                Vec::new()
            }
        }
    }
    static EXAMPLE: Typed<Example> = Typed::new();

    #[test]
    fn specs_come_from_the_struct() {
        let specs = EXAMPLE.specs();
        let get = |n: &str| specs.iter().find(|s| s.name == n).unwrap();
        assert_eq!(get("name").takes, "a string");
        assert_eq!(get("name").default, None, "required");
        assert_eq!(get("name").doc, "Required text.");
        assert_eq!(get("count").takes, "a non-negative integer");
        assert_eq!(get("count").default, Some(json!(8)));
        assert_eq!(get("offset").takes, "an integer");
        assert_eq!(get("rate").takes, "a number");
        assert_eq!(get("mode").takes, "one of `fast`, `slow`");
        assert_eq!(get("mode").default, Some(json!("fast")));
        assert_eq!(get("tags").takes, "a list of strings");
        assert_eq!(get("env").takes, "a mapping of names to strings");
        assert_eq!(get("betas").takes, "any value");
        assert_eq!(specs.len(), 8);
    }

    #[test]
    fn resolve_reads_the_struct_fills_defaults_and_finds_every_problem() {
        let resolve = |v: Value| EXAMPLE.resolve(v.as_object().unwrap());
        let ok = json!({"name": "x", "count": 2, "rate": 1});
        let resolved = Value::Object(resolve(ok.clone()).unwrap());
        assert_eq!(
            resolved["rate"],
            json!(1.0),
            "an integer for a float becomes a float"
        );
        assert_eq!(
            (&resolved["offset"], &resolved["mode"]),
            (&json!(0), &json!("fast"))
        );
        assert_eq!(
            resolve(json!({"name": "x", "count": 0})),
            Err(vec![(
                "count".to_string(),
                "must be at least 1".to_string()
            )])
        );
        let problems = |v| resolve(v).unwrap_err();
        assert_eq!(
            problems(json!({"name": "x", "betas": [0.9, "high"], "offset": "3"})),
            vec![
                (
                    "betas[1]".into(),
                    "expected a number, found the string \"high\"".into()
                ),
                (
                    "offset".into(),
                    "expected an integer, found the string \"3\"".into()
                )
            ]
        );
        assert_eq!(
            problems(json!({"count": -1})),
            vec![
                (
                    "count".into(),
                    "expected a non-negative integer, found the number -1".into()
                ),
                (String::new(), "missing field `name`".into())
            ]
        );
        let read = EXAMPLE.read(ok.as_object().unwrap()).unwrap();
        assert_eq!((read.count, read.mode), (2, Mode::Fast));
    }

    #[test]
    fn every_kinds_defaults_are_its_structs_and_pass_its_checks() {
        for kind in crate::stages::registry::all() {
            let specs = kind.params().specs();
            assert!(!specs.is_empty(), "{}", kind.kind());
            let mut resolved = Map::new();
            for spec in specs {
                assert!(
                    !spec.doc.is_empty(),
                    "{}.{} has no doc",
                    kind.kind(),
                    spec.name
                );
                let value = spec.default.clone().unwrap_or_else(|| json!("x"));
                resolved.insert(spec.name.clone(), value);
            }
            let back = kind.params().resolve(&resolved);
            assert_eq!(back, Ok(resolved), "{}", kind.kind());
        }
        let split = crate::stages::registry::lookup("split").unwrap();
        let default = |n: &str| {
            let specs = split.params().specs();
            specs.iter().find(|s| s.name == n).unwrap().default.clone()
        };
        assert_eq!(default("validation_size"), Some(json!(0.1)));
        assert_eq!(default("test_size"), Some(Value::Null));
        assert_eq!(default("stratify"), Some(json!("")));
    }

    #[test]
    fn serde_messages_in_plain_words() {
        assert_eq!(
            plain_serde_message("invalid value: integer `-4`, expected u64"),
            "expected a non-negative integer, found the number -4"
        );
        assert_eq!(
            plain_serde_message("invalid type: sequence, expected a string"),
            "expected a string, found a list"
        );
        assert_eq!(plain_serde_message("my own words"), "my own words");
    }
}
