//! What the dashboard shows, read from the cluster: every GitSync with its
//! state, history and tree of objects (`crate::tree`), and driftless'
//! recent Events. Plain data; never a Secret's data, never credentials (a
//! source URL is shown without its user:password part).

use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde::Serialize;

use crate::gitsync::pass::reason;
use crate::gitsync::{GitSync, HistoryEntry};
use crate::tree::{self, Node, Root};

/// How many Events the dashboard keeps (newest first).
pub const RECENT_EVENTS: usize = 100;
/// GitSync trees read at once.
const READ_CONCURRENCY: usize = 4;

/// One GitSync as the dashboard shows it.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitSyncView {
    pub namespace: String,
    pub name: String,
    /// The repository, without credentials.
    pub url: String,
    /// `branch main`, `tag v1`, `commit <sha>`.
    pub git_ref: String,
    pub path: String,
    pub suspend: bool,
    /// Ready, OutOfSync, Stalled, Progressing, Failed or Unknown.
    pub status: String,
    /// The Ready condition's reason and message.
    pub reason: String,
    pub message: String,
    pub revision: Option<String>,
    pub attempted_revision: Option<String>,
    /// When the pass that applied the newest history entry started.
    pub last_applied_at: Option<String>,
    pub history: Vec<HistoryEntry>,
    /// Its objects by stage (`driftless tree`'s model), or why it could not be read.
    pub tree: Option<Node>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree_error: Option<String>,
}

/// One Event driftless published.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub time: String,
    /// Normal or Warning.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    /// `Kind namespace/name`, as the tree titles objects.
    pub object: String,
    pub note: String,
    pub count: i32,
}

/// The GitSyncs in `scope` (all namespaces when `None`), sorted by
/// namespace/name, each with its tree.
pub async fn gitsyncs(
    client: &kube::Client,
    scope: Option<&str>,
) -> Result<Vec<GitSyncView>, String> {
    let api: Api<GitSync> = match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing GitSyncs: {e}"))?
        .items;
    list.sort_by_key(|g| (g.namespace().unwrap_or_default(), g.name_any()));
    Ok(futures::stream::iter(list)
        .map(|gs| view(client, gs))
        .buffered(READ_CONCURRENCY)
        .collect()
        .await)
}

async fn view(client: &kube::Client, gs: GitSync) -> GitSyncView {
    let namespace = gs.namespace().unwrap_or_default();
    let name = gs.name_any();
    let root = Root::GitSync {
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let (tree, tree_error) = match tree::read(client, &root).await {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(e)),
    };
    let status = gs.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    let spec = &gs.spec;
    GitSyncView {
        status: state_of(&gs).into(),
        reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        message: ready.map(|c| c.message.clone()).unwrap_or_default(),
        url: without_credentials(&spec.url),
        git_ref: describe_ref(&spec.git_ref),
        path: spec.path.clone(),
        suspend: spec.suspend,
        revision: status.last_applied_revision.clone(),
        attempted_revision: status.last_attempted_revision.clone(),
        last_applied_at: status.history.first().map(|h| h.started_at.0.to_string()),
        history: status.history,
        tree,
        tree_error,
        namespace,
        name,
    }
}

/// The one word the list shows: Stalled and OutOfSync before Ready, as
/// people act on them first.
pub fn state_of(gs: &GitSync) -> &'static str {
    let conds = gs
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let is = |t: &str| conds.iter().any(|c| c.type_ == t && c.status == "True");
    let Some(ready) = conds.iter().find(|c| c.type_ == "Ready") else {
        return "Unknown";
    };
    if is("Stalled") {
        "Stalled"
    } else if ready.reason == reason::OUT_OF_SYNC {
        "OutOfSync"
    } else if ready.status == "True" {
        "Ready"
    } else if is("Reconciling") {
        "Progressing"
    } else {
        "Failed"
    }
}

fn describe_ref(r: &crate::gitsync::GitRef) -> String {
    match (&r.branch, &r.tag, &r.commit) {
        (_, Some(t), _) => format!("tag {t}"),
        (_, _, Some(c)) => format!("commit {c}"),
        (Some(b), _, _) => format!("branch {b}"),
        _ => "branch main".into(),
    }
}

/// `https://user:token@host/x` -> `https://host/x` (a URL may carry a token).
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        // `git@host:path` (scp-like SSH) names a user, never a secret.
        _ => url.to_string(),
    }
}

/// driftless' Events in `scope`, newest first, at most [`RECENT_EVENTS`].
pub async fn events(client: &kube::Client, scope: Option<&str>) -> Result<Vec<EventView>, String> {
    let api: Api<Event> = match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let params = ListParams::default().fields("reportingController=driftless");
    let items: Vec<Event> = api
        .list(&params)
        .await
        .map_err(|e| format!("listing Events: {e}"))?
        .items;
    let mut timed: Vec<_> = items.into_iter().map(event_view).collect();
    timed.sort_by_key(|t| std::cmp::Reverse(t.0));
    timed.truncate(RECENT_EVENTS);
    Ok(timed.into_iter().map(|(_, v)| v).collect())
}

/// The Event's latest time (for sorting), and its view.
fn event_view(e: Event) -> (Option<k8s_openapi::jiff::Timestamp>, EventView) {
    let at = e
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let regarding = e.regarding.unwrap_or_default();
    let (kind, ns, name) = (
        regarding.kind.unwrap_or_default(),
        regarding.namespace.unwrap_or_default(),
        regarding.name.unwrap_or_default(),
    );
    let view = EventView {
        time: at.map(|t| t.to_string()).unwrap_or_default(),
        type_: e.type_.unwrap_or_default(),
        reason: e.reason.unwrap_or_default(),
        object: match ns.as_str() {
            "" => format!("{kind} {name}"),
            ns => format!("{kind} {ns}/{name}"),
        },
        note: e.note.unwrap_or_default(),
        count: e.series.map(|s| s.count).unwrap_or(1).max(1),
    };
    (at, view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            without_credentials("https://bot:ghp_secret@github.example/o/r.git"),
            "https://github.example/o/r.git"
        );
        assert_eq!(
            without_credentials("git@github.example:o/r.git"),
            "git@github.example:o/r.git"
        );
        assert_eq!(without_credentials("file:///srv/repo"), "file:///srv/repo");
    }

    #[test]
    fn out_of_sync_and_stalled_come_before_ready() {
        let gs = |conds: serde_json::Value| -> GitSync {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "driftless.dev/v1alpha1", "kind": "GitSync",
                "metadata": {"name": "a", "namespace": "n"},
                "spec": {"url": "file:///r"},
                "status": {"conditions": conds},
            }))
            .unwrap()
        };
        let c = |t: &str, s: &str, r: &str| {
            serde_json::json!({"type": t, "status": s, "reason": r, "message": "",
                               "lastTransitionTime": "2025-01-01T00:00:00Z"})
        };
        assert_eq!(state_of(&gs(serde_json::json!([]))), "Unknown");
        assert_eq!(
            state_of(&gs(serde_json::json!([c(
                "Ready",
                "True",
                "ReconciliationSucceeded"
            )]))),
            "Ready"
        );
        assert_eq!(
            state_of(&gs(serde_json::json!([c("Ready", "False", "OutOfSync")]))),
            "OutOfSync"
        );
        assert_eq!(
            state_of(&gs(serde_json::json!([
                c("Ready", "False", "DependencyNotReady"),
                c("Stalled", "True", "DependencyNotReady")
            ]))),
            "Stalled"
        );
        assert_eq!(
            state_of(&gs(serde_json::json!([
                c("Ready", "False", "Progressing"),
                c("Reconciling", "True", "Progressing")
            ]))),
            "Progressing"
        );
        assert_eq!(
            state_of(&gs(serde_json::json!([c("Ready", "False", "ApplyFailed")]))),
            "Failed"
        );
    }
}
