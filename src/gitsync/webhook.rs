//! The Git webhook receiver `POST /hooks/<namespace>/<gitsync>`: a push
//! signed with the GitSync's `webhookSecretRef` key asks for a sync now, by
//! setting the `driftless.dev/requested-at` annotation.

use std::sync::Arc;

use aws_lc_rs::hmac;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::Api;
use serde_json::json;
use tracing::{info, warn};

use super::REQUESTED_AT;
use crate::ops::http::HttpState;

/// The webhook route, merged into the controller's HTTP server.
pub fn routes() -> Router<Arc<HttpState>> {
    Router::new().route("/hooks/{namespace}/{name}", post(hook))
}

fn gitsync_api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("driftless.dev", "v1alpha1", "GitSync");
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::from_gvk_with_plural(&gvk, "gitsyncs"),
    )
}

/// Whether `headers` carry a valid signature of `body` with `key`:
/// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256>` (GitHub, Gitea, Forgejo),
/// or GitLab's `X-Gitlab-Token: <key>`. Both compared in constant time.
pub fn signature_valid(headers: &HeaderMap, body: &[u8], key: &[u8]) -> bool {
    if let Some(sig) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
    {
        let Some(hex) = sig.strip_prefix("sha256=") else {
            return false;
        };
        let Some(tag) = decode_hex(hex) else {
            return false;
        };
        return hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), body, &tag).is_ok();
    }
    if let Some(token) = headers.get("x-gitlab-token") {
        // Compare HMACs of both sides: constant time whatever the lengths.
        let k = hmac::Key::new(hmac::HMAC_SHA256, b"driftless-token-compare");
        let want = hmac::sign(&k, key);
        return hmac::verify(&k, token.as_bytes(), want.as_ref()).is_ok();
    }
    false
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

async fn hook(
    State(s): State<Arc<HttpState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let api = gitsync_api(&s.client, &namespace);
    // Every refusal looks the same from outside: no oracle for which
    // GitSyncs exist or have a key.
    let unauthorized = (
        StatusCode::UNAUTHORIZED,
        "invalid or missing signature\n".to_string(),
    );
    let gitsync = match api.get_opt(&name).await {
        Ok(Some(g)) => g,
        Ok(None) => return unauthorized,
        Err(e) => {
            warn!(error = %e, "webhook: cannot read GitSync {namespace}/{name}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot read the GitSync\n".into(),
            );
        }
    };
    let Some(secret_name) = gitsync.data["spec"]["webhookSecretRef"]["name"].as_str() else {
        return unauthorized;
    };
    let key = match Api::<Secret>::namespaced(s.client.clone(), &namespace)
        .get_opt(secret_name)
        .await
    {
        Ok(Some(secret)) => secret
            .data
            .and_then(|d| d.get("token").map(|v| v.0.clone())),
        _ => None,
    };
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        warn!("webhook for GitSync {namespace}/{name}: Secret {secret_name} has no `token` key");
        return unauthorized;
    };
    if !signature_valid(&headers, &body, &key) {
        warn!("webhook for GitSync {namespace}/{name}: bad or missing signature");
        return unauthorized;
    }
    let now = chrono::Utc::now().to_rfc3339();
    let patch = json!({"metadata": {"annotations": {REQUESTED_AT: now}}});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            info!("webhook: sync of GitSync {namespace}/{name} requested");
            (
                StatusCode::ACCEPTED,
                format!("sync of {namespace}/{name} requested\n"),
            )
        }
        Err(e) => {
            warn!(error = %e, "webhook: cannot annotate GitSync {namespace}/{name}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot trigger the sync\n".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().unwrap());
        h
    }

    fn github_signature(key: &[u8], body: &[u8]) -> String {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), body);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256={hex}")
    }

    #[test]
    fn github_signatures_are_checked() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = github_signature(b"s3cret", body);
        assert!(signature_valid(
            &headers("x-hub-signature-256", &good),
            body,
            b"s3cret"
        ));
        assert!(!signature_valid(
            &headers("x-hub-signature-256", &good),
            body,
            b"other"
        ));
        assert!(!signature_valid(
            &headers("x-hub-signature-256", &good),
            b"tampered",
            b"s3cret"
        ));
        assert!(!signature_valid(
            &headers("x-hub-signature-256", "sha256=zz"),
            body,
            b"s3cret"
        ));
        assert!(
            !signature_valid(&HeaderMap::new(), body, b"s3cret"),
            "missing"
        );
    }

    #[test]
    fn gitlab_tokens_are_checked() {
        assert!(signature_valid(
            &headers("x-gitlab-token", "s3cret"),
            b"{}",
            b"s3cret"
        ));
        assert!(!signature_valid(
            &headers("x-gitlab-token", "s3cre"),
            b"{}",
            b"s3cret"
        ));
    }
}
