//! The GitSync controller: each reconcile finds the latest revision (a cheap
//! ref listing when due), applies it atomically, prunes, watches what it
//! applied, and reports health in Ready / Reconciling / Stalled.

use crate::controller::Shared;
use crate::notify::{Event as NotifyEvent, Notification};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{reflector, watcher, Controller, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use super::apply::{self, ApplyError, Kinds, Owner, Planned, Stage};
use super::fetch::{self, Credentials, Revision};
use super::load::{self, Manifest};
use super::{
    duration, health, GitSync, GitSyncStatus, InventoryEntry, LABEL_NAME, LABEL_NAMESPACE,
    REQUESTED_AT,
};
use crate::conditions::{self, Cond};
use crate::{Settings, FIELD_MANAGER};

const READY: &str = conditions::READY;
const RECONCILING: &str = "Reconciling";
const STALLED: &str = "Stalled";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// How soon health is looked at again while objects are not ready (their
/// watch usually triggers sooner).
const HEALTH_RECHECK: Duration = Duration::from_secs(5);
/// How long a kind whose CRD was just established may take to be served.
const DISCOVERY_WAIT: Duration = Duration::from_secs(30);

/// What one GitSync's reconciles remember between runs (in memory only: a
/// restarted controller checks the remote and re-applies, nothing is lost).
#[derive(Default)]
struct Tracked {
    /// The last remote check: when, for which spec generation, what it found.
    checked: Option<(Instant, Option<i64>, Revision)>,
    /// Parsed manifests by commit: the latest and the last applied one.
    manifests: HashMap<String, Arc<Vec<Manifest>>>,
    /// A revision that failed to load or apply, so that re-applies triggered
    /// by watches do not retry it before the next remote check.
    failed: Option<String>,
    /// When the applied revision was first applied (for the health timeout).
    applied_at: Option<(String, Instant)>,
}

/// Everything a GitSync reconcile needs.
pub struct Context {
    client: kube::Client,
    settings: Settings,
    shared: Shared,
    events: Events,
    kinds: Kinds,
    tracked: Mutex<HashMap<String, Tracked>>,
    watches: Watches,
}

/// Event recorders, one per GitSync, reason and note. kube's Recorder
/// folds every repeat of a reason into the first Event's series and keeps
/// that first note, so "applied revision B" would show as a repeat of
/// "applied revision A". Here only a repeat of the same note is folded.
struct Events {
    client: kube::Client,
    reporter: Reporter,
    recorders: Mutex<HashMap<u64, Recorder>>,
}

impl Events {
    fn recorder(&self, gs: &GitSync, reason: &str, note: &Option<String>) -> Recorder {
        let mut h = DefaultHasher::new();
        (gs.uid(), reason, note).hash(&mut h);
        let mut recorders = self.recorders.lock().expect("recorders poisoned");
        // Bounded: forgetting only means a repeat starts a new Event.
        if recorders.len() >= 512 {
            recorders.clear();
        }
        recorders
            .entry(h.finish())
            .or_insert_with(|| Recorder::new(self.client.clone(), self.reporter.clone()))
            .clone()
    }
}

/// Watches of applied objects, one per kind, selected by the owner labels:
/// any change to an applied object triggers its GitSync (self-heal).
struct Watches {
    client: kube::Client,
    selector: String,
    started: Mutex<HashMap<(String, String, String), tokio::task::JoinHandle<()>>>,
    trigger: mpsc::UnboundedSender<ObjectRef<GitSync>>,
}

impl Watches {
    fn ensure(&self, resource: &ApiResource) {
        let key = (
            resource.group.clone(),
            resource.version.clone(),
            resource.kind.clone(),
        );
        let mut started = self.started.lock().expect("watches poisoned");
        if started.contains_key(&key) {
            return;
        }
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), resource);
        let trigger = self.trigger.clone();
        let config = watcher::Config::default().labels(&self.selector);
        debug!(kind = %resource.kind, "watching applied objects");
        let task = tokio::spawn(async move {
            let mut events = watcher(api, config)
                .default_backoff()
                .touched_objects()
                .boxed();
            while let Some(event) = events.next().await {
                let Ok(obj) = event else { continue };
                let labels = obj.labels();
                if let (Some(name), Some(ns)) =
                    (labels.get(LABEL_NAME), labels.get(LABEL_NAMESPACE))
                {
                    if trigger
                        .unbounded_send(ObjectRef::new(name).within(ns))
                        .is_err()
                    {
                        return; // the controller is gone
                    }
                }
            }
        });
        started.insert(key, task);
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in self.started.lock().expect("watches poisoned").values() {
            task.abort();
        }
    }
}

/// Why a reconcile failed (and is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

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
    // Restricted to one namespace, only that namespace's GitSyncs' objects
    // trigger anything.
    let selector = match &settings.namespace {
        Some(ns) => format!("{LABEL_NAME},{LABEL_NAMESPACE}={ns}"),
        None => format!("{LABEL_NAME},{LABEL_NAMESPACE}"),
    };
    let reporter = Reporter {
        controller: "driftless".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        events: Events {
            client: client.clone(),
            reporter,
            recorders: Mutex::default(),
        },
        kinds: Kinds::default(),
        tracked: Mutex::default(),
        watches: Watches {
            client: client.clone(),
            selector,
            started: Mutex::default(),
            trigger,
        },
        settings: settings.clone(),
        shared,
        client,
    });
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|g: &mut GitSync| g.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(trigger_hash, Default::default());
    info!(kind = "GitSync", "starting controller");
    Controller::for_stream(stream, reader)
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(crate::controller::shutdown_signal())
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

/// The state a reconcile ends in, for the three conditions.
enum State {
    Ready(String),
    Progressing(String),
    /// Cannot go on without a change (to Git, the cluster, or the spec).
    Stalled(&'static str, String),
    /// Failed for now; retried.
    Failed(&'static str, String),
    HealthCheckFailed(String),
}

fn set_state(status: &mut GitSyncStatus, generation: Option<i64>, state: &State) {
    let (ready, reason, message, reconciling, stalled) = match state {
        State::Ready(m) => (true, "ReconciliationSucceeded", m, false, false),
        State::Progressing(m) => (false, "Progressing", m, true, false),
        State::Stalled(r, m) => (false, *r, m, false, true),
        State::Failed(r, m) => (false, *r, m, false, false),
        State::HealthCheckFailed(m) => (false, "HealthCheckFailed", m, false, false),
    };
    let conds = &mut status.conditions;
    conditions::set(
        conds,
        &Cond::new(READY, ready, reason, message.clone()),
        generation,
    );
    let msg = |on: bool| if on { message.clone() } else { String::new() };
    conditions::set(
        conds,
        &Cond::new(RECONCILING, reconciling, reason, msg(reconciling)),
        generation,
    );
    conditions::set(
        conds,
        &Cond::new(STALLED, stalled, reason, msg(stalled)),
        generation,
    );
}

fn ready_of(status: &GitSyncStatus) -> Option<(String, String)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| (c.reason.clone(), c.message.clone()))
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
        ctx.tracked.lock().expect("tracked poisoned").remove(&key);
        return Ok(Action::await_change());
    };
    if gs.meta().deletion_timestamp.is_some() {
        ctx.tracked.lock().expect("tracked poisoned").remove(&key);
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let result = reconcile_once(&gs, &ctx, &key).await;
    debug!(gitsync = %key, took = ?started.elapsed(), "reconciled");
    ctx.shared
        .metrics
        .git_synced(&ns, &gs.name_any(), started.elapsed());
    if let Err(e) = &result {
        warn!(gitsync = %key, error = %e, "GitSync reconcile failed");
    }
    result
}

async fn reconcile_once(gs: &GitSync, ctx: &Context, key: &str) -> Result<Action, Error> {
    let ns = gs.namespace().unwrap_or_default();
    let owner = Owner {
        namespace: ns.clone(),
        name: gs.name_any(),
    };
    let api: Api<GitSync> = Api::namespaced(ctx.client.clone(), &ns);
    let old = gs.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let generation = gs.meta().generation;
    status.observed_generation = generation;
    let interval = duration(&gs.spec.interval)
        .unwrap_or(Duration::from_secs(60))
        .max(Duration::from_secs(1));
    let timeout = gs
        .spec
        .timeout
        .as_deref()
        .and_then(duration)
        .unwrap_or(DEFAULT_TIMEOUT);
    let requested = gs.annotations().get(REQUESTED_AT).cloned();
    let forced = requested.is_some() && requested != old.last_handled_requested_at;
    if requested.is_some() {
        status.last_handled_requested_at = requested;
    }
    let dir = fetch::cache_dir(&ctx.settings.git_cache, &ns, &owner.name, &gs.spec.url);

    // 1. The latest revision: asked of the remote when due, else as last seen.
    let known = (!forced)
        .then(|| ctx.known_revision(key, generation, interval))
        .flatten();
    let checked_now = known.is_none();
    let revision = match known {
        Some(r) => r,
        None => match fetch_latest(ctx, gs, &dir, timeout).await {
            Ok(r) => {
                ctx.with(key, |t| {
                    t.checked = Some((Instant::now(), generation, r.clone()))
                });
                r
            }
            Err(msg) => {
                let state = State::Failed("FetchFailed", msg);
                finish(ctx, gs, &api, &old, status, &state).await?;
                return Ok(Action::requeue(interval.min(Duration::from_secs(30))));
            }
        },
    };
    let latest = revision.to_string();
    let applied_revision = old.last_applied_revision.clone();

    // 2. Suspended: say what is out of sync, apply nothing.
    if gs.spec.suspend {
        if applied_revision.as_deref() != Some(latest.as_str()) {
            let message = format!(
                "suspended: applied revision {}, latest {latest}; nothing is applied while spec.suspend is true",
                applied_revision.as_deref().unwrap_or("none")
            );
            let state = State::Failed("OutOfSync", message);
            finish(ctx, gs, &api, &old, status, &state).await?;
        } else {
            let conds = &mut status.conditions;
            conditions::set(
                conds,
                &Cond::new(RECONCILING, false, "Suspended", ""),
                generation,
            );
            write_status(&api, gs, &status).await?;
        }
        return Ok(Action::requeue(interval));
    }

    // 3. Apply the latest revision: atomically when it is new (dry-run
    //    first), as a plain re-apply (self-heal) when it is the applied one.
    let is_new = applied_revision.as_deref() != Some(latest.as_str());
    let failed_before = ctx.with(key, |t| t.failed.as_deref() == Some(latest.as_str()));
    if is_new && failed_before && !checked_now {
        // Nothing changed since it failed: keep the last good revision's
        // objects as they were applied, and the status as it is.
        heal_last_applied(
            ctx,
            key,
            &dir,
            &gs.spec.path,
            applied_revision.as_deref(),
            &owner,
        )
        .await;
        write_status(&api, gs, &status).await?;
        return Ok(Action::requeue(interval));
    }
    if is_new {
        status.last_attempted_revision = Some(latest.clone());
        let progressing = State::Progressing(format!("applying revision {latest}"));
        let mut early = status.clone();
        set_state(&mut early, generation, &progressing);
        write_status(&api, gs, &early).await?;
    }
    let outcome = match ctx.manifests(key, &dir, &revision.sha, &gs.spec.path).await {
        Err(e) => Err(ApplyError::Manifest(e)),
        Ok(manifests) => apply_all(ctx, &manifests, &owner, is_new, timeout).await,
    };
    let applied = match outcome {
        Ok(applied) => applied,
        Err(ApplyError::Manifest(e)) => {
            let first = ctx.with(key, |t| {
                t.failed.replace(latest.clone()).as_ref() != Some(&latest)
            });
            let message = format!("revision {latest}: {e}; nothing was applied or pruned");
            let reason = if e.reason.contains("refused by the API server") {
                "ApplyRefused"
            } else {
                "InvalidManifests"
            };
            warn!(gitsync = %key, %message, "revision refused");
            if first {
                ctx.notify(gs, NotifyEvent::SyncFailed, &latest, &message);
            }
            if !is_new {
                // The applied revision itself no longer applies (e.g. a CRD
                // was removed): still stalled, and said so.
                status.last_attempted_revision = Some(latest.clone());
            }
            finish(
                ctx,
                gs,
                &api,
                &old,
                status,
                &State::Stalled(reason, message),
            )
            .await?;
            if is_new {
                heal_last_applied(
                    ctx,
                    key,
                    &dir,
                    &gs.spec.path,
                    applied_revision.as_deref(),
                    &owner,
                )
                .await;
            }
            return Ok(Action::requeue(interval));
        }
        Err(ApplyError::Kube(e)) => {
            let state = State::Failed("ApplyFailed", format!("revision {latest}: {e}"));
            finish(ctx, gs, &api, &old, status, &state).await?;
            return Err(e.into());
        }
    };
    let entries: BTreeSet<InventoryEntry> =
        applied.iter().map(|(p, _, _)| p.entry.clone()).collect();
    for (p, _, _) in &applied {
        ctx.watches.ensure(&p.resource);
    }

    // 4. Events: a new revision, or drift put back.
    ctx.with(key, |t| {
        t.failed = None;
        if is_new || t.applied_at.as_ref().map(|(r, _)| r) != Some(&latest) {
            t.applied_at = Some((latest.clone(), Instant::now()));
        }
    });
    // A re-apply of the applied revision that had to write put drift back.
    let corrected: Vec<String> = applied
        .iter()
        .filter(|(_, _, changed)| !is_new && *changed)
        .map(|(p, _, _)| p.entry.to_string())
        .collect();
    if is_new {
        status.last_applied_revision = Some(latest.clone());
        info!(gitsync = %key, revision = %latest, objects = applied.len(), "applied");
        let message = format!("applied revision {latest}: {} objects", applied.len());
        ctx.notify(gs, NotifyEvent::SyncApplied, &latest, &message);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        ctx.shared
            .metrics
            .git_applied(&owner.namespace, &owner.name, now);
        publish(ctx, gs, EventType::Normal, "Applied", message).await;
    }
    if !corrected.is_empty() {
        info!(gitsync = %key, objects = ?corrected, "drift corrected");
        publish(
            ctx,
            gs,
            EventType::Normal,
            "DriftCorrected",
            format!(
                "put back what changed outside Git: {}",
                corrected.join(", ")
            ),
        )
        .await;
    }

    // 5. Prune what the previous inventory has and this revision does not.
    let stale: Vec<InventoryEntry> = old
        .inventory
        .iter()
        .filter(|e| !entries.contains(*e))
        .cloned()
        .collect();
    let mut pending = Vec::new();
    if gs.spec.prune && !stale.is_empty() {
        let pruned = apply::prune(&ctx.client, &ctx.kinds, &stale, &owner).await?;
        let newly: Vec<String> = pruned
            .deleted
            .iter()
            .chain(pruned.pending.iter())
            .filter(|e| !was_deleting(&old, e))
            .map(ToString::to_string)
            .collect();
        if !newly.is_empty() {
            info!(gitsync = %key, objects = ?newly, "pruned");
            publish(
                ctx,
                gs,
                EventType::Normal,
                "Pruned",
                format!("deleted (gone from Git): {}", newly.join(", ")),
            )
            .await;
        }
        for (e, why) in &pruned.kept {
            info!(gitsync = %key, object = %e, why, "not pruned");
        }
        pending = pruned.pending;
    }
    let mut inventory: Vec<InventoryEntry> = entries
        .iter()
        .cloned()
        .chain(pending.iter().cloned())
        .collect();
    inventory.sort();
    inventory.dedup();
    status.inventory = inventory;

    // 6. Health of everything applied, and of what is being pruned.
    let mut waiting: Vec<String> = applied
        .iter()
        .filter_map(|(p, obj, _)| {
            health::not_ready(obj, ctx.settings.health_check_workloads)
                .map(|why| format!("{} ({why})", p.entry))
        })
        .collect();
    waiting.extend(pending.iter().map(|e| format!("{e} (being deleted)")));
    let state = if waiting.is_empty() {
        State::Ready(format!("applied revision {latest}"))
    } else {
        let list = waiting.join(", ");
        let since = ctx.with(key, |t| t.applied_at.as_ref().map(|(_, at)| at.elapsed()));
        if since.is_some_and(|s| s > timeout) {
            State::HealthCheckFailed(format!(
                "revision {latest}: not ready after {}: {list}",
                humantime::format_duration(timeout)
            ))
        } else {
            State::Progressing(format!("revision {latest}: waiting for {list}"))
        }
    };
    let requeue = match state {
        State::Ready(_) => interval,
        _ => HEALTH_RECHECK.min(interval),
    };
    finish(ctx, gs, &api, &old, status, &state).await?;
    Ok(Action::requeue(requeue))
}

/// Whether `e` was already being deleted at the last reconcile (so that the
/// Pruned event is sent once).
fn was_deleting(old: &GitSyncStatus, e: &InventoryEntry) -> bool {
    old.conditions
        .iter()
        .any(|c| c.type_ == READY && c.message.contains(&format!("{e} (being deleted)")))
}

/// Plans and applies `manifests` stage by stage. With `atomic`, every object
/// is dry-run first and nothing is applied unless all pass; objects that
/// can only be dry-run once this revision's new Namespaces and CRDs exist
/// are dry-run right after those are applied, before anything else is.
async fn apply_all(
    ctx: &Context,
    manifests: &[Manifest],
    owner: &Owner,
    atomic: bool,
    timeout: Duration,
) -> Result<Vec<(Planned, Value, bool)>, ApplyError> {
    let client = &ctx.client;
    let (planned, later) = apply::plan(client, &ctx.kinds, manifests, manifests, owner).await?;
    // Objects in a Namespace this revision creates: the server refuses any
    // request for them, dry-run included, until that Namespace exists.
    let new_namespaces = apply::missing_namespaces(client, &planned).await?;
    let (mut planned, mut deferred): (Vec<Planned>, Vec<Planned>) = planned
        .into_iter()
        .partition(|p| !(p.namespaced && new_namespaces.contains(&p.entry.namespace)));
    if atomic {
        apply::dry_run(client, &planned).await?;
    }
    let mut applied = Vec::new();
    for stage in [Stage::Foundation, Stage::ProviderConfigs, Stage::Rest] {
        if stage == Stage::ProviderConfigs && !later.is_empty() {
            // Kinds whose CRDs this revision brings: established now, and
            // served once the API server's discovery has caught up (it lags
            // the Established condition by a moment).
            let since = Instant::now();
            let (more, unserved) = loop {
                ctx.kinds.forget();
                let (more, unserved) =
                    apply::plan(client, &ctx.kinds, &later, manifests, owner).await?;
                if unserved.is_empty() || since.elapsed() >= timeout.min(DISCOVERY_WAIT) {
                    break (more, unserved);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            if let Some(m) = unserved.first() {
                return Err(load::ManifestError::new(
                    &m.origin,
                    format!(
                        "its CRD is established, but the cluster serves no kind {} in {}",
                        m.kind(),
                        m.api_version()
                    ),
                )
                .into());
            }
            deferred.extend(more);
        }
        if stage == Stage::ProviderConfigs && !deferred.is_empty() {
            if atomic {
                apply::dry_run(client, &deferred).await?;
            }
            planned.append(&mut deferred);
        }
        let these: Vec<&Planned> = planned.iter().filter(|p| p.stage == stage).collect();
        // A re-apply (not atomic: the applied revision) tells what it changed.
        let objects = apply::apply(client, &these, !atomic).await?;
        if stage == Stage::Foundation {
            apply::wait_established(client, &these, timeout).await?;
        }
        applied.extend(
            these
                .into_iter()
                .zip(objects)
                .map(|(p, (obj, changed))| (p.clone(), obj, changed)),
        );
    }
    Ok(applied)
}

/// While the latest revision is refused, the last applied one stays the
/// desired state: re-apply it (self-heal), without dry-run or prune.
async fn heal_last_applied(
    ctx: &Context,
    key: &str,
    dir: &std::path::Path,
    path: &str,
    applied: Option<&str>,
    owner: &Owner,
) {
    let Some(sha) = applied
        .and_then(|r| r.rsplit_once("sha1:"))
        .map(|(_, sha)| sha)
    else {
        return;
    };
    let manifests = match ctx.manifests(key, dir, sha, path).await {
        Ok(m) => m,
        Err(e) => {
            warn!(gitsync = %key, error = %e, "cannot re-read the last applied revision");
            return;
        }
    };
    match apply_all(ctx, &manifests, owner, false, DEFAULT_TIMEOUT).await {
        Ok(applied) => {
            for (p, _, _) in &applied {
                ctx.watches.ensure(&p.resource);
            }
        }
        Err(e) => warn!(gitsync = %key, error = %e, "re-applying the last applied revision failed"),
    }
}

/// Sets the conditions for `state`, writes the status, and sends a Warning
/// Event when a failure is new (not on every retry).
async fn finish(
    ctx: &Context,
    gs: &GitSync,
    api: &Api<GitSync>,
    old: &GitSyncStatus,
    mut status: GitSyncStatus,
    state: &State,
) -> Result<(), kube::Error> {
    set_state(&mut status, gs.meta().generation, state);
    let warning = match state {
        State::Stalled(reason, m) | State::Failed(reason, m) => Some((*reason, m)),
        State::HealthCheckFailed(m) => Some(("HealthCheckFailed", m)),
        _ => None,
    };
    if let Some((reason, message)) = warning {
        if ready_of(old) != Some((reason.to_string(), message.clone())) {
            publish(ctx, gs, EventType::Warning, reason, message.clone()).await;
        }
    }
    write_status(api, gs, &status).await
}

async fn write_status(
    api: &Api<GitSync>,
    gs: &GitSync,
    status: &GitSyncStatus,
) -> Result<(), kube::Error> {
    if gs.status.as_ref() == Some(status) {
        return Ok(());
    }
    // Apply, not merge: fields we no longer set (an emptied inventory) go.
    let patch = json!({
        "apiVersion": "driftless.dev/v1alpha1",
        "kind": "GitSync",
        "status": status,
    });
    api.patch_status(
        &gs.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

async fn publish(ctx: &Context, gs: &GitSync, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: reason.into(),
        secondary: None,
    };
    let recorder = ctx.events.recorder(gs, reason, &event.note);
    if let Err(e) = recorder.publish(&event, &gs.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish event");
    }
}

impl Context {
    fn notify(&self, gs: &GitSync, event: NotifyEvent, revision: &str, message: &str) {
        let mut n = Notification::new(
            event,
            "GitSync",
            &gs.namespace().unwrap_or_default(),
            &gs.name_any(),
            message,
        );
        n.revision = Some(revision.to_string());
        self.shared.notifier.send(n);
    }

    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Tracked) -> T) -> T {
        let mut tracked = self.tracked.lock().expect("tracked poisoned");
        f(tracked.entry(key.to_string()).or_default())
    }

    /// The revision seen by a remote check of the current spec less than
    /// `interval` ago.
    fn known_revision(
        &self,
        key: &str,
        generation: Option<i64>,
        interval: Duration,
    ) -> Option<Revision> {
        self.with(key, |t| {
            let (at, gen, revision) = t.checked.as_ref()?;
            (*gen == generation && at.elapsed() < interval).then(|| revision.clone())
        })
    }

    /// The manifests of commit `sha`, parsed once.
    async fn manifests(
        &self,
        key: &str,
        dir: &std::path::Path,
        sha: &str,
        path: &str,
    ) -> Result<Arc<Vec<Manifest>>, load::ManifestError> {
        if let Some(m) = self.with(key, |t| t.manifests.get(sha).cloned()) {
            return Ok(m);
        }
        let (d, s, p) = (dir.to_path_buf(), sha.to_string(), path.to_string());
        let loaded = tokio::task::spawn_blocking(move || {
            let checkout = fetch::checkout(&d, &s, &p).map_err(|reason| {
                load::ManifestError::new(
                    &load::Origin {
                        file: if p.is_empty() { ".".into() } else { p.clone() },
                        line: 0,
                    },
                    reason,
                )
            })?;
            load::load_dir(checkout.root(), &p)
        })
        .await
        .unwrap_or_else(|e| {
            Err(load::ManifestError::new(
                &load::Origin {
                    file: path.to_string(),
                    line: 0,
                },
                format!("reading the revision failed: {e}"),
            ))
        });
        let manifests = Arc::new(loaded?);
        self.with(key, |t| {
            // Keep two: the latest and the one before (usually the applied one).
            if t.manifests.len() >= 2 {
                t.manifests.clear();
            }
            t.manifests.insert(sha.to_string(), manifests.clone());
        });
        Ok(manifests)
    }
}

async fn fetch_latest(
    ctx: &Context,
    gs: &GitSync,
    dir: &std::path::Path,
    timeout: Duration,
) -> Result<Revision, String> {
    let ns = gs.namespace().unwrap_or_default();
    let creds = match &gs.spec.secret_ref {
        Some(r) => Some(read_credentials(&ctx.client, &ns, &r.name).await?),
        None => None,
    };
    let (dir, url, git_ref) = (
        dir.to_path_buf(),
        gs.spec.url.clone(),
        gs.spec.git_ref.clone(),
    );
    let deadline = Instant::now() + timeout;
    let task = tokio::task::spawn_blocking(move || {
        fetch::latest(&dir, &url, &git_ref, creds.as_ref(), deadline)
    });
    match tokio::time::timeout(timeout + Duration::from_secs(5), task).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(format!("the git task failed: {e}")),
        Err(_) => Err(format!(
            "fetching {} took longer than {}",
            fetch::redact_url(&gs.spec.url),
            humantime::format_duration(timeout)
        )),
    }
}

async fn read_credentials(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Credentials, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let shown = format!("{ns}/{name}");
    let secret = api
        .get_opt(name)
        .await
        .map_err(|e| format!("reading Secret {shown} (spec.secretRef): {e}"))?
        .ok_or_else(|| format!("Secret {shown} (spec.secretRef) does not exist"))?;
    let data = secret.data.unwrap_or_default();
    Credentials::from_secret_data(&shown, |key| {
        let value = String::from_utf8_lossy(&data.get(key)?.0).into_owned();
        // Keys and known_hosts keep their newlines; single-line values are trimmed.
        Some(match key {
            "identity" | "known_hosts" => value,
            _ => value.trim().to_string(),
        })
    })
}
