//! What differs between two tracked runs: the params of their nodes, the nodes' cache keys
//! (a different key means the node's inputs or code changed, so its artifact differs) and the
//! final metrics. Pure: built from the rows `query` reads, printed by `t2s diff`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::query::{MetricRow, NodeRow, ParamRow};

/// One side of a comparison: what a run recorded.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    pub nodes: Vec<NodeRow>,
    pub params: Vec<ParamRow>,
    /// Final values only (step NULL).
    pub metrics: Vec<MetricRow>,
}

/// A param of one node in the two runs (`None`: the run has no such node or param).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamChange {
    pub node: String,
    pub name: String,
    pub a: Option<serde_json::Value>,
    pub b: Option<serde_json::Value>,
}

/// A node's cache key and status in the two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeChange {
    pub node: String,
    pub a: Option<NodeSide>,
    pub b: Option<NodeSide>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSide {
    pub key: Option<String>,
    pub status: super::NodeStatus,
}

/// A final metric of one node in the two runs; `change` is `b - a` where both have it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricChange {
    pub node: String,
    pub name: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    pub change: Option<f64>,
}

/// The comparison of run `a` with run `b`, in node order (as `a` recorded its nodes, then the
/// nodes only `b` has).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunDiff {
    pub params: Vec<ParamChange>,
    pub nodes: Vec<NodeChange>,
    pub metrics: Vec<MetricChange>,
}

impl RunDiff {
    /// Compare `a` with `b`; with `all`, entries that are the same are kept too.
    pub fn between(a: &RunFacts, b: &RunFacts, all: bool) -> RunDiff {
        let order = node_order(a, b);
        let rank = |node: &str| order.get(node).copied().unwrap_or(usize::MAX);

        let params = pair_up(
            a.params
                .iter()
                .map(|p| ((p.node.clone(), p.name.clone()), json(&p.value))),
            b.params
                .iter()
                .map(|p| ((p.node.clone(), p.name.clone()), json(&p.value))),
        );
        let nodes = pair_up(
            a.nodes.iter().map(|n| (n.node.clone(), side(n))),
            b.nodes.iter().map(|n| (n.node.clone(), side(n))),
        );
        let metrics = pair_up(
            a.metrics
                .iter()
                .map(|m| ((m.node.clone(), m.name.clone()), m.value)),
            b.metrics
                .iter()
                .map(|m| ((m.node.clone(), m.name.clone()), m.value)),
        );

        let mut diff = RunDiff {
            params: params
                .into_iter()
                .filter(|(_, (x, y))| all || x != y)
                .map(|((node, name), (a, b))| ParamChange { node, name, a, b })
                .collect(),
            nodes: nodes
                .into_iter()
                .filter(|(_, (x, y))| all || key_of(x) != key_of(y) || x.is_none() || y.is_none())
                .map(|(node, (a, b))| NodeChange { node, a, b })
                .collect(),
            metrics: metrics
                .into_iter()
                // Bitwise: a metric that moved in the last digit moved.
                .filter(|(_, (x, y))| all || x.map(f64::to_bits) != y.map(f64::to_bits))
                .map(|((node, name), (a, b))| MetricChange {
                    node,
                    name,
                    a,
                    b,
                    change: a.zip(b).map(|(a, b)| b - a),
                })
                .collect(),
        };
        diff.params.sort_by_key(|p| rank(&p.node));
        diff.nodes.sort_by_key(|n| rank(&n.node));
        diff.metrics.sort_by_key(|m| rank(&m.node));
        diff
    }

    /// Whether nothing differs (with `all`, every entry is the same on both sides).
    pub fn is_same(&self) -> bool {
        self.params.iter().all(|p| p.a == p.b)
            && self
                .nodes
                .iter()
                .all(|n| n.a.is_some() && n.b.is_some() && key_of(&n.a) == key_of(&n.b))
            && self
                .metrics
                .iter()
                .all(|m| m.a.map(f64::to_bits) == m.b.map(f64::to_bits))
    }
}

/// Node name → position: `a`'s recorded order, then `b`'s nodes that `a` lacks.
fn node_order(a: &RunFacts, b: &RunFacts) -> BTreeMap<String, usize> {
    let mut order = BTreeMap::new();
    for n in a.nodes.iter().chain(&b.nodes) {
        let next = order.len();
        order.entry(n.node.clone()).or_insert(next);
    }
    order
}

/// Entries of both sides by key (the later of a repeated key wins, as in the DB's latest row).
fn pair_up<K: Ord, V>(
    a: impl Iterator<Item = (K, V)>,
    b: impl Iterator<Item = (K, V)>,
) -> BTreeMap<K, (Option<V>, Option<V>)> {
    let mut pairs: BTreeMap<K, (Option<V>, Option<V>)> = BTreeMap::new();
    for (k, v) in a {
        pairs.entry(k).or_insert((None, None)).0 = Some(v);
    }
    for (k, v) in b {
        pairs.entry(k).or_insert((None, None)).1 = Some(v);
    }
    pairs
}

fn side(n: &NodeRow) -> NodeSide {
    NodeSide {
        key: n.key.clone(),
        status: n.status,
    }
}

fn key_of(side: &Option<NodeSide>) -> Option<&str> {
    side.as_ref().and_then(|s| s.key.as_deref())
}

/// A param's stored JSON text as a value (text that is not JSON stays a string).
fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

/// The param changes of the runs in the tests below (the rank-8 trainer's lr moved, a rank-32
/// variant added), shared with the printing tests of `t2s diff`.
#[cfg(test)]
pub(crate) fn sample_param_changes() -> Vec<ParamChange> {
    use serde_json::json;
    vec![
        ParamChange {
            node: "train[lora_r=8]".into(),
            name: "lr".into(),
            a: Some(json!(0.0002)),
            b: Some(json!(0.0003)),
        },
        ParamChange {
            node: "train[lora_r=32]".into(),
            name: "lora_r".into(),
            a: None,
            b: Some(json!(32)),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, key: &str, status: &str) -> NodeRow {
        NodeRow {
            node: name.into(),
            stage: name.into(),
            kind: "train".into(),
            key: Some(key.into()),
            status: crate::runs::NodeStatus::parse(status).unwrap(),
            started: None,
            duration_s: None,
            artifact: None,
            error: None,
        }
    }

    fn param(node: &str, name: &str, value: &str) -> ParamRow {
        ParamRow {
            node: node.into(),
            name: name.into(),
            value: value.into(),
        }
    }

    fn metric(node: &str, name: &str, value: f64) -> MetricRow {
        MetricRow {
            node: node.into(),
            name: name.into(),
            step: None,
            value,
        }
    }

    /// A sweep where run b changed the rank-8 trainer's lr and added a rank-32 variant.
    fn runs() -> (RunFacts, RunFacts) {
        let a = RunFacts {
            nodes: vec![
                node("split", "k-split", "ran"),
                node("train[lora_r=8]", "k-t8", "ran"),
                node("evaluate[lora_r=8]", "k-e8", "ran"),
            ],
            params: vec![
                param("split", "seed", "0"),
                param("train[lora_r=8]", "lr", "0.0002"),
                param("train[lora_r=8]", "lora_r", "8"),
            ],
            metrics: vec![
                metric("train[lora_r=8]", "final_loss", 0.5),
                metric("evaluate[lora_r=8]", "execution_accuracy", 0.25),
                metric("evaluate[lora_r=8]", "rows", 400.0),
            ],
        };
        let b = RunFacts {
            nodes: vec![
                node("split", "k-split", "cached"),
                node("train[lora_r=8]", "k-t8b", "ran"),
                node("evaluate[lora_r=8]", "k-e8b", "ran"),
                node("train[lora_r=32]", "k-t32", "ran"),
            ],
            params: vec![
                param("split", "seed", "0"),
                param("train[lora_r=8]", "lr", "0.0003"),
                param("train[lora_r=8]", "lora_r", "8"),
                param("train[lora_r=32]", "lora_r", "32"),
            ],
            metrics: vec![
                metric("train[lora_r=8]", "final_loss", 0.375),
                metric("evaluate[lora_r=8]", "execution_accuracy", 0.3125),
                metric("evaluate[lora_r=8]", "rows", 400.0),
            ],
        };
        (a, b)
    }

    #[test]
    fn only_what_differs_is_listed_in_node_order() {
        let (a, b) = runs();
        let d = RunDiff::between(&a, &b, false);
        assert_eq!(d.params, sample_param_changes());
        // The split kept its key (cached in b): not listed; the rest changed or are new.
        let nodes: Vec<&str> = d.nodes.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(
            nodes,
            ["train[lora_r=8]", "evaluate[lora_r=8]", "train[lora_r=32]"]
        );
        assert_eq!(d.nodes[2].a, None);
        assert_eq!(
            d.metrics
                .iter()
                .map(|m| (m.node.as_str(), m.name.as_str(), m.change))
                .collect::<Vec<_>>(),
            vec![
                ("train[lora_r=8]", "final_loss", Some(-0.125)),
                ("evaluate[lora_r=8]", "execution_accuracy", Some(0.0625)),
            ]
        );
        assert!(!d.is_same());
    }

    #[test]
    fn all_keeps_what_is_the_same() {
        let (a, b) = runs();
        let d = RunDiff::between(&a, &b, true);
        assert_eq!(d.params.len(), 4);
        assert_eq!(d.nodes.len(), 4);
        assert_eq!(d.metrics.len(), 3);
        let rows = d.metrics.iter().find(|m| m.name == "rows").unwrap();
        assert_eq!(rows.change, Some(0.0));
    }

    #[test]
    fn a_run_against_itself_is_the_same() {
        let (a, _) = runs();
        for all in [false, true] {
            let d = RunDiff::between(&a, &a, all);
            assert!(d.is_same(), "{d:?}");
            assert_eq!(d.params.is_empty(), !all);
        }
        // A node that ran again with the same key (a forced rerun) is still the same node.
        let mut rerun = a.clone();
        rerun.nodes[0].status = crate::runs::NodeStatus::Ran;
        assert!(RunDiff::between(&a, &rerun, false).is_same());
    }

    #[test]
    fn a_node_only_one_run_has_is_listed() {
        let (a, _) = runs();
        let mut b = a.clone();
        b.nodes.pop();
        let d = RunDiff::between(&a, &b, false);
        assert_eq!(d.nodes.len(), 1);
        assert_eq!(d.nodes[0].node, "evaluate[lora_r=8]");
        assert!(d.nodes[0].b.is_none());
        assert!(!d.is_same());
    }
}
