//! The Git webhook receiver `POST /hooks/<namespace>/<gitsync>`: a push
//! signed with the GitSync's `webhookSecretRef` key asks for a sync now, by
//! setting the `driftless.dev/requested-at` annotation.
//!
//! The request path makes no Kubernetes API call before the signature is
//! verified: [`Receiver`] keeps each GitSync's key in memory, filled by a
//! watch of GitSyncs (plus a GET of the referenced Secret when a GitSync
//! changes, and every [`KEY_REFRESH`] to follow key rotation). It also runs
//! on a standby replica, which serves webhooks too.
//!
//! In order, a request is:
//! 1. refused with 429 when its source IP failed verification too often
//!    ([`FailureLimiter`]: a bucket of [`FAIL_BURST`] failures, refilled at
//!    [`FAIL_PER_SEC`] per second; only failures spend it);
//! 2. refused with 401 unless its signature matches the GitSync's key. An
//!    unknown GitSync, one without a key, and a bad signature get the same
//!    401 and the same body after the same work (an unknown GitSync is
//!    verified against a dummy key), so the answer tells nothing about
//!    which GitSyncs exist. (404 for all would do as well; 401 is what a
//!    sender with a wrong key should see.)
//! 3. answered 200 "duplicate delivery, ignored" when its delivery id
//!    (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`, `Idempotency-Key`) or its
//!    body was seen for this GitSync in the last hour ([`Seen`], at most
//!    10,000 entries). The body counts because GitHub's delivery header is
//!    not covered by the signature: a captured request replayed with a fresh
//!    id is still a duplicate.
//! 4. accepted (202) by annotating the GitSync: the only API call.
//!
//! The Secret's `token` key is the key. GitHub's `X-Hub-Signature-256` HMAC
//! (also Gitea, Forgejo) is the default; GitLab's `X-Gitlab-Token` (the key
//! itself, sent in clear) is accepted only when the Secret also has
//! `type: gitlab`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::{digest, hmac};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::{GitSync, REQUESTED_AT};
use crate::ops::http::HttpState;

/// How often every known webhook Secret is read again (key rotation).
pub const KEY_REFRESH: Duration = Duration::from_secs(60);
/// Failed verifications a source IP may make at once...
pub const FAIL_BURST: f64 = 10.0;
/// ...and then per second.
pub const FAIL_PER_SEC: f64 = 1.0;
/// Deliveries remembered, and for how long.
pub const SEEN_CAPACITY: usize = 10_000;
pub const SEEN_TTL: Duration = Duration::from_secs(3600);

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

/// A GitSync's webhook key, from its `webhookSecretRef` Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub token: Vec<u8>,
    /// `type: gitlab`: accept `X-Gitlab-Token` (and not the HMAC).
    pub gitlab: bool,
}

impl Key {
    /// The key in a Secret's data: `token`, and `type` (`github`, the
    /// default, or `gitlab`). `Err` says why there is none.
    pub fn from_secret(secret: &Secret) -> Result<Key, String> {
        let data = secret.data.clone().unwrap_or_default();
        let token = data
            .get("token")
            .map(|v| v.0.clone())
            .filter(|t| !t.is_empty())
            .ok_or("no `token` key")?;
        let gitlab = match data
            .get("type")
            .map(|v| String::from_utf8_lossy(&v.0).trim().to_string())
        {
            None => false,
            Some(t) if t.is_empty() || t == "github" => false,
            Some(t) if t == "gitlab" => true,
            Some(t) => return Err(format!("`type: {t}`: expected github or gitlab")),
        };
        Ok(Key { token, gitlab })
    }
}

type Id = (String, String);

/// What the webhook route needs in memory: keys, deliveries seen, failures.
pub struct Receiver {
    keys: RwLock<HashMap<Id, Key>>,
    seen: Mutex<Seen>,
    limiter: Mutex<FailureLimiter>,
    synced: tokio::sync::watch::Sender<bool>,
}

impl Receiver {
    /// An empty receiver: every webhook is refused until keys are [`Self::set_key`].
    pub fn new() -> Receiver {
        Receiver {
            keys: RwLock::default(),
            seen: Mutex::new(Seen::new(SEEN_CAPACITY, SEEN_TTL)),
            limiter: Mutex::new(FailureLimiter::new(FAIL_BURST, FAIL_PER_SEC)),
            synced: tokio::sync::watch::Sender::new(false),
        }
    }

    /// A receiver whose keys follow the GitSyncs of `namespace` (all when
    /// `None`), watched in the background with `client`.
    pub fn start(client: kube::Client, namespace: Option<String>) -> Arc<Receiver> {
        let receiver = Arc::new(Receiver::new());
        tokio::spawn(receiver.clone().follow(client, namespace, KEY_REFRESH));
        receiver
    }

    pub fn key(&self, namespace: &str, name: &str) -> Option<Key> {
        let id = (namespace.to_string(), name.to_string());
        self.keys.read().unwrap().get(&id).cloned()
    }

    pub fn set_key(&self, namespace: &str, name: &str, key: Option<Key>) {
        let id = (namespace.to_string(), name.to_string());
        let mut keys = self.keys.write().unwrap();
        match key {
            Some(k) => keys.insert(id, k),
            None => keys.remove(&id),
        };
    }

    /// Resolves once the first list of GitSyncs (and their keys) is loaded.
    pub async fn synced(&self) {
        let _ = self.synced.subscribe().wait_for(|s| *s).await;
    }

    async fn follow(
        self: Arc<Self>,
        client: kube::Client,
        namespace: Option<String>,
        refresh: Duration,
    ) {
        let api: Api<GitSync> = match &namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let mut events = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .boxed();
        // Each GitSync's Secret name; `listing`: those seen during a re-list.
        let mut refs: HashMap<Id, String> = HashMap::new();
        let mut listing: HashSet<Id> = HashSet::new();
        let mut tick = tokio::time::interval(refresh);
        tick.tick().await;
        loop {
            tokio::select! {
                event = events.next() => match event {
                    None => return,
                    Some(Err(e)) => debug!(error = %e, "webhook keys: GitSync watch"),
                    Some(Ok(watcher::Event::Init)) => listing.clear(),
                    Some(Ok(watcher::Event::InitApply(g))) => {
                        listing.insert(id_of(&g));
                        self.applied(&client, &mut refs, &g).await;
                    }
                    Some(Ok(watcher::Event::Apply(g))) => self.applied(&client, &mut refs, &g).await,
                    Some(Ok(watcher::Event::Delete(g))) => {
                        let id = id_of(&g);
                        refs.remove(&id);
                        self.set_key(&id.0, &id.1, None);
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        let gone: Vec<Id> = refs.keys().filter(|id| !listing.contains(*id)).cloned().collect();
                        for id in gone {
                            refs.remove(&id);
                            self.set_key(&id.0, &id.1, None);
                        }
                        self.synced.send_replace(true);
                    }
                },
                _ = tick.tick() => {
                    for (id, secret) in refs.clone() {
                        self.load(&client, &id, &secret).await;
                    }
                }
            }
        }
    }

    async fn applied(&self, client: &kube::Client, refs: &mut HashMap<Id, String>, g: &GitSync) {
        let id = id_of(g);
        match &g.spec.webhook_secret_ref {
            Some(r) => {
                refs.insert(id.clone(), r.name.clone());
                self.load(client, &id, &r.name).await;
            }
            None => {
                refs.remove(&id);
                self.set_key(&id.0, &id.1, None);
            }
        }
    }

    /// Reads the key of GitSync `id` from Secret `secret`; keeps the old
    /// key when the API cannot be read.
    async fn load(&self, client: &kube::Client, id: &Id, secret: &str) {
        let (ns, name) = (&id.0, &id.1);
        match Api::<Secret>::namespaced(client.clone(), ns)
            .get_opt(secret)
            .await
        {
            Ok(Some(s)) => match Key::from_secret(&s) {
                Ok(k) => self.set_key(ns, name, Some(k)),
                Err(why) => {
                    warn!("webhooks for GitSync {ns}/{name} refused: Secret {secret}: {why}");
                    self.set_key(ns, name, None);
                }
            },
            Ok(None) => {
                warn!("webhooks for GitSync {ns}/{name} refused: no Secret {secret}");
                self.set_key(ns, name, None);
            }
            Err(e) => {
                warn!(error = %e, "webhook key of GitSync {ns}/{name}: cannot read Secret {secret}")
            }
        }
    }
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

fn id_of(g: &GitSync) -> Id {
    (g.namespace().unwrap_or_default(), g.name_any())
}

/// Verified against when the GitSync is unknown, so that the work done does
/// not depend on whether it exists; never accepted.
const DUMMY_KEY: &[u8] = b"driftless-no-such-gitsync-dummy-webhook-key";

/// Whether the request is signed with `key` (`None`: unknown GitSync). The
/// work depends only on the request's headers and body, never on the key.
pub fn verify(headers: &HeaderMap, body: &[u8], key: Option<&Key>) -> bool {
    let (token, gitlab) = match key {
        Some(k) => (k.token.as_slice(), k.gitlab),
        None => (DUMMY_KEY, false),
    };
    let hub = hub_signature_valid(headers, body, token);
    let lab = gitlab_token_valid(headers, token);
    key.is_some() && if gitlab { lab } else { hub }
}

/// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` (GitHub,
/// Gitea, Forgejo), in constant time.
pub fn hub_signature_valid(headers: &HeaderMap, body: &[u8], key: &[u8]) -> bool {
    let Some(sig) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let tag = sig
        .strip_prefix("sha256=")
        .and_then(decode_hex)
        .unwrap_or_default();
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), body, &tag).is_ok()
}

/// GitLab's `X-Gitlab-Token: <key>`, in constant time whatever the lengths.
pub fn gitlab_token_valid(headers: &HeaderMap, key: &[u8]) -> bool {
    let Some(token) = headers.get("x-gitlab-token") else {
        return false;
    };
    let k = hmac::Key::new(hmac::HMAC_SHA256, b"driftless-token-compare");
    let want = hmac::sign(&k, key);
    hmac::verify(&k, token.as_bytes(), want.as_ref()).is_ok()
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

/// The delivery id headers, in the order they are looked for.
const DELIVERY_HEADERS: [&str; 3] = [
    "x-github-delivery",
    "x-gitlab-event-uuid",
    "idempotency-key",
];

/// What identifies a delivery to GitSync `ns/name`: its id, if any, and its body.
fn delivery_marks(ns: &str, name: &str, headers: &HeaderMap, body: &[u8]) -> Vec<String> {
    let mut marks: Vec<String> = DELIVERY_HEADERS
        .iter()
        .filter_map(|h| headers.get(*h)?.to_str().ok())
        .map(|id| format!("{ns}/{name} id {id}"))
        .collect();
    let d = digest::digest(&digest::SHA256, body);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    marks.push(format!("{ns}/{name} body {hex}"));
    marks
}

/// Deliveries seen: at most `capacity`, each forgotten after `ttl`.
pub struct Seen {
    capacity: usize,
    ttl: Duration,
    set: HashSet<String>,
    order: VecDeque<(String, Instant)>,
}

impl Seen {
    pub fn new(capacity: usize, ttl: Duration) -> Seen {
        Seen {
            capacity,
            ttl,
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `marks`; whether none of them was seen before.
    pub fn first_time(&mut self, marks: &[String], now: Instant) -> bool {
        while let Some((m, at)) = self.order.front() {
            if now.duration_since(*at) < self.ttl && self.order.len() < self.capacity {
                break;
            }
            self.set.remove(m);
            self.order.pop_front();
        }
        let new = marks.iter().all(|m| !self.set.contains(m));
        for m in marks {
            if self.set.insert(m.clone()) {
                self.order.push_back((m.clone(), now));
            }
        }
        new
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// A token bucket of failed verifications per source IP: `burst` at once,
/// refilled at `per_sec`. At most [`SEEN_CAPACITY`] IPs are tracked; full
/// buckets are forgotten first, then all IPs share one bucket.
pub struct FailureLimiter {
    burst: f64,
    per_sec: f64,
    buckets: HashMap<Option<IpAddr>, (f64, Instant)>,
}

impl FailureLimiter {
    pub fn new(burst: f64, per_sec: f64) -> FailureLimiter {
        FailureLimiter {
            burst,
            per_sec,
            buckets: HashMap::new(),
        }
    }

    fn slot(&mut self, ip: IpAddr) -> Option<IpAddr> {
        if self.buckets.contains_key(&Some(ip)) || self.buckets.len() < SEEN_CAPACITY {
            Some(ip)
        } else {
            None
        }
    }

    fn tokens(&self, slot: Option<IpAddr>, now: Instant) -> f64 {
        match self.buckets.get(&slot) {
            Some((t, at)) => {
                (t + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst)
            }
            None => self.burst,
        }
    }

    /// Whether `ip` may try (it has a failure left).
    pub fn allowed(&mut self, ip: IpAddr, now: Instant) -> bool {
        let slot = self.slot(ip);
        self.tokens(slot, now) >= 1.0
    }

    /// `ip` failed a verification.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        if self.buckets.len() >= SEEN_CAPACITY {
            let (burst, per_sec) = (self.burst, self.per_sec);
            self.buckets
                .retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * per_sec < burst);
        }
        let slot = self.slot(ip);
        let left = (self.tokens(slot, now) - 1.0).max(0.0);
        self.buckets.insert(slot, (left, now));
    }
}

async fn hook(
    State(s): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let r = &s.webhook;
    let now = Instant::now();
    if !r.limiter.lock().unwrap().allowed(peer.ip(), now) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed webhook verifications\n".into(),
        );
    }
    let key = r.key(&namespace, &name);
    if !verify(&headers, &body, key.as_ref()) {
        r.limiter.lock().unwrap().failed(peer.ip(), now);
        debug!("webhook for GitSync {namespace}/{name} from {peer}: refused");
        // Every refusal looks the same from outside: no oracle for which
        // GitSyncs exist or have a key.
        return (
            StatusCode::UNAUTHORIZED,
            "invalid or missing signature\n".to_string(),
        );
    }
    let marks = delivery_marks(&namespace, &name, &headers, &body);
    if !r.seen.lock().unwrap().first_time(&marks, now) {
        info!("webhook for GitSync {namespace}/{name}: duplicate delivery, ignored");
        return (StatusCode::OK, "duplicate delivery, ignored\n".into());
    }
    let api = gitsync_api(&s.client, &namespace);
    let stamp = chrono::Utc::now().to_rfc3339();
    let patch = json!({"metadata": {"annotations": {REQUESTED_AT: stamp}}});
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

    fn key(token: &[u8], gitlab: bool) -> Key {
        Key {
            token: token.to_vec(),
            gitlab,
        }
    }

    #[test]
    fn github_signatures_are_checked() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = github_signature(b"s3cret", body);
        let k = key(b"s3cret", false);
        assert!(verify(
            &headers("x-hub-signature-256", &good),
            body,
            Some(&k)
        ));
        assert!(!verify(
            &headers("x-hub-signature-256", &good),
            body,
            Some(&key(b"other", false))
        ));
        assert!(!verify(
            &headers("x-hub-signature-256", &good),
            b"tampered",
            Some(&k)
        ));
        assert!(!verify(
            &headers("x-hub-signature-256", "sha256=zz"),
            body,
            Some(&k)
        ));
        assert!(!verify(&HeaderMap::new(), body, Some(&k)), "missing");
        let dummy = github_signature(DUMMY_KEY, body);
        assert!(
            !verify(&headers("x-hub-signature-256", &dummy), body, None),
            "unknown"
        );
    }

    #[test]
    fn gitlab_tokens_only_where_configured() {
        let lab = key(b"s3cret", true);
        assert!(verify(
            &headers("x-gitlab-token", "s3cret"),
            b"{}",
            Some(&lab)
        ));
        assert!(!verify(
            &headers("x-gitlab-token", "s3cre"),
            b"{}",
            Some(&lab)
        ));
        assert!(!verify(
            &headers("x-gitlab-token", "s3cret"),
            b"{}",
            Some(&key(b"s3cret", false))
        ));
        let hub = github_signature(b"s3cret", b"{}");
        assert!(!verify(
            &headers("x-hub-signature-256", &hub),
            b"{}",
            Some(&lab)
        ));
    }

    #[test]
    fn replays_are_seen_within_ttl_and_capacity() {
        let t0 = Instant::now();
        let mut seen = Seen::new(3, Duration::from_secs(10));
        let m = |s: &str| vec![s.to_string()];
        assert!(seen.first_time(&m("a"), t0));
        assert!(!seen.first_time(&m("a"), t0 + Duration::from_secs(5)));
        assert!(
            !seen.first_time(&[String::from("new id"), "a".into()], t0),
            "same body"
        );
        assert!(
            seen.first_time(&m("a"), t0 + Duration::from_secs(11)),
            "expired"
        );
        for i in 0..10 {
            seen.first_time(&m(&i.to_string()), t0 + Duration::from_secs(12));
        }
        assert!(seen.len() <= 3, "bounded: {}", seen.len());
        assert!(
            seen.first_time(&m("0"), t0 + Duration::from_secs(12)),
            "evicted"
        );
    }

    #[test]
    fn failures_are_rate_limited_per_ip() {
        let t0 = Instant::now();
        let mut l = FailureLimiter::new(3.0, 1.0);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(l.allowed(a, t0));
            l.failed(a, t0);
        }
        assert!(!l.allowed(a, t0), "burst spent");
        assert!(l.allowed(b, t0), "another IP");
        assert!(l.allowed(a, t0 + Duration::from_millis(1100)), "refilled");
    }
}
