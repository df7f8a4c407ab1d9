//! The four-operation contract between the generic reconciler and a provider.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::managed::{ManagedKind, TAG_KIND, TAG_MANAGED_BY, TAG_OWNER};

/// Who owns a cloud resource: the object that declares it. Written into tags
/// at create time and looked up before every create.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Push mode's stack; `None` for the in-cluster controller.
    pub stack: Option<String>,
}

impl Identity {
    /// The value of the owner tag: `<namespace>/<name>`, prefixed by
    /// `stack/<stack>/` in push mode.
    pub fn owner(&self) -> String {
        match &self.stack {
            Some(stack) => format!("stack/{stack}/{}/{}", self.namespace, self.name),
            None => format!("{}/{}", self.namespace, self.name),
        }
    }

    /// The tags that mark a cloud resource as this object's.
    pub fn owner_tags(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TAG_MANAGED_BY.to_string(), "driftless".to_string()),
            (TAG_KIND.to_string(), self.kind.clone()),
            (TAG_OWNER.to_string(), self.owner()),
        ])
    }

    /// Whether `tags` name this object as owner.
    pub fn owns(&self, tags: &BTreeMap<String, String>) -> bool {
        tags.get(TAG_OWNER) == Some(&self.owner()) && tags.get(TAG_KIND) == Some(&self.kind)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What a provider operation works on.
#[derive(Debug)]
pub struct Target<'a, K: ManagedKind> {
    pub identity: &'a Identity,
    /// The external-name annotation, if set (after create, or by hand to import).
    pub external_name: Option<&'a str>,
    /// A create was started and its result may have been lost: a resource found
    /// under this name without our tags is ours to adopt.
    pub create_pending: bool,
    pub spec: &'a K::ForProvider,
    /// Reference field name (e.g. `vpcId`) to the cloud id it resolved to.
    pub resolved: &'a BTreeMap<String, String>,
}

/// One field where the cloud differs from the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDiff {
    /// The spec path, e.g. `forProvider.versioning`.
    pub field: String,
    pub observed: String,
    pub desired: String,
    /// The cloud cannot change this field in place.
    pub immutable: bool,
}

impl FieldDiff {
    pub fn new(field: &str, observed: impl fmt::Debug, desired: impl fmt::Debug) -> Self {
        Self {
            field: field.to_string(),
            observed: format!("{observed:?}"),
            desired: format!("{desired:?}"),
            immutable: false,
        }
    }

    pub fn immutable(mut self) -> Self {
        self.immutable = true;
        self
    }
}

impl fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} -> {}", self.field, self.observed, self.desired)
    }
}

/// What `observe` found.
#[derive(Clone, Debug, Default)]
pub struct Observation<A> {
    /// The cloud resource exists.
    pub exists: bool,
    /// Its id, when the provider found it by tags rather than by external name.
    pub external_name: Option<String>,
    /// Where it differs from the spec; empty means up to date.
    pub diff: Vec<FieldDiff>,
    /// It is usable (e.g. a VPC in state `available`).
    pub ready: bool,
    pub at_provider: Option<A>,
    /// Written to `writeConnectionSecretToRef`.
    pub connection_details: BTreeMap<String, String>,
}

impl<A> Observation<A> {
    pub fn absent() -> Self {
        Self {
            exists: false,
            external_name: None,
            diff: Vec::new(),
            ready: false,
            at_provider: None,
            connection_details: BTreeMap::new(),
        }
    }

    pub fn up_to_date(&self) -> bool {
        self.diff.is_empty()
    }
}

/// The result of `create`.
#[derive(Clone, Debug)]
pub struct Created {
    /// Recorded as the external-name annotation.
    pub external_name: String,
}

/// The result of `delete`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Gone (or going: the next observe will tell).
    Done,
    /// Cannot go yet; the reason is shown in the Ready condition.
    Waiting(String),
}

/// How the reconciler treats an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retrying cannot fix it (invalid argument, access denied, immutable field):
    /// retried only when the spec changes, or after a long backoff.
    Terminal,
    /// The cloud asks us to slow down.
    Throttled,
    /// Anything else: retried with exponential backoff.
    Retryable,
}

/// An error from the cloud, with the cloud's own code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudError {
    pub class: ErrorClass,
    pub code: String,
    pub message: String,
}

impl CloudError {
    pub fn terminal(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Terminal,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Retryable,
            code: code.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CloudError {}

/// The four operations a provider implements for one kind. Each is idempotent.
#[async_trait]
pub trait External<K: ManagedKind>: Send + Sync {
    /// Read the cloud resource (by external name, or by owner tags) and compare
    /// it with the spec. Never changes anything.
    async fn observe(
        &self,
        target: &Target<'_, K>,
    ) -> Result<Observation<K::AtProvider>, CloudError>;
    /// Create the resource, tagged with the owner tags.
    async fn create(&self, target: &Target<'_, K>) -> Result<Created, CloudError>;
    /// Make the resource match the spec; `observed` is the last observation.
    async fn update(
        &self,
        target: &Target<'_, K>,
        observed: &Observation<K::AtProvider>,
    ) -> Result<(), CloudError>;
    /// Delete the resource, or say what it waits for.
    async fn delete(&self, target: &Target<'_, K>) -> Result<Deletion, CloudError>;
}

/// Where a provider reads its configuration (region, endpoint, credentials).
#[derive(Clone)]
pub enum ConfigSource {
    /// A cluster: ProviderConfig objects and their Secrets.
    Cluster(kube::Client),
    /// No cluster (push mode): the environment and the SDK's default chain.
    Environment,
}

/// Produces the [`External`] client for an object, from its ProviderConfig.
#[async_trait]
pub trait Connector<K: ManagedKind>: Send + Sync {
    async fn connect(
        &self,
        source: &ConfigSource,
        provider_config: &str,
        spec: &K::ForProvider,
    ) -> Result<Arc<dyn External<K>>, CloudError>;
}

/// Visits every kind a provider serves; the runtime implements it once per
/// use (run a controller, list CRDs, plan in push mode, ...).
pub trait KindVisitor {
    fn visit<K: ManagedKind>(&mut self, connector: Arc<dyn Connector<K>>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_tags_name_the_object_and_stack() {
        let id = Identity {
            kind: "Vpc".into(),
            namespace: "infra".into(),
            name: "main".into(),
            stack: None,
        };
        assert_eq!(id.owner(), "infra/main");
        let tags = id.owner_tags();
        assert!(id.owns(&tags));
        let pushed = Identity {
            stack: Some("prod".into()),
            ..id.clone()
        };
        assert_eq!(pushed.owner(), "stack/prod/infra/main");
        assert!(
            !pushed.owns(&tags),
            "a stack never adopts the cluster's resource"
        );
    }
}
