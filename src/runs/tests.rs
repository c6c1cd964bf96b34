//! Unit tests of the tracking DB: migrations, writes, reads, interrupted runs.

use rusqlite::params;
use serde_json::json;

use super::*;

fn info() -> RunInfo {
    RunInfo {
        pipeline: "p".into(),
        file: "p.yaml".into(),
        file_digest: "d".into(),
        git_rev: None,
        argv: vec!["t2s".into(), "run".into()],
    }
}

fn record(node: &str, status: NodeStatus) -> NodeRecord {
    NodeRecord {
        node: node.into(),
        stage: node.into(),
        kind: "command".into(),
        key: Some("k".into()),
        status,
        started: Some(now_rfc3339()),
        ended: Some(now_rfc3339()),
        duration_s: Some(0.5),
        error: None,
        params: vec![("cmd".into(), json!("true")), ("n".into(), json!(3))],
        final_metrics: vec![("acc".into(), 0.75)],
        artifact: Some(("/a/k".into(), "dg".into(), 2, 10)),
        exec: None,
    }
}

#[test]
fn migrations_apply_once_and_reopen_is_idempotent() {
    let root = tempfile::tempdir().unwrap();
    let t = Tracker::open(root.path()).unwrap();
    let id = t.start_run(&info()).unwrap();
    drop(t);
    let t = Tracker::open(root.path()).unwrap();
    assert_eq!(t.list_runs(10).unwrap()[0].id, id);
    let versions: i64 = t
        .lock()
        .query_row("SELECT count(*) FROM migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(versions, 2);
    let mode: String = t
        .lock()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn newer_schema_is_refused_with_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let t = Tracker::open(root.path()).unwrap();
    t.lock()
        .execute(
            "INSERT INTO migrations(version, applied) VALUES (99, 'x')",
            [],
        )
        .unwrap();
    drop(t);
    let err = Tracker::open(root.path()).err().unwrap().to_string();
    assert!(
        err.contains("schema version 99") && err.contains("upgrade t2s"),
        "{err}"
    );
}

#[test]
fn nodes_params_metrics_round_trip() {
    let root = tempfile::tempdir().unwrap();
    let t = Tracker::open(root.path()).unwrap();
    let run = t.start_run(&info()).unwrap();
    let mut running = record("a", NodeStatus::Running);
    running.final_metrics.clear();
    t.record_nodes(run, &[running]).unwrap();
    t.record_nodes(
        run,
        &[
            record("a", NodeStatus::Ran),
            record("b", NodeStatus::Cached),
        ],
    )
    .unwrap();
    t.record_metrics(
        run,
        "a",
        &[
            ("loss".into(), Some(1), 0.9, now_rfc3339()),
            ("loss".into(), Some(2), 0.5, now_rfc3339()),
        ],
    )
    .unwrap();
    t.finish_run(run, RunStatus::Succeeded, None).unwrap();

    let nodes = t.nodes(run).unwrap();
    assert_eq!(
        nodes
            .iter()
            .map(|n| (n.node.as_str(), n.status.as_str()))
            .collect::<Vec<_>>(),
        vec![("a", "ran"), ("b", "cached")]
    );
    assert_eq!(t.params(run).unwrap().len(), 4);
    assert_eq!(t.params(run).unwrap()[1].value, "3");
    let finals = t.metrics(run, true).unwrap();
    assert_eq!(finals.len(), 2);
    assert!(finals.iter().all(|m| m.name == "acc" && m.value == 0.75));
    assert_eq!(t.metrics(run, false).unwrap().len(), 4);
    assert_eq!(
        t.node_counts(run).unwrap(),
        vec![(NodeStatus::Cached, 1), (NodeStatus::Ran, 1)]
    );
    let r = t.run("last").unwrap();
    assert_eq!((r.id, r.status.as_str()), (run, "succeeded"));
    assert!(r.ended.is_some());
    assert!(matches!(t.run("42"), Err(TrackerError::NoSuchRun(_))));
    assert!(matches!(t.run("abc"), Err(TrackerError::NoSuchRun(_))));
}

#[test]
fn a_later_cache_hit_in_the_same_run_keeps_what_the_node_did_first() {
    // A search runs its pipeline in rounds: a trial computed in round 1 is a hit in round 2.
    let root = tempfile::tempdir().unwrap();
    let t = Tracker::open(root.path()).unwrap();
    let run = t.start_run(&info()).unwrap();
    let mut running = record("a", NodeStatus::Running);
    running.final_metrics.clear();
    t.record_nodes(run, &[running]).unwrap();
    t.record_nodes(run, &[record("a", NodeStatus::Ran)])
        .unwrap();
    t.record_nodes(
        run,
        &[
            record("a", NodeStatus::Cached),
            record("b", NodeStatus::Cached),
        ],
    )
    .unwrap();
    let nodes = t.nodes(run).unwrap();
    let got: Vec<_> = nodes
        .iter()
        .map(|n| (n.node.as_str(), n.status.as_str()))
        .collect();
    assert_eq!(got, vec![("a", "ran"), ("b", "cached")]);
    // The skipped hit wrote no second set of final metrics.
    assert_eq!(t.metrics(run, true).unwrap().len(), 2);
}

#[test]
fn runs_are_named_by_id_or_by_how_far_back_from_the_newest() {
    let root = tempfile::tempdir().unwrap();
    let t = Tracker::open(root.path()).unwrap();
    let ids: Vec<i64> = (0..3).map(|_| t.start_run(&info()).unwrap()).collect();
    for (which, id) in [
        ("last", ids[2]),
        ("latest", ids[2]),
        ("last~0", ids[2]),
        ("last~1", ids[1]),
        ("latest~2", ids[0]),
    ] {
        assert_eq!(t.run(which).unwrap().id, id, "{which}");
        assert_eq!(t.run(&ids[0].to_string()).unwrap().id, ids[0]);
    }
    for which in ["last~3", "last~", "last~-1", "last~x", "lastly", "latest1"] {
        let err = t.run(which).unwrap_err();
        assert!(
            matches!(&err, TrackerError::NoSuchRun(w) if w == which),
            "{which}: {err}"
        );
    }
}

#[test]
fn a_running_row_whose_process_is_gone_reads_as_interrupted() {
    let root = tempfile::tempdir().unwrap();
    let t = Tracker::open(root.path()).unwrap();
    let run = t.start_run(&info()).unwrap();
    // A pid that cannot be alive (above the kernel's pid_max).
    t.lock()
        .execute(
            "UPDATE runs SET pid = ?2 WHERE id = ?1",
            params![run, 1i64 << 40],
        )
        .unwrap();
    assert_eq!(t.run("last").unwrap().status, RunStatus::Interrupted);
    // A row of another host is left as is: we cannot know.
    t.lock()
        .execute(
            "UPDATE runs SET host = 'elsewhere' WHERE id = ?1",
            params![run],
        )
        .unwrap();
    assert_eq!(t.run("last").unwrap().status, RunStatus::Running);
}

#[test]
fn sink_batches_metrics_and_remembers_final_names() {
    use crate::stages::MetricsSink;
    let root = tempfile::tempdir().unwrap();
    let t = Tracker::open(root.path()).unwrap();
    let run = t.start_run(&info()).unwrap();
    let progress = |_: u64, _: Option<u64>, _: &str| {};
    let sink = NodeSink::new(Some(&t), run, "train", &progress);
    for step in 0..300 {
        sink.metric("loss", Some(step), 1.0 / (step as f64 + 1.0));
    }
    // 256 went out in one batch; the rest waits for the flush.
    assert_eq!(t.metrics(run, false).unwrap().len(), 256);
    sink.metric("final_loss", None, 0.1);
    drop(sink);
    assert_eq!(t.metrics(run, false).unwrap().len(), 301);
    assert_eq!(t.metrics(run, true).unwrap()[0].name, "final_loss");
}
