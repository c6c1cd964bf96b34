//! Unit tests of the store: commit, integrity, staging cleanup, refs, gc.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use serde_json::json;

use super::{CacheKey, Lookup, Store, STORE_FORMAT};

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

    let dry = store.gc(true, false).unwrap();
    assert_eq!(
        dry.objects.iter().map(|o| o.0.clone()).collect::<Vec<_>>(),
        vec![old.clone()]
    );
    assert!(store.object_dir(&old).exists() && leftover.exists());

    let r = store.gc(false, false).unwrap();
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
