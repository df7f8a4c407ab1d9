//! Events leave the reconcile through a bounded lane: a pass never waits
//! for the API server to store one. A few are sent at a time, in the order
//! given; when the lane is full the newest is dropped and counted (an Event
//! is a courtesy, never worth stalling a reconcile or growing memory).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use futures::channel::mpsc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder};
use tracing::warn;

/// Events waiting to be sent, at most.
const CAPACITY: usize = 1024;
/// Events sent at once.
const IN_FLIGHT: usize = 4;

struct Job {
    recorder: Recorder,
    object: ObjectReference,
    event: Event,
}

/// The lane; its sender task starts with the first Event, on the runtime
/// that publishes it.
#[derive(Default)]
pub struct Events {
    lane: Mutex<Option<mpsc::Sender<Job>>>,
    dropped: AtomicU64,
}

impl Events {
    /// Queues `event` about `object`; returns at once.
    pub fn send(&self, recorder: &Recorder, object: &ObjectReference, event: Event) {
        let job = Job {
            recorder: recorder.clone(),
            object: object.clone(),
            event,
        };
        let mut lane = self.lane.lock().expect("events lane poisoned");
        let sender = lane.get_or_insert_with(start);
        let Err(e) = sender.try_send(job) else {
            return;
        };
        if e.is_full() {
            return self.drop_one(&e.into_inner());
        }
        // The sender task ended with its runtime (a test's): start anew.
        let mut fresh = start();
        if let Err(e) = fresh.try_send(e.into_inner()) {
            self.drop_one(&e.into_inner());
        }
        *lane = Some(fresh);
    }

    /// Events dropped because the lane was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn drop_one(&self, job: &Job) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // Once, then every 1000th: a burst must not flood the log.
        if n == 1 || n.is_multiple_of(1000) {
            warn!(dropped = n, reason = %job.event.reason, "event lane full; dropping events");
        }
    }
}

fn start() -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>(CAPACITY);
    tokio::spawn(rx.for_each_concurrent(IN_FLIGHT, |job| async move {
        if let Err(e) = job.recorder.publish(&job.event, &job.object).await {
            warn!(error = %e, reason = %job.event.reason, "could not publish event");
        }
    }));
    tx
}
