//! Issue 34: `search:` in a pipeline, run by `t2s run` in rounds of ordinary nodes.
//! Acceptance 2: `kill -9` during a search, then a rerun: no finished trial runs again, and the
//! result equals an uninterrupted search's. Acceptance 3: bad search specs exit 2 with
//! file:line:column and the field.
//!
//! The trials are shell commands (fast, no model): `fit` writes its params, `score` prints an
//! objective of them as a `::metric` line.

use crate::common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use assert_cmd::Command;

pub(crate) const PIPELINE: &str = r#"name: search_cmd
settings: {jobs: 2}
stages:
  data:
    kind: command
    params: {cmd: "echo 1 > $T2S_OUT/d.txt", outs: [d.txt]}
  fit:
    kind: command
    needs: [data]
    search:
      space:
        x: {low: 1.0e-4, high: 1.0e-1, log: true}
        r: {values: [4, 8, 16]}
      strategy: tpe
      trials: 8
      batch: 2
      seed: 3
      objective: {stage: score, metric: acc}
    params:
      cmd: "echo $T2S_NODE >> ran.log; sleep 0.4; echo ${matrix.x} ${matrix.r} > $T2S_OUT/fit.txt"
      outs: [fit.txt]
  score:
    kind: command
    needs: [fit]
    params:
      cmd: "echo $T2S_NODE >> ran.log; awk '{printf \"::metric acc %.6f\\n\", -(log($1)/log(10)+2.5)^2 + $2/100}' $T2S_INPUT_FIT/fit.txt"
"#;

struct Search {
    dir: tempfile::TempDir,
}

impl Search {
    fn new(text: &str) -> Search {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("search.yaml"), text).unwrap();
        Search { dir }
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn file(&self) -> PathBuf {
        self.root().join("search.yaml")
    }
    fn t2s(&self) -> Command {
        let mut c = Command::cargo_bin("t2s").unwrap();
        c.arg("--root")
            .arg(self.root())
            .env_remove("T2S_ROOT")
            .env_remove("RUST_LOG")
            .current_dir(self.root());
        c
    }
    /// `t2s run`, asserting success: (stdout, stderr).
    fn run_ok(&self) -> (String, String) {
        let out = self.t2s().arg("run").arg(self.file()).output().unwrap();
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "t2s run failed\n{o}\n{e}");
        (o, e)
    }
    /// Node ids whose command ran, in order.
    fn ran(&self) -> Vec<String> {
        std::fs::read_to_string(self.root().join("ran.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
    /// node id → key of every committed object.
    fn objects(&self) -> BTreeMap<String, String> {
        let dir = self.root().join("artifacts/v1/objects");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return BTreeMap::new();
        };
        rd.map(|e| {
            let m = t2s::cache::Manifest::read(&e.unwrap().path()).unwrap();
            (m.node.clone(), m.key.clone())
        })
        .collect()
    }
}

/// The search table `t2s run` prints at the end (stderr).
pub(crate) fn search_table(stderr: &str) -> String {
    let at = stderr.find("search of `fit`").expect("the search table");
    stderr[at..].to_string()
}

#[test]
fn a_search_runs_its_trials_as_nodes_and_reruns_fully_cached() {
    let s = Search::new(PIPELINE);
    let (out, err) = s.run_ok();
    let table = search_table(&err);
    let rows = table
        .lines()
        .filter(|l| l.starts_with(char::is_numeric))
        .count();
    assert_eq!(rows, 8, "{table}");
    assert!(table.contains("(best)"), "{table}");
    let fits: Vec<String> = s
        .ran()
        .into_iter()
        .filter(|n| n.starts_with("fit["))
        .collect();
    assert_eq!(fits.len(), 8, "every trial trained once: {fits:?}");
    let statuses = common::statuses(&out);
    assert_eq!(
        statuses.values().filter(|st| *st == "ran").count(),
        17,
        "{out}"
    );
    // The tracking DB holds one run; every node ran once in it.
    let runs = s.t2s().arg("runs").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&runs.stdout).lines().count(), 2);

    // `status` replays the search from the cache: every trial's nodes, all cached.
    let st = s
        .t2s()
        .arg("status")
        .arg(s.file())
        .arg("--json")
        .output()
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(
        (st["cached"].as_u64(), st["stale"].as_u64()),
        (Some(17), Some(0)),
        "{st}"
    );
    // So does `dag`: every trial of every round, not the first round only.
    let dag = s.t2s().arg("dag").arg(s.file()).output().unwrap();
    let dag = String::from_utf8_lossy(&dag.stdout);
    let trials: std::collections::BTreeSet<&str> = dag
        .split("fit[")
        .skip(1)
        .filter_map(|rest| rest.split(']').next())
        .collect();
    assert_eq!(trials.len(), 8, "{dag}");

    std::fs::remove_file(s.root().join("ran.log")).unwrap();
    let (again, err2) = s.run_ok();
    assert!(s.ran().is_empty(), "a rerun is fully cached: {:?}", s.ran());
    assert!(
        common::statuses(&again).values().all(|st| st == "cached"),
        "{again}"
    );
    assert_eq!(search_table(&err2), table);
}

#[test]
fn kill_minus_nine_during_a_search_then_rerun_reruns_no_finished_trial() {
    let reference = Search::new(PIPELINE);
    let (_, err) = reference.run_ok();
    let expected_table = search_table(&err);
    let expected = reference.objects();

    for kill_after_scores in [1usize, 3, 5] {
        let s = Search::new(PIPELINE);
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("t2s"))
            .arg("--root")
            .arg(s.root())
            .arg("run")
            .arg(s.file())
            .env_remove("T2S_ROOT")
            .current_dir(s.root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while s
            .objects()
            .keys()
            .filter(|n| n.starts_with("score["))
            .count()
            < kill_after_scores
        {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the search did not progress"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::process::Command::new("kill")
            .args(["-9", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.wait();
        let finished: Vec<String> = s
            .objects()
            .into_keys()
            .filter(|n| n.starts_with("fit[") || n.starts_with("score["))
            .collect();
        assert!(!finished.is_empty());
        std::fs::remove_file(s.root().join("ran.log")).unwrap();

        let (_, err) = s.run_ok();
        let again = s.ran();
        for n in &finished {
            assert!(
                !again.contains(n),
                "finished trial node {n} ran again: {again:?}"
            );
        }
        assert_eq!(
            search_table(&err),
            expected_table,
            "kill after {kill_after_scores} scores"
        );
        assert_eq!(
            s.objects(),
            expected,
            "kill after {kill_after_scores} scores"
        );
    }
}

/// The search block with one field replaced (`FIELD: VALUE` lines under `search:`).
fn with_search(block: &str) -> String {
    let start = PIPELINE.find("    search:\n").unwrap();
    let end = PIPELINE
        .find("    params:\n      cmd: \"echo $T2S_NODE >> ran.log; sleep")
        .unwrap();
    format!(
        "{}    search:\n{block}{}",
        &PIPELINE[..start],
        &PIPELINE[end..]
    )
}

/// A search is one pipeline: a trial that edits the pipeline file (the objective's formula)
/// while the search runs changes nothing in it; its later rounds come from the text it began
/// with, not from the file read again.
#[test]
fn editing_the_file_during_a_search_does_not_change_the_search() {
    let reference = Search::new(PIPELINE);
    let expected = search_table(&reference.run_ok().1);
    let edit = "sed -i 's|[$]2/100|$2/10|' search.yaml; ";
    let text = PIPELINE.replacen(
        "cmd: \"echo $T2S_NODE >> ran.log; awk",
        &format!("cmd: \"{edit}echo $T2S_NODE >> ran.log; awk"),
        1,
    );
    let s = Search::new(&text);
    let (_, err) = s.run_ok();
    let edited = std::fs::read_to_string(s.file()).unwrap();
    assert!(
        edited.contains("$2/10}"),
        "the trial edited the file: {edited}"
    );
    assert_eq!(search_table(&err), expected);
    let fits = s.ran().iter().filter(|n| n.starts_with("fit[")).count();
    assert_eq!(fits, 8);
}

#[test]
fn bad_search_specs_exit_2_with_file_line_and_field() {
    let obj = "      objective: {stage: score, metric: acc}\n";
    let space = "      space:\n        x: {low: 1.0e-4, high: 1.0e-1, log: true}\n";
    let cases: Vec<(String, &str, usize)> = vec![
        (
            format!("      space:\n        x: {{low: 0.5, high: 0.5}}\n      trials: 2\n{obj}"),
            "stages.fit.search.space.x",
            12,
        ),
        (
            format!("      space:\n        x: {{low: 0.0, high: 1.0, log: true}}\n      trials: 2\n{obj}"),
            "stages.fit.search.space.x.low",
            12,
        ),
        (
            format!("{space}      strategy: grid\n      trials: 2\n{obj}"),
            "stages.fit.search.strategy",
            13,
        ),
        (format!("{space}      trials: 0\n{obj}"), "stages.fit.search.trials", 13),
        (
            format!("{space}      trials: 3\n      objective: {{stage: score, metric: acc, mode: up}}\n"),
            "stages.fit.search.objective.mode",
            14,
        ),
        (
            format!("{space}      trials: 3\n      objective: {{stage: scores, metric: acc}}\n"),
            "stages.fit.search.objective.stage",
            14,
        ),
        (
            format!("{space}      trials: 3\n      objective: {{stage: data, metric: acc}}\n"),
            "stages.fit.search.objective.stage",
            14,
        ),
        (
            format!("{space}      trials: 3\n{obj}      halving: {{min_steps: 10}}\n"),
            "stages.fit.search.halving",
            15,
        ),
        (
            format!("      space:\n        y: {{values: [1, 2]}}\n      trials: 3\n{obj}"),
            "stages.fit.search.space.y",
            12,
        ),
    ];
    for (block, field, line) in cases {
        let s = Search::new(&with_search(&block));
        let out = s.t2s().arg("dag").arg(s.file()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{block}\n{err}");
        let at = format!("search.yaml:{line}:");
        assert!(
            err.contains(&at) && err.contains(field),
            "want {at} {field}\n{block}\n{err}"
        );
    }
}

#[test]
fn a_metric_the_objective_stage_kind_never_reports_is_refused_where_written() {
    let text = r#"name: s
stages:
  data:
    kind: load
    params: {source: "builtin:50"}
  split:
    kind: split
    needs: [data]
    search:
      space: {seed: {values: [1, 2]}}
      trials: 2
      objective: {stage: split, metric: accuracy}
    params: {seed: "${matrix.seed}"}
"#;
    let s = Search::new(text);
    let out = s.t2s().arg("dag").arg(s.file()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("search.yaml:12:") && err.contains("stages.split.search.objective.metric"),
        "{err}"
    );
    assert!(err.contains("reports no metric `accuracy`"), "{err}");
}
