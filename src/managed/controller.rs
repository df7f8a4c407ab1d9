//! One kube-runtime controller per managed kind, all driven by the generic
//! reconciler.

use std::sync::Arc;

use driftless_provider::{Connector, KindVisitor, ManagedKind};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{reflector, watcher, Controller, WatchStreamExt};
use kube::{Api, ResourceExt};
use tracing::{debug, info, warn};

use super::reconciler::{error_policy, reconcile, Context};
use super::triggers::{Queue, Triggers};
use super::waiters::Waiters;
use crate::conditions;
use crate::ops::{shutdown_signal, Shared};
use crate::registry::Providers;
use crate::Settings;

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
            // managedFields is never read: keep the cache small.
            .modify(|o: &mut K| o.managed_fields_mut().clear())
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
