//! The four-operation contract between the generic reconciler and a provider.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::managed::{
    ManagedKind, TAG_DELETION_POLICY, TAG_KIND, TAG_MANAGED_BY, TAG_OWNER, TAG_STACK,
};

/// Who owns a cloud resource: the object that declares it. Written into tags
/// at create time and looked up before every create.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Push mode's stack; `None` for the in-cluster controller.
    pub stack: Option<String>,
    /// Push mode: the object says `deletionPolicy: Orphan`. Recorded in a tag,
    /// because `apply --prune` meets the resource after the object has left
    /// the manifests, and tags are push mode's only state.
    pub orphan_on_prune: bool,
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

    /// The identity of an in-cluster object.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            stack: None,
            orphan_on_prune: false,
        }
    }

    /// The tags that mark a cloud resource as this object's.
    pub fn owner_tags(&self) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::from([
            (TAG_MANAGED_BY.to_string(), "driftless".to_string()),
            (TAG_KIND.to_string(), self.kind.clone()),
            (TAG_OWNER.to_string(), self.owner()),
        ]);
        if let Some(stack) = &self.stack {
            tags.insert(TAG_STACK.to_string(), stack.clone());
            let policy = if self.orphan_on_prune {
                "Orphan"
            } else {
                "Delete"
            };
            tags.insert(TAG_DELETION_POLICY.to_string(), policy.to_string());
        }
        tags
    }

    /// The identity written in `tags` by [`Identity::owner_tags`] of a stack,
    /// if they carry one (push mode's `get` and `--prune` read it).
    pub fn from_stack_tags(tags: &BTreeMap<String, String>) -> Option<Self> {
        let stack = tags.get(TAG_STACK)?;
        let rest = tags
            .get(TAG_OWNER)?
            .strip_prefix(&format!("stack/{stack}/"))?;
        let (namespace, name) = rest.split_once('/')?;
        Some(Self {
            kind: tags.get(TAG_KIND)?.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            stack: Some(stack.clone()),
            orphan_on_prune: tags.get(TAG_DELETION_POLICY).map(String::as_str) == Some("Orphan"),
        })
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
    /// Reference key (e.g. `vpcId`, or `routes[0].gatewayId` in a list item:
    /// [`crate::item_key`]) to the cloud id it resolved to.
    pub resolved: &'a BTreeMap<String, String>,
}

/// A field of a kind's spec that `observe` compares, as an enum per kind
/// (see [`crate::field_keys!`]): `update` matches it exhaustively, so a field
/// observed but never updated is a compile error, not an endless drift loop.
pub trait FieldKey: Copy + Eq + fmt::Debug + Send + Sync + 'static {
    /// The spec path, e.g. `forProvider.versioning`.
    fn path(&self) -> &'static str;
    /// The cloud cannot change this field in place: a diff is refused, and
    /// never reaches `update`.
    fn immutable(&self) -> bool {
        false
    }
}

/// The erased key: what push mode's plan keeps across kinds.
impl FieldKey for &'static str {
    fn path(&self) -> &'static str {
        self
    }
}

/// One field where the cloud differs from the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDiff<F = &'static str> {
    pub field: F,
    pub observed: String,
    pub desired: String,
    /// The cloud cannot change this field in place.
    pub immutable: bool,
}

impl<F: FieldKey> FieldDiff<F> {
    pub fn new(field: F, observed: impl fmt::Debug, desired: impl fmt::Debug) -> Self {
        Self {
            field,
            observed: format!("{observed:?}"),
            desired: format!("{desired:?}"),
            immutable: field.immutable(),
        }
    }

    /// The difference of two maps (tags), showing only the keys that differ:
    /// `team: "platform" -> "web"`, `+owner: "me"`, `-old`.
    pub fn map(
        field: F,
        observed: &BTreeMap<String, String>,
        desired: &BTreeMap<String, String>,
    ) -> Self {
        let mut was = Vec::new();
        let mut will = Vec::new();
        for (k, v) in observed {
            match desired.get(k) {
                Some(d) if d == v => {}
                Some(_) => was.push(format!("{k}={v:?}")),
                None => was.push(format!("{k}={v:?} (removed)")),
            }
        }
        for (k, v) in desired {
            match observed.get(k) {
                Some(o) if o == v => {}
                Some(_) => will.push(format!("{k}={v:?}")),
                None => will.push(format!("{k}={v:?} (added)")),
            }
        }
        Self {
            field,
            observed: format!("{{{}}}", was.join(", ")),
            desired: format!("{{{}}}", will.join(", ")),
            immutable: field.immutable(),
        }
    }

    /// The same diff keyed by its path (push mode's plan, across kinds).
    pub fn erase(&self) -> FieldDiff {
        FieldDiff {
            field: self.field.path(),
            observed: self.observed.clone(),
            desired: self.desired.clone(),
            immutable: self.immutable,
        }
    }
}

impl<F: FieldKey> fmt::Display for FieldDiff<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} -> {}",
            self.field.path(),
            self.observed,
            self.desired
        )
    }
}

/// Builds a diff in `observe`, one line per compared field.
pub trait Compare<F> {
    /// Records `field` when the spec asks for `want` (`None`: not compared)
    /// and the cloud has something else.
    fn compare<H, W>(&mut self, field: F, have: H, want: Option<W>)
    where
        H: PartialEq<W> + fmt::Debug,
        W: fmt::Debug;
}

impl<F: FieldKey> Compare<F> for Vec<FieldDiff<F>> {
    fn compare<H, W>(&mut self, field: F, have: H, want: Option<W>)
    where
        H: PartialEq<W> + fmt::Debug,
        W: fmt::Debug,
    {
        if let Some(want) = want.filter(|want| have != *want) {
            self.push(FieldDiff::new(field, have, want));
        }
    }
}

/// What `observe` found.
#[derive(Clone, Debug)]
pub struct Observation<K: ManagedKind> {
    /// The cloud resource exists.
    pub exists: bool,
    /// Its id, when the provider found it by tags rather than by external name.
    pub external_name: Option<String>,
    /// Where it differs from the spec; empty means up to date.
    pub diff: Vec<FieldDiff<K::Field>>,
    /// It is usable (e.g. a VPC in state `available`).
    pub ready: bool,
    /// Why it is not usable yet, in the cloud's words (e.g. `NAT gateway
    /// nat-1 is pending`): the Ready condition's message.
    pub not_ready: Option<String>,
    pub at_provider: Option<K::AtProvider>,
    /// Written to `writeConnectionSecretToRef`.
    pub connection_details: BTreeMap<String, String>,
    /// Other cloud resources carrying this object's owner tags (a create
    /// whose answer was lost, then retried): not managed, and reported.
    pub duplicates: Vec<String>,
    /// Those of `duplicates` made by the same create call as the managed
    /// resource (the same create token): provably ours, safe to delete.
    pub proven_duplicates: Vec<String>,
}

impl<K: ManagedKind> Observation<K> {
    pub fn absent() -> Self {
        Self {
            exists: false,
            external_name: None,
            diff: Vec::new(),
            ready: false,
            not_ready: None,
            at_provider: None,
            connection_details: BTreeMap::new(),
            duplicates: Vec::new(),
            proven_duplicates: Vec::new(),
        }
    }

    /// The resource `external_name` exists; the rest follows with `..`.
    pub fn exists(external_name: &str) -> Self {
        Self {
            exists: true,
            external_name: Some(external_name.to_string()),
            ..Self::absent()
        }
    }

    pub fn up_to_date(&self) -> bool {
        self.diff.is_empty()
    }

    /// The terminal error for a diff the cloud cannot apply in place, naming
    /// every such field; `None` when every difference can be updated.
    pub fn immutable_error(&self) -> Option<CloudError> {
        let fields: Vec<String> = self
            .diff
            .iter()
            .filter(|d| d.immutable)
            .map(|d| {
                format!(
                    "{} is immutable (cloud has {}, spec asks {})",
                    d.field.path(),
                    d.observed,
                    d.desired
                )
            })
            .collect();
        (!fields.is_empty()).then(|| {
            CloudError::terminal(
                "ImmutableField",
                format!(
                    "{}; nothing was changed: restore the field, or create a new object",
                    fields.join("; ")
                ),
            )
        })
    }
}

/// A cloud resource that carries driftless owner tags, as listed by
/// [`External::list_owned`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    pub external_name: String,
    pub tags: BTreeMap<String, String>,
    /// The cloud's own word for its state (`available`, `running`, ...).
    pub state: String,
    pub ready: bool,
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

/// The code of an error reading from the API server that got no answer
/// (connection refused, reset, timed out): the cluster's outage, not the
/// object's fault.
pub const KUBERNETES_UNREACHABLE: &str = "KubernetesUnreachable";

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
    async fn observe(&self, target: &Target<'_, K>) -> Result<Observation<K>, CloudError>;
    /// Create the resource, tagged with the owner tags.
    async fn create(&self, target: &Target<'_, K>) -> Result<Created, CloudError>;
    /// Make the resource match the spec; `observed` is the last observation.
    async fn update(
        &self,
        target: &Target<'_, K>,
        observed: &Observation<K>,
    ) -> Result<(), CloudError>;
    /// Delete the resource, or say what it waits for.
    async fn delete(&self, target: &Target<'_, K>) -> Result<Deletion, CloudError>;
    /// Delete the resource `id`, a proven duplicate of the target's (see
    /// [`Observation::proven_duplicates`]).
    async fn delete_duplicate(&self, id: &str) -> Result<Deletion, CloudError> {
        Err(CloudError::terminal(
            "Unsupported",
            format!(
                "deleting {} duplicates ({id}) is not implemented",
                K::kind(&())
            ),
        ))
    }
    /// Every resource of this kind, in this client's region, that carries
    /// driftless owner tags. Push mode's `get` and `apply --prune` use it;
    /// the controller never does.
    async fn list_owned(&self) -> Result<Vec<Owned>, CloudError> {
        Err(CloudError::terminal(
            "Unsupported",
            format!(
                "listing {} resources by tags is not implemented",
                K::kind(&())
            ),
        ))
    }
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
    /// `namespace` is the object's: from a cluster, a namespace the
    /// ProviderConfig does not allow (`spec.allowedNamespaces`) gets the
    /// terminal [`crate::PROVIDER_CONFIG_NOT_ALLOWED`] before any cloud
    /// client exists.
    async fn connect(
        &self,
        source: &ConfigSource,
        provider_config: &str,
        namespace: &str,
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

    crate::field_keys! {
        pub enum TestField { Name = "name" immutable, Size = "size" }
    }

    #[test]
    fn compare_records_what_the_spec_sets_and_the_cloud_lacks() {
        let mut diff = Vec::new();
        diff.compare(TestField::Name, "a", Some("a"));
        diff.compare(TestField::Size, 1, None::<i32>);
        diff.compare(TestField::Name, "a", Some("b"));
        diff.compare(TestField::Size, 1, Some(2));
        assert_eq!(diff.len(), 2);
        assert!(diff[0].immutable && !diff[1].immutable, "from field_keys!");
        assert_eq!(diff[0].to_string(), r#"forProvider.name: "a" -> "b""#);
        let erased: FieldDiff = diff[1].erase();
        assert_eq!(erased.to_string(), "forProvider.size: 1 -> 2");
    }

    #[test]
    fn a_map_diff_shows_only_what_differs() {
        let have = BTreeMap::from([
            ("team".to_string(), "platform".to_string()),
            ("old".to_string(), "x".to_string()),
            ("same".to_string(), "1".to_string()),
        ]);
        let want = BTreeMap::from([
            ("team".to_string(), "web".to_string()),
            ("new".to_string(), "y".to_string()),
            ("same".to_string(), "1".to_string()),
        ]);
        assert_eq!(
            FieldDiff::map("forProvider.tags", &have, &want).to_string(),
            r#"forProvider.tags: {old="x" (removed), team="platform"} -> {new="y" (added), team="web"}"#
        );
    }

    #[test]
    fn owner_tags_name_the_object_and_stack() {
        let id = Identity::new("Vpc", "infra", "main");
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
        assert_eq!(
            Identity::from_stack_tags(&pushed.owner_tags()),
            Some(pushed.clone())
        );
        assert_eq!(Identity::from_stack_tags(&tags), None, "not a stack's");
        let kept = Identity {
            orphan_on_prune: true,
            ..pushed
        };
        assert_eq!(kept.owner_tags()[TAG_DELETION_POLICY], "Orphan");
        assert!(
            Identity::from_stack_tags(&kept.owner_tags())
                .unwrap()
                .orphan_on_prune
        );
    }
}
