//! The fields and status every managed resource shares, and the macro that
//! declares a managed kind.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::NamespaceResourceScope;
use kube::{CustomResourceExt, Resource};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Set after create (or by hand, to import): the identifier of the cloud resource.
pub const EXTERNAL_NAME: &str = "driftless.dev/external-name";
/// "true" stops every cloud call for the object and keeps everything as is.
pub const PAUSED: &str = "driftless.dev/paused";
/// Written just before a create call, so that a resource created by a call whose
/// result was lost (a crash, a timeout) is recognised as ours and adopted.
pub const CREATE_PENDING: &str = "driftless.dev/external-create-pending";

/// Tag keys that name the owner of a cloud resource: identity lives in the
/// cloud, not in a state file.
pub const TAG_MANAGED_BY: &str = "driftless.dev/managed-by";
pub const TAG_KIND: &str = "driftless.dev/kind";
pub const TAG_OWNER: &str = "driftless.dev/owner";
/// Push mode: the stack a resource belongs to.
pub const TAG_STACK: &str = "driftless.dev/stack";
/// One create call's token, the same on every SDK retry of that call: two
/// resources carrying the same token were made by one create whose answer
/// was lost (a proven duplicate). Not part of the desired tags.
pub const TAG_CREATE_TOKEN: &str = "driftless.dev/create-token";
/// Push mode: the deletionPolicy of the object, for `apply --prune`.
pub const TAG_DELETION_POLICY: &str = "driftless.dev/deletion-policy";

/// What happens to the cloud resource when the object is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the cloud resource with the object.
    #[default]
    Delete,
    /// Keep the cloud resource; only the object goes.
    Orphan,
}

/// What driftless may do to the cloud resource (Crossplane's meaning).
/// Every set includes Observe: nothing is managed unseen. Crossplane's
/// LateInitialize (copy unset fields back from the cloud) is not offered:
/// driftless never writes the spec, which belongs to Git.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ManagementPolicy {
    /// Everything below.
    #[serde(rename = "*")]
    All,
    Observe,
    Create,
    Update,
    Delete,
}

/// Which ProviderConfig supplies region, endpoint and credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ProviderConfigReference {
    pub name: String,
}

impl Default for ProviderConfigReference {
    fn default() -> Self {
        Self {
            name: "default".into(),
        }
    }
}

/// A Secret in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalSecretReference {
    pub name: String,
}

fn default_management_policies() -> Vec<ManagementPolicy> {
    vec![ManagementPolicy::All]
}

/// The spec fields every managed resource has next to `forProvider`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFields {
    /// The ProviderConfig to use (default: `default`).
    #[serde(default)]
    pub provider_config_ref: ProviderConfigReference,
    /// Delete (default) or Orphan the cloud resource when this object is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// What driftless may do: `["*"]` (default) or Observe plus any of
    /// Create, Update, Delete. `["Observe"]` imports a resource named by
    /// the external-name annotation and never changes or deletes it.
    #[serde(default = "default_management_policies")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.exists(p, p == '*' || p == 'Observe')",
        "message": "managementPolicies must include Observe (or *): driftless does not manage what it does not observe"
    }]))]
    pub management_policies: Vec<ManagementPolicy>,
    /// Write ids, arn and endpoint of the cloud resource into this Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_connection_secret_to_ref: Option<LocalSecretReference>,
}

impl Default for ManagedFields {
    fn default() -> Self {
        Self {
            provider_config_ref: ProviderConfigReference::default(),
            deletion_policy: DeletionPolicy::Delete,
            management_policies: default_management_policies(),
            write_connection_secret_to_ref: None,
        }
    }
}

impl ManagedFields {
    /// Whether the policies allow `p` (`*` allows everything).
    pub fn allows(&self, p: ManagementPolicy) -> bool {
        self.management_policies
            .iter()
            .any(|have| *have == ManagementPolicy::All || *have == p)
    }
}

/// The status every managed resource has.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedStatus<A> {
    /// What the cloud says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_provider: Option<A>,
    /// Ready and Synced, with Crossplane's meaning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The cloud ids that references (`vpcRef`, `vpcSelector`, ...) resolved to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resolved_references: BTreeMap<String, String>,
    /// Other cloud resources carrying this object's owner tags, as of the
    /// last observation (a create whose answer was lost, then retried).
    /// driftless manages only its external name and does not change these
    /// (deleting the object deletes them too): delete them in the cloud.
    #[serde(default)]
    pub duplicates: Vec<String>,
}

impl<A> ManagedStatus<A> {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// A managed kind: a namespaced custom resource with `spec.forProvider`,
/// the [`ManagedFields`] and a [`ManagedStatus`]. Implemented by
/// [`managed_resource!`].
pub trait ManagedKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + CustomResourceExt
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// `Default` is what push mode's prune deletes with: the object is gone
    /// from the manifests by then.
    type ForProvider: Clone
        + Debug
        + Default
        + PartialEq
        + Serialize
        + DeserializeOwned
        + crate::References
        + Send
        + Sync
        + 'static;
    type AtProvider: Clone
        + Debug
        + PartialEq
        + Serialize
        + DeserializeOwned
        + Default
        + Send
        + Sync
        + 'static;
    /// The fields `observe` compares and `update` changes.
    type Field: crate::FieldKey;

    fn for_provider(&self) -> &Self::ForProvider;
    fn managed(&self) -> &ManagedFields;
    fn managed_status(&self) -> Option<&ManagedStatus<Self::AtProvider>>;
}

/// Declares a managed kind in `<group>/v1alpha1`: the custom resource with the
/// common spec, status, printer columns (READY, SYNCED, EXTERNAL-NAME, AGE) and
/// categories (`driftless`, `managed`, and the cloud's), plus its
/// [`ManagedKind`] impl, and the [`crate::References`] of `forProvider`: its
/// [`crate::reference!`] fields, by name, then (after `; each`) its lists
/// whose items have references, by name and JSON name (keyed as
/// [`crate::item_key`] says). Extra CEL rules on the whole object may follow.
///
/// ```text
/// managed_resource! {
///     kind Bucket("Bucket"), spec BucketSpec, status BucketStatus("BucketStatus"),
///     group "aws.driftless.dev", category "aws",
///     for_provider BucketParameters, at_provider BucketObservation, fields BucketField,
///     references(),
///     validation(Rule::new("self.metadata.name.size() <= 63").message("name too long")),
/// }
/// ```
#[macro_export]
macro_rules! managed_resource {
    (
        $(#[doc = $doc:tt])*
        kind $kind:ident($kind_str:tt), spec $spec:ident, status $status:ident($status_str:tt),
        group $group:tt, category $category:tt,
        for_provider $fp:ty, at_provider $ap:ty, fields $fields:ty,
        references($($reference:ident),* $(; each $($list:ident = $list_key:expr),+)?)
        $(, validation($($rule:tt)*))* $(,)?
    ) => {
        /// Status of the managed resource: `atProvider` and conditions.
        pub type $status = $crate::ManagedStatus<$ap>;

        $(#[doc = $doc])*
        #[derive(::kube::CustomResource, Clone, Debug, PartialEq, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema)]
        #[kube(
            group = $group,
            version = "v1alpha1",
            kind = $kind_str,
            namespaced,
            status = $status_str,
            derive = "PartialEq",
            category = "driftless",
            category = "managed",
            category = $category,
            printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
            printcolumn = r#"{"name":"SYNCED","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status"}"#,
            printcolumn = r#"{"name":"EXTERNAL-NAME","type":"string","jsonPath":".metadata.annotations.driftless\\.dev/external-name"}"#,
            printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
            $(, validation = $($rule)*)*
        )]
        #[serde(rename_all = "camelCase")]
        pub struct $spec {
            /// The desired state of the cloud resource.
            pub for_provider: $fp,
            #[serde(flatten)]
            pub managed: $crate::ManagedFields,
        }

        /// The [`crate::reference!`] fields of `forProvider`.
        impl $crate::References for $fp {
            fn references(&self) -> Vec<$crate::Reference> {
                let all: Vec<Option<$crate::Reference>> = vec![$(self.$reference.reference()),*];
                #[allow(unused_mut)]
                let mut all: Vec<$crate::Reference> = all.into_iter().flatten().collect();
                $($(all.extend($crate::item_references($list_key, &self.$list));)+)?
                all
            }
        }

        impl $crate::ManagedKind for $kind {
            type ForProvider = $fp;
            type AtProvider = $ap;
            type Field = $fields;
            fn for_provider(&self) -> &$fp {
                &self.spec.for_provider
            }
            fn managed(&self) -> &$crate::ManagedFields {
                &self.spec.managed
            }
            fn managed_status(&self) -> Option<&$crate::ManagedStatus<$ap>> {
                self.status.as_ref()
            }
        }
    };
}

/// Declares a kind's [`crate::FieldKey`] enum: one variant per compared
/// field, with its path under `forProvider`, marked `immutable` when the
/// cloud cannot change it in place.
///
/// ```text
/// field_keys! { pub enum VpcField { CidrBlock = "cidrBlock" immutable, Tags = "tags" } }
/// ```
#[macro_export]
macro_rules! field_keys {
    (@immutable) => { false };
    (@immutable immutable) => { true };
    ($(#[$meta:meta])* pub enum $name:ident { $($variant:ident = $path:literal $($immutable:ident)?),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant),+
        }

        impl $crate::FieldKey for $name {
            fn path(&self) -> &'static str {
                match self {
                    $(Self::$variant => concat!("forProvider.", $path)),+
                }
            }

            fn immutable(&self) -> bool {
                match self {
                    $(Self::$variant => $crate::field_keys!(@immutable $($immutable)?)),+
                }
            }
        }
    };
}

/// Declares a kind's `atProvider` struct: every field optional, and left
/// out when unset (what the cloud reports may be partial).
///
/// ```text
/// observation! { pub struct VpcObservation { vpc_id: String, state: String } }
/// ```
#[macro_export]
macro_rules! observation {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($(#[doc = $doc:literal])* $field:ident: $ty:ty),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(::serde::Serialize, ::serde::Deserialize, Clone, Debug, Default, PartialEq, ::schemars::JsonSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }
    };
}
