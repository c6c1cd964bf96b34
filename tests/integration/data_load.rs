//! Acceptance 2 and 3: the hub source from an offline HF cache, parquet == jsonl, and row
//! validation with quarantine and the bad-row threshold.

use crate::data_common;

use std::io::Write;
use std::path::Path;

use data_common::{jsonl_to_parquet, write_jsonl};
use t2s::data::builtin;
use t2s::data::hub::{GRETEL_FILES, GRETEL_REPO, GRETEL_REVISION};
use t2s::data::load::{load, read_loaded, write_output, LoadParams};

fn snapshot_dir(cache: &Path, rev: &str) -> std::path::PathBuf {
    cache
        .join(format!("datasets--{}", GRETEL_REPO.replace('/', "--")))
        .join("snapshots")
        .join(rev)
}

/// All hub checks in one test, alone in its process: they set the process-wide HF_HUB_CACHE.
#[test]
fn hub_source_offline_from_cache_layout() {
    if crate::common::rerun_alone(&format!(
        "{}::hub_source_offline_from_cache_layout",
        module_path!()
    )) {
        return; // it changes the process environment
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snap = snapshot_dir(&cache, commit);
    std::fs::create_dir_all(&snap).unwrap();
    let train = builtin::generate(3, 120);
    let test: Vec<_> = builtin::generate(4, 30)
        .into_iter()
        .map(|mut r| {
            r.id += 10_000;
            r
        })
        .collect();
    for (rows, k) in [(&train, &GRETEL_FILES[0]), (&test, &GRETEL_FILES[1])] {
        let j = tmp.path().join(format!("{}.jsonl", k.split));
        write_jsonl(&j, rows);
        jsonl_to_parquet(&j, &snap.join(k.name));
    }
    let refs = snap.parent().unwrap().parent().unwrap().join("refs");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::write(refs.join("main"), commit).unwrap();
    std::env::set_var("HF_HUB_CACHE", &cache);
    std::env::set_var("HF_HUB_OFFLINE", "1");

    // By ref name (refs/main → commit) and by commit hash directly.
    for rev in ["main", commit] {
        let mut p = LoadParams::new("hf://gretelai/synthetic_text_to_sql");
        p.revision = rev.to_string();
        p.offline = true;
        let l = load(&p).unwrap();
        assert_eq!(l.report.splits.get("train"), Some(&120));
        assert_eq!(l.report.splits.get("test"), Some(&30));
        let got_train: Vec<_> = l
            .rows
            .iter()
            .filter(|r| r.split == "train")
            .map(|r| r.row.clone())
            .collect();
        assert_eq!(got_train, train);
        assert!(l
            .report
            .files
            .iter()
            .all(|f| f.verified == Some(false) && f.sha256.is_some()));
    }

    // Missing file offline: a clear error naming repo, revision, file and the fixes.
    let mut p = LoadParams::new("hf://gretelai/synthetic_text_to_sql");
    p.revision = "ffffffffffffffffffffffffffffffffffffffff".into();
    p.offline = true;
    let e = format!("{:#}", load(&p).unwrap_err());
    for needle in [
        GRETEL_REPO,
        "ffffffffffffffffffffffffffffffffffffffff",
        "synthetic_text_to_sql_train.snappy.parquet",
        "HF_TOKEN",
        "hf download",
        "local file",
    ] {
        assert!(e.contains(needle), "error lacks {needle:?}: {e}");
    }

    // At the pinned revision, a file that is not the published one is refused.
    let pinned = snapshot_dir(&cache, GRETEL_REVISION);
    std::fs::create_dir_all(&pinned).unwrap();
    for k in &GRETEL_FILES {
        std::fs::copy(snap.join(k.name), pinned.join(k.name)).unwrap();
    }
    let mut p = LoadParams::new("hf://gretelai/synthetic_text_to_sql");
    p.offline = true;
    let e = format!("{:#}", load(&p).unwrap_err());
    assert!(
        e.contains("size mismatch") && e.contains(GRETEL_FILES[0].name),
        "{e}"
    );
}

#[test]
fn parquet_loads_identical_rows_to_its_jsonl_twin() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = builtin::generate(11, 250);
    let j = tmp.path().join("twin.jsonl");
    let pq = tmp.path().join("twin.parquet");
    write_jsonl(&j, &rows);
    jsonl_to_parquet(&j, &pq);
    let a = load(&LoadParams::new(j.to_str().unwrap())).unwrap();
    let b = load(&LoadParams::new(pq.to_str().unwrap())).unwrap();
    assert_eq!(a.rows.len(), 250);
    assert_eq!(a.rows, b.rows);
    assert_eq!(
        a.rows.iter().map(|r| r.row.clone()).collect::<Vec<_>>(),
        rows
    );

    // CSV twin too.
    let c = tmp.path().join("twin.csv");
    let mut w = csv::Writer::from_path(&c).unwrap();
    for r in &rows {
        w.serialize(r).unwrap();
    }
    w.flush().unwrap();
    let cl = load(&LoadParams::new(c.to_str().unwrap())).unwrap();
    assert_eq!(cl.rows, a.rows);

    // The artifact reads back to the same rows.
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    write_output(&out, &b).unwrap();
    assert_eq!(read_loaded(&out).unwrap(), b.rows);
}

/// Load a copy of a corrupt parquet fixture (named `gretel.parquet`): its error as text. Run
/// on a thread with a deadline, since one corruption once made load loop forever.
fn load_corrupt_parquet(fixture: &str) -> String {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(fixture);
    let tmp = tempfile::tempdir().unwrap();
    let pq = tmp.path().join("gretel.parquet");
    std::fs::copy(&fixture, &pq).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let source = pq.to_str().unwrap().to_string();
    std::thread::spawn(move || {
        let _ = tx.send(load(&LoadParams::new(&source)).map(|l| l.rows.len()));
    });
    let result = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("load of {} did not finish in 60 s", fixture.display()));
    match result {
        Ok(n) => panic!("{} loaded {n} rows", fixture.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn corrupt_parquet_files_are_errors_that_name_the_file() {
    // Each fixture was found by the `records` fuzz target.
    let cases = [
        // One byte of a row group's metadata changed: the parquet reader returns the same
        // error for every row after it; load read on forever (a quarantine entry per call)
        // before it stopped at the first.
        ("corrupt_row_group.parquet", "corrupt parquet data at row 1"),
        // A bit flipped in a page header: parquet 56 sliced past a buffer's end and panicked
        // (load caught it); parquet 60 returns an error.
        ("corrupt_page_header.parquet", "parquet"),
        // A changed length in the footer's metadata: parquet 56 allocated 224 GB and aborted
        // the process (an allocation failure cannot be caught); parquet 60 checks the length
        // against the bytes there.
        ("huge_metadata_length.parquet", ""),
    ];
    for (fixture, expected) in cases {
        let e = load_corrupt_parquet(fixture);
        assert!(
            e.contains("gretel.parquet") && e.contains(expected),
            "{fixture}: `{e}` should name gretel.parquet and say `{expected}`"
        );
    }
}

/// A JSONL file with good rows and one row per defect.
fn mixed_file(path: &Path, good: usize) -> usize {
    let rows = builtin::generate(5, good + 1);
    let mut f = std::fs::File::create(path).unwrap();
    for r in &rows[..good] {
        serde_json::to_writer(&mut f, r).unwrap();
        f.write_all(b"\n").unwrap();
    }
    let base = serde_json::to_value(&rows[good]).unwrap();
    let mut bad = Vec::new();
    let mut with = |k: &str, v: serde_json::Value, id: i64| {
        let mut o = base.clone();
        o["id"] = id.into();
        if v == serde_json::Value::String("<remove>".into()) {
            o.as_object_mut().unwrap().remove(k);
        } else {
            o[k] = v;
        }
        bad.push(serde_json::to_vec(&o).unwrap());
    };
    with("sql", "<remove>".into(), 90001); // missing
    with("sql_prompt", serde_json::Value::Null, 90002); // null
    with("sql_context", "  ".into(), 90003); // empty
    with("sql_explanation", "x".repeat(30_000).into(), 90004); // too long
    with("sql", "SELECT 1;".into(), 1); // duplicate id
    let mut utf8 = serde_json::to_vec(&{
        let mut o = base.clone();
        o["id"] = 90005.into();
        o["sql_prompt"] = "PLACEHOLDER".into();
        o
    })
    .unwrap();
    let at = utf8.windows(11).position(|w| w == b"PLACEHOLDER").unwrap();
    utf8.splice(at..at + 11, [b'a', 0xff, 0xfe, b'b']);
    bad.push(utf8);
    bad.push(b"{not json".to_vec());
    for b in &bad {
        f.write_all(b).unwrap();
        f.write_all(b"\n").unwrap();
    }
    bad.len()
}

#[test]
fn bad_rows_are_quarantined_with_reasons_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("mixed.jsonl");
    let nbad = mixed_file(&path, 200);
    let mut p = LoadParams::new(path.to_str().unwrap());
    p.max_bad_fraction = 0.05;
    let l = load(&p).unwrap();
    assert_eq!(l.rows.len(), 200);
    assert_eq!(l.quarantine.len(), nbad);
    assert_eq!(l.report.quarantined, nbad);
    let kinds: Vec<(&str, usize)> = l
        .quarantine
        .iter()
        .map(|q| (q.kind.as_str(), q.number))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("missing_field", 201),
            ("null_field", 202),
            ("empty_field", 203),
            ("too_long", 204),
            ("duplicate_id", 205),
            ("invalid_utf8", 206),
            ("unparseable", 207),
        ]
    );
    assert!(l.quarantine[0].reason.contains("`sql`"));
    assert!(l.quarantine[1].reason.contains("`sql_prompt`"));
    assert!(l.quarantine[2].reason.contains("`sql_context`"));
    let counts = &l.report.files[0];
    assert_eq!(
        (counts.records, counts.loaded, counts.quarantined),
        (207, 200, 7)
    );
    assert_eq!(counts.reasons.values().sum::<usize>(), 7);

    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    write_output(&out, &l).unwrap();
    let q = std::fs::read_to_string(out.join("quarantine.jsonl")).unwrap();
    assert_eq!(q.lines().count(), 7);

    // Over the threshold: 7/207 = 3.4% > 1%.
    p.max_bad_fraction = 0.01;
    let e = format!("{:#}", load(&p).unwrap_err());
    assert!(e.contains("mixed.jsonl") && e.contains("7 of 207"), "{e}");
    assert!(e.contains("max_bad_fraction"), "{e}");
}
