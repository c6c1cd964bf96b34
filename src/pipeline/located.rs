//! serde over the located YAML tree (turborepo's `Spanned<T>` idea): the pipeline file's
//! structures are `#[derive(Deserialize)]` types read straight from a [`YNode`], and a failure
//! names the position of the innermost value it concerns, the field path and what is wrong.
//! A field of type [`Sp<T>`] keeps its position for later messages.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::diag::{suggest, Collector};
use super::yaml::{Loc, YKind, YNode};
use crate::stages::params::plain_serde_message;

/// A value with its position.
#[derive(Debug, Clone)]
pub struct Sp<T> {
    pub v: T,
    pub loc: Loc,
}

/// A newtype read from any YAML value by a check that gives the text or the complaint.
macro_rules! checked {
    ($(#[$doc:meta])* $name:ident($ty:ty), $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Deserialize)]
        #[serde(try_from = "serde_json::Value")]
        struct $name($ty);
        impl TryFrom<serde_json::Value> for $name {
            type Error = String;
            fn try_from(v: serde_json::Value) -> Result<Self, String> {
                let check: fn(&serde_json::Value) -> Result<$ty, String> = $check;
                check(&v).map($name)
            }
        }
    };
}
pub(crate) use checked;

/// Joins a message and a hint in a custom error (`TryFrom` conversions return one string).
const HINT: &str = "\u{1f}hint\u{1f}";

/// A message with a hint, as a conversion's error.
pub fn hinted(message: impl fmt::Display, hint: impl fmt::Display) -> String {
    format!("{message}{HINT}{hint}")
}

/// Read `node`, written at field path `path`, as `T`; each failure is reported to `diags`.
/// A mapping's field that fails is left out and the rest read again (so one file shows all
/// its problems, and later checks see the fields that were fine); `None` when what is left
/// cannot be read.
pub fn read<T: DeserializeOwned>(node: &YNode, path: &str, diags: &mut Collector) -> Option<T> {
    // Copied only when a field has to be left out.
    let mut trimmed: Option<YNode> = None;
    let mut dropped: Vec<String> = Vec::new();
    loop {
        let e = match T::deserialize(trimmed.as_ref().unwrap_or(node)) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let missing = e.message.strip_prefix("missing field `");
        if missing.is_some_and(|m| dropped.iter().any(|d| m == format!("{d}`"))) {
            return None; // already reported as the field that failed
        }
        let mut full = path.to_string();
        for seg in e.path.iter().rev() {
            if !full.is_empty() && !seg.starts_with('[') {
                full.push('.');
            }
            full.push_str(seg);
        }
        let (message, hint) = explain(&e.message);
        diags.add(e.loc.unwrap_or(node.loc), &full, message, hint);
        // The deepest mapping field on the way to the failure (a list goes as a whole).
        let keys: Vec<&String> = e
            .path
            .iter()
            .rev()
            .take_while(|s| !s.starts_with('['))
            .collect();
        let node = trimmed.get_or_insert_with(|| node.clone());
        if !keys
            .split_last()
            .is_some_and(|(last, up)| remove(node, up, last))
        {
            return None;
        }
        dropped.extend(keys.last().map(|k| k.to_string()));
    }
}

/// Remove field `key` of the mapping at `up` (field names from `node`); false if not there.
fn remove(node: &mut YNode, up: &[&String], key: &str) -> bool {
    let YKind::Map(entries) = &mut node.kind else {
        return false;
    };
    match up.split_first() {
        None => {
            let before = entries.len();
            entries.retain(|(k, _)| k.scalar() != Some(key));
            entries.len() < before
        }
        Some((first, rest)) => entries
            .iter_mut()
            .find(|(k, _)| k.scalar() == Some(first.as_str()))
            .is_some_and(|(_, v)| remove(v, rest, key)),
    }
}

/// serde's words → the loader's: plain types, and a hint for unknown names and missing fields.
pub fn explain(raw: &str) -> (String, Option<String>) {
    if let Some((message, hint)) = raw.split_once(HINT) {
        return (message.to_string(), Some(hint.to_string()));
    }
    let ticked = |s: &str| -> Vec<String> {
        s.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    for (prefix, what) in [
        ("unknown field `", "allowed fields"),
        ("unknown value `", "allowed values"),
    ] {
        let raw = &raw.replace("unknown variant `", "unknown value `");
        if let Some(rest) = raw.strip_prefix(prefix) {
            let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let allowed = ticked(expected);
            let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
            return (
                format!("{prefix}{name}`"),
                Some(suggest(name, what, &allowed)),
            );
        }
    }
    if let Some(field) = raw.strip_prefix("missing field `") {
        let field = field.trim_end_matches('`');
        return (raw.to_string(), Some(format!("add `{field}:`")));
    }
    let message = plain_serde_message(raw);
    let (expected, found) = message.split_once(", found ").unwrap_or_default();
    let number = ["integer", "number"].iter().any(|n| expected.ends_with(n));
    let hint = if expected.starts_with("expected a list") {
        Some(LIST_HINT)
    } else if number && found.starts_with("the string ") {
        Some("write the number without quotes")
    } else if expected == "expected a non-negative integer" && found.starts_with("the number -") {
        Some("a count, size or seed cannot be negative")
    } else if expected == "expected a string" && found.starts_with("the ") {
        Some("quote the value to make it a string")
    } else {
        None
    };
    (message, hint.map(str::to_string))
}

/// The hint for a value that should have been a list.
pub const LIST_HINT: &str = "write a list, e.g. `[a, b]`";

/// A failure: what, where (set by the innermost node that saw it) and the field path from
/// the node read (segments innermost first: `key` or `[i]`).
#[derive(Debug)]
pub struct Error {
    message: String,
    loc: Option<Loc>,
    path: Vec<String>,
}

impl Error {
    fn at(mut self, loc: Loc) -> Self {
        self.loc.get_or_insert(loc);
        self
    }
    fn within(mut self, segment: String) -> Self {
        self.path.push(segment);
        self
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            message: msg.to_string(),
            loc: None,
            path: Vec::new(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The struct name by which [`Sp`] asks the deserializer for a position.
const SP: &str = "$t2s::Sp";

fn is_null(node: &YNode) -> bool {
    matches!(node.kind, YKind::Scalar { .. }) && matches!(node.to_value(), Ok(Value::Null))
}

impl<'de> de::Deserializer<'de> for &YNode {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let out = match &self.kind {
            YKind::Scalar { .. } => match self.to_value() {
                Err(e) => Err(de::Error::custom(e.message)),
                Ok(Value::Null) => visitor.visit_unit(),
                Ok(Value::Bool(b)) => visitor.visit_bool(b),
                Ok(Value::Number(n)) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                    (Some(u), _, _) => visitor.visit_u64(u),
                    (_, Some(i), _) => visitor.visit_i64(i),
                    (_, _, f) => visitor.visit_f64(f.unwrap_or(f64::NAN)),
                },
                Ok(Value::String(s)) => visitor.visit_string(s),
                Ok(_) => Err(de::Error::custom("a scalar read as a collection")),
            },
            YKind::Seq(items) => visitor.visit_seq(Items(items.iter().enumerate())),
            YKind::Map(entries) => {
                let mut seen = std::collections::HashSet::new();
                if let Some(k) = entries
                    .iter()
                    .map(|(k, _)| k)
                    .find(|k| !seen.insert(k.scalar()))
                {
                    let key = k.scalar().unwrap_or("?").to_string();
                    let e: Error = de::Error::custom(hinted(
                        format!("`{key}` is given twice"),
                        "remove one of them",
                    ));
                    return Err(e.at(k.loc).within(key));
                }
                visitor.visit_map(Entries {
                    entries: entries.iter(),
                    value: None,
                })
            }
        };
        out.map_err(|e| e.at(self.loc))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if is_null(self) {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.kind {
            _ if name == SP => visitor.visit_map(Position {
                node: self,
                step: 0,
            }),
            // A derived struct would take a list as its fields in order: not in this file.
            YKind::Seq(_) => Err(de::Error::invalid_type(de::Unexpected::Seq, &visitor)),
            _ => self.deserialize_any(visitor),
        }
        .map_err(|e: Error| e.at(self.loc))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.to_value() {
            Ok(Value::String(s)) => visitor.visit_enum(s.into_deserializer()),
            _ => Err(de::Error::custom(format!(
                "expected a name, found {}",
                self.describe()
            ))),
        }
        .map_err(|e: Error| e.at(self.loc))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct Items<'a>(std::iter::Enumerate<std::slice::Iter<'a, YNode>>);

impl<'de> de::SeqAccess<'de> for Items<'_> {
    type Error = Error;
    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some((i, item)) = self.0.next() else {
            return Ok(None);
        };
        seed.deserialize(item)
            .map(Some)
            .map_err(|e| e.at(item.loc).within(format!("[{i}]")))
    }
}

struct Entries<'a> {
    entries: std::slice::Iter<'a, (YNode, YNode)>,
    value: Option<(&'a YNode, &'a YNode)>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = Error;
    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some((k, v)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((k, v));
        // Keys are names, read as their text (`1:` is the name "1", as YAML writes it).
        let Some(name) = k.scalar() else {
            let e: Error = de::Error::custom("keys must be plain names");
            return Err(e.at(k.loc));
        };
        seed.deserialize(name.into_deserializer())
            .map(Some)
            .map_err(|e: Error| e.at(k.loc).within(name.to_string()))
    }
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let (k, v) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value asked for before its key"))?;
        seed.deserialize(v)
            .map_err(|e| e.at(v.loc).within(k.scalar().unwrap_or("?").to_string()))
    }
}

/// What [`Sp`]'s visitor reads: the line, the column, the `--set` argument (0: none, else
/// its index + 1), then the value.
struct Position<'a> {
    node: &'a YNode,
    step: usize,
}

const POSITION_FIELDS: [&str; 4] = ["line", "col", "set_arg", "value"];

impl<'de> MapAccess<'de> for Position<'_> {
    type Error = Error;
    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        match POSITION_FIELDS.get(self.step) {
            Some(name) => seed.deserialize(name.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let loc = self.node.loc;
        self.step += 1;
        match self.step {
            1 => seed.deserialize((loc.line as u64).into_deserializer()),
            2 => seed.deserialize((loc.col as u64).into_deserializer()),
            3 => seed.deserialize((loc.set_arg.map_or(0, |i| i as u64 + 1)).into_deserializer()),
            _ => seed.deserialize(self.node),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sp<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Sp<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value of the pipeline file")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Sp<T>, A::Error> {
                let mut at = [0usize; 3];
                for slot in &mut at {
                    m.next_key::<de::IgnoredAny>()?;
                    *slot = m.next_value::<u64>()? as usize;
                }
                m.next_key::<de::IgnoredAny>()?;
                let v = m.next_value::<T>()?;
                let loc = Loc {
                    line: at[0],
                    col: at[1],
                    set_arg: at[2].checked_sub(1),
                };
                Ok(Sp { v, loc })
            }
        }
        d.deserialize_struct(SP, &POSITION_FIELDS, V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        name: Sp<String>,
        #[serde(default)]
        sizes: Vec<u32>,
        #[serde(default)]
        order: Option<std::collections::BTreeMap<String, Sp<Value>>>,
    }

    fn load(src: &str) -> Result<Doc, Vec<String>> {
        let root = super::super::yaml::parse(src).unwrap().unwrap();
        let mut diags = Collector::new(Path::new("p.yaml"), &[]);
        let doc = read::<Doc>(&root, "top", &mut diags);
        match doc {
            Some(doc) if diags.is_empty() => Ok(doc),
            _ => Err(diags.finish().iter().map(|d| d.to_string()).collect()),
        }
    }

    #[test]
    fn values_keep_positions() {
        let d = load("name: x\norder: {b: 1, a: [2]}\n").unwrap();
        assert_eq!(
            (d.name.v.as_str(), d.name.loc.line, d.name.loc.col),
            ("x", 1, 7)
        );
        let order = d.order.unwrap();
        assert_eq!((order["a"].loc.line, order["a"].loc.col), (2, 18));
        // Keys are read as their text, as YAML writes them.
        let d = load("name: x\norder: {1: 5, true: 6}\n").unwrap();
        assert_eq!(d.order.unwrap().keys().collect::<Vec<_>>(), ["1", "true"]);
        assert!(d.sizes.is_empty());
    }

    #[test]
    fn failures_name_the_innermost_position_and_the_field_path() {
        assert_eq!(
            load("name: x\nsizes: [1, -2]\n").unwrap_err(),
            ["p.yaml:2:12: top.sizes[1]: expected a non-negative integer, found the number -2\n  \
              hint: a count, size or seed cannot be negative"]
        );
        assert_eq!(
            load("name: x\nsise: []\n").unwrap_err(),
            ["p.yaml:2:1: top.sise: unknown field `sise`\n  hint: did you mean `sizes`?"]
        );
        assert_eq!(
            load("sizes: []\n").unwrap_err(),
            ["p.yaml:1:6: top: missing field `name`\n  hint: add `name:`"]
        );
        assert_eq!(
            load("name: x\norder: {a: 1, a: 2}\n").unwrap_err(),
            ["p.yaml:2:15: top.order.a: `a` is given twice\n  hint: remove one of them"]
        );
    }
}
