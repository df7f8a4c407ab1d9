//! GitSync (driftless.dev/v1alpha1, namespaced): applies a path of a Git
//! repository to the cluster, apps and infrastructure alike, and keeps it so.
//!
//! The pipeline, one module a step (see [`controller`] for the order):
//! - `source`: git2 into a bare cache; a cheap ref listing before any fetch;
//! - render (in [`crate::render`]): a revision's path to objects (plain YAML,
//!   kustomize or helm), each object with its file:line;
//! - `apply`: discovery, server-side dry-run of everything, then server-side
//!   apply in stages (Namespaces and CRDs, ProviderConfigs, the rest);
//! - `rollout`: a digest of the configuration each workload uses on its
//!   pod template, so that changed configuration rolls it;
//! - `prune`: what the inventory has and the revision no longer does;
//! - `health`: when an applied object is ready;
//! - `depends`: `spec.dependsOn`, Ready dependencies before a new revision;
//! - `finalize`: on deletion, the inventory is deleted or orphaned;
//! - `cluster`: this cluster or another (`spec.kubeConfig`), each with its
//!   discovery cache, self-heal watches and impersonating clients;
//! - `controller`: the named steps, the one status write, events, self-heal watches;
//! - `webhook`: a signed push asks for a sync now.

pub mod apply;
pub mod cluster;
mod context;
pub mod controller;
mod depends;
mod finalize;
pub mod health;
mod impersonate;
pub(crate) mod pass;
pub mod prune;
pub mod rollout;
pub mod source;
pub mod webhook;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use controller::run;

/// Labels on every object a GitSync applied: which GitSync owns it.
pub const LABEL_NAME: &str = "driftless.dev/gitsync-name";
pub const LABEL_NAMESPACE: &str = "driftless.dev/gitsync-namespace";
/// `driftless.dev/prune: disabled` on an object keeps it when it leaves Git.
pub const PRUNE: &str = "driftless.dev/prune";
/// Any new value triggers a sync at once (e.g. `date +%s`).
pub const REQUESTED_AT: &str = "driftless.dev/requested-at";

/// Which commit to apply: a branch (default `main`), a tag, or a commit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.branch) ? 1 : 0) + (has(self.tag) ? 1 : 0) + (has(self.commit) ? 1 : 0) <= 1",
     "message": "set at most one of branch, tag and commit"}
]))]
pub struct GitRef {
    /// Follow this branch (default `main` when nothing is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub branch: Option<String>,
    /// Apply this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub tag: Option<String>,
    /// Apply exactly this commit (40 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{40}$"))]
    pub commit: Option<String>,
}

/// A Secret in the GitSync's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    pub name: String,
}

/// `spec.decryption`: SOPS with age.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decryption {
    /// `sops` (the only one).
    pub provider: DecryptionProvider,
    /// A Secret whose keys ending in `.agekey` are age identities.
    pub secret_ref: SecretRef,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DecryptionProvider {
    Sops,
}

fn default_interval() -> String {
    "1m".into()
}

/// Applies a path of a Git repository to the cluster and keeps it applied.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "driftless.dev",
    version = "v1alpha1",
    kind = "GitSync",
    namespaced,
    status = "GitSyncStatus",
    derive = "PartialEq",
    category = "driftless",
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"REVISION","type":"string","jsonPath":".status.lastAppliedRevision"}"#,
    printcolumn = r#"{"name":"STATUS","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 63").message("a GitSync name is at most 63 characters (it is a label value on what it applies)")
)]
#[serde(rename_all = "camelCase")]
pub struct GitSyncSpec {
    /// The repository: `https://...`, `ssh://...` (or `user@host:path`), `file:///...`.
    #[schemars(regex(pattern = r"^(https://|http://|ssh://|file://|[A-Za-z0-9._-]+@[^:/]+:)"))]
    pub url: String,
    /// Branch, tag or commit (default: branch `main`).
    #[serde(default, rename = "ref")]
    pub git_ref: GitRef,
    /// Directory of the repository to apply, recursively (default: all of it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// How often to check for a new revision, re-apply, and prune (default `1m`).
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub interval: String,
    /// Delete objects that a previous revision applied and this one no longer has.
    #[serde(default)]
    pub prune: bool,
    /// Detect new revisions and report OutOfSync, but apply nothing.
    #[serde(default)]
    pub suspend: bool,
    /// Credentials: `token` (or `username` + `password`) for HTTPS;
    /// `identity` + `known_hosts` for SSH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// The Secret whose `token` key verifies Git webhooks sent to
    /// `POST /hooks/<namespace>/<name>` (GitHub's X-Hub-Signature-256 HMAC, or
    /// GitLab's X-Gitlab-Token). Without it, webhooks are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret_ref: Option<SecretRef>,
    /// The ServiceAccount (in the GitSync's namespace) whose rights every
    /// dry-run, apply and prune uses, through impersonation. Default: the
    /// controller's `--default-service-account`, else the controller's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub service_account_name: Option<String>,
    /// Put every namespaced object in this namespace (whatever the files
    /// say), and render charts for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub target_namespace: Option<String>,
    /// Decrypt SOPS-encrypted objects after rendering, with the age
    /// identities of a Secret in the GitSync's namespace (Flux's shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decryption: Option<Decryption>,
    /// How a Helm chart (a path with `Chart.yaml`, or `chart` from a Helm
    /// repository) is rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<crate::render::HelmOptions>,
    /// Limit for fetch, render (a tool still running is killed) and apply, and how long objects may take to become
    /// healthy before the GitSync reports HealthCheckFailed (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
    /// GitSyncs that must be Ready at their latest revision before this one
    /// applies a new revision (Flux's meaning), e.g. infrastructure before apps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependencyRef>,
    /// Apply to another cluster, through the kubeconfig in this Secret of
    /// the GitSync's namespace (Flux's shape). Prune, health and self-heal
    /// act there; the GitSync and its status stay here. The kubeconfig must
    /// carry its credentials inline: `exec`, `auth-provider`, file paths and
    /// `insecure-skip-tls-verify` are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_config: Option<KubeConfigRef>,
}

/// `spec.kubeConfig`: where the other cluster's kubeconfig is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeConfigRef {
    pub secret_ref: KubeConfigSecretRef,
}

/// A Secret in the GitSync's namespace holding a kubeconfig.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct KubeConfigSecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key holding the kubeconfig (default: `value`, else `value.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// Another GitSync, by name; in the same namespace unless `namespace` says.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct DependencyRef {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// One object a GitSync applied.
// Ordered as people read a list of them: kind, namespace, name, apiVersion.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryEntry {
    pub api_version: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

impl Ord for InventoryEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let key = |e: &Self| (e.kind.clone(), e.namespace.clone(), e.name.clone());
        key(self)
            .cmp(&key(other))
            .then_with(|| self.api_version.cmp(&other.api_version))
    }
}

impl PartialOrd for InventoryEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for InventoryEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSyncStatus {
    /// Ready, Reconciling, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The revision whose objects are all applied, e.g. `main@sha1:<sha>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The last revision an apply was tried for (differs from
    /// lastAppliedRevision when it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// The `driftless.dev/requested-at` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,
    /// Every object applied (and not yet pruned).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<InventoryEntry>,
    /// The last time the followed branch or tag was rewritten (a
    /// force-push): the applied commit was not an ancestor of the new one,
    /// which was applied all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_history_rewrite: Option<HistoryRewrite>,
    /// The last revisions applied (at most 10), newest first: what was
    /// applied when, how it went, and what it changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

/// How many applied revisions `status.history` keeps.
pub const HISTORY_LIMIT: usize = 10;

/// One applied revision, as `status.history` records it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// e.g. `main@sha1:<sha>`.
    pub revision: String,
    /// When the pass that applied it started.
    pub started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// How long that pass took to apply and prune, e.g. `1s 250ms`.
    pub duration: String,
    /// `Progressing` until its objects are ready, then
    /// `ReconciliationSucceeded` or `HealthCheckFailed`.
    pub result: String,
    /// Objects that did not exist before.
    pub created: u32,
    /// Objects the apply changed.
    pub configured: u32,
    /// Objects already as Git says.
    pub unchanged: u32,
    /// Objects deleted because the revision no longer has them.
    pub pruned: u32,
}

/// A rewrite of the followed branch's history, as applied.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRewrite {
    /// The revision applied before, no longer in the branch's history.
    pub from: String,
    /// The revision applied instead.
    pub to: String,
    /// When it was applied.
    pub at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// Parses a spec duration (`30s`, `1m`, `1h30m`); the schema already
/// refused anything else.
pub fn duration(s: &str) -> Option<std::time::Duration> {
    humantime::parse_duration(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_of_the_schema_parse() {
        for d in ["30s", "1m", "1h30m", "500ms", "2h"] {
            assert!(duration(d).is_some(), "{d}");
        }
        assert_eq!(duration("1m"), Some(std::time::Duration::from_secs(60)));
    }
}
