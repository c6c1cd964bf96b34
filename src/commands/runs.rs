//! `t2s runs`: tracked runs, newest first.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::RunsArgs;
use crate::runs::{NodeStatus, RunStatus, Tracker};

pub fn runs(root: &Path, args: RunsArgs) -> anyhow::Result<ExitCode> {
    if !Tracker::path_for(root).exists() {
        println!("no runs yet in {}", root.display());
        return Ok(ExitCode::SUCCESS);
    }
    let tracker = Tracker::open(root)?;
    if args.json {
        let mut runs = Vec::new();
        for r in tracker.list_runs(args.limit)? {
            let nodes: serde_json::Map<String, serde_json::Value> = tracker
                .node_counts(r.id)?
                .into_iter()
                .map(|(s, n)| (shown_status(s, r.status).to_string(), n.into()))
                .collect();
            let mut run = serde_json::to_value(&r)?;
            run["nodes"] = nodes.into();
            runs.push(run);
        }
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec![
        "RUN".to_string(),
        "STATUS".into(),
        "PIPELINE".into(),
        "STARTED".into(),
        "NODES".into(),
    ]];
    for r in tracker.list_runs(args.limit)? {
        let counts = tracker.node_counts(r.id)?;
        let nodes = counts
            .iter()
            .map(|(s, n)| format!("{n} {}", shown_status(*s, r.status)))
            .collect::<Vec<_>>()
            .join(", ");
        rows.push(vec![
            r.id.to_string(),
            r.status.to_string(),
            r.pipeline,
            r.started,
            nodes,
        ]);
    }
    print!("{}", super::table(&rows));
    Ok(ExitCode::SUCCESS)
}

/// A node's status as readers should see it: nodes still `running` in a run whose process is
/// gone were cut off with it.
pub fn shown_status(node: NodeStatus, run: RunStatus) -> NodeStatus {
    if node == NodeStatus::Running && run == RunStatus::Interrupted {
        NodeStatus::Interrupted
    } else {
        node
    }
}
