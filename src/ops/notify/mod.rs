//! Notifications: what an operator wants to hear about (a revision started,
//! applied, ready, refused or failing; drift corrected; a resource failing),
//! sent to providers each described by a Secret (`--notification-secret`,
//! repeatable): `generic` JSON, `generic-hmac` (signed), `slack`, and
//! `github` / `gitlab` commit statuses. See README "Notifications".
//!
//! Each Secret has its own bounded queue and one worker, so that one slow
//! receiver delays no other and a commit's statuses arrive in order. A full
//! queue drops its oldest notification (the newest state matters most).
//! Delivery retries 5xx, 429 and connection errors with backoff, a bounded
//! number of times, each attempt with a timeout. Secrets are re-read at most
//! every 30 s (rotation needs no restart); tokens, keys and webhook URLs
//! are never logged.

mod config;
mod generic;
mod github;
mod gitlab;
mod hmac;
mod queue;
mod slack;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use config::{Config, Kind};
pub use hmac::{sign as hmac_sign, HEADER as HMAC_HEADER};
use queue::Sender;

use super::metrics::Metrics;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A GitSync attempts a new revision for the first time.
    SyncStarted,
    /// A GitSync applied a new revision (its objects may not be ready yet).
    SyncApplied,
    /// A GitSync's revision is applied and every object is ready.
    SyncReady,
    /// A revision was refused (with the file:line reason) or is not ready
    /// by spec.timeout.
    SyncFailed,
    /// Fetching or applying failed (retried).
    SyncError,
    DriftCorrected,
    ResourceFailed,
}

/// One notification, as the generic providers send it.
#[derive(Clone, Debug, Serialize)]
pub struct Notification {
    pub event: Event,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub message: String,
    /// The Git revision (`main@sha1:<sha>`), for GitSync events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The revision's change set (`2 created (...), 0 configured, ...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<String>,
    pub time: String,
    /// The GitSync's spec.url, to find its repository (never sent: it may
    /// name a private host).
    #[serde(skip)]
    pub source_url: Option<String>,
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
            changes: None,
            time: chrono::Utc::now().to_rfc3339(),
            source_url: None,
        }
    }

    /// The commit status this is, for a GitSync event with a revision.
    fn commit_state(&self) -> Option<CommitState> {
        if self.kind != "GitSync" {
            return None;
        }
        Some(match self.event {
            Event::SyncStarted => CommitState::Pending,
            Event::SyncApplied => CommitState::Running,
            Event::SyncReady => CommitState::Success,
            Event::SyncFailed => CommitState::Failure,
            Event::SyncError => CommitState::Error,
            Event::DriftCorrected | Event::ResourceFailed => return None,
        })
    }

    /// `<branch>@sha1:<sha>` or `sha1:<sha>`: the branch or tag, and the sha.
    fn parts(&self) -> Option<(&str, &str)> {
        let r = self.revision.as_deref()?;
        let (name, sha) = r
            .rsplit_once("@sha1:")
            .or_else(|| Some(("", r.strip_prefix("sha1:")?)))?;
        let hex = sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit());
        hex.then_some((name, sha))
    }

    fn sha(&self) -> Option<&str> {
        self.parts().map(|(_, sha)| sha)
    }

    fn branch(&self) -> Option<&str> {
        self.parts().map(|(b, _)| b).filter(|b| !b.is_empty())
    }

    /// `main@sha1:0123456789ab`.
    fn short_revision(&self) -> Option<String> {
        let (branch, sha) = self.parts()?;
        let at = if branch.is_empty() {
            String::new()
        } else {
            format!("{branch}@")
        };
        Some(format!("{at}sha1:{}", &sha[..12]))
    }

    /// The commit status context (GitHub) or name (GitLab).
    fn context(&self) -> String {
        format!("driftless/{}/{}", self.namespace, self.name)
    }

    /// A commit status's one-line description, at most `max` characters;
    /// a failure's says its reason (file:line), without the revision (the
    /// status is on that commit).
    fn description(&self, max: usize) -> String {
        let text = match self.commit_state() {
            Some(CommitState::Pending) => "applying this revision".to_string(),
            Some(CommitState::Running) => {
                "applied; waiting for its objects to be ready".to_string()
            }
            Some(CommitState::Success) => match &self.changes {
                Some(c) => format!("applied and ready: {}", counts_only(c)),
                None => "applied and ready".to_string(),
            },
            _ => {
                let prefix = format!(
                    "revision {}: ",
                    self.revision.as_deref().unwrap_or_default()
                );
                self.message
                    .strip_prefix(&prefix)
                    .unwrap_or(&self.message)
                    .to_string()
            }
        };
        if text.chars().count() <= max {
            return text;
        }
        let mut cut: String = text.chars().take(max - 1).collect();
        cut.push('…');
        cut
    }

    /// The Secret's `target_url`, filled in.
    fn target_url(&self, cfg: &Config) -> Option<String> {
        let template = cfg.target_url.as_deref()?;
        Some(
            template
                .replace("{namespace}", &self.namespace)
                .replace("{name}", &self.name)
                .replace("{sha}", self.sha().unwrap_or_default())
                .replace("{revision}", self.revision.as_deref().unwrap_or_default()),
        )
    }
}

/// `1 created (ConfigMap a/b), 0 configured` → `1 created, 0 configured`.
fn counts_only(changes: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in changes.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" ,", ",")
}

/// A commit's state, in the words of neither API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CommitState {
    Pending,
    Running,
    Success,
    Failure,
    Error,
}

/// One POST, as a provider builds it.
#[derive(Clone, Debug)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Request {
    fn json(url: &str, body: Vec<u8>) -> Self {
        Self {
            url: url.to_string(),
            headers: vec![
                ("content-type", "application/json".to_string()),
                (
                    "user-agent",
                    concat!("driftless/", env!("CARGO_PKG_VERSION")).to_string(),
                ),
            ],
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What `cfg`'s provider sends for `n`; `None`: nothing (not its kind of
/// event, or a commit status without a commit or repository).
pub fn request(cfg: &Config, n: &Notification) -> Option<Request> {
    if !cfg.selects(&n.namespace, &n.name) {
        return None;
    }
    match cfg.kind {
        Kind::Generic => Some(generic::request(cfg, n)),
        Kind::GenericHmac => Some(hmac::request(cfg, n)),
        Kind::Slack => slack::request(cfg, n),
        Kind::Github => github::request(cfg, n),
        Kind::Gitlab => gitlab::request(cfg, n),
    }
}

/// How notifications are delivered.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Notifications waiting per provider; past it the oldest is dropped.
    pub queue: usize,
    /// Attempts per notification (the first one included).
    pub attempts: usize,
    /// The first retry's delay; doubled each retry (with jitter), at most 30 s.
    pub backoff: Duration,
    /// Longest one attempt waits for an answer.
    pub timeout: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            queue: 100,
            attempts: 4,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Totals over every provider of a [`Notifier`] (tests wait on them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Handed to a provider's queue.
    pub queued: u64,
    /// Taken off a queue and finished with, whatever the outcome.
    pub handled: u64,
    pub delivered: u64,
    /// HTTP requests made (retries included).
    pub attempts: u64,
    /// Dropped by a full queue.
    pub dropped: u64,
    /// Answered 4xx (not retried), or not a valid request.
    pub refused: u64,
    /// Still failing after the last attempt.
    pub failed: u64,
    /// Not for this provider (its kind of event, `select`, no commit).
    pub skipped: u64,
    /// The provider's Secret is missing or invalid.
    pub unconfigured: u64,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    handled: AtomicU64,
    delivered: AtomicU64,
    attempts: AtomicU64,
    dropped: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    unconfigured: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Counts {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            queued: g(&self.queued),
            handled: g(&self.handled),
            delivered: g(&self.delivered),
            attempts: g(&self.attempts),
            dropped: g(&self.dropped),
            refused: g(&self.refused),
            failed: g(&self.failed),
            skipped: g(&self.skipped),
            unconfigured: g(&self.unconfigured),
        }
    }
}

/// Sends notifications to every configured provider, or nothing.
pub struct Notifier {
    senders: Vec<Arc<Sender>>,
    counts: Arc<Counters>,
}

impl Notifier {
    /// Notifications off.
    pub fn disabled() -> Self {
        Self {
            senders: Vec::new(),
            counts: Arc::default(),
        }
    }

    /// One provider, the Secret `namespace/name`, delivered as by default.
    pub fn from_secret(client: kube::Client, namespace: &str, name: &str) -> Self {
        let secrets = [(namespace.to_string(), name.to_string())];
        Self::from_secrets(client, &secrets, None, Delivery::default())
    }

    /// One provider per Secret `(namespace, name)`, each with its queue and
    /// worker (started here: call within the runtime), counted in `metrics`.
    pub fn from_secrets(
        client: kube::Client,
        secrets: &[(String, String)],
        metrics: Option<Arc<Metrics>>,
        delivery: Delivery,
    ) -> Self {
        let http = crate::http_client::client().expect("an HTTP client for notifications");
        let counts = Arc::new(Counters::default());
        let senders = secrets
            .iter()
            .map(|(ns, name)| {
                Sender::start(queue::Parts {
                    client: client.clone(),
                    secret: (ns.clone(), name.clone()),
                    http: http.clone(),
                    delivery: delivery.clone(),
                    counts: counts.clone(),
                    metrics: metrics.clone(),
                })
            })
            .collect();
        Self { senders, counts }
    }

    /// Reads every provider's Secret now: an invalid one (a token over
    /// http, an unknown provider, a missing key) is an error that names the
    /// Secret, the provider and the URL. A missing Secret is only logged:
    /// it may be created later.
    pub async fn check(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        for s in &self.senders {
            if let Err(e) = s.check().await {
                errors.push(e);
            }
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(errors.join("; ")),
        }
    }

    /// Queues `n` for every provider; never waits, never fails.
    pub fn send(&self, n: Notification) {
        for s in &self.senders {
            s.push(n.clone());
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts.snapshot()
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        // The workers finish what is queued, then end.
        for s in &self.senders {
            s.close();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;

    pub const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    pub fn config(pairs: &[(&str, &str)]) -> Config {
        let data: BTreeMap<String, Vec<u8>> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        Config::from_data("test/notify", &data).unwrap()
    }

    fn gitsync(event: Event, message: &str) -> Notification {
        let mut n = Notification::new(event, "GitSync", "team-a", "web", message);
        n.revision = Some(format!("main@sha1:{SHA}"));
        n.source_url = Some("https://github.com/acme/web.git".into());
        n
    }

    /// A revision applied and ready.
    pub fn applied() -> Notification {
        let mut n = gitsync(
            Event::SyncReady,
            &format!("revision main@sha1:{SHA}: applied and ready"),
        );
        n.changes =
            Some("1 created (ConfigMap team-a/a), 0 configured, 2 unchanged, 0 pruned".into());
        n
    }

    /// A revision refused at a file and line.
    pub fn refused() -> Notification {
        gitsync(
            Event::SyncFailed,
            &format!(
                "revision main@sha1:{SHA}: clusters/test/broken.yaml:7: ConfigMap broken: did not find expected ',' or ']' while parsing a flow sequence started at line 6; nothing was applied or pruned"
            ),
        )
    }

    #[test]
    fn revisions_parse_and_descriptions_are_short() {
        let n = applied();
        assert_eq!(n.sha(), Some(SHA));
        assert_eq!(n.branch(), Some("main"));
        assert_eq!(n.short_revision().unwrap(), "main@sha1:0123456789ab");
        let mut pinned = applied();
        pinned.revision = Some(format!("sha1:{SHA}"));
        assert_eq!((pinned.sha(), pinned.branch()), (Some(SHA), None));
        let d = refused().description(60);
        assert_eq!(d.chars().count(), 60);
        assert!(
            d.starts_with("clusters/test/broken.yaml:7: ") && d.ends_with('…'),
            "{d}"
        );
        assert_eq!(
            counts_only("2 created (ConfigMap a/b, Secret a/c), 0 configured, 1 unchanged, 1 pruned (Bucket x/y)"),
            "2 created, 0 configured, 1 unchanged, 1 pruned"
        );
    }

    #[test]
    fn a_provider_takes_only_what_it_selects() {
        let cfg = config(&[("url", "https://x.example/h"), ("select", "team-b/*")]);
        assert!(request(&cfg, &applied()).is_none());
        let cfg = config(&[("url", "https://x.example/h"), ("select", "team-a/web")]);
        assert!(request(&cfg, &applied()).is_some());
    }
}
