//! One GitSync reconcile pass, as a straight list of named steps:
//!
//! ```text
//! source -> suspended? -> dependencies? -> known failure? -> render -> apply -> report
//!        -> prune -> record (history) -> health
//! ```
//!
//! A GitSync being deleted takes another path, [`finalize_once`]:
//!
//! ```text
//! delete (or orphan) the inventory -> what is left? -> finalizer removed
//! ```
//!
//! Each step either hands its result to the next or ends the pass with an
//! [`End`]. Whatever the end, the status is written once, at the end of the
//! pass, compared with what the cluster holds (Flux's deferred patch).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::apply::{Applied, ApplyError, Change, Owner};
use super::cluster::{Cluster, Target};
use super::context::{publish, Context, Error};
use super::source::{self, Revision};
use super::{
    depends::{self, NotReady},
    duration, finalize, health, prune, rollout, GitSync, GitSyncStatus, HistoryEntry,
    HistoryRewrite, InventoryEntry, HISTORY_LIMIT, REQUESTED_AT,
};
use crate::conditions::{self, Cond};
use crate::manifests::{Manifest, ManifestError};
use crate::ops::notify::Event as NotifyEvent;
use crate::FIELD_MANAGER;

const READY: &str = conditions::READY;
const RECONCILING: &str = "Reconciling";
const STALLED: &str = "Stalled";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// How soon health is looked at again while objects are not ready (their
/// watch usually triggers sooner).
const HEALTH_RECHECK: Duration = Duration::from_secs(5);

/// The reasons a GitSync's conditions and Warning Events carry.
pub mod reason {
    pub const SUCCEEDED: &str = "ReconciliationSucceeded";
    pub const PROGRESSING: &str = "Progressing";
    pub const SUSPENDED: &str = "Suspended";
    pub const OUT_OF_SYNC: &str = "OutOfSync";
    pub const FETCH_FAILED: &str = "FetchFailed";
    /// The source URL is not allowed (file://, credentials over http://, prefixes).
    pub const SOURCE_REFUSED: &str = "SourceRefused";
    pub const INVALID_MANIFESTS: &str = "InvalidManifests";
    /// kustomize or helm refused the revision (or took too long).
    pub const RENDER_FAILED: &str = "RenderFailed";
    /// A SOPS-encrypted object could not be decrypted (no identity, MAC).
    pub const DECRYPTION_FAILED: &str = "DecryptionFailed";
    pub const APPLY_REFUSED: &str = "ApplyRefused";
    pub const APPLY_FAILED: &str = "ApplyFailed";
    pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
    /// Event: the git cache could not be read, so it was deleted and cloned again.
    pub const CACHE_RECLONED: &str = "CacheRecloned";
    /// Event: the followed branch (or tag) no longer contains the applied
    /// commit (a force-push); the new revision was applied anyway.
    pub const HISTORY_REWRITTEN: &str = "HistoryRewritten";
    /// Event: a new revision applied, with its change set.
    pub const APPLIED: &str = "Applied";
    /// The GitSync is being deleted and waits for its inventory to go.
    pub const DELETING: &str = "Deleting";
    /// Deleting (or orphaning) the inventory failed; retried.
    pub const DELETION_FAILED: &str = "DeletionFailed";
    /// Event: the inventory was deleted, the GitSync goes.
    pub const DELETED: &str = "Deleted";
    /// Event: the inventory was kept, without the owner labels.
    pub const ORPHANED: &str = "Orphaned";
    /// A GitSync of `spec.dependsOn` is not Ready at its latest revision
    /// (or they form a cycle): no new revision is applied.
    pub const DEPENDENCY_NOT_READY: &str = "DependencyNotReady";
}

/// How soon a GitSync waiting for its dependencies looks at them again, if
/// none wakes it first (a dependency turning Ready wakes its dependents at
/// once). Each look re-applies the revision already applied, so not often.
const DEPENDENCY_RECHECK: Duration = Duration::from_secs(30);

/// How soon a GitSync being deleted looks again at what it waits on (the
/// watches of its objects usually trigger it sooner).
const DELETION_RECHECK: Duration = Duration::from_secs(5);

/// The state a pass ends in, for the three conditions.
enum State {
    Ready(String),
    Progressing(String),
    /// Cannot go on without a change (to Git, the cluster, or the spec).
    Stalled(&'static str, String),
    /// Failed for now; retried.
    Failed(&'static str, String),
    HealthCheckFailed(String),
    /// Being deleted, waiting for (the message says) what is left.
    Deleting(String),
    /// Waiting for `spec.dependsOn` (or stuck in a cycle, when `true`).
    DependencyNotReady(String, bool),
    /// Suspended and in sync: only Reconciling says so.
    Suspended,
    /// Nothing new to say: the conditions stay as they are.
    Unchanged,
}

/// How a pass ends: its state, when to look again, and the error (if
/// any) the controller's error policy acts on.
struct End {
    state: State,
    requeue: Duration,
    error: Option<Box<Error>>,
}

impl End {
    fn at(state: State, requeue: Duration) -> Self {
        Self {
            state,
            requeue,
            error: None,
        }
    }
}

/// One pass over one GitSync: its inputs, and the status it builds.
struct Pass<'a> {
    ctx: &'a Context,
    gs: &'a GitSync,
    key: &'a str,
    owner: Owner,
    /// The status as read at the start of the pass.
    old: GitSyncStatus,
    /// The revision `old` records as applied, parsed once.
    applied: Option<Revision>,
    /// The status this pass writes, once, at its end.
    status: GitSyncStatus,
    interval: Duration,
    timeout: Duration,
    /// The GitSync's bare clone.
    dir: PathBuf,
    /// Asked for by `driftless.dev/requested-at` (a webhook, a user).
    forced: bool,
    /// Where and as whom it applies and prunes: the GitSync's cluster, and
    /// its ServiceAccount there (impersonated) or the controller's
    /// credentials; never the controller's when an account is set.
    target: Result<Target, String>,
    /// When the pass started, for `status.history`.
    started: (Instant, Time),
    /// What this pass's prune deleted (for the change set).
    pruned_now: Vec<InventoryEntry>,
}

/// Runs one pass and writes its status.
pub(super) async fn reconcile_once(
    gs: &GitSync,
    ctx: &Context,
    key: &str,
) -> Result<Action, Error> {
    let mut pass = Pass::new(gs, ctx, key, ctx.target_for(gs).await);
    let end = match pass.steps().await {
        Ok(end) | Err(end) => end,
    };
    pass.finish(&end.state).await?;
    match end.error {
        Some(e) => Err(*e),
        None => Ok(Action::requeue(end.requeue)),
    }
}

/// A pass over a GitSync being deleted: its inventory is deleted (or
/// orphaned), then its finalizer goes; until then the status says what
/// it waits on.
pub(super) async fn finalize_once(gs: &GitSync, ctx: &Context, key: &str) -> Result<Action, Error> {
    let mut pass = Pass::new(gs, ctx, key, ctx.target_for(gs).await);
    let end = match pass.delete().await {
        Ok(None) => {
            let api: Api<GitSync> = Api::namespaced(ctx.client.clone(), &pass.owner.namespace);
            finalize::remove_finalizer(&api, gs).await?;
            ctx.forget(key);
            // The bare clone is of no use to anyone now.
            let _ = tokio::fs::remove_dir_all(&pass.dir).await;
            info!(gitsync = %key, "deleted");
            return Ok(Action::await_change());
        }
        Ok(Some(waiting)) => End::at(State::Deleting(waiting), DELETION_RECHECK),
        Err(end) => end,
    };
    pass.finish(&end.state).await?;
    match end.error {
        Some(e) => Err(*e),
        None => Ok(Action::requeue(end.requeue)),
    }
}

impl<'a> Pass<'a> {
    fn new(
        gs: &'a GitSync,
        ctx: &'a Context,
        key: &'a str,
        target: Result<Target, String>,
    ) -> Self {
        let owner = Owner {
            namespace: gs.namespace().unwrap_or_default(),
            name: gs.name_any(),
            target_namespace: gs.spec.target_namespace.clone(),
        };
        let old = gs.status.clone().unwrap_or_default();
        let mut status = old.clone();
        status.observed_generation = gs.meta().generation;
        let requested = gs.annotations().get(REQUESTED_AT).cloned();
        let forced = requested.is_some() && requested != old.last_handled_requested_at;
        if requested.is_some() {
            status.last_handled_requested_at = requested;
        }
        let dir = source::cache_dir(
            &ctx.settings.git_cache,
            &owner.namespace,
            &owner.name,
            gs.uid().as_deref().unwrap_or_default(),
            &gs.spec.url,
        );
        Self {
            interval: duration(&gs.spec.interval)
                .unwrap_or(Duration::from_secs(60))
                .max(Duration::from_secs(1)),
            timeout: gs
                .spec
                .timeout
                .as_deref()
                .and_then(duration)
                .unwrap_or(DEFAULT_TIMEOUT),
            ctx,
            gs,
            key,
            owner,
            applied: old
                .last_applied_revision
                .as_deref()
                .and_then(Revision::parse),
            old,
            status,
            dir,
            forced,
            target,
            started: (Instant::now(), Time(k8s_openapi::jiff::Timestamp::now())),
            pruned_now: Vec::new(),
        }
    }

    /// The cluster the objects go to (helm renders for it); this one when
    /// the other cannot be reached, as nothing is applied then anyway.
    fn cluster(&self) -> &Cluster {
        match &self.target {
            Ok(t) => &t.cluster,
            Err(_) => &self.ctx.local,
        }
    }

    /// The pipeline. `Err` ends the pass early; it is not a failure as such.
    async fn steps(&mut self) -> Result<End, End> {
        let (revision, checked_now) = self.source().await?;
        self.suspended(&revision)?;
        let is_new = self.applied.as_ref() != Some(&revision);
        if is_new {
            self.dependencies(&revision).await?;
        }
        self.known_failure(&revision, is_new, checked_now).await?;
        if is_new {
            self.attempting(&revision);
        }
        let manifests = self.render(&revision, is_new).await?;
        let applied = self.apply(&revision, &manifests, is_new).await?;
        self.report(&revision, &applied, is_new).await;
        let pending = self.prune(&applied).await?;
        if is_new {
            self.record(&revision, &applied).await;
        }
        Ok(self.health(&revision, &applied, &pending))
    }

    /// Step 1, source: the latest revision, asked of the remote when due
    /// (or forced), else as last seen. Also says whether it was asked now.
    async fn source(&self) -> Result<(Revision, bool), End> {
        let credentials = self.gs.spec.secret_ref.is_some();
        if let Err(why) = self
            .ctx
            .settings
            .sources
            .check(&self.gs.spec.url, credentials)
        {
            return Err(End::at(
                State::Stalled(reason::SOURCE_REFUSED, why),
                self.interval,
            ));
        }
        let generation = self.gs.meta().generation;
        if !self.forced {
            if let Some(r) = self.ctx.known_revision(self.key, generation, self.interval) {
                return Ok((r, false));
            }
        }
        match self
            .ctx
            .fetch_latest(self.gs, &self.dir, self.timeout)
            .await
        {
            Ok(r) => {
                self.ctx.with(self.key, |t| {
                    t.checked = Some((Instant::now(), generation, r.clone()))
                });
                Ok((r, true))
            }
            Err(msg) => Err(End::at(
                State::Failed(reason::FETCH_FAILED, msg),
                self.interval.min(Duration::from_secs(30)),
            )),
        }
    }

    /// Step 2: suspended, say what is out of sync and apply nothing.
    fn suspended(&self, latest: &Revision) -> Result<(), End> {
        if !self.gs.spec.suspend {
            return Ok(());
        }
        let state = match &self.applied {
            Some(applied) if applied == latest => State::Suspended,
            applied => State::Failed(
                reason::OUT_OF_SYNC,
                format!(
                    "suspended: applied revision {}, latest {latest}; nothing is applied while spec.suspend is true",
                    applied.as_ref().map_or("none".to_string(), Revision::to_string)
                ),
            ),
        };
        Err(End::at(state, self.interval))
    }

    /// Step 2b (a new revision only): every GitSync of `spec.dependsOn`
    /// Ready at its latest revision. The applied revision is still re-applied.
    async fn dependencies(&self, latest: &Revision) -> Result<(), End> {
        let state = match depends::not_ready(&self.ctx.client, self.gs).await {
            Ok(None) => return Ok(()),
            Ok(Some(NotReady::Waiting(which))) => State::DependencyNotReady(
                format!(
                    "revision {latest} waits for its dependencies to be Ready at their latest revision: {}",
                    which.join("; ")
                ),
                false,
            ),
            Ok(Some(NotReady::Cycle(chain))) => State::DependencyNotReady(
                format!("dependency cycle: {chain}; nothing new is applied until spec.dependsOn breaks it"),
                true,
            ),
            Err(e) => {
                return Err(End {
                    state: State::Failed(
                        reason::DEPENDENCY_NOT_READY,
                        format!("reading spec.dependsOn: {e}"),
                    ),
                    requeue: DEPENDENCY_RECHECK,
                    error: Some(Box::new(e.into())),
                })
            }
        };
        self.heal_last_applied().await;
        Err(End::at(state, DEPENDENCY_RECHECK))
    }

    /// Step 3: a new revision that already failed, with nothing changed
    /// since (no new remote check): keep the last good revision's objects
    /// as applied, and the status (with its file:line reason) as it is.
    async fn known_failure(
        &self,
        latest: &Revision,
        is_new: bool,
        checked_now: bool,
    ) -> Result<(), End> {
        let failed_before = self
            .ctx
            .with(self.key, |t| t.failed.as_ref() == Some(latest));
        if is_new && failed_before && !checked_now {
            self.heal_last_applied().await;
            return Err(End::at(State::Unchanged, self.interval));
        }
        Ok(())
    }

    /// A new revision is attempted: recorded, and the first attempt says so
    /// (a commit status goes pending).
    fn attempting(&mut self, revision: &Revision) {
        let latest = revision.to_string();
        if self.old.last_attempted_revision.as_ref() != Some(&latest) {
            let message = format!("revision {latest}: new revision, applying");
            self.ctx.notify(
                self.gs,
                NotifyEvent::SyncStarted,
                Some(&latest),
                &message,
                None,
            );
        }
        self.status.last_attempted_revision = Some(latest);
    }

    /// Step 4, render: the revision's objects (rendered once per revision
    /// and options).
    async fn render(
        &mut self,
        revision: &Revision,
        is_new: bool,
    ) -> Result<Arc<Vec<Manifest>>, End> {
        match self
            .ctx
            .manifests(
                self.key,
                &self.dir,
                &revision.sha,
                self.gs,
                self.cluster(),
                self.timeout,
            )
            .await
        {
            Ok(m) => Ok(m),
            Err(f) => Err(self.refused(revision, f.reason, &f.error, is_new).await),
        }
    }

    /// Step 5, apply: atomically when the revision is new (dry-run first),
    /// as a plain re-apply (self-heal) when it is the applied one.
    async fn apply(
        &mut self,
        revision: &Revision,
        manifests: &[Manifest],
        is_new: bool,
    ) -> Result<Vec<Applied>, End> {
        let target = self
            .target
            .clone()
            .map_err(|why| End::at(State::Stalled(reason::APPLY_REFUSED, why), self.interval))?;
        match rollout::apply(
            &target.client,
            &target.cluster.kinds,
            manifests,
            &self.owner,
            is_new,
            self.timeout,
        )
        .await
        {
            Ok(applied) => {
                for a in &applied {
                    target.cluster.watches.ensure(&a.planned.resource);
                }
                Ok(applied)
            }
            Err(ApplyError::Manifest(e)) => Err(self
                .refused(revision, reason::INVALID_MANIFESTS, &e, is_new)
                .await),
            Err(ApplyError::Refused(e)) => Err(self
                .refused(revision, reason::APPLY_REFUSED, &e, is_new)
                .await),
            Err(ApplyError::Kube(e)) => Err(End {
                state: State::Failed(
                    reason::APPLY_FAILED,
                    format!("revision {revision}{}: {e}", target.cluster.on),
                ),
                requeue: self.interval,
                error: Some(Box::new(e.into())),
            }),
        }
    }

    /// A revision the pipeline refused: Stalled with the reason (file:line),
    /// for as long as it is the latest; nothing applied or pruned. The last
    /// applied revision stays the desired state.
    async fn refused(
        &mut self,
        revision: &Revision,
        why: &'static str,
        e: &ManifestError,
        is_new: bool,
    ) -> End {
        let first = self.ctx.with(self.key, |t| {
            t.failed.replace(revision.clone()).as_ref() != Some(revision)
        });
        let message = format!("revision {revision}: {e}; nothing was applied or pruned");
        warn!(gitsync = %self.key, %message, "revision refused");
        if first {
            self.ctx.notify(
                self.gs,
                NotifyEvent::SyncFailed,
                Some(&revision.to_string()),
                &message,
                None,
            );
        }
        // The applied revision itself may no longer apply (e.g. a CRD was
        // removed): still stalled, and said so.
        self.status.last_attempted_revision = Some(revision.to_string());
        if is_new {
            self.heal_last_applied().await;
        }
        End::at(State::Stalled(why, message), self.interval)
    }

    /// Step 6, report: Events and notifications for a new revision, or for
    /// drift put back by a re-apply.
    async fn report(&mut self, revision: &Revision, applied: &[Applied], is_new: bool) {
        let latest = revision.to_string();
        self.ctx.with(self.key, |t| {
            t.failed = None;
            if is_new || t.applied_at.as_ref().map(|(r, _)| r) != Some(revision) {
                t.applied_at = Some((revision.clone(), Instant::now()));
            }
        });
        if is_new {
            self.status.last_applied_revision = Some(latest.clone());
            info!(gitsync = %self.key, revision = %latest, objects = applied.len(), "applied");
            let message = format!("applied revision {latest}: {} objects", applied.len());
            self.ctx.notify(
                self.gs,
                NotifyEvent::SyncApplied,
                Some(&latest),
                &message,
                None,
            );
            // The Applied Event (with the change set) follows prune: see record.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            self.ctx
                .shared
                .metrics
                .git_applied(&self.owner.namespace, &self.owner.name, now);
            self.history_rewrite(revision).await;
            return;
        }
        // A re-apply of the applied revision that had to write put drift back.
        let corrected: Vec<String> = applied
            .iter()
            .filter(|a| a.changed())
            .map(|a| a.planned.entry.to_string())
            .collect();
        if !corrected.is_empty() {
            info!(gitsync = %self.key, objects = ?corrected, "drift corrected");
            let note = format!(
                "put back what changed outside Git: {}",
                corrected.join(", ")
            );
            publish(self.ctx, self.gs, EventType::Normal, "DriftCorrected", note).await;
        }
    }

    /// Part of report: a new revision of the same branch or tag whose
    /// history no longer contains the applied commit (a force-push). Git is
    /// the truth, so it was applied; a Warning Event and
    /// `status.lastHistoryRewrite` say that history was rewritten.
    async fn history_rewrite(&mut self, revision: &Revision) {
        let Some(old) = &self.applied else {
            return;
        };
        if old.name.is_empty() || old.name != revision.name || old.sha == revision.sha {
            return; // a pinned commit, or another ref: the spec changed, not history
        }
        let (dir, from, to) = (self.dir.clone(), old.sha.clone(), revision.sha.clone());
        let rewritten = tokio::task::spawn_blocking(move || source::rewritten(&dir, &from, &to))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        match rewritten {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                warn!(gitsync = %self.key, error = %e, "cannot tell whether history was rewritten");
                return;
            }
        }
        let note = format!(
            "history of {} was rewritten (force-push): applied {old} is not an ancestor of {revision}; applied {revision} (Git is the truth)",
            revision.name
        );
        warn!(gitsync = %self.key, %note, "history rewritten");
        self.status.last_history_rewrite = Some(HistoryRewrite {
            from: old.to_string(),
            to: revision.to_string(),
            at: Time(k8s_openapi::jiff::Timestamp::now()),
        });
        publish(
            self.ctx,
            self.gs,
            EventType::Warning,
            reason::HISTORY_REWRITTEN,
            note,
        )
        .await;
    }

    /// Step 7, prune: what the previous inventory has and this revision
    /// does not. Returns what is still being deleted; records the inventory.
    async fn prune(&mut self, applied: &[Applied]) -> Result<Vec<InventoryEntry>, End> {
        let entries: BTreeSet<InventoryEntry> =
            applied.iter().map(|a| a.planned.entry.clone()).collect();
        let stale: Vec<InventoryEntry> = self
            .old
            .inventory
            .iter()
            .filter(|e| !entries.contains(*e))
            .cloned()
            .collect();
        let mut pending = Vec::new();
        if self.gs.spec.prune && !stale.is_empty() {
            let target = self.target.clone().map_err(|why| {
                End::at(State::Stalled(reason::APPLY_REFUSED, why), self.interval)
            })?;
            let pruned = prune::prune(&target.client, &target.cluster.kinds, &stale, &self.owner)
                .await
                .map_err(|e| End {
                    state: State::Failed(
                        reason::APPLY_FAILED,
                        format!("pruning{}: {e}", target.cluster.on),
                    ),
                    requeue: self.interval,
                    error: Some(Box::new(e.into())),
                })?;
            let newly: Vec<String> = pruned
                .deleted
                .iter()
                .chain(pruned.pending.iter())
                .filter(|e| !was_deleting(&self.old, e))
                .map(ToString::to_string)
                .collect();
            self.pruned_now = pruned
                .deleted
                .iter()
                .chain(pruned.pending.iter())
                .filter(|e| !was_deleting(&self.old, e))
                .cloned()
                .collect();
            if !newly.is_empty() {
                info!(gitsync = %self.key, objects = ?newly, "pruned");
                let note = format!("deleted (gone from Git): {}", newly.join(", "));
                publish(self.ctx, self.gs, EventType::Normal, "Pruned", note).await;
            }
            for (e, why) in &pruned.kept {
                info!(gitsync = %self.key, object = %e, why, "not pruned");
            }
            pending = pruned.pending;
        }
        let mut inventory: Vec<InventoryEntry> =
            entries.into_iter().chain(pending.iter().cloned()).collect();
        inventory.sort();
        inventory.dedup();
        self.status.inventory = inventory;
        Ok(pending)
    }

    /// Step 7b, record (a new revision only): its change set, as the first
    /// entry of `status.history` and as the Applied Event.
    async fn record(&mut self, revision: &Revision, applied: &[Applied]) {
        let of = |c: Change| -> Vec<String> {
            applied
                .iter()
                .filter(|a| a.change == c)
                .map(|a| a.planned.entry.to_string())
                .collect()
        };
        let (created, configured) = (of(Change::Created), of(Change::Configured));
        let unchanged = applied.len() - created.len() - configured.len();
        let pruned: Vec<String> = self.pruned_now.iter().map(ToString::to_string).collect();
        let took = self.started.0.elapsed();
        let took = Duration::from_millis(took.as_millis() as u64);
        let entry = HistoryEntry {
            revision: revision.to_string(),
            started_at: self.started.1.clone(),
            duration: humantime::format_duration(took).to_string(),
            result: reason::PROGRESSING.into(),
            created: created.len() as u32,
            configured: configured.len() as u32,
            unchanged: unchanged as u32,
            pruned: pruned.len() as u32,
        };
        let history = &mut self.status.history;
        history.insert(0, entry);
        history.truncate(HISTORY_LIMIT);
        let changes = format!(
            "{}, {}, {unchanged} unchanged, {}",
            change_list("created", &created),
            change_list("configured", &configured),
            change_list("pruned", &pruned),
        );
        let note = format!(
            "applied revision {revision}{} in {}: {changes}",
            self.cluster().on,
            humantime::format_duration(took),
        );
        self.ctx
            .with(self.key, |t| t.changes = Some((revision.clone(), changes)));
        publish(self.ctx, self.gs, EventType::Normal, reason::APPLIED, note).await;
    }

    /// Step 8, health: of everything applied, and of what is being pruned.
    fn health(&self, revision: &Revision, applied: &[Applied], pending: &[InventoryEntry]) -> End {
        let mut waiting: Vec<String> = applied
            .iter()
            // A GitSync that applies itself (`driftless bootstrap`) is not
            // Ready while this pass runs: waiting on it would never end.
            .filter(|a| !self.owner.is(&a.planned.entry))
            .filter_map(|a| {
                health::not_ready(&a.live, self.ctx.settings.health_check_workloads)
                    .map(|why| format!("{} ({why})", a.planned.entry))
            })
            .collect();
        waiting.extend(pending.iter().map(|e| format!("{e} (being deleted)")));
        if waiting.is_empty() {
            return End::at(
                State::Ready(format!("applied revision {revision}{}", self.cluster().on)),
                self.interval,
            );
        }
        let list = waiting.join(", ");
        let since = self.ctx.with(self.key, |t| {
            t.applied_at.as_ref().map(|(_, at)| at.elapsed())
        });
        let state = if since.is_some_and(|s| s > self.timeout) {
            State::HealthCheckFailed(format!(
                "revision {revision}: not ready after {}: {list}",
                humantime::format_duration(self.timeout)
            ))
        } else {
            State::Progressing(format!("revision {revision}: waiting for {list}"))
        };
        End::at(state, HEALTH_RECHECK.min(self.interval))
    }

    /// Deletion: `None` once nothing of the inventory is left to wait for,
    /// else what is. Deletes and label removals go through the GitSync's
    /// identity, as prune does.
    async fn delete(&mut self) -> Result<Option<String>, End> {
        let inventory = self.old.inventory.clone();
        if inventory.is_empty() {
            return Ok(None); // never applied anything (e.g. never fetched)
        }
        let failed = |why: String| {
            End::at(
                State::Failed(reason::DELETION_FAILED, why),
                DELETION_RECHECK,
            )
        };
        let target = self
            .target
            .clone()
            .map_err(|why| failed(format!("cannot delete its inventory: {why}")))?;
        let (tenant, kinds) = (&target.client, &target.cluster.kinds);
        let (deleted, pending, keep) = if self.gs.spec.prune {
            let pruned = prune::prune(tenant, kinds, &inventory, &self.owner)
                .await
                .map_err(|e| failed(format!("deleting its inventory: {e}")))?;
            let keep: Vec<InventoryEntry> = pruned.kept.into_iter().map(|(e, _)| e).collect();
            (pruned.deleted, pruned.pending, keep)
        } else {
            (Vec::new(), Vec::new(), inventory)
        };
        let orphaned = finalize::orphan(tenant, kinds, &keep, &self.owner)
            .await
            .map_err(|e| failed(format!("removing the owner labels from its inventory: {e}")))?;
        if !orphaned.is_empty() {
            let why = if self.gs.spec.prune {
                "annotated driftless.dev/prune: disabled"
            } else {
                "spec.prune is false"
            };
            let names: Vec<String> = orphaned.iter().map(ToString::to_string).collect();
            let note = format!(
                "kept ({why}), without the owner labels: {}",
                change_list("objects", &names)
            );
            publish(self.ctx, self.gs, EventType::Normal, reason::ORPHANED, note).await;
        }
        if pending.is_empty() {
            if !deleted.is_empty() {
                let names: Vec<String> = deleted.iter().map(ToString::to_string).collect();
                let note = format!("deleted its inventory: {}", change_list("objects", &names));
                publish(self.ctx, self.gs, EventType::Normal, reason::DELETED, note).await;
            }
            return Ok(None);
        }
        let waiting = finalize::waiting_on(tenant, kinds, &pending).await;
        let mut left = pending;
        left.sort();
        self.status.inventory = left;
        Ok(Some(waiting))
    }

    /// While the latest revision is refused, the last applied one stays the
    /// desired state: re-apply it (self-heal), without dry-run or prune.
    async fn heal_last_applied(&self) {
        let Some(applied) = &self.applied else {
            return;
        };
        let manifests = match self
            .ctx
            .manifests(
                self.key,
                &self.dir,
                &applied.sha,
                self.gs,
                self.cluster(),
                self.timeout,
            )
            .await
        {
            Ok(m) => m,
            Err(f) => {
                warn!(gitsync = %self.key, error = %f.error, "cannot re-read the last applied revision");
                return;
            }
        };
        let Ok(target) = self.target.clone() else {
            return;
        };
        match rollout::apply(
            &target.client,
            &target.cluster.kinds,
            &manifests,
            &self.owner,
            false,
            DEFAULT_TIMEOUT,
        )
        .await
        {
            Ok(applied) => {
                for a in &applied {
                    target.cluster.watches.ensure(&a.planned.resource);
                }
            }
            Err(e) => {
                warn!(gitsync = %self.key, error = %e, "re-applying the last applied revision failed")
            }
        }
    }

    /// The one status write of the pass: the conditions for `state`, and a
    /// Warning Event when a failure is new (not on every retry).
    async fn finish(&mut self, state: &State) -> Result<(), kube::Error> {
        set_state(&mut self.status, self.gs.meta().generation, state);
        let settled = settle_history(&mut self.status, state);
        let mut notes = settled.and_then(|r| self.settled_note(r, state));
        let warning = match state {
            State::Stalled(reason, m) | State::Failed(reason, m) => Some((*reason, m)),
            State::HealthCheckFailed(m) => Some((reason::HEALTH_CHECK_FAILED, m)),
            _ => None,
        };
        if let Some((reason, message)) = warning {
            if ready_of(&self.old) != Some((reason, message.as_str())) {
                notes = notes.or_else(|| self.error_note(reason, message));
                publish(
                    self.ctx,
                    self.gs,
                    EventType::Warning,
                    reason,
                    message.clone(),
                )
                .await;
            }
        }
        // Said once the status holds it (a failed write repeats the pass).
        let say = |ctx: &Context, note: Option<Note>| {
            if let Some((event, revision, message, changes)) = note {
                ctx.notify(self.gs, event, revision.as_deref(), &message, changes);
            }
        };
        if self.gs.status.as_ref() == Some(&self.status) {
            say(self.ctx, notes);
            return Ok(());
        }
        // Apply, not merge: fields we no longer set (an emptied inventory) go.
        let patch = json!({
            "apiVersion": "driftless.dev/v1alpha1",
            "kind": "GitSync",
            "status": self.status,
        });
        let api: Api<GitSync> = Api::namespaced(self.ctx.client.clone(), &self.owner.namespace);
        api.patch_status(
            &self.owner.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        say(self.ctx, notes);
        self.wake_dependents(state).await;
        Ok(())
    }

    /// The newest revision's result settled (`result`): ready (a commit
    /// status goes success, with the change set), or not ready in time.
    fn settled_note(&self, result: &str, state: &State) -> Option<Note> {
        let revision = self.status.last_applied_revision.clone()?;
        if result != reason::SUCCEEDED {
            let State::HealthCheckFailed(m) = state else {
                return None;
            };
            return Some((NotifyEvent::SyncFailed, Some(revision), m.clone(), None));
        }
        let parsed = Revision::parse(&revision);
        let changes = self.ctx.with(self.key, |t| {
            t.changes
                .as_ref()
                .filter(|(r, _)| Some(r) == parsed.as_ref())
                .map(|(_, c)| c.clone())
        });
        let changes = changes.or_else(|| {
            let h = self.status.history.first()?;
            Some(format!(
                "{} created, {} configured, {} unchanged, {} pruned",
                h.created, h.configured, h.unchanged, h.pruned
            ))
        });
        let message = format!("revision {revision}: applied, and every object is ready");
        Some((NotifyEvent::SyncReady, Some(revision), message, changes))
    }

    /// A new fetch or apply failure. An apply failure is the attempted
    /// revision's (a commit status goes error) unless that revision is the
    /// applied one, whose result is already settled.
    fn error_note(&self, why: &str, message: &str) -> Option<Note> {
        let revision = match why {
            reason::FETCH_FAILED => None,
            reason::APPLY_FAILED => self
                .status
                .last_attempted_revision
                .clone()
                .filter(|r| Some(r) != self.status.last_applied_revision.as_ref()),
            _ => return None,
        };
        Some((NotifyEvent::SyncError, revision, message.to_string(), None))
    }

    /// Newly Ready (or Ready at a new revision): the GitSyncs waiting for
    /// this one look again now, not at their next recheck.
    async fn wake_dependents(&self, state: &State) {
        let was_ready = self
            .old
            .conditions
            .iter()
            .any(|c| c.type_ == READY && c.status == "True");
        let moved = self.old.last_applied_revision != self.status.last_applied_revision;
        if !matches!(state, State::Ready(_)) || (was_ready && !moved) {
            return;
        }
        let scope = self.ctx.settings.namespace.as_deref();
        match depends::dependents(&self.ctx.client, scope, self.gs).await {
            Ok(them) => {
                for (ns, name) in them {
                    self.ctx.local.watches.trigger(&ns, &name);
                }
            }
            Err(e) => {
                warn!(gitsync = %self.key, error = %e, "cannot list the GitSyncs that depend on it")
            }
        }
    }
}

fn set_state(status: &mut GitSyncStatus, generation: Option<i64>, state: &State) {
    let conds = &mut status.conditions;
    let (ready, reason, message, reconciling, stalled) = match state {
        State::Unchanged => return,
        State::Suspended => {
            let suspended = Cond::new(RECONCILING, false, reason::SUSPENDED, "");
            conditions::set(conds, &suspended, generation);
            return;
        }
        State::Ready(m) => (true, reason::SUCCEEDED, m, false, false),
        State::Progressing(m) => (false, reason::PROGRESSING, m, true, false),
        State::Stalled(r, m) => (false, *r, m, false, true),
        State::Failed(r, m) => (false, *r, m, false, false),
        State::HealthCheckFailed(m) => (false, reason::HEALTH_CHECK_FAILED, m, false, false),
        State::Deleting(m) => (false, reason::DELETING, m, true, false),
        State::DependencyNotReady(m, cycle) => {
            (false, reason::DEPENDENCY_NOT_READY, m, false, *cycle)
        }
    };
    let msg = |on: bool| if on { message.clone() } else { String::new() };
    for cond in [
        Cond::new(READY, ready, reason, message.clone()),
        Cond::new(RECONCILING, reconciling, reason, msg(reconciling)),
        Cond::new(STALLED, stalled, reason, msg(stalled)),
    ] {
        conditions::set(conds, &cond, generation);
    }
}

/// The newest history entry's result, once its revision's objects are
/// ready (or the health check gave up); it is not changed after that.
/// Returns that result when it was settled now.
fn settle_history(status: &mut GitSyncStatus, state: &State) -> Option<&'static str> {
    let result = match state {
        State::Ready(_) => reason::SUCCEEDED,
        State::HealthCheckFailed(_) => reason::HEALTH_CHECK_FAILED,
        _ => return None,
    };
    let applied = status.last_applied_revision.clone();
    let newest = status.history.first_mut()?;
    if newest.result == reason::PROGRESSING && Some(&newest.revision) == applied.as_ref() {
        newest.result = result.into();
        return Some(result);
    }
    None
}

/// A notification to send: what, at which revision, the message, the
/// change set.
type Note = (NotifyEvent, Option<String>, String, Option<String>);

/// `3 created (ConfigMap a/b, ...)`: bounded, so that an Event stays short.
fn change_list(what: &str, entries: &[String]) -> String {
    const NAMED: usize = 5;
    if entries.is_empty() {
        return format!("0 {what}");
    }
    let mut shown = entries
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if entries.len() > NAMED {
        shown.push_str(&format!(", and {} more", entries.len() - NAMED));
    }
    format!("{} {what} ({shown})", entries.len())
}

/// The Ready condition's reason and message.
fn ready_of(status: &GitSyncStatus) -> Option<(&str, &str)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| (c.reason.as_str(), c.message.as_str()))
}

/// Whether `e` was already being deleted at the last pass (so that the
/// Pruned event is sent once).
fn was_deleting(old: &GitSyncStatus, e: &InventoryEntry) -> bool {
    old.conditions
        .iter()
        .any(|c| c.type_ == READY && c.message.contains(&format!("{e} (being deleted)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_list_names_five_and_counts_the_rest() {
        assert_eq!(change_list("pruned", &[]), "0 pruned");
        let seven: Vec<String> = (1..=7).map(|i| format!("ConfigMap a/{i}")).collect();
        assert_eq!(
            change_list("created", &seven),
            "7 created (ConfigMap a/1, ConfigMap a/2, ConfigMap a/3, ConfigMap a/4, ConfigMap a/5, and 2 more)"
        );
    }

    #[test]
    fn the_newest_history_entry_settles_once() {
        let entry = |revision: &str, result: &str| HistoryEntry {
            revision: revision.into(),
            started_at: Time(k8s_openapi::jiff::Timestamp::now()),
            duration: "1s".into(),
            result: result.into(),
            created: 0,
            configured: 0,
            unchanged: 0,
            pruned: 0,
        };
        let mut status = GitSyncStatus {
            last_applied_revision: Some("main@sha1:b".into()),
            history: vec![entry("main@sha1:b", reason::PROGRESSING)],
            ..Default::default()
        };
        let settled = settle_history(&mut status, &State::Progressing("waiting".into()));
        assert_eq!(
            (status.history[0].result.as_str(), settled),
            (reason::PROGRESSING, None)
        );
        let settled = settle_history(&mut status, &State::Ready("applied".into()));
        assert_eq!(settled, Some(reason::SUCCEEDED));
        assert_eq!(status.history[0].result, reason::SUCCEEDED);
        // A later health failure of the same revision is not the apply's result
        // (nor a second notification).
        let settled = settle_history(&mut status, &State::HealthCheckFailed("not ready".into()));
        assert_eq!(
            (status.history[0].result.as_str(), settled),
            (reason::SUCCEEDED, None)
        );
    }
}
