//! The smoke pipeline (the quickstart's DAG at toy sizes) end to end through the real binaries:
//! every stage kind does its real work (generated data, BPE tokenizer, preprocess, split, a tiny
//! Gemma-3 trained from scratch in the libtorch worker, LoRA r ∈ {4, 8, 16}, generation +
//! SQLite scoring, report). The run succeeds, the report has every section, and a second run
//! is all cache hits.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    common::repo_dir()
}

/// The worker binary next to the test binary's target dir (built by `cargo test --workspace`).
fn worker() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("T2S_WORKER") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let w = dir.join("t2s-worker");
    w.is_file().then_some(w)
}

/// Run `cmd`, asserting it succeeded (its stderr in the failure message); its output.
fn succeeds(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn t2s(root: &std::path::Path, worker: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_t2s"));
    c.current_dir(root)
        .env("T2S_WORKER", worker)
        .env("T2S_ROOT", root);
    c
}

/// The HTML report as a reader's browser shows it: Debian's chromium, headless, through
/// scripts/check_report_browser.py (Playwright). No console or page errors, no failed loads,
/// every figure decoded and laid out; the full-page screenshot is kept for a human to look at.
fn open_in_headless_chromium(html: &std::path::Path) {
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("smoke-report.png");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(repo().join("scripts/check_report_browser.py"))
        .arg(html)
        .arg("--screenshot")
        .arg(&shot)
        // metrics, loss, by-complexity, and the EDA figures.
        .args(["--min-images", "5"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the report has problems in headless Chromium (needs chromium and playwright: \
         T2S_FOR_TESTS=1 bash scripts/setup.sh)\n{stdout}\n{stderr}"
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    eprintln!("report screenshot: {}", shot.display());
}

#[test]
fn smoke_pipeline_runs_end_to_end_then_is_all_cached() {
    let Some(worker) = worker() else {
        panic!("t2s-worker is not built next to the tests: run `cargo test --workspace` (it builds both binaries)");
    };
    let root = tempfile::tempdir().unwrap();
    let pipeline = repo().join("pipelines/smoke.yaml");

    let out = t2s(root.path(), &worker)
        .arg("run")
        .arg(&pipeline)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "smoke run failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("17 ran, 0 resumed, 0 cached, 0 failed"),
        "{stdout}"
    );

    let report_dir = root.path().join("experiments/smoke/1");
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    for section in t2s::report::markdown::SECTIONS {
        assert!(
            md.contains(&format!("## {section}")),
            "report lacks section {section}:\n{md}"
        );
    }
    for variant in ["| base |", "| lora_r=4 |", "| lora_r=8 |", "| lora_r=16 |"] {
        assert!(md.contains(variant), "metrics table lacks {variant}:\n{md}");
    }
    assert!(
        md.contains("lora_r=4 ") && md.contains("base on execution accuracy"),
        "{md}"
    );
    let html = std::fs::read_to_string(report_dir.join("report.html")).unwrap();
    assert!(
        html.contains("data:image/svg+xml;base64,") && html.contains("data:image/png;base64,"),
        "figures must be embedded"
    );
    for png in ["metrics.png", "loss.png", "by_complexity.png"] {
        let bytes = std::fs::read(report_dir.join(png)).unwrap();
        assert_eq!(&bytes[..4], b"\x89PNG", "{png}");
    }
    open_in_headless_chromium(&report_dir.join("report.html"));
    // No artifact holds this project's path: each is the same bytes wherever it is computed,
    // moved or fetched to (EDA figures travel with the report, adapters name their base by
    // its object name).
    let root_path = root.path().display().to_string();
    for e in std::fs::read_dir(root.path().join("artifacts/v1/objects")).unwrap() {
        let dir = e.unwrap().path();
        for file in t2s::cache::manifest::list_files(&dir).unwrap().values() {
            let bytes = std::fs::read(file).unwrap();
            assert!(
                !bytes
                    .windows(root_path.len())
                    .any(|w| w == root_path.as_bytes()),
                "{} holds the project's path {root_path}",
                file.display()
            );
        }
    }

    let again = t2s(root.path(), &worker)
        .arg("run")
        .arg(&pipeline)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(
        stdout.contains("0 ran, 0 resumed, 17 cached"),
        "second run must be all cache hits:\n{stdout}"
    );

    // `t2s report` re-renders from the tracking DB for any past run.
    succeeds(t2s(root.path(), &worker).args(["report", "1"]));

    // `t2s export` by node name: the adapter from the tracking DB, the base from its config.
    let merged = root.path().join("exports/r4");
    succeeds(
        t2s(root.path(), &worker)
            .args(["export", "--node", "train[lora_r=4]", "--out"])
            .arg(&merged),
    );
    for f in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(merged.join(f).is_file(), "export lacks {f}");
    }
    // t2s's records of how the base was made stay out of the export.
    for f in ["MANIFEST.json", "train_result.json", "trainer_state.json"] {
        assert!(!merged.join(f).exists(), "export holds {f}");
    }
    let unknown = t2s(root.path(), &worker)
        .args(["export", "--node", "train[lora_r=5]", "--out"])
        .arg(root.path().join("exports/r5"))
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("no such node") && err.contains("train[lora_r=4]"),
        "{err}"
    );
    let full = t2s(root.path(), &worker)
        .args(["export", "--node", "base", "--out"])
        .arg(root.path().join("exports/base"))
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(2));
    let err = String::from_utf8_lossy(&full.stderr);
    assert!(err.contains("holds no LoRA adapter"), "{err}");

    // `t2s infer --node`: an adapter on its base, or a full fine-tune's model, by node name;
    // greedy, so the merged export answers exactly as the adapter on its base does.
    let infer = |args: &[&str]| {
        let o = t2s(root.path(), &worker)
            .args(["infer", "--prompt", "How many users are there?"])
            .args(["--context", "CREATE TABLE users (id INTEGER);"])
            .args(["--max-new-tokens", "16", "--device", "cpu", "--raw"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let by_node = infer(&["--node", "train[lora_r=4]"]);
    let merged_model = merged.to_str().unwrap();
    assert_eq!(infer(&["--model", merged_model]), by_node);
    infer(&["--node", "base"]);
}

/// node id → (key, file → blake3) of the objects under `root`.
fn objects(root: &std::path::Path) -> std::collections::BTreeMap<String, (String, Vec<String>)> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(root.join("artifacts/v1/objects")).unwrap() {
        let m = t2s::cache::Manifest::read(&e.unwrap().path()).unwrap();
        let files = m
            .files
            .iter()
            .map(|(f, e)| format!("{f} {}", e.blake3))
            .collect();
        out.insert(m.node.clone(), (m.key.clone(), files));
    }
    out
}

#[test]
fn trained_adapters_do_not_depend_on_where_the_project_lives() {
    let Some(worker) = worker() else {
        panic!("t2s-worker not built: run `cargo test --workspace`");
    };
    let pipeline = repo().join("pipelines/smoke.yaml");
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for root in [one.path(), two.path()] {
        succeeds(
            t2s(root, &worker)
                .arg("run")
                .arg(&pipeline)
                .args(["--until", "train[lora_r=4]"]),
        );
    }
    // The adapter names its base by the project-relative object name, not by this root's path:
    // two projects produce the same bytes, so their downstream keys agree too.
    let (a, b) = (objects(one.path()), objects(two.path()));
    assert_eq!(a["train[lora_r=4]"], b["train[lora_r=4]"]);
    let adapter = one
        .path()
        .join("artifacts/v1/objects")
        .join(&a["train[lora_r=4]"].0);
    let config = std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap();
    assert!(
        config.contains(&format!(
            "\"base_model_name_or_path\": \"artifacts/v1/objects/{}\"",
            a["base"].0
        )),
        "{config}"
    );

    // A third project pulls the adapter and its base alone; `export --adapter`, run from
    // elsewhere, finds the base in that project's store.
    let remote = tempfile::tempdir().unwrap();
    succeeds(
        t2s(one.path(), &worker)
            .arg("push")
            .arg(&pipeline)
            .arg("--remote")
            .arg(remote.path()),
    );
    let three = tempfile::tempdir().unwrap();
    let pull = succeeds(
        t2s(three.path(), &worker)
            .arg("pull")
            .arg(&pipeline)
            .arg("--remote")
            .arg(remote.path())
            .args(["--only", "train[lora_r=4]", "--only", "base"]),
    );
    let stdout = String::from_utf8_lossy(&pull.stdout);
    assert!(stdout.contains("fetched 2 objects"), "{stdout}");
    let fetched = three
        .path()
        .join("artifacts/v1/objects")
        .join(&a["train[lora_r=4]"].0);
    let exported = three.path().join("merged");
    succeeds(
        t2s(three.path(), &worker)
            .current_dir(repo())
            .args(["export", "--adapter"])
            .arg(&fetched)
            .arg("--out")
            .arg(&exported),
    );
    assert!(exported.join("model.safetensors").is_file());
}
