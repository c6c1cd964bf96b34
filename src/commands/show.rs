//! `t2s show RUN`: one run's facts, nodes (ran / cached / resumed, durations), the hub commits
//! its nodes were keyed by, Slurm jobs (id, state, log), params and metrics.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use crate::cache::key::short;
use crate::cli::ShowArgs;
use crate::exec::progress::human_duration;
use crate::runs::{RunRow, Tracker};

pub fn show(root: &Path, args: ShowArgs) -> anyhow::Result<ExitCode> {
    if !Tracker::path_for(root).exists() {
        return Err(super::UsageError(format!("no runs yet in {}", root.display())).into());
    }
    let tracker = Tracker::open(root)?;
    let run = tracker
        .run(&args.run)
        .map_err(|e| super::UsageError(e.to_string()))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&as_json(root, &tracker, &run)?)?
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_header(&run);
    print_nodes(root, &tracker, &run)?;
    print_executions(&tracker, &run)?;
    print_params_and_metrics(&tracker, &run)?;
    Ok(ExitCode::SUCCESS)
}

/// Who ran it, when, from which file.
fn print_header(run: &RunRow) {
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
}

/// Each node's status, key, duration and error; the hub commits nodes used.
fn print_nodes(root: &Path, tracker: &Tracker, run: &RunRow) -> anyhow::Result<()> {
    println!("\nnodes:");
    let mut rows = Vec::new();
    let mut sources = Vec::new();
    let store = crate::cache::Store::open(root).ok();
    for n in tracker.nodes(run.id)? {
        for (repo, commit) in hub_commits(store.as_ref(), n.key.as_deref()) {
            sources.push(vec![format!("  {}", n.node), repo, commit]);
        }
        let shown = super::runs::shown_status(n.status, run.status).to_string();
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

    if !sources.is_empty() {
        println!("\nhub sources:");
        print!("{}", super::table(&sources));
    }
    Ok(())
}

/// Slurm jobs of the run, and nodes fetched from a remote.
fn print_executions(tracker: &Tracker, run: &RunRow) -> anyhow::Result<()> {
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
    // Nodes whose output was fetched from a remote cache instead of computed.
    let fetched: Vec<Vec<String>> = tracker
        .executions(run.id)?
        .into_iter()
        .filter(|e| e.exec.executor == "remote")
        .map(|e| vec![format!("  {}", e.node), e.exec.log.unwrap_or_default()])
        .collect();
    if !fetched.is_empty() {
        println!("\nfetched from a remote:");
        print!("{}", super::table(&fetched));
    }
    Ok(())
}

/// Params of each node; final metrics, and step series as count and last value.
fn print_params_and_metrics(tracker: &Tracker, run: &RunRow) -> anyhow::Result<()> {
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
    Ok(())
}

/// The hub repos and commits a node's key holds (from its artifact's manifest; none when the
/// artifact is gone).
fn hub_commits(store: Option<&crate::cache::Store>, key: Option<&str>) -> Vec<(String, String)> {
    let (Some(store), Some(key)) = (store, key) else {
        return Vec::new();
    };
    match crate::cache::manifest::Manifest::read(&store.object_dir(key)) {
        Ok(m) => crate::data::hub::pin::commits_in(&m.cache_key.facts),
        Err(_) => Vec::new(),
    }
}

/// The run, its nodes, params (as JSON values), final metrics and every step series.
fn as_json(root: &Path, tracker: &Tracker, run: &RunRow) -> anyhow::Result<serde_json::Value> {
    let store = crate::cache::Store::open(root).ok();
    let mut hub = Vec::new();
    let nodes: Vec<serde_json::Value> = tracker
        .nodes(run.id)?
        .into_iter()
        .map(|mut n| {
            for (repo, commit) in hub_commits(store.as_ref(), n.key.as_deref()) {
                hub.push(json!({"node": n.node, "repo": repo, "commit": commit}));
            }
            n.status = super::runs::shown_status(n.status, run.status);
            serde_json::to_value(n)
        })
        .collect::<Result<_, _>>()?;
    let params: Vec<serde_json::Value> = tracker
        .params(run.id)?
        .into_iter()
        .map(|p| {
            let value =
                serde_json::from_str(&p.value).unwrap_or(serde_json::Value::String(p.value));
            json!({"node": p.node, "name": p.name, "value": value})
        })
        .collect();
    let finals = tracker.metrics(run.id, true)?;
    let mut series: BTreeMap<(String, String), Vec<(i64, f64)>> = BTreeMap::new();
    for m in tracker.metrics(run.id, false)? {
        if let Some(step) = m.step {
            series
                .entry((m.node, m.name))
                .or_default()
                .push((step, m.value));
        }
    }
    let series: Vec<serde_json::Value> = series
        .into_iter()
        .map(|((node, name), points)| json!({"node": node, "name": name, "points": points}))
        .collect();
    Ok(json!({
        "run": run,
        "nodes": nodes,
        "params": params,
        "metrics": finals,
        "series": series,
        "hub": hub,
    }))
}
