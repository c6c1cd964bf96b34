//! `t2s runs`: tracked runs, newest first.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::RunsArgs;
use crate::runs::{node_status, status, Tracker};

pub fn runs(root: &Path, args: RunsArgs) -> anyhow::Result<ExitCode> {
    if !Tracker::path_for(root).exists() {
        println!("no runs yet in {}", root.display());
        return Ok(ExitCode::SUCCESS);
    }
    let tracker = Tracker::open(root)?;
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
            .map(|(s, n)| {
                // Nodes still `running` in a run whose process is gone were cut off with it.
                if s == node_status::RUNNING && r.status == status::INTERRUPTED {
                    format!("{n} {}", node_status::INTERRUPTED)
                } else {
                    format!("{n} {s}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        rows.push(vec![
            r.id.to_string(),
            r.status,
            r.pipeline,
            r.started,
            nodes,
        ]);
    }
    print!("{}", super::table(&rows));
    Ok(ExitCode::SUCCESS)
}
