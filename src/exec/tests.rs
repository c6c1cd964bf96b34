//! Scheduler tests through the `Executor` seam: a fake executor decides what each node does,
//! so failures, panics, worker crashes and fail-fast are tested without running commands.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use super::plan::Selection;
use super::progress::Silent;
use super::scheduler::{self, RunOptions};
use super::{Executor, NodeJob};
use crate::cache::Store;
use crate::runs::{NodeStatus, RunInfo, RunStatus, Tracker};
use crate::stages::{StageError, StageOutcome};
use crate::worker::{JobSpec, WorkerLauncher};

/// a → b → c, and d independent; e has the same key as a (same kind, params, no inputs).
const PIPELINE: &str = "
name: seam
stages:
  a:
    kind: command
    params: {cmd: 'true'}
  b:
    kind: command
    needs: [a]
    params: {cmd: 'true'}
  c:
    kind: command
    needs: [b]
    params: {cmd: 'true'}
  d:
    kind: command
    params: {cmd: 'echo d'}
  e:
    kind: command
    params: {cmd: 'true'}
";

/// Writes `out.txt` for every node except those it is told to break.
struct Fake {
    ran: Mutex<Vec<String>>,
    behaviour: fn(&NodeJob<'_>) -> Option<Result<StageOutcome, StageError>>,
}

impl Executor for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn run_node(&self, job: &NodeJob<'_>) -> Result<StageOutcome, StageError> {
        self.ran.lock().unwrap().push(job.node.id.clone());
        if let Some(r) = (self.behaviour)(job) {
            return r;
        }
        std::fs::write(job.out_dir.join("out.txt"), &job.node.id).map_err(anyhow::Error::from)?;
        Ok(StageOutcome::default())
    }
}

fn setup() -> (tempfile::TempDir, crate::pipeline::Pipeline) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seam.yaml");
    std::fs::write(&file, PIPELINE).unwrap();
    let p = crate::pipeline::load(&file, &[]).unwrap();
    (dir, p)
}

fn run(
    dir: &std::path::Path,
    p: &crate::pipeline::Pipeline,
    fake: &Fake,
    jobs: usize,
) -> scheduler::RunOutcome {
    run_with(dir, p, fake, jobs, false)
}

fn run_with(
    dir: &std::path::Path,
    p: &crate::pipeline::Pipeline,
    fake: &Fake,
    jobs: usize,
    keep_going: bool,
) -> scheduler::RunOutcome {
    let store = Store::open(dir).unwrap();
    let tracker = Tracker::open(dir).unwrap();
    let id = tracker
        .start_run(&RunInfo {
            pipeline: p.name.clone(),
            file: "seam.yaml".into(),
            file_digest: p.file_digest.clone(),
            git_rev: None,
            argv: vec![],
        })
        .unwrap();
    let opts = RunOptions {
        jobs,
        gpu_slots: 1,
        selection: vec![Selection::Run; p.nodes.len()],
        force: BTreeSet::new(),
        verify: false,
        remote: None,
        push: false,
        keep_going,
    };
    let cancel = AtomicBool::new(false);
    let out = scheduler::run(p, &store, Some(&tracker), id, fake, &opts, &cancel, &Silent);
    // What the DB says matches what the scheduler reports.
    let rows = tracker.nodes(id).unwrap();
    for r in &out.nodes {
        let row = rows.iter().find(|x| x.node == r.node).unwrap();
        assert_eq!(row.status, r.status, "{}", r.node);
    }
    out
}

fn status_of(out: &scheduler::RunOutcome, node: &str) -> NodeStatus {
    out.nodes.iter().find(|n| n.node == node).unwrap().status
}

#[test]
fn a_crashing_worker_fails_its_node_by_name_and_exit_status_and_skips_dependents() {
    let (dir, p) = setup();
    let fake = Fake {
        ran: Mutex::new(vec![]),
        behaviour: |job| {
            (job.node.id == "b").then(|| {
                // The stage asks the worker for tensor work; the worker dies with SIGKILL.
                let script = job.partial_dir.join("worker.sh");
                std::fs::write(&script, "#!/bin/sh\nkill -9 $$\n").unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
                let worker = WorkerLauncher { exe: script };
                let never = AtomicBool::new(false);
                worker
                    .run(
                        &JobSpec::new("train", serde_json::json!({})),
                        |_| {},
                        &never,
                    )
                    .map(|_| StageOutcome::default())
                    .map_err(|e| StageError::Failed(format!("node `{}`: {e}", job.node.id)))
            })
        },
    };
    let out = run(dir.path(), &p, &fake, 1);
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(status_of(&out, "a"), NodeStatus::Ran);
    assert_eq!(status_of(&out, "b"), NodeStatus::Failed);
    assert_eq!(status_of(&out, "c"), NodeStatus::Skipped);
    let b = out.nodes.iter().find(|n| n.node == "b").unwrap();
    assert!(
        b.detail.contains("node `b`") && b.detail.contains("signal 9"),
        "{}",
        b.detail
    );
    let c = out.nodes.iter().find(|n| n.node == "c").unwrap();
    assert_eq!(c.detail, "upstream b did not finish");
    // Nothing of b was committed; its staging dir is gone.
    let store = Store::open(dir.path()).unwrap();
    assert!(std::fs::read_dir(store.base().join("staging"))
        .unwrap()
        .next()
        .is_none());
    assert!(store.read_ref("seam", "b").is_none());
}

#[test]
fn a_panicking_stage_fails_its_node_not_the_run() {
    let (dir, p) = setup();
    let fake = Fake {
        ran: Mutex::new(vec![]),
        behaviour: |job| (job.node.id == "d").then(|| panic!("boom in d")),
    };
    let out = run(dir.path(), &p, &fake, 4);
    assert_eq!(status_of(&out, "d"), NodeStatus::Failed);
    let d = out.nodes.iter().find(|n| n.node == "d").unwrap();
    assert!(
        d.detail.contains("stage panicked: boom in d"),
        "{}",
        d.detail
    );
    assert_eq!(out.nodes.len(), 5, "every node is accounted for");
}

#[test]
fn fail_fast_starts_nothing_new_after_a_failure() {
    let (dir, p) = setup();
    // One job at a time, topological order a, b, c, d, e (d is independent but comes later):
    // a fails, so neither b/c (dependents) nor d (not started yet) run.
    let fake = Fake {
        ran: Mutex::new(vec![]),
        behaviour: |job| (job.node.id == "a").then(|| Err(StageError::Failed("a broke".into()))),
    };
    let out = run(dir.path(), &p, &fake, 1);
    assert_eq!(*fake.ran.lock().unwrap(), vec!["a"]);
    assert_eq!(status_of(&out, "d"), NodeStatus::Skipped);
    let d = out.nodes.iter().find(|n| n.node == "d").unwrap();
    assert!(
        d.detail.contains("the run stopped after a failed"),
        "{}",
        d.detail
    );
}

#[test]
fn keep_going_runs_independent_nodes_after_a_failure_and_records_the_executor() {
    let (dir, p) = setup();
    let fake = Fake {
        ran: Mutex::new(vec![]),
        behaviour: |job| (job.node.id == "a").then(|| Err(StageError::Failed("a broke".into()))),
    };
    let out = run_with(dir.path(), &p, &fake, 1, true);
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(status_of(&out, "a"), NodeStatus::Failed);
    assert_eq!(status_of(&out, "b"), NodeStatus::Skipped);
    assert_eq!(status_of(&out, "c"), NodeStatus::Skipped);
    assert_eq!(status_of(&out, "d"), NodeStatus::Ran);
    // e has a's key; it runs on its own (a's failure is not a's key being unusable).
    assert_eq!(status_of(&out, "e"), NodeStatus::Ran);
    let tracker = Tracker::open(dir.path()).unwrap();
    let execs = tracker.executions(1).unwrap();
    let names: Vec<(&str, &str)> = execs
        .iter()
        .map(|e| (e.node.as_str(), e.exec.executor.as_str()))
        .collect();
    assert_eq!(names, [("a", "fake"), ("d", "fake"), ("e", "fake")]);
}

#[test]
fn second_run_is_all_cached_and_runs_nothing() {
    let (dir, p) = setup();
    let fake = Fake {
        ran: Mutex::new(vec![]),
        behaviour: |_| None,
    };
    let first = run(dir.path(), &p, &fake, 2);
    assert_eq!(first.status, RunStatus::Succeeded);
    // a and e share one key: computed once, the other one finds it cached.
    assert_eq!(fake.ran.lock().unwrap().len(), 4);
    let mut ae = [status_of(&first, "a"), status_of(&first, "e")];
    ae.sort_by_key(|s| s.as_str());
    assert_eq!(ae, [NodeStatus::Cached, NodeStatus::Ran]);
    fake.ran.lock().unwrap().clear();
    let again = run(dir.path(), &p, &fake, 2);
    assert!(fake.ran.lock().unwrap().is_empty());
    assert!(again.nodes.iter().all(|n| n.status == NodeStatus::Cached));
}
