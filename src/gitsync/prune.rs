//! Prune: delete what the previous inventory holds and this revision does
//! not, in reverse stage order, sparing what opted out or changed owner.

use std::collections::BTreeMap;

use kube::api::DeleteParams;
use kube::ResourceExt;

use super::apply::{api_for, stage_of, Kinds, Owner, Stage};
use super::{InventoryEntry, PRUNE};

/// What pruning did with the stale entries.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Deleted now (or already gone).
    pub deleted: Vec<InventoryEntry>,
    /// Still there: being finalized, or waiting for an earlier stage.
    pub pending: Vec<InventoryEntry>,
    /// Kept: opted out with `driftless.dev/prune: disabled`, or no longer
    /// labelled as this GitSync's.
    pub kept: Vec<(InventoryEntry, &'static str)>,
}

/// Deletes `stale` entries in reverse stage order. A later stage (e.g. the
/// ProviderConfig a Bucket's deletion needs) waits until every object of the
/// earlier one is gone.
pub async fn prune(
    client: &kube::Client,
    kinds: &Kinds,
    stale: &[InventoryEntry],
    owner: &Owner,
) -> Result<Pruned, kube::Error> {
    let mut by_stage: BTreeMap<std::cmp::Reverse<Stage>, Vec<&InventoryEntry>> = BTreeMap::new();
    for e in stale {
        by_stage
            .entry(std::cmp::Reverse(stage_of(&e.api_version, &e.kind)))
            .or_default()
            .push(e);
    }
    let mut out = Pruned::default();
    for entries in by_stage.values() {
        if !out.pending.is_empty() {
            out.pending.extend(entries.iter().map(|e| (*e).clone()));
            continue;
        }
        for e in entries {
            let Some((resource, namespaced)) =
                kinds.resolve(client, &e.api_version, &e.kind).await?
            else {
                // The kind is gone, and its objects with it.
                out.deleted.push((*e).clone());
                continue;
            };
            let api = api_for(client, &resource, namespaced, &e.namespace);
            let Some(live) = api.get_opt(&e.name).await? else {
                out.deleted.push((*e).clone());
                continue;
            };
            if !owner.owns(&live) {
                out.kept
                    .push(((*e).clone(), "it is no longer labelled as this GitSync's"));
                continue;
            }
            if live.annotations().get(PRUNE).map(String::as_str) == Some("disabled") {
                out.kept.push((
                    (*e).clone(),
                    "it is annotated driftless.dev/prune: disabled",
                ));
                continue;
            }
            if live.metadata.deletion_timestamp.is_some() {
                out.pending.push((*e).clone());
                continue;
            }
            match api.delete(&e.name, &DeleteParams::background()).await {
                Ok(either) if either.is_left() => out.pending.push((*e).clone()),
                Ok(_) => out.deleted.push((*e).clone()),
                Err(kube::Error::Api(s)) if s.code == 404 => out.deleted.push((*e).clone()),
                Err(err) => return Err(err),
            }
        }
    }
    Ok(out)
}
