//! The cache key of a node.
//!
//! Every input that can change a node's result is a field of [`CacheKey`]; if it is not a field,
//! it is not an input. The key is blake3 over the struct's canonical JSON (object keys sorted at
//! every depth, no whitespace), so it does not depend on YAML key order or serde's map type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Version of the store format (the `v1` of `artifacts/v1`). Part of every key, so a format
/// change invalidates old entries instead of misreading them.
pub const STORE_FORMAT: u32 = 1;

/// One upstream artifact a node consumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyInput {
    /// Upstream node id.
    pub node: String,
    /// Content digest of its committed artifact (see `Manifest::digest`).
    pub digest: String,
}

/// Everything a node's result depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheKey {
    pub store_format: u32,
    /// Stage kind (registry name).
    pub kind: String,
    /// Stage implementation version (`StageKind::version`).
    pub kind_version: u32,
    /// Resolved params.
    pub params: Map<String, Value>,
    /// Upstream artifacts, in `needs` order.
    pub inputs: Vec<KeyInput>,
    /// Environment facts from `StageKind::key_facts` (source digests, device kind, ...).
    pub facts: BTreeMap<String, String>,
}

/// One field that differs between two keys.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl std::fmt::Display for FieldChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".to_string());
        write!(
            f,
            "{}: {} → {}",
            self.field,
            show(&self.old),
            show(&self.new)
        )
    }
}

impl CacheKey {
    /// The key: blake3 hex of the canonical JSON of this struct.
    pub fn digest(&self) -> String {
        let value = serde_json::to_value(self).expect("a CacheKey always serializes");
        blake3::hash(canonical_json(&value).as_bytes())
            .to_hex()
            .to_string()
    }

    /// The key flattened to named fields, for diffs: `kind`, `kind_version`, `store_format`,
    /// `params.<name>`, `input <node>` and `fact.<name>`.
    pub fn fields(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        out.insert("store_format".to_string(), self.store_format.to_string());
        out.insert("kind".to_string(), self.kind.clone());
        out.insert("kind_version".to_string(), self.kind_version.to_string());
        for (k, v) in &self.params {
            out.insert(format!("params.{k}"), canonical_json(v));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            let mut name = format!("input {}", input.node);
            if out.contains_key(&name) {
                name = format!("input {} #{i}", input.node);
            }
            out.insert(name, short(&input.digest).to_string());
        }
        for (k, v) in &self.facts {
            out.insert(format!("fact.{k}"), v.clone());
        }
        out
    }

    /// Fields that differ from `old`, most telling first: params, then inputs, then facts,
    /// then the kind / version / format.
    pub fn diff(&self, old: &CacheKey) -> Vec<FieldChange> {
        let (a, b) = (old.fields(), self.fields());
        let mut changes: Vec<FieldChange> = a
            .keys()
            .chain(b.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|f| a.get(*f) != b.get(*f))
            .map(|f| FieldChange {
                field: f.clone(),
                old: a.get(f).cloned(),
                new: b.get(f).cloned(),
            })
            .collect();
        changes.sort_by_key(|c| (field_rank(&c.field), c.field.clone()));
        changes
    }
}

fn field_rank(field: &str) -> u8 {
    if field.starts_with("params.") {
        0
    } else if field.starts_with("input ") {
        1
    } else if field.starts_with("fact.") {
        2
    } else {
        3
    }
}

/// The first 12 hex digits of a digest, for display.
pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// JSON with object keys sorted at every depth and no insignificant whitespace.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(params: Value) -> CacheKey {
        CacheKey {
            store_format: STORE_FORMAT,
            kind: "command".into(),
            kind_version: 1,
            params: params.as_object().unwrap().clone(),
            inputs: vec![KeyInput {
                node: "split".into(),
                digest: "abcdef0123456789".into(),
            }],
            facts: BTreeMap::from([("script".to_string(), "d1".to_string())]),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a = json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 3}], "c": "s"}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":"s","z":[1,{"x":3,"y":2}]},"b":1}"#
        );
    }

    #[test]
    fn key_ignores_param_order_but_not_values() {
        let k1 = key(json!({"lora_r": 4, "lr": 0.001}));
        let mut m = Map::new();
        m.insert("lr".into(), json!(0.001));
        m.insert("lora_r".into(), json!(4));
        let k2 = CacheKey {
            params: m,
            ..k1.clone()
        };
        assert_eq!(k1.digest(), k2.digest());
        assert_ne!(k1.digest(), key(json!({"lora_r": 8, "lr": 0.001})).digest());
        assert_eq!(k1.digest().len(), 64);
    }

    #[test]
    fn every_field_changes_the_key() {
        let base = key(json!({"a": 1}));
        let variants = [
            CacheKey {
                store_format: 2,
                ..base.clone()
            },
            CacheKey {
                kind: "other".into(),
                ..base.clone()
            },
            CacheKey {
                kind_version: 2,
                ..base.clone()
            },
            CacheKey {
                inputs: vec![],
                ..base.clone()
            },
            CacheKey {
                facts: BTreeMap::new(),
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.digest(), base.digest(), "{v:?}");
        }
    }

    #[test]
    fn diff_names_changed_fields_params_first() {
        let old = key(json!({"lora_r": 4, "keep": true}));
        let mut new = key(json!({"lora_r": 8, "keep": true, "extra": "x"}));
        new.inputs[0].digest = "fedcba9876543210".into();
        let changes: Vec<String> = new.diff(&old).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            changes,
            vec![
                "params.extra: (none) → \"x\"",
                "params.lora_r: 4 → 8",
                "input split: abcdef012345 → fedcba987654",
            ]
        );
        assert!(old.diff(&old).is_empty());
    }
}
