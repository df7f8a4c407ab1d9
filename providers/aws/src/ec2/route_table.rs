//! `RouteTable` (aws.driftless.dev/v1alpha1): an EC2 route table, its routes
//! (reconciled as a set: `routes.rs`), the subnets associated with it and
//! whether it is its VPC's main table (`associations.rs`).
//!
//! Subnets: exactly those of `subnetIds` / `subnetRefs` / `subnetSelector`
//! (none when unset). A subnet associated with another table is moved here
//! (ReplaceRouteTableAssociation), unless that table is another driftless
//! object's: then the error names it, and nothing changes.
//!
//! `main: true` takes the VPC's main association and tags the table with
//! the one it took it from; `main: false` (or deletion) gives it back to that
//! table first, since AWS refuses to delete a main table.

use std::collections::BTreeSet;

use super::associations::{
    self, live, main_association, subnet_associations, AssociationStatus, PREVIOUS_MAIN,
};
use super::prelude::*;
use super::routes::{self, Route, RouteStatus, ROUTES};
use super::subnet::Subnet;
use super::vpc::VpcReference;
use super::{split_ids, tag_map, waiting_on};

reference! {
    /// The subnets associated with a route table.
    pub struct AssociatedSubnets(many Subnet = "Subnet") {
        /// Subnet ids: exactly these use the table (unset: none).
        ids "subnetIds", by_ref "subnetRefs", selector "subnetSelector"
    }
}

/// The desired state of a route table.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = VpcReference::required)]
pub struct RouteTableParameters {
    #[serde(flatten)]
    pub vpc: VpcReference,
    /// Exactly these routes, besides the VPC's `local` route (none when empty).
    #[serde(default)]
    #[schemars(length(max = 100))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(r, self.exists_one(s, (has(r.destinationCidrBlock) && has(s.destinationCidrBlock) && r.destinationCidrBlock == s.destinationCidrBlock) || (has(r.destinationIpv6CidrBlock) && has(s.destinationIpv6CidrBlock) && r.destinationIpv6CidrBlock == s.destinationIpv6CidrBlock)))",
        "message": "each destination may have only one route"
    }]))]
    pub routes: Vec<Route>,
    #[serde(flatten)]
    pub subnets: AssociatedSubnets,
    /// Make it the VPC's main table (used by subnets without a table).
    #[serde(default)]
    pub main: bool,
    /// Tags of the table. driftless adds its own `driftless.dev/*` owner tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40))]
    pub tags: BTreeMap<String, String>,
}

observation! {
    /// What AWS reports about the route table.
    pub struct RouteTableObservation {
        route_table_id: String,
        vpc_id: String,
        owner_id: String,
        routes: Vec<RouteStatus>,
        associations: Vec<AssociationStatus>,
        main: bool,
    }
}

field_keys! {
    /// What a route table's observation compares.
    pub enum RouteTableField {
        VpcId = "vpcId" immutable,
        Routes = "routes",
        SubnetIds = "subnetIds",
        Main = "main",
        Tags = "tags",
    }
}

managed_resource! {
    /// An EC2 route table with its routes and subnet associations. Its id is
    /// recorded in the `driftless.dev/external-name` annotation; set that
    /// annotation by hand to import an existing table.
    kind RouteTable("RouteTable"), spec RouteTableSpec, status RouteTableStatus("RouteTableStatus"),
    group "aws.driftless.dev", category "aws",
    for_provider RouteTableParameters, at_provider RouteTableObservation,
    fields RouteTableField,
    references(vpc, subnets; each routes = ROUTES),
}

described!(sdk::RouteTable, "route table", route_table_id, describe_route_tables, route_table_ids, route_tables {
    // DescribeRouteTables pages at most 100.
    const PAGE_SIZE: i32 = 100;

    /// Its associations: subnets, gateways, the VPC's main one.
    async fn dependents(ec2: &Ec2, id: &str) -> Result<Vec<String>, CloudError> {
        associations::dependents(ec2, id).await
    }
});

/// The spec's tags, plus the note of where the main association came from
/// while the table holds it.
fn effective_tags(
    rt: &sdk::RouteTable,
    spec: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut tags = spec.clone();
    if main_association(rt).is_some() {
        tags.extend(tag_map(rt.tags()).remove_entry(PREVIOUS_MAIN));
    }
    tags
}

fn desired_subnets(t: &Target<'_, RouteTable>) -> BTreeSet<String> {
    split_ids(resolved(t, AssociatedSubnets::FIELD).unwrap_or_default())
        .into_iter()
        .collect()
}

#[async_trait]
impl Ec2Kind for RouteTable {
    type Sdk = sdk::RouteTable;

    async fn observe(
        _ec2: &Ec2,
        t: &Target<'_, RouteTable>,
        rt: &sdk::RouteTable,
    ) -> Observed<RouteTable> {
        let id = rt.id().to_string();
        let vpc_id = rt.vpc_id().unwrap_or_default();
        let main = main_association(rt).is_some();
        let mut diff = Vec::new();
        diff.compare(
            RouteTableField::VpcId,
            vpc_id,
            resolved(t, VpcReference::FIELD),
        );
        let (have, want) = (
            routes::observed(rt.routes()),
            routes::desired(&t.spec.routes, t.resolved),
        );
        if have != want {
            diff.push(FieldDiff::new(
                RouteTableField::Routes,
                routes::shown(&have),
                routes::shown(&want),
            ));
        }
        let subnets: BTreeSet<String> = subnet_associations(rt).into_keys().collect();
        diff.compare(
            RouteTableField::SubnetIds,
            &subnets,
            Some(&desired_subnets(t)),
        );
        // Not main by the spec: given back only if driftless took it.
        let took = tag_map(rt.tags()).contains_key(PREVIOUS_MAIN);
        diff.compare(
            RouteTableField::Main,
            main,
            (t.spec.main || took).then_some(t.spec.main),
        );
        let tags = effective_tags(rt, &t.spec.tags);
        diff.extend(tags_diff(RouteTableField::Tags, rt, t.identity, &tags));
        Ok(Observation {
            diff,
            ready: true,
            at_provider: Some(RouteTableObservation {
                route_table_id: Some(id.clone()),
                vpc_id: Some(vpc_id.to_string()),
                owner_id: rt.owner_id().map(str::to_string),
                routes: Some(routes::status(rt.routes())),
                associations: Some(associations::status(rt)),
                main: Some(main),
            }),
            connection_details: BTreeMap::from([("routeTableId".to_string(), id)]),
            ..Observation::exists(rt.id())
        })
    }

    async fn create(ec2: &Ec2, t: &Target<'_, RouteTable>) -> Result<Created, CloudError> {
        let vpc_id = required(t, VpcReference::FIELD, "vpcId, vpcRef or vpcSelector")?;
        let tags = tag_specification(ResourceType::RouteTable, t.identity, &t.spec.tags);
        let req = ec2
            .client
            .create_route_table()
            .vpc_id(vpc_id)
            .tag_specifications(tags);
        let out = req.send().await.map_err(cloud_error)?;
        let id = out.route_table().and_then(sdk::RouteTable::route_table_id);
        let id = new_id(id, "CreateRouteTable returned no route table id")?;
        let _written = ec2.created::<sdk::RouteTable>(t.identity, &id);
        // The rest as an update of the table as created.
        if let Some(rt) = out.route_table() {
            let fields = vec![
                RouteTableField::Routes,
                RouteTableField::SubnetIds,
                RouteTableField::Main,
            ];
            RouteTable::update(ec2, t, rt, fields).await?;
        }
        Ok(Created { external_name: id })
    }

    async fn update(
        ec2: &Ec2,
        t: &Target<'_, RouteTable>,
        rt: &sdk::RouteTable,
        fields: Vec<RouteTableField>,
    ) -> Result<(), CloudError> {
        for field in fields {
            match field {
                RouteTableField::Routes => {
                    let (have, want) = (
                        routes::observed(rt.routes()),
                        routes::desired(&t.spec.routes, t.resolved),
                    );
                    ec2.sync_routes(rt.id(), &have, &want).await?
                }
                RouteTableField::SubnetIds => ec2.sync_subnets(rt, &desired_subnets(t)).await?,
                RouteTableField::Main if t.spec.main => ec2.take_main(rt).await?,
                RouteTableField::Main => {
                    if let Err(why) = ec2.give_back_main(rt).await? {
                        return Err(CloudError::retryable("MainRouteTable", why));
                    }
                }
                RouteTableField::Tags => {
                    ec2.sync_tags(rt, t.identity, &effective_tags(rt, &t.spec.tags))
                        .await?
                }
                RouteTableField::VpcId => {} // immutable
            }
        }
        Ok(())
    }

    async fn delete(ec2: &Ec2, rt: &sdk::RouteTable) -> Result<Deletion, CloudError> {
        // Read fresh: associations made since the snapshot block the delete.
        let Some(rt) = sdk::RouteTable::describe_one(&ec2.client, rt.id()).await? else {
            return Ok(Deletion::Done);
        };
        if let Err(why) = ec2.give_back_main(&rt).await? {
            return Ok(Deletion::Waiting(waiting_on(
                sdk::RouteTable::WHAT,
                rt.id(),
                &[],
                &why,
            )));
        }
        let others = rt
            .associations()
            .iter()
            .filter(live)
            .filter(|a| a.main() != Some(true));
        for assoc in others.filter_map(|a| a.route_table_association_id()) {
            ec2.disassociate(assoc).await?;
        }
        let sent = ec2
            .client
            .delete_route_table()
            .route_table_id(rt.id())
            .send()
            .await;
        ec2.deletion(&rt, sent).await
    }
}
