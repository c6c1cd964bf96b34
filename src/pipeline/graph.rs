//! The stage graph (`needs` checks, cycles, a stable topological order) and the node graph
//! of a loaded pipeline.

use std::collections::{HashMap, HashSet};

use petgraph::algo::astar;
use petgraph::graph::{DiGraph, NodeIndex};

use super::diag::{suggest, Collector};
use super::raw::RawStage;
use super::Pipeline;

/// The stage graph after the checks: what expansion works from.
pub struct StageGraph {
    /// Stage indices in a topological order that keeps file order where the graph allows.
    pub order: Vec<usize>,
    /// Per stage, the indices of the stages it needs, in `needs` order. Broken edges
    /// (missing stages, self-needs, edges inside a cycle) are left out so the remaining checks
    /// can still run and report their own problems.
    pub needs: Vec<Vec<usize>>,
    /// Stages that lost an edge (or inherit from one that did): their matrix scope is unknown.
    pub uncertain: Vec<bool>,
}

/// Check every `needs` entry and order the stages.
pub fn stage_graph(stages: &[RawStage], diags: &mut Collector) -> StageGraph {
    let names: Vec<&str> = stages.iter().map(|s| s.name.v.as_str()).collect();
    let index = |n: &str| names.iter().position(|x| *x == n);
    let mut uncertain = vec![false; stages.len()];
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); stages.len()];
    for (si, s) in stages.iter().enumerate() {
        for (ni, need) in s.needs.iter().enumerate() {
            let path = format!("stages.{}.needs[{ni}]", s.name.v);
            match index(&need.v) {
                None => {
                    uncertain[si] = true;
                    let others: Vec<&str> =
                        names.iter().copied().filter(|n| *n != s.name.v).collect();
                    diags.add(
                        need.loc,
                        &path,
                        format!(
                            "stage `{}` needs `{}`, which is not a stage in this file",
                            s.name.v, need.v
                        ),
                        Some(suggest(&need.v, "stages", &others)),
                    );
                }
                Some(t) if t == si => {
                    uncertain[si] = true;
                    diags.add(
                        need.loc,
                        &path,
                        format!("stage `{}` needs itself", s.name.v),
                        Some("remove it from its own `needs`".into()),
                    );
                }
                Some(t) => edges[si].push(t),
            }
        }
    }
    for scc in report_cycles(stages, &edges, diags) {
        for &m in &scc {
            uncertain[m] = true;
            edges[m].retain(|t| !scc.contains(t));
        }
    }
    // Kahn's algorithm, always taking the earliest stage in the file that is ready.
    let mut done = vec![false; stages.len()];
    let mut order = Vec::with_capacity(stages.len());
    while let Some(next) =
        (0..stages.len()).find(|&i| !done[i] && edges[i].iter().all(|&t| done[t]))
    {
        done[next] = true;
        if !stages[next].gather && edges[next].iter().any(|&t| uncertain[t]) {
            uncertain[next] = true;
        }
        order.push(next);
    }
    StageGraph {
        order,
        needs: edges,
        uncertain,
    }
}

/// Report each knot of cycles once, at its first stage in the file: the shortest cycle through
/// that stage's first need in the knot, in `needs` direction. Returns the knots' members.
fn report_cycles(
    stages: &[RawStage],
    edges: &[Vec<usize>],
    diags: &mut Collector,
) -> Vec<Vec<usize>> {
    let mut g: DiGraph<usize, ()> = DiGraph::new();
    let ids: Vec<NodeIndex> = (0..stages.len()).map(|i| g.add_node(i)).collect();
    for (s, targets) in edges.iter().enumerate() {
        for &t in targets {
            g.add_edge(ids[s], ids[t], ());
        }
    }
    let mut cycles = Vec::new();
    let mut sccs = petgraph::algo::tarjan_scc(&g);
    sccs.iter_mut().for_each(|c| c.sort());
    sccs.sort();
    for scc in sccs.into_iter().filter(|c| c.len() > 1) {
        let members: Vec<usize> = scc.iter().map(|n| g[*n]).collect();
        let start = *members.iter().min().unwrap_or(&0);
        // start -> its first need in the cycle -> ... back to start, shortest.
        let next = edges[start].iter().find(|t| members.contains(t)).copied();
        let path: Vec<usize> = next
            .and_then(|n| astar(&g, ids[n], |x| x == ids[start], |_| 1, |_| 0))
            .map(|(_, p)| p[..p.len() - 1].iter().map(|x| g[*x]).collect())
            .unwrap_or_default();
        let path: Vec<usize> = std::iter::once(start).chain(path).collect();
        let mut text: Vec<&str> = path.iter().map(|&i| stages[i].name.v.as_str()).collect();
        text.push(&stages[start].name.v);
        let first = &stages[start];
        let second = path.get(1).copied().unwrap_or(start);
        let (ni, need) = first
            .needs
            .iter()
            .enumerate()
            .find(|(_, n)| n.v == stages[second].name.v)
            .map(|(i, n)| (i, n.loc))
            .unwrap_or((0, first.name.loc));
        diags.add(
            need,
            &format!("stages.{}.needs[{ni}]", first.name.v),
            format!("stages form a cycle: {}", text.join(" -> ")),
            Some("`a -> b` means `a` needs `b`; remove one of these needs".into()),
        );
        cycles.push(members);
    }
    cycles
}

impl Pipeline {
    /// The node graph: one graph node per pipeline node (weight = index into `nodes`, and the
    /// graph index equals that index), edges from each need to the node that needs it.
    pub fn graph(&self) -> DiGraph<usize, ()> {
        let mut g = DiGraph::with_capacity(self.nodes.len(), self.nodes.len());
        for i in 0..self.nodes.len() {
            g.add_node(i);
        }
        let index: HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        for (i, n) in self.nodes.iter().enumerate() {
            for need in &n.needs {
                if let Some(&j) = index.get(need.as_str()) {
                    g.add_edge(NodeIndex::new(j), NodeIndex::new(i), ());
                }
            }
        }
        g
    }

    /// Index of a node by id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// A node by id.
    pub fn node(&self, id: &str) -> Option<&super::Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The nodes that (transitively) need `id`, in topological order, `id` excluded.
    pub fn dependents(&self, id: &str) -> Vec<&super::Node> {
        let mut marked: HashSet<&str> = HashSet::from([id]);
        let mut out = Vec::new();
        for n in &self.nodes {
            if n.needs.iter().any(|x| marked.contains(x.as_str())) {
                marked.insert(&n.id);
                out.push(n);
            }
        }
        out
    }

    /// `id` and everything it (transitively) needs, in topological order.
    pub fn ancestors_and_self(&self, id: &str) -> Vec<&super::Node> {
        let mut wanted: HashSet<&str> = HashSet::from([id]);
        for n in self.nodes.iter().rev() {
            if wanted.contains(n.id.as_str()) {
                wanted.extend(n.needs.iter().map(String::as_str));
            }
        }
        self.nodes
            .iter()
            .filter(|n| wanted.contains(n.id.as_str()))
            .collect()
    }
}
