//! Reading the tree from the cluster: the root, a GitSync's inventory (one
//! LIST per kind, by the owner labels), and each managed resource's
//! references (one LIST per referenced kind and namespace, cached).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use driftless_provider::{Connector, KindVisitor, ManagedKind, RefSource, Reference, References};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Resource};
use serde_json::Value;

use super::{Node, Stage};
use crate::gitsync::apply::{stage_of, Kinds, Stage as ApplyStage};
use crate::gitsync::{cluster, GitSync, InventoryEntry, LABEL_NAME, LABEL_NAMESPACE};
use crate::registry::Providers;

/// How deep references are followed (a chain longer than any real one).
const MAX_DEPTH: usize = 8;

/// What the tree starts from.
#[derive(Clone, Debug)]
pub enum Root {
    GitSync {
        namespace: String,
        name: String,
    },
    /// A managed resource: its kind as typed (`instance`, `Instance`,
    /// `instances`), namespace and name.
    Managed {
        kind: String,
        namespace: String,
        name: String,
    },
}

/// The tree of `root`, as the cluster has it now.
pub async fn read(client: &kube::Client, root: &Root) -> Result<Node, String> {
    let mut reader = Reader::new(client.clone());
    match root {
        Root::GitSync { namespace, name } => reader.gitsync(namespace, name).await,
        Root::Managed {
            kind,
            namespace,
            name,
        } => {
            let info = reader.managed_kind(kind)?.clone();
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &info.resource);
            let obj = api
                .get_opt(name)
                .await
                .map_err(|e| format!("reading {} {namespace}/{name}: {e}", info.resource.kind))?
                .ok_or_else(|| {
                    format!("{} {namespace}/{name} does not exist", info.resource.kind)
                })?;
            let value = serde_json::to_value(&obj).map_err(|e| e.to_string())?;
            Ok(reader.managed(&value, &info, 0).await)
        }
    }
}

/// A managed kind: how to reach it, and how to read its references.
#[derive(Clone)]
struct ManagedInfo {
    resource: ApiResource,
    references: fn(&Value) -> Vec<Reference>,
}

fn references_of<K: ManagedKind>(obj: &Value) -> Vec<Reference> {
    serde_json::from_value::<K>(obj.clone())
        .map(|o| o.for_provider().references())
        .unwrap_or_default()
}

struct CollectKinds(HashMap<(String, String), ManagedInfo>);

impl KindVisitor for CollectKinds {
    fn visit<K: ManagedKind>(&mut self, _connector: Arc<dyn Connector<K>>) {
        let info = ManagedInfo {
            resource: ApiResource::erase::<K>(&()),
            references: references_of::<K>,
        };
        let key = (K::api_version(&()).to_string(), K::kind(&()).to_string());
        self.0.insert(key, info);
    }
}

struct Reader {
    /// The cluster the objects are in (a GitSync's other cluster, if any).
    client: kube::Client,
    managed: HashMap<(String, String), ManagedInfo>,
    kinds: Kinds,
    /// LISTs already made: by (apiVersion, kind, namespace).
    lists: HashMap<(String, String, String), Vec<Value>>,
}

impl Reader {
    fn new(client: kube::Client) -> Self {
        let mut collect = CollectKinds(HashMap::new());
        Providers::offline().visit(&mut collect);
        Self {
            client,
            managed: collect.0,
            kinds: Kinds::default(),
            lists: HashMap::new(),
        }
    }

    /// The managed kind the user typed, by kind or plural, any case.
    fn managed_kind(&self, typed: &str) -> Result<&ManagedInfo, String> {
        let t = typed.to_ascii_lowercase();
        self.managed
            .values()
            .find(|i| i.resource.kind.to_ascii_lowercase() == t || i.resource.plural == t)
            .ok_or_else(|| {
                let mut known: Vec<String> = self
                    .managed
                    .values()
                    .map(|i| i.resource.kind.to_ascii_lowercase())
                    .collect();
                known.sort();
                format!(
                    "{typed:?} is not a kind driftless manages; give gitsync/NAME or one of: {}",
                    known.join(", ")
                )
            })
    }

    async fn gitsync(&mut self, ns: &str, name: &str) -> Result<Node, String> {
        let api: Api<GitSync> = Api::namespaced(self.client.clone(), ns);
        let gs = api
            .get_opt(name)
            .await
            .map_err(|e| format!("reading GitSync {ns}/{name}: {e}"))?
            .ok_or_else(|| format!("GitSync {ns}/{name} does not exist"))?;
        let mut root = Node::of(
            &serde_json::to_value(&gs).map_err(|e| e.to_string())?,
            false,
        );
        // Its objects may be in another cluster (spec.kubeConfig).
        self.client = cluster::client_of(&self.client, &gs).await?;
        let inventory = gs.status.map(|s| s.inventory).unwrap_or_default();
        let mut by_stage: BTreeMap<ApplyStage, Vec<Node>> = BTreeMap::new();
        for (key, entries) in by_kind(&inventory) {
            let live = self.owned(&key, ns, name).await;
            for e in entries {
                let node = match &live {
                    Err(why) => Node::missing(&e.api_version, &e.kind, &e.namespace, &e.name, why),
                    Ok(objects) => match objects.get(&(e.namespace.clone(), e.name.clone())) {
                        Some(obj) => self.object(obj, 0).await,
                        None => Node::missing(
                            &e.api_version,
                            &e.kind,
                            &e.namespace,
                            &e.name,
                            "in the inventory, not in the cluster",
                        ),
                    },
                };
                by_stage
                    .entry(stage_of(&e.api_version, &e.kind))
                    .or_default()
                    .push(node);
            }
        }
        root.stages = by_stage
            .into_iter()
            .map(|(stage, mut objects)| {
                // As the inventory lists them: by kind, then namespace/name.
                objects.sort_by(|a, b| {
                    (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name))
                });
                Stage {
                    name: stage_name(stage).into(),
                    objects,
                }
            })
            .collect();
        Ok(root)
    }

    /// The objects of one kind labelled as GitSync `ns/name`'s, by
    /// (namespace, name).
    async fn owned(
        &self,
        (api_version, kind): &(String, String),
        ns: &str,
        name: &str,
    ) -> Result<HashMap<(String, String), Value>, String> {
        let (resource, _) = self
            .kinds
            .resolve(&self.client, api_version, kind)
            .await
            .map_err(|e| format!("discovery: {e}"))?
            .ok_or_else(|| format!("the cluster serves no {kind} of {api_version}"))?;
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let selector = format!("{LABEL_NAME}={name},{LABEL_NAMESPACE}={ns}");
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| format!("listing {kind}: {e}"))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|o| {
                let key = (
                    o.meta().namespace.clone().unwrap_or_default(),
                    o.meta().name.clone()?,
                );
                Some((key, typed(o, &resource)?))
            })
            .collect())
    }

    /// The node of a live object, with its references if it is managed.
    async fn object(&mut self, obj: &Value, depth: usize) -> Node {
        let key = (
            obj["apiVersion"].as_str().unwrap_or_default().to_string(),
            obj["kind"].as_str().unwrap_or_default().to_string(),
        );
        match self.managed.get(&key).cloned() {
            Some(info) => self.managed(obj, &info, depth).await,
            None => Node::of(obj, false),
        }
    }

    async fn managed(&mut self, obj: &Value, info: &ManagedInfo, depth: usize) -> Node {
        let mut node = Node::of(obj, true);
        if depth >= MAX_DEPTH {
            return node;
        }
        for r in (info.references)(obj) {
            for mut child in Box::pin(self.targets(&r, &node.namespace, depth + 1)).await {
                child.via = Some(r.field.clone());
                node.references.push(child);
            }
        }
        node
    }

    /// The objects reference `r` of an object in `ns` points at.
    async fn targets(&mut self, r: &Reference, ns: &str, depth: usize) -> Vec<Node> {
        let (av, kind) = (r.target.api_version.clone(), r.target.kind.clone());
        let objects = match self.list(&r.target, ns).await {
            Ok(o) => o,
            Err(why) => return vec![Node::missing(&av, &kind, ns, "?", &why)],
        };
        let found: Vec<Value> = match &r.source {
            RefSource::Names(names) => {
                let mut out = Vec::new();
                for n in names {
                    match objects.iter().find(|o| o["metadata"]["name"] == n.as_str()) {
                        Some(o) => out.push(o.clone()),
                        None => {
                            return vec![Node::missing(&av, &kind, ns, n, "referenced, not found")]
                        }
                    }
                }
                out
            }
            RefSource::Id(id) => by_external_name(&objects, std::slice::from_ref(id)),
            RefSource::Ids(ids) => by_external_name(&objects, ids),
            RefSource::Selector(labels) => {
                let mut m: Vec<Value> = objects
                    .iter()
                    .filter(|o| {
                        labels
                            .iter()
                            .all(|(k, v)| o["metadata"]["labels"][k] == v.as_str())
                    })
                    .cloned()
                    .collect();
                m.sort_by(|a, b| {
                    a["metadata"]["name"]
                        .as_str()
                        .cmp(&b["metadata"]["name"].as_str())
                });
                if !r.many {
                    m.truncate(1);
                }
                m
            }
        };
        let mut nodes = Vec::new();
        for o in &found {
            nodes.push(self.object(o, depth).await);
        }
        nodes
    }

    async fn list(&mut self, resource: &ApiResource, ns: &str) -> Result<Vec<Value>, String> {
        let key = (
            resource.api_version.clone(),
            resource.kind.clone(),
            ns.to_string(),
        );
        if let Some(l) = self.lists.get(&key) {
            return Ok(l.clone());
        }
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, resource);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing {}: {e}", resource.kind))?;
        let values: Vec<Value> = list
            .items
            .into_iter()
            .filter_map(|o| typed(o, resource))
            .collect();
        self.lists.insert(key, values.clone());
        Ok(values)
    }
}

/// The object as JSON with its apiVersion and kind (items of a LIST of
/// built-in kinds come without them).
fn typed(mut obj: DynamicObject, resource: &ApiResource) -> Option<Value> {
    obj.types = Some(kube::api::TypeMeta {
        api_version: resource.api_version.clone(),
        kind: resource.kind.clone(),
    });
    serde_json::to_value(obj).ok()
}

/// Objects whose external name is one of `ids` (ids given literally may
/// belong to no object here: then nothing is shown).
fn by_external_name(objects: &[Value], ids: &[String]) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| {
            o["metadata"]["annotations"]["driftless.dev/external-name"]
                .as_str()
                .is_some_and(|x| ids.iter().any(|id| id == x))
        })
        .cloned()
        .collect()
}

fn by_kind(inventory: &[InventoryEntry]) -> BTreeMap<(String, String), Vec<&InventoryEntry>> {
    let mut m: BTreeMap<(String, String), Vec<&InventoryEntry>> = BTreeMap::new();
    for e in inventory {
        m.entry((e.api_version.clone(), e.kind.clone()))
            .or_default()
            .push(e);
    }
    m
}

fn stage_name(stage: ApplyStage) -> &'static str {
    match stage {
        ApplyStage::Foundation => "Namespaces and CRDs",
        ApplyStage::ProviderConfigs => "ProviderConfigs",
        ApplyStage::Rest => "Objects",
    }
}
