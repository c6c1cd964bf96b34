//! Issue 9, the Slurm executor, against a real Slurm: `scripts/slurm/start.sh` starts munge, a
//! controller and a node on this machine (Debian `slurm-wlm` + `munge`, installed by
//! `scripts/setup.sh`). One test function drives every phase against one cluster, since only
//! one can listen on Slurm's ports; a file lock keeps a second test process out.
//!
//! 1. The smoke pipeline with `--executor slurm`: every node runs as a Slurm job (ids in the
//!    DB), and the results equal those of the local executor.
//! 2. A second run submits no job.
//! 3. `scancel` of a training job, then a rerun: training resumes from its checkpoint. Also:
//!    after a `kill -9` of the controller, the next run cancels the orphaned job; Ctrl-C of a
//!    run cancels its job.
//! 4. A node failing inside its job reports the stage error, the job id and the log path;
//!    independent nodes complete.
//!
//! And without a cluster: 5. no Slurm on PATH fails at once; `--dry-run` prints the sbatch
//! commands.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    common::repo_dir()
}

fn smoke() -> PathBuf {
    repo().join("pipelines/smoke.yaml")
}

/// A running test cluster; stopped on drop (also when a phase panics).
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    _lock: std::fs::File,
}

impl Cluster {
    fn start() -> Cluster {
        for tool in ["sbatch", "slurmctld", "slurmd", "munged"] {
            assert!(
                which(tool).is_some(),
                "`{tool}` is not installed: the Slurm executor is tested against a real Slurm; \
                 run `T2S_FOR_TESTS=1 bash scripts/setup.sh` (it installs slurm-wlm and munge)"
            );
        }
        let lock = std::fs::File::create(std::env::temp_dir().join("t2s-slurm-test.lock")).unwrap();
        lock.lock().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(repo().join("scripts/slurm/start.sh"))
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot start the test cluster:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        Cluster {
            dir,
            conf,
            _lock: lock,
        }
    }

    /// `t2s --root ROOT` talking to this cluster.
    fn t2s(&self, root: &Path) -> Command {
        let mut c = t2s(root);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    fn scancel(&self, job: &str) {
        let ok = Command::new("scancel")
            .arg(job)
            .env("SLURM_CONF", &self.conf)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/slurm/stop.sh"))
            .arg(self.dir.path())
            .status();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .flat_map(|d| [d.join(name), Path::new("/usr/sbin").join(name)])
        .find(|p| p.is_file())
}

fn t2s(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_t2s"));
    c.arg("--root")
        .arg(root)
        .env("T2S_WORKER", common::worker())
        .env_remove("T2S_ROOT")
        .env_remove("RUST_LOG")
        .current_dir(root);
    c
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "t2s failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// node → status from `t2s run` output.
fn statuses(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((
                w.nth(1)?.to_string(),
                l.split_whitespace().next()?.to_string(),
            ))
        })
        .collect()
}

/// file → blake3, and final metric → value, of one node.
type NodeResult = (BTreeMap<String, String>, BTreeMap<String, String>);

/// What a node computed, minus what legitimately differs between two project roots and two
/// executions: absolute paths (adapter_config.json), timings (metrics.json, tokens/s) and the
/// report that embeds both.
fn results(root: &Path) -> BTreeMap<String, NodeResult> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(root.join("artifacts/v1/objects")).unwrap() {
        let m = t2s::cache::Manifest::read(&e.unwrap().path()).unwrap();
        if m.node == "report" {
            continue;
        }
        let files = m
            .files
            .iter()
            .filter(|(f, _)| !["adapter_config.json", "metrics.json"].contains(&f.as_str()))
            .map(|(f, e)| (f.clone(), e.blake3.clone()))
            .collect();
        let metrics = m
            .metrics
            .iter()
            .filter(|(k, _)| !k.ends_with("per_s"))
            .map(|(k, v)| (k.clone(), format!("{v:.12e}")))
            .collect();
        out.insert(m.node.clone(), (files, metrics));
    }
    out
}

fn tracker(root: &Path) -> t2s::runs::Tracker {
    t2s::runs::Tracker::open(root).unwrap()
}

/// (node, name, has a step) → how many rows run 1 recorded.
fn metric_counts(root: &Path) -> BTreeMap<(String, String, bool), usize> {
    let mut out = BTreeMap::new();
    for m in tracker(root).metrics(1, false).unwrap() {
        *out.entry((m.node, m.name, m.step.is_some())).or_default() += 1;
    }
    out
}

fn step_metrics(root: &Path, run: i64, node: &str) -> usize {
    tracker(root)
        .metrics(run, false)
        .unwrap()
        .iter()
        .filter(|m| m.node == node && m.step.is_some())
        .count()
}

/// Issue 34: a search whose trials run as Slurm jobs proposes, halts and ends as the same
/// search run locally (the same trials, metrics and best), every node a job.
#[test]
fn a_search_on_slurm_ends_as_the_same_search_run_locally() {
    use super::search_run::{search_table, PIPELINE};
    let cluster = Cluster::start();
    let mut ends = Vec::new();
    for executor in ["local", "slurm"] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("search.yaml");
        std::fs::write(&file, PIPELINE).unwrap();
        let out = cluster
            .t2s(dir.path())
            .arg("run")
            .arg(&file)
            .args(["--executor", executor])
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{executor}\n{stdout}\n{stderr}");
        let execs = tracker(dir.path()).executions(1).unwrap();
        assert!(
            execs.iter().all(|e| e.exec.executor == executor),
            "{execs:?}"
        );
        let nodes: std::collections::BTreeSet<String> =
            execs.iter().map(|e| e.node.clone()).collect();
        ends.push((search_table(&stderr), nodes));
    }
    assert_eq!(ends[0], ends[1]);
    assert_eq!(
        ends[1].1.iter().filter(|n| n.starts_with("fit[")).count(),
        8
    );
}

#[test]
fn slurm_executor_runs_the_smoke_pipeline_caches_resumes_and_reports_failures() {
    let cluster = Cluster::start();
    let t_all = Instant::now();

    // 1. The same pipeline, local and on Slurm: same results, every node a job.
    let local = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    run_ok(t2s(local.path()).arg("run").arg(smoke()).arg("-q"));
    let local_run = t0.elapsed();
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let t0 = Instant::now();
    let out = run_ok(
        cluster
            .t2s(root)
            .arg("run")
            .arg(smoke())
            .args(["--executor", "slurm", "-q"]),
    );
    let first = t0.elapsed();
    assert!(
        out.contains("17 ran, 0 resumed, 0 cached, 0 failed"),
        "{out}"
    );
    let execs = tracker(root).executions(1).unwrap();
    assert_eq!(execs.len(), 17, "{execs:?}");
    let mut ids = std::collections::BTreeSet::new();
    for e in &execs {
        assert_eq!(e.exec.executor, "slurm", "{e:?}");
        assert_eq!(e.exec.state.as_deref(), Some("COMPLETED"), "{e:?}");
        let log = Path::new(e.exec.log.as_deref().unwrap());
        let log_text = std::fs::read_to_string(log).unwrap();
        assert!(log_text.contains("t2s exec-node: node"), "{log_text}");
        ids.insert(e.exec.job_id.clone().unwrap());
    }
    assert_eq!(ids.len(), 17, "one job per node: {ids:?}");
    assert_eq!(
        results(root),
        results(local.path()),
        "slurm and local results differ"
    );
    // Every metric (training curves included) reaches the tracking DB through the controller:
    // per node, as many rows as the local run recorded.
    assert!(step_metrics(root, 1, "base") > 0, "no training curve");
    assert_eq!(metric_counts(root), metric_counts(local.path()));
    let show = run_ok(cluster.t2s(root).args(["show", "1"]));
    assert!(
        show.contains("jobs:") && show.contains("slurm job") && show.contains("COMPLETED"),
        "{show}"
    );

    // 2. Everything cached: no job.
    let t2 = Instant::now();
    let out = run_ok(
        cluster
            .t2s(root)
            .arg("run")
            .arg(smoke())
            .args(["--executor", "slurm", "-q"]),
    );
    assert!(out.contains("0 ran, 0 resumed, 17 cached"), "{out}");
    assert!(tracker(root).executions(2).unwrap().is_empty());
    assert!(!root.join("experiments/slurm/2").exists());
    let cached_run = t2.elapsed();

    // 3. scancel of a training job after its first checkpoint, then a rerun resumes it.
    let t3 = Instant::now();
    let longer = [
        "--until",
        "base",
        "--set",
        "base.max_steps=48",
        "--set",
        "base.save_steps=2",
        "--set",
        "base.eval_steps=24",
        "--executor",
        "slurm",
        "-q",
    ];
    let child = cluster
        .t2s(root)
        .arg("run")
        .arg(smoke())
        .args(longer)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = wait_for_checkpoint_then_job(root, 3);
    cluster.scancel(&job);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert_eq!(statuses(&stdout)["base"], "failed", "{stdout}");
    let log = root.join("experiments/slurm/3/base/job.log");
    for want in [
        format!("slurm job {job} CANCELLED"),
        format!("log: {}", log.display()),
        "resume".to_string(),
    ] {
        assert!(stderr.contains(&want), "no {want:?} in:\n{stderr}");
    }
    let execs = tracker(root).executions(3).unwrap();
    assert_eq!(execs[0].exec.state.as_deref(), Some("CANCELLED"));

    // The controller itself dies (kill -9) while its job runs: the job is orphaned.
    let mut controller = cluster
        .t2s(root)
        .arg("run")
        .arg(smoke())
        .args(longer)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let orphan = wait_for_running_job(root, 4);
    controller.kill().unwrap();
    controller.wait().unwrap();
    // The next run cancels that orphan before it submits its own job; Ctrl-C of this run
    // then cancels its job in turn.
    let interrupted = cluster
        .t2s(root)
        .arg("run")
        .arg(smoke())
        .args(longer)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job5 = wait_for_running_job(root, 5);
    let sigint = Command::new("kill")
        .args(["-INT", &interrupted.id().to_string()])
        .status()
        .unwrap();
    assert!(sigint.success());
    let out = interrupted.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains(&format!("cancelled slurm job {orphan} (node base of run 4")),
        "{stderr}"
    );
    assert_eq!(statuses(&stdout)["base"], "interrupted", "{stdout}");
    let state = |run: i64| tracker(root).executions(run).unwrap()[0].exec.clone();
    assert_eq!(state(4).state.as_deref(), Some("CANCELLED"));
    assert_eq!(state(5).job_id.as_deref(), Some(job5.as_str()));
    assert_eq!(state(5).state.as_deref(), Some("CANCELLED"));
    // Then a rerun resumes.
    let out = run_ok(cluster.t2s(root).arg("run").arg(smoke()).args(longer));
    assert_eq!(statuses(&out)["base"], "resumed", "{out}");
    assert!(out.contains("0 ran, 1 resumed"), "{out}");
    let resume_phase = t3.elapsed();

    // 4. A node failing inside its job; the independent branch completes.
    let t4 = Instant::now();
    let pipeline = root.join("failing.yaml");
    std::fs::write(
        &pipeline,
        "name: failing
settings: {executor: slurm}
stages:
  bad:
    kind: command
    params: {cmd: 'echo about to fail >&2; exit 3'}
  after_bad:
    kind: command
    needs: [bad]
    params: {cmd: 'true'}
  good:
    kind: command
    params: {cmd: 'echo ok > $T2S_OUT/ok.txt', outs: [ok.txt]}
  after_good:
    kind: command
    needs: [good]
    params: {cmd: 'true'}
",
    )
    .unwrap();
    let out = cluster
        .t2s(root)
        .arg("run")
        .arg(&pipeline)
        .args(["--jobs", "1", "-q"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    let st = statuses(&stdout);
    assert_eq!(st["bad"], "failed", "{stdout}");
    assert_eq!(st["after_bad"], "skipped", "{stdout}");
    assert_eq!(st["good"], "ran", "{stdout}");
    assert_eq!(st["after_good"], "ran", "{stdout}");
    let run = 7;
    let bad = tracker(root)
        .executions(run)
        .unwrap()
        .into_iter()
        .find(|e| e.node == "bad")
        .unwrap();
    let (job, log) = (bad.exec.job_id.unwrap(), bad.exec.log.unwrap());
    assert_eq!(bad.exec.state.as_deref(), Some("FAILED"));
    for want in [
        format!("slurm job {job} FAILED"),
        format!("log: {log}"),
        "command failed with exit status 3".to_string(),
        "about to fail".to_string(),
    ] {
        assert!(stderr.contains(&want), "no {want:?} in:\n{stderr}");
    }
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("command failed with exit status 3"));
    eprintln!(
        "timings: local smoke run {:.1}s, slurm smoke run {:.1}s, cached slurm rerun {:.1}s, \
         scancel/kill/resume phase {:.1}s, failing pipeline {:.1}s, whole test {:.1}s",
        local_run.as_secs_f64(),
        first.as_secs_f64(),
        cached_run.as_secs_f64(),
        resume_phase.as_secs_f64(),
        t4.elapsed().as_secs_f64(),
        t_all.elapsed().as_secs_f64()
    );
}

/// Wait until node `base` of run `run` has a checkpoint in its resume area; its job id.
fn wait_for_checkpoint_then_job(root: &Path, run: i64) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no checkpoint within 120 s");
        let job = t2s::runs::Tracker::open(root)
            .ok()
            .and_then(|t| t.executions(run).ok())
            .and_then(|e| e.into_iter().find(|e| e.node == "base"))
            .and_then(|e| e.exec.job_id);
        let key = job.as_ref().and_then(|_| {
            std::fs::read_to_string(root.join(format!("experiments/slurm/{run}/base/spec.json")))
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .and_then(|v| v["key"].as_str().map(str::to_string))
        });
        if let (Some(job), Some(key)) = (job, key) {
            let partial = root.join("artifacts/v1/partial").join(key);
            let ckpt = std::fs::read_dir(partial)
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| f.file_name().to_string_lossy().starts_with("checkpoint-"));
            if ckpt {
                return job;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until node `base` of run `run` has a job Slurm runs; its id.
fn wait_for_running_job(root: &Path, run: i64) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no running job within 120 s");
        let running = t2s::runs::Tracker::open(root)
            .ok()
            .and_then(|t| t.executions(run).ok())
            .and_then(|e| e.into_iter().find(|e| e.node == "base"))
            .filter(|e| e.exec.state.as_deref() == Some("RUNNING"));
        if let Some(job) = running.and_then(|e| e.exec.job_id) {
            return job;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A PATH without Slurm's commands.
fn no_slurm_path() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn without_slurm_the_slurm_executor_fails_at_once_with_what_to_do() {
    let root = tempfile::tempdir().unwrap();
    let path = no_slurm_path();
    let t0 = Instant::now();
    let out = t2s(root.path())
        .arg("run")
        .arg(smoke())
        .args(["--executor", "slurm"])
        .env("PATH", path.path())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(
        stderr.contains("`sbatch` is not on PATH") && stderr.contains("--executor local"),
        "{stderr}"
    );
    assert!(
        !root.path().join("experiments/t2s.db").exists(),
        "nothing may run or be recorded"
    );
}

#[test]
fn dry_run_prints_the_sbatch_commands_without_slurm() {
    let root = tempfile::tempdir().unwrap();
    let path = no_slurm_path();
    let file = root.path().join("res.yaml");
    std::fs::write(
        &file,
        "name: res
settings:
  executor: slurm
  slurm: {partition: gpu, time: '02:00:00'}
stages:
  a:
    kind: command
    params: {cmd: 'true'}
    slurm: {gpus: 1, mem: 16G, extra_args: ['--qos=high']}
  b:
    kind: command
    needs: [a]
    params: {cmd: 'true'}
",
    )
    .unwrap();
    let out = run_ok(
        t2s(root.path())
            .arg("run")
            .arg(&file)
            .arg("--dry-run")
            .env("PATH", path.path()),
    );
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("sbatch ")).collect();
    let dir = root.path().join("experiments/slurm/<run>");
    assert_eq!(
        lines,
        [
            format!(
                "sbatch --parsable --job-name=t2s:res:a '--output={}/a/job.log' --chdir={} \
                 --export=ALL --partition=gpu --gres=gpu:1 --mem=16G --time=02:00:00 --qos=high '{}/a/job.sh'",
                dir.display(),
                root.path().display(),
                dir.display()
            ),
            format!(
                "sbatch --parsable --job-name=t2s:res:b '--output={}/b/job.log' --chdir={} \
                 --export=ALL --partition=gpu --time=02:00:00 '{}/b/job.sh'",
                dir.display(),
                root.path().display(),
                dir.display()
            ),
        ],
        "{out}"
    );
    // `--executor local` overrides the pipeline's `settings.executor`.
    let out =
        run_ok(
            t2s(root.path())
                .arg("run")
                .arg(&file)
                .args(["--dry-run", "--executor", "local"]),
        );
    assert!(!out.contains("sbatch"), "{out}");
}
