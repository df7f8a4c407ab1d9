//! The GitSync controller: each reconcile finds the latest revision (a cheap
//! ref listing when due), applies it atomically, prunes, watches what it
//! applied, and reports health in Ready / Reconciling / Stalled.

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
    /// Our managedFields time per object after the last apply: it changes on
    /// a re-apply of the same revision only when the apply put something back.
    written: HashMap<InventoryEntry, String>,
}

/// Everything a GitSync reconcile needs.
pub struct Context {
    client: kube::Client,
    settings: Settings,
    recorder: Recorder,
    kinds: Kinds,
    tracked: Mutex<HashMap<String, Tracked>>,
    watches: Watches,
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
pub async fn run(client: kube::Client, settings: Settings) {
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
        recorder: Recorder::new(client.clone(), reporter),
        kinds: Kinds::default(),
        tracked: Mutex::default(),
        watches: Watches {
            client: client.clone(),
            selector,
            started: Mutex::default(),
            trigger,
        },
        settings: settings.clone(),
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
    let key = format!("{}/{}", gs.namespace().unwrap_or_default(), gs.name_any());
    if gs.meta().deletion_timestamp.is_some() {
        ctx.tracked.lock().expect("tracked poisoned").remove(&key);
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let result = reconcile_once(&gs, &ctx, &key).await;
    debug!(gitsync = %key, took = ?started.elapsed(), "reconciled");
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
            ctx.with(key, |t| t.failed = Some(latest.clone()));
            let message = format!("revision {latest}: {e}; nothing was applied or pruned");
            let reason = if e.reason.contains("refused by the API server") {
                "ApplyRefused"
            } else {
                "InvalidManifests"
            };
            warn!(gitsync = %key, %message, "revision refused");
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
    let entries: BTreeSet<InventoryEntry> = applied.iter().map(|(p, _)| p.entry.clone()).collect();
    for (p, _) in &applied {
        ctx.watches.ensure(&p.resource);
    }

    // 4. Events: a new revision, or drift put back.
    let corrected = ctx.with(key, |t| {
        t.failed = None;
        if is_new {
            t.applied_at = Some((latest.clone(), Instant::now()));
            t.written.clear();
        } else if t.applied_at.as_ref().map(|(r, _)| r) != Some(&latest) {
            t.applied_at = Some((latest.clone(), Instant::now()));
        }
        let mut corrected = Vec::new();
        for (p, obj) in &applied {
            let Some(time) = apply_time(obj) else {
                continue;
            };
            let previous = t.written.insert(p.entry.clone(), time.clone());
            if !is_new && previous.is_some_and(|prev| prev != time) {
                corrected.push(p.entry.to_string());
            }
        }
        t.written.retain(|e, _| entries.contains(e));
        corrected
    });
    if is_new {
        status.last_applied_revision = Some(latest.clone());
        info!(gitsync = %key, revision = %latest, objects = applied.len(), "applied");
        publish(
            ctx,
            gs,
            EventType::Normal,
            "Applied",
            format!("applied revision {latest}: {} objects", applied.len()),
        )
        .await;
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
        .filter_map(|(p, obj)| {
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

/// The time of our last server-side apply that changed `obj`.
fn apply_time(obj: &Value) -> Option<String> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|f| f["manager"] == FIELD_MANAGER && f["operation"] == "Apply")
        .and_then(|f| f["time"].as_str())
        .map(str::to_string)
}

/// Plans and applies `manifests` stage by stage. With `atomic`, every object
/// is dry-run first and nothing is applied unless all pass.
async fn apply_all(
    ctx: &Context,
    manifests: &[Manifest],
    owner: &Owner,
    atomic: bool,
    timeout: Duration,
) -> Result<Vec<(Planned, Value)>, ApplyError> {
    let client = &ctx.client;
    let (mut planned, later) = apply::plan(client, &ctx.kinds, manifests, manifests, owner).await?;
    if atomic {
        apply::dry_run(client, &planned).await?;
    }
    let mut applied = Vec::new();
    for stage in [Stage::Foundation, Stage::ProviderConfigs, Stage::Rest] {
        if stage == Stage::ProviderConfigs && !later.is_empty() {
            // Kinds whose CRDs this revision brings: servable now.
            ctx.kinds.forget();
            let (more, unserved) =
                apply::plan(client, &ctx.kinds, &later, manifests, owner).await?;
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
            if atomic {
                apply::dry_run(client, &more).await?;
            }
            planned.extend(more);
        }
        let these: Vec<&Planned> = planned.iter().filter(|p| p.stage == stage).collect();
        let objects = apply::apply(client, &these).await?;
        if stage == Stage::Foundation {
            apply::wait_established(client, &these, timeout).await?;
        }
        applied.extend(these.into_iter().cloned().zip(objects));
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
            for (p, _) in &applied {
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
    if let Err(e) = ctx.recorder.publish(&event, &gs.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish event");
    }
}

impl Context {
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
        let files = tokio::task::spawn_blocking(move || fetch::read_manifest_files(&d, &s, &p))
            .await
            .unwrap_or_else(|e| Err(format!("reading the revision failed: {e}")))
            .map_err(|reason| load::ManifestError {
                origin: load::Origin {
                    file: if path.is_empty() {
                        ".".into()
                    } else {
                        path.to_string()
                    },
                    line: 0,
                },
                reason,
            })?;
        let manifests = Arc::new(load::load(&files)?);
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
