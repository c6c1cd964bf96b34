//! `t2s report RUN [--compare RUN2]`: render the comparison report of a tracked run from the
//! tracking DB and the run's artifacts into `experiments/<pipeline>/<run>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Map, Value};

use crate::cli::ReportArgs;
use crate::report::{self, NodeInfo, ReportData, RunInfo};
use crate::runs::Tracker;
use crate::stages::StageInput;

/// Kinds whose artifacts a report reads.
const REPORTED_KINDS: [&str; 3] = ["evaluate", "train", "eda"];

pub fn report(root: &Path, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let tracker = Tracker::open(root)?;
    let mut data = build(&tracker, &args.run)?;
    if let Some(other) = &args.compare {
        let other = build(&tracker, other)?;
        merge_compare(&mut data, other);
    }
    let dir = match &args.out {
        Some(d) => d.clone(),
        None => default_dir(root, &data.run),
    };
    report::write(&data, &dir)?;
    println!("{}", dir.join("report.html").display());
    Ok(ExitCode::SUCCESS)
}

/// `experiments/<pipeline>/<run>/`.
pub fn default_dir(root: &Path, run: &RunInfo) -> PathBuf {
    root.join("experiments")
        .join(&run.pipeline)
        .join(run.id.to_string())
}

/// Render the report of `run` into its default directory if the run has anything to report.
/// Returns the HTML path written.
pub fn publish(root: &Path, tracker: &Tracker, run: i64) -> anyhow::Result<Option<PathBuf>> {
    let data = build(tracker, &run.to_string())?;
    if data.variants.is_empty() && data.loss_curves.is_empty() {
        return Ok(None);
    }
    let dir = default_dir(root, &data.run);
    report::write(&data, &dir)?;
    Ok(Some(dir.join("report.html")))
}

/// Report data of one tracked run: artifacts of its evaluate/train/eda nodes, params of its
/// report node (title, notes), provenance from the DB.
pub fn build(tracker: &Tracker, which: &str) -> anyhow::Result<ReportData> {
    let run = tracker
        .run(which)
        .with_context(|| format!("run `{which}`"))?;
    let nodes = tracker.nodes(run.id)?;
    let params = tracker.params(run.id)?;
    let mut report_params = Map::new();
    for p in &params {
        let is_report = nodes.iter().any(|n| n.node == p.node && n.kind == "report");
        if is_report {
            report_params.insert(
                p.name.clone(),
                serde_json::from_str(&p.value).unwrap_or(Value::Null),
            );
        }
    }
    let mut inputs = Vec::new();
    for n in &nodes {
        if !REPORTED_KINDS.contains(&n.kind.as_str()) {
            continue;
        }
        let Some(dir) = n
            .artifact
            .as_ref()
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
        else {
            continue;
        };
        let matrix = crate::pipeline::parse_node_id(&n.node)
            .1
            .into_iter()
            .map(|(k, v)| {
                let v = serde_json::from_str(&v).unwrap_or(Value::String(v));
                (k, v)
            })
            .collect();
        inputs.push(StageInput {
            stage: n.stage.clone(),
            node: n.node.clone(),
            kind: n.kind.clone(),
            matrix,
            dir,
        });
    }
    let mut facts = BTreeMap::new();
    facts.insert(
        "pipeline file".to_string(),
        format!("{} (blake3 {})", run.file, short(&run.file_digest)),
    );
    if let Some(rev) = &run.git_rev {
        facts.insert("git revision".to_string(), rev.clone());
    }
    let info = RunInfo {
        id: run.id,
        pipeline: run.pipeline.clone(),
        started: run.started.clone(),
        ended: run.ended.clone(),
        status: run.status.to_string(),
        host: run.host.clone(),
        t2s_version: run.t2s_version.clone(),
        facts,
    };
    let mut data = crate::report::gather::build(&inputs, &report_params, info)?;
    for m in tracker.metrics(run.id, true)? {
        if m.name == "gen_tokens_per_s" || m.name.ends_with("/gen_tokens_per_s") {
            data.run
                .facts
                .insert(format!("{} {}", m.node, m.name), format!("{:.1}", m.value));
        }
    }
    data.nodes = nodes
        .iter()
        .map(|n| NodeInfo {
            id: n.node.clone(),
            kind: n.kind.clone(),
            status: n.status.to_string(),
            key: n.key.clone().unwrap_or_default(),
            duration_s: n.duration_s,
        })
        .collect();
    Ok(data)
}

/// Show a second run's variants beside this run's, suffixed with their run id.
fn merge_compare(data: &mut ReportData, other: ReportData) {
    let tag = format!(" (run {})", other.run.id);
    for mut v in other.variants {
        v.name.push_str(&tag);
        data.variants.push(v);
    }
    for mut c in other.loss_curves {
        c.name.push_str(&tag);
        data.loss_curves.push(c);
    }
    data.notes.push(format!(
        "Variants marked \"(run {})\" come from run {} of `{}` ({}), shown for comparison; paired tests are within each run only.",
        other.run.id, other.run.id, other.run.pipeline, other.run.started
    ));
    data.title = format!("{} vs run {}", data.title, other.run.id);
}

fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}
