//! Matrix fan-out: `${matrix.KEY}` references, the keys in scope of each stage, expansion of
//! stages into node instances, and substitution of matrix values into params.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::diag::Collector;
use super::graph::StageGraph;
use super::raw::RawStage;
use super::yaml::plain;
use crate::search::RUNG_KEY;

/// Every `${matrix.KEY}` key referenced in a value's strings.
pub fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${matrix.") {
                let after = &rest[start + 9..];
                match after.find('}') {
                    Some(end) => {
                        out.insert(after[..end].to_string());
                        rest = &after[end + 1..];
                    }
                    None => break,
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| refs(x, out)),
        Value::Object(m) => m.values().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// Substitute matrix values. A string that is exactly one reference takes the value with its
/// type; references inside longer strings are replaced by the value's plain text.
pub fn substitute(v: &Value, matrix: &BTreeMap<String, Value>) -> Value {
    match v {
        Value::String(s) => {
            if let Some(key) = s
                .strip_prefix("${matrix.")
                .and_then(|r| r.strip_suffix('}'))
            {
                if let Some(val) = matrix.get(key) {
                    return val.clone();
                }
            }
            let mut out = s.clone();
            for (k, val) in matrix {
                out = out.replace(&format!("${{matrix.{k}}}"), &plain(val));
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|x| substitute(x, matrix)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), substitute(x, matrix)))
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

/// The matrix keys each stage can use: its own plus, unless it gathers, those of its needs.
/// Also checks own keys for conflicts, unused keys and references to keys not in scope.
/// Returns, per stage, the params that hold an unresolvable reference (skip type checks there).
pub fn check_scope(
    stages: &[RawStage],
    g: &StageGraph,
    diags: &mut Collector,
) -> Vec<BTreeSet<String>> {
    let mut scope: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(); stages.len()]; // key -> stage that set it
    let mut broken: Vec<BTreeSet<String>> = vec![BTreeSet::new(); stages.len()];
    for &si in &g.order {
        let s = &stages[si];
        let mut keys: BTreeMap<String, String> = BTreeMap::new();
        if !s.gather {
            for &ti in &g.needs[si] {
                for (k, from) in &scope[ti] {
                    keys.entry(k.clone()).or_insert_with(|| from.clone());
                }
            }
        }
        for (key, _) in &s.matrix {
            if let Some(from) = keys.get(&key.v) {
                diags.add(
                    key.loc,
                    &format!("stages.{}.matrix.{}", s.name.v, key.v),
                    format!("matrix key `{}` is already set by stage `{from}`, which this stage needs", key.v),
                    Some("use another key name, or set `gather: true` to receive all instances instead".into()),
                );
            } else {
                keys.insert(key.v.clone(), s.name.v.clone());
            }
        }
        for (dim, loc) in s.search_dims() {
            let path = format!("stages.{}.search.space.{dim}", s.name.v);
            if dim == RUNG_KEY {
                diags.add(
                    loc,
                    &path,
                    format!("`{RUNG_KEY}` is the key t2s marks halving rungs with"),
                    Some("name the dimension after the param it sets".into()),
                );
            } else if let Some(from) = keys.get(&dim) {
                diags.add(
                    loc,
                    &path,
                    format!("search dimension `{dim}` is already a matrix key of stage `{from}`, which this stage needs"),
                    Some("use another name".into()),
                );
            } else {
                keys.insert(dim, s.name.v.clone());
            }
        }
        let mut used = BTreeSet::new();
        for (pk, pv) in &s.params {
            let mut r = BTreeSet::new();
            refs(pv, &mut r);
            for key in &r {
                if !keys.contains_key(key) {
                    broken[si].insert(pk.v.clone());
                    if g.uncertain[si] {
                        continue; // the key may come from the broken need: already reported
                    }
                    let path = format!("stages.{}.params.{}", s.name.v, pk.v);
                    let hint = if keys.is_empty() {
                        "declare `matrix: {KEY: [..]}` on this stage or on a stage it needs"
                            .replace("KEY", key)
                    } else {
                        format!(
                            "matrix keys here: {}",
                            keys.keys()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    let loc = find_ref_loc(s, &path, pv, key).unwrap_or(pk.loc);
                    diags.add(
                        loc,
                        &path,
                        format!("`${{matrix.{key}}}` names no matrix key of this stage"),
                        Some(hint),
                    );
                }
            }
            used.extend(r);
        }
        for (key, values) in &s.matrix {
            if !values.is_empty() && !used.contains(&key.v) {
                diags.add(
                    key.loc,
                    &format!("stages.{}.matrix.{}", s.name.v, key.v),
                    format!("unused matrix key `{}`: no param uses `${{matrix.{}}}`", key.v, key.v),
                    Some(format!(
                        "use `${{matrix.{}}}` in a param of `{}`, or remove the key (each instance would do the same work)",
                        key.v, s.name.v
                    )),
                );
            }
        }
        for (dim, loc) in s.search_dims() {
            if !used.contains(&dim) {
                diags.add(
                    loc,
                    &format!("stages.{}.search.space.{dim}", s.name.v),
                    format!("unused search dimension `{dim}`: no param uses `${{matrix.{dim}}}`"),
                    Some(format!(
                        "set a param of `{}` to `${{matrix.{dim}}}`, or remove the dimension",
                        s.name.v
                    )),
                );
            }
        }
        scope[si] = keys;
    }
    broken
}

impl RawStage {
    /// The names of the `search.space` dimensions, with their positions.
    pub fn search_dims(&self) -> Vec<(String, super::yaml::Loc)> {
        let Some(search) = &self.search else {
            return Vec::new();
        };
        let Some(Value::Object(space)) = search.v.get("space") else {
            return Vec::new();
        };
        space
            .keys()
            .map(|k| {
                let path = format!("stages.{}.search.space.{k}", self.name.v);
                (
                    k.clone(),
                    self.locs.get(&path).copied().unwrap_or(search.loc),
                )
            })
            .collect()
    }
}

/// An instance that is a halving rung of a trial: trained part way, never fanned out.
fn stopped(inst: &Instance) -> bool {
    inst.matrix.contains_key(RUNG_KEY)
}

/// The position of the innermost string holding `${matrix.key}` inside a param.
fn find_ref_loc(s: &RawStage, path: &str, v: &Value, key: &str) -> Option<super::yaml::Loc> {
    let needle = format!("${{matrix.{key}}}");
    match v {
        Value::String(t) if t.contains(&needle) => s.locs.get(path).copied(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| find_ref_loc(s, &format!("{path}[{i}]"), x, key)),
        Value::Object(m) => m
            .iter()
            .find_map(|(k, x)| find_ref_loc(s, &format!("{path}.{k}"), x, key)),
        _ => None,
    }
}

/// One instance of a stage.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub matrix: BTreeMap<String, Value>,
    pub needs: Vec<String>,
}

fn agree(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> bool {
    a.iter().all(|(k, v)| b.get(k).is_none_or(|w| w == v))
}

/// The node id of a stage instance: `stage[k=v,...]`, keys sorted.
pub fn node_id(stage: &str, matrix: &BTreeMap<String, Value>) -> String {
    if matrix.is_empty() {
        return stage.to_string();
    }
    let parts: Vec<String> = matrix
        .iter()
        .map(|(k, v)| format!("{k}={}", plain(v)))
        .collect();
    format!("{stage}[{}]", parts.join(","))
}

/// More instances than this for one stage is surely a mistake (and would exhaust memory).
const MAX_INSTANCES: usize = 10_000;

/// Expand every stage (in `order`) into its instances.
pub fn expand(stages: &[RawStage], g: &StageGraph, diags: &mut Collector) -> Vec<Vec<Instance>> {
    let mut out: Vec<Vec<Instance>> = vec![Vec::new(); stages.len()];
    // Per stage: it is searched, or comes after a searched stage.
    let mut searching = vec![false; stages.len()];
    for &si in &g.order {
        let s = &stages[si];
        let mut combos: Vec<BTreeMap<String, Value>> = vec![BTreeMap::new()];
        if !s.gather {
            for &ti in &g.needs[si] {
                if out[ti].iter().all(|i| i.matrix.is_empty()) {
                    continue;
                }
                let mut next = Vec::new();
                'fill: for c in &combos {
                    for inst in out[ti].iter().filter(|i| !stopped(i)) {
                        if agree(c, &inst.matrix) {
                            if next.len() == MAX_INSTANCES {
                                diags.add(
                                    s.name.loc,
                                    &format!("stages.{}", s.name.v),
                                    format!(
                                        "combining its needs gives stage `{}` more than {MAX_INSTANCES} instances",
                                        s.name.v
                                    ),
                                    Some("use fewer matrix values, or set `gather: true`".into()),
                                );
                                break 'fill;
                            }
                            let mut m = c.clone();
                            m.extend(inst.matrix.iter().map(|(k, v)| (k.clone(), v.clone())));
                            next.push(m);
                        }
                    }
                }
                combos = next;
            }
        }
        for (key, values) in &s.matrix {
            if values.is_empty() {
                continue; // reported already
            }
            if combos.len() * values.len() > MAX_INSTANCES {
                diags.add(
                    key.loc,
                    &format!("stages.{}.matrix.{}", s.name.v, key.v),
                    format!(
                        "the matrix gives stage `{}` more than {MAX_INSTANCES} instances",
                        s.name.v
                    ),
                    Some("use fewer matrix values".into()),
                );
                combos.truncate(MAX_INSTANCES / values.len());
            }
            let mut next = Vec::with_capacity(combos.len() * values.len());
            for c in &combos {
                for v in values {
                    let mut m = c.clone();
                    m.entry(key.v.clone()).or_insert_with(|| v.v.clone());
                    next.push(m);
                }
            }
            combos = next;
        }
        if s.search.is_some() {
            combos = combos
                .iter()
                .flat_map(|c| {
                    s.trials.iter().map(move |t| {
                        let mut m = c.clone();
                        m.extend(t.iter().map(|(k, v)| (k.clone(), v.clone())));
                        m
                    })
                })
                .collect();
        }
        // (A need without instances has its own problem reported already; a search has no
        // fully trained trial before its first bracket ends, nor have the stages after it.)
        searching[si] = s.search.is_some() || g.needs[si].iter().any(|&t| searching[t]);
        if combos.is_empty() && !searching[si] && g.needs[si].iter().all(|&t| !out[t].is_empty()) {
            diags.add(
                s.name.loc,
                &format!("stages.{}", s.name.v),
                format!("stage `{}` has no instance: its needs share matrix keys but no values", s.name.v),
                Some("give the needed stages common values for their shared keys, or set `gather: true`".into()),
            );
        }
        let mut insts = Vec::with_capacity(combos.len());
        for m in combos {
            let mut needs = Vec::new();
            for &ti in &g.needs[si] {
                for up in out[ti].iter().filter(|i| !stopped(i)) {
                    if s.gather || agree(&m, &up.matrix) {
                        needs.push(up.id.clone());
                    }
                }
            }
            insts.push(Instance {
                id: node_id(&s.name.v, &m),
                matrix: m,
                needs,
            });
        }
        out[si] = insts;
    }
    out
}

/// Split a node id back into its stage name and matrix values (as written in the id).
pub fn parse_node_id(id: &str) -> (String, Vec<(String, String)>) {
    match id.split_once('[') {
        Some((stage, rest)) => {
            let inner = rest.strip_suffix(']').unwrap_or(rest);
            let pairs = inner
                .split(',')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (stage.to_string(), pairs)
        }
        None => (id.to_string(), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exact_reference_keeps_the_type_embedded_one_becomes_text() {
        let m = BTreeMap::from([("r".to_string(), json!(8)), ("t".to_string(), json!(0.5))]);
        let v = json!({"rank": "${matrix.r}", "cmd": "fit -r ${matrix.r} -t ${matrix.t}", "xs": ["${matrix.t}", "${matrix.zz}"]});
        assert_eq!(
            substitute(&v, &m),
            json!({"rank": 8, "cmd": "fit -r 8 -t 0.5", "xs": [0.5, "${matrix.zz}"]})
        );
    }

    #[test]
    fn refs_finds_every_key() {
        let mut out = BTreeSet::new();
        refs(
            &json!(["${matrix.a}-${matrix.b}", {"k": "${matrix.c}"}, "${matrix.unclosed"]),
            &mut out,
        );
        assert_eq!(out.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn node_ids_round_trip() {
        let m = BTreeMap::from([("b".to_string(), json!("x")), ("a".to_string(), json!(1))]);
        let id = node_id("train", &m);
        assert_eq!(id, "train[a=1,b=x]");
        assert_eq!(
            parse_node_id(&id),
            (
                "train".to_string(),
                vec![("a".into(), "1".into()), ("b".into(), "x".into())]
            )
        );
        assert_eq!(parse_node_id("load"), ("load".to_string(), vec![]));
    }
}
