//! One managed object of the manifests, whatever its kind, and one kind's
//! resources in the cloud, found by the stack's tags.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use driftless_provider::{
    CloudError, ConfigSource, Connector, Deletion, DeletionPolicy, External, FieldDiff, Identity,
    KindVisitor, ManagedKind, Observation, Owned, Reference, References, Target, EXTERNAL_NAME,
    PAUSED, TAG_STACK,
};
use kube::ResourceExt;

use super::{Key, Step};
use crate::managed::decide::{decide, Decision};
use crate::manifests::{namespace_or_default, Manifest};

/// A step, and the resource's id when it exists (dependents need it).
pub(super) type Planned = (Step, Option<String>);

/// One managed object of the manifests, whatever its kind.
#[async_trait]
pub(super) trait Unit: Send + Sync {
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
pub(super) trait KindLister: Send + Sync {
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
            .connect(
                &ConfigSource::Environment,
                pc,
                &self.obj.namespace().unwrap_or_default(),
                self.obj.for_provider(),
            )
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
            Decision::ObserveOnly => Step::Skipped("observed only (managementPolicies)".into()),
            Decision::UpToDate => Step::Unchanged,
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
            Decision::ObserveOnly => return Ok((id_of(&obs, given, &self.identity), "observed")),
            Decision::UpToDate => (id_of(&obs, given, &self.identity), "unchanged"),
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
                "",
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
pub(super) struct Collect<'a> {
    pub(super) manifests: &'a [Manifest],
    pub(super) stack: &'a str,
    pub(super) units: Vec<Arc<dyn Unit>>,
    pub(super) listers: Vec<Arc<dyn KindLister>>,
    pub(super) errors: Vec<String>,
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
