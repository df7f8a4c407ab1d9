//! Applying a revision: map each manifest to its API resource (discovery),
//! server-side dry-run, server-side apply in stages, and prune.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::Scope;
use kube::runtime::{conditions, wait::await_condition};
use kube::{Api, ResourceExt};
use serde_json::Value;

use super::{InventoryEntry, LABEL_NAME, LABEL_NAMESPACE};
use crate::manifests::{Manifest, ManifestError, Origin};
use crate::FIELD_MANAGER;

/// API calls in flight at once while applying one revision.
const PARALLEL: usize = 8;
/// How long a discovered kind is trusted before it is looked up again.
const KIND_TTL: Duration = Duration::from_secs(300);

/// The order objects are applied in (and pruned in, reversed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Namespaces and CRDs: what other objects live in or are made of.
    Foundation,
    /// ProviderConfigs: what managed resources need to reach their cloud.
    ProviderConfigs,
    Rest,
}

pub fn stage_of(api_version: &str, kind: &str) -> Stage {
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    match (group, kind) {
        ("", "Namespace") | ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            Stage::Foundation
        }
        _ if crate::registry::is_provider_config(api_version, kind) => Stage::ProviderConfigs,
        _ => Stage::Rest,
    }
}

/// Which GitSync applies: its namespace and name, as on the labels.
#[derive(Clone, Debug)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    /// `spec.targetNamespace`: every namespaced object goes there.
    pub target_namespace: Option<String>,
}

impl Owner {
    /// Where a namespaced object goes: the target namespace, else the one
    /// it names (`written`), else the GitSync's.
    pub fn namespace_for<'a>(&'a self, written: Option<&'a str>) -> &'a str {
        self.target_namespace
            .as_deref()
            .or(written.filter(|s| !s.is_empty()))
            .unwrap_or(&self.namespace)
    }

    /// Whether `entry` is this GitSync itself (one that applies itself).
    pub fn is(&self, entry: &InventoryEntry) -> bool {
        entry.kind == "GitSync"
            && entry.api_version.starts_with("driftless.dev/")
            && entry.namespace == self.namespace
            && entry.name == self.name
    }

    pub(crate) fn owns(&self, obj: &DynamicObject) -> bool {
        let labels = obj.labels();
        labels.get(LABEL_NAME) == Some(&self.name)
            && labels.get(LABEL_NAMESPACE) == Some(&self.namespace)
    }
}

/// apiVersion and kind.
type KindKey = (String, String);
/// The resource, whether it is namespaced, and when it was looked up.
type Discovered = (ApiResource, bool, Instant);

/// Discovery results, cached.
#[derive(Default)]
pub struct Kinds {
    cache: Mutex<HashMap<KindKey, Discovered>>,
}

impl Kinds {
    /// The resource serving `kind` of `api_version` and whether it is
    /// namespaced; `None` if the cluster serves no such kind.
    pub async fn resolve(
        &self,
        client: &kube::Client,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<(ApiResource, bool)>, kube::Error> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some((ar, namespaced, at)) = self.cache.lock().expect("kinds poisoned").get(&key) {
            if at.elapsed() < KIND_TTL {
                return Ok(Some((ar.clone(), *namespaced)));
            }
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        match kube::discovery::pinned_kind(client, &gvk).await {
            Ok((ar, caps)) => {
                let namespaced = caps.scope == Scope::Namespaced;
                self.cache
                    .lock()
                    .expect("kinds poisoned")
                    .insert(key, (ar.clone(), namespaced, Instant::now()));
                Ok(Some((ar, namespaced)))
            }
            Err(kube::Error::Discovery(_)) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Forgets every kind (after CRDs changed).
    pub fn forget(&self) {
        self.cache.lock().expect("kinds poisoned").clear();
    }
}

/// One object of a revision, ready to send.
#[derive(Clone, Debug)]
pub struct Planned {
    pub origin: Origin,
    pub entry: InventoryEntry,
    pub stage: Stage,
    pub resource: ApiResource,
    pub namespaced: bool,
    pub object: DynamicObject,
}

impl Planned {
    pub fn api(&self, client: &kube::Client) -> Api<DynamicObject> {
        api_for(
            client,
            &self.resource,
            self.namespaced,
            &self.entry.namespace,
        )
    }
}

pub(super) fn api_for(
    client: &kube::Client,
    resource: &ApiResource,
    namespaced: bool,
    namespace: &str,
) -> Api<DynamicObject> {
    if namespaced {
        Api::namespaced_with(client.clone(), namespace, resource)
    } else {
        Api::all_with(client.clone(), resource)
    }
}

/// What went wrong while applying.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The revision is at fault (unknown kind, refused by the server): not
    /// worth retrying before the revision or the cluster changes.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// The API server refused an object (schema, CEL rule, admission): the
    /// revision is at fault too, and the message names the object.
    #[error("{0}")]
    Refused(ManifestError),
    /// The API server could not be reached or failed: retry.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Whether one of `manifests` is a CRD that defines `kind` in `group`.
fn defined_by_crd(manifests: &[Manifest], group: &str, kind: &str) -> bool {
    manifests.iter().any(|m| {
        m.kind() == "CustomResourceDefinition"
            && m.group() == "apiextensions.k8s.io"
            && m.value["spec"]["group"].as_str() == Some(group)
            && m.value["spec"]["names"]["kind"].as_str() == Some(kind)
    })
}

/// Resolves every manifest. Kinds that a CRD of the same revision defines and
/// the cluster does not serve yet come back unresolved, to be planned once
/// the CRDs are established.
/// `all` is the whole revision, where CRDs are looked for.
pub async fn plan(
    client: &kube::Client,
    kinds: &Kinds,
    these: &[Manifest],
    all: &[Manifest],
    owner: &Owner,
) -> Result<(Vec<Planned>, Vec<Manifest>), ApplyError> {
    let mut planned = Vec::new();
    let mut later = Vec::new();
    for m in these {
        match kinds.resolve(client, m.api_version(), m.kind()).await? {
            Some((resource, namespaced)) => planned.push(prepare(m, resource, namespaced, owner)?),
            None if defined_by_crd(all, m.group(), m.kind()) => later.push(m.clone()),
            None => {
                return Err(ManifestError::new(
                    &m.origin,
                    format!(
                        "the cluster serves no kind {} in {} (is its CRD installed?)",
                        m.kind(),
                        m.api_version()
                    ),
                )
                .into())
            }
        }
    }
    Ok((planned, later))
}

/// The object as it is sent: namespace defaulted to the GitSync's (or
/// dropped for cluster-scoped kinds, as kubectl does) and the owner labels set.
fn prepare(
    m: &Manifest,
    resource: ApiResource,
    namespaced: bool,
    owner: &Owner,
) -> Result<Planned, ManifestError> {
    let mut value = m.value.clone();
    let meta = value["metadata"]
        .as_object_mut()
        .expect("load checked metadata is a mapping");
    let namespace = if namespaced {
        let ns = owner
            .namespace_for(meta.get("namespace").and_then(Value::as_str))
            .to_string();
        meta.insert("namespace".into(), Value::String(ns.clone()));
        ns
    } else {
        meta.remove("namespace");
        String::new()
    };
    let labels = meta
        .entry("labels")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(labels) = labels.as_object_mut() else {
        return Err(ManifestError::new(
            &m.origin,
            "metadata.labels is not a mapping",
        ));
    };
    labels.insert(LABEL_NAME.into(), Value::String(owner.name.clone()));
    labels.insert(
        LABEL_NAMESPACE.into(),
        Value::String(owner.namespace.clone()),
    );
    let object: DynamicObject = serde_json::from_value(value)
        .map_err(|e| ManifestError::new(&m.origin, format!("not a Kubernetes object: {e}")))?;
    Ok(Planned {
        origin: m.origin.clone(),
        entry: InventoryEntry {
            api_version: m.api_version().to_string(),
            kind: m.kind().to_string(),
            namespace,
            name: m.name().to_string(),
        },
        stage: stage_of(m.api_version(), m.kind()),
        resource,
        namespaced,
        object,
    })
}

fn rejected(p: &Planned, e: kube::Error, verb: &str) -> ApplyError {
    match e {
        kube::Error::Api(s) if (400..500).contains(&s.code) && s.code != 429 => {
            ApplyError::Refused(ManifestError::new(
                &p.origin,
                format!(
                    "{} was refused by the API server ({verb}): {}",
                    p.entry, s.message
                ),
            ))
        }
        e => ApplyError::Kube(e),
    }
}

/// Server-side dry-run of every object: the server validates each (schema,
/// CEL rules, admission) without changing anything. All refusals are listed.
pub async fn dry_run(client: &kube::Client, planned: &[Planned]) -> Result<(), ApplyError> {
    let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    let calls: Vec<_> = planned.iter().map(|p| send(client, p, &params)).collect();
    let results: Vec<Result<Value, ApplyError>> =
        stream::iter(calls).buffered(PARALLEL).collect().await;
    let mut refused = Vec::new();
    for r in results {
        match r {
            Ok(_) => {}
            Err(ApplyError::Refused(m) | ApplyError::Manifest(m)) => refused.push(m),
            Err(e) => return Err(e),
        }
    }
    match refused.len() {
        0 => Ok(()),
        1 => Err(ApplyError::Refused(refused.remove(0))),
        n => {
            let first = refused.remove(0);
            let others: Vec<String> = refused.iter().map(ToString::to_string).collect();
            Err(ApplyError::Refused(ManifestError::new(
                &first.origin,
                format!(
                    "{}; and {} more: {}",
                    first.message,
                    n - 1,
                    others.join("; ")
                ),
            )))
        }
    }
}

/// Server-side apply (field manager `driftless`, force) of one stage's
/// objects; returns each object as the server stored it and, with
/// `detect_changes`, what this apply did to what Git sets (the object is
/// read just before). Without, [`Change::Unchanged`].
pub async fn apply(
    client: &kube::Client,
    planned: &[&Planned],
    detect_changes: bool,
) -> Result<Vec<(Value, Change)>, ApplyError> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let calls: Vec<_> = planned
        .iter()
        .map(|p| apply_one(client, p, &params, detect_changes))
        .collect();
    stream::iter(calls).buffered(PARALLEL).try_collect().await
}

async fn apply_one(
    client: &kube::Client,
    p: &Planned,
    params: &PatchParams,
    detect_changes: bool,
) -> Result<(Value, Change), ApplyError> {
    let before = if detect_changes {
        p.api(client)
            .get_opt(&p.entry.name)
            .await?
            .map(|o| serde_json::to_value(o).expect("objects serialize"))
    } else {
        None
    };
    let applied = send(client, p, params).await?;
    let shape = serde_json::to_value(&p.object).expect("objects serialize");
    let change = match before {
        _ if !detect_changes => Change::Unchanged,
        None => Change::Created,
        Some(b) if project(&b, &shape) != project(&applied, &shape) => Change::Configured,
        Some(_) => Change::Unchanged,
    };
    Ok((applied, change))
}

/// The part of `live` that `shape` (what Git says) sets: what a forced
/// apply of `shape` puts back. Others' fields (status, an annotation a
/// controller adds, server defaults) are left out, so that they do not look
/// like drift.
fn project(live: &Value, shape: &Value) -> Value {
    match (live, shape) {
        (Value::Object(l), Value::Object(s)) => Value::Object(
            s.iter()
                .map(|(k, sv)| {
                    (
                        k.clone(),
                        l.get(k).map_or(Value::Null, |lv| project(lv, sv)),
                    )
                })
                .collect(),
        ),
        (Value::Array(l), Value::Array(s)) if l.len() == s.len() => {
            Value::Array(l.iter().zip(s).map(|(lv, sv)| project(lv, sv)).collect())
        }
        _ => live.clone(),
    }
}

/// One server-side apply (or dry-run), refusals located at the manifest.
async fn send(
    client: &kube::Client,
    p: &Planned,
    params: &PatchParams,
) -> Result<Value, ApplyError> {
    let verb = if params.dry_run { "dry-run" } else { "apply" };
    let applied = p
        .api(client)
        .patch(&p.entry.name, params, &Patch::Apply(&p.object))
        .await
        .map_err(|e| rejected(p, e, verb))?;
    Ok(serde_json::to_value(applied).expect("objects serialize"))
}

/// The Namespaces that `planned` creates and the cluster does not have yet.
pub async fn missing_namespaces(
    client: &kube::Client,
    planned: &[Planned],
) -> Result<HashSet<String>, ApplyError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut missing = HashSet::new();
    for p in planned {
        if p.entry.kind != "Namespace" || p.entry.api_version != "v1" {
            continue;
        }
        // A GitSync's identity that may not read it may not make it either.
        let found = api
            .get_opt(&p.entry.name)
            .await
            .map_err(|e| rejected(p, e, "get"))?;
        if found.is_none() {
            missing.insert(p.entry.name.clone());
        }
    }
    Ok(missing)
}

/// Waits until every CRD in `planned` is established, or `timeout`.
pub async fn wait_established(
    client: &kube::Client,
    planned: &[&Planned],
    timeout: Duration,
) -> Result<(), ApplyError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for p in planned
        .iter()
        .filter(|p| p.entry.kind == "CustomResourceDefinition")
    {
        let wait = await_condition(api.clone(), &p.entry.name, conditions::is_crd_established());
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(ManifestError::new(
                    &p.origin,
                    format!("waiting for {} to be established: {e}", p.entry),
                )
                .into())
            }
            Err(_) => {
                return Err(ManifestError::new(
                    &p.origin,
                    format!("{} was not established within {timeout:?}", p.entry),
                )
                .into())
            }
        }
    }
    Ok(())
}

/// How long a kind whose CRD was just established may take to be served.
const DISCOVERY_WAIT: Duration = Duration::from_secs(30);

/// What one apply did to an object, as Flux's change set says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Created,
    Configured,
    Unchanged,
}

/// One applied object: its plan, the object the server returned, and
/// what the apply did to it.
pub struct Applied {
    pub planned: Planned,
    pub live: Value,
    pub change: Change,
}

impl Applied {
    /// Whether the apply wrote anything Git sets.
    pub fn changed(&self) -> bool {
        self.change != Change::Unchanged
    }
}

/// Plans and applies `manifests` stage by stage. With `atomic`, every object
/// is dry-run first and nothing is applied unless all pass; objects that
/// can only be dry-run once this revision's new Namespaces and CRDs exist
/// are dry-run right after those are applied, before anything else is.
pub async fn revision(
    client: &kube::Client,
    kinds: &Kinds,
    manifests: &[Manifest],
    owner: &Owner,
    atomic: bool,
    timeout: Duration,
) -> Result<Vec<Applied>, ApplyError> {
    let (planned, later) = plan(client, kinds, manifests, manifests, owner).await?;
    // Objects in a Namespace this revision creates: the server refuses any
    // request for them, dry-run included, until that Namespace exists.
    let new_namespaces = missing_namespaces(client, &planned).await?;
    let (mut planned, mut deferred): (Vec<Planned>, Vec<Planned>) = planned
        .into_iter()
        .partition(|p| !(p.namespaced && new_namespaces.contains(&p.entry.namespace)));
    if atomic {
        dry_run(client, &planned).await?;
    }
    let mut applied = Vec::new();
    for stage in [Stage::Foundation, Stage::ProviderConfigs, Stage::Rest] {
        if stage == Stage::ProviderConfigs && !later.is_empty() {
            deferred.extend(served_later(client, kinds, &later, manifests, owner, timeout).await?);
        }
        if stage == Stage::ProviderConfigs && !deferred.is_empty() {
            if atomic {
                dry_run(client, &deferred).await?;
            }
            planned.append(&mut deferred);
        }
        let these: Vec<&Planned> = planned.iter().filter(|p| p.stage == stage).collect();
        // Every apply tells what it changed: drift put back on a re-apply,
        // the change set (status.history) of a new revision.
        let objects = apply(client, &these, true).await?;
        if stage == Stage::Foundation {
            wait_established(client, &these, timeout).await?;
        }
        applied.extend(
            these
                .into_iter()
                .zip(objects)
                .map(|(p, (live, change))| Applied {
                    planned: p.clone(),
                    live,
                    change,
                }),
        );
    }
    Ok(applied)
}

/// Plans the objects of kinds whose CRDs this revision brings: established
/// now, and served once the API server's discovery has caught up (it lags
/// the Established condition by a moment).
async fn served_later(
    client: &kube::Client,
    kinds: &Kinds,
    later: &[Manifest],
    manifests: &[Manifest],
    owner: &Owner,
    timeout: Duration,
) -> Result<Vec<Planned>, ApplyError> {
    let since = Instant::now();
    let (more, unserved) = loop {
        kinds.forget();
        let (more, unserved) = plan(client, kinds, later, manifests, owner).await?;
        if unserved.is_empty() || since.elapsed() >= timeout.min(DISCOVERY_WAIT) {
            break (more, unserved);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if let Some(m) = unserved.first() {
        return Err(ManifestError::new(
            &m.origin,
            format!(
                "its CRD is established, but the cluster serves no kind {} in {}",
                m.kind(),
                m.api_version()
            ),
        )
        .into());
    }
    Ok(more)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(v: Value) -> Manifest {
        Manifest::new(Origin::at("f.yaml", 1, 1), v, Default::default())
    }

    #[test]
    fn projection_keeps_only_what_git_sets() {
        let shape = json!({"metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 3, "containers": [{"name": "web", "image": "web:v1"}]}});
        let live = json!({"metadata": {"name": "web", "resourceVersion": "9",
                "labels": {"app": "web", "other": "x"}, "annotations": {"a": "b"}},
            "spec": {"replicas": 3, "paused": false,
                "containers": [{"name": "web", "image": "web:v1", "imagePullPolicy": "IfNotPresent"}]},
            "status": {"ready": 1}});
        assert_eq!(project(&live, &shape), shape);
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(1);
        assert_ne!(project(&scaled, &shape), shape);
        let mut more = live.clone();
        more["spec"]["containers"] = json!([{"name": "web", "image": "web:v1"}, {"name": "x"}]);
        assert_ne!(project(&more, &shape), shape);
        let mut unlabelled = live;
        unlabelled["metadata"]["labels"] = json!({"other": "x"});
        assert_ne!(project(&unlabelled, &shape), shape);
    }

    #[test]
    fn stages_order_foundation_then_provider_configs() {
        assert_eq!(stage_of("v1", "Namespace"), Stage::Foundation);
        assert_eq!(
            stage_of("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            Stage::Foundation
        );
        assert_eq!(
            stage_of("driftless.dev/v1alpha1", "ProviderConfig"),
            Stage::ProviderConfigs
        );
        assert_eq!(
            stage_of("example.com/v1", "ProviderConfig"),
            Stage::Rest,
            "another group's ProviderConfig is not ours"
        );
        assert_eq!(stage_of("apps/v1", "Deployment"), Stage::Rest);
        assert!(Stage::Foundation < Stage::ProviderConfigs && Stage::ProviderConfigs < Stage::Rest);
    }

    #[test]
    fn prepare_defaults_namespace_and_labels_the_owner() {
        let owner = Owner {
            namespace: "team".into(),
            name: "apps".into(),
            target_namespace: None,
        };
        let cm = manifest(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "b"}}}),
        );
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
        let p = prepare(&cm, ar.clone(), true, &owner).unwrap();
        assert_eq!(p.entry.namespace, "team");
        assert_eq!(p.object.metadata.namespace.as_deref(), Some("team"));
        let labels = p.object.labels();
        assert_eq!(labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(labels.get(LABEL_NAME).map(String::as_str), Some("apps"));
        assert_eq!(
            labels.get(LABEL_NAMESPACE).map(String::as_str),
            Some("team")
        );

        let ns = manifest(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "namespace": "x"}}),
        );
        let p = prepare(&ns, ar, false, &owner).unwrap();
        assert_eq!(p.entry.namespace, "");
        assert_eq!(p.object.metadata.namespace, None);
        assert_eq!(p.stage, Stage::Foundation);
    }

    #[test]
    fn crds_of_the_revision_are_recognised() {
        let crd = manifest(
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"kind": "Widget", "plural": "widgets"}}}),
        );
        assert!(defined_by_crd(
            std::slice::from_ref(&crd),
            "example.com",
            "Widget"
        ));
        assert!(!defined_by_crd(&[crd], "example.com", "Gadget"));
    }
}
