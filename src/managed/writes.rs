//! What the reconciler writes to an object besides the cloud: its status
//! (once per pass), annotations, the finalizer, the connection Secret.

use std::collections::BTreeMap;

use driftless_provider::{ManagedKind, ManagedStatus, Observation};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::conditions::{self, Cond};
use crate::{FIELD_MANAGER, FINALIZER};
use driftless_provider::CREATE_PENDING;

/// Writes conditions (and `atProvider`, resolved references when given) in one
/// place, and only when something changed.
pub(super) async fn write_status<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    at_provider: Option<K::AtProvider>,
    conds: &[Cond],
    resolved: Option<BTreeMap<String, String>>,
    duplicates: Option<Vec<String>>,
) -> Result<(), kube::Error> {
    let old: ManagedStatus<K::AtProvider> = obj.managed_status().cloned().unwrap_or_default();
    let mut new = old.clone();
    if at_provider.is_some() {
        new.at_provider = at_provider;
    }
    if let Some(r) = resolved {
        new.resolved_references = r;
    }
    if let Some(d) = duplicates {
        new.duplicates = d;
    }
    for c in conds {
        conditions::set(&mut new.conditions, c, obj.meta().generation);
    }
    if new == old {
        return Ok(());
    }
    let patch = json!({ "status": new });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

pub(super) async fn annotate<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    annotations: serde_json::Value,
) -> Result<(), kube::Error> {
    let patch = json!({ "metadata": { "annotations": annotations } });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

pub(super) async fn add_finalizer<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
) -> Result<(), kube::Error> {
    json_patch(api, obj, vec![finalizer_op(obj)]).await
}

/// Before a create, in one write: the finalizer (unless there) and the
/// create-pending mark stamped `now` (unless there).
pub(super) async fn prepare_create<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    finalizer: bool,
    mark: Option<&str>,
) -> Result<(), kube::Error> {
    let mut ops = Vec::new();
    if finalizer {
        ops.push(finalizer_op(obj));
    }
    if let Some(now) = mark {
        ops.push(annotation_op(obj, CREATE_PENDING, now));
    }
    if ops.is_empty() {
        return Ok(());
    }
    json_patch(api, obj, ops).await
}

fn finalizer_op<K: ManagedKind>(obj: &K) -> serde_json::Value {
    if obj.finalizers().is_empty() {
        json!({ "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] })
    } else {
        json!({ "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER })
    }
}

fn annotation_op<K: ManagedKind>(obj: &K, key: &str, value: &str) -> serde_json::Value {
    if obj.meta().annotations.is_none() {
        return json!({ "op": "add", "path": "/metadata/annotations", "value": { key: value } });
    }
    // RFC 6901: `~` and `/` in a key are escaped.
    let key = key.replace('~', "~0").replace('/', "~1");
    json!({ "op": "add", "path": format!("/metadata/annotations/{key}"), "value": value })
}

async fn json_patch<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    ops: Vec<serde_json::Value>,
) -> Result<(), kube::Error> {
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).expect("a valid JSON patch");
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await?;
    Ok(())
}

pub(super) async fn remove_finalizer<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
) -> Result<(), kube::Error> {
    let Some(index) = obj.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    // Test before remove: never drop someone else's finalizer by index.
    let patch: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER },
        { "op": "remove", "path": format!("/metadata/finalizers/{index}") },
    ]))
    .expect("a valid JSON patch");
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `writeConnectionSecretToRef`: ids, arn, endpoint for apps to mount.
pub(super) async fn write_connection_secret<K: ManagedKind>(
    client: &kube::Client,
    obj: &K,
    observed: &Observation<K>,
) -> Result<(), kube::Error> {
    let Some(secret_ref) = &obj.managed().write_connection_secret_to_ref else {
        return Ok(());
    };
    if observed.connection_details.is_empty() {
        return Ok(());
    }
    let ns = obj.namespace().unwrap_or_default();
    let owner = OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: obj.name_any(),
        uid: obj.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let data: BTreeMap<String, ByteString> = observed
        .connection_details
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
        .collect();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(secret_ref.name.clone()),
            namespace: Some(ns.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(data),
        type_: Some("connection.driftless.dev/v1alpha1".into()),
        ..Default::default()
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    // Apply is idempotent: an unchanged secret is not rewritten.
    api.patch(
        &secret_ref.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await?;
    Ok(())
}
