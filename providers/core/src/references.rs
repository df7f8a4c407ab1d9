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
    /// The key in [`crate::Target::resolved`] and `status.resolvedReferences`:
    /// the id field's path under `forProvider`, e.g. `vpcId`, or
    /// `routes[0].gatewayId` inside a list item (see [`item_references`]).
    /// A list resolves to ids joined by commas.
    pub field: String,
    /// The kind referenced (its external-name annotation is the id).
    pub target: ApiResource,
    pub source: RefSource,
    /// A list of targets (e.g. security groups) rather than one.
    pub many: bool,
    /// Where the target's value is read, as a JSON pointer into the object
    /// (e.g. `/status/atProvider/keyName`: an instance names its key pair by
    /// name, not id); `None`: its external-name annotation.
    pub value: Option<&'static str>,
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
        let given = match (id, by_ref) {
            (Some(id), _) => Some(RefSource::Id(id.clone())),
            (None, Some(r)) => Some(RefSource::Names(vec![r.name.clone()])),
            (None, None) => None,
        };
        Self::of::<T>(field, given, selector, false)
    }

    /// Builds a list reference from literal ids, refs or a selector.
    pub fn list<T: kube::Resource<DynamicType = ()>>(
        field: &'static str,
        ids: &[String],
        refs: &[ObjectRef],
        selector: Option<&Selector>,
    ) -> Option<Self> {
        let given = if !ids.is_empty() {
            Some(RefSource::Ids(ids.to_vec()))
        } else if !refs.is_empty() {
            Some(RefSource::Names(
                refs.iter().map(|r| r.name.clone()).collect(),
            ))
        } else {
            None
        };
        Self::of::<T>(field, given, selector, true)
    }

    /// `given` (ids or names), else the selector; `None` if neither is set.
    fn of<T: kube::Resource<DynamicType = ()>>(
        field: &'static str,
        given: Option<RefSource>,
        selector: Option<&Selector>,
        many: bool,
    ) -> Option<Self> {
        let source = match given {
            Some(source) => source,
            None => RefSource::Selector(selector?.match_labels.clone()),
        };
        Some(Self {
            field: field.to_string(),
            target: ApiResource::erase::<T>(&()),
            source,
            many,
            value: None,
        })
    }

    /// The same reference, resolved to the target's value at `pointer`
    /// rather than its external name.
    pub fn reading(self, pointer: &'static str) -> Self {
        Self {
            value: Some(pointer),
            ..self
        }
    }
}

/// The references of a kind's `forProvider` (none by default), or of one
/// item of a list in it.
pub trait References {
    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }
}

/// The key of reference field `field` (e.g. `gatewayId`) of item `index` of
/// list `list` (e.g. `routes`): `routes[0].gatewayId`, as in
/// [`crate::Target::resolved`] and `status.resolvedReferences`.
pub fn item_key(list: &str, index: usize, field: &str) -> String {
    format!("{list}[{index}].{field}")
}

/// The references of every item of list `list`, each keyed by
/// [`item_key`]: a kind lists them in [`crate::managed_resource!`] as
/// `references(...; each routes = "routes")`.
pub fn item_references<T: References>(list: &str, items: &[T]) -> Vec<Reference> {
    let each = items.iter().enumerate().map(|(i, item)| {
        item.references().into_iter().map(move |mut r| {
            r.field = item_key(list, i, &r.field);
            r
        })
    });
    each.flatten().collect()
}

/// Adds `rule` to the object's `x-kubernetes-validations` (a kind with
/// several required references keeps every rule).
#[doc(hidden)]
pub fn push_rule(schema: &mut schemars::Schema, rule: &str, message: &str) {
    let rules = schema
        .ensure_object()
        .entry("x-kubernetes-validations")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let serde_json::Value::Array(rules) = rules {
        rules.push(serde_json::json!({ "rule": rule, "message": message }));
    }
}

/// Declares the `<x>Id` / `<x>Ref` / `<x>Selector` fields of one reference
/// as a struct to `#[serde(flatten)]` into a kind's parameters. It carries
/// the reference's [`References`] contribution and, for the kind to attach
/// with `#[schemars(transform = Name::required)]`, the rule "one of ... is
/// required" (a rule on the flattened struct itself would be dropped by
/// schemars when the kind has rules of its own).
///
/// `one` references a single object (`Option<String>` id, `Option<ObjectRef>`);
/// `many` a list (`Vec<String>` ids, `Vec<ObjectRef>`, every selector match).
///
/// ```text
/// reference! {
///     pub struct VpcOf(one Vpc = "Vpc") {
///         /// The VPC's id. Immutable.
///         id "vpcId", by_ref "vpcRef", selector "vpcSelector"
///     }
/// }
/// ```
#[macro_export]
macro_rules! reference {
    (
        $(#[$meta:meta])*
        pub struct $name:ident(one $target:ty = $target_str:literal $(, value $value:literal)?) {
            $(#[doc = $id_doc:literal])*
            id $id:literal, by_ref $by_ref:literal, selector $selector:literal $(,)?
        }
    ) => {
        $crate::reference!(@struct [$(#[$meta])*] $name, $id, $by_ref, $selector,
            id: Option<String>, Option<$crate::ObjectRef>, "Option::is_none", [$($id_doc)*],
            concat!("A ", $target_str, " object in this namespace, instead of ", $id, "."),
            concat!("The first ", $target_str, " (by name) in this namespace with these labels, instead of ", $id, "."));

        impl $name {
            pub fn reference(&self) -> Option<$crate::Reference> {
                let r = $crate::Reference::single::<$target>(
                    $id,
                    self.id.as_ref(),
                    self.by_ref.as_ref(),
                    self.selector.as_ref(),
                );
                $(let r = r.map(|r| r.reading($value));)?
                r
            }
        }
    };
    (
        $(#[$meta:meta])*
        pub struct $name:ident(many $target:ty = $target_str:literal) {
            $(#[doc = $id_doc:literal])*
            ids $id:literal, by_ref $by_ref:literal, selector $selector:literal $(,)?
        }
    ) => {
        $crate::reference!(@struct [$(#[$meta])*] $name, $id, $by_ref, $selector,
            ids: Vec<String>, Vec<$crate::ObjectRef>, "Vec::is_empty", [$($id_doc)*],
            concat!($target_str, " objects in this namespace, instead of ", $id, "."),
            concat!("Every ", $target_str, " in this namespace with these labels, instead of ", $id, "."));

        impl $name {
            pub fn reference(&self) -> Option<$crate::Reference> {
                $crate::Reference::list::<$target>(
                    $id,
                    &self.ids,
                    &self.by_ref,
                    self.selector.as_ref(),
                )
            }
        }
    };
    (
        @struct [$(#[$meta:meta])*] $name:ident, $id:literal, $by_ref:literal, $selector:literal,
        $ids:ident: $id_ty:ty, $ref_ty:ty, $skip:literal, [$($id_doc:literal)*],
        $ref_doc:expr, $selector_doc:expr
    ) => {
        $(#[$meta])*
        #[derive(::serde::Serialize, ::serde::Deserialize, Clone, Debug, Default, PartialEq, ::schemars::JsonSchema)]
        pub struct $name {
            $(#[doc = $id_doc])*
            #[serde(rename = $id, default, skip_serializing_if = $skip)]
            pub $ids: $id_ty,
            #[doc = $ref_doc]
            #[serde(rename = $by_ref, default, skip_serializing_if = $skip)]
            pub by_ref: $ref_ty,
            #[doc = $selector_doc]
            #[serde(rename = $selector, default, skip_serializing_if = "Option::is_none")]
            pub selector: Option<$crate::Selector>,
        }

        impl $name {
            /// The key of the resolved id in `Target::resolved`.
            pub const FIELD: &'static str = $id;

            /// The schema rule that one of the three fields is set.
            pub fn required(schema: &mut ::schemars::Schema) {
                $crate::push_rule(
                    schema,
                    concat!("has(self.", $id, ") || has(self.", $by_ref, ") || has(self.", $selector, ")"),
                    concat!("one of ", $id, ", ", $by_ref, " or ", $selector, " is required"),
                );
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list item with one reference, given by id or by name.
    struct Item(RefSource);

    impl References for Item {
        fn references(&self) -> Vec<Reference> {
            vec![Reference {
                field: "gatewayId".into(),
                target: ApiResource {
                    group: "aws.driftless.dev".into(),
                    version: "v1alpha1".into(),
                    api_version: "aws.driftless.dev/v1alpha1".into(),
                    kind: "InternetGateway".into(),
                    plural: "internetgateways".into(),
                },
                source: self.0.clone(),
                many: false,
                value: None,
            }]
        }
    }

    #[test]
    fn references_in_list_items_are_keyed_by_their_index() {
        let items = [
            Item(RefSource::Names(vec!["igw".into()])),
            Item(RefSource::Id("igw-1".into())),
        ];
        let refs = item_references("routes", &items);
        let keys: Vec<&str> = refs.iter().map(|r| r.field.as_str()).collect();
        assert_eq!(keys, ["routes[0].gatewayId", "routes[1].gatewayId"]);
        assert_eq!(refs[1].source, RefSource::Id("igw-1".into()));
        assert_eq!(item_key("routes", 1, "gatewayId"), keys[1]);
    }
}
