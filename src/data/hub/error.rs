//! Hub errors, each saying what to do. A refusal by the hub (401, 403, 404) is told apart from
//! a network failure: the fix differs (log in, accept a license, fix a name, check the
//! network), and the hub's own `X-Error-Message` is passed on.

use super::env::TokenSource;
use super::Kind;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("`{0}` is not a hub URI; write hf://owner/name or hf://owner/name/path/to/file")]
    BadUri(String),
    #[error(
        "{repo} (revision {revision}): file `{file}` is not in the Hugging Face cache at {cache} \
         and offline mode is on ({why}). To fix: run online (unset HF_HUB_OFFLINE / set \
         `offline: false`; if the repo is gated or private, set HF_TOKEN or run `hf auth \
         login`), or pre-populate the cache with `hf download {repo} {file} --repo-type {kind} \
         --revision {revision}`, or point `source` at a local file"
    )]
    NotCached {
        repo: String,
        revision: String,
        file: String,
        cache: String,
        kind: String,
        why: String,
    },
    #[error(
        "{repo} (revision {revision}): downloading `{file}` from {endpoint} failed: {msg}. Check \
         the network (and HF_ENDPOINT if you use a mirror), or pre-populate the cache with \
         `hf download {repo} {file} --repo-type {kind} --revision {revision}`, or use a local \
         file"
    )]
    Download {
        repo: String,
        revision: String,
        file: String,
        kind: String,
        endpoint: String,
        msg: String,
    },
    #[error("{0}")]
    Refused(Box<Refusal>),
    #[error(
        "{repo}: cannot resolve revision {revision} to a commit: the hub at {endpoint} could not \
         be reached ({msg}) and the Hugging Face cache at {cache} lacks {missing}. Check the \
         network (and HF_ENDPOINT if you use a mirror), or fill the cache where the hub is \
         reachable: `hf download {repo} --repo-type {kind} --revision {revision}`"
    )]
    Unreachable {
        repo: String,
        revision: String,
        kind: String,
        endpoint: String,
        cache: String,
        msg: String,
        /// What the cache would need to answer instead: `refs/<revision>` or a file.
        missing: String,
    },
    #[error(
        "{repo} has no file `{file}` at revision {revision} (commit {commit}). Check the name \
         at {tree}, or pin a revision that has it"
    )]
    NotInRepo {
        repo: String,
        revision: String,
        commit: String,
        file: String,
        tree: String,
    },
    #[error(
        "{path}: {what} mismatch for {file} at revision {revision}: expected {expected}, got \
         {actual}. The cached file is corrupt or not the pinned one; delete it and download again"
    )]
    Checksum {
        path: String,
        file: String,
        revision: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// The hub answered a file request with an HTTP error status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: Kind,
    pub repo: String,
    pub revision: String,
    pub file: String,
    pub endpoint: String,
    pub status: u16,
    /// The hub's `X-Error-Code` and `X-Error-Message` headers, when it sent them.
    pub hub_code: Option<String>,
    pub hub_message: Option<String>,
    /// Where the token sent came from; `None`: no token was sent.
    pub token: Option<TokenSource>,
    /// The token file looked at, named when no token was sent.
    pub token_path: String,
}

impl Refusal {
    /// The repo's page on the hub in use, where its license is accepted.
    pub fn page(&self) -> String {
        match self.kind {
            Kind::Model => format!("{}/{}", self.endpoint, self.repo),
            Kind::Dataset => format!("{}/datasets/{}", self.endpoint, self.repo),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (revision {}): the hub at {} refused `{}` with ",
            self.repo, self.revision, self.endpoint, self.file
        )?;
        match self.status {
            401 => write!(f, "401 Unauthorized")?,
            403 => write!(f, "403 Forbidden")?,
            404 => write!(f, "404 Not Found")?,
            other => write!(f, "HTTP {other}")?,
        }
        match (&self.hub_code, &self.hub_message) {
            (Some(c), Some(m)) => write!(f, " ({c}: \"{m}\")")?,
            (None, Some(m)) => write!(f, " (\"{m}\")")?,
            (Some(c), None) => write!(f, " ({c})")?,
            (None, None) => {}
        }
        let page = self.page();
        match (self.status, &self.token) {
            (401, None) => write!(
                f,
                ". No token was sent: HF_TOKEN is unset and {} does not exist. The repo is gated \
                 or private, or has another name: check it at {page}; if it is gated, accept \
                 its license there, then set HF_TOKEN or run `hf auth login`",
                self.token_path
            ),
            (401, Some(src)) => write!(
                f,
                ". The token from {src} was sent and not accepted (expired, revoked, or of no \
                 account with access). Check the repo at {page}; if it is gated, accept its \
                 license there, then set HF_TOKEN or run `hf auth login` with that account"
            ),
            (403, Some(src)) => write!(
                f,
                ". The repo is gated and the token sent (from {src}) has no access to it: accept \
                 the license at {page} with that token's account, or set HF_TOKEN / run `hf \
                 auth login` with an account that has accepted it"
            ),
            (403, None) => write!(
                f,
                ". The repo is gated and no token was sent: accept the license at {page}, then \
                 set HF_TOKEN or run `hf auth login` with that account"
            ),
            (404, _) => write!(
                f,
                ". Check the repo, revision and file name at {page}/tree/{}",
                self.revision
            ),
            _ => write!(
                f,
                ". Check the hub's status and HF_ENDPOINT, or pre-populate the cache with `hf \
                 download {} {} --repo-type {} --revision {}`",
                self.repo,
                self.file,
                self.kind.name(),
                self.revision
            ),
        }
    }
}

/// The status and hub headers of an HTTP error inside an `hf-hub` error, if it is one.
pub fn http_status(
    e: &hf_hub::api::sync::ApiError,
) -> Option<(u16, Option<String>, Option<String>)> {
    use hf_hub::api::sync::ApiError;
    match e {
        ApiError::RequestError(inner) => match inner.as_ref() {
            ureq::Error::Status(code, resp) => {
                let header = |name| resp.header(name).map(str::to_string);
                Some((*code, header("X-Error-Code"), header("X-Error-Message")))
            }
            ureq::Error::Transport(_) => None,
        },
        ApiError::TooManyRetries(inner) => http_status(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(kind: Kind, status: u16, token: Option<TokenSource>) -> Refusal {
        Refusal {
            kind,
            repo: "google/gemma-3-1b-it".into(),
            revision: "main".into(),
            file: "config.json".into(),
            endpoint: "https://huggingface.co".into(),
            status,
            hub_code: None,
            hub_message: None,
            token,
            token_path: "/home/u/.cache/huggingface/token".into(),
        }
    }

    #[test]
    fn refusals_say_what_to_do_with_the_url() {
        let mut r = refusal(Kind::Model, 401, None);
        r.hub_code = Some("GatedRepo".into());
        r.hub_message = Some("Access to model google/gemma-3-1b-it is restricted.".into());
        insta::assert_snapshot!("unauthorized_without_token", r.to_string());

        let r = refusal(Kind::Model, 401, Some(TokenSource::Var("HF_TOKEN")));
        insta::assert_snapshot!("unauthorized_with_token", r.to_string());

        let mut r = refusal(
            Kind::Model,
            403,
            Some(TokenSource::File("/home/u/.cache/huggingface/token".into())),
        );
        r.hub_message = Some(
            "Access to model google/gemma-3-1b-it is restricted and you are not in the \
             authorized list."
                .into(),
        );
        insta::assert_snapshot!("forbidden_gated", r.to_string());

        // A mirror's URL, a dataset's page.
        let mut r = refusal(Kind::Dataset, 403, Some(TokenSource::Var("HF_TOKEN")));
        r.repo = "acme/private_rows".into();
        r.endpoint = "http://mirror.local:8080".into();
        insta::assert_snapshot!("forbidden_dataset_on_mirror", r.to_string());

        let mut r = refusal(Kind::Model, 404, None);
        r.hub_code = Some("EntryNotFound".into());
        r.hub_message = Some("Entry not found".into());
        insta::assert_snapshot!("not_found", r.to_string());

        let r = refusal(Kind::Model, 403, None);
        insta::assert_snapshot!("forbidden_without_token", r.to_string());

        let r = refusal(Kind::Model, 503, None);
        insta::assert_snapshot!("other_status", r.to_string());
    }

    #[test]
    fn offline_and_network_failures_say_what_to_do() {
        // A public dataset: the token is advice only "if the repo is gated or private".
        let e = HubError::NotCached {
            repo: "gretelai/synthetic_text_to_sql".into(),
            revision: "main".into(),
            file: "synthetic_text_to_sql_train.snappy.parquet".into(),
            cache: "/home/u/.cache/huggingface/hub".into(),
            kind: "dataset".into(),
            why: "HF_HUB_OFFLINE is set".into(),
        };
        insta::assert_snapshot!("offline_not_cached", e.to_string());
        let e = HubError::Download {
            repo: "google/gemma-3-1b-it".into(),
            revision: "main".into(),
            file: "config.json".into(),
            kind: "model".into(),
            endpoint: "https://huggingface.co".into(),
            msg: "request error: Connection refused".into(),
        };
        insta::assert_snapshot!("network_failure", e.to_string());
        // Planning could not ask the hub for the commit, and the cache cannot answer.
        let e = HubError::Unreachable {
            repo: "gretelai/synthetic_text_to_sql".into(),
            revision: "main".into(),
            kind: "dataset".into(),
            endpoint: "https://huggingface.co".into(),
            cache: "/home/u/.cache/huggingface/hub".into(),
            msg: "Dns Failed: resolve dns name 'huggingface.co:443'".into(),
            missing: "refs/main".into(),
        };
        insta::assert_snapshot!("unreachable_not_cached", e.to_string());
    }

    #[test]
    fn the_status_and_hub_headers_are_read_from_an_hf_hub_error() {
        use std::str::FromStr;
        let resp = ureq::Response::from_str(
            "HTTP/1.1 403 Forbidden\r\nX-Error-Code: GatedRepo\r\nX-Error-Message: no access\r\n\r\n",
        )
        .unwrap();
        let e = hf_hub::api::sync::ApiError::RequestError(Box::new(ureq::Error::Status(403, resp)));
        assert_eq!(
            http_status(&e),
            Some((403, Some("GatedRepo".into()), Some("no access".into())))
        );
        let wrapped = hf_hub::api::sync::ApiError::TooManyRetries(Box::new(e));
        assert_eq!(http_status(&wrapped).map(|s| s.0), Some(403));
        let io = hf_hub::api::sync::ApiError::IoError(std::io::Error::other("disk"));
        assert_eq!(http_status(&io), None);
    }
}
