//! The cloud plan of a diff: for each managed resource the change touches,
//! what the controller would then do in the cloud, field by field, read
//! from the cloud's current state through the object's ProviderConfig in
//! the cluster. Read-only: observe and decide, never create, update or
//! delete (the same [`decide`] as the controller and push mode).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use driftless_provider::{
    CloudError, ConfigSource, Connector, DeletionPolicy, External, Identity, KindVisitor,
    ManagedKind, References, Target, CREATE_PENDING, EXTERNAL_NAME, PAUSED,
};
use futures::StreamExt;
use kube::ResourceExt;
use serde_json::Value;

use crate::managed::decide::{decide, Decision};
use crate::managed::resolve::{resolve, Resolution};

/// What the change does to one managed object in the cluster.
#[derive(Clone, Debug)]
pub enum Change {
    /// Applied: the object as the dry-run returned it (the live object's
    /// annotations, e.g. the external name, merged with Git's spec), and
    /// whether it exists in the cluster yet.
    Apply { object: Value, exists: bool },
    /// Pruned: the live object.
    Delete { live: Value },
}

/// One line of the cloud plan: `+` create, `~` update, `-` delete, `=`
/// nothing to do, `?` cannot be known yet, `!` an error.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub sign: char,
    /// `Bucket web/uploads`.
    pub key: String,
    pub text: String,
    /// One per changed field (updates).
    pub fields: Vec<String>,
}

impl Line {
    fn new(sign: char, key: &str, text: impl Into<String>) -> Self {
        Self {
            sign,
            key: key.to_string(),
            text: text.into(),
            fields: Vec::new(),
        }
    }

    /// A change the cloud would see.
    pub fn is_change(&self) -> bool {
        matches!(self.sign, '+' | '~' | '-')
    }
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.fields.as_slice() {
            [one] => write!(f, "{} {}: {one}", self.sign, self.key),
            _ => {
                write!(f, "{} {}: {}", self.sign, self.key, self.text)?;
                for field in &self.fields {
                    write!(f, "\n    {field}")?;
                }
                Ok(())
            }
        }
    }
}

/// Plans every change of a managed kind; other kinds are not looked at.
/// `new_provider_configs` are ProviderConfigs the change creates: an object
/// using one cannot be read from the cloud before it exists.
pub async fn plan(
    client: &kube::Client,
    providers: &crate::registry::Providers,
    changes: &[Change],
    new_provider_configs: &BTreeSet<String>,
) -> Vec<Line> {
    let mut collect = Collect {
        changes,
        items: Vec::new(),
    };
    providers.visit(&mut collect);
    let ctx = Ctx {
        client: client.clone(),
        new_provider_configs: new_provider_configs.clone(),
    };
    let ctx = &ctx;
    let mut lines: Vec<(usize, Line)> = futures::stream::iter(collect.items)
        .map(|(i, item)| async move { (i, item.plan(ctx).await) })
        .buffer_unordered(8)
        .collect()
        .await;
    lines.sort_by_key(|(i, _)| *i);
    lines.into_iter().map(|(_, l)| l).collect()
}

struct Ctx {
    client: kube::Client,
    new_provider_configs: BTreeSet<String>,
}

#[async_trait]
trait Item: Send + Sync {
    async fn plan(&self, ctx: &Ctx) -> Line;
}

/// The changes of the provider's kinds, as typed objects.
struct Collect<'a> {
    changes: &'a [Change],
    items: Vec<(usize, Box<dyn Item>)>,
}

impl KindVisitor for Collect<'_> {
    fn visit<K: ManagedKind>(&mut self, connector: Arc<dyn Connector<K>>) {
        let (api_version, kind) = (K::api_version(&()), K::kind(&()));
        for (i, change) in self.changes.iter().enumerate() {
            let value = match change {
                Change::Apply { object, .. } => object,
                Change::Delete { live } => live,
            };
            if value["apiVersion"] != *api_version || value["kind"] != *kind {
                continue;
            }
            let key = format!(
                "{kind} {}/{}",
                value["metadata"]["namespace"].as_str().unwrap_or_default(),
                value["metadata"]["name"].as_str().unwrap_or_default()
            );
            let item: Box<dyn Item> = match serde_json::from_value::<K>(value.clone()) {
                Ok(obj) => Box::new(Managed {
                    key,
                    obj,
                    change: change.clone(),
                    connector: connector.clone(),
                }),
                Err(e) => Box::new(Broken(Line::new('!', &key, format!("not a {kind}: {e}")))),
            };
            self.items.push((i, item));
        }
    }
}

struct Broken(Line);

#[async_trait]
impl Item for Broken {
    async fn plan(&self, _: &Ctx) -> Line {
        self.0.clone()
    }
}

struct Managed<K: ManagedKind> {
    key: String,
    obj: K,
    change: Change,
    connector: Arc<dyn Connector<K>>,
}

#[async_trait]
impl<K: ManagedKind> Item for Managed<K> {
    async fn plan(&self, ctx: &Ctx) -> Line {
        if self.obj.annotations().get(PAUSED).map(String::as_str) == Some("true") {
            return self.line('=', format!("paused ({PAUSED}): nothing is done"));
        }
        let result = match self.change {
            Change::Apply { exists, .. } => self.apply(ctx, exists).await,
            Change::Delete { .. } => self.delete(ctx).await,
        };
        result.unwrap_or_else(|e| self.line('!', e.to_string()))
    }
}

impl<K: ManagedKind> Managed<K> {
    fn line(&self, sign: char, text: impl Into<String>) -> Line {
        Line::new(sign, &self.key, text)
    }

    fn namespace(&self) -> String {
        self.obj.namespace().unwrap_or_default()
    }

    fn provider_config(&self) -> &str {
        &self.obj.managed().provider_config_ref.name
    }

    /// The object's cloud client, through its ProviderConfig in the cluster
    /// (its Secret's credentials, its allowedNamespaces), as the
    /// controller connects.
    async fn external(&self, ctx: &Ctx) -> Result<Arc<dyn External<K>>, CloudError> {
        self.connector
            .connect(
                &ConfigSource::Cluster(ctx.client.clone()),
                self.provider_config(),
                &self.namespace(),
                self.obj.for_provider(),
            )
            .await
    }

    /// What applying the object makes the controller do.
    async fn apply(&self, ctx: &Ctx, exists: bool) -> Result<Line, CloudError> {
        if ctx.new_provider_configs.contains(self.provider_config()) {
            let why = format!(
                "ProviderConfig {} is new in this change: the cloud is read once it exists",
                self.provider_config()
            );
            return Ok(self.line('?', why));
        }
        let references = self.obj.for_provider().references();
        let resolved = match resolve(&ctx.client, &self.namespace(), &references).await {
            Ok(Resolution::Resolved(ids)) => ids,
            Ok(Resolution::NotReady(why, _)) if !exists => {
                return Ok(self.line('+', format!("create (once {why})")))
            }
            Ok(Resolution::NotReady(why, _)) => {
                return Ok(self.line('?', format!("not planned: {why}")))
            }
            Err(e) => return Err(CloudError::retryable("Kubernetes", e.to_string())),
        };
        let identity = Identity::new(&K::kind(&()), &self.namespace(), &self.obj.name_any());
        let annotations = self.obj.annotations();
        let given = annotations.get(EXTERNAL_NAME).map(String::as_str);
        let target = Target {
            identity: &identity,
            external_name: given,
            create_pending: annotations.contains_key(CREATE_PENDING),
            spec: self.obj.for_provider(),
            resolved: &resolved,
        };
        let observed = self.external(ctx).await?.observe(&target).await?;
        Ok(match decide::<K>(&observed, self.obj.managed(), given) {
            Decision::Create => self.line('+', "create"),
            Decision::Missing(e) | Decision::Immutable(e) => self.line('!', e.message),
            Decision::Update => Line {
                fields: observed.diff.iter().map(ToString::to_string).collect(),
                ..self.line('~', "update")
            },
            Decision::ObserveOnly => self.line('=', "observed only (managementPolicies)"),
            Decision::UpToDate => self.line('=', "up to date"),
        })
    }

    /// What pruning the object makes the controller do in the cloud.
    async fn delete(&self, ctx: &Ctx) -> Result<Line, CloudError> {
        let annotations = self.obj.annotations();
        let given = annotations.get(EXTERNAL_NAME).map(String::as_str);
        let name = given.unwrap_or("its cloud resource");
        if self.obj.managed().deletion_policy == DeletionPolicy::Orphan {
            return Ok(self.line('=', format!("{name} is kept (deletionPolicy Orphan)")));
        }
        let identity = Identity::new(&K::kind(&()), &self.namespace(), &self.obj.name_any());
        let resolved = BTreeMap::new();
        let target = Target {
            identity: &identity,
            external_name: given,
            create_pending: annotations.contains_key(CREATE_PENDING),
            spec: self.obj.for_provider(),
            resolved: &resolved,
        };
        let observed = self.external(ctx).await?.observe(&target).await?;
        if !observed.exists {
            return Ok(self.line('=', "already gone from the cloud"));
        }
        let id = observed.external_name.as_deref().unwrap_or(name);
        Ok(self.line('-', format!("delete {id} (deletionPolicy Delete)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_field_is_told_on_the_line() {
        let mut l = Line::new('~', "Bucket web/uploads", "update");
        l.fields = vec!["forProvider.versioning: Suspended -> Enabled".into()];
        assert_eq!(
            l.to_string(),
            "~ Bucket web/uploads: forProvider.versioning: Suspended -> Enabled"
        );
        l.fields.push("tags: {} -> {a=\"b\" (added)}".into());
        assert_eq!(
            l.to_string(),
            "~ Bucket web/uploads: update\n    forProvider.versioning: Suspended -> Enabled\n    tags: {} -> {a=\"b\" (added)}"
        );
        assert!(l.is_change());
        assert!(!Line::new('=', "k", "up to date").is_change());
    }
}
