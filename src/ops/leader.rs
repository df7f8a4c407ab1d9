//! Leader election through a `coordination.k8s.io` Lease, so that two
//! replicas never both act. Every write carries the resourceVersion it read:
//! of two candidates taking an expired lease at once, exactly one succeeds.
//!
//! Hand-written (about a hundred lines): the crates that do this pin kube
//! versions far older than ours.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::Api;
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
}

impl Elector {
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
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
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renewed), Some(secs)) => renewed
                .0
                .checked_add(SignedDuration::from_secs(secs.into()))
                .map_or(true, |until| until < Timestamp::now()),
            _ => true,
        };
        if !ours && !holder.is_empty() && !expired {
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
            match self.try_acquire_or_renew().await {
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
    /// (then the caller must stop acting at once).
    pub async fn hold(&self) {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.retry_period()).await;
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => renewed = tokio::time::Instant::now(),
                Ok(Attempt::Following(holder)) => {
                    warn!(leader = %holder, "lost the lease to another replica");
                    return;
                }
                Err(e) => warn!(error = %e, "cannot renew the lease"),
            }
            // Stop before another replica may take over.
            if renewed.elapsed() >= self.config.duration.mul_f64(0.8) {
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
