//! What a run would do, without doing it: node selection, cache keys, and for every node the
//! decision (hit / fetch / run / resume) with its reason. Used by `run --dry-run` and `status`; the
//! scheduler uses the same key and reason functions at run time.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use crate::cache::{key::short, CacheKey, KeyInput, Lookup, Remote, Store, STORE_FORMAT};
use crate::pipeline::{Node, Pipeline};
use crate::stages::{registry, StageKind};

/// How a node takes part in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Run it if it is not cached.
    Run,
    /// Left out by `--only`/`--until` but needed by a selected node: use it if cached, else fail.
    CacheOnly,
    /// Not part of this run at all.
    Excluded,
}

/// Options shared by planning and running.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Node ids or stage names to recompute even when cached.
    pub force: Vec<String>,
    /// Run only these nodes (their inputs must be cached).
    pub only: Vec<String>,
    /// Run these nodes and what they need, nothing downstream.
    pub until: Vec<String>,
    /// Full blake3 check of every cached artifact used.
    pub verify: bool,
    /// A remote cache that objects missing here are fetched from.
    pub remote: Option<Remote>,
}

/// A pattern given to `--force`/`--only`/`--until` that matches no node.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {pattern}: no node or stage has that name; nodes are: {known}")]
pub struct UnknownNode {
    pub flag: &'static str,
    pub pattern: String,
    pub known: String,
}

/// Indices of nodes matching any pattern (exact node id, or stage name for all its instances).
pub fn matching(
    pipeline: &Pipeline,
    patterns: &[String],
    flag: &'static str,
) -> Result<BTreeSet<usize>, UnknownNode> {
    let mut out = BTreeSet::new();
    for p in patterns {
        let hits: Vec<usize> = (0..pipeline.nodes.len())
            .filter(|&i| &pipeline.nodes[i].id == p || &pipeline.nodes[i].stage == p)
            .collect();
        if hits.is_empty() {
            return Err(UnknownNode {
                flag,
                pattern: p.clone(),
                known: pipeline
                    .nodes
                    .iter()
                    .map(|n| n.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        out.extend(hits);
    }
    Ok(out)
}

/// Which nodes take part, from `--only` / `--until` (all of them when neither is given).
pub fn select(pipeline: &Pipeline, opts: &PlanOptions) -> Result<Vec<Selection>, UnknownNode> {
    let n = pipeline.nodes.len();
    if opts.only.is_empty() && opts.until.is_empty() {
        return Ok(vec![Selection::Run; n]);
    }
    let index = index_of(pipeline);
    let mut chosen = matching(pipeline, &opts.only, "--only")?;
    let until = matching(pipeline, &opts.until, "--until")?;
    // --until: the targets and everything upstream of them. Nodes are in topological order,
    // so one backwards pass collects all ancestors.
    let mut wanted = vec![false; n];
    for &i in &until {
        wanted[i] = true;
    }
    for i in (0..n).rev() {
        if wanted[i] {
            for need in &pipeline.nodes[i].needs {
                if let Some(&j) = index.get(need.as_str()) {
                    wanted[j] = true;
                }
            }
        }
    }
    chosen.extend((0..n).filter(|&i| wanted[i]));
    let mut sel = vec![Selection::Excluded; n];
    for &i in &chosen {
        sel[i] = Selection::Run;
    }
    // Inputs of selected nodes that are not selected themselves must come from the cache.
    for i in (0..n).rev() {
        if sel[i] != Selection::Excluded {
            for need in &pipeline.nodes[i].needs {
                if let Some(&j) = index.get(need.as_str()) {
                    if sel[j] == Selection::Excluded {
                        sel[j] = Selection::CacheOnly;
                    }
                }
            }
        }
    }
    Ok(sel)
}

pub(crate) fn index_of(pipeline: &Pipeline) -> HashMap<&str, usize> {
    pipeline
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect()
}

/// The registered stage kind of a node.
pub fn kind_of(node: &Node) -> anyhow::Result<&'static dyn StageKind> {
    registry::lookup(&node.kind).ok_or_else(|| {
        anyhow::anyhow!(
            "node `{}`: unknown stage kind `{}` (known: {})",
            node.id,
            node.kind,
            registry::kind_names().join(", ")
        )
    })
}

/// The cache key of a node given its upstream artifact digests (in `needs` order).
pub fn cache_key(
    node: &Node,
    kind: &dyn StageKind,
    inputs: Vec<KeyInput>,
    pipeline_dir: &Path,
) -> anyhow::Result<CacheKey> {
    let facts = kind
        .key_facts(&node.params, pipeline_dir)
        .map_err(|e| anyhow::anyhow!("node `{}`: cannot compute its cache key: {e:#}", node.id))?;
    Ok(CacheKey {
        store_format: STORE_FORMAT,
        kind: node.kind.clone(),
        kind_version: kind.version(),
        params: kind.key_params(&node.params),
        inputs,
        facts,
    })
}

/// Why a node with `key` has no usable cached artifact, compared with the last committed key
/// of the same node id. A node id never committed before (e.g. a matrix value changed) is
/// compared with the closest former instance of the same stage that is no longer in the
/// pipeline, so `status` can still name the changed field.
pub fn miss_reason(
    store: &Store,
    pipeline: &Pipeline,
    node: &Node,
    key: &CacheKey,
    digest: &str,
) -> String {
    let join = |changes: Vec<crate::cache::FieldChange>| {
        changes
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    };
    match store.read_ref(&pipeline.name, &node.id) {
        None => {
            let current: BTreeSet<&str> = pipeline.nodes.iter().map(|n| n.id.as_str()).collect();
            let closest = store
                .refs_of(&pipeline.name)
                .into_iter()
                .filter(|r| stage_of(&r.node) == node.stage && !current.contains(r.node.as_str()))
                .map(|r| (key.diff(&r.cache_key), r.node))
                .min_by(|a, b| (a.0.len(), &a.1).cmp(&(b.0.len(), &b.1)));
            match closest {
                Some((changes, former)) if !changes.is_empty() => {
                    format!("new node; vs {former}: {}", join(changes))
                }
                _ => "never computed".to_string(),
            }
        }
        Some(r) if r.key == digest => {
            "its artifact is gone (removed by gc or moved aside)".to_string()
        }
        Some(r) => {
            let changes = key.diff(&r.cache_key);
            if changes.is_empty() {
                format!("key changed ({} → {})", short(&r.key), short(digest))
            } else {
                join(changes)
            }
        }
    }
}

/// The stage name of a node id (`train[lora_r=4]` → `train`).
fn stage_of(id: &str) -> &str {
    id.split('[').next().unwrap_or(id)
}

/// The decision for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Cached: the committed artifact will be reused.
    Hit,
    /// Will run from scratch.
    Run,
    /// Will run, continuing from checkpoints in the partial area.
    Resume,
    /// Not cached here but on the remote: will be fetched, not computed.
    Fetch,
    /// Cannot run: left out by `--only`/`--until` and not cached.
    Missing,
    /// Not part of this run.
    Excluded,
}

/// One node of a plan.
#[derive(Debug, Clone)]
pub struct Planned {
    pub node: String,
    /// The key, when all inputs are known (upstream cached).
    pub key: Option<String>,
    pub decision: Decision,
    /// Why (empty for hits).
    pub reason: String,
}

/// Plan a run without running anything. A node whose upstream will run has no key yet.
pub fn plan(
    pipeline: &Pipeline,
    store: &Store,
    opts: &PlanOptions,
) -> anyhow::Result<Vec<Planned>> {
    let sel = select(pipeline, opts)?;
    let forced = matching(pipeline, &opts.force, "--force")?;
    let index = index_of(pipeline);
    let pipeline_dir = pipeline_dir(pipeline);
    let mut digests: Vec<Option<String>> = vec![None; pipeline.nodes.len()];
    let mut out = Vec::with_capacity(pipeline.nodes.len());
    for (i, node) in pipeline.nodes.iter().enumerate() {
        if sel[i] == Selection::Excluded {
            out.push(Planned {
                node: node.id.clone(),
                key: None,
                decision: Decision::Excluded,
                reason: "not selected".into(),
            });
            continue;
        }
        let mut inputs = Vec::new();
        let mut pending = Vec::new();
        for need in &node.needs {
            match index.get(need.as_str()).and_then(|&j| digests[j].clone()) {
                Some(digest) => inputs.push(KeyInput {
                    node: need.clone(),
                    digest,
                }),
                None => pending.push(need.clone()),
            }
        }
        let (decision, key, reason) = if !pending.is_empty() {
            let d = if sel[i] == Selection::CacheOnly {
                Decision::Missing
            } else {
                Decision::Run
            };
            (d, None, format!("upstream {} will run", pending.join(", ")))
        } else {
            let kind = kind_of(node)?;
            let ck = cache_key(node, kind, inputs, &pipeline_dir)?;
            let key = ck.digest();
            let looked = store.lookup(&key, opts.verify)?;
            let mut reason = match &looked {
                Lookup::Hit(m) => {
                    digests[i] = Some(m.digest());
                    String::new()
                }
                Lookup::Corrupt { problems, .. } => {
                    format!("cached artifact failed its check: {}", problems.join("; "))
                }
                Lookup::Missing => miss_reason(store, pipeline, node, &ck, &key),
            };
            let hit = matches!(looked, Lookup::Hit(_));
            let on_remote = match (&opts.remote, hit || forced.contains(&i)) {
                (Some(remote), false) => match remote.manifest(&key) {
                    Ok(found) => found,
                    Err(e) => {
                        reason = format!("{reason}; {e}");
                        None
                    }
                },
                _ => None,
            };
            if let Some(m) = on_remote {
                digests[i] = Some(m.digest());
                (
                    Decision::Fetch,
                    Some(key),
                    format!("{reason}; on the remote"),
                )
            } else if hit && forced.contains(&i) {
                // A forced node's output is usually identical, but that is only known after it
                // ran; downstream keys are known once it has.
                digests[i] = None;
                (Decision::Run, Some(key), "forced".to_string())
            } else if hit {
                (Decision::Hit, Some(key), reason)
            } else if sel[i] == Selection::CacheOnly {
                (
                    Decision::Missing,
                    Some(key),
                    format!("{reason}; left out by --only/--until"),
                )
            } else if store.has_partial(&key) {
                (Decision::Resume, Some(key), reason)
            } else {
                (Decision::Run, Some(key), reason)
            }
        };
        out.push(Planned {
            node: node.id.clone(),
            key,
            decision,
            reason,
        });
    }
    Ok(out)
}

/// The directory relative paths in params resolve against.
pub fn pipeline_dir(pipeline: &Pipeline) -> std::path::PathBuf {
    pipeline.dir().to_path_buf()
}
