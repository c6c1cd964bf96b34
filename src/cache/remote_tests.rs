//! Unit tests of fetching from a remote whose objects were forged to reach outside themselves.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use serde_json::json;

use super::{CacheKey, FileEntry, Manifest, Remote, Store, STORE_FORMAT};

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

/// A manifest for `key(x)` listing `rel` with the blake3 and size of the real file `content`.
fn forged(x: i64, rel: &str, content: &std::path::Path) -> Manifest {
    let bytes = std::fs::read(content).unwrap();
    Manifest {
        store_format: STORE_FORMAT,
        key: key(x).digest(),
        node: "n".into(),
        cache_key: key(x),
        files: BTreeMap::from([(
            rel.to_string(),
            FileEntry {
                blake3: blake3::hash(&bytes).to_hex().to_string(),
                size: bytes.len() as u64,
                mtime_ns: 0,
            },
        )]),
        metrics: BTreeMap::new(),
        created: String::new(),
    }
}

/// Fetch `key(x)` from `remote`; the error text, asserting nothing of it was installed.
fn fetch_fails(project: &std::path::Path, remote: &std::path::Path, x: i64) -> String {
    let store = Store::open(project).unwrap();
    let remote = Remote::open(remote).unwrap();
    let k = key(x).digest();
    let m = remote
        .manifest(&k)
        .unwrap()
        .expect("the forged object is listed");
    let lock = store.lock(&k, &AtomicBool::new(false), || {}).unwrap();
    let err = remote
        .fetch(&store, m, "p", "n", &lock)
        .unwrap_err()
        .to_string();
    assert!(!store.object_dir(&k).exists(), "{err}");
    assert!(store.read_ref("p", "n").is_none(), "{err}");
    err
}

#[cfg(unix)]
#[test]
fn a_fetch_never_follows_a_directory_link_out_of_the_remote_object() {
    let root = tempfile::tempdir().unwrap();
    let (project, remote) = (root.path().join("project"), root.path().join("remote"));
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "not the remote's to give").unwrap();

    // `sub -> outside` inside the object, the manifest listing `sub/secret`.
    let obj = remote.join("v1/objects").join(key(1).digest());
    std::fs::create_dir_all(&obj).unwrap();
    std::os::unix::fs::symlink(&outside, obj.join("sub")).unwrap();
    forged(1, "sub/secret", &outside.join("secret"))
        .write(&obj)
        .unwrap();
    let err = fetch_fails(&project, &remote, 1);
    assert!(
        err.contains("sub/secret") && err.contains("symbolic link"),
        "{err}"
    );

    // The object directory itself a link to a directory outside the remote.
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::copy(outside.join("secret"), elsewhere.join("secret")).unwrap();
    forged(2, "secret", &outside.join("secret"))
        .write(&elsewhere)
        .unwrap();
    std::os::unix::fs::symlink(&elsewhere, remote.join("v1/objects").join(key(2).digest()))
        .unwrap();
    let err = fetch_fails(&project, &remote, 2);
    assert!(err.contains("symbolic link"), "{err}");

    // A file link (the last component), as before.
    let obj = remote.join("v1/objects").join(key(3).digest());
    std::fs::create_dir_all(&obj).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), obj.join("secret")).unwrap();
    forged(3, "secret", &outside.join("secret"))
        .write(&obj)
        .unwrap();
    let err = fetch_fails(&project, &remote, 3);
    assert!(err.contains("symbolic link"), "{err}");
}
