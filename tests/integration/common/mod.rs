//! Helpers shared by the integration tests: a temp project holding a copy of
//! `pipelines/examples` (the 11-node command pipeline), the real `t2s` binary, and a `python3`
//! shim on PATH that logs which node ran a command (and its pid) before running Python.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The repository (this package's directory) as `cargo test` reports it at run time: a test
/// binary reused from a shared target dir may have been built in another checkout, whose
/// compile-time path is gone. Falls back to the compile-time path outside `cargo test`.
pub fn repo_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

pub struct Project {
    pub dir: tempfile::TempDir,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "__pycache__" {
                copy_dir(&e.path(), &target);
            }
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The Python the shim runs: `$PYTHON`, else the first `python3` on PATH.
fn real_python() -> String {
    if let Ok(p) = std::env::var("PYTHON") {
        if Path::new(&p).is_file() {
            return p;
        }
    }
    "python3".to_string()
}

/// kill -9 a `t2s` started in a process group of its own, and the commands it started (which
/// run in process groups of their own, their pids logged by the shim), as a machine crash would.
pub fn kill_everything(p: &Project, child: &mut std::process::Child) {
    let pgid = child.id();
    let _ = std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{pgid}")])
        .status();
    let _ = child.wait();
    let pids = std::fs::read_to_string(p.root().join("pids.log")).unwrap_or_default();
    for pid in pids.lines() {
        let _ = std::process::Command::new("kill")
            .args(["-9", "--", &format!("-{pid}"), pid])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Project {
    /// A temp root with `pipe/` = a copy of `pipelines/examples` and the python shim.
    pub fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let examples = repo_dir().join("pipelines/examples");
        copy_dir(&examples, &dir.path().join("pipe"));
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let shim = bin.join("python3");
        // Resolve the real interpreter before our shim shadows `python3` on PATH.
        let python = which(&real_python()).expect("python3 is needed by the example pipeline");
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\necho \"$T2S_NODE\" >> \"{log}\"\necho $$ >> \"{pids}\"\nexec \"{py}\" \"$@\"\n",
                log = dir.path().join("commands.log").display(),
                pids = dir.path().join("pids.log").display(),
                py = python.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        Project { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn pipeline(&self) -> PathBuf {
        self.root().join("pipe/commands.yaml")
    }

    fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.root().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// `t2s --root <root> ARGS` with the shim on PATH.
    pub fn t2s(&self) -> Command {
        let mut c = Command::cargo_bin("t2s").unwrap();
        c.arg("--root")
            .arg(self.root())
            .env("PATH", self.path_env())
            .env_remove("T2S_ROOT")
            .env_remove("RUST_LOG")
            .current_dir(self.root());
        c
    }

    /// The same as a std command (for spawning without waiting).
    pub fn t2s_std(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("t2s"));
        c.arg("--root")
            .arg(self.root())
            .env("PATH", self.path_env())
            .env_remove("T2S_ROOT")
            .env_remove("RUST_LOG")
            .current_dir(self.root());
        c
    }

    /// `t2s run pipe/commands.yaml --jobs 4 EXTRA`, asserting success; returns stdout.
    pub fn run_ok(&self, extra: &[&str]) -> String {
        let out = self
            .t2s()
            .arg("run")
            .arg(self.pipeline())
            .args(["--jobs", "4"])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "t2s run failed\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Node ids the shim logged, in order.
    pub fn commands_run(&self) -> Vec<String> {
        std::fs::read_to_string(self.root().join("commands.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn clear_log(&self) {
        let _ = std::fs::remove_file(self.root().join("commands.log"));
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.root().join("artifacts/v1/objects")
    }

    /// node id → (key, file → blake3) of every committed object.
    pub fn objects(&self) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(self.objects_dir()).unwrap() {
            let dir = e.unwrap().path();
            let m = t2s::cache::Manifest::read(&dir).unwrap();
            let files = m
                .files
                .iter()
                .map(|(k, v)| (k.clone(), v.blake3.clone()))
                .collect();
            out.insert(m.node.clone(), (m.key.clone(), files));
        }
        out
    }

    /// The object dir of the latest object produced by `node`.
    pub fn object_of(&self, node: &str) -> PathBuf {
        let (key, _) = self.objects().remove(node).expect("node has an object");
        self.objects_dir().join(key)
    }

    /// Full blake3 check of every committed object; panics naming the first bad one.
    pub fn verify_all_objects(&self) {
        for e in std::fs::read_dir(self.objects_dir()).unwrap() {
            let dir = e.unwrap().path();
            let m = t2s::cache::Manifest::read(&dir).unwrap();
            let problems = m.check_full(&dir);
            assert!(
                problems.is_empty(),
                "object {} is bad: {problems:?}",
                dir.display()
            );
        }
    }
}

/// Lines of `t2s run` stdout: node id → status.
pub fn statuses(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter(|l| !l.starts_with("run "))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let status = w.next()?.to_string();
            let node = w.next()?.to_string();
            Some((node, status))
        })
        .collect()
}

impl Project {
    /// Whether some node's partial area holds a `ckpt-*.json` (train.py writes them
    /// atomically): a trainer is mid-way.
    pub fn has_checkpoint(&self) -> bool {
        let partial = self.root().join("artifacts/v1/partial");
        std::fs::read_dir(partial)
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| {
                std::fs::read_dir(d.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|f| f.file_name().to_string_lossy().starts_with("ckpt-"))
            })
    }
}

pub const NODES: [&str; 11] = [
    "load",
    "eda",
    "preprocess",
    "split",
    "train[lora_r=4]",
    "train[lora_r=8]",
    "train[lora_r=16]",
    "evaluate[lora_r=4]",
    "evaluate[lora_r=8]",
    "evaluate[lora_r=16]",
    "report",
];

pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Make a read-only artifact file writable and replace its content.
pub fn overwrite(path: &Path, text: &str) {
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The worker binary next to the test binaries (built by `cargo test --workspace`), or
/// `$T2S_WORKER`.
pub fn worker() -> PathBuf {
    if let Some(p) = std::env::var_os("T2S_WORKER") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let w = exe.parent().unwrap().parent().unwrap().join("t2s-worker");
    assert!(
        w.is_file(),
        "t2s-worker is not built next to the tests: run `cargo test --workspace` (it builds both binaries)"
    );
    w
}

/// For a test that changes process-wide state (environment variables, the working directory,
/// the hub pins a process makes once): the first call reruns the test `path` (`module::name`,
/// as `module_path!()` gives it) alone in a child process of this test binary and returns true,
/// so the caller returns; in that child it returns false and the test goes on. The other
/// tests of the binary, running beside it in threads, never see the change.
pub fn rerun_alone(path: &str) -> bool {
    const CHILD: &str = "T2S_TEST_ALONE";
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    // `integration::data_load::name` → the harness's `data_load::name`.
    let name = path.split_once("::").map_or(path, |(_, rest)| rest);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} failed alone:\n{text}");
    assert!(
        text.contains("1 passed"),
        "{name} did not run alone:\n{text}"
    );
    true
}
