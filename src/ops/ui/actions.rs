//! The dashboard's actions (with `--ui-actions` only): sync now, suspend,
//! resume. Each is one merge patch of the GitSync, made with the
//! controller's own identity, behind a token compared in constant time.

use std::path::Path;

use aws_lc_rs::digest;
use axum::http::{header, HeaderMap, StatusCode};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;
use zeroize::Zeroizing;

use crate::gitsync::{GitSync, REQUESTED_AT};

/// Shorter tokens are refused: guessable.
pub const MIN_TOKEN_LEN: usize = 16;
/// The field manager of the dashboard's patches (`kubectl get -o yaml
/// --show-managed-fields` names it).
pub const FIELD_MANAGER: &str = "driftless-ui";

/// The actions' shared secret; never logged, never sent to a browser.
#[derive(Clone)]
pub struct Token(Zeroizing<String>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// `value` trimmed (a file's trailing newline is no part of it); `from`
    /// names where it came from, for the error.
    pub fn new(value: String, from: &str) -> Result<Self, String> {
        let value = Zeroizing::new(value);
        let t = value.trim();
        if t.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the UI token from {from} has {} characters; give at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)",
                t.len()
            ));
        }
        Ok(Self(Zeroizing::new(t.to_string())))
    }

    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--ui-token-file {}: {e}", path.display()))?;
        Self::new(text, &format!("--ui-token-file {}", path.display()))
    }

    /// The request carries `Authorization: Bearer <this token>`. Both sides
    /// are hashed first and the digests compared without an early exit, so
    /// neither the time taken nor the lengths tell how much matched.
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        equal_in_constant_time(given.trim().as_bytes(), self.0.as_bytes())
    }
}

fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (
        digest::digest(&digest::SHA256, a),
        digest::digest(&digest::SHA256, b),
    );
    let diff = a
        .as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Set `driftless.dev/requested-at`: the controller fetches and applies now.
    Sync,
    Suspend,
    Resume,
}

impl Action {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sync" => Some(Self::Sync),
            "suspend" => Some(Self::Suspend),
            "resume" => Some(Self::Resume),
            _ => None,
        }
    }

    fn patch(self) -> serde_json::Value {
        match self {
            Self::Sync => json!({"metadata": {"annotations": {
                REQUESTED_AT: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            }}}),
            Self::Suspend => json!({"spec": {"suspend": true}}),
            Self::Resume => json!({"spec": {"suspend": false}}),
        }
    }

    fn done(self) -> &'static str {
        match self {
            Self::Sync => "sync requested",
            Self::Suspend => "suspended",
            Self::Resume => "resumed",
        }
    }
}

/// Patches GitSync `ns/name`; refuses one outside the controller's
/// `--namespace`.
pub async fn run(
    client: &kube::Client,
    scope: Option<&str>,
    ns: &str,
    name: &str,
    action: Action,
) -> Result<&'static str, (StatusCode, String)> {
    if scope.is_some_and(|s| s != ns) {
        return Err((
            StatusCode::FORBIDDEN,
            format!("GitSync {ns}/{name} is outside this controller's --namespace"),
        ));
    }
    let api: Api<GitSync> = Api::namespaced(client.clone(), ns);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch(name, &params, &Patch::Merge(action.patch()))
        .await
    {
        Ok(_) => Ok(action.done()),
        Err(kube::Error::Api(e)) if e.code == 404 => Err((
            StatusCode::NOT_FOUND,
            format!("GitSync {ns}/{name} does not exist"),
        )),
        Err(e) => Err((
            StatusCode::BAD_GATEWAY,
            format!("patching GitSync {ns}/{name}: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_authorizes() {
        let token = Token::new(format!("{}\n", "s".repeat(20)), "test").unwrap();
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert!(token.authorizes(&with(&format!("Bearer {}", "s".repeat(20)))));
        assert!(!token.authorizes(&with(&format!("Bearer {}", "s".repeat(19)))));
        assert!(!token.authorizes(&with(&format!("Bearer {}x", "s".repeat(20)))));
        assert!(!token.authorizes(&with(&"s".repeat(20))));
        assert!(!token.authorizes(&HeaderMap::new()));
        let e = Token::new("short".into(), "DRIFTLESS_UI_TOKEN").unwrap_err();
        assert!(e.contains("DRIFTLESS_UI_TOKEN") && e.contains("16"), "{e}");
        assert_eq!(format!("{token:?}"), "Token(..)");
    }
}
