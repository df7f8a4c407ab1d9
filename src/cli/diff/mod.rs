//! `driftless diff`: what merging a pull request would change, before it is
//! merged (like `flux diff kustomization` and `argocd app diff`), and what
//! the cloud would see then.
//!
//! The steps: render PATH as a GitSync does (the same loader as `validate`
//! and `build`, and the GitSync's own planning: namespaces, owner labels,
//! the config-hash of workloads) -> validate -> server-side dry-run of each
//! object (field manager `driftless`, forced, as the GitSync applies) ->
//! live object against the dry-run result, per object -> what prune would
//! delete (from the GitSync's `status.inventory`) -> the cloud plan of every
//! managed resource the change touches. Nothing is written anywhere.

pub mod cloud;
pub mod objects;
mod print;
mod revision;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use driftless_provider::calls::CallKey;
use driftless_provider::CallCounter;
use futures::StreamExt;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::Value;

use crate::gitsync::apply::{self, Kinds, Owner, Planned};
use crate::gitsync::{
    cluster, rollout, GitSync, InventoryEntry, LABEL_NAME, LABEL_NAMESPACE, PRUNE,
};
use crate::manifests::{validate, Manifest};
use crate::render::Local;
use crate::FIELD_MANAGER;

pub use print::{markdown, text};

/// What to compare.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Empty with `gitsync`: that GitSync's next revision, from its repository.
    pub paths: Vec<PathBuf>,
    /// The GitSync that applies PATH (namespace, name): its namespace,
    /// targetNamespace and owner labels, and its inventory for prune.
    pub gitsync: Option<(String, String)>,
    /// Where namespaced objects that name none go without `--gitsync`
    /// (default: the kubeconfig's namespace).
    pub namespace: Option<String>,
}

/// What happens to one object in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    /// Pruned: in the GitSync's inventory, no longer in PATH.
    Delete,
}

impl Action {
    pub fn sign(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Delete => '-',
        }
    }
}

/// One object that the change creates, changes or prunes.
#[derive(Clone, Debug)]
pub struct ObjectDiff {
    pub entry: InventoryEntry,
    pub action: Action,
    /// Where it is written (file:line), for what PATH has.
    pub origin: Option<String>,
    /// The unified diff, live against the dry-run result.
    pub diff: String,
    /// Why it was not dry-run, when it was not.
    pub note: Option<String>,
}

/// What prune would do, as far as can be known.
#[derive(Clone, Debug, PartialEq)]
pub enum Prune {
    /// No `--gitsync`: no inventory to compare with.
    Unknown,
    /// The GitSync does not prune (`spec.prune: false`): these stay.
    Off(Vec<InventoryEntry>),
    /// Prune is on: the deletions are in the objects; these are kept.
    On(Vec<(InventoryEntry, &'static str)>),
}

/// Everything `driftless diff` found.
#[derive(Debug)]
pub struct Report {
    /// Created, changed and pruned objects, in the order of PATH (pruned last).
    pub objects: Vec<ObjectDiff>,
    pub unchanged: usize,
    pub prune: Prune,
    pub cloud: Vec<cloud::Line>,
    /// Objects the API server refused, and other problems found on the way.
    pub errors: Vec<String>,
    /// Every cloud API call made, by operation.
    pub calls: BTreeMap<CallKey, u64>,
}

impl Report {
    pub fn has_changes(&self) -> bool {
        !self.objects.is_empty() || self.cloud.iter().any(cloud::Line::is_change)
    }

    /// 0: no difference, 1: differences, 2: an error.
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() || self.cloud.iter().any(|l| l.sign == '!') {
            2
        } else if self.has_changes() {
            1
        } else {
            0
        }
    }

    /// Cloud calls that would change something (none, by design).
    pub fn cloud_writes(&self) -> u64 {
        self.calls
            .iter()
            .filter(|(k, _)| !is_read(&k.operation))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Whether an AWS operation only reads (by the API's naming).
pub fn is_read(operation: &str) -> bool {
    ["Get", "Head", "List", "Describe"]
        .iter()
        .any(|p| operation.starts_with(p))
}

/// Runs the diff. `Err` is the list of problems that stopped it before any
/// object could be compared (broken manifests with file:line, a missing
/// GitSync, an unreachable API server).
pub async fn run(
    client: &kube::Client,
    req: &Request,
    local: &Local,
    calls: Arc<CallCounter>,
) -> Result<Report, Vec<String>> {
    let gs = match &req.gitsync {
        Some((ns, name)) => Some(read_gitsync(client, ns, name).await?),
        None => None,
    };
    let local = local_for(local, gs.as_ref());
    let (manifests, sops) = match &gs {
        Some(gs) if req.paths.is_empty() => load_next(client, gs, &local).await?,
        _ => load(&req.paths, &local).await?,
    };
    // A GitSync applying to another cluster is compared with that cluster.
    let target = match &gs {
        Some(gs) => cluster::client_of(client, gs).await.map_err(|e| vec![e])?,
        None => client.clone(),
    };
    let client = &target;
    let owner = match &gs {
        Some(gs) => Owner {
            namespace: gs.namespace().unwrap_or_default(),
            name: gs.name_any(),
            target_namespace: gs.spec.target_namespace.clone(),
        },
        None => Owner {
            namespace: req
                .namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_string()),
            name: String::new(),
            target_namespace: None,
        },
    };
    let kube_err = |e: kube::Error| vec![format!("Kubernetes API: {e}")];
    // The config-hash a GitSync stamps on workloads is part of what it applies.
    let default_ns = owner.namespace_for(None).to_string();
    let connections = rollout::connection_secrets(client, &manifests, &default_ns)
        .await
        .map_err(kube_err)?;
    let manifests = rollout::stamp(&manifests, &default_ns, &connections).into_owned();
    let kinds = Kinds::default();
    let (mut planned, later) = apply::plan(client, &kinds, &manifests, &manifests, &owner)
        .await
        .map_err(|e| vec![e.to_string()])?;
    if gs.is_none() {
        planned.iter_mut().for_each(unlabel);
    }
    let new_namespaces = apply::missing_namespaces(client, &planned)
        .await
        .map_err(|e| vec![e.to_string()])?;
    let mut report = Report {
        objects: Vec::new(),
        unchanged: 0,
        prune: Prune::Unknown,
        cloud: Vec::new(),
        errors: Vec::new(),
        calls: BTreeMap::new(),
    };
    let mut changes = Vec::new();
    let compared = compare_all(client, &planned, &new_namespaces, gs.is_some(), &sops).await?;
    for result in compared {
        match result {
            Ok(Some((diff, change))) => {
                report.objects.push(diff);
                changes.push(change);
            }
            Ok(None) => report.unchanged += 1,
            Err(e) => report.errors.push(e),
        }
    }
    for m in &later {
        let (diff, change) = unserved(m, &owner);
        report.objects.push(diff);
        changes.push(change);
    }
    let rendered: BTreeSet<InventoryEntry> = planned
        .iter()
        .map(|p| p.entry.clone())
        .chain(report.objects.iter().map(|o| o.entry.clone()))
        .collect();
    if let Some(gs) = &gs {
        report.prune = prune(
            client,
            &kinds,
            gs,
            &owner,
            &rendered,
            &mut report,
            &mut changes,
        )
        .await
        .map_err(kube_err)?;
    }
    let new_pcs = new_provider_configs(&report.objects);
    let providers = crate::registry::Providers::new(calls.clone());
    report.cloud = cloud::plan(client, &providers, &changes, &new_pcs).await;
    report.calls = calls.snapshot();
    Ok(report)
}

async fn read_gitsync(client: &kube::Client, ns: &str, name: &str) -> Result<GitSync, Vec<String>> {
    let api: Api<GitSync> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(gs)) => Ok(gs),
        Ok(None) => Err(vec![format!(
            "--gitsync {ns}/{name}: no such GitSync in the cluster of the current kubeconfig"
        )]),
        Err(e) => Err(vec![format!("--gitsync {ns}/{name}: reading it: {e}")]),
    }
}

/// The render options: the command line's, else the GitSync's `spec.helm`
/// (its release name is the GitSync's name, as the controller renders it).
fn local_for(local: &Local, gs: Option<&GitSync>) -> Local {
    let mut local = local.clone();
    if let Some(gs) = gs {
        let mut helm = local
            .helm
            .clone()
            .or_else(|| gs.spec.helm.clone())
            .unwrap_or_default();
        helm.release_name = helm.release_name.or_else(|| Some(gs.name_any()));
        local.helm = Some(helm);
    }
    local
}

/// By origin (file:line), the objects that SOPS encrypted in Git, as written.
type Sops = HashMap<String, Value>;

/// PATH's objects, rendered, decrypted and valid; else every problem. Also
/// the encrypted objects as written, to mask what was encrypted.
async fn load(paths: &[PathBuf], local: &Local) -> Result<(Vec<Manifest>, Sops), Vec<String>> {
    let (manifests, written, errors, _) = super::commands::load_as_written(paths, local).await;
    checked(manifests, written, errors)
}

/// The GitSync's next revision, as [`load`] gives PATH; says which it is.
async fn load_next(
    client: &kube::Client,
    gs: &GitSync,
    local: &Local,
) -> Result<(Vec<Manifest>, Sops), Vec<String>> {
    let key = format!("{}/{}", gs.namespace().unwrap_or_default(), gs.name_any());
    let (manifests, written, revision) = revision::load(client, gs, local)
        .await
        .map_err(|e| vec![format!("GitSync {key}: its next revision: {e}")])?;
    eprintln!(
        "GitSync {key}: next revision {revision}: {} objects",
        manifests.len()
    );
    checked(manifests, written, Vec::new())
}

/// Valid objects and the SOPS-encrypted ones as written; else every problem.
fn checked(
    manifests: Vec<Manifest>,
    written: Vec<Value>,
    mut errors: Vec<crate::manifests::ManifestError>,
) -> Result<(Vec<Manifest>, Sops), Vec<String>> {
    errors.extend(validate::validate(&manifests, &super::crds::all()));
    if !errors.is_empty() {
        return Err(errors.iter().map(ToString::to_string).collect());
    }
    let sops = manifests
        .iter()
        .zip(written)
        .filter(|(_, w)| w.get("sops").is_some())
        .map(|(m, w)| (m.origin.to_string(), w))
        .collect();
    Ok((manifests, sops))
}

/// Without a GitSync, objects are sent without owner labels.
fn unlabel(p: &mut Planned) {
    if let Some(labels) = p.object.metadata.labels.as_mut() {
        labels.remove(LABEL_NAME);
        labels.remove(LABEL_NAMESPACE);
        if labels.is_empty() {
            p.object.metadata.labels = None;
        }
    }
}

/// Copies the GitSync owner labels of `live` onto `object`.
fn keep_owner_labels(object: &mut DynamicObject, live: &DynamicObject) {
    for key in [LABEL_NAME, LABEL_NAMESPACE] {
        if let Some(v) = live.labels().get(key) {
            object.labels_mut().insert(key.to_string(), v.clone());
        }
    }
}

/// One object's diff (`None` when unchanged), or the API server's refusal.
type Compared = Result<Option<(ObjectDiff, cloud::Change)>, String>;

/// Compares every planned object, a few at a time.
async fn compare_all(
    client: &kube::Client,
    planned: &[Planned],
    new_namespaces: &std::collections::HashSet<String>,
    owned: bool,
    sops: &Sops,
) -> Result<Vec<Compared>, Vec<String>> {
    let results: Vec<Result<Compared, kube::Error>> = futures::stream::iter(planned)
        .map(|p| async move {
            if p.namespaced && new_namespaces.contains(&p.entry.namespace) {
                let note = format!(
                    "Namespace {} is new in this change: shown as written, not dry-run",
                    p.entry.namespace
                );
                let value = serde_json::to_value(&p.object).expect("objects serialize");
                return Ok(Ok(Some(created(p, value, Some(note), sops))));
            }
            compare(client, p, owned, sops).await
        })
        .buffered(8)
        .collect()
        .await;
    results
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| vec![format!("Kubernetes API: {e}")])
}

/// The live object against the server's dry-run of the apply. Without a
/// GitSync (`owned` false), the owner labels the live object carries are
/// sent back as they are: a diff of PATH alone says nothing of its owner.
async fn compare(
    client: &kube::Client,
    p: &Planned,
    owned: bool,
    sops: &Sops,
) -> Result<Compared, kube::Error> {
    let api = p.api(client);
    let live = api.get_opt(&p.entry.name).await?;
    let mut object = p.object.clone();
    if let (false, Some(live)) = (owned, &live) {
        keep_owner_labels(&mut object, live);
    }
    let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    let after = match api
        .patch(&p.entry.name, &params, &Patch::Apply(&object))
        .await
    {
        Ok(after) => after,
        Err(kube::Error::Api(s)) if (400..500).contains(&s.code) && s.code != 429 => {
            return Ok(Err(format!(
                "{}: {} was refused by the API server (dry-run): {}",
                p.origin, p.entry, s.message
            )));
        }
        Err(e) => return Err(e),
    };
    let after = serde_json::to_value(after).expect("objects serialize");
    let Some(live) = live else {
        return Ok(Ok(Some(created(p, after, None, sops))));
    };
    let live = serde_json::to_value(live).expect("objects serialize");
    let (mut before, mut shown) = (objects::strip(&live), objects::strip(&after));
    if let Some(written) = sops.get(&p.origin.to_string()) {
        objects::mask_sops(Some(&mut before), Some(&mut shown), written);
    }
    objects::mask_secret(Some(&mut before), Some(&mut shown));
    let Some(diff) = objects::unified(
        &objects::yaml(&before),
        &objects::yaml(&shown),
        &format!("live  {}", p.entry),
        &format!("after {}", p.entry),
    ) else {
        return Ok(Ok(None));
    };
    let change = cloud::Change::Apply {
        object: after,
        exists: true,
    };
    Ok(Ok(Some((
        ObjectDiff {
            entry: p.entry.clone(),
            action: Action::Update,
            origin: Some(p.origin.to_string()),
            diff,
            note: None,
        },
        change,
    ))))
}

/// A new object: all of it is added.
fn created(
    p: &Planned,
    after: Value,
    note: Option<String>,
    sops: &Sops,
) -> (ObjectDiff, cloud::Change) {
    let mut shown = objects::strip(&after);
    if let Some(written) = sops.get(&p.origin.to_string()) {
        objects::mask_sops(None, Some(&mut shown), written);
    }
    objects::mask_secret(None, Some(&mut shown));
    let diff = objects::unified(
        "",
        &objects::yaml(&shown),
        "live  (none)",
        &format!("after {}", p.entry),
    )
    .unwrap_or_default();
    let change = cloud::Change::Apply {
        object: after,
        exists: false,
    };
    let diff = ObjectDiff {
        entry: p.entry.clone(),
        action: Action::Create,
        origin: Some(p.origin.to_string()),
        diff,
        note,
    };
    (diff, change)
}

/// An object of a kind that a CRD of this change defines: the cluster
/// cannot dry-run it before the CRD exists.
fn unserved(m: &Manifest, owner: &Owner) -> (ObjectDiff, cloud::Change) {
    let mut value = m.value.clone();
    let ns = owner.namespace_for(Some(m.namespace())).to_string();
    value["metadata"]["namespace"] = Value::String(ns.clone());
    let entry = InventoryEntry {
        api_version: m.api_version().to_string(),
        kind: m.kind().to_string(),
        namespace: ns,
        name: m.name().to_string(),
    };
    let mut shown = objects::strip(&value);
    objects::mask_secret(None, Some(&mut shown));
    let diff = objects::unified(
        "",
        &objects::yaml(&shown),
        "live  (none)",
        &format!("after {entry}"),
    )
    .unwrap_or_default();
    let diff = ObjectDiff {
        entry,
        action: Action::Create,
        origin: Some(m.origin.to_string()),
        diff,
        note: Some("its CRD is new in this change: shown as written, not dry-run".into()),
    };
    let change = cloud::Change::Apply {
        object: value,
        exists: false,
    };
    (diff, change)
}

/// What prune would delete: the GitSync's inventory less what PATH has,
/// with the same checks as the controller's prune (owner labels,
/// `driftless.dev/prune: disabled`). The deletions join the objects.
async fn prune(
    client: &kube::Client,
    kinds: &Kinds,
    gs: &GitSync,
    owner: &Owner,
    rendered: &BTreeSet<InventoryEntry>,
    report: &mut Report,
    changes: &mut Vec<cloud::Change>,
) -> Result<Prune, kube::Error> {
    let inventory = gs.status.as_ref().map(|s| s.inventory.clone());
    let stale: Vec<InventoryEntry> = inventory
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !rendered.contains(e))
        .collect();
    if !gs.spec.prune {
        return Ok(Prune::Off(stale));
    }
    let mut kept = Vec::new();
    for e in stale {
        let Some((resource, namespaced)) = kinds.resolve(client, &e.api_version, &e.kind).await?
        else {
            continue; // the kind is gone, and its objects with it
        };
        let api: Api<DynamicObject> = match namespaced {
            true => Api::namespaced_with(client.clone(), &e.namespace, &resource),
            false => Api::all_with(client.clone(), &resource),
        };
        let Some(live) = api.get_opt(&e.name).await? else {
            continue;
        };
        if !owner.owns(&live) {
            kept.push((e, "it is no longer labelled as this GitSync's"));
            continue;
        }
        if live.annotations().get(PRUNE).map(String::as_str) == Some("disabled") {
            kept.push((e, "it is annotated driftless.dev/prune: disabled"));
            continue;
        }
        let live = serde_json::to_value(live).expect("objects serialize");
        let mut before = objects::strip(&live);
        objects::mask_secret(Some(&mut before), None);
        let diff = objects::unified(
            &objects::yaml(&before),
            "",
            &format!("live  {e}"),
            "after (pruned)",
        )
        .unwrap_or_default();
        report.objects.push(ObjectDiff {
            entry: e,
            action: Action::Delete,
            origin: None,
            diff,
            note: None,
        });
        changes.push(cloud::Change::Delete { live });
    }
    Ok(Prune::On(kept))
}

/// The ProviderConfigs this change creates.
fn new_provider_configs(objects: &[ObjectDiff]) -> BTreeSet<String> {
    objects
        .iter()
        .filter(|o| o.action == Action::Create)
        .filter(|o| crate::registry::is_provider_config(&o.entry.api_version, &o.entry.kind))
        .map(|o| o.entry.name.clone())
        .collect()
}

/// How the report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
}

/// `driftless diff`: runs, prints, and exits 0 (no difference), 1
/// (differences) or 2 (an error: also printed, on stderr).
pub async fn command(req: &Request, local: &Local, format: Format) -> std::process::ExitCode {
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "driftless diff: cannot reach Kubernetes (KUBECONFIG or in-cluster config): {e}"
            );
            return std::process::ExitCode::from(2);
        }
    };
    let report = match run(&client, req, local, Arc::new(CallCounter::default())).await {
        Ok(r) => r,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "driftless diff: {} error(s); nothing was compared",
                errors.len()
            );
            return std::process::ExitCode::from(2);
        }
    };
    let out = match format {
        Format::Text => text(&report),
        Format::Markdown => markdown(&report),
    };
    print!("{out}");
    std::process::ExitCode::from(report.exit_code())
}
