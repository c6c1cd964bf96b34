//! The remote cache (a directory, as a team share or NFS mount would be): what one machine
//! computed and pushed, another fetches instead of computing; a damaged or unsafe remote object
//! is refused and the node computed; `push` / `pull` / `status` agree with `run`.

use crate::common;

use std::path::{Path, PathBuf};

use common::{kill_everything, statuses, Project, NODES};

fn remote_objects(remote: &Path) -> Vec<String> {
    let mut keys: Vec<String> = std::fs::read_dir(remote.join("v1/objects"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    keys
}

/// The remote object directory holding `node`'s output.
fn remote_object_of(remote: &Path, node: &str) -> PathBuf {
    remote_objects(remote)
        .into_iter()
        .map(|k| remote.join("v1/objects").join(k))
        .find(|dir| t2s::cache::Manifest::read(dir).unwrap().node == node)
        .unwrap_or_else(|| panic!("no remote object of {node}"))
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// Run `cmd`, asserting it exited 0 (its stderr in the failure message); its stdout.
fn succeeds(cmd: &mut assert_cmd::Command) -> String {
    let (code, out, err) = output(cmd);
    assert_eq!(code, 0, "{err}");
    out
}

fn output(cmd: &mut assert_cmd::Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_second_machine_fetches_what_the_first_pushed_and_computes_nothing() {
    let remote = tempfile::tempdir().unwrap();
    let r = remote.path().to_str().unwrap();
    let a = Project::new();
    let first = a.run_ok(&["--remote", r, "--push"]);
    assert!(
        first.contains("pushed 11 objects"),
        "the first run pushes every node:\n{first}"
    );
    assert_eq!(remote_objects(remote.path()).len(), 11);

    let b = Project::new();
    let (code, status, _) = output(
        b.t2s()
            .arg("status")
            .arg(b.pipeline())
            .args(["--remote", r]),
    );
    assert_eq!(code, 0);
    assert!(
        status.contains("0 cached, 11 on the remote"),
        "status sees every node on the remote:\n{status}"
    );
    let (_, plan, _) =
        output(
            b.t2s()
                .arg("run")
                .arg(b.pipeline())
                .args(["--dry-run", "--remote", r]),
        );
    let fetches = plan
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("fetch"))
        .count();
    assert_eq!(
        fetches, 11,
        "the plan fetches every node, downstream keys included:\n{plan}"
    );

    let second = b.run_ok(&["--remote", r]);
    assert!(
        b.commands_run().is_empty(),
        "no command may run on the second machine: {:?}\n{second}",
        b.commands_run()
    );
    let st = statuses(&second);
    for node in NODES {
        assert_eq!(st[node], "cached", "{node}:\n{second}");
    }
    assert!(second.contains("fetched from the remote"), "{second}");
    // The same objects, byte for byte, and whole.
    assert_eq!(a.objects(), b.objects());
    b.verify_all_objects();

    // The tracking DB says where each output came from.
    let (_, show, _) = output(b.t2s().args(["show", "last"]));
    let fetched = show
        .split("fetched from a remote:")
        .nth(1)
        .unwrap_or_else(|| panic!("{show}"));
    for node in NODES {
        assert!(
            fetched
                .lines()
                .any(|l| l.split_whitespace().next() == Some(node) && l.contains(r)),
            "{node} in\n{show}"
        );
    }

    // From now on the second machine needs no remote.
    let third = b.run_ok(&["--no-remote"]);
    assert!(third.contains("0 ran, 0 resumed, 11 cached"), "{third}");
    assert!(b.commands_run().is_empty());
}

#[test]
fn a_damaged_or_unsafe_remote_object_is_refused_and_the_node_computed() {
    let remote = tempfile::tempdir().unwrap();
    let r = remote.path().to_str().unwrap();
    let a = Project::new();
    a.run_ok(&["--remote", r, "--push"]);

    // A flipped byte in one adapter, and a manifest whose file path leaves the object.
    let damaged = remote_object_of(remote.path(), "train[lora_r=8]");
    make_writable(&damaged);
    let adapter = damaged.join("adapter.json");
    let mut bytes = std::fs::read(&adapter).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&adapter, bytes).unwrap();
    let unsafe_dir = remote_object_of(remote.path(), "eda");
    make_writable(&unsafe_dir);
    let manifest = unsafe_dir.join("MANIFEST.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let files = m["files"].as_object_mut().unwrap();
    let entry = files.remove("eda.json").expect("eda writes eda.json");
    files.insert("../../escape.json".into(), entry);
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();

    let b = Project::new();
    let out = b.run_ok(&["--remote", r]);
    let mut ran = b.commands_run();
    ran.sort();
    assert_eq!(
        ran,
        vec!["eda".to_string(), "train[lora_r=8]".to_string()],
        "only the refused nodes are computed (their dependents' keys stay the same):\n{out}"
    );
    let st = statuses(&out);
    assert_eq!(st["train[lora_r=8]"], "ran", "{out}");
    assert_eq!(st["evaluate[lora_r=8]"], "cached", "{out}");
    assert!(
        out.contains("does not match its blake3") && out.contains("unsafe file path"),
        "each refusal says why:\n{out}"
    );
    assert!(!remote.path().join("v1/escape.json").exists());
    assert!(!b.root().join("artifacts/v1/escape.json").exists());
    b.verify_all_objects();
    // What was computed equals what the first machine computed (the stand-in is deterministic):
    // the damaged bytes never entered the store.
    assert_eq!(a.objects(), b.objects());

    // Repair: a push replaces the object with the unusable manifest; the damaged file needs
    // `--verify` to be seen (a push reads manifests, not every file); then nothing is refused.
    let out = succeeds(a.t2s().arg("push").arg(a.pipeline()).args(["--remote", r]));
    assert!(out.contains("pushed 1 objects"), "{out}");
    let out = succeeds(
        a.t2s()
            .arg("push")
            .arg(a.pipeline())
            .args(["--remote", r, "--verify"]),
    );
    assert!(out.contains("pushed 1 objects"), "{out}");
    let c = Project::new();
    let out = c.run_ok(&["--remote", r]);
    assert!(c.commands_run().is_empty(), "{out}");
    assert_eq!(a.objects(), c.objects());
}

#[test]
fn push_and_pull_commands_move_a_pipelines_outputs() {
    let remote = tempfile::tempdir().unwrap();
    let r = remote.path().to_str().unwrap();
    let a = Project::new();
    a.run_ok(&[]);

    let out = succeeds(
        a.t2s()
            .arg("push")
            .arg(a.pipeline())
            .args(["--remote", r, "--dry-run"]),
    );
    assert!(out.contains("would push 11 objects"), "{out}");
    assert!(
        remote_objects(remote.path()).is_empty(),
        "a dry run copies nothing"
    );

    let out = succeeds(a.t2s().arg("push").arg(a.pipeline()).env("T2S_REMOTE", r));
    assert!(out.contains("pushed 11 objects"), "{out}");
    let (_, again, _) = output(a.t2s().arg("push").arg(a.pipeline()).args(["--remote", r]));
    assert!(
        again.contains("pushed 0 objects (0 B), 11 already on the remote"),
        "{again}"
    );

    let b = Project::new();
    let out = succeeds(b.t2s().arg("pull").arg(b.pipeline()).args(["--remote", r]));
    assert!(out.contains("fetched 11 objects"), "{out}");
    let (code, status, _) = output(b.t2s().arg("status").arg(b.pipeline()).arg("-q"));
    assert_eq!(code, 0, "everything is cached after the pull:\n{status}");
    let run = b.run_ok(&[]);
    assert!(run.contains("0 ran, 0 resumed, 11 cached"), "{run}");
    assert!(b.commands_run().is_empty());
    assert_eq!(a.objects(), b.objects());
}

#[test]
fn pull_only_one_node_fetches_it_alone() {
    let remote = tempfile::tempdir().unwrap();
    let r = remote.path().to_str().unwrap();
    let a = Project::new();
    a.run_ok(&["--remote", r, "--push"]);

    let b = Project::new();
    let out = succeeds(b.t2s().arg("pull").arg(b.pipeline()).args([
        "--remote",
        r,
        "--only",
        "evaluate[lora_r=8]",
    ]));
    assert!(out.contains("fetched 1 objects"), "{out}");
    let got = b.objects();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        vec!["evaluate[lora_r=8]"],
        "only the named node, its key found from its inputs' outputs on the remote"
    );
    assert_eq!(got["evaluate[lora_r=8]"], a.objects()["evaluate[lora_r=8]"]);

    let (code, _, err) = output(b.t2s().arg("pull").arg(b.pipeline()).args([
        "--remote",
        r,
        "--only",
        "no_such_stage",
    ]));
    assert_eq!(code, 2);
    assert!(err.contains("--only no_such_stage"), "{err}");
}

#[test]
fn a_remote_that_is_not_there_is_a_usage_error_before_anything_runs() {
    let a = Project::new();
    let text = std::fs::read_to_string(a.pipeline()).unwrap();
    let with_remote = text.replacen(
        "stages:",
        "settings:\n  remote: ../no-such-share\n  push: true\n\nstages:",
        1,
    );
    std::fs::write(a.pipeline(), with_remote).unwrap();

    let (code, _, err) = output(a.t2s().arg("run").arg(a.pipeline()));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("settings.remote in") && err.contains("no-such-share"),
        "the error names the setting and the directory:\n{err}"
    );
    assert!(a.commands_run().is_empty());

    // Without the remote, `settings.push` has nothing to push to: also said at once.
    let (code, _, err) = output(a.t2s().arg("run").arg(a.pipeline()).arg("--no-remote"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs a remote"), "{err}");

    let (code, _, err) = output(a.t2s().arg("push").arg(a.pipeline()).arg("--no-remote"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no remote"), "{err}");

    // A wrong type in the file is a validation error with its line.
    std::fs::write(
        a.pipeline(),
        text.replacen("stages:", "settings:\n  remote: [a, b]\n\nstages:", 1),
    )
    .unwrap();
    let (code, _, err) = output(a.t2s().arg("status").arg(a.pipeline()));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("settings.remote") && err.contains("commands.yaml:10:"),
        "{err}"
    );
}

/// Three independent nodes, each writing `mib` MiB, so copies take long enough to be killed.
fn blob_pipeline(p: &Project, mib: usize) -> PathBuf {
    let mut text = String::from("name: blobs\nstages:\n");
    for i in 1..=3 {
        text.push_str(&format!(
            "  blob{i}:\n    kind: command\n    params:\n      cmd: python3 -c \"import os; \
             open(os.environ['T2S_OUT'] + '/blob.bin', 'wb').write(bytes([{i}]) * ({mib} << 20))\"\n      \
             outs: [blob.bin]\n"
        ));
    }
    let file = p.root().join("blobs.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Every object under `objects` is whole: its manifest is for its key and every file verifies.
fn assert_whole(objects: &Path) {
    for e in std::fs::read_dir(objects).into_iter().flatten() {
        let dir = e.unwrap().path();
        let m = t2s::cache::Manifest::read(&dir).unwrap();
        assert_eq!(dir.file_name().unwrap().to_string_lossy(), m.key);
        assert!(
            m.check_full(&dir).is_empty(),
            "{} is not whole",
            dir.display()
        );
    }
}

/// Run `cmd` for `ms` milliseconds, then kill -9 it and what it started.
fn kill_after(p: &Project, mut cmd: std::process::Command, ms: u64) {
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    kill_everything(p, &mut child);
}

#[test]
fn killed_pushes_and_fetches_leave_nothing_half_visible() {
    let remote = tempfile::tempdir().unwrap();
    let r = remote.path().to_str().unwrap();
    let objects = remote.path().join("v1/objects");

    // The first machine, killed at several moments while computing and pushing.
    let a = Project::new();
    let file = blob_pipeline(&a, 48);
    for ms in [150, 400, 700] {
        let mut run = a.t2s_std();
        run.arg("run").arg(&file).args(["--remote", r, "--push"]);
        kill_after(&a, run, ms);
        assert_whole(&objects);
        assert_whole(&a.objects_dir());
    }
    let out = a
        .t2s()
        .arg("run")
        .arg(&file)
        .args(["--remote", r, "--push"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(remote_objects(remote.path()).len(), 3);
    assert_whole(&objects);

    // The second machine, killed while fetching: what it has is whole, and the rerun fetches
    // the rest without computing anything.
    let b = Project::new();
    let file = blob_pipeline(&b, 48);
    for ms in [30, 80, 150] {
        let mut run = b.t2s_std();
        run.arg("run").arg(&file).args(["--remote", r]);
        kill_after(&b, run, ms);
        assert_whole(&b.objects_dir());
    }
    let out = b
        .t2s()
        .arg("run")
        .arg(&file)
        .args(["--remote", r])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("0 ran, 0 resumed, 3 cached"), "{stdout}");
    assert!(b.commands_run().is_empty(), "nothing is computed");
    assert_whole(&b.objects_dir());
    assert_eq!(a.objects(), b.objects());
}
