//! Where the hub is and who we are to it, read from the environment the way `huggingface_hub`
//! documents it (package_reference/environment_variables), so a user's mirror, login and cache
//! work for t2s as they do for `hf download`:
//!
//! - `HF_ENDPOINT`: the hub's base URL (a mirror or proxy), default `https://huggingface.co`;
//! - `HF_HOME`: default `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`;
//! - `HF_HUB_CACHE`: default `$HF_HOME/hub`;
//! - `HF_TOKEN` (legacy `HUGGING_FACE_HUB_TOKEN`), else the file at `HF_TOKEN_PATH`, whose
//!   default is `$HF_HOME/token` (where `hf auth login` writes it). Never beside
//!   `HF_HUB_CACHE`: the cache and the login are configured apart;
//! - `HF_HUB_OFFLINE`: 1/true/yes/on.

use std::path::PathBuf;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where the token sent to the hub came from, for messages that must say which one was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Var(&'static str),
    File(PathBuf),
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Var(name) => write!(f, "{name}"),
            TokenSource::File(p) => write!(f, "the token file {}", p.display()),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    pub source: TokenSource,
}

// The secret stays out of debug output and error chains.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(from {})", self.source)
    }
}

/// The hub settings of one process, resolved once from its environment.
#[derive(Debug, Clone)]
pub struct HubEnv {
    /// Base URL without a trailing slash.
    pub endpoint: String,
    pub cache: PathBuf,
    pub token: Option<Token>,
    /// The token file looked at when no variable holds a token (named in 401 messages).
    pub token_path: PathBuf,
    pub offline: bool,
}

impl HubEnv {
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Resolve from any variable lookup (tests pass a map; the process passes `std::env`).
    /// Empty values count as unset, as in `huggingface_hub`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let hf_home = match get("HF_HOME") {
            Some(h) => PathBuf::from(h),
            None => match get("XDG_CACHE_HOME") {
                Some(x) => PathBuf::from(x).join("huggingface"),
                None => PathBuf::from(get("HOME").unwrap_or_default())
                    .join(".cache")
                    .join("huggingface"),
            },
        };
        let cache = get("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token_path = get("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("token"));
        let from_var = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]
            .into_iter()
            .find_map(|name| {
                get(name).map(|v| Token {
                    value: v.trim().to_string(),
                    source: TokenSource::Var(name),
                })
            });
        let token = from_var.or_else(|| {
            let text = std::fs::read_to_string(&token_path).ok()?;
            let value = text.trim();
            (!value.is_empty()).then(|| Token {
                value: value.to_string(),
                source: TokenSource::File(token_path.clone()),
            })
        });
        let endpoint = get("HF_ENDPOINT")
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let offline = matches!(
            get("HF_HUB_OFFLINE")
                .map(|v| v.trim().to_ascii_lowercase())
                .as_deref(),
            Some("1" | "true" | "yes" | "on")
        );
        HubEnv {
            endpoint,
            cache,
            token,
            token_path,
            offline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> HubEnv {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubEnv::from_lookup(|k| map.get(k).cloned())
    }

    fn write_token(path: &std::path::Path, value: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, value).unwrap();
    }

    #[test]
    fn the_token_is_found_where_huggingface_hub_looks() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let h = home.to_str().unwrap();
        let default_file = home.join(".cache/huggingface/token");
        write_token(&default_file, "hf_default\n");

        // ~/.cache/huggingface/token, also when HF_HUB_CACHE points elsewhere (the old bug
        // looked beside the cache).
        let cache = d.path().join("elsewhere/hub");
        let e = env(&[("HOME", h), ("HF_HUB_CACHE", cache.to_str().unwrap())]);
        assert_eq!(e.cache, cache);
        let t = e.token.unwrap();
        assert_eq!(
            (t.value.as_str(), t.source),
            ("hf_default", TokenSource::File(default_file.clone()))
        );

        // $XDG_CACHE_HOME/huggingface/token when XDG_CACHE_HOME is set.
        let xdg = d.path().join("xdg");
        write_token(&xdg.join("huggingface/token"), "hf_xdg");
        let e = env(&[("HOME", h), ("XDG_CACHE_HOME", xdg.to_str().unwrap())]);
        assert_eq!(e.token.unwrap().value, "hf_xdg");
        assert_eq!(e.cache, xdg.join("huggingface/hub"));

        // $HF_HOME/token, with the cache at $HF_HOME/hub.
        let hf_home = d.path().join("hfhome");
        write_token(&hf_home.join("token"), "hf_home");
        let e = env(&[("HOME", h), ("HF_HOME", hf_home.to_str().unwrap())]);
        assert_eq!(e.token.unwrap().value, "hf_home");
        assert_eq!(e.cache, hf_home.join("hub"));

        // HF_TOKEN_PATH wins over $HF_HOME/token; a missing file there means no token (as in
        // huggingface_hub, which does not fall back), and the path is kept for the message.
        let custom = d.path().join("secrets/hf");
        write_token(&custom, "  hf_custom  ");
        let e = env(&[
            ("HOME", h),
            ("HF_HOME", hf_home.to_str().unwrap()),
            ("HF_TOKEN_PATH", custom.to_str().unwrap()),
        ]);
        assert_eq!(e.token.unwrap().value, "hf_custom");
        let missing = d.path().join("nope");
        let e = env(&[("HOME", h), ("HF_TOKEN_PATH", missing.to_str().unwrap())]);
        assert_eq!((e.token, e.token_path), (None, missing));

        // HF_TOKEN wins over every file; the legacy name is read too; empty means unset.
        let e = env(&[("HOME", h), ("HF_TOKEN", "hf_var")]);
        let t = e.token.unwrap();
        assert_eq!(
            (t.value.as_str(), t.source),
            ("hf_var", TokenSource::Var("HF_TOKEN"))
        );
        let e = env(&[("HOME", h), ("HUGGING_FACE_HUB_TOKEN", "hf_legacy")]);
        assert_eq!(e.token.unwrap().value, "hf_legacy");
        let e = env(&[("HOME", h), ("HF_TOKEN", "")]);
        assert_eq!(e.token.unwrap().value, "hf_default");
        // The secret never shows in debug output.
        let e = env(&[("HOME", h), ("HF_TOKEN", "hf_secret")]);
        assert!(!format!("{e:?}").contains("hf_secret"));
    }

    #[test]
    fn endpoint_and_offline_follow_the_environment() {
        let e = env(&[]);
        assert_eq!(e.endpoint, DEFAULT_ENDPOINT);
        assert!(!e.offline);
        let e = env(&[
            ("HF_ENDPOINT", "http://127.0.0.1:8080/mirror/"),
            ("HF_HUB_OFFLINE", "ON"),
        ]);
        assert_eq!(e.endpoint, "http://127.0.0.1:8080/mirror");
        assert!(e.offline);
        assert!(!env(&[("HF_HUB_OFFLINE", "0")]).offline);
    }
}
