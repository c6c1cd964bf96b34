//! Unit tests of the store: commit, integrity, staging cleanup, refs, gc.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use serde_json::json;

use super::{CacheKey, GcOptions, Lookup, Store, STORE_FORMAT};

fn key(x: i64) -> CacheKey {
    CacheKey {
        store_format: STORE_FORMAT,
        kind: "command".into(),
        kind_version: 1,
        params: json!({ "x": x }).as_object().unwrap().clone(),
        inputs: vec![],
        facts: BTreeMap::new(),
    }
}

/// Commit an object with files `a.txt` and `sub/b.txt` for `key(x)`; returns its key.
fn commit(store: &Store, x: i64, content: &str) -> String {
    let ck = key(x);
    let k = ck.digest();
    let cancel = AtomicBool::new(false);
    let lock = store.lock(&k, &cancel, || {}).unwrap();
    let staging = store.begin(&k, &lock).unwrap();
    std::fs::write(staging.dir.join("a.txt"), content).unwrap();
    std::fs::create_dir(staging.dir.join("sub")).unwrap();
    std::fs::write(staging.dir.join("sub/b.txt"), "bee").unwrap();
    std::fs::write(store.partial_dir(&k).join("ckpt"), "1").unwrap();
    let m = store
        .commit(
            staging,
            "p",
            &format!("n{x}"),
            &ck,
            BTreeMap::from([("acc".into(), 0.5)]),
            &lock,
        )
        .unwrap();
    assert_eq!(m.files.len(), 2);
    k
}

fn dry_run() -> GcOptions {
    GcOptions {
        dry_run: true,
        ..GcOptions::default()
    }
}

fn overwrite(path: &std::path::Path, text: &str) {
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn committed_object_is_a_verified_read_only_hit_and_partial_is_dropped() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let k = commit(&store, 1, "hello");
    let Lookup::Hit(m) = store.lookup(&k, true).unwrap() else {
        panic!("expected a hit")
    };
    assert_eq!(m.metrics["acc"], 0.5);
    assert!(std::fs::metadata(store.object_dir(&k).join("a.txt"))
        .unwrap()
        .permissions()
        .readonly());
    assert!(!store.partial_dir(&k).exists());
    assert!(std::fs::read_dir(store.base().join("staging"))
        .unwrap()
        .next()
        .is_none());
    let r = store.read_ref("p", "n1").unwrap();
    assert_eq!(r.key, k);
    assert_eq!(r.cache_key, key(1));
}

#[test]
fn identical_content_gives_identical_digest() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let (k1, k2, k3) = (
        commit(&store, 1, "same"),
        commit(&store, 2, "same"),
        commit(&store, 3, "other"),
    );
    let digest = |k: &str| match store.lookup(k, false).unwrap() {
        Lookup::Hit(m) => m.digest(),
        other => panic!("{other:?}"),
    };
    assert_eq!(digest(&k1), digest(&k2));
    assert_ne!(digest(&k1), digest(&k3));
}

#[test]
fn altered_file_is_detected_moved_aside_and_never_a_hit() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let k = commit(&store, 1, "hello");
    overwrite(&store.object_dir(&k).join("a.txt"), "HELLO");
    match store.lookup(&k, false).unwrap() {
        Lookup::Corrupt { problems, moved_to } => {
            assert_eq!(
                problems,
                vec!["file `a.txt` does not match its blake3".to_string()]
            );
            assert!(moved_to.starts_with(store.base().join("corrupt")));
        }
        other => panic!("expected corrupt, got {other:?}"),
    }
    assert!(matches!(store.lookup(&k, false).unwrap(), Lookup::Missing));
}

#[test]
fn same_size_same_mtime_edit_is_caught_by_verify() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let k = commit(&store, 1, "hello");
    let path = store.object_dir(&k).join("a.txt");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    overwrite(&path, "jello");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert!(
        matches!(store.lookup(&k, false).unwrap(), Lookup::Hit(_)),
        "cheap check cannot see it"
    );
    assert!(matches!(
        store.lookup(&k, true).unwrap(),
        Lookup::Corrupt { .. }
    ));
}

#[test]
fn extra_or_missing_files_are_corruption_but_a_touch_is_not() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let k = commit(&store, 1, "hello");
    let path = store.object_dir(&k).join("a.txt");
    let content = std::fs::read_to_string(&path).unwrap();
    overwrite(&path, &content);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    assert!(matches!(store.lookup(&k, false).unwrap(), Lookup::Hit(_)));
    std::fs::write(store.object_dir(&k).join("extra"), "x").unwrap();
    assert!(matches!(
        store.lookup(&k, false).unwrap(),
        Lookup::Corrupt { .. }
    ));
    let k2 = commit(&store, 2, "hello");
    std::fs::remove_file(store.object_dir(&k2).join("sub/b.txt")).unwrap();
    assert!(matches!(
        store.lookup(&k2, false).unwrap(),
        Lookup::Corrupt { .. }
    ));
}

#[test]
fn begin_removes_stale_staging_of_the_key() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let k = key(1).digest();
    let stale = store
        .base()
        .join("staging")
        .join(format!("{k}.999999.dead"));
    std::fs::create_dir_all(&stale).unwrap();
    let cancel = AtomicBool::new(false);
    let lock = store.lock(&k, &cancel, || {}).unwrap();
    let s = store.begin(&k, &lock).unwrap();
    assert!(!stale.exists());
    assert!(s.dir.exists());
    store.discard(s);
}

#[test]
fn gc_removes_unreferenced_objects_and_leftovers_only() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let old = commit(&store, 1, "v1");
    // Same node id, new key: the old object is no longer any node's latest.
    let ck = key(2);
    let new = ck.digest();
    let cancel = AtomicBool::new(false);
    let lock = store.lock(&new, &cancel, || {}).unwrap();
    let staging = store.begin(&new, &lock).unwrap();
    std::fs::write(staging.dir.join("a.txt"), "v2").unwrap();
    store
        .commit(staging, "p", "n1", &ck, BTreeMap::new(), &lock)
        .unwrap();
    drop(lock);
    let leftover = store
        .base()
        .join("staging")
        .join(format!("{}.1.x", key(9).digest()));
    std::fs::create_dir_all(&leftover).unwrap();

    let dry = store.gc(&dry_run()).unwrap();
    assert_eq!(
        dry.objects.iter().map(|o| o.0.clone()).collect::<Vec<_>>(),
        vec![old.clone()]
    );
    assert!(store.object_dir(&old).exists() && leftover.exists());

    let r = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(r.objects.len(), 1);
    assert_eq!(r.staging, vec![leftover.clone()]);
    assert!(!store.object_dir(&old).exists() && !leftover.exists());
    assert!(matches!(store.lookup(&new, true).unwrap(), Lookup::Hit(_)));
}

#[test]
fn object_dirs_of_any_project_have_one_portable_name() {
    use super::store::object_name;
    let key = "ab".repeat(32);
    for dir in [
        format!("/home/a/proj/artifacts/v1/objects/{key}"),
        format!("/scratch/b/artifacts/v1/objects/{key}/"),
        format!("artifacts/v1/objects/{key}"),
    ] {
        assert_eq!(
            object_name(std::path::Path::new(&dir)).as_deref(),
            Some(format!("artifacts/v1/objects/{key}").as_str()),
            "{dir}"
        );
    }
    for dir in [
        "google/gemma-3-1b-it".to_string(),
        "/models/gemma".to_string(),
        format!("/p/artifacts/v2/objects/{key}"),
        format!("/p/artifacts/v1/partial/{key}"),
        format!("/p/artifacts/v1/objects/{}", "AB".repeat(32)),
        "/p/artifacts/v1/objects/abc".to_string(),
        format!("objects/{key}"),
    ] {
        assert_eq!(object_name(std::path::Path::new(&dir)), None, "{dir}");
    }
}

#[test]
fn gc_keeps_what_a_live_process_leased_and_forgets_the_leases_of_dead_ones() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    // Two objects of one node: only the second is its ref; a live run is using the first.
    let used = commit(&store, 1, "v1");
    let ck = key(2);
    let cancel = AtomicBool::new(false);
    let lock = store.lock(&ck.digest(), &cancel, || {}).unwrap();
    let staging = store.begin(&ck.digest(), &lock).unwrap();
    std::fs::write(staging.dir.join("a.txt"), "v2").unwrap();
    store
        .commit(staging, "p", "n1", &ck, BTreeMap::new(), &lock)
        .unwrap();
    drop(lock);
    let run = Store::open(root.path()).unwrap().leased().unwrap();
    assert!(matches!(run.lookup(&used, false).unwrap(), Lookup::Hit(_)));

    let r = store.gc(&GcOptions::default()).unwrap();
    assert!(r.objects.is_empty(), "{r:?}");
    assert_eq!((r.kept, r.leased), (2, 1));
    assert!(store.object_dir(&used).is_dir());

    // The run ends (or is killed: the OS drops its flock): its lease protects nothing more.
    drop(run);
    let r = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(r.objects.len(), 1, "{r:?}");
    assert!(!store.object_dir(&used).exists());
    assert_eq!(
        std::fs::read_dir(store.base().join("leases"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn gc_removes_the_lease_file_of_a_killed_process() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let k = commit(&store, 1, "v1");
    // A lease file nobody holds a lock on: what kill -9 of a run leaves.
    let leases = store.base().join("leases");
    std::fs::create_dir_all(&leases).unwrap();
    std::fs::write(
        leases.join("4242.0.lease"),
        format!("{}\n", key(7).digest()),
    )
    .unwrap();
    let r = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(r.leased, 0);
    assert!(!leases.join("4242.0.lease").exists());
    assert!(store.object_dir(&k).is_dir(), "named by its ref");
}

#[test]
fn gc_keeps_unreferenced_objects_within_the_grace_period() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let k = commit(&store, 1, "v1");
    std::fs::remove_dir_all(store.base().join("refs")).unwrap();
    let grace = GcOptions {
        grace: std::time::Duration::from_secs(3600),
        ..GcOptions::default()
    };
    let r = store.gc(&grace).unwrap();
    assert_eq!((r.objects.len(), r.young), (0, 1));
    let r = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(r.objects.len(), 1);
    assert!(!store.object_dir(&k).exists());
}

#[test]
fn a_cache_hit_recorded_as_a_use_moves_the_ref_back() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let a = commit(&store, 1, "v1");
    let ck = key(2);
    let cancel = AtomicBool::new(false);
    let lock = store.lock(&ck.digest(), &cancel, || {}).unwrap();
    let staging = store.begin(&ck.digest(), &lock).unwrap();
    std::fs::write(staging.dir.join("a.txt"), "v2").unwrap();
    store
        .commit(staging, "p", "n1", &ck, BTreeMap::new(), &lock)
        .unwrap();
    drop(lock);
    let Lookup::Hit(m) = store.lookup(&a, false).unwrap() else {
        panic!("a is committed")
    };
    store.record_use("p", "n1", &m).unwrap();
    assert_eq!(store.read_ref("p", "n1").unwrap().key, a);
    let r = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(r.objects[0].0, ck.digest(), "the one not used last goes");
    assert!(store.object_dir(&a).is_dir());
}

#[test]
fn no_object_is_visible_before_its_ref_is_written() {
    // A kill between the rename into objects/ and the ref write used to leave an object no ref
    // named (gc then removed it). A failing ref write stands in for the kill here.
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let ck = key(1);
    let k = ck.digest();
    let cancel = AtomicBool::new(false);
    let lock = store.lock(&k, &cancel, || {}).unwrap();
    let staging = store.begin(&k, &lock).unwrap();
    std::fs::write(staging.dir.join("a.txt"), "v1").unwrap();
    // The pipeline's refs dir is a file: the ref cannot be written.
    let refs = store.base().join("refs");
    std::fs::remove_dir_all(&refs).unwrap();
    std::fs::write(&refs, "not a dir").unwrap();
    assert!(store
        .commit(staging, "p", "n1", &ck, BTreeMap::new(), &lock)
        .is_err());
    assert!(!store.object_dir(&k).exists());
}

#[cfg(unix)]
#[test]
fn commit_refuses_links_and_fifos_without_opening_them() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let cancel = AtomicBool::new(false);
    type Make<'a> = &'a dyn Fn(&std::path::Path);
    let cases: [(&str, Make); 4] = [
        ("a symbolic link", &|d| {
            std::os::unix::fs::symlink("/etc/passwd", d.join("out.txt")).unwrap()
        }),
        ("a symbolic link", &|d| {
            std::os::unix::fs::symlink("/dev/zero", d.join("zero")).unwrap()
        }),
        ("a symbolic link", &|d| {
            std::fs::create_dir(d.join("sub")).unwrap();
            std::os::unix::fs::symlink("/etc", d.join("sub/etc")).unwrap()
        }),
        ("a FIFO", &|d| {
            let path = std::ffi::CString::new(d.join("pipe").to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
            assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
        }),
    ];
    for (i, (what, make)) in cases.iter().enumerate() {
        let ck = key(10 + i as i64);
        let k = ck.digest();
        let lock = store.lock(&k, &cancel, || {}).unwrap();
        let staging = store.begin(&k, &lock).unwrap();
        let dir = staging.dir.clone();
        std::fs::write(dir.join("ok.txt"), "fine").unwrap();
        make(&dir);
        let err = store
            .commit(staging, "p", "n", &ck, BTreeMap::new(), &lock)
            .unwrap_err()
            .to_string();
        assert!(err.contains(what) && err.contains("regular files"), "{err}");
        assert!(!store.object_dir(&k).exists(), "{err}");
        assert!(!dir.exists(), "the refused outputs are removed: {err}");
    }
}

#[test]
fn a_partial_area_left_beside_a_committed_object_is_dropped_unless_its_key_is_locked() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let k = commit(&store, 1, "hello");
    // What a kill between the commit's rename and its cleanup leaves.
    std::fs::create_dir_all(store.partial_dir(&k)).unwrap();
    std::fs::write(store.partial_dir(&k).join("ckpt-1.json"), "{}").unwrap();

    let cancel = AtomicBool::new(false);
    let lock = store.lock(&k, &cancel, || {}).unwrap();
    store.drop_stale_partial(&k);
    assert!(
        store.has_partial(&k),
        "a locked key's area is someone's resume state"
    );
    drop(lock);

    store.drop_stale_partial(&k);
    assert!(!store.partial_dir(&k).exists());
    // A key with no object keeps its area: that is what a resume needs.
    let other = key(2).digest();
    std::fs::create_dir_all(store.partial_dir(&other)).unwrap();
    std::fs::write(store.partial_dir(&other).join("ckpt-1.json"), "{}").unwrap();
    store.drop_stale_partial(&other);
    assert!(store.has_partial(&other));
}
