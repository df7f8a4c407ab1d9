//! Operations: what every engine uses and none owns. Settings, metrics,
//! notifications, leader election, the HTTP server and shutdown. Imports
//! no other engine, but for [`ui`] (the dashboard reads GitSyncs and
//! `crate::tree`).

pub mod election;
pub mod events;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod passes;
pub mod process;
pub mod settings;
pub mod ui;

use std::sync::Arc;

use driftless_provider::CallCounter;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::{info, warn};

use metrics::Metrics;
use notify::Notifier;
use passes::Passes;

/// What every controller shares: the cloud-call counter, the metrics, the
/// notifier and the per-object pass counter.
#[derive(Clone)]
pub struct Shared {
    pub calls: Arc<CallCounter>,
    pub metrics: Arc<Metrics>,
    pub notifier: Arc<Notifier>,
    /// Finished reconcile passes per object (see [`passes`]); off unless a
    /// test turns it on.
    pub passes: Arc<Passes>,
    /// The lane Events leave by, off the reconcile's path.
    pub events: Arc<events::Events>,
}

impl Shared {
    /// Counting into `calls`, with metrics and no notifications.
    pub fn new(calls: Arc<CallCounter>) -> Self {
        Self {
            metrics: Arc::new(Metrics::new(calls.clone())),
            notifier: Arc::new(Notifier::disabled()),
            passes: Arc::new(Passes::off()),
            events: Arc::default(),
            calls,
        }
    }
}

/// Publishes an Event about `object` with `recorder`; a failure is only
/// logged (an Event is a courtesy, never the reason a reconcile fails).
pub async fn publish_event(
    recorder: &Recorder,
    object: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = event(type_, reason, note);
    if let Err(e) = recorder.publish(&event, object).await {
        warn!(error = %e, reason, "could not publish event");
    }
}

/// An Event of `reason`; the note is cut to 1000 characters, the API
/// server's limit.
pub fn event(type_: EventType, reason: &str, note: String) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: reason.into(),
        secondary: None,
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("can listen for SIGTERM");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("shutting down: finishing reconciles in flight");
}
