//! Resolving references (`vpcRef`, `vpcSelector`, `securityGroupRefs`, ...)
//! to cloud ids: the referenced object must exist, be Ready and carry its
//! external-name annotation. Nothing here knows a kind.

use std::collections::BTreeMap;

use driftless_provider::{RefSource, Reference, EXTERNAL_NAME};
use kube::api::{DynamicObject, ListParams};
use kube::{Api, ResourceExt};

use super::waiters::Awaited;

/// The outcome of resolving every reference of an object.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Field (e.g. `vpcId`) to id; lists are comma-joined.
    Resolved(BTreeMap<String, String>),
    /// Why not yet, naming the reference and its target; and the target
    /// to wait for (`name: None` when no object matches a selector yet).
    NotReady(String, Awaited),
}

/// Resolves `refs` of an object in namespace `ns`.
pub async fn resolve(
    client: &kube::Client,
    ns: &str,
    refs: &[Reference],
) -> Result<Resolution, kube::Error> {
    let mut resolved = BTreeMap::new();
    for r in refs {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &r.target);
        let kind = &r.target.kind;
        let awaiting = |name: Option<String>| Awaited {
            kind: kind.clone(),
            namespace: ns.to_string(),
            name,
        };
        let ids = match &r.source {
            RefSource::Id(id) => vec![id.clone()],
            RefSource::Ids(ids) => ids.clone(),
            RefSource::Names(names) => {
                let mut ids = Vec::new();
                for name in names {
                    let Some(obj) = api.get_opt(name).await? else {
                        return Ok(Resolution::NotReady(
                            format!("{}: {kind} {name} does not exist", r.field),
                            awaiting(Some(name.clone())),
                        ));
                    };
                    match ready_id(&obj, r.value) {
                        Ok(id) => ids.push(id),
                        Err(why) => {
                            return Ok(Resolution::NotReady(
                                format!("{}: {kind} {name} {why}", r.field),
                                awaiting(Some(name.clone())),
                            ))
                        }
                    }
                }
                ids
            }
            RefSource::Selector(labels) => {
                let selector = labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let mut matches = api
                    .list(&ListParams::default().labels(&selector))
                    .await?
                    .items;
                matches.sort_by_key(|o| o.name_any());
                if !r.many {
                    matches.truncate(1);
                }
                if matches.is_empty() {
                    return Ok(Resolution::NotReady(
                        format!("{}: no {kind} matches labels {selector}", r.field),
                        awaiting(None),
                    ));
                }
                let mut ids = Vec::new();
                for obj in &matches {
                    match ready_id(obj, r.value) {
                        Ok(id) => ids.push(id),
                        Err(why) => {
                            return Ok(Resolution::NotReady(
                                format!("{}: {kind} {} {why}", r.field, obj.name_any()),
                                awaiting(Some(obj.name_any())),
                            ))
                        }
                    }
                }
                ids
            }
        };
        resolved.insert(r.field.to_string(), ids.join(","));
    }
    Ok(Resolution::Resolved(resolved))
}

/// The cloud id of a referenced object (or its value at `pointer`), if it
/// is usable.
fn ready_id(obj: &DynamicObject, pointer: Option<&str>) -> Result<String, String> {
    if obj.metadata.deletion_timestamp.is_some() {
        return Err("is being deleted".into());
    }
    let ready = obj.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    if !ready {
        return Err("is not Ready yet".into());
    }
    match pointer {
        None => (obj.annotations().get(EXTERNAL_NAME).cloned())
            .ok_or_else(|| "has no external name yet".into()),
        Some(pointer) => (obj.data.pointer(pointer).and_then(|v| v.as_str()))
            .map(str::to_string)
            .ok_or_else(|| format!("has no {} yet", pointer[1..].replace('/', "."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(ready: &str, external_name: Option<&str>) -> DynamicObject {
        let mut annotations = serde_json::Map::new();
        if let Some(id) = external_name {
            annotations.insert(EXTERNAL_NAME.into(), json!(id));
        }
        serde_json::from_value(json!({
            "apiVersion": "aws.driftless.dev/v1alpha1",
            "kind": "Vpc",
            "metadata": {"name": "main", "annotations": annotations},
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_reference_needs_a_ready_target_with_an_id() {
        let ready = object("True", Some("vpc-1"));
        assert_eq!(ready_id(&ready, None), Ok("vpc-1".to_string()));
        let not_ready = object("False", Some("vpc-1"));
        assert_eq!(ready_id(&not_ready, None), Err("is not Ready yet".into()));
        let unnamed = object("True", None);
        assert_eq!(
            ready_id(&unnamed, None),
            Err("has no external name yet".into())
        );
        // A value read from the object instead (a key pair's name).
        let at = Some("/status/atProvider/keyName");
        assert_eq!(
            ready_id(&ready, at),
            Err("has no status.atProvider.keyName yet".into())
        );
        let mut named = ready.clone();
        named.data["status"]["atProvider"] = serde_json::json!({"keyName": "deploy"});
        assert_eq!(ready_id(&named, at), Ok("deploy".to_string()));
    }
}
