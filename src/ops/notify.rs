//! Notifications: a JSON POST to a webhook on what an operator wants to hear
//! about (a sync applied or failed, drift corrected, a resource failed). The
//! target URL (and an optional bearer token) come from a Secret, re-read at
//! most every 30 s so that rotating it needs no restart. Never logged.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde::Serialize;
use tracing::warn;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    SyncApplied,
    SyncFailed,
    DriftCorrected,
    ResourceFailed,
}

/// One notification, as sent.
#[derive(Clone, Debug, Serialize)]
pub struct Notification {
    pub event: Event,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub message: String,
    /// The Git revision, for GitSync events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub time: String,
}

impl Notification {
    pub fn new(
        event: Event,
        kind: &str,
        namespace: &str,
        name: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            event,
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            message: message.into(),
            revision: None,
            time: chrono::Utc::now().to_rfc3339(),
        }
    }
}

struct Target {
    url: String,
    token: Option<String>,
}

/// Sends notifications, or nothing when no Secret is configured.
pub struct Notifier {
    source: Option<(kube::Client, String, String)>,
    cached: Mutex<Option<(Instant, Option<std::sync::Arc<Target>>)>>,
    http: crate::http_client::Client<Full<Bytes>>,
}

impl Notifier {
    /// Notifications off.
    pub fn disabled() -> Self {
        Self::build(None)
    }

    /// Notifications to the `url` (and optional `token`) keys of Secret
    /// `namespace/name`.
    pub fn from_secret(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self::build(Some((client, namespace.to_string(), name.to_string())))
    }

    fn build(source: Option<(kube::Client, String, String)>) -> Self {
        Self {
            source,
            cached: Mutex::new(None),
            http: crate::http_client::client().expect("an HTTP client for notifications"),
        }
    }

    async fn target(&self) -> Option<std::sync::Arc<Target>> {
        let (client, ns, name) = self.source.as_ref()?;
        if let Some((at, t)) = self.cached.lock().expect("notifier poisoned").as_ref() {
            if at.elapsed() < Duration::from_secs(30) {
                return t.clone();
            }
        }
        let read = match Api::<Secret>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await
        {
            Ok(Some(secret)) => {
                let key = |k: &str| {
                    secret
                        .data
                        .as_ref()
                        .and_then(|d| d.get(k))
                        .and_then(|v| String::from_utf8(v.0.clone()).ok())
                        .map(|v| v.trim().to_string())
                };
                match key("url") {
                    Some(url) => Some(std::sync::Arc::new(Target {
                        url,
                        token: key("token"),
                    })),
                    None => {
                        warn!(secret = %format!("{ns}/{name}"), "notification Secret has no `url` key: not sending");
                        None
                    }
                }
            }
            Ok(None) => {
                warn!(secret = %format!("{ns}/{name}"), "notification Secret does not exist: not sending");
                None
            }
            Err(e) => {
                warn!(error = %e, "cannot read the notification Secret");
                None
            }
        };
        *self.cached.lock().expect("notifier poisoned") = Some((Instant::now(), read.clone()));
        read
    }

    /// Sends `n` in the background; a failure is logged, never retried in a
    /// loop, and never delays a reconcile.
    pub fn send(self: &std::sync::Arc<Self>, n: Notification) {
        if self.source.is_none() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let Some(target) = me.target().await else {
                return;
            };
            let body = serde_json::to_vec(&n).expect("a notification serializes");
            let mut req =
                hyper::Request::post(&target.url).header("content-type", "application/json");
            if let Some(token) = &target.token {
                req = req.header("authorization", format!("Bearer {token}"));
            }
            let Ok(req) = req.body(Full::new(Bytes::from(body))) else {
                warn!("the notification URL in the Secret is not a valid URL");
                return;
            };
            match tokio::time::timeout(Duration::from_secs(5), me.http.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => {}
                // The URL is a credential (Slack-style): say only what failed.
                Ok(Ok(resp)) => {
                    warn!(status = %resp.status(), event = ?n.event, "notification refused by the receiver")
                }
                Ok(Err(e)) => warn!(error = %e, event = ?n.event, "notification not delivered"),
                Err(_) => warn!(event = ?n.event, "notification timed out after 5 s"),
            }
        });
    }
}
