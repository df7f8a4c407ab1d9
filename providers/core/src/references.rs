//! References between managed resources (`vpcRef`, `vpcSelector`, ...).
//!
//! A kind lists its references through [`References`]; the generic reconciler
//! resolves them (by name in the same namespace, or by label selector), waits
//! until every target is Ready (Synced False / ReferenceNotReady, no cloud
//! call) and hands the ids to the provider in [`crate::Target::resolved`].

use std::collections::BTreeMap;

use kube::core::ApiResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `{name: ...}`: another object of the referenced kind, in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ObjectRef {
    pub name: String,
}

/// `{matchLabels: {...}}`: objects of the referenced kind with these labels,
/// in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
}

/// How one reference field is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefSource {
    /// The cloud id itself (e.g. `vpcId: vpc-123`).
    Id(String),
    /// Several cloud ids given directly.
    Ids(Vec<String>),
    /// Objects by name.
    Names(Vec<String>),
    /// Objects by labels: the first match (by name) for a single reference,
    /// every match for a list.
    Selector(BTreeMap<String, String>),
}

/// One reference of an object, as the reconciler resolves it.
#[derive(Clone, Debug)]
pub struct Reference {
    /// The key in [`crate::Target::resolved`] and `status.resolvedReferences`,
    /// e.g. `vpcId`. A list resolves to ids joined by commas.
    pub field: &'static str,
    /// The kind referenced (its external-name annotation is the id).
    pub target: ApiResource,
    pub source: RefSource,
    /// A list of targets (e.g. security groups) rather than one.
    pub many: bool,
}

impl Reference {
    /// Builds the reference for `field` from a literal id, a ref or a
    /// selector, in that order of precedence. `None` if none is set.
    pub fn single<T: kube::Resource<DynamicType = ()>>(
        field: &'static str,
        id: Option<&String>,
        by_ref: Option<&ObjectRef>,
        selector: Option<&Selector>,
    ) -> Option<Self> {
        let source = if let Some(id) = id {
            RefSource::Id(id.clone())
        } else if let Some(r) = by_ref {
            RefSource::Names(vec![r.name.clone()])
        } else {
            RefSource::Selector(selector?.match_labels.clone())
        };
        Some(Self {
            field,
            target: ApiResource::erase::<T>(&()),
            source,
            many: false,
        })
    }

    /// Builds a list reference from literal ids, refs or a selector.
    pub fn list<T: kube::Resource<DynamicType = ()>>(
        field: &'static str,
        ids: &[String],
        refs: &[ObjectRef],
        selector: Option<&Selector>,
    ) -> Option<Self> {
        let source = if !ids.is_empty() {
            RefSource::Ids(ids.to_vec())
        } else if !refs.is_empty() {
            RefSource::Names(refs.iter().map(|r| r.name.clone()).collect())
        } else {
            RefSource::Selector(selector?.match_labels.clone())
        };
        Some(Self {
            field,
            target: ApiResource::erase::<T>(&()),
            source,
            many: true,
        })
    }
}

/// The references of a kind's `forProvider` (none by default).
pub trait References {
    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }
}
