//! The associations of a `RouteTable`: the subnets that use it, reconciled
//! as a set, and the VPC's main association, taken and given back.

use std::collections::{BTreeMap, BTreeSet};

use driftless_provider::TAG_OWNER;

use super::prelude::*;
use super::{is_not_found, tag_map};

/// The table a main table took the VPC's main association from.
pub(crate) const PREVIOUS_MAIN: &str = "driftless.dev/previous-main-route-table";

observation! {
    /// One association of the table.
    pub struct AssociationStatus {
        association_id: String,
        subnet_id: String,
        gateway_id: String,
        /// The VPC's main association.
        main: bool,
        state: String,
    }
}

/// Every association of the table, as AWS reports it.
pub(crate) fn status(rt: &sdk::RouteTable) -> Vec<AssociationStatus> {
    let each = rt.associations().iter().map(|a| AssociationStatus {
        association_id: a.route_table_association_id().map(str::to_string),
        subnet_id: a.subnet_id().map(str::to_string),
        gateway_id: a.gateway_id().map(str::to_string),
        main: a.main(),
        state: a
            .association_state()
            .and_then(|s| s.state())
            .map(|s| s.as_str().to_string()),
    });
    each.collect()
}

/// What keeps table `id` from being deleted: its associations.
pub(crate) async fn dependents(ec2: &Ec2, id: &str) -> Result<Vec<String>, CloudError> {
    let table = sdk::RouteTable::describe_one(&ec2.client, id).await?;
    let each = table.iter().flat_map(|t| t.associations()).map(|a| {
        if a.main() == Some(true) {
            return "its VPC's main association (make another table main)".to_string();
        }
        let id = a.route_table_association_id().unwrap_or_default();
        let of = a.subnet_id().or(a.gateway_id()).unwrap_or_default();
        format!("association {id} of {of}")
    });
    Ok(each.collect())
}

pub(crate) fn live(a: &&sdk::RouteTableAssociation) -> bool {
    let state = a.association_state().and_then(|s| s.state());
    !matches!(
        state.map(|s| s.as_str()),
        Some("disassociated" | "disassociating")
    )
}

/// Subnet id to association id, of the table's subnet associations.
pub(crate) fn subnet_associations(rt: &sdk::RouteTable) -> BTreeMap<String, String> {
    let each = rt.associations().iter().filter(live).filter_map(|a| {
        Some((
            a.subnet_id()?.to_string(),
            a.route_table_association_id()?.to_string(),
        ))
    });
    each.collect()
}

pub(crate) fn main_association(rt: &sdk::RouteTable) -> Option<&str> {
    let main = rt
        .associations()
        .iter()
        .filter(live)
        .find(|a| a.main() == Some(true));
    main.and_then(|a| a.route_table_association_id())
}

/// Refuses to take `what` from `from` when another driftless object owns it.
fn not_theirs(from: &sdk::RouteTable, me: &sdk::RouteTable, what: &str) -> Result<(), CloudError> {
    let owner = |rt: &sdk::RouteTable| tag_map(rt.tags()).remove(TAG_OWNER);
    match owner(from) {
        Some(theirs) if Some(&theirs) != owner(me).as_ref() => Err(CloudError::retryable(
            "AssociatedElsewhere",
            format!("{what} is associated with route table {} of driftless object {theirs}: remove it there first", from.id()),
        )),
        _ => Ok(()),
    }
}

impl Ec2 {
    /// The table associated with `subnet` and that association, if any.
    async fn table_of_subnet(
        &self,
        subnet: &str,
    ) -> Result<Option<(sdk::RouteTable, String)>, CloudError> {
        let tables = sdk::RouteTable::list(
            &self.client,
            vec![filter("association.subnet-id", [subnet])],
        )
        .await?;
        Ok(tables.into_iter().find_map(|t| {
            let assoc = subnet_associations(&t).remove(subnet)?;
            Some((t, assoc))
        }))
    }

    /// Moves association `assoc` to table `to`.
    async fn move_association(&self, assoc: &str, to: &str) -> Result<(), CloudError> {
        let req = self
            .client
            .replace_route_table_association()
            .association_id(assoc);
        req.route_table_id(to)
            .send()
            .await
            .map(drop)
            .map_err(cloud_error)
    }

    pub(crate) async fn sync_subnets(
        &self,
        rt: &sdk::RouteTable,
        want: &BTreeSet<String>,
    ) -> Result<(), CloudError> {
        let have = subnet_associations(rt);
        for subnet in want.iter().filter(|s| !have.contains_key(*s)) {
            // Asked first: LocalStack answers AssociateRouteTable for a subnet
            // another table has with that association, unchanged (AWS refuses).
            match self.table_of_subnet(subnet).await? {
                Some((from, assoc)) => {
                    not_theirs(&from, rt, &format!("subnet {subnet}"))?;
                    self.move_association(&assoc, rt.id()).await?
                }
                None => {
                    let req = self.client.associate_route_table().route_table_id(rt.id());
                    req.subnet_id(subnet).send().await.map_err(cloud_error)?;
                }
            }
        }
        for (_, assoc) in have.iter().filter(|(s, _)| !want.contains(*s)) {
            self.disassociate(assoc).await?;
        }
        Ok(())
    }

    pub(crate) async fn disassociate(&self, assoc: &str) -> Result<(), CloudError> {
        match self
            .client
            .disassociate_route_table()
            .association_id(assoc)
            .send()
            .await
        {
            Err(e) if !is_not_found(&e) => Err(cloud_error(e)),
            _ => Ok(()),
        }
    }

    /// Takes the VPC's main association, noting in a tag where it was.
    pub(crate) async fn take_main(&self, rt: &sdk::RouteTable) -> Result<(), CloudError> {
        let vpc = rt.vpc_id().unwrap_or_default();
        let filters = vec![
            filter("vpc-id", [vpc]),
            filter("association.main", ["true"]),
        ];
        let current = sdk::RouteTable::list(&self.client, filters).await?;
        let Some((from, assoc)) = current.iter().find_map(|t| Some((t, main_association(t)?)))
        else {
            return Err(CloudError::retryable(
                "NoMainRouteTable",
                format!("VPC {vpc} has no main route table"),
            ));
        };
        if from.id() != rt.id() {
            not_theirs(from, rt, &format!("VPC {vpc}'s main association"))?;
            let tag = sdk::Tag::builder()
                .key(PREVIOUS_MAIN)
                .value(from.id())
                .build();
            let req = self.client.create_tags().resources(rt.id()).tags(tag);
            req.send().await.map_err(cloud_error)?;
            self.move_association(assoc, rt.id()).await?;
        }
        Ok(())
    }

    /// Gives the main association back to the table it came from. `Err`
    /// with why, when there is none to give it to.
    pub(crate) async fn give_back_main(
        &self,
        rt: &sdk::RouteTable,
    ) -> Result<Result<(), String>, CloudError> {
        let Some(assoc) = main_association(rt) else {
            return Ok(Ok(()));
        };
        let previous = tag_map(rt.tags()).remove(PREVIOUS_MAIN);
        let back = match previous {
            Some(p) => sdk::RouteTable::describe_one(&self.client, &p)
                .await?
                .map(|_| p),
            None => None,
        };
        let Some(back) = back else {
            return Ok(Err("it is its VPC's main route table and driftless knows no table to give that role to: make another table main".into()));
        };
        self.move_association(assoc, &back).await.map(Ok)
    }
}
