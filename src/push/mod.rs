//! Push mode: `driftless plan | apply | get` straight against the cloud, no
//! cluster. The same provider code as the controller; no state file: a stack's
//! resources are found by their tags (`driftless.dev/stack`, owner, kind).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use driftless_provider::{
    CallCounter, CloudError, ConfigSource, Connector, Deletion, DeletionPolicy, External,
    FieldDiff, Identity, KindVisitor, ManagedKind, ManagementPolicy, Observation, Owned, RefSource,
    Reference, References, Target, EXTERNAL_NAME, PAUSED, TAG_STACK,
};
use futures::StreamExt;
use kube::ResourceExt;

use crate::managed::decide::{decide, Decision};
use crate::manifests::{namespace_or_default, reference_targets, Manifest};
use crate::registry::Providers;

/// How push mode runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub stack: String,
    /// Resources worked on at once (independent ones only).
    pub concurrency: usize,
    /// How long one resource may take to become ready.
    pub timeout: Duration,
}

/// `Kind namespace/name`: what an object is, in the manifests and in tags.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What `plan` found for one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Absent: will be created (after the listed objects, when some are new too).
    Create { after: Vec<Key> },
    /// Differs from the manifests in these fields.
    Update(Vec<FieldDiff>),
    /// Up to date.
    Unchanged,
    /// Not looked at: paused, or only observed.
    Skipped(String),
    /// In the stack's tags but no longer in the manifests (`--prune`).
    Delete { external_name: String, orphan: bool },
}

/// A step, and the resource's id when it exists (dependents need it).
type Planned = (Step, Option<String>);

/// One managed object of the manifests, whatever its kind.
#[async_trait]
trait Unit: Send + Sync {
    fn key(&self) -> &Key;
    fn references(&self) -> Vec<Reference>;
    /// Compares the cloud with the manifest; never changes anything. Also
    /// returns the resource's id when it exists (dependents need it).
    async fn plan(&self, resolved: &BTreeMap<String, String>) -> Result<Planned, CloudError>;
    /// Makes the cloud match and waits until it is ready; returns its id and
    /// what was done.
    async fn apply(
        &self,
        resolved: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(String, &'static str), CloudError>;
}

/// The stack's resources of one kind, as the cloud lists them.
#[async_trait]
trait KindLister: Send + Sync {
    async fn list(&self, stack: &str) -> Result<Vec<(Identity, Owned)>, CloudError>;
    async fn delete(
        &self,
        identity: &Identity,
        external_name: &str,
    ) -> Result<Deletion, CloudError>;
}

struct ManagedUnit<K: ManagedKind> {
    key: Key,
    obj: K,
    identity: Identity,
    connector: Arc<dyn Connector<K>>,
}

impl<K: ManagedKind> ManagedUnit<K> {
    async fn external(&self) -> Result<Arc<dyn External<K>>, CloudError> {
        let pc = &self.obj.managed().provider_config_ref.name;
        self.connector
            .connect(&ConfigSource::Environment, pc, self.obj.for_provider())
            .await
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.obj.annotations().get(key).map(String::as_str)
    }

    fn target<'a>(
        &'a self,
        external_name: Option<&'a str>,
        resolved: &'a BTreeMap<String, String>,
    ) -> Target<'a, K> {
        Target {
            identity: &self.identity,
            external_name,
            // No annotation to mark a create in flight: identity is the tags.
            create_pending: false,
            spec: self.obj.for_provider(),
            resolved,
        }
    }

    fn skipped(&self) -> Option<String> {
        if self.annotation(PAUSED) == Some("true") {
            return Some(format!("paused ({PAUSED})"));
        }
        None
    }

    /// Re-observes until the resource is ready, or `timeout`.
    async fn wait_ready(
        &self,
        external: &dyn External<K>,
        external_name: &str,
        resolved: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(), CloudError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            let obs = external
                .observe(&self.target(Some(external_name), resolved))
                .await?;
            if obs.exists && obs.ready {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(CloudError::retryable(
                    "Timeout",
                    format!("{external_name} is not ready after {} s", timeout.as_secs()),
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(3));
        }
    }
}

fn id_of<K: ManagedKind>(obs: &Observation<K>, given: Option<&str>, identity: &Identity) -> String {
    obs.external_name
        .clone()
        .or_else(|| given.map(str::to_string))
        .unwrap_or_else(|| identity.name.clone())
}

#[async_trait]
impl<K: ManagedKind> Unit for ManagedUnit<K> {
    fn key(&self) -> &Key {
        &self.key
    }

    fn references(&self) -> Vec<Reference> {
        self.obj.for_provider().references()
    }

    async fn plan(&self, resolved: &BTreeMap<String, String>) -> Result<Planned, CloudError> {
        let given = self.annotation(EXTERNAL_NAME);
        if let Some(why) = self.skipped() {
            return Ok((Step::Skipped(why), given.map(str::to_string)));
        }
        let external = self.external().await?;
        let obs = external.observe(&self.target(given, resolved)).await?;
        let id = obs.exists.then(|| id_of(&obs, given, &self.identity));
        let step = match decide::<K>(&obs, self.obj.managed(), given) {
            Decision::Create => Step::Create { after: Vec::new() },
            Decision::Missing(e) | Decision::Immutable(e) => return Err(e),
            Decision::Update => Step::Update(obs.diff.iter().map(FieldDiff::erase).collect()),
            Decision::Observe if !self.obj.managed().allows(ManagementPolicy::Update) => {
                Step::Skipped("observed only (managementPolicies)".into())
            }
            Decision::Observe => Step::Unchanged,
        };
        Ok((step, id))
    }

    async fn apply(
        &self,
        resolved: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(String, &'static str), CloudError> {
        let given = self.annotation(EXTERNAL_NAME);
        if self.skipped().is_some() {
            // A paused object is not touched, but its id still serves references.
            return Ok((given.unwrap_or(&self.identity.name).to_string(), "paused"));
        }
        let external = self.external().await?;
        let obs = external.observe(&self.target(given, resolved)).await?;
        let (id, done) = match decide::<K>(&obs, self.obj.managed(), given) {
            Decision::Create => {
                let created = external.create(&self.target(given, resolved)).await?;
                (created.external_name, "created")
            }
            Decision::Missing(e) | Decision::Immutable(e) => return Err(e),
            Decision::Update => {
                let id = id_of(&obs, given, &self.identity);
                external
                    .update(&self.target(Some(&id), resolved), &obs)
                    .await?;
                (id, "updated")
            }
            Decision::Observe if !self.obj.managed().allows(ManagementPolicy::Update) => {
                return Ok((id_of(&obs, given, &self.identity), "observed"));
            }
            Decision::Observe => (id_of(&obs, given, &self.identity), "unchanged"),
        };
        self.wait_ready(external.as_ref(), &id, resolved, timeout)
            .await?;
        Ok((id, done))
    }
}

struct Lister<K: ManagedKind> {
    connector: Arc<dyn Connector<K>>,
}

impl<K: ManagedKind> Lister<K> {
    async fn external(&self) -> Result<Arc<dyn External<K>>, CloudError> {
        self.connector
            .connect(
                &ConfigSource::Environment,
                "default",
                &K::ForProvider::default(),
            )
            .await
    }
}

#[async_trait]
impl<K: ManagedKind> KindLister for Lister<K> {
    async fn list(&self, stack: &str) -> Result<Vec<(Identity, Owned)>, CloudError> {
        let kind = K::kind(&());
        Ok(self
            .external()
            .await?
            .list_owned()
            .await?
            .into_iter()
            .filter(|o| o.tags.get(TAG_STACK).map(String::as_str) == Some(stack))
            .filter_map(|o| Identity::from_stack_tags(&o.tags).map(|id| (id, o)))
            .filter(|(id, _)| id.kind == kind)
            .collect())
    }

    async fn delete(
        &self,
        identity: &Identity,
        external_name: &str,
    ) -> Result<Deletion, CloudError> {
        let spec = K::ForProvider::default();
        let resolved = BTreeMap::new();
        let target = Target::<K> {
            identity,
            external_name: Some(external_name),
            create_pending: false,
            spec: &spec,
            resolved: &resolved,
        };
        self.external().await?.delete(&target).await
    }
}

/// The manifests' managed objects and every kind's lister, built by visiting
/// the provider's kinds.
struct Collect<'a> {
    manifests: &'a [Manifest],
    stack: &'a str,
    units: Vec<Arc<dyn Unit>>,
    listers: Vec<Arc<dyn KindLister>>,
    errors: Vec<String>,
}

impl KindVisitor for Collect<'_> {
    fn visit<K: ManagedKind>(&mut self, connector: Arc<dyn Connector<K>>) {
        let api_version = K::api_version(&()).to_string();
        let kind = K::kind(&()).to_string();
        self.listers.push(Arc::new(Lister::<K> {
            connector: connector.clone(),
        }));
        for m in self
            .manifests
            .iter()
            .filter(|m| m.api_version() == api_version && m.kind() == kind)
        {
            let obj: K = match serde_json::from_value(m.value.clone()) {
                Ok(obj) => obj,
                Err(e) => {
                    self.errors
                        .push(format!("{}: {}: {e}", m.origin, m.describe()));
                    continue;
                }
            };
            let namespace = namespace_or_default(m).to_string();
            let name = obj.name_any();
            let identity = Identity {
                stack: Some(self.stack.to_string()),
                orphan_on_prune: obj.managed().deletion_policy == DeletionPolicy::Orphan,
                ..Identity::new(&kind, &namespace, &name)
            };
            self.units.push(Arc::new(ManagedUnit {
                key: Key {
                    kind: kind.clone(),
                    namespace,
                    name,
                },
                obj,
                identity,
                connector: connector.clone(),
            }));
        }
    }
}

/// The managed objects of a manifest set, in dependency order.
pub struct Stack {
    options: Options,
    /// Every cloud API call the stack's clients made.
    calls: Arc<CallCounter>,
    units: Vec<Arc<dyn Unit>>,
    listers: Vec<Arc<dyn KindLister>>,
    /// For each unit (by index), the units its references point at.
    depends_on: Vec<Vec<usize>>,
    /// For each unit, for each of its references, the units it points at.
    ref_targets: Vec<Vec<Vec<usize>>>,
    /// Units grouped in waves: each wave depends only on earlier ones.
    waves: Vec<Vec<usize>>,
}

impl Stack {
    /// Builds the stack from validated manifests; errors name the object.
    pub fn new(manifests: &[Manifest], options: Options) -> Result<Self, Vec<String>> {
        let mut collect = Collect {
            manifests,
            stack: &options.stack,
            units: Vec::new(),
            listers: Vec::new(),
            errors: Vec::new(),
        };
        let calls = Arc::new(CallCounter::default());
        Providers::new(calls.clone()).visit(&mut collect);
        let Collect {
            units,
            listers,
            mut errors,
            ..
        } = collect;
        let index: HashMap<Key, usize> = units
            .iter()
            .enumerate()
            .map(|(i, u)| (u.key().clone(), i))
            .collect();
        let mut depends_on = Vec::new();
        let mut ref_targets = Vec::new();
        for u in &units {
            let mut per_ref = Vec::new();
            for r in u.references() {
                match reference_targets(&r, &u.key().namespace, manifests) {
                    Ok(targets) => per_ref.push(
                        targets
                            .iter()
                            .filter_map(|t| {
                                index
                                    .get(&Key {
                                        kind: t.kind().to_string(),
                                        namespace: namespace_or_default(t).to_string(),
                                        name: t.name().to_string(),
                                    })
                                    .copied()
                            })
                            .collect::<Vec<_>>(),
                    ),
                    Err(e) => {
                        errors.push(format!("{}: {e}", u.key()));
                        per_ref.push(Vec::new());
                    }
                }
            }
            let deps: BTreeSet<usize> = per_ref.iter().flatten().copied().collect();
            depends_on.push(deps.into_iter().collect::<Vec<_>>());
            ref_targets.push(per_ref);
        }
        let waves = waves(&depends_on).map_err(|cycle| {
            vec![format!(
                "references form a cycle: {}",
                cycle
                    .iter()
                    .map(|&i| units[i].key().to_string())
                    .collect::<Vec<_>>()
                    .join(" -> ")
            )]
        })?;
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            options,
            calls,
            units,
            listers,
            depends_on,
            ref_targets,
            waves,
        })
    }

    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Cloud API calls made so far (what `plan` and `apply` report).
    pub fn cloud_calls(&self) -> u64 {
        self.calls.total()
    }

    /// The kinds of the stack's objects.
    pub fn kinds(&self) -> BTreeSet<String> {
        self.units.iter().map(|u| u.key().kind.clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// The ids of `unit`'s references, from the ids found so far; `None`
    /// while a target has no id yet.
    fn resolve(
        &self,
        unit: usize,
        ids: &HashMap<usize, String>,
    ) -> Option<BTreeMap<String, String>> {
        let u = &self.units[unit];
        let mut resolved = BTreeMap::new();
        for (r, targets) in u.references().iter().zip(&self.ref_targets[unit]) {
            let value = match &r.source {
                RefSource::Id(id) => id.clone(),
                RefSource::Ids(list) => list.join(","),
                _ => {
                    let targets: Vec<&str> = targets
                        .iter()
                        .map(|d| ids.get(d).map(String::as_str))
                        .collect::<Option<_>>()?;
                    targets.join(",")
                }
            };
            resolved.insert(r.field.to_string(), value);
        }
        Some(resolved)
    }

    /// What `apply` would do, object by object (prune included when asked).
    pub async fn plan(&self, prune: bool) -> Vec<(Key, Result<Step, CloudError>)> {
        let mut ids: HashMap<usize, String> = HashMap::new();
        let mut steps: HashMap<usize, Result<Step, CloudError>> = HashMap::new();
        for wave in &self.waves {
            let ids_so_far = &ids;
            let results: Vec<(usize, Result<Planned, CloudError>)> =
                futures::stream::iter(wave.iter().copied())
                    .map(|i| async move {
                        let Some(resolved) = self.resolve(i, ids_so_far) else {
                            // A target is new, so this cannot exist yet either.
                            let after = self.depends_on[i]
                                .iter()
                                .filter(|d| !ids_so_far.contains_key(d))
                                .map(|&d| self.units[d].key().clone())
                                .collect();
                            return (i, Ok((Step::Create { after }, None)));
                        };
                        (i, self.units[i].plan(&resolved).await)
                    })
                    .buffer_unordered(self.options.concurrency)
                    .collect()
                    .await;
            for (i, result) in results {
                steps.insert(
                    i,
                    result.map(|(step, id)| {
                        if let Some(id) = id {
                            ids.insert(i, id);
                        }
                        step
                    }),
                );
            }
        }
        let mut out: Vec<(Key, Result<Step, CloudError>)> = (0..self.units.len())
            .map(|i| {
                (
                    self.units[i].key().clone(),
                    steps.remove(&i).expect("every unit is planned"),
                )
            })
            .collect();
        if prune {
            match self.prunable().await {
                Ok(list) => out.extend(list.into_iter().map(|(_, id, owned)| {
                    (
                        key_of(&id),
                        Ok(Step::Delete {
                            external_name: owned.external_name,
                            orphan: id.orphan_on_prune,
                        }),
                    )
                })),
                Err(e) => out.push((prune_key(), Err(e))),
            }
        }
        out
    }

    /// Converges the cloud on the manifests, in dependency order, independent
    /// resources in parallel; `progress` hears of every finished object.
    pub async fn apply(
        &self,
        prune: bool,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Vec<(Key, Result<&'static str, CloudError>)> {
        let total = self.units.len();
        let mut ids: HashMap<usize, String> = HashMap::new();
        let mut results: HashMap<usize, Result<&'static str, CloudError>> = HashMap::new();
        let mut done = 0;
        for wave in &self.waves {
            let ids_so_far = &ids;
            let failed_so_far = &results;
            let mut stream = futures::stream::iter(wave.iter().copied())
                .map(|i| async move {
                    let started = Instant::now();
                    let failed: Vec<String> = self.depends_on[i]
                        .iter()
                        .filter(|d| matches!(failed_so_far.get(d), Some(Err(_))))
                        .map(|&d| self.units[d].key().to_string())
                        .collect();
                    if !failed.is_empty() {
                        let e = CloudError::terminal(
                            "DependencyFailed",
                            format!("not applied: {} failed", failed.join(", ")),
                        );
                        return (i, Err(e), started);
                    }
                    let resolved = self
                        .resolve(i, ids_so_far)
                        .expect("earlier waves gave every id");
                    (
                        i,
                        self.units[i].apply(&resolved, self.options.timeout).await,
                        started,
                    )
                })
                .buffer_unordered(self.options.concurrency);
            let mut finished = Vec::new();
            while let Some((i, result, started)) = stream.next().await {
                done += 1;
                progress(Progress {
                    done,
                    total,
                    key: self.units[i].key(),
                    outcome: result
                        .as_ref()
                        .map(|(id, what)| (*what, id.as_str()))
                        .map_err(|e| e.to_string()),
                    elapsed: started.elapsed(),
                });
                finished.push((i, result));
            }
            drop(stream);
            for (i, result) in finished {
                results.insert(
                    i,
                    result.map(|(id, what)| {
                        ids.insert(i, id);
                        what
                    }),
                );
            }
        }
        let mut out: Vec<(Key, Result<&'static str, CloudError>)> = (0..total)
            .map(|i| {
                (
                    self.units[i].key().clone(),
                    results.remove(&i).expect("every unit is applied"),
                )
            })
            .collect();
        // Never prune after a failure: a broken run must not remove what it
        // could not replace.
        if prune {
            if out.iter().any(|(_, r)| r.is_err()) {
                out.push((
                    prune_key(),
                    Err(CloudError::terminal(
                        "PruneSkipped",
                        "not pruned: some objects failed",
                    )),
                ));
            } else {
                out.extend(self.prune().await);
            }
        }
        out
    }

    /// The stack's resources in the cloud that the manifests no longer declare.
    async fn prunable(&self) -> Result<Vec<(Arc<dyn KindLister>, Identity, Owned)>, CloudError> {
        let declared: BTreeSet<Key> = self.units.iter().map(|u| u.key().clone()).collect();
        let mut out = Vec::new();
        for lister in &self.listers {
            for (id, owned) in lister.list(&self.options.stack).await? {
                if !declared.contains(&key_of(&id)) {
                    out.push((lister.clone(), id, owned));
                }
            }
        }
        Ok(out)
    }

    /// Deletes what [`Stack::prunable`] finds, except what says Orphan.
    /// Deletions that wait (a VPC with subnets) are retried while others go.
    async fn prune(&self) -> Vec<(Key, Result<&'static str, CloudError>)> {
        let list = match self.prunable().await {
            Ok(list) => list,
            Err(e) => return vec![(prune_key(), Err(e))],
        };
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for (lister, id, owned) in list {
            if id.orphan_on_prune {
                out.push((key_of(&id), Ok("orphaned")));
            } else {
                pending.push((lister, id, owned));
            }
        }
        let started = Instant::now();
        while !pending.is_empty() {
            let results: Vec<_> = futures::stream::iter(pending.drain(..))
                .map(|(lister, id, owned)| async move {
                    let r = lister.delete(&id, &owned.external_name).await;
                    (lister, id, owned, r)
                })
                .buffer_unordered(self.options.concurrency)
                .collect()
                .await;
            for (lister, id, owned, r) in results {
                match r {
                    Ok(Deletion::Done) => out.push((key_of(&id), Ok("deleted"))),
                    Ok(Deletion::Waiting(why)) if started.elapsed() > self.options.timeout => {
                        out.push((key_of(&id), Err(CloudError::retryable("Timeout", why))));
                    }
                    Ok(Deletion::Waiting(_)) => pending.push((lister, id, owned)),
                    Err(e) => out.push((key_of(&id), Err(e))),
                }
            }
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        out
    }

    /// The stack's resources as the cloud has them, sorted.
    pub async fn get(&self) -> Result<Vec<(Key, Owned)>, CloudError> {
        let mut rows = Vec::new();
        for lister in &self.listers {
            for (id, owned) in lister.list(&self.options.stack).await? {
                rows.push((key_of(&id), owned));
            }
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(rows)
    }
}

/// One finished object during `apply`.
pub struct Progress<'a> {
    pub done: usize,
    pub total: usize,
    pub key: &'a Key,
    /// What was done and the id, or the error.
    pub outcome: Result<(&'static str, &'a str), String>,
    pub elapsed: Duration,
}

fn key_of(id: &Identity) -> Key {
    Key {
        kind: id.kind.clone(),
        namespace: id.namespace.clone(),
        name: id.name.clone(),
    }
}

fn prune_key() -> Key {
    Key {
        kind: "Prune".into(),
        namespace: "-".into(),
        name: "-".into(),
    }
}

/// Groups units so that each depends only on earlier groups (Kahn's
/// algorithm); on a cycle, returns the units on it.
fn waves(depends_on: &[Vec<usize>]) -> Result<Vec<Vec<usize>>, Vec<usize>> {
    let mut wave_of: Vec<Option<usize>> = vec![None; depends_on.len()];
    let mut waves: Vec<Vec<usize>> = Vec::new();
    let mut placed = 0;
    while placed < depends_on.len() {
        let ready: Vec<usize> = (0..depends_on.len())
            .filter(|&i| {
                wave_of[i].is_none() && depends_on[i].iter().all(|d| wave_of[*d].is_some())
            })
            .collect();
        if ready.is_empty() {
            return Err((0..depends_on.len())
                .filter(|&i| wave_of[i].is_none())
                .collect());
        }
        for &i in &ready {
            wave_of[i] = Some(waves.len());
        }
        placed += ready.len();
        waves.push(ready);
    }
    Ok(waves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_follow_references() {
        // 0: vpc, 1: subnet -> vpc, 2: sg -> vpc, 3: instance -> subnet, sg, 4: bucket
        let deps = vec![vec![], vec![0], vec![0], vec![1, 2], vec![]];
        assert_eq!(waves(&deps), Ok(vec![vec![0, 4], vec![1, 2], vec![3]]));
    }

    #[test]
    fn a_cycle_is_refused_naming_its_members() {
        let deps = vec![vec![1], vec![0], vec![]];
        assert_eq!(waves(&deps), Err(vec![0, 1]));
    }
}
