//! Amazon EC2 kinds, one file each, and what they share: tags, filters,
//! ownership, error mapping, batched observation (`snapshot.rs`) and the
//! `External` impl every EC2 kind uses (`kind.rs`).
//!
//! # Batched observation
//!
//! Observing N resources one describe call each costs N calls per poll. Instead,
//! every ProviderConfig's session holds one snapshot per kind: the result of
//! one paginated describe call filtered on `tag:driftless.dev/managed-by`, which
//! serves the observation of every resource of that kind for up to
//! `max_age` (the poll interval: reconciles are spread over the poll by
//! jitter, so a shorter life would refresh several times per poll; this one
//! refreshes about once per poll). Concurrent observes wait for the same refresh rather
//! than each starting one. A resource driftless wrote (created, updated,
//! deleted) after the snapshot was taken is re-read individually by id exactly
//! once, and that read replaces its snapshot entry; so is a resource the
//! snapshot does not hold (imported by external-name and not tagged by us, or
//! gone). Looking a resource up by its owner tag before a create never uses the
//! snapshot: a stale "not found" there would create a duplicate.

mod associations;
pub mod elastic_ip;
pub mod instance;
pub mod internet_gateway;
pub mod key_pair;
mod kind;
pub mod nat_gateway;
pub mod route_table;
mod routes;
pub mod security_group;
mod snapshot;
pub mod subnet;
pub mod volume;
pub mod volume_attachment;
pub mod vpc;

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use driftless_provider::{
    CloudError, Deletion, FieldDiff, FieldKey, Identity, ManagedKind, Owned, Target,
    TAG_CREATE_TOKEN, TAG_KIND, TAG_MANAGED_BY, TAG_OWNER,
};

use crate::errors::{cloud_error, code_of};
use crate::AwsSession;
pub(crate) use kind::{described, Described, Ec2Kind, Observed};
pub use snapshot::Ec2Snapshots;
use snapshot::Writing;

/// What every EC2 kind's file uses.
pub(crate) mod prelude {
    pub(crate) use std::collections::BTreeMap;

    pub(crate) use async_trait::async_trait;
    pub(crate) use aws_sdk_ec2::types::{self as sdk, ResourceType};
    pub(crate) use driftless_provider::{
        field_keys, managed_resource, observation, reference, CloudError, Compare, Created,
        Deletion, FieldDiff, Observation, Target,
    };
    pub(crate) use schemars::JsonSchema;
    pub(crate) use serde::{Deserialize, Serialize};

    pub(crate) use super::{
        cidr_rule, described, filter, new_id, required, resolved, tag_specification, tags_diff,
        Described, Ec2, Ec2Kind, Observed,
    };
    pub(crate) use crate::errors::cloud_error;
}

/// Largest page the EC2 describe calls allow: fewest calls per snapshot.
pub(crate) const PAGE_SIZE: i32 = 1000;

/// One EC2 connection: the SDK client and the session's shared snapshots.
/// Implements [`driftless_provider::External`] for every EC2 kind.
pub(crate) struct Ec2 {
    pub(crate) client: aws_sdk_ec2::Client,
    snapshots: Arc<Ec2Snapshots>,
}

impl Ec2 {
    pub(crate) fn new(session: &AwsSession) -> Self {
        let conf = aws_sdk_ec2::config::Builder::from(&session.sdk)
            .interceptor(session.count_calls())
            .build();
        Self {
            client: aws_sdk_ec2::Client::from_conf(conf),
            snapshots: session.ec2.clone(),
        }
    }

    /// The resource of `t`: by external name (from the snapshot), else by
    /// its owner tags. An object that never asked for a create (no
    /// create-pending mark, no external name) is looked up in the batched
    /// listing: whatever carries its owner tags (left by an earlier object of
    /// that name, or found after a cluster rebuild) predates the listing or
    /// was created by this process, which remembers its creates. Otherwise a
    /// create may have happened that nothing recorded: read fresh.
    pub(crate) async fn find<R: Described, K: ManagedKind>(
        &self,
        t: &Target<'_, K>,
    ) -> Result<Option<R>, CloudError> {
        let identity = t.identity;
        if let Some(id) = t.external_name {
            if let Some(r) = self.by_id::<R>(id).await? {
                check_owner(identity, R::WHAT, id, &tag_map(r.tags()))?;
                return Ok(Some(r));
            }
        }
        let mut owned: Vec<R> = if t.external_name.is_none() && !t.create_pending {
            self.owned_in_snapshot::<R>(identity).await?
        } else {
            R::list(&self.client, owner_filters(identity)).await?
        };
        owned.retain(|r| !r.gone() && identity.owns(&tag_map(r.tags())));
        owned.sort_by(|a, b| a.id().cmp(b.id()));
        if owned.len() > 1 {
            let ids: Vec<&str> = owned.iter().map(Described::id).collect();
            tracing::warn!(owner = %identity, ?ids, "several {}s carry this owner tag; adopting the first", R::WHAT);
        }
        Ok(owned.into_iter().next())
    }

    /// The resources other than `adopted` that carry `identity`'s owner
    /// tags in the batched listing (already refreshed by the lookup: no
    /// call), and those of them with `adopted`'s create token (proven).
    pub(crate) fn duplicates_of<R: Described>(
        &self,
        identity: &Identity,
        adopted: &R,
    ) -> (Vec<String>, Vec<String>) {
        let (listed, _) = self.snapshots.of::<R>().owned_by(identity);
        let token = create_token(adopted.tags());
        let mut others: Vec<&R> = listed
            .iter()
            .filter(|r| !r.gone() && r.id() != adopted.id())
            .collect();
        others.sort_by(|a, b| a.id().cmp(b.id()));
        let proven = others
            .iter()
            .filter(|r| token.is_some() && create_token(r.tags()) == token)
            .map(|r| r.id().to_string())
            .collect();
        (others.iter().map(|r| r.id().to_string()).collect(), proven)
    }

    /// Deletes `id` of kind `K`, if it still exists.
    pub(crate) async fn delete_by_id<K: Ec2Kind>(&self, id: &str) -> Result<Deletion, CloudError> {
        let Some(r) = self.by_id::<K::Sdk>(id).await? else {
            return Ok(Deletion::Done);
        };
        let _written = self.writing::<K::Sdk>(r.id());
        K::delete(self, &r).await
    }

    /// Resources carrying `identity`'s owner tags, per the batched listing
    /// and the creates made since it was taken.
    async fn owned_in_snapshot<R: Described>(
        &self,
        identity: &Identity,
    ) -> Result<Vec<R>, CloudError> {
        let snapshot = self.snapshots.of::<R>();
        self.refresh::<R>().await?;
        let (listed, created) = snapshot.owned_by(identity);
        let mut owned = listed;
        for id in created {
            if let Some(r) = self.by_id::<R>(&id).await? {
                owned.retain(|o| o.id() != r.id());
                owned.push(r);
            }
        }
        Ok(owned)
    }

    async fn refresh<R: Described>(&self) -> Result<(), CloudError> {
        self.snapshots
            .of::<R>()
            .refresh_if_older(self.snapshots.max_age, || {
                R::list(
                    &self.client,
                    vec![filter(&format!("tag:{TAG_MANAGED_BY}"), ["driftless"])],
                )
            })
            .await
    }

    /// Every resource of kind `R` carrying driftless tags (push mode's `get`
    /// and `--prune`): one paginated, tag-filtered describe.
    pub(crate) async fn list_owned<R: Described>(&self) -> Result<Vec<Owned>, CloudError> {
        let all = R::list(
            &self.client,
            vec![filter(&format!("tag:{TAG_MANAGED_BY}"), ["driftless"])],
        )
        .await?;
        Ok(all
            .into_iter()
            .filter(|r| !r.gone())
            .map(|r| {
                let (state, ready) = r.state();
                Owned {
                    external_name: r.id().to_string(),
                    tags: tag_map(r.tags()),
                    state,
                    ready,
                }
            })
            .collect())
    }

    /// A resource by id, from the snapshot when it holds a current entry.
    async fn by_id<R: Described>(&self, id: &str) -> Result<Option<R>, CloudError> {
        let snapshot = self.snapshots.of::<R>();
        self.refresh::<R>().await?;
        if let Some(r) = snapshot.current(id) {
            return Ok(Some(r));
        }
        let read = R::describe_one(&self.client, id)
            .await?
            .filter(|r| !r.gone());
        snapshot.store(id, read.clone());
        Ok(read)
    }

    /// Marks `id` as written now and again when the guard drops (after the
    /// writes, whatever their outcome): a listing that began while they were
    /// in flight cannot hide them, and the next observation re-reads `id`.
    /// Like [`Self::writing`], for the id a create just returned: the
    /// owner lookup of [`Self::find`] finds it before the next listing does.
    pub(crate) fn created<R: Described>(&self, identity: &Identity, id: &str) -> Writing<R> {
        self.snapshots.of::<R>().created(identity, id);
        self.writing::<R>(id)
    }

    /// `r` is what the create of `id` returned: the observation that
    /// follows the create is served from it, with no call. Only if it
    /// carries the owner tags (a response without them would read as drift).
    pub(crate) fn made<R: Described>(&self, identity: &Identity, id: &str, r: Option<&R>) {
        if let Some(r) = r.filter(|r| r.id() == id && identity.owns(&tag_map(r.tags()))) {
            self.snapshots.of::<R>().made(id, r.clone());
        }
    }

    pub(crate) fn writing<R: Described>(&self, id: &str) -> Writing<R> {
        let snapshot = self.snapshots.of::<R>();
        snapshot.written(id);
        Writing {
            snapshot,
            id: id.to_string(),
        }
    }

    /// Makes the tags of `r` equal the spec's plus the owner tags (AWS's own
    /// `aws:` tags aside).
    pub(crate) async fn sync_tags<R: Described>(
        &self,
        r: &R,
        identity: &Identity,
        spec: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        let (have, want) = (tag_map(r.tags()), desired_tags(identity, spec));
        let set: Vec<Tag> = want
            .iter()
            .filter(|(k, v)| have.get(*k) != Some(*v))
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let unset: Vec<Tag> = have
            .keys()
            .filter(|k| !want.contains_key(*k))
            .map(|k| Tag::builder().key(k).build())
            .collect();
        // The two calls differ only in their builder's type.
        macro_rules! send {
            ($call:ident, $tags:expr) => {
                if !$tags.is_empty() {
                    let req = self.client.$call().resources(r.id());
                    req.set_tags(Some($tags))
                        .send()
                        .await
                        .map_err(cloud_error)?;
                }
            };
        }
        send!(create_tags, set);
        send!(delete_tags, unset);
        Ok(())
    }

    /// The outcome of a delete call on `r`: NotFound is Done; a dependency
    /// is Waiting, naming [`Described::dependents`].
    pub(crate) async fn deletion<R: Described, O, E>(
        &self,
        r: &R,
        sent: Result<O, SdkError<E, Response>>,
    ) -> Result<Deletion, CloudError>
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        match sent {
            Ok(_) => Ok(Deletion::Done),
            Err(e) if is_not_found(&e) => Ok(Deletion::Done),
            Err(e) if is_dependency_violation(&e) => {
                let dependents = R::dependents(self, r.id()).await?;
                Ok(Deletion::Waiting(waiting_on(
                    R::WHAT,
                    r.id(),
                    &dependents,
                    &cloud_error(e).to_string(),
                )))
            }
            Err(e) => Err(cloud_error(e)),
        }
    }

    /// What is still inside VPC `vpc_id`, each named by id and owner.
    pub(crate) async fn vpc_dependents(&self, vpc_id: &str) -> Result<Vec<String>, CloudError> {
        let in_vpc = || vec![filter("vpc-id", [vpc_id])];
        let mut found = Vec::new();
        for s in <aws_sdk_ec2::types::Subnet as Described>::list(&self.client, in_vpc()).await? {
            found.push(label("subnet", s.id(), s.tags()));
        }
        for g in
            <aws_sdk_ec2::types::SecurityGroup as Described>::list(&self.client, in_vpc()).await?
        {
            // Every VPC has one; it goes with the VPC.
            if g.group_name() != Some("default") {
                found.push(label("security group", g.id(), g.tags()));
            }
        }
        found.extend(self.instances_where(filter("vpc-id", [vpc_id])).await?);
        found.extend(self.nat_gateways_in("vpc-id", vpc_id).await?);
        let tables = <aws_sdk_ec2::types::RouteTable as Described>::list;
        for t in tables(&self.client, in_vpc()).await? {
            // The main one goes with the VPC.
            if !t.associations().iter().any(|a| a.main() == Some(true)) {
                found.push(label("route table", t.id(), t.tags()));
            }
        }
        let igws = self
            .client
            .describe_internet_gateways()
            .filters(filter("attachment.vpc-id", [vpc_id]))
            .send()
            .await
            .map_err(cloud_error)?;
        for g in igws.internet_gateways() {
            found.push(label(
                "internet gateway",
                g.internet_gateway_id().unwrap_or_default(),
                g.tags(),
            ));
        }
        Ok(found)
    }

    /// NAT gateways (not deleted) in VPC or subnet `id` (`filter`: `vpc-id`
    /// or `subnet-id`), each named by id and owner. Matched here as well:
    /// LocalStack ignores some of this call's filters.
    pub(crate) async fn nat_gateways_in(
        &self,
        filter_name: &str,
        id: &str,
    ) -> Result<Vec<String>, CloudError> {
        let f = vec![filter(filter_name, [id])];
        let found = <aws_sdk_ec2::types::NatGateway as Described>::list(&self.client, f).await?;
        let within = |g: &aws_sdk_ec2::types::NatGateway| {
            [g.vpc_id(), g.subnet_id()].contains(&Some(id)) && !g.gone()
        };
        let found = found.iter().filter(|g| within(g));
        Ok(found
            .map(|g| label("NAT gateway", g.id(), g.tags()))
            .collect())
    }

    /// Instances (not terminated) matching `f`, each named by id and owner.
    pub(crate) async fn instances_where(&self, f: Filter) -> Result<Vec<String>, CloudError> {
        let found =
            <aws_sdk_ec2::types::Instance as Described>::list(&self.client, vec![f]).await?;
        Ok(found
            .iter()
            .filter(|i| !i.gone())
            .map(|i| label("instance", i.id(), i.tags()))
            .collect())
    }

    /// Network interfaces matching `f` that no instance owns (load balancers,
    /// Lambda, endpoints...): they block deletions too.
    pub(crate) async fn interfaces_where(&self, f: Filter) -> Result<Vec<String>, CloudError> {
        let out = self
            .client
            .describe_network_interfaces()
            .filters(f)
            .send()
            .await
            .map_err(cloud_error)?;
        Ok(out
            .network_interfaces()
            .iter()
            .filter(|n| n.attachment().and_then(|a| a.instance_id()).is_none())
            .map(|n| {
                let what = n
                    .description()
                    .filter(|d| !d.is_empty())
                    .unwrap_or("network interface");
                format!(
                    "network interface {} ({what})",
                    n.network_interface_id().unwrap_or_default()
                )
            })
            .collect())
    }
}

/// An EC2 describe filter.
pub(crate) fn filter<I, S>(name: &str, values: I) -> Filter
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(Into::into).collect()))
        .build()
}

/// The filters that find the resources `identity` owns.
fn owner_filters(identity: &Identity) -> Vec<Filter> {
    vec![
        filter(&format!("tag:{TAG_OWNER}"), [identity.owner()]),
        filter(&format!("tag:{TAG_KIND}"), [identity.kind.clone()]),
    ]
}

/// Tags as a map, without AWS's own `aws:` tags (nobody may set those).
pub(crate) fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .filter(|(k, _)| !k.starts_with("aws:") && k != TAG_CREATE_TOKEN)
        .collect()
}

/// The create token of a resource's tags, if any.
fn create_token(tags: &[Tag]) -> Option<&str> {
    tags.iter()
        .find(|t| t.key() == Some(TAG_CREATE_TOKEN))
        .and_then(|t| t.value())
}

/// The spec's tags plus the owner tags.
pub(crate) fn desired_tags(
    identity: &Identity,
    spec: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut tags = spec.clone();
    tags.extend(identity.owner_tags());
    tags
}

/// Tags set by the create call itself: a resource is never untagged, even
/// for an instant, so a lost create result is always found again.
pub(crate) fn tag_specification(
    rt: ResourceType,
    identity: &Identity,
    spec: &BTreeMap<String, String>,
) -> TagSpecification {
    // A new token per call: the SDK's retries of this call resend it.
    let token = format!("{:016x}", rand::random::<u64>());
    let tags = desired_tags(identity, spec)
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .chain([Tag::builder().key(TAG_CREATE_TOKEN).value(token).build()])
        .collect();
    TagSpecification::builder()
        .resource_type(rt)
        .set_tags(Some(tags))
        .build()
}

/// The tag diff, if the tags of `r` differ from the spec's plus the owner tags.
pub(crate) fn tags_diff<F: FieldKey>(
    field: F,
    r: &impl Described,
    identity: &Identity,
    spec: &BTreeMap<String, String>,
) -> Option<FieldDiff<F>> {
    let (have, want) = (tag_map(r.tags()), desired_tags(identity, spec));
    (have != want).then(|| FieldDiff::map(field, &have, &want))
}

/// The id a create call returned; `missing` says which call returned none.
pub(crate) fn new_id(id: Option<&str>, missing: &str) -> Result<String, CloudError> {
    id.map(str::to_string)
        .ok_or_else(|| CloudError::retryable("InvalidResponse", missing))
}

/// The CEL rule of an IPv4 CIDR field, prefix /16 to /28 as EC2 allows.
pub(crate) fn cidr_rule(example: &str) -> serde_json::Value {
    serde_json::json!({
        "rule": "self.matches('^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(1[6-9]|2[0-8])$')",
        "message": format!("cidrBlock must be an IPv4 CIDR block with a prefix from /16 to /28, e.g. {example}")
    })
}

/// Refuses a resource that another driftless object owns.
fn check_owner(
    identity: &Identity,
    what: &str,
    id: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(), CloudError> {
    match tags.get(TAG_OWNER) {
        Some(other) if !identity.owns(tags) => Err(CloudError::terminal(
            "OwnedByOther",
            format!(
                "{what} {id} is managed by driftless object {other} ({}); remove the external-name annotation, or delete that object first",
                tags.get(TAG_KIND).map(String::as_str).unwrap_or("unknown kind")
            ),
        )),
        _ => Ok(()),
    }
}

/// `subnet subnet-123 (driftless infra/a)`: how waiting messages name a
/// dependent, by id and owner (or Name tag) when it has one.
fn label(what: &str, id: &str, tags: &[Tag]) -> String {
    let tags = tag_map(tags);
    match (tags.get(TAG_OWNER), tags.get("Name")) {
        (Some(owner), _) => format!("{what} {id} (driftless {owner})"),
        (None, Some(name)) => format!("{what} {id} (Name {name})"),
        _ => format!("{what} {id}"),
    }
}

/// The id a reference field resolved to (literal ids resolve to themselves).
pub(crate) fn resolved<'a, K: driftless_provider::ManagedKind>(
    t: &'a Target<'_, K>,
    field: &str,
) -> Option<&'a str> {
    t.resolved
        .get(field)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

/// Like [`resolved`], for a field create cannot do without.
pub(crate) fn required<'a, K: driftless_provider::ManagedKind>(
    t: &'a Target<'_, K>,
    field: &str,
    how: &str,
) -> Result<&'a str, CloudError> {
    resolved(t, field).ok_or_else(|| {
        CloudError::terminal(
            "MissingParameter",
            format!("forProvider.{field} is not set: give {how}"),
        )
    })
}

/// A comma-joined list reference as ids.
pub(crate) fn split_ids(joined: &str) -> Vec<String> {
    joined
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether an EC2 error says the resource does not exist (`X.NotFound`;
/// NAT gateways say `NatGatewayNotFound`).
pub(crate) fn is_not_found<E, R>(
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    code_of(err).is_some_and(|c| c.ends_with(".NotFound") || c == "NatGatewayNotFound")
}

/// Whether an EC2 error is a dependency that blocks a deletion.
pub(crate) fn is_dependency_violation<E, R>(
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    matches!(
        code_of(err),
        Some("DependencyViolation" | "InvalidGroup.InUse")
    )
}

/// The Waiting message of a blocked deletion: what it waits on, by name.
pub(crate) fn waiting_on(what: &str, id: &str, dependents: &[String], aws_message: &str) -> String {
    if dependents.is_empty() {
        format!("{what} {id} cannot be deleted yet: {aws_message}")
    } else {
        format!(
            "{what} {id} cannot be deleted until these are gone: {}",
            dependents.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_map_drops_aws_tags() {
        let tags = [
            Tag::builder()
                .key("aws:cloudformation:stack-id")
                .value("x")
                .build(),
            Tag::builder().key("team").value("net").build(),
        ];
        assert_eq!(
            tag_map(&tags),
            BTreeMap::from([("team".to_string(), "net".to_string())])
        );
    }

    #[test]
    fn labels_name_id_and_owner() {
        let owned = [Tag::builder().key(TAG_OWNER).value("infra/a").build()];
        assert_eq!(
            label("subnet", "subnet-1", &owned),
            "subnet subnet-1 (driftless infra/a)"
        );
        let named = [Tag::builder().key("Name").value("legacy").build()];
        assert_eq!(
            label("subnet", "subnet-2", &named),
            "subnet subnet-2 (Name legacy)"
        );
        assert_eq!(label("subnet", "subnet-3", &[]), "subnet subnet-3");
    }

    #[test]
    fn another_objects_resource_is_refused() {
        let me = Identity::new("Vpc", "infra", "a");
        let theirs = Identity {
            name: "b".into(),
            ..me.clone()
        };
        assert!(check_owner(&me, "VPC", "vpc-1", &me.owner_tags()).is_ok());
        assert!(
            check_owner(&me, "VPC", "vpc-1", &BTreeMap::new()).is_ok(),
            "untagged: importable"
        );
        let err = check_owner(&me, "VPC", "vpc-1", &theirs.owner_tags()).unwrap_err();
        assert!(err.message.contains("infra/b"), "{err}");
    }
}
