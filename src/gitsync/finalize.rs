//! Deleting a GitSync: its finalizer, and what happens to its inventory.
//! With `prune: true` the inventory is deleted (reverse stage order, as
//! prune does); with `prune: false`, and for what opted out with
//! `driftless.dev/prune: disabled`, the objects are orphaned: the owner
//! labels go, so that nothing later prunes them.

use std::collections::BTreeMap;

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use super::apply::{api_for, Kinds, Owner};
use super::{GitSync, InventoryEntry, LABEL_NAME, LABEL_NAMESPACE};
use crate::FINALIZER;

/// How many waited-on objects the Ready message names (the count says the rest).
const NAMED: usize = 5;

pub(super) fn has_finalizer(gs: &GitSync) -> bool {
    gs.finalizers().iter().any(|f| f == FINALIZER)
}

pub(super) async fn add_finalizer(api: &Api<GitSync>, gs: &GitSync) -> Result<(), kube::Error> {
    let patch = if gs.finalizers().is_empty() {
        json!([{ "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] }])
    } else {
        json!([{ "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER }])
    };
    json_patch(api, gs, patch).await
}

pub(super) async fn remove_finalizer(api: &Api<GitSync>, gs: &GitSync) -> Result<(), kube::Error> {
    let Some(index) = gs.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    // Test before remove: never drop someone else's finalizer by index.
    let patch = json!([
        { "op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER },
        { "op": "remove", "path": format!("/metadata/finalizers/{index}") },
    ]);
    match json_patch(api, gs, patch).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    }
}

async fn json_patch(api: &Api<GitSync>, gs: &GitSync, patch: Value) -> Result<(), kube::Error> {
    let patch: json_patch::Patch = serde_json::from_value(patch).expect("a valid JSON patch");
    api.patch(
        &gs.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await?;
    Ok(())
}

/// Removes the owner labels from those of `entries` that still carry this
/// GitSync's; returns them. Gone or relabelled objects are left alone.
pub(super) async fn orphan(
    client: &kube::Client,
    kinds: &Kinds,
    entries: &[InventoryEntry],
    owner: &Owner,
) -> Result<Vec<InventoryEntry>, kube::Error> {
    let patch = json!({"metadata": {"labels": {LABEL_NAME: null, LABEL_NAMESPACE: null}}});
    let mut orphaned = Vec::new();
    for e in entries {
        let Some((resource, namespaced)) = kinds.resolve(client, &e.api_version, &e.kind).await?
        else {
            continue;
        };
        let api = api_for(client, &resource, namespaced, &e.namespace);
        let Some(live) = api.get_opt(&e.name).await? else {
            continue;
        };
        if !owner.owns(&live) {
            continue;
        }
        match api
            .patch(&e.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => orphaned.push(e.clone()),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => return Err(err),
        }
    }
    Ok(orphaned)
}

/// What deletion still waits on, for the Ready message: counted by kind,
/// the first few named, each with its own Ready message when it says why
/// (a managed resource whose cloud deletion waits).
pub(super) async fn waiting_on(
    client: &kube::Client,
    kinds: &Kinds,
    pending: &[InventoryEntry],
) -> String {
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for e in pending {
        *by_kind.entry(e.kind.as_str()).or_default() += 1;
    }
    let counts: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let mut named = Vec::new();
    for e in pending.iter().take(NAMED) {
        match why_not_gone(client, kinds, e).await {
            Some(why) => named.push(format!("{e} ({why})")),
            None => named.push(e.to_string()),
        }
    }
    let more = pending.len().saturating_sub(NAMED);
    let more = if more > 0 {
        format!(", and {more} more")
    } else {
        String::new()
    };
    format!(
        "deleting its inventory: waiting for {} object{} ({}): {}{more}",
        pending.len(),
        if pending.len() == 1 { "" } else { "s" },
        counts.join(", "),
        named.join(", ")
    )
}

/// An object's own account of why it is not gone yet: its Ready
/// condition's message while that is False; else that a later stage waits.
async fn why_not_gone(client: &kube::Client, kinds: &Kinds, e: &InventoryEntry) -> Option<String> {
    let (resource, namespaced) = kinds
        .resolve(client, &e.api_version, &e.kind)
        .await
        .ok()??;
    let live = api_for(client, &resource, namespaced, &e.namespace)
        .get_opt(&e.name)
        .await
        .ok()??;
    if live.metadata.deletion_timestamp.is_none() {
        return Some("deleted once the objects before it are gone".into());
    }
    let conditions = live.data["status"]["conditions"].as_array()?;
    let ready = conditions
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "False")?;
    let message = ready["message"].as_str().filter(|m| !m.is_empty())?;
    Some(format!("Ready=False: {message}"))
}
