//! Git credentials from a GitSync's Secret, and URLs shown without them.

use std::fmt;

/// Credentials from a GitSync's Secret. `Debug` never shows a secret.
#[derive(Clone)]
pub enum Credentials {
    /// HTTPS with a token (sent as the password; username `git` unless given).
    Token {
        username: Option<String>,
        token: String,
    },
    /// HTTPS with username and password.
    Basic { username: String, password: String },
    /// SSH with a private key; host keys are checked against `known_hosts`.
    Ssh {
        identity: String,
        passphrase: Option<String>,
        known_hosts: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Credentials::Token { .. } => "Token",
            Credentials::Basic { .. } => "Basic",
            Credentials::Ssh { .. } => "Ssh",
        };
        write!(f, "Credentials::{kind}(<redacted>)")
    }
}

impl Credentials {
    /// Reads the keys of a Secret's data: `identity` + `known_hosts` (and
    /// optionally `password` as the key's passphrase) for SSH; `token`
    /// (optionally with `username`), or `username` + `password`, for HTTPS.
    /// `secret` names the Secret in messages; values never appear in them.
    pub fn from_secret_data(
        secret: &str,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        if let Some(identity) = get("identity") {
            let known_hosts = get("known_hosts").ok_or_else(|| {
                format!("Secret {secret} has an identity but no known_hosts: SSH host keys are always verified")
            })?;
            return Ok(Credentials::Ssh {
                identity,
                passphrase: get("password"),
                known_hosts,
            });
        }
        if let Some(token) = get("token") {
            return Ok(Credentials::Token {
                username: get("username"),
                token,
            });
        }
        match (get("username"), get("password")) {
            (Some(username), Some(password)) => Ok(Credentials::Basic { username, password }),
            _ => Err(format!(
                "Secret {secret} has none of: token; username and password; identity and known_hosts"
            )),
        }
    }
}

/// `url` without a password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{scheme}://{masked}@{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_passwords() {
        assert_eq!(
            redact_url("https://bob:s3cret@example.com/r.git"),
            "https://bob:***@example.com/r.git"
        );
        assert_eq!(
            redact_url("ssh://git@example.com/r.git"),
            "ssh://git@example.com/r.git"
        );
        assert_eq!(redact_url("file:///tmp/r.git"), "file:///tmp/r.git");
    }

    #[test]
    fn credentials_from_secret_keys_and_debug_hides_them() {
        let data = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = Credentials::from_secret_data("ns/s", data(&[("token", "tok-123")])).unwrap();
        assert!(matches!(c, Credentials::Token { .. }));
        assert!(!format!("{c:?}").contains("tok-123"));
        let c =
            Credentials::from_secret_data("ns/s", data(&[("username", "u"), ("password", "p")]))
                .unwrap();
        assert!(matches!(c, Credentials::Basic { .. }));
        let err = Credentials::from_secret_data("ns/s", data(&[("identity", "KEY")])).unwrap_err();
        assert!(err.contains("known_hosts") && !err.contains("KEY"), "{err}");
        let c = Credentials::from_secret_data(
            "ns/s",
            data(&[("identity", "KEY"), ("known_hosts", "h ssh-ed25519 AAAA")]),
        )
        .unwrap();
        assert!(matches!(c, Credentials::Ssh { .. }));
        let err = Credentials::from_secret_data("ns/s", data(&[("username", "u")])).unwrap_err();
        assert!(err.contains("ns/s"), "{err}");
    }
}
