//! `spec.dependsOn`: a GitSync applies a new revision only when every
//! GitSync it depends on is Ready at its latest revision (Flux's meaning).
//! A cycle is reported on each of its members, never waited on.

use std::collections::BTreeSet;

use kube::{Api, ResourceExt};

use super::GitSync;
use crate::conditions::READY;

/// A GitSync's namespace and name.
type Ref = (String, String);

/// How many GitSyncs a dependency walk reads at most (a cycle check).
const WALK_LIMIT: usize = 64;

/// Why `gs` may not apply a new revision yet.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NotReady {
    /// Dependencies not Ready (or missing), each with why.
    Waiting(Vec<String>),
    /// `gs` depends on itself, through the chain shown.
    Cycle(String),
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The (namespace, name) of each of `gs`'s dependencies.
fn deps_of(gs: &GitSync) -> Vec<Ref> {
    let own = gs.namespace().unwrap_or_default();
    gs.spec
        .depends_on
        .iter()
        .map(|d| {
            (
                d.namespace.clone().unwrap_or_else(|| own.clone()),
                d.name.clone(),
            )
        })
        .collect()
}

/// What stops `gs` from applying, if anything.
pub(super) async fn not_ready(
    client: &kube::Client,
    gs: &GitSync,
) -> Result<Option<NotReady>, kube::Error> {
    if gs.spec.depends_on.is_empty() {
        return Ok(None);
    }
    let me = key(&gs.namespace().unwrap_or_default(), &gs.name_any());
    if let Some(chain) = cycle(client, gs, &me).await? {
        return Ok(Some(NotReady::Cycle(chain)));
    }
    let mut waiting = Vec::new();
    for (ns, name) in deps_of(gs) {
        let api: Api<GitSync> = Api::namespaced(client.clone(), &ns);
        match api.get_opt(&name).await? {
            None => waiting.push(format!("{} (not found)", key(&ns, &name))),
            Some(dep) => {
                if let Some(why) = unready(&dep) {
                    waiting.push(format!("{} ({why})", key(&ns, &name)));
                }
            }
        }
    }
    Ok((!waiting.is_empty()).then_some(NotReady::Waiting(waiting)))
}

/// Why `dep` is not Ready at its latest revision: Ready=True for its
/// current generation, and the last revision it tried is the one applied.
fn unready(dep: &GitSync) -> Option<String> {
    let status = dep.status.clone().unwrap_or_default();
    let Some(ready) = status.conditions.iter().find(|c| c.type_ == READY) else {
        return Some("not reconciled yet".into());
    };
    if ready.observed_generation != dep.metadata.generation {
        return Some("its latest spec is not reconciled yet".into());
    }
    if ready.status != "True" {
        return Some(format!("Ready=False, {}: {}", ready.reason, ready.message));
    }
    if status.last_applied_revision.is_none()
        || status.last_attempted_revision != status.last_applied_revision
    {
        return Some(format!(
            "its latest revision {} is not applied",
            status.last_attempted_revision.as_deref().unwrap_or("none")
        ));
    }
    None
}

/// A dependency path from `gs` back to `me`, as `a -> b -> a`, if any
/// (depth-first, reading each GitSync once).
async fn cycle(
    client: &kube::Client,
    gs: &GitSync,
    me: &str,
) -> Result<Option<String>, kube::Error> {
    let mut seen = BTreeSet::new();
    // (path so far, GitSyncs still to visit from its end)
    let mut stack: Vec<(Vec<String>, Vec<Ref>)> = vec![(vec![me.to_string()], deps_of(gs))];
    while let Some((path, mut next)) = stack.pop() {
        let Some((ns, name)) = next.pop() else {
            continue;
        };
        stack.push((path.clone(), next));
        let k = key(&ns, &name);
        if k == me {
            let mut chain = path;
            chain.push(k);
            return Ok(Some(chain.join(" -> ")));
        }
        if !seen.insert(k.clone()) || seen.len() > WALK_LIMIT {
            continue;
        }
        let api: Api<GitSync> = Api::namespaced(client.clone(), &ns);
        if let Some(dep) = api.get_opt(&name).await? {
            let mut longer = path;
            longer.push(k);
            stack.push((longer, deps_of(&dep)));
        }
    }
    Ok(None)
}

/// The GitSyncs (of `scope`: one namespace, or all) whose `spec.dependsOn`
/// names `gs`: they may apply now that it is Ready.
pub(super) async fn dependents(
    client: &kube::Client,
    scope: Option<&str>,
    gs: &GitSync,
) -> Result<Vec<Ref>, kube::Error> {
    let me = (gs.namespace().unwrap_or_default(), gs.name_any());
    let api: Api<GitSync> = match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let all = api.list(&Default::default()).await?;
    Ok(all
        .items
        .iter()
        .filter(|other| deps_of(other).contains(&me))
        .map(|other| (other.namespace().unwrap_or_default(), other.name_any()))
        .collect())
}
