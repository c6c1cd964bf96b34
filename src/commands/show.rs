//! `t2s show RUN`: one run's facts, nodes (ran / cached / resumed, durations), Slurm jobs (id,
//! state, log), params and metrics.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use crate::cache::key::short;
use crate::cli::ShowArgs;
use crate::exec::progress::human_duration;
use crate::runs::{node_status, status, Tracker};

pub fn show(root: &Path, args: ShowArgs) -> anyhow::Result<ExitCode> {
    if !Tracker::path_for(root).exists() {
        return Err(super::UsageError(format!("no runs yet in {}", root.display())).into());
    }
    let tracker = Tracker::open(root)?;
    let run = tracker
        .run(&args.run)
        .map_err(|e| super::UsageError(e.to_string()))?;
    println!("run {}: {} ({})", run.id, run.pipeline, run.status);
    println!(
        "  file     {} (blake3 {})",
        run.file,
        short(&run.file_digest)
    );
    println!(
        "  started  {}{}",
        run.started,
        run.ended
            .as_deref()
            .map(|e| format!(", ended {e}"))
            .unwrap_or_default()
    );
    println!("  host     {} (pid {})", run.host, run.pid);
    if let Some(rev) = &run.git_rev {
        println!("  git      {rev}");
    }
    println!("  t2s      {}", run.t2s_version);
    if let Some(e) = &run.error {
        println!("  error    {}", e.replace('\n', "\n           "));
    }

    println!("\nnodes:");
    let mut rows = Vec::new();
    for n in tracker.nodes(run.id)? {
        // A node still `running` in a run whose process is gone was cut off with it.
        let shown = if n.status == node_status::RUNNING && run.status == status::INTERRUPTED {
            node_status::INTERRUPTED.to_string()
        } else {
            n.status
        };
        rows.push(vec![
            format!("  {}", n.node),
            shown,
            n.key.as_deref().map(short).unwrap_or("-").to_string(),
            n.duration_s
                .map(|d| human_duration(std::time::Duration::from_secs_f64(d.max(0.0))))
                .unwrap_or_else(|| "-".into()),
            n.error
                .as_deref()
                .and_then(|e| e.lines().next())
                .unwrap_or_default()
                .to_string(),
        ]);
    }
    print!("{}", super::table(&rows));

    // Slurm jobs of the run (local executions have nothing more to say).
    let jobs: Vec<Vec<String>> = tracker
        .executions(run.id)?
        .into_iter()
        .filter(|e| e.exec.job_id.is_some())
        .map(|e| {
            vec![
                format!("  {}", e.node),
                format!(
                    "{} job {}",
                    e.exec.executor,
                    e.exec.job_id.unwrap_or_default()
                ),
                e.exec.state.unwrap_or_else(|| "-".into()),
                e.exec.log.unwrap_or_default(),
            ]
        })
        .collect();
    if !jobs.is_empty() {
        println!("\njobs:");
        print!("{}", super::table(&jobs));
    }

    let params = tracker.params(run.id)?;
    if !params.is_empty() {
        println!("\nparams:");
        let mut rows = Vec::new();
        for p in params {
            rows.push(vec![format!("  {}", p.node), p.name, p.value]);
        }
        print!("{}", super::table(&rows));
    }

    let metrics = tracker.metrics(run.id, false)?;
    if !metrics.is_empty() {
        println!("\nmetrics:");
        // Final values as they are; step series summarized as count and last value.
        let mut series: BTreeMap<(String, String), (usize, i64, f64)> = BTreeMap::new();
        let mut rows = Vec::new();
        for m in tracker.metrics(run.id, true)? {
            rows.push(vec![
                format!("  {}", m.node),
                m.name,
                super::format_value(m.value),
            ]);
        }
        for m in metrics.iter().filter(|m| m.step.is_some()) {
            let e = series
                .entry((m.node.clone(), m.name.clone()))
                .or_insert((0, i64::MIN, 0.0));
            e.0 += 1;
            if let Some(step) = m.step.filter(|&s| s >= e.1) {
                e.1 = step;
                e.2 = m.value;
            }
        }
        for ((node, name), (count, step, last)) in series {
            rows.push(vec![
                format!("  {node}"),
                name,
                format!(
                    "{} at step {step} ({count} points)",
                    super::format_value(last)
                ),
            ]);
        }
        print!("{}", super::table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}
