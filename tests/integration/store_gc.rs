//! Issue 30, causes 1, 6 and 7: `gc` against runs (what the latest run used stays, inputs a
//! live run reads stay, two active runs both succeed), a pipeline `name` that is a path, and
//! outputs that are links or FIFOs. A two-node pipeline of shell commands: `a` writes `$X`,
//! `b` waits for a gate file and then copies `a`'s output, so a test can hold a run mid-node.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::{statuses, Project};

struct Gated {
    p: Project,
}

impl Gated {
    fn new() -> Gated {
        let p = Project::new();
        let gate = p.root().join("gate");
        std::fs::write(
            p.root().join("gated.yaml"),
            format!(
                "name: gated\n\
                 stages:\n  \
                   a:\n    kind: command\n    params:\n      \
                     cmd: printf '%s' \"$X\" > \"$T2S_OUT/a.txt\"\n      \
                     outs: [a.txt]\n      env: {{X: \"1\"}}\n  \
                   b:\n    kind: command\n    needs: [a]\n    params:\n      \
                     cmd: touch \"$GATE.waiting.$$\"; while [ ! -e \"$GATE\" ]; do sleep 0.02; done; \
                          cat \"$T2S_INPUT_A/a.txt\" > \"$T2S_OUT/b.txt\"\n      \
                     outs: [b.txt]\n      env: {{GATE: \"{}\"}}\n",
                gate.display()
            ),
        )
        .unwrap();
        Gated { p }
    }

    fn gate(&self) -> PathBuf {
        self.p.root().join("gate")
    }

    fn open(&self) {
        std::fs::write(self.gate(), "").unwrap();
    }

    fn close(&self) {
        let _ = std::fs::remove_file(self.gate());
        for e in std::fs::read_dir(self.p.root()).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("gate.waiting.") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }

    /// `t2s run gated.yaml` with `X` and `extra` args, started in the background.
    fn spawn(&self, x: &str, extra: &[&str]) -> Child {
        self.p
            .t2s_std()
            .arg("run")
            .arg(self.p.root().join("gated.yaml"))
            .args(["--set", &format!("a.env={{X: \"{x}\"}}")])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn run(&self, x: &str, extra: &[&str]) -> String {
        ok(self.spawn(x, extra).wait_with_output().unwrap())
    }

    /// Wait until `n` runs sit at `b`'s gate.
    fn wait_for_waiting(&self, n: usize) {
        loop {
            let waiting = std::fs::read_dir(self.p.root())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("gate.waiting."))
                .count();
            if waiting >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn gc(&self) -> String {
        let out = self.p.t2s().arg("gc").output().unwrap();
        ok(out)
    }
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn gc_keeps_what_the_latest_run_used_cache_hits_included() {
    let g = Gated::new();
    g.open();
    g.run("1", &[]);
    g.run("2", &[]);
    // Run A again: all cached. Its objects are what the latest run used.
    let again = g.run("1", &[]);
    assert!(statuses(&again).values().all(|s| s == "cached"), "{again}");
    let gc = g.gc();
    assert!(gc.contains("removed 2 objects"), "the X=2 objects go: {gc}");
    let after = g.run("1", &[]);
    assert!(
        statuses(&after).values().all(|s| s == "cached"),
        "gc removed objects the latest run used: {after}"
    );
    g.p.verify_all_objects();
}

#[test]
fn gc_during_a_run_leaves_the_inputs_it_reads() {
    let g = Gated::new();
    g.open();
    g.run("1", &[]);
    g.run("2", &[]);
    g.close();
    // `a` is a cache hit of the X=1 object (no ref named it any more); `b` reads it later.
    let run = g.spawn("1", &["--force", "b"]);
    g.wait_for_waiting(1);
    g.gc();
    g.open();
    let out = ok(run.wait_with_output().unwrap());
    assert_eq!(statuses(&out)["b"], "ran", "{out}");
    // Two `b` objects exist now (X=1 and X=2; gc ran before this run's commit moved the ref),
    // so look for the X=1 one among all of them rather than take whichever is listed last.
    let contents: Vec<String> = std::fs::read_dir(g.p.objects_dir())
        .unwrap()
        .flatten()
        .filter(|e| t2s::cache::Manifest::read(&e.path()).unwrap().node == "b")
        .map(|e| std::fs::read_to_string(e.path().join("b.txt")).unwrap())
        .collect();
    assert!(contents.iter().any(|c| c == "1"), "{contents:?}");
    g.p.verify_all_objects();
}

#[test]
fn gc_while_two_runs_are_active_both_succeed() {
    let g = Gated::new();
    let (r3, r4) = (g.spawn("3", &[]), g.spawn("4", &[]));
    g.wait_for_waiting(2);
    // Both runs committed `a` (one ref lost to the other) and are computing `b`.
    let gc = g.gc();
    assert!(gc.contains("removed 0 objects"), "{gc}");
    g.open();
    for (run, x) in [(r3, "3"), (r4, "4")] {
        let out = ok(run.wait_with_output().unwrap());
        assert_eq!(statuses(&out)["b"], "ran", "{out}");
        let found: Vec<String> = std::fs::read_dir(g.p.objects_dir())
            .unwrap()
            .flatten()
            .map(|e| e.path().join("b.txt"))
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect();
        assert!(found.contains(&x.to_string()), "{found:?}");
    }
    g.p.verify_all_objects();
}

fn run_file(p: &Project, file: &Path) -> Output {
    p.t2s().arg("run").arg(file).output().unwrap()
}

#[test]
fn a_pipeline_name_that_is_a_path_is_refused_where_it_is_written() {
    let p = Project::new();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("abs");
    for name in [
        target.display().to_string(),
        "../x".to_string(),
        "a/b".into(),
    ] {
        let file = p.root().join("named.yaml");
        std::fs::write(
            &file,
            format!(
                "description: d\nname: \"{name}\"\nstages:\n  \
                 a:\n    kind: command\n    params: {{cmd: \"true\"}}\n"
            ),
        )
        .unwrap();
        let out = run_file(&p, &file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains("named.yaml:2") && stderr.contains("pipeline name"),
            "{name}: {stderr}"
        );
    }
    assert!(!target.exists());
    assert!(!p.root().join("x").exists());
    assert!(!p.root().join("experiments").exists(), "nothing ran");
}

#[test]
fn outputs_that_are_links_or_fifos_are_refused_at_commit() {
    let p = Project::new();
    let cases = [
        ("ln -s /etc/passwd \"$T2S_OUT/o\"", "a symbolic link"),
        ("ln -s /dev/zero \"$T2S_OUT/o\"", "a symbolic link"),
        (
            "mkdir \"$T2S_OUT/o\" && ln -s /etc \"$T2S_OUT/o/etc\"",
            "a symbolic link",
        ),
        ("mkfifo \"$T2S_OUT/o\"", "a FIFO"),
    ];
    for (i, (cmd, what)) in cases.iter().enumerate() {
        let file = p.root().join(format!("out{i}.yaml"));
        std::fs::write(
            &file,
            format!(
                "stages:\n  a:\n    kind: command\n    params:\n      \
                 cmd: '{cmd}'\n      outs: [o]\n"
            ),
        )
        .unwrap();
        let out = run_file(&p, &file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {stderr}");
        assert!(
            stderr.contains(what) && stderr.contains("only regular files and directories"),
            "{cmd}: {stderr}"
        );
        assert_eq!(
            std::fs::read_dir(p.objects_dir()).unwrap().count(),
            0,
            "{cmd}: nothing committed"
        );
        let staging = p.root().join("artifacts/v1/staging");
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0, "{cmd}");
    }
}
