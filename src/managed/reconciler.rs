//! The generic managed-resource reconciler: observe, then create, update or
//! delete through a provider's [`External`] client. It owns the finalizer,
//! conditions, events, management and deletion policies, the pause
//! annotation, requeue and backoff, for every kind alike.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use driftless_provider::{
    CloudError, ConfigSource, Connector, Deletion, DeletionPolicy, ErrorClass, External, Identity,
    ManagedKind, ManagementPolicy, Observation, References, Target, CREATE_PENDING, EXTERNAL_NAME,
    PAUSED, PROVIDER_CONFIG_NOT_ALLOWED,
};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use rand::Rng;
use serde_json::json;
use tracing::{info, warn};

use super::decide::{decide, Decision};
use super::resolve::{resolve, Resolution};
use super::triggers::Queue;
use super::waiters::Waiters;
use super::writes::{
    add_finalizer, annotate, prepare_create, remove_finalizer, write_connection_secret,
    write_status,
};
use crate::conditions::{self, Cond};
use crate::ops::notify::{Event as NotifyEvent, Notification};
use crate::ops::Shared;
use crate::{Settings, FINALIZER};

/// The reasons of the Events a managed resource gets.
pub mod reason {
    pub const CREATED: &str = "CreatedExternalResource";
    pub const ADOPTED: &str = "AdoptedExternalResource";
    pub const UPDATED: &str = "UpdatedExternalResource";
    pub const DRIFT_CORRECTED: &str = "DriftCorrected";
    pub const DELETED: &str = "DeletedExternalResource";
    pub const DELETION_WAITING: &str = "DeletionWaiting";
    pub const ORPHANED: &str = "Orphaned";
    pub const TERMINAL_ERROR: &str = "TerminalError";
    pub const RECONCILE_ERROR: &str = "ReconcileError";
    /// The object's namespace may not use its ProviderConfig (terminal; also
    /// the Synced reason).
    pub const PROVIDER_CONFIG_NOT_ALLOWED: &str = driftless_provider::PROVIDER_CONFIG_NOT_ALLOWED;
    /// Other cloud resources carry this object's owner tags (Warning).
    pub const DUPLICATES_FOUND: &str = "DuplicatesFound";
    /// A proven duplicate was deleted (`--delete-proven-duplicates`).
    pub const DUPLICATE_DELETED: &str = "DuplicateDeleted";
}

/// Everything a reconcile of kind `K` needs.
pub struct Context<K: ManagedKind> {
    pub client: kube::Client,
    pub source: ConfigSource,
    pub connector: Arc<dyn Connector<K>>,
    pub recorder: Recorder,
    pub settings: Settings,
    pub shared: Shared,
    pub waiters: Arc<Waiters>,
    /// Consecutive-failure backoff per object; dropped on success.
    backoffs: Mutex<HashMap<String, ExponentialBackoff>>,
    /// Queues a reconcile of an object of this kind; told of our own writes.
    queue: Queue<K>,
}

impl<K: ManagedKind> Context<K> {
    pub fn new(
        client: kube::Client,
        connector: Arc<dyn Connector<K>>,
        recorder: Recorder,
        settings: Settings,
        shared: Shared,
        waiters: Arc<Waiters>,
        queue: Queue<K>,
    ) -> Self {
        Self {
            shared,
            waiters,
            source: ConfigSource::Cluster(client.clone()),
            client,
            connector,
            recorder,
            settings,
            backoffs: Mutex::default(),
            queue,
        }
    }

    /// The next retry delay of `key`: exponential from 1 s (5 s when
    /// throttled) to 5 min; to [`UNREACHABLE_MAX_BACKOFF`] while the API
    /// server does not answer, so that the end of an outage is noticed
    /// within seconds, not after a backoff grown during it.
    fn next_backoff(&self, key: &str, class: ErrorClass, unreachable: bool) -> Duration {
        let mut backoffs = self.backoffs.lock().expect("backoffs poisoned");
        let entry = if unreachable {
            format!("{key} (unreachable)")
        } else {
            key.to_string()
        };
        let backoff = backoffs.entry(entry).or_insert_with(|| {
            let min = match class {
                ErrorClass::Throttled => Duration::from_secs(5),
                _ => Duration::from_secs(1),
            };
            let max = if unreachable {
                UNREACHABLE_MAX_BACKOFF
            } else {
                Duration::from_secs(300)
            };
            ExponentialBuilder::new()
                .with_min_delay(min)
                .with_max_delay(max)
                .with_jitter()
                .without_max_times()
                .build()
        });
        backoff.next().unwrap_or(Duration::from_secs(300))
    }

    fn reset_backoff(&self, key: &str) {
        let mut backoffs = self.backoffs.lock().expect("backoffs poisoned");
        backoffs.remove(key);
        backoffs.remove(&format!("{key} (unreachable)"));
    }
}

/// The longest retry delay while the API server does not answer.
const UNREACHABLE_MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Cloud(CloudError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the reconcile did not finish within {} (--reconcile-timeout); retrying", humantime::format_duration(*.0))]
    TimedOut(std::time::Duration),
}

impl From<CloudError> for Error {
    fn from(e: CloudError) -> Self {
        Error::Cloud(e)
    }
}

impl Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Cloud(e) => e.class,
            Error::Kube(_) | Error::TimedOut(_) => ErrorClass::Retryable,
        }
    }

    /// No answer from the API server (the cluster's outage).
    fn unreachable(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(_)) => false,
            Error::Kube(_) => true,
            Error::Cloud(e) => e.code == driftless_provider::KUBERNETES_UNREACHABLE,
            Error::TimedOut(_) => false,
        }
    }

    /// Refused by the ProviderConfig's `allowedNamespaces`.
    fn not_allowed(&self) -> bool {
        matches!(self, Error::Cloud(e) if e.code == PROVIDER_CONFIG_NOT_ALLOWED)
    }

    /// The reason of the Synced=False condition this error leaves.
    fn synced_reason(&self) -> &'static str {
        if self.not_allowed() {
            reason::PROVIDER_CONFIG_NOT_ALLOWED
        } else {
            "ReconcileError"
        }
    }

    /// The reason of the Warning Event this error publishes.
    fn event_reason(&self) -> &'static str {
        match self {
            _ if self.not_allowed() => reason::PROVIDER_CONFIG_NOT_ALLOWED,
            Error::Cloud(e) if e.class == ErrorClass::Terminal => reason::TERMINAL_ERROR,
            _ => reason::RECONCILE_ERROR,
        }
    }
}

fn key_of<K: ManagedKind>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

fn identity_of<K: ManagedKind>(obj: &K) -> Identity {
    Identity::new(
        &K::kind(&()),
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
    )
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.9..1.1))
}

/// The reconcile entry point: runs one pass and records its errors in the
/// Synced condition (the error policy then decides when to retry).
pub async fn reconcile<K: ManagedKind>(obj: Arc<K>, ctx: Arc<Context<K>>) -> Result<Action, Error> {
    let _pass = ctx.shared.passes.pass(
        &K::kind(&()),
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
    );
    let started = std::time::Instant::now();
    // A deadline over the whole pass, its calls' own timeouts aside: a pass
    // never holds its slot for good. Dropping it mid-create is safe, as a
    // crash is: the next pass finds the resource by its owner tags.
    let deadline = ctx.settings.reconcile_timeout;
    let result = tokio::time::timeout(deadline, reconcile_once(obj.as_ref(), ctx.as_ref()))
        .await
        .unwrap_or_else(|_| Err(Error::TimedOut(deadline)));
    ctx.shared
        .metrics
        .reconciled(&K::kind(&()), result.is_ok(), started.elapsed());
    match result {
        Ok(action) => {
            ctx.reset_backoff(&key_of(obj.as_ref()));
            Ok(action)
        }
        Err(err) => {
            // Tell people once, when the object turns from fine to failing.
            let synced_reason = err.synced_reason();
            let was_failing = obj
                .managed_status()
                .and_then(|s| s.condition(conditions::SYNCED))
                .is_some_and(|c| c.status == "False" && c.reason == synced_reason);
            if !was_failing {
                ctx.shared.notifier.send(Notification::new(
                    NotifyEvent::ResourceFailed,
                    &K::kind(&()),
                    &obj.namespace().unwrap_or_default(),
                    &obj.name_any(),
                    err.to_string(),
                ));
            }
            warn!(kind = K::kind(&()).as_ref(), object = %key_of(obj.as_ref()), error = %err, "reconcile failed");
            let api = api_for(&ctx, obj.as_ref());
            let mut synced = Cond::new(conditions::SYNCED, false, synced_reason, err.to_string());
            if obj.meta().deletion_timestamp.is_some() {
                synced.message = format!("deleting: {}", synced.message);
            }
            // Best effort: the error itself is what the policy acts on.
            let _ = write_status(&api, obj.as_ref(), None, &[synced], None, None).await;
            publish(
                &ctx,
                obj.as_ref(),
                EventType::Warning,
                err.event_reason(),
                err.to_string(),
            );
            Err(err)
        }
    }
}

/// When to retry after a failed reconcile.
pub fn error_policy<K: ManagedKind>(obj: Arc<K>, err: &Error, ctx: Arc<Context<K>>) -> Action {
    let delay = match err.class() {
        // Only a spec change (which triggers a reconcile at once) or a long
        // wait can help: do not hammer the cloud.
        ErrorClass::Terminal => ctx.settings.terminal_backoff,
        class => ctx.next_backoff(&key_of(obj.as_ref()), class, err.unreachable()),
    };
    Action::requeue(delay)
}

fn api_for<K: ManagedKind>(ctx: &Context<K>, obj: &K) -> Api<K> {
    Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default())
}

/// What a pass leaves in the status, written once at its end.
struct Outcome<K: ManagedKind> {
    conds: Vec<Cond>,
    at_provider: Option<K::AtProvider>,
    resolved: Option<BTreeMap<String, String>>,
    /// Other cloud resources carrying the owner tags, when observed.
    duplicates: Option<Vec<String>>,
    action: Action,
    /// Ready now, and not before: wake what waits on this object.
    turned_ready: bool,
}

impl<K: ManagedKind> Outcome<K> {
    fn new(conds: Vec<Cond>, action: Action) -> Self {
        Self {
            conds,
            at_provider: None,
            resolved: None,
            duplicates: None,
            action,
            turned_ready: false,
        }
    }
}

/// One pass, as named steps: paused? -> deleting? -> finalizer ->
/// references -> observe -> decide -> act -> record -> publish. Then the
/// one status write.
async fn reconcile_once<K: ManagedKind>(obj: &K, ctx: &Context<K>) -> Result<Action, Error> {
    let api = api_for(ctx, obj);
    let outcome = steps(&api, obj, ctx).await?;
    write_status(
        &api,
        obj,
        outcome.at_provider,
        &outcome.conds,
        outcome.resolved,
        outcome.duplicates,
    )
    .await?;
    if outcome.turned_ready {
        // Only once Ready is written: a woken dependent reads it.
        let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
        ctx.waiters.ready(&K::kind(&()), &ns, &name);
    }
    Ok(outcome.action)
}

async fn steps<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    ctx: &Context<K>,
) -> Result<Outcome<K>, Error> {
    if obj.annotations().get(PAUSED).map(String::as_str) == Some("true") {
        // No cloud call at all, not even on deletion.
        return Ok(Outcome::new(
            vec![Cond::reconcile_paused()],
            Action::await_change(),
        ));
    }
    let has_finalizer = obj.finalizers().iter().any(|f| f == FINALIZER);
    if obj.meta().deletion_timestamp.is_some() {
        if !has_finalizer {
            ctx.queue.triggers.forget(obj);
            return Ok(Outcome::new(Vec::new(), Action::await_change()));
        }
        return finalize(api, obj, ctx).await;
    }
    let resolved = match references(obj, ctx).await? {
        Ok(ids) => ids,
        Err(not_ready) => return Ok(not_ready),
    };
    let identity = identity_of(obj);
    let target = target_of(obj, &identity, &resolved);
    let external = connect(ctx, obj).await?;
    let observed = external.observe(&target).await?;
    let decision = decide::<K>(&observed, obj.managed(), target.external_name);
    // Before any cloud write or record; a create adds it in its own first
    // write (one write fewer per created object).
    if !has_finalizer && !matches!(decision, Decision::Create) {
        add_finalizer(api, obj).await?;
    }
    let mut requeue = jittered(ctx.settings.poll_interval);
    match decision {
        Decision::Create => {
            return create(api, obj, ctx, external.as_ref(), &target, has_finalizer).await
        }
        Decision::Missing(e) => {
            let msg = e.message;
            return Ok(Outcome::new(
                vec![Cond::unavailable(&msg), Cond::reconcile_error(&msg)],
                Action::requeue(requeue),
            ));
        }
        Decision::Immutable(e) => return Err(e.into()),
        Decision::Update => {
            update(obj, ctx, external.as_ref(), &target, &observed).await?;
            // Re-read soon: a single resource is re-read only after a write.
            requeue = Duration::from_secs(1);
        }
        Decision::UpToDate | Decision::ObserveOnly => {}
    }
    record_adoption(api, obj, ctx, &target, &observed).await?;
    settle(obj, ctx, external.as_ref(), observed, resolved, requeue).await
}

/// Step: record what the observation found: duplicates, the connection
/// Secret, and the outcome (Ready or why not).
async fn settle<K: ManagedKind>(
    obj: &K,
    ctx: &Context<K>,
    external: &dyn External<K>,
    observed: Observation<K>,
    resolved: BTreeMap<String, String>,
    mut requeue: Duration,
) -> Result<Outcome<K>, Error> {
    let duplicates = report_duplicates(obj, ctx, external, &observed).await;
    write_connection_secret(&ctx.client, obj, &observed).await?;
    let ready = if observed.ready {
        Cond::available()
    } else {
        requeue = requeue.min(Duration::from_secs(2));
        let why = observed.not_ready.as_deref();
        Cond::creating(why.unwrap_or("the cloud resource is not ready yet"))
    };
    Ok(Outcome {
        conds: vec![ready, Cond::reconcile_success()],
        at_provider: observed.at_provider,
        resolved: Some(resolved),
        duplicates: Some(duplicates),
        action: Action::requeue(requeue),
        turned_ready: observed.ready && !conditions_of(obj).iter().any(is_ready),
    })
}

fn is_ready(c: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition) -> bool {
    c.type_ == conditions::READY && c.status == "True"
}

/// What a provider operation works on, for this object.
fn target_of<'a, K: ManagedKind>(
    obj: &'a K,
    identity: &'a Identity,
    resolved: &'a BTreeMap<String, String>,
) -> Target<'a, K> {
    let annotations = obj.annotations();
    Target {
        identity,
        external_name: annotations.get(EXTERNAL_NAME).map(String::as_str),
        create_pending: annotations.contains_key(CREATE_PENDING),
        spec: obj.for_provider(),
        resolved,
    }
}

/// Step: references. Until every target is Ready, no cloud call: the
/// object waits (woken the moment a target is Ready; the requeue is a
/// fallback) and says what it waits for.
async fn references<K: ManagedKind>(
    obj: &K,
    ctx: &Context<K>,
) -> Result<Result<BTreeMap<String, String>, Outcome<K>>, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let references = obj.for_provider().references();
    let epoch = ctx.waiters.epoch();
    match resolve(&ctx.client, &namespace, &references).await? {
        Resolution::Resolved(ids) => Ok(Ok(ids)),
        Resolution::NotReady(why, awaited) => {
            let wake = ctx.queue.wake.clone();
            let me = ObjectRef::from_obj(obj);
            ctx.waiters.wait(
                awaited,
                format!("{}/{}", K::kind(&()), key_of(obj)),
                epoch,
                Box::new(move || {
                    let _ = wake.unbounded_send(me.clone());
                }),
            );
            Ok(Err(Outcome::new(
                vec![Cond::reference_not_ready(why)],
                Action::requeue(ctx.settings.reference_retry),
            )))
        }
    }
}

/// Step: create. The create is marked before it is made: if its result is
/// lost, the next observe adopts what it made instead of making another.
/// Then what it made is observed in the same pass (a provider serves that
/// from what its create returned where it can), so Ready is written with
/// the one status write of this pass: three writes per created object.
async fn create<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    ctx: &Context<K>,
    external: &dyn External<K>,
    target: &Target<'_, K>,
    has_finalizer: bool,
) -> Result<Outcome<K>, Error> {
    let now = chrono::Utc::now().to_rfc3339();
    let mark = (!target.create_pending).then_some(now.as_str());
    prepare_create(api, obj, !has_finalizer, mark).await?;
    let created = external.create(target).await?;
    // This pass observes what it made: the write's own event needs no other.
    ctx.queue
        .triggers
        .expect(&with_external_name(obj, &created.external_name));
    annotate(
        api,
        obj,
        json!({ EXTERNAL_NAME: created.external_name, CREATE_PENDING: null }),
    )
    .await?;
    info!(kind = K::kind(&()).as_ref(), object = %key_of(obj), external_name = %created.external_name, "created");
    let note = format!("created {}", created.external_name);
    publish(ctx, obj, EventType::Normal, reason::CREATED, note);
    let made = Target {
        external_name: Some(created.external_name.as_str()),
        create_pending: false,
        ..*target
    };
    let observed = external.observe(&made).await?;
    let in_sync = observed.exists && observed.diff.is_empty();
    if !in_sync {
        // Not visible yet, or not as asked: the next pass sees to it.
        return Ok(Outcome::new(
            vec![
                Cond::creating("waiting for the new resource to be observed"),
                Cond::reconcile_success(),
            ],
            Action::requeue(Duration::from_secs(1)),
        ));
    }
    let requeue = jittered(ctx.settings.poll_interval);
    let resolved = target.resolved.clone();
    settle(obj, ctx, external, observed, resolved, requeue).await
}

/// `obj` as recording its external name leaves it.
fn with_external_name<K: ManagedKind>(obj: &K, name: &str) -> K {
    let mut after = obj.clone();
    let annotations = after.annotations_mut();
    annotations.insert(EXTERNAL_NAME.to_string(), name.to_string());
    annotations.remove(CREATE_PENDING);
    after
}

/// Step: update, told as a drift correction when the spec did not change
/// since the last successful pass.
async fn update<K: ManagedKind>(
    obj: &K,
    ctx: &Context<K>,
    external: &dyn External<K>,
    target: &Target<'_, K>,
    observed: &Observation<K>,
) -> Result<(), Error> {
    external.update(target, observed).await?;
    let changes: Vec<String> = observed.diff.iter().map(ToString::to_string).collect();
    let drift = last_synced_generation(obj) == obj.meta().generation;
    let (reason, verb) = if drift {
        (reason::DRIFT_CORRECTED, "corrected drift")
    } else {
        (reason::UPDATED, "updated")
    };
    if drift {
        let identity = target.identity;
        ctx.shared.metrics.drift_corrected(&K::kind(&()));
        ctx.shared.notifier.send(Notification::new(
            NotifyEvent::DriftCorrected,
            &K::kind(&()),
            &identity.namespace,
            &identity.name,
            changes.join("; "),
        ));
    }
    info!(kind = K::kind(&()).as_ref(), object = %key_of(obj), changes = ?changes, "{verb}");
    let note = format!("{verb}: {}", changes.join("; "));
    publish(ctx, obj, EventType::Normal, reason, note);
    Ok(())
}

/// Step: record what was found by owner tags (e.g. after a crash between
/// create and record) as the external name.
async fn record_adoption<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    ctx: &Context<K>,
    target: &Target<'_, K>,
    observed: &Observation<K>,
) -> Result<(), Error> {
    let Some(found) = &observed.external_name else {
        return Ok(());
    };
    if target.external_name == Some(found.as_str()) && !target.create_pending {
        return Ok(());
    }
    annotate(
        api,
        obj,
        json!({ EXTERNAL_NAME: found, CREATE_PENDING: null }),
    )
    .await?;
    let note = format!("adopted {found}");
    publish(ctx, obj, EventType::Normal, reason::ADOPTED, note);
    Ok(())
}

/// Other cloud resources carrying this object's owner tags: never silent.
/// With `--delete-proven-duplicates`, those made by this object's own create
/// call (the same create token) are deleted. A Warning Event and the metric
/// when the set left changes to a non-empty one. Returns the set left, for
/// the status.
async fn report_duplicates<K: ManagedKind>(
    obj: &K,
    ctx: &Context<K>,
    external: &dyn External<K>,
    observed: &Observation<K>,
) -> Vec<String> {
    let mut left = observed.duplicates.clone();
    if ctx.settings.delete_proven_duplicates {
        for id in &observed.proven_duplicates {
            if delete_duplicate(obj, ctx, external, id).await {
                left.retain(|d| d != id);
            }
        }
    }
    let before = obj
        .managed_status()
        .map(|s| s.duplicates.clone())
        .unwrap_or_default();
    if left.is_empty() || left == before {
        return left;
    }
    let kind = K::kind(&());
    ctx.shared.metrics.duplicates_found(&kind, left.len());
    let adopted = observed.external_name.as_deref().unwrap_or("?");
    let note = format!(
        "{} other cloud resource(s) carry this object's owner tags: {}; driftless manages {adopted} only and does not change these: delete them in the cloud",
        left.len(),
        left.join(", ")
    );
    warn!(kind = kind.as_ref(), object = %key_of(obj), duplicates = ?left, "duplicates found");
    publish(ctx, obj, EventType::Warning, reason::DUPLICATES_FOUND, note);
    left
}

/// Deletes the proven duplicate `id`; whether it is gone (or going).
async fn delete_duplicate<K: ManagedKind>(
    obj: &K,
    ctx: &Context<K>,
    external: &dyn External<K>,
    id: &str,
) -> bool {
    match external.delete_duplicate(id).await {
        Ok(_) => {
            ctx.shared.metrics.duplicates_deleted(&K::kind(&()));
            let note = format!("deleted {id}: a duplicate made by this object's own create call (the same create token; --delete-proven-duplicates)");
            publish(ctx, obj, EventType::Normal, reason::DUPLICATE_DELETED, note);
            true
        }
        Err(e) => {
            warn!(object = %key_of(obj), duplicate = id, error = %e, "cannot delete a proven duplicate");
            false
        }
    }
}

/// Deletion: honour the policies, delete in the cloud, drop the finalizer
/// once the resource is gone.
async fn finalize<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    ctx: &Context<K>,
) -> Result<Outcome<K>, Error> {
    let managed = obj.managed();
    if managed.deletion_policy == DeletionPolicy::Orphan
        || !managed.allows(ManagementPolicy::Delete)
    {
        let note = "the cloud resource is kept (deletionPolicy or managementPolicies)".into();
        publish(ctx, obj, EventType::Normal, reason::ORPHANED, note);
        release(api, obj, ctx).await?;
        return Ok(Outcome::new(Vec::new(), Action::await_change()));
    }
    let identity = identity_of(obj);
    let resolved = obj
        .managed_status()
        .map(|s| s.resolved_references.clone())
        .unwrap_or_default();
    let target = target_of(obj, &identity, &resolved);
    let external = match connect(ctx, obj).await {
        // Refused from the start: nothing was ever made through this
        // ProviderConfig for the object, so there is nothing to delete and
        // no cloud call to make. With an external name, the refusal stands
        // (allow the namespace again, or orphan the resource).
        Err(e) if e.not_allowed() && target.external_name.is_none() && !target.create_pending => {
            release(api, obj, ctx).await?;
            return Ok(Outcome::new(Vec::new(), Action::await_change()));
        }
        other => other?,
    };
    let observed = external.observe(&target).await?;
    if !observed.exists {
        if conditions_of(obj)
            .iter()
            .any(|c| c.type_ == conditions::READY && c.reason == "Deleting")
        {
            let note = "the cloud resource is gone".into();
            publish(ctx, obj, EventType::Normal, reason::DELETED, note);
        }
        release(api, obj, ctx).await?;
        return Ok(Outcome::new(Vec::new(), Action::await_change()));
    }
    let (why, action) = match external.delete(&target).await? {
        Deletion::Done => (
            "deleting the cloud resource".to_string(),
            Action::requeue(Duration::from_secs(1)),
        ),
        Deletion::Waiting(why) => {
            publish(
                ctx,
                obj,
                EventType::Normal,
                reason::DELETION_WAITING,
                why.clone(),
            );
            // Waiting is not an error, but nothing changes fast: back off.
            let delay = ctx
                .next_backoff(&key_of(obj), ErrorClass::Retryable, false)
                .max(Duration::from_secs(5));
            (why, Action::requeue(delay))
        }
    };
    Ok(Outcome::new(
        vec![Cond::deleting(why), Cond::reconcile_success()],
        action,
    ))
}

/// Lets the object go: its finalizer removed, nothing kept about it.
async fn release<K: ManagedKind>(api: &Api<K>, obj: &K, ctx: &Context<K>) -> Result<(), Error> {
    remove_finalizer(api, obj).await?;
    ctx.queue.triggers.forget(obj);
    Ok(())
}

async fn connect<K: ManagedKind>(ctx: &Context<K>, obj: &K) -> Result<Arc<dyn External<K>>, Error> {
    Ok(ctx
        .connector
        .connect(
            &ctx.source,
            &obj.managed().provider_config_ref.name,
            &obj.namespace().unwrap_or_default(),
            obj.for_provider(),
        )
        .await?)
}

fn conditions_of<K: ManagedKind>(
    obj: &K,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    obj.managed_status()
        .map(|s| s.conditions.clone())
        .unwrap_or_default()
}

/// The generation the last successful reconcile saw: equal to the current
/// one means an update now corrects drift, not a spec change.
fn last_synced_generation<K: ManagedKind>(obj: &K) -> Option<i64> {
    obj.managed_status()
        .and_then(|s| s.condition(conditions::SYNCED))
        .filter(|c| c.status == "True")
        .and_then(|c| c.observed_generation)
}

/// Queues an Event: the pass does not wait for it (see [`crate::ops::events`]).
fn publish<K: ManagedKind>(
    ctx: &Context<K>,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = crate::ops::event(type_, reason, note);
    ctx.shared
        .events
        .send(&ctx.recorder, &obj.object_ref(&()), event);
}
