//! The state of a GitSync or a managed resource as a tree, read from the
//! cluster: a GitSync, its objects by stage, and for each managed resource
//! its conditions, external name, cloud state and the objects its
//! references point at (Instance -> Subnet -> Vpc). `driftless tree`
//! prints it; the model is plain data, so other views can show it too.

mod gather;

use serde::Serialize;
use serde_json::Value;

pub use gather::{read, Root};

/// One object of the tree.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub api_version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
    /// For a reference: the field of the parent that points here (`vpcId`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Healthy itself (its children aside).
    pub healthy: bool,
    /// `Ready` and `Synced` status (`True`, `False`, `Unknown`), for
    /// GitSyncs and managed resources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synced: Option<String>,
    /// A GitSync's applied revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// A managed resource's cloud id (`driftless.dev/external-name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    /// What the cloud says of it (`status.atProvider.state`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_state: Option<String>,
    /// Why it is not healthy (the failing condition's reason and message),
    /// or a GitSync's Ready message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A GitSync's objects, by the stage they are applied in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
    /// The objects this one's references point at.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Node>,
}

/// A GitSync's objects of one stage.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Stage {
    pub name: String,
    pub objects: Vec<Node>,
}

impl Node {
    /// It and everything below it are healthy.
    pub fn all_healthy(&self) -> bool {
        self.healthy
            && self.references.iter().all(Node::all_healthy)
            && self
                .stages
                .iter()
                .flat_map(|s| &s.objects)
                .all(Node::all_healthy)
    }

    /// `Kind namespace/name` (or `Kind name`).
    pub fn title(&self) -> String {
        match self.namespace.as_str() {
            "" => format!("{} {}", self.kind, self.name),
            ns => format!("{} {ns}/{}", self.kind, self.name),
        }
    }

    /// The node for a live object: conditions, external name, cloud state
    /// and health read from it (references are added by the caller).
    pub fn of(obj: &Value, managed: bool) -> Self {
        let meta = &obj["metadata"];
        let text = |v: &Value| v.as_str().map(str::to_string);
        let ready = condition(obj, "Ready");
        let synced = condition(obj, "Synced");
        let is_gitsync = obj["kind"] == "GitSync" && obj["apiVersion"] == "driftless.dev/v1alpha1";
        let (healthy, message) = if is_gitsync {
            let ok = ready.is_some_and(|c| c["status"] == "True");
            (ok, ready.and_then(|c| text(&c["message"])))
        } else if managed {
            let failing = [ready, synced]
                .into_iter()
                .flatten()
                .find(|c| c["status"] != "True");
            let ok = crate::gitsync::health::not_ready(obj, true).is_none() && failing.is_none();
            let why = failing.map(describe).or_else(|| {
                (!ok).then(|| crate::gitsync::health::not_ready(obj, true).unwrap_or_default())
            });
            (ok, why)
        } else {
            let why = crate::gitsync::health::not_ready(obj, true);
            (why.is_none(), why)
        };
        Self {
            api_version: obj["apiVersion"].as_str().unwrap_or_default().to_string(),
            kind: obj["kind"].as_str().unwrap_or_default().to_string(),
            namespace: meta["namespace"].as_str().unwrap_or_default().to_string(),
            name: meta["name"].as_str().unwrap_or_default().to_string(),
            via: None,
            healthy,
            ready: (is_gitsync || managed).then(|| status_of(ready)),
            synced: managed.then(|| status_of(synced)),
            revision: text(&obj["status"]["lastAppliedRevision"]),
            external_name: text(&meta["annotations"]["driftless.dev/external-name"]),
            cloud_state: text(&obj["status"]["atProvider"]["state"]),
            message,
            stages: Vec::new(),
            references: Vec::new(),
        }
    }

    /// A node for an object that should exist and does not.
    pub fn missing(api_version: &str, kind: &str, namespace: &str, name: &str, why: &str) -> Self {
        Self {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            via: None,
            healthy: false,
            ready: None,
            synced: None,
            revision: None,
            external_name: None,
            cloud_state: None,
            message: Some(why.into()),
            stages: Vec::new(),
            references: Vec::new(),
        }
    }
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn status_of(c: Option<&Value>) -> String {
    c.and_then(|c| c["status"].as_str())
        .unwrap_or("Unknown")
        .to_string()
}

/// `ReferenceNotReady: vpcRef: Vpc main is not Ready` (the condition's
/// type and status are shown beside it).
fn describe(c: &Value) -> String {
    let s = |k: &str| c[k].as_str().unwrap_or_default();
    format!("{}: {}", s("reason"), s("message"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bucket(ready: &str, synced: &str, message: &str) -> Value {
        json!({
            "apiVersion": "aws.driftless.dev/v1alpha1", "kind": "Bucket",
            "metadata": {"name": "b", "namespace": "web", "generation": 1,
                         "annotations": {"driftless.dev/external-name": "b-123"}},
            "spec": {"forProvider": {}},
            "status": {"conditions": [
                {"type": "Ready", "status": ready, "reason": "Available", "message": "", "observedGeneration": 1},
                {"type": "Synced", "status": synced, "reason": "ReconcileError", "message": message},
            ]},
        })
    }

    #[test]
    fn a_managed_resource_is_healthy_when_ready_and_synced() {
        let n = Node::of(&bucket("True", "True", ""), true);
        assert!(n.healthy && n.message.is_none(), "{n:?}");
        assert_eq!(n.external_name.as_deref(), Some("b-123"));
        let n = Node::of(&bucket("True", "False", "access denied"), true);
        assert!(!n.healthy);
        assert_eq!(n.message.as_deref(), Some("ReconcileError: access denied"));
    }

    #[test]
    fn an_unhealthy_reference_makes_the_tree_unhealthy() {
        let mut root = Node::of(&bucket("True", "True", ""), true);
        assert!(root.all_healthy());
        root.references
            .push(Node::missing("v1", "ConfigMap", "web", "x", "not found"));
        assert!(!root.all_healthy());
        assert_eq!(root.title(), "Bucket web/b");
    }
}
