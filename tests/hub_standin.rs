//! The hub path against a local stand-in of the Hugging Face hub (std::net on 127.0.0.1 only),
//! reached the way a user behind a mirror reaches it: through `HF_ENDPOINT`. The stand-in
//! answers `resolve` as the hub does (`X-Repo-Commit`, a quoted `ETag`, `Range` with
//! `Content-Range`), sends LFS files by an absolute 302 to a CDN path with `X-Linked-Etag` /
//! `X-Linked-Size`, refuses a gated repo with 401 (no token) or 403 (a token without access)
//! with `X-Error-Code` / `X-Error-Message`, and a missing file with 404.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use t2s::data::hub::{fetch_in, HubEnv, HubError, Kind};

const COMMIT: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
const GRANTED: &str = "hf_granted";
/// Mirrors often live under a path; the endpoint keeps it.
const PREFIX: &str = "/mirror";

/// Files by URL path after the prefix (`/owner/name` or `/datasets/owner/name`, then
/// `/resolve/<rev>/<file>`); gated repos by the same repo path.
struct Hub {
    files: HashMap<String, Vec<u8>>,
    gated: Vec<String>,
    seen: Mutex<Vec<String>>,
}

struct Reply {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn refuse(status: &'static str, code: &str, message: &str) -> Reply {
    Reply {
        status,
        headers: vec![
            ("X-Error-Code".into(), code.into()),
            ("X-Error-Message".into(), message.into()),
        ],
        body: message.as_bytes().to_vec(),
    }
}

impl Hub {
    fn answer(&self, path: &str, headers: &HashMap<String, String>) -> Reply {
        self.seen.lock().unwrap().push(path.to_string());
        if let Some(key) = path.strip_prefix("/cdn") {
            return self.cdn(key, headers);
        }
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return refuse("404 Not Found", "NotFound", "not under the mirror's prefix");
        };
        let Some((repo_path, rev_file)) = rest.split_once("/resolve/") else {
            return refuse("404 Not Found", "NotFound", "not a resolve URL");
        };
        if self.gated.iter().any(|g| g == repo_path) {
            let repo = repo_path
                .trim_start_matches("/datasets")
                .trim_start_matches('/');
            match headers.get("authorization").map(String::as_str) {
                None => {
                    return refuse(
                        "401 Unauthorized",
                        "GatedRepo",
                        &format!(
                            "Access to model {repo} is restricted. You must have access to it \
                             and be authenticated to access it. Please log in."
                        ),
                    )
                }
                Some(a) if a != format!("Bearer {GRANTED}") => {
                    return refuse(
                        "403 Forbidden",
                        "GatedRepo",
                        &format!(
                            "Access to model {repo} is restricted and you are not in the \
                             authorized list."
                        ),
                    )
                }
                Some(_) => {}
            }
        }
        let (rev, file) = rev_file.split_once('/').unwrap_or((rev_file, ""));
        let body = match self.files.get(&format!("{repo_path}/{file}")) {
            Some(b) if rev == "main" || rev == COMMIT => b,
            Some(_) => return refuse("404 Not Found", "RevisionNotFound", "Invalid rev id"),
            None => return refuse("404 Not Found", "EntryNotFound", "Entry not found"),
        };
        let etag = format!("\"{:x}\"", fnv1a(body));
        if file.ends_with(".safetensors") {
            // An LFS file: the hub answers with an absolute redirect to its CDN, naming the
            // blob's tag and size in `X-Linked-*` (the `ETag` is the pointer file's).
            let host = headers.get("host").cloned().unwrap_or_default();
            return Reply {
                status: "302 Found",
                headers: vec![
                    ("X-Repo-Commit".into(), COMMIT.into()),
                    ("ETag".into(), "\"pointer\"".into()),
                    ("X-Linked-Etag".into(), etag),
                    ("X-Linked-Size".into(), body.len().to_string()),
                    (
                        "Location".into(),
                        format!("http://{host}/cdn{repo_path}/{file}"),
                    ),
                ],
                body: Vec::new(),
            };
        }
        ranged(
            body,
            headers,
            vec![
                ("X-Repo-Commit".into(), COMMIT.into()),
                ("ETag".into(), etag),
            ],
        )
    }

    /// The CDN behind LFS redirects: plain ranged bytes, no hub headers.
    fn cdn(&self, key: &str, headers: &HashMap<String, String>) -> Reply {
        match self.files.get(key) {
            Some(body) => ranged(body, headers, Vec::new()),
            None => refuse("404 Not Found", "NotFound", "no such blob"),
        }
    }
}

/// `body` answered for the request's `Range` (`bytes=a-b` or `bytes=a-`, as hf-hub asks).
fn ranged(
    body: &[u8],
    headers: &HashMap<String, String>,
    mut extra: Vec<(String, String)>,
) -> Reply {
    let len = body.len();
    let (start, end) = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| {
            let a: usize = a.parse().unwrap_or(0);
            let b = b.parse::<usize>().map_or(len - 1, |b| b.min(len - 1));
            (a, b)
        })
        .unwrap_or((0, len - 1));
    extra.push(("Content-Range".into(), format!("bytes {start}-{end}/{len}")));
    Reply {
        status: "206 Partial Content",
        headers: extra,
        body: body[start..=end].to_vec(),
    }
}

/// A content tag that changes with the content (the hub sends a git or sha256 hash).
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100000001b3)
    })
}

fn serve(hub: &Hub, stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let r = hub.answer(&path, &headers);
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.body.len()
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(&r.body);
}

/// Start the stand-in; returns its endpoint (with the mirror prefix) and the hub, for the
/// requests it saw. The listener thread ends with the test process.
fn start(hub: Hub) -> (String, Arc<Hub>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}{PREFIX}", listener.local_addr().unwrap());
    let hub = Arc::new(hub);
    let h = Arc::clone(&hub);
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            serve(&h, s);
        }
    });
    (endpoint, hub)
}

/// Bytes that differ all along, so a misplaced range shows.
fn weights() -> Vec<u8> {
    (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn standin() -> (String, Arc<Hub>) {
    let files = [
        (
            "/acme/open/config.json",
            &b"{\"model_type\": \"gemma3_text\"}"[..],
        ),
        ("/acme/open/model.safetensors", &weights()[..]),
        ("/acme/gated/config.json", &b"{\"gated\": true}"[..]),
        (
            "/datasets/acme/rows/train.jsonl",
            &b"{\"sql\": \"SELECT 1\"}\n"[..],
        ),
    ];
    start(Hub {
        files: files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect(),
        gated: vec!["/acme/gated".into()],
        seen: Mutex::new(Vec::new()),
    })
}

/// The settings a user's shell would give: `HF_ENDPOINT`, `HF_HUB_CACHE`, a home with
/// (or without) `hf auth login`'s token file, and `extra` variables.
fn user_env(endpoint: &str, dir: &Path, login: Option<&str>, extra: &[(&str, &str)]) -> HubEnv {
    let home = dir.join("home");
    if let Some(token) = login {
        let f = home.join(".cache/huggingface/token");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, token).unwrap();
    }
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert("HF_ENDPOINT".into(), endpoint.into());
    vars.insert(
        "HF_HUB_CACHE".into(),
        dir.join("cache").display().to_string(),
    );
    vars.insert("HOME".into(), home.display().to_string());
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    HubEnv::from_lookup(|k| vars.get(k).cloned())
}

fn refusal_text(r: Result<std::path::PathBuf, HubError>) -> (u16, String) {
    match r {
        Err(HubError::Refused(r)) => (r.status, r.to_string()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn files_download_through_hf_endpoint_into_the_cache_and_then_resolve_offline() {
    let (endpoint, hub) = standin();
    let dir = tempfile::tempdir().unwrap();
    let env = user_env(&endpoint, dir.path(), None, &[]);

    let got = fetch_in(&env, Kind::Model, "acme/open", "main", "config.json", false).unwrap();
    assert_eq!(
        std::fs::read(&got).unwrap(),
        b"{\"model_type\": \"gemma3_text\"}"
    );
    let repo_dir = dir.path().join("cache/models--acme--open");
    assert_eq!(
        got,
        repo_dir.join("snapshots").join(COMMIT).join("config.json")
    );
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main"))
            .unwrap()
            .trim(),
        COMMIT
    );
    let rows = fetch_in(
        &env,
        Kind::Dataset,
        "acme/rows",
        "main",
        "train.jsonl",
        false,
    )
    .unwrap();
    assert!(rows.starts_with(dir.path().join("cache/datasets--acme--rows")));
    // An LFS file, through the hub's redirect to its CDN.
    let w = fetch_in(
        &env,
        Kind::Model,
        "acme/open",
        "main",
        "model.safetensors",
        false,
    )
    .unwrap();
    assert!(std::fs::read(&w).unwrap() == weights());
    let seen = hub.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|p| p == "/cdn/acme/open/model.safetensors"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|p| p == "/mirror/acme/open/resolve/main/config.json")
            && seen
                .iter()
                .any(|p| p == "/mirror/datasets/acme/rows/resolve/main/train.jsonl"),
        "{seen:?}"
    );

    // Offline afterwards: from the cache, without asking the hub.
    let before = hub.seen.lock().unwrap().len();
    let offline = user_env(&endpoint, dir.path(), None, &[("HF_HUB_OFFLINE", "1")]);
    assert_eq!(
        fetch_in(
            &offline,
            Kind::Model,
            "acme/open",
            "main",
            "config.json",
            true
        )
        .unwrap(),
        got
    );
    assert_eq!(hub.seen.lock().unwrap().len(), before);
}

#[test]
fn a_gated_repo_is_refused_with_what_to_do_and_opens_to_the_login_token() {
    let (endpoint, _hub) = standin();
    let get = |env: &HubEnv| {
        fetch_in(env, Kind::Model, "acme/gated", "main", "config.json", false).map_err(
            |e| match e {
                HubError::Refused(r) => (r.status, r.to_string()),
                other => panic!("expected a refusal, got {other:?}"),
            },
        )
    };

    // No token anywhere: 401, naming where the token was looked for, the repo's page on the
    // mirror, and the hub's own words.
    let dir = tempfile::tempdir().unwrap();
    let (status, text) = get(&user_env(&endpoint, dir.path(), None, &[])).unwrap_err();
    assert_eq!(status, 401);
    for needle in [
        "401 Unauthorized",
        "No token was sent",
        ".cache/huggingface/token",
        &format!("{endpoint}/acme/gated"),
        "hf auth login",
        "You must have access to it and be authenticated",
        "GatedRepo",
    ] {
        assert!(text.contains(needle), "lacks {needle:?}: {text}");
    }
    // Nothing half-written in the cache.
    assert!(!dir
        .path()
        .join("cache/models--acme--gated/snapshots")
        .exists());

    // A token without access: 403, "accept the license at <page>", naming the token's source.
    let (status, text) = get(&user_env(
        &endpoint,
        dir.path(),
        None,
        &[("HF_TOKEN", "hf_other_account")],
    ))
    .unwrap_err();
    assert_eq!(status, 403);
    for needle in [
        "403 Forbidden",
        &format!("accept the license at {endpoint}/acme/gated"),
        "the token sent (from HF_TOKEN) has no access",
        "not in the authorized list",
    ] {
        assert!(text.contains(needle), "lacks {needle:?}: {text}");
    }
    assert!(!text.contains("hf_other_account"), "{text}");

    // `hf auth login`'s token under HOME is found although HF_HUB_CACHE points elsewhere.
    let dir = tempfile::tempdir().unwrap();
    let env = user_env(&endpoint, dir.path(), Some(GRANTED), &[]);
    let got = get(&env).unwrap();
    assert_eq!(std::fs::read(got).unwrap(), b"{\"gated\": true}");
}

#[test]
fn a_missing_file_is_a_404_that_names_the_tree_to_check() {
    let (endpoint, _hub) = standin();
    let dir = tempfile::tempdir().unwrap();
    let env = user_env(&endpoint, dir.path(), None, &[]);
    let (status, text) = refusal_text(fetch_in(
        &env,
        Kind::Model,
        "acme/open",
        "main",
        "tokenizer.json",
        false,
    ));
    assert_eq!(status, 404);
    for needle in [
        "`tokenizer.json`",
        "404 Not Found",
        "(EntryNotFound: \"Entry not found\")",
        &format!("{endpoint}/acme/open/tree/main"),
    ] {
        assert!(text.contains(needle), "lacks {needle:?}: {text}");
    }
}

#[test]
fn an_interrupted_download_resumes_from_its_part_file() {
    let (endpoint, hub) = standin();
    let dir = tempfile::tempdir().unwrap();
    let env = user_env(&endpoint, dir.path(), None, &[]);
    // What an interrupted run leaves: the first part of the blob, named by its tag.
    let full = weights();
    let blobs = dir.path().join("cache/models--acme--open/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let part = blobs.join(format!("{:x}.part", fnv1a(&full)));
    std::fs::write(&part, &full[..75_000]).unwrap();

    let got = fetch_in(
        &env,
        Kind::Model,
        "acme/open",
        "main",
        "model.safetensors",
        false,
    )
    .unwrap();
    // Appending from the part's end gives the blob; a restart from zero would not.
    assert!(std::fs::read(&got).unwrap() == full);
    assert!(!part.exists());
    assert!(hub
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|p| p.starts_with("/cdn/")));
}
