//! One kube-runtime controller per managed kind, all driven by the generic
//! reconciler.

use std::sync::Arc;

use driftless_provider::{Connector, KindVisitor, ManagedKind};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{reflector, watcher, Controller, WatchStreamExt};
use kube::{Api, Resource};
use tracing::{debug, info, warn};

use super::reconciler::{error_policy, reconcile, Context};
use super::triggers::{Queue, Triggers, LAST_APPLIED};
use super::waiters::Waiters;
use crate::conditions;
use crate::ops::{shutdown_signal, Shared};
use crate::registry::Providers;
use crate::Settings;

/// Drops from a cached object what nothing reads, so that the reflector
/// store (one copy of every object) stays small: managedFields and
/// kubectl's last-applied copy. The reconciler reads the spec, status,
/// finalizers, generation and the driftless.dev/* annotations, all kept.
fn trim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

struct StartControllers {
    client: kube::Client,
    settings: Settings,
    shared: Shared,
    /// Objects waiting for a reference target to turn Ready, every kind's.
    waiters: Arc<Waiters>,
    reporter: Reporter,
    running: Vec<BoxFuture<'static, ()>>,
}

impl KindVisitor for StartControllers {
    fn visit<K: ManagedKind>(&mut self, connector: Arc<dyn Connector<K>>) {
        let api: Api<K> = match &self.settings.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        // Wakes an object of this kind when a reference target turns Ready.
        let (wake, woken) = futures::channel::mpsc::unbounded();
        let triggers = Arc::new(Triggers::default());
        let ctx = Arc::new(Context::new(
            self.client.clone(),
            connector,
            recorder,
            self.settings.clone(),
            self.shared.clone(),
            self.waiters.clone(),
            Queue {
                wake,
                triggers: triggers.clone(),
            },
        ));
        let (reader, writer) = reflector::store::<K>();
        let cache = reader.clone();
        self.shared.metrics.add_state_source(move || {
            let kind = K::kind(&()).to_string();
            cache
                .state()
                .iter()
                .map(|o| {
                    let status = |t: &str| {
                        o.managed_status()
                            .and_then(|s| s.condition(t))
                            .map_or("Unknown".to_string(), |c| c.status.clone())
                    };
                    (
                        kind.clone(),
                        status(conditions::READY),
                        status(conditions::SYNCED),
                    )
                })
                .collect()
        });
        let selector = self.settings.shard_selector();
        let config = watcher::Config::default().any_semantic().labels(&selector);
        let stream = watcher(api, config)
            .default_backoff()
            .modify(trim::<K>)
            .reflect(writer)
            .applied_objects()
            .try_filter(move |o| futures::future::ready(triggers.changed(o)));
        let kind = K::kind(&()).to_string();
        info!(kind, "starting controller");
        let run = Controller::for_stream(stream, reader)
            .reconcile_on(woken)
            .with_config(ControllerConfig::default().concurrency(self.settings.concurrency))
            .graceful_shutdown_on(shutdown_signal())
            .run(reconcile::<K>, error_policy::<K>, ctx)
            .for_each(move |res| {
                match res {
                    Ok((obj, _)) => debug!(kind = %obj.name, "reconciled"),
                    Err(e) => debug!(error = %e, "reconcile error"),
                }
                futures::future::ready(())
            });
        self.running.push(run.boxed());
    }
}

/// Runs every managed kind's controller until SIGTERM / Ctrl-C.
pub async fn run(client: kube::Client, settings: Settings, shared: Shared) {
    // Batched observations live one poll: reconciles are spread over the
    // poll (jitter), so a shorter life would refresh several times per poll.
    // About one describe call per kind per poll, however many resources.
    let providers = Providers::polling(shared.calls.clone(), settings.poll_interval);
    let mut start = StartControllers {
        client,
        settings,
        shared,
        waiters: Arc::default(),
        reporter: Reporter {
            controller: "driftless".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
        running: Vec::new(),
    };
    providers.visit(&mut start);
    futures::future::join_all(start.running).await;
    warn!("managed-resource controllers stopped");
}

#[cfg(test)]
mod tests {
    use driftless_aws::Bucket;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    use super::super::triggers::trigger_hash;
    use super::*;

    /// What the reconciler reads survives the trim; kubectl's copy and
    /// managedFields do not, and neither changes the trigger hash.
    #[test]
    fn the_cache_keeps_what_the_reconciler_reads() {
        let mut b: Bucket = serde_json::from_value(serde_json::json!({
            "apiVersion": "aws.driftless.dev/v1alpha1",
            "kind": "Bucket",
            "metadata": {
                "name": "b", "namespace": "ns", "generation": 3,
                "finalizers": [crate::FINALIZER],
                "annotations": {
                    (LAST_APPLIED): "{\"a\":\"whole object\"}",
                    (driftless_provider::EXTERNAL_NAME): "b-1",
                    (driftless_provider::PAUSED): "true",
                    "team": "infra",
                },
            },
            "spec": {"providerConfigRef": {"name": "pc"}, "forProvider": {}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Available",
                "message": "up", "lastTransitionTime": "2026-12-01T00:00:00Z"}]},
        }))
        .unwrap();
        b.meta_mut().managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        let before = trigger_hash(&b);
        let untrimmed = b.clone();
        trim(&mut b);
        assert_eq!(b.meta().managed_fields, None);
        let annotations = b.meta().annotations.clone().unwrap();
        assert!(!annotations.contains_key(LAST_APPLIED));
        for kept in [
            driftless_provider::EXTERNAL_NAME,
            driftless_provider::PAUSED,
            "team",
        ] {
            assert_eq!(
                annotations.get(kept),
                untrimmed.meta().annotations.as_ref().unwrap().get(kept)
            );
        }
        assert_eq!(b.meta().finalizers, untrimmed.meta().finalizers);
        assert_eq!(b.meta().generation, Some(3));
        let json = |b: &Bucket| serde_json::to_value(b).unwrap();
        assert_eq!(json(&b)["spec"], json(&untrimmed)["spec"]);
        assert_eq!(json(&b)["status"], json(&untrimmed)["status"]);
        assert_eq!(trigger_hash(&b), before);
    }
}
