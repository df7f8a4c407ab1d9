//! The GitSync controller: the watch and the reconcile entry point. What
//! passes share is in [`super::context`]; the pass itself in [`super::pass`].

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::StreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::{reflector, watcher, Controller, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::context::{Context, Error};
use super::{finalize, pass, GitSync, REQUESTED_AT};
use crate::ops::{shutdown_signal, Shared};
use crate::Settings;

/// Reconciles on a spec change, on a new `driftless.dev/requested-at`, and
/// on deletion; not on status writes (our own included).
fn trigger_hash(gs: &GitSync) -> Option<u64> {
    let mut h = DefaultHasher::new();
    gs.meta().generation.hash(&mut h);
    gs.annotations().get(REQUESTED_AT).hash(&mut h);
    gs.meta().deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// Runs the GitSync controller until shutdown.
pub async fn run(client: kube::Client, settings: Settings, shared: Shared) {
    let (trigger, triggered) = mpsc::unbounded();
    let api: Api<GitSync> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let ctx = Arc::new(Context::new(client, settings.clone(), shared, trigger));
    let (reader, writer) = reflector::store();
    let selector = settings.shard_selector();
    let stream = watcher(
        api,
        watcher::Config::default().any_semantic().labels(&selector),
    )
    .default_backoff()
    .modify(|g: &mut GitSync| g.managed_fields_mut().clear())
    .reflect(writer)
    .applied_objects()
    .predicate_filter(trigger_hash, Default::default());
    info!(kind = "GitSync", "starting controller");
    Controller::for_stream(stream, reader)
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(shutdown_signal())
        .reconcile_on(triggered)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| {
            if let Err(e) = res {
                debug!(error = %e, "GitSync reconcile error");
            }
            futures::future::ready(())
        })
        .await;
}

fn error_policy(_gs: Arc<GitSync>, _err: &Error, _ctx: Arc<Context>) -> Action {
    Action::requeue(Duration::from_secs(5))
}

pub async fn reconcile(gs: Arc<GitSync>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = gs.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", gs.name_any());
    let _pass = ctx.shared.passes.pass("GitSync", &ns, &gs.name_any());
    // Read it fresh: the watch cache may not have the status the previous
    // reconcile wrote yet (a watch-triggered reconcile often follows at
    // once), and a stale lastAppliedRevision or inventory would apply a
    // revision twice or prune from an old inventory.
    let api: Api<GitSync> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(gs) = api.get_opt(&gs.name_any()).await? else {
        ctx.forget(&key);
        return Ok(Action::await_change());
    };
    if gs.meta().deletion_timestamp.is_some() {
        if !finalize::has_finalizer(&gs) {
            ctx.forget(&key);
            return Ok(Action::await_change());
        }
        return pass::finalize_once(&gs, &ctx, &key).await;
    }
    // Before anything is applied: what a GitSync applies goes with it.
    if !finalize::has_finalizer(&gs) {
        finalize::add_finalizer(&api, &gs).await?;
    }
    let started = Instant::now();
    let result = pass::reconcile_once(&gs, &ctx, &key).await;
    let took = started.elapsed();
    debug!(gitsync = %key, ?took, "reconciled");
    ctx.shared.metrics.git_synced(&ns, &gs.name_any(), took);
    ctx.shared
        .metrics
        .reconciled(&GitSync::kind(&()), result.is_ok(), took);
    if let Err(e) = &result {
        warn!(gitsync = %key, error = %e, "GitSync reconcile failed");
    }
    result
}
