//! One provider's bounded queue and its worker: notifications are taken
//! in order, one at a time, and each is delivered with bounded retries.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::config::{shown, Config};
use super::{request, Counters, Delivery, Notification, Request};
use crate::ops::metrics::Metrics;

/// How long a Secret read is trusted (rotation needs no restart).
const REREAD: Duration = Duration::from_secs(30);
/// The longest backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a [`Sender`] is made of.
pub(super) struct Parts {
    pub client: kube::Client,
    pub secret: (String, String),
    pub http: crate::http_client::Client<Full<Bytes>>,
    pub delivery: Delivery,
    pub counts: Arc<Counters>,
    pub metrics: Option<Arc<Metrics>>,
}

type Loaded = Result<Arc<Config>, String>;

pub(super) struct Sender {
    parts: Parts,
    queue: Mutex<VecDeque<Notification>>,
    wake: Notify,
    closed: AtomicBool,
    /// Dropping since the queue was last empty (logged once per episode).
    overflowing: AtomicBool,
    cached: Mutex<Option<(Instant, Loaded)>>,
    /// The last configuration error logged, so that it is logged once.
    logged: Mutex<Option<String>>,
}

/// Why one attempt failed.
enum Failure {
    Status(u16, String),
    Transport(String),
    Timeout,
    Invalid(String),
}

impl Failure {
    /// 5xx, 429 and connection errors may pass; 4xx will not.
    fn retryable(&self) -> bool {
        match self {
            Failure::Status(s, _) => *s >= 500 || *s == 429,
            Failure::Transport(_) | Failure::Timeout => true,
            Failure::Invalid(_) => false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s, body) if body.is_empty() => write!(f, "HTTP {s}"),
            Failure::Status(s, body) => write!(f, "HTTP {s}: {body}"),
            Failure::Transport(e) => write!(f, "connection failed: {e}"),
            Failure::Timeout => write!(f, "no answer in time"),
            Failure::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl Sender {
    pub(super) fn start(parts: Parts) -> Arc<Self> {
        let me = Arc::new(Self {
            parts,
            queue: Mutex::default(),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            overflowing: AtomicBool::new(false),
            cached: Mutex::default(),
            logged: Mutex::default(),
        });
        tokio::spawn(me.clone().run());
        me
    }

    fn what(&self) -> String {
        let (ns, name) = &self.parts.secret;
        format!("{ns}/{name}")
    }

    /// The provider label: its kind once its Secret was read.
    fn provider(&self) -> &'static str {
        match self.cached.lock().expect("notifier poisoned").as_ref() {
            Some((_, Ok(c))) => c.kind.name(),
            _ => "unknown",
        }
    }

    fn count(&self, counter: &AtomicU64, result: &str) {
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.parts.metrics {
            m.notification(self.provider(), result);
        }
    }

    pub(super) fn push(&self, n: Notification) {
        self.parts.counts.queued.fetch_add(1, Ordering::Relaxed);
        let dropped = {
            let mut q = self.queue.lock().expect("notifier poisoned");
            let oldest = (q.len() >= self.parts.delivery.queue.max(1)).then(|| q.pop_front());
            q.push_back(n);
            oldest.flatten()
        };
        if let Some(old) = dropped {
            self.count(&self.parts.counts.dropped, "dropped");
            if !self.overflowing.swap(true, Ordering::Relaxed) {
                warn!(
                    secret = %self.what(), provider = self.provider(), queue = self.parts.delivery.queue, event = ?old.event,
                    "notification queue full (the receiver is slow or down): dropping the oldest; counted in driftless_notifications_total{{result=\"dropped\"}}, logged once until it drains"
                );
            }
        }
        self.wake.notify_one();
    }

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    async fn run(self: Arc<Self>) {
        loop {
            let next = self.queue.lock().expect("notifier poisoned").pop_front();
            match next {
                Some(n) => {
                    self.handle(n).await;
                    self.parts.counts.handled.fetch_add(1, Ordering::Relaxed);
                }
                None if self.closed.load(Ordering::Relaxed) => return,
                None => {
                    self.overflowing.store(false, Ordering::Relaxed);
                    self.wake.notified().await;
                }
            }
        }
    }

    async fn handle(&self, n: Notification) {
        let cfg = match self.config().await {
            Ok(c) => c,
            Err(_) => return self.count(&self.parts.counts.unconfigured, "unconfigured"),
        };
        let Some(req) = request(&cfg, &n) else {
            return self.count(&self.parts.counts.skipped, "skipped");
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.parts.delivery.backoff)
            .with_max_delay(MAX_BACKOFF)
            .with_max_times(self.parts.delivery.attempts.saturating_sub(1))
            .with_jitter();
        let outcome = (|| self.attempt(&cfg, &req))
            .retry(backoff)
            .when(Failure::retryable)
            .notify(|e, after| debug!(secret = %self.what(), error = %e, ?after, "notification not delivered; retrying"))
            .await;
        let provider = cfg.kind.name();
        match outcome {
            Ok(()) => self.count(&self.parts.counts.delivered, "delivered"),
            Err(e) if e.retryable() => {
                warn!(secret = %self.what(), provider, event = ?n.event, error = %e, attempts = self.parts.delivery.attempts, "notification not delivered; giving up");
                self.count(&self.parts.counts.failed, "failed")
            }
            Err(e) => {
                warn!(secret = %self.what(), provider, event = ?n.event, error = %e, "notification refused by the receiver (not retried)");
                self.count(&self.parts.counts.refused, "refused")
            }
        }
    }

    /// One POST, within the per-request timeout (the answer's first 512
    /// bytes included, for the log, with any credential blanked out).
    async fn attempt(&self, cfg: &Config, req: &Request) -> Result<(), Failure> {
        self.parts.counts.attempts.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.parts.metrics {
            m.notification_attempt(cfg.kind.name());
        }
        let mut builder = hyper::Request::post(&req.url);
        for (k, v) in &req.headers {
            builder = builder.header(*k, v);
        }
        let built = builder
            .body(Full::new(Bytes::from(req.body.clone())))
            .map_err(|_| {
                Failure::Invalid(format!(
                    "cannot build a request to {} (a token or URL with characters HTTP does not allow?)",
                    shown(cfg.kind, &cfg.url)
                ))
            })?;
        let exchange = async {
            let resp = self
                .parts
                .http
                .request(built)
                .await
                .map_err(|e| Failure::Transport(scrub(cfg, &error_chain(&e))))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let body = Limited::new(resp.into_body(), 512).collect().await;
            let text = body
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
                .unwrap_or_default();
            Err(Failure::Status(status.as_u16(), scrub(cfg, &text)))
        };
        tokio::time::timeout(self.parts.delivery.timeout, exchange)
            .await
            .unwrap_or(Err(Failure::Timeout))
    }

    /// The provider's settings, re-read at most every 30 s; a problem is
    /// logged once (until it changes).
    async fn config(&self) -> Loaded {
        if let Some((at, c)) = self.cached.lock().expect("notifier poisoned").as_ref() {
            if at.elapsed() < REREAD {
                return c.clone();
            }
        }
        let loaded = match self.load().await {
            Ok(Some(c)) => Ok(Arc::new(c)),
            Ok(None) => Err(format!(
                "notification Secret {} does not exist: not sending",
                self.what()
            )),
            Err(e) => Err(e),
        };
        self.remember(&loaded);
        loaded
    }

    fn remember(&self, loaded: &Loaded) {
        *self.cached.lock().expect("notifier poisoned") = Some((Instant::now(), loaded.clone()));
        let mut logged = self.logged.lock().expect("notifier poisoned");
        match loaded {
            Err(e) if logged.as_deref() != Some(e.as_str()) => {
                warn!("{e}");
                *logged = Some(e.clone());
            }
            Err(_) => {}
            Ok(_) => *logged = None,
        }
    }

    /// At start: an invalid Secret is an error; a missing one is logged.
    pub(super) async fn check(&self) -> Result<(), String> {
        let loaded = self.load().await;
        match &loaded {
            Ok(Some(c)) => self.remember(&Ok(Arc::new(c.clone()))),
            Ok(None) => {
                warn!(secret = %self.what(), "notification Secret does not exist (yet): nothing is sent until it does");
            }
            Err(e) => self.remember(&Err(e.clone())),
        }
        loaded.map(|_| ())
    }

    async fn load(&self) -> Result<Option<Config>, String> {
        let (ns, name) = &self.parts.secret;
        let secret = Api::<Secret>::namespaced(self.parts.client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| format!("cannot read notification Secret {ns}/{name}: {e}"))?;
        let Some(secret) = secret else {
            return Ok(None);
        };
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        Config::from_data(&self.what(), &data).map(Some)
    }
}

/// `e` and its sources, one line (hyper's top error says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `text` with the provider's token, key and webhook URL blanked out (a
/// receiver may echo what it got).
fn scrub(cfg: &Config, text: &str) -> String {
    let mut out = text.to_string();
    let key = cfg.key.as_deref().map(String::from_utf8_lossy);
    let secrets = [
        cfg.token.clone(),
        key.map(|k| k.into_owned()),
        Some(cfg.url.to_string()),
    ];
    for s in secrets.into_iter().flatten().filter(|s| s.len() >= 4) {
        out = out.replace(&s, "***");
    }
    out
}
