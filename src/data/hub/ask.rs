//! The one question asked of the hub per repo and revision: its repo-info API, which names the
//! commit and every file's tag at once.

use super::pin::{is_commit, Origin, Pin};
use super::{HubEnv, HubError, Kind, Refusal};

/// The hub's answer for `revision`: `GET /api/<kind>s/<repo>/revision/<rev>?blobs=true`.
pub(super) fn ask_hub(
    env: &HubEnv,
    kind: Kind,
    repo: &str,
    revision: &str,
) -> Result<Pin, HubError> {
    let url = format!(
        "{}/api/{}/{repo}/revision/{}",
        env.endpoint,
        kind.prefix(),
        revision.replace('/', "%2F")
    );
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(20))
        .timeout_read(std::time::Duration::from_secs(60))
        .build();
    let mut req = agent.get(&url).query("blobs", "true");
    if let Some(t) = &env.token {
        req = req.set("Authorization", &format!("Bearer {}", t.value));
    }
    // `missing` is filled in by `resolve`, which looks at the cache.
    let unreachable = |msg: String| HubError::Unreachable {
        repo: repo.to_string(),
        revision: revision.to_string(),
        kind: kind.name().to_string(),
        endpoint: env.endpoint.clone(),
        cache: env.cache.display().to_string(),
        msg,
        missing: String::new(),
    };
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(status, resp)) => {
            let header = |name| resp.header(name).map(str::to_string);
            return Err(HubError::Refused(Box::new(Refusal {
                kind,
                repo: repo.to_string(),
                revision: revision.to_string(),
                file: format!("the file list of revision {revision}"),
                endpoint: env.endpoint.clone(),
                status,
                hub_code: header("X-Error-Code"),
                hub_message: header("X-Error-Message"),
                token: env.token.as_ref().map(|t| t.source.clone()),
                token_path: env.token_path.display().to_string(),
            })));
        }
        Err(e @ ureq::Error::Transport(_)) => return Err(unreachable(e.to_string())),
    };
    let info: RepoInfo = resp
        .into_json()
        .map_err(|e| unreachable(format!("{url} answered what is not repo info: {e}")))?;
    if !is_commit(&info.sha) {
        return Err(unreachable(format!(
            "{url} answered `{}`, which is not a commit hash",
            info.sha
        )));
    }
    let files = info
        .siblings
        .into_iter()
        .filter_map(|s| {
            let tag = s.lfs.map(|l| l.sha256).or(s.blob_id)?;
            Some((s.rfilename, tag))
        })
        .collect();
    Ok(Pin {
        kind,
        repo: repo.to_string(),
        revision: revision.to_string(),
        commit: info.sha,
        files,
        origin: Origin::Hub,
        endpoint: env.endpoint.clone(),
        cache: env.cache.clone(),
    })
}

#[derive(serde::Deserialize)]
struct RepoInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(serde::Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<Lfs>,
}

#[derive(serde::Deserialize)]
struct Lfs {
    sha256: String,
}
