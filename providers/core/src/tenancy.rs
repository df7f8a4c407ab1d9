//! Which namespaces may use a provider's configuration object (for AWS, a
//! `ProviderConfig`): `spec.allowedNamespaces`, by name and/or by label
//! selector. Generic, so that every provider checks it the same way.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::CloudError;

/// The code (and Synced reason) of the terminal error a managed resource
/// gets when its namespace may not use its ProviderConfig.
pub const PROVIDER_CONFIG_NOT_ALLOWED: &str = "ProviderConfigNotAllowed";

/// The namespaces whose managed resources may use a ProviderConfig. A
/// namespace is allowed when it is one of `names` or its labels match
/// `selector`. Absent (the field not set at all) means every namespace;
/// set, with no names and no selector, it means none.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedNamespaces {
    /// Namespaces allowed by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Namespaces allowed by their labels (`matchLabels` and/or
    /// `matchExpressions`, as everywhere in Kubernetes; `{}` matches every
    /// namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

impl AllowedNamespaces {
    /// Allowed by name alone: no need to read the namespace's labels.
    pub fn allows_by_name(&self, namespace: &str) -> bool {
        self.names.iter().any(|n| n == namespace)
    }

    /// Whether the labels of the namespace must be read to decide.
    pub fn needs_labels(&self, namespace: &str) -> bool {
        !self.allows_by_name(namespace) && self.selector.is_some()
    }

    /// Whether `namespace`, carrying `labels`, is allowed.
    pub fn allows(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.allows_by_name(namespace)
            || self
                .selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, labels))
    }
}

/// The terminal error for `namespace` using ProviderConfig `provider_config`.
pub fn not_allowed(provider_config: &str, namespace: &str) -> CloudError {
    CloudError::terminal(
        PROVIDER_CONFIG_NOT_ALLOWED,
        format!(
            "namespace {namespace} may not use ProviderConfig {provider_config} \
             (see its spec.allowedNamespaces); no cloud call was made"
        ),
    )
}

/// Kubernetes label-selector semantics: every `matchLabels` pair and every
/// `matchExpressions` requirement must hold. An unknown operator matches
/// nothing (fail closed).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs && expressions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allowed(v: serde_json::Value) -> AllowedNamespaces {
        serde_json::from_value(v).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_allow_exactly_those_namespaces() {
        let a = allowed(json!({"names": ["team-a", "team-b"]}));
        assert!(a.allows("team-a", &labels(&[])));
        assert!(a.allows("team-b", &labels(&[])));
        assert!(!a.allows("team-c", &labels(&[("team", "a")])));
        assert!(
            !a.needs_labels("team-c"),
            "no selector: labels are never read"
        );
    }

    #[test]
    fn a_selector_matches_labels_and_expressions() {
        let a = allowed(json!({"selector": {
            "matchLabels": {"tenant": "blue"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["dev", "staging"]},
                {"key": "frozen", "operator": "DoesNotExist"},
            ],
        }}));
        assert!(a.needs_labels("x"));
        assert!(a.allows("x", &labels(&[("tenant", "blue"), ("env", "dev")])));
        assert!(!a.allows("x", &labels(&[("tenant", "blue"), ("env", "prod")])));
        assert!(!a.allows("x", &labels(&[("tenant", "red"), ("env", "dev")])));
        assert!(!a.allows(
            "x",
            &labels(&[("tenant", "blue"), ("env", "dev"), ("frozen", "yes")])
        ));
        let exists = allowed(json!({"selector": {"matchExpressions": [
            {"key": "tenant", "operator": "Exists"},
            {"key": "env", "operator": "NotIn", "values": ["prod"]},
        ]}}));
        assert!(exists.allows("x", &labels(&[("tenant", "any")])));
        assert!(!exists.allows("x", &labels(&[("tenant", "any"), ("env", "prod")])));
        assert!(!exists.allows("x", &labels(&[])));
        let unknown = allowed(json!({"selector": {"matchExpressions": [
            {"key": "tenant", "operator": "Near"},
        ]}}));
        assert!(!unknown.allows("x", &labels(&[("tenant", "a")])));
    }

    #[test]
    fn names_or_selector_either_allows() {
        let a =
            allowed(json!({"names": ["legacy"], "selector": {"matchLabels": {"tenant": "blue"}}}));
        assert!(a.allows("legacy", &labels(&[])));
        assert!(!a.needs_labels("legacy"));
        assert!(a.allows("other", &labels(&[("tenant", "blue")])));
        assert!(!a.allows("other", &labels(&[])));
    }

    #[test]
    fn set_but_empty_allows_none_and_an_empty_selector_allows_all() {
        let none = allowed(json!({}));
        assert!(!none.allows("team-a", &labels(&[("tenant", "blue")])));
        let none = allowed(json!({"names": []}));
        assert!(!none.allows("team-a", &labels(&[])));
        let all = allowed(json!({"selector": {}}));
        assert!(all.allows("team-a", &labels(&[])));
    }
}
