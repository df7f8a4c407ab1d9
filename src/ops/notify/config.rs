//! One notification provider, as its Secret describes it (see README
//! "Notifications"): which provider, where, with which credential, for
//! which objects. Checked when read: a token never goes over plain http
//! except to a loopback address.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// The kinds of receivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Generic,
    GenericHmac,
    Slack,
    Github,
    Gitlab,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Generic,
        Kind::GenericHmac,
        Kind::Slack,
        Kind::Github,
        Kind::Gitlab,
    ];

    /// The value of the Secret's `provider` key (and the metrics label).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Generic => "generic",
            Kind::GenericHmac => "generic-hmac",
            Kind::Slack => "slack",
            Kind::Github => "github",
            Kind::Gitlab => "gitlab",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                format!("unknown provider {s:?} (one of: {})", names.join(", "))
            })
    }

    /// Where it posts when the Secret has no `url`.
    fn default_url(self) -> Option<&'static str> {
        match self {
            Kind::Github => Some("https://api.github.com"),
            Kind::Gitlab => Some("https://gitlab.com"),
            _ => None,
        }
    }

    /// Whether it sends a token (so only over https, or to loopback).
    fn sends_token(self, token: Option<&str>) -> bool {
        matches!(self, Kind::Github | Kind::Gitlab) || token.is_some()
    }
}

/// A provider's settings, as read from its Secret. Debug is hand-written:
/// it never shows the token, the key or a webhook URL's path.
#[derive(Clone)]
pub struct Config {
    pub kind: Kind,
    /// Webhook URL (generic, generic-hmac, slack) or API base (github, gitlab).
    pub url: url::Url,
    pub token: Option<String>,
    /// The HMAC key (generic-hmac).
    pub key: Option<Vec<u8>>,
    /// `owner/repo` (github), project path or id (gitlab); default: from
    /// each GitSync's spec.url.
    pub repository: Option<String>,
    /// `namespace/name` patterns (`*` matches any one part); empty: all.
    pub select: Vec<(String, String)>,
    /// A link for commit statuses, with `{namespace}`, `{name}`, `{sha}`,
    /// `{revision}` filled in.
    pub target_url: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("kind", &self.kind)
            .field("url", &shown(self.kind, &self.url))
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// From a Secret's data; `what` names the Secret in errors. Errors name
    /// the provider and the URL (as [`shown`]), never a credential.
    pub fn from_data(what: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<Self, String> {
        let text = |k: &str| {
            data.get(k)
                .map(|v| String::from_utf8_lossy(v).trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let kind = Kind::parse(text("provider").as_deref().unwrap_or("generic"))
            .map_err(|e| format!("notification Secret {what}: key `provider`: {e}"))?;
        let at = |e: String| format!("notification Secret {what} (provider {}): {e}", kind.name());
        let raw = text("url")
            .or_else(|| kind.default_url().map(String::from))
            .ok_or_else(|| at("no `url` key".into()))?;
        let url = url::Url::parse(&raw).map_err(|e| at(format!("key `url` is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(at(format!(
                "key `url` must be an http(s) URL, got {}",
                shown(kind, &url)
            )));
        }
        let token = text("token");
        if kind.sends_token(token.as_deref()) && url.scheme() != "https" && !is_loopback(&url) {
            let header = match kind {
                Kind::Gitlab => "PRIVATE-TOKEN",
                _ => "Bearer",
            };
            return Err(at(format!(
                "refusing to send a {header} token to {}: tokens go only over https (or to a loopback address)",
                shown(kind, &url)
            )));
        }
        let key = data.get("key").filter(|k| !k.is_empty()).cloned();
        match kind {
            Kind::Github | Kind::Gitlab if token.is_none() => {
                return Err(at("no `token` key (the API token)".into()))
            }
            Kind::GenericHmac if key.is_none() => {
                return Err(at("no `key` key (the HMAC-SHA256 key)".into()))
            }
            _ => {}
        }
        Ok(Self {
            kind,
            url,
            token,
            key,
            repository: text("repository").map(|r| r.trim_matches('/').to_string()),
            select: parse_select(text("select").as_deref().unwrap_or_default())
                .map_err(|e| at(format!("key `select`: {e}")))?,
            target_url: text("target_url"),
        })
    }

    /// Whether notifications about `namespace/name` go to this provider.
    pub fn selects(&self, namespace: &str, name: &str) -> bool {
        let part = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        self.select.is_empty()
            || self
                .select
                .iter()
                .any(|(ns, n)| part(ns, namespace) && part(n, name))
    }

    /// The API base, without a trailing slash.
    pub fn base(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_string()
    }
}

fn parse_select(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok((ns.to_string(), name.to_string()))
            }
            _ if p == "*" => Ok(("*".into(), "*".into())),
            _ => Err(format!("{p:?}: expected NAMESPACE/NAME (`*` for any)")),
        })
        .collect()
}

/// `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// The URL as logs and errors may show it: never user info or a query; and
/// for webhooks (whose path is often the credential, as Slack's) only the
/// scheme and host. API bases show their path.
pub fn shown(kind: Kind, url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let origin = format!("{}://{host}{port}", url.scheme());
    match kind {
        Kind::Github | Kind::Gitlab => format!("{origin}{}", url.path().trim_end_matches('/')),
        _ if url.path() == "/" => origin,
        _ => format!("{origin}/…"),
    }
}

/// The repository path of a Git URL: `owner/repo` of
/// `https://github.com/owner/repo.git`, `git@github.com:owner/repo.git` or
/// `ssh://git@host/owner/repo`; `None` for file:// and other shapes.
pub fn repository_of(git_url: &str) -> Option<String> {
    let path = if let Some((scheme, rest)) = git_url.split_once("://") {
        match scheme {
            "https" | "http" | "ssh" | "git" => rest.split_once('/')?.1,
            _ => return None,
        }
    } else {
        // scp-like: [user@]host:path
        let (host, path) = git_url.split_once(':')?;
        if host.contains('/') {
            return None;
        }
        path
    };
    let path = path.split(['?', '#']).next()?.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    (path.contains('/') && !path.split('/').any(str::is_empty)).then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn tokens_go_only_over_https_or_to_loopback() {
        for (provider, url) in [
            ("github", "http://ghe.example.com/api/v3"),
            ("gitlab", "http://gitlab.example.com"),
            ("generic", "http://hooks.example.com/secret-path"),
        ] {
            let err = Config::from_data(
                "ops/notify",
                &data(&[("provider", provider), ("url", url), ("token", "t0ken")]),
            )
            .unwrap_err();
            assert!(err.contains(&format!("provider {provider}")), "{err}");
            assert!(err.contains("only over https"), "{err}");
            assert!(err.contains("http://"), "{err}");
            assert!(
                !err.contains("t0ken") && !err.contains("secret-path"),
                "{err}"
            );
        }
        for url in [
            "http://127.0.0.1:9000",
            "http://localhost:1",
            "http://[::1]:80",
        ] {
            let cfg = Config::from_data(
                "ops/notify",
                &data(&[("provider", "github"), ("url", url), ("token", "t")]),
            );
            assert!(cfg.is_ok(), "{url}: {cfg:?}");
        }
        // No token: a plain-http webhook is fine.
        let cfg = Config::from_data("ops/n", &data(&[("url", "http://hooks.example.com/x")]));
        assert!(cfg.is_ok(), "{cfg:?}");
    }

    #[test]
    fn defaults_and_missing_keys() {
        let gh =
            Config::from_data("a/b", &data(&[("provider", "github"), ("token", "t")])).unwrap();
        assert_eq!(gh.base(), "https://api.github.com");
        let err = Config::from_data("a/b", &data(&[("provider", "github")])).unwrap_err();
        assert!(err.contains("no `token`"), "{err}");
        let err = Config::from_data(
            "a/b",
            &data(&[("provider", "generic-hmac"), ("url", "https://x.example")]),
        )
        .unwrap_err();
        assert!(err.contains("no `key`"), "{err}");
        let err = Config::from_data("a/b", &data(&[("provider", "teams")])).unwrap_err();
        assert!(err.contains("unknown provider \"teams\""), "{err}");
    }

    #[test]
    fn select_patterns() {
        let cfg = Config::from_data(
            "a/b",
            &data(&[("url", "https://x.example"), ("select", "team-a/*, */web")]),
        )
        .unwrap();
        assert!(cfg.selects("team-a", "anything"));
        assert!(cfg.selects("team-b", "web"));
        assert!(!cfg.selects("team-b", "api"));
        let err = Config::from_data(
            "a/b",
            &data(&[("url", "https://x.example"), ("select", "team-a")]),
        )
        .unwrap_err();
        assert!(err.contains("expected NAMESPACE/NAME"), "{err}");
    }

    #[test]
    fn repositories_from_git_urls() {
        for (url, want) in [
            ("https://github.com/acme/web.git", Some("acme/web")),
            ("https://github.com/acme/web", Some("acme/web")),
            ("git@github.com:acme/web.git", Some("acme/web")),
            (
                "ssh://git@gitlab.com/group/sub/app.git",
                Some("group/sub/app"),
            ),
            ("file:///tmp/repo.git", None),
            ("https://github.com/acme", None),
        ] {
            assert_eq!(repository_of(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn shown_urls_hide_webhook_paths_and_queries() {
        let u = url::Url::parse("https://hooks.slack.com/services/T/B/XYZ?x=1").unwrap();
        assert_eq!(shown(Kind::Slack, &u), "https://hooks.slack.com/…");
        let u = url::Url::parse("https://user:pw@ghe.example.com/api/v3/?t=1").unwrap();
        assert_eq!(shown(Kind::Github, &u), "https://ghe.example.com/api/v3");
    }
}
