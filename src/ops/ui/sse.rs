//! Live updates: one reader for every browser, and a server-sent event
//! stream per browser.
//!
//! The reader re-reads the state every `interval`, only while at least one
//! browser is connected, and sends only what changed: `gitsync` (one
//! GitSync's view, as JSON), `removed` (its key) and `events` (the recent
//! Events). A re-read costs what `driftless tree` costs per GitSync (a GET
//! and one LIST per kind it holds) plus one LIST of Events. It is a
//! periodic re-read with change detection rather than watches, because the
//! controller's reflectors are private to each kind's controller (and a
//! standby replica runs none), and a tree spans every kind a GitSync
//! applies: a watch per kind would hold them all in memory for a page
//! nobody may be looking at.
//!
//! Each browser starts with a `snapshot` (everything). Its buffer is the
//! broadcast channel's, bounded ([`BUFFER`] updates); a browser that falls
//! further behind is sent a fresh snapshot instead of what it missed. At
//! most [`MAX_STREAMS`] browsers at once; a comment every
//! [`KEEP_ALIVE`] keeps proxies (and `kubectl port-forward`) from closing an
//! idle stream.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::sse::{Event, KeepAlive};
use futures::Stream;
use tokio::sync::{broadcast, Notify};
use tracing::{debug, warn};

use super::view;

/// Updates a browser may be behind before it is sent a snapshot instead.
pub const BUFFER: usize = 64;
/// Browsers streaming at once; more are refused with 503.
pub const MAX_STREAMS: usize = 32;
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One change, for every browser.
#[derive(Debug)]
struct Update {
    /// The read that found it (see [`Current::version`]).
    version: u64,
    event: &'static str,
    data: Arc<str>,
}

/// The last read, as the JSON the browsers are sent.
#[derive(Default)]
struct Current {
    /// Counts reads; a browser skips updates its snapshot already holds.
    version: u64,
    read_at: Option<Instant>,
    gitsyncs: BTreeMap<String, Arc<str>>,
    events: Option<Arc<str>>,
    /// Why the last read failed (shown on the page), if it did.
    problem: Option<Arc<str>>,
}

pub struct Hub {
    client: kube::Client,
    scope: Option<String>,
    interval: Duration,
    actions: bool,
    current: Mutex<Current>,
    tx: broadcast::Sender<Arc<Update>>,
    /// One read at a time; a caller that waited finds it fresh.
    reading: tokio::sync::Mutex<()>,
    streams: AtomicUsize,
    wake: Arc<Notify>,
}

/// Held by each open stream: the reader runs while any exists.
pub struct Watching(Arc<Hub>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hub {
    /// The hub and its reader task.
    pub fn start(
        client: kube::Client,
        scope: Option<String>,
        interval: Duration,
        actions: bool,
    ) -> Arc<Self> {
        let hub = Arc::new(Self {
            client,
            scope,
            interval,
            actions,
            current: Mutex::default(),
            tx: broadcast::channel(BUFFER).0,
            reading: tokio::sync::Mutex::new(()),
            streams: AtomicUsize::new(0),
            wake: Arc::new(Notify::new()),
        });
        tokio::spawn(reader(Arc::downgrade(&hub)));
        hub
    }

    /// A new stream's claim, or `None` past [`MAX_STREAMS`].
    pub fn watch(self: &Arc<Self>) -> Option<Watching> {
        let before = self.streams.fetch_add(1, Ordering::SeqCst);
        let claim = Watching(self.clone());
        if before >= MAX_STREAMS {
            return None;
        }
        self.wake.notify_one();
        Some(claim)
    }

    /// Everything, as one JSON document (`GET /api/state`, and the first
    /// message of each stream), read now unless a read is younger than
    /// `interval`.
    pub async fn snapshot(&self) -> String {
        self.refresh(self.interval).await;
        snapshot_of(&self.current.lock().unwrap(), self.actions)
    }

    /// Re-reads now, in the background (after an action: the browsers see
    /// its effect without waiting for the next interval).
    pub fn poke(self: &Arc<Self>) {
        let hub = self.clone();
        tokio::spawn(async move { hub.refresh(Duration::ZERO).await });
    }

    /// Reads now in the background unless a read is younger than the
    /// interval (a page is loading: its stream will want the state).
    pub fn prefetch(self: &Arc<Self>) {
        let hub = self.clone();
        tokio::spawn(async move { hub.refresh(hub.interval).await });
    }

    /// Reads the state unless a read is younger than `max_age`, and sends
    /// what changed.
    async fn refresh(&self, max_age: Duration) {
        let _one = self.reading.lock().await;
        let fresh = self
            .current
            .lock()
            .unwrap()
            .read_at
            .is_some_and(|t| t.elapsed() < max_age);
        if fresh {
            return;
        }
        let scope = self.scope.as_deref();
        let t0 = Instant::now();
        let (gitsyncs, events) = futures::join!(
            view::gitsyncs(&self.client, scope),
            view::events(&self.client, scope)
        );
        debug!(took = ?t0.elapsed(), "dashboard: state read");
        let mut current = self.current.lock().unwrap();
        current.version += 1;
        let version = current.version;
        let send = |event: &'static str, data: Arc<str>| {
            // No receiver (no browser) is not an error.
            let _ = self.tx.send(Arc::new(Update {
                version,
                event,
                data,
            }));
        };
        let mut problems = Vec::new();
        match gitsyncs {
            Ok(list) => {
                let next: BTreeMap<String, Arc<str>> = list
                    .iter()
                    .map(|g| (format!("{}/{}", g.namespace, g.name), json(g)))
                    .collect();
                for (key, data) in &next {
                    if current.gitsyncs.get(key) != Some(data) {
                        send("gitsync", data.clone());
                    }
                }
                for key in current.gitsyncs.keys().filter(|k| !next.contains_key(*k)) {
                    send("removed", json(&serde_json::json!({ "key": key })));
                }
                current.gitsyncs = next;
            }
            Err(e) => problems.push(e),
        }
        match events {
            Ok(list) => {
                let data = json(&list);
                if current.events.as_ref() != Some(&data) {
                    send("events", data.clone());
                    current.events = Some(data);
                }
            }
            Err(e) => problems.push(e),
        }
        let problem: Option<Arc<str>> = (!problems.is_empty()).then(|| json(&problems.join("; ")));
        if problem != current.problem {
            if let Some(p) = &problem {
                warn!(problem = %p, "dashboard: cannot read the cluster");
            }
            send("problem", problem.clone().unwrap_or_else(|| "null".into()));
            current.problem = problem;
        }
        current.read_at = Some(Instant::now());
    }

    /// A browser's stream: its snapshot, then each change, until it goes.
    pub async fn stream(
        self: Arc<Self>,
        claim: Watching,
    ) -> impl Stream<Item = Result<Event, Infallible>> {
        self.refresh(self.interval).await;
        let (rx, first, version) = {
            // Under the lock: no update falls between the snapshot and the
            // subscription.
            let current = self.current.lock().unwrap();
            (
                self.tx.subscribe(),
                snapshot_of(&current, self.actions),
                current.version,
            )
        };
        let state = Client {
            hub: self,
            rx,
            version,
            first: Some(first),
            _claim: claim,
        };
        futures::stream::unfold(state, |mut c| async move {
            let event = c.next().await?;
            Some((Ok(event), c))
        })
    }
}

/// One browser's place in the updates.
struct Client {
    hub: Arc<Hub>,
    rx: broadcast::Receiver<Arc<Update>>,
    version: u64,
    first: Option<String>,
    _claim: Watching,
}

impl Client {
    async fn next(&mut self) -> Option<Event> {
        if let Some(first) = self.first.take() {
            return Some(Event::default().event("snapshot").data(first));
        }
        loop {
            match self.rx.recv().await {
                Ok(u) if u.version <= self.version => continue,
                Ok(u) => return Some(Event::default().event(u.event).data(&*u.data)),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let current = self.hub.current.lock().unwrap();
                    self.version = current.version;
                    let snapshot = snapshot_of(&current, self.hub.actions);
                    return Some(Event::default().event("snapshot").data(snapshot));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// The reader: re-reads every `interval` while a stream is open, sleeps
/// otherwise; ends with the hub.
async fn reader(hub: std::sync::Weak<Hub>) {
    loop {
        let Some(h) = hub.upgrade() else { return };
        if h.streams.load(Ordering::SeqCst) == 0 {
            let wake = h.wake.clone();
            let woken = wake.notified();
            drop(h);
            // Bounded, so that a dropped hub ends this task.
            let _ = tokio::time::timeout(Duration::from_secs(60), woken).await;
            continue;
        }
        // Half the interval: a read a browser's connect just made is reused.
        h.refresh(h.interval / 2).await;
        let interval = h.interval;
        drop(h);
        tokio::time::sleep(interval).await;
    }
}

fn snapshot_of(c: &Current, actions: bool) -> String {
    let gitsyncs: Vec<&str> = c.gitsyncs.values().map(|g| &**g).collect();
    format!(
        r#"{{"actions":{actions},"gitsyncs":[{}],"events":{},"problem":{}}}"#,
        gitsyncs.join(","),
        c.events.as_deref().unwrap_or("[]"),
        c.problem.as_deref().unwrap_or("null"),
    )
}

fn json<T: serde::Serialize>(v: &T) -> Arc<str> {
    serde_json::to_string(v)
        .expect("the dashboard's views serialize")
        .into()
}

pub fn keep_alive() -> KeepAlive {
    KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")
}
