//! Leader election through a `coordination.k8s.io` Lease, so that two
//! replicas never both act. Every write carries the resourceVersion it read:
//! of two candidates taking an expired lease at once, exactly one succeeds.
//!
//! Hand-written (about a hundred lines): the crates that do this pin kube
//! versions far older than ours.

use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::Api;
use tokio::time::Instant;
use tracing::{info, warn};

/// Where the lease lives and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica (the pod name, or host and PID).
    pub identity: String,
    /// A leader that has not renewed for this long has lost the lease.
    pub duration: Duration,
}

/// The outcome of one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following(String),
}

pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The other holder's lease record as last seen, and when (our clock).
    seen: Mutex<Option<(String, Instant)>>,
}

/// Whether the lease `record` (holder and renew time) has gone unchanged
/// for `duration` by our own clock, noting it as seen at `now` when new.
fn expired(
    seen: &mut Option<(String, Instant)>,
    record: String,
    now: Instant,
    duration: Duration,
) -> bool {
    match seen {
        Some((r, at)) if *r == record => now.duration_since(*at) >= duration,
        _ => {
            *seen = Some((record, now));
            false
        }
    }
}

impl Elector {
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            seen: Mutex::new(None),
        }
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    Ok(Attempt::Following("another replica".into()))
                }
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.config.identity;
        let duration = spec
            .lease_duration_seconds
            .map_or(self.config.duration, |s| {
                Duration::from_secs(s.max(1) as u64)
            });
        let record = format!("{holder} {:?}", spec.renew_time.as_ref().map(|t| t.0));
        let expired = ours
            || holder.is_empty()
            || expired(
                &mut self.seen.lock().expect("lease record poisoned"),
                record,
                Instant::now(),
                duration,
            );
        if !expired {
            return Ok(Attempt::Following(holder));
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours {
            spec.acquire_time.clone()
        } else {
            None
        };
        lease.spec = Some(self.spec(transitions, acquired));
        // The resourceVersion read above makes this a compare-and-swap.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following(holder)),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the lease. Fails only when the lease
    /// cannot exist (its namespace is missing): waiting would never end.
    pub async fn acquire(&self) -> Result<(), String> {
        let mut last_holder = String::new();
        loop {
            let attempt = tokio::time::timeout(self.retry_period(), self.try_acquire_or_renew());
            let Ok(result) = attempt.await else {
                warn!("leader election: the API server did not answer in time");
                continue;
            };
            match result {
                Ok(Attempt::Leading) => {
                    info!(lease = %self.config.name, identity = %self.config.identity, "became the leader");
                    return Ok(());
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    return Err(format!(
                        "leader election: cannot create Lease {}/{}: {}; create the namespace, pass --leader-election-namespace, or run a single replica with --leader-elect=false",
                        self.config.namespace, self.config.name, e.message
                    ));
                }
                Ok(Attempt::Following(holder)) => {
                    if holder != last_holder {
                        info!(lease = %self.config.name, leader = %holder, "standing by: another replica leads");
                        last_holder = holder;
                    }
                }
                Err(e) => warn!(error = %e, "leader election: cannot read or write the lease"),
            }
            tokio::time::sleep(self.retry_period()).await;
        }
    }

    fn retry_period(&self) -> Duration {
        (self.config.duration / 3).max(Duration::from_millis(200))
    }

    /// Renews the lease until it cannot; returns when leadership is lost
    /// (then the caller must stop acting at once): to another replica, or
    /// at 0.8 of the lease after the last renew that succeeded, however long
    /// a call hangs, so the leader stops before a standby may take over.
    pub async fn hold(&self) {
        let stop_after = self.config.duration.mul_f64(0.8);
        // When the last successful renew was sent (the lease runs from then).
        let mut renewed = Instant::now();
        loop {
            let stop_at = renewed + stop_after;
            tokio::time::sleep_until((Instant::now() + self.retry_period()).min(stop_at)).await;
            let sent = Instant::now();
            match tokio::time::timeout_at(stop_at, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Leading)) => renewed = sent,
                Ok(Ok(Attempt::Following(holder))) => {
                    warn!(leader = %holder, "lost the lease to another replica");
                    return;
                }
                Ok(Err(e)) => warn!(error = %e, "cannot renew the lease"),
                Err(_) => {}
            }
            if Instant::now() >= renewed + stop_after {
                warn!("could not renew the lease in time");
                return;
            }
        }
    }

    /// Gives the lease up (on shutdown), so a standby takes over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() == Some(self.config.identity.as_str()) {
                spec.holder_identity = None;
                spec.renew_time = None;
                let _ = self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await;
                info!("released the lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_by_our_clock_not_by_its_renew_time() {
        let d = Duration::from_secs(15);
        let t0 = Instant::now();
        let mut seen = None;
        // A renew time from a clock an hour behind: not expired when first seen.
        assert!(!expired(&mut seen, "a 2026-01-01T00:00:00Z".into(), t0, d));
        assert!(!expired(
            &mut seen,
            "a 2026-01-01T00:00:00Z".into(),
            t0 + d / 2,
            d
        ));
        // It renews (the record changes): the wait starts again.
        assert!(!expired(
            &mut seen,
            "a 2026-01-01T00:00:05Z".into(),
            t0 + d,
            d
        ));
        assert!(!expired(
            &mut seen,
            "a 2026-01-01T00:00:05Z".into(),
            t0 + d + d / 2,
            d
        ));
        // Unchanged for a whole duration by our clock: expired.
        assert!(expired(
            &mut seen,
            "a 2026-01-01T00:00:05Z".into(),
            t0 + d * 2,
            d
        ));
    }
}
