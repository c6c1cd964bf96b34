//! `t2s diff [A] [B]`: what differs between two tracked runs (by default the last two): the
//! params of their nodes, the nodes whose cache key changed (their inputs or code did, so their
//! artifacts differ) and the final metrics, with the change. DVC's `exp diff` / `params diff` /
//! `metrics diff` in one; `--json` for scripts.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use crate::cache::key::short;
use crate::cli::DiffArgs;
use crate::runs::{RunDiff, RunFacts, RunRow, Tracker, TrackerError};

pub fn diff(root: &Path, args: DiffArgs) -> anyhow::Result<ExitCode> {
    if !Tracker::path_for(root).exists() {
        return Err(super::UsageError(format!("no runs yet in {}", root.display())).into());
    }
    let tracker = Tracker::open(root)?;
    let which_a = args.a.as_deref().unwrap_or("last~1");
    let which_b = args.b.as_deref().unwrap_or("last");
    let run = |which: &str| -> anyhow::Result<RunRow> {
        tracker.run(which).map_err(|e| match e {
            TrackerError::NoSuchRun(_) if args.a.is_none() && which == "last~1" => {
                super::UsageError("only one run is tracked: nothing to compare it with".into())
                    .into()
            }
            TrackerError::NoSuchRun(_) => super::UsageError(e.to_string()).into(),
            e => e.into(),
        })
    };
    let (a, b) = (run(which_a)?, run(which_b)?);
    let facts = |id: i64| -> anyhow::Result<RunFacts> {
        Ok(RunFacts {
            nodes: tracker.nodes(id)?,
            params: tracker.params(id)?,
            metrics: tracker.metrics(id, true)?,
        })
    };
    let d = RunDiff::between(&facts(a.id)?, &facts(b.id)?, args.all);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&a, &b, &d))?);
    } else {
        print!("{}", render(&a, &b, &d));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_json(r: &RunRow) -> serde_json::Value {
    json!({
        "id": r.id,
        "pipeline": r.pipeline,
        "status": r.status,
        "started": r.started,
        "file": r.file,
        "file_digest": r.file_digest,
        "git_rev": r.git_rev,
    })
}

fn as_json(a: &RunRow, b: &RunRow, d: &RunDiff) -> serde_json::Value {
    json!({
        "a": run_json(a),
        "b": run_json(b),
        "same": d.is_same(),
        "params": d.params,
        "nodes": d.nodes,
        "metrics": d.metrics,
    })
}

/// The comparison as text: the two runs, then a table per part that has entries.
fn render(a: &RunRow, b: &RunRow, d: &RunDiff) -> String {
    let (ra, rb) = (format!("run {}", a.id), format!("run {}", b.id));
    let mut out = String::new();
    let mut runs = Vec::new();
    for r in [a, b] {
        runs.push(vec![
            format!("  run {}", r.id),
            r.pipeline.clone(),
            r.status.to_string(),
            r.started.clone(),
            format!("{} (blake3 {})", r.file, short(&r.file_digest)),
            r.git_rev
                .as_deref()
                .map(|g| format!("git {}", short(g)))
                .unwrap_or_default(),
        ]);
    }
    out.push_str(&format!("{ra} → {rb}\n"));
    out.push_str(&super::table(&runs));
    if a.file_digest != b.file_digest {
        out.push_str("  the pipeline file differs between the two runs\n");
    }
    if d.is_same() && !has_entries(d) {
        out.push_str("\nthe same params, node cache keys and final metrics (`--all` lists them)\n");
        return out;
    }

    let value = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into())
    };
    if !d.params.is_empty() {
        let mut rows = vec![header(&["NODE", "PARAM", &ra, &rb])];
        for p in &d.params {
            rows.push(vec![
                format!("  {}", p.node),
                p.name.clone(),
                value(&p.a),
                value(&p.b),
            ]);
        }
        out.push_str(&format!(
            "\nparams{}:\n",
            differing(d.params.iter().filter(|p| p.a != p.b).count())
        ));
        out.push_str(&super::table(&rows));
    }

    if !d.nodes.is_empty() {
        let side = |s: &Option<crate::runs::NodeSide>| match s {
            Some(s) => format!(
                "{} {}",
                s.key.as_deref().map(short).unwrap_or("-"),
                s.status
            ),
            None => "-".into(),
        };
        let mut rows = vec![header(&[
            "NODE",
            &format!("KEY {ra}"),
            &format!("KEY {rb}"),
        ])];
        for n in &d.nodes {
            rows.push(vec![format!("  {}", n.node), side(&n.a), side(&n.b)]);
        }
        let changed = d
            .nodes
            .iter()
            .filter(|n| n.a.as_ref().map(|s| &s.key) != n.b.as_ref().map(|s| &s.key))
            .count();
        out.push_str(&format!(
            "\nnodes ({changed} with another cache key or in one run only):\n"
        ));
        out.push_str(&super::table(&rows));
    }

    if !d.metrics.is_empty() {
        let number = |v: Option<f64>| v.map(super::format_value).unwrap_or_else(|| "-".into());
        let mut rows = vec![header(&["NODE", "METRIC", &ra, &rb, "CHANGE"])];
        for m in &d.metrics {
            rows.push(vec![
                format!("  {}", m.node),
                m.name.clone(),
                number(m.a),
                number(m.b),
                m.change.map(signed).unwrap_or_else(|| "-".into()),
            ]);
        }
        let moved = d
            .metrics
            .iter()
            .filter(|m| m.a.map(f64::to_bits) != m.b.map(f64::to_bits))
            .count();
        out.push_str(&format!("\nfinal metrics{}:\n", differing(moved)));
        out.push_str(&super::table(&rows));
    }
    out
}

fn has_entries(d: &RunDiff) -> bool {
    !(d.params.is_empty() && d.nodes.is_empty() && d.metrics.is_empty())
}

fn header(cells: &[&str]) -> Vec<String> {
    let mut row: Vec<String> = cells.iter().map(|c| c.to_uppercase()).collect();
    row[0] = format!("  {}", row[0]);
    row
}

fn differing(n: usize) -> String {
    format!(" ({n} differ)")
}

/// A change with its sign: `+0.0625`, `-3`, `0`.
fn signed(v: f64) -> String {
    let s = super::format_value(v);
    if v > 0.0 {
        format!("+{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::{MetricChange, ParamChange};

    fn row(id: i64, digest: &str) -> RunRow {
        RunRow {
            id,
            pipeline: "sweep".into(),
            file: "pipelines/sweep.yaml".into(),
            file_digest: digest.into(),
            started: "2026-11-28T01:00:00.000Z".into(),
            ended: None,
            status: crate::runs::RunStatus::Succeeded,
            host: "h".into(),
            pid: 1,
            git_rev: None,
            t2s_version: "0".into(),
            argv: "[]".into(),
            error: None,
        }
    }

    #[test]
    fn the_text_names_both_runs_and_signs_each_change() {
        let d = RunDiff {
            params: vec![ParamChange {
                node: "train[lora_r=8]".into(),
                name: "lr".into(),
                a: Some(json!(0.0002)),
                b: Some(json!(0.0003)),
            }],
            nodes: vec![],
            metrics: vec![
                MetricChange {
                    node: "evaluate[lora_r=8]".into(),
                    name: "execution_accuracy".into(),
                    a: Some(0.25),
                    b: Some(0.3125),
                    change: Some(0.0625),
                },
                MetricChange {
                    node: "train[lora_r=8]".into(),
                    name: "final_loss".into(),
                    a: Some(0.5),
                    b: Some(0.375),
                    change: Some(-0.125),
                },
            ],
        };
        let text = render(&row(3, "aaaa"), &row(4, "bbbb"), &d);
        assert!(text.starts_with("run 3 → run 4\n"), "{text}");
        assert!(text.contains("the pipeline file differs"), "{text}");
        assert!(text.contains("params (1 differ):"), "{text}");
        let lr = text.lines().find(|l| l.contains(" lr ")).unwrap();
        assert!(
            lr.contains("0.0002") && lr.trim_end().ends_with("0.0003"),
            "{lr}"
        );
        let acc = text
            .lines()
            .find(|l| l.contains("execution_accuracy"))
            .unwrap();
        assert!(acc.trim_end().ends_with("+0.0625"), "{acc}");
        let loss = text.lines().find(|l| l.contains("final_loss")).unwrap();
        assert!(loss.trim_end().ends_with("-0.125"), "{loss}");
        assert!(
            !text.contains("nodes ("),
            "no node table without nodes: {text}"
        );
    }

    #[test]
    fn the_text_reads_as_one_table_per_part() {
        use crate::runs::{NodeChange, NodeSide};
        let side = |key: &str, status: &str| {
            Some(NodeSide {
                key: Some(key.repeat(16)),
                status: crate::runs::NodeStatus::parse(status).unwrap(),
            })
        };
        let d = RunDiff {
            params: crate::runs::sample_param_changes(),
            nodes: vec![
                NodeChange {
                    node: "train[lora_r=8]".into(),
                    a: side("a1b2", "ran"),
                    b: side("c3d4", "ran"),
                },
                NodeChange {
                    node: "train[lora_r=32]".into(),
                    a: None,
                    b: side("e5f6", "ran"),
                },
            ],
            metrics: vec![MetricChange {
                node: "evaluate[lora_r=8]".into(),
                name: "execution_accuracy".into(),
                a: Some(0.25),
                b: Some(0.3125),
                change: Some(0.0625),
            }],
        };
        insta::assert_snapshot!(render(&row(3, "aaaa"), &row(4, "aaaa"), &d));
    }

    #[test]
    fn two_equal_runs_say_so() {
        let text = render(&row(3, "aaaa"), &row(4, "aaaa"), &RunDiff::default());
        assert!(text.contains("the same params, node cache keys and final metrics"));
        assert!(!text.contains("pipeline file differs"));
    }
}
