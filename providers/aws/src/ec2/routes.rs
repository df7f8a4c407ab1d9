//! The routes of a `RouteTable`, reconciled as a set keyed by destination
//! (a table has at most one route per destination): a route missing in AWS
//! is created, one with another target replaced, one the spec does not have
//! deleted. The `local` route and routes propagated from a virtual private
//! gateway belong to AWS and are never touched.

use std::collections::BTreeMap;
use std::fmt;

use driftless_provider::{item_key, Reference, References};

use super::instance::Instance;
use super::internet_gateway::InternetGateway;
use super::is_not_found;
use super::nat_gateway::NatGateway;
use super::prelude::*;

reference! {
    /// The internet gateway a route sends its traffic to.
    pub struct RouteGateway(one InternetGateway = "InternetGateway") {
        /// An internet gateway's (or virtual private gateway's) id.
        id "gatewayId", by_ref "gatewayRef", selector "gatewaySelector"
    }
}

reference! {
    /// The NAT gateway a route sends its traffic to.
    pub struct RouteNatGateway(one NatGateway = "NatGateway") {
        /// A NAT gateway's id.
        id "natGatewayId", by_ref "natGatewayRef", selector "natGatewaySelector"
    }
}

reference! {
    /// The instance (a NAT instance) a route sends its traffic to.
    pub struct RouteInstance(one Instance = "Instance") {
        /// An instance's id.
        id "instanceId", by_ref "instanceRef", selector "instanceSelector"
    }
}

/// The spec's list of routes, as `status.resolvedReferences` keys its items.
pub const ROUTES: &str = "routes";

/// One route: a destination and exactly one target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = Route::rules)]
pub struct Route {
    /// The IPv4 destination, e.g. `0.0.0.0/0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 18))]
    pub destination_cidr_block: Option<String>,
    /// The IPv6 destination, e.g. `::/0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 43))]
    pub destination_ipv6_cidr_block: Option<String>,
    #[serde(flatten)]
    pub gateway: RouteGateway,
    #[serde(flatten)]
    pub nat_gateway: RouteNatGateway,
    #[serde(flatten)]
    pub instance: RouteInstance,
    /// A VPC peering connection's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub vpc_peering_connection_id: Option<String>,
}

impl Route {
    /// Exactly one destination and exactly one target. Attached as a
    /// transform: a rule on a struct with flattened fields would be dropped.
    fn rules(schema: &mut schemars::Schema) {
        // Each group counts once, however many of its fields are set.
        let one = |groups: &[&[&str]]| {
            let has = groups.iter().map(|fields| {
                let any: Vec<String> = fields.iter().map(|f| format!("has(self.{f})")).collect();
                any.join(" || ")
            });
            format!(
                "[{}].filter(x, x).size() == 1",
                has.collect::<Vec<_>>().join(", ")
            )
        };
        let destination = one(&[&["destinationCidrBlock"], &["destinationIpv6CidrBlock"]]);
        let message =
            "a route needs exactly one of destinationCidrBlock or destinationIpv6CidrBlock";
        driftless_provider::push_rule(schema, &destination, message);
        let targets = one(&[
            &["gatewayId", "gatewayRef", "gatewaySelector"],
            &["natGatewayId", "natGatewayRef", "natGatewaySelector"],
            &["instanceId", "instanceRef", "instanceSelector"],
            &["vpcPeeringConnectionId"],
        ]);
        let message = "a route needs exactly one target: gatewayId (gatewayRef, gatewaySelector), natGatewayId (natGatewayRef, natGatewaySelector), instanceId (instanceRef, instanceSelector) or vpcPeeringConnectionId";
        driftless_provider::push_rule(schema, &targets, message);
        let local = "!has(self.gatewayId) || self.gatewayId != 'local'";
        let message = "the local route is AWS's own: leave it out";
        driftless_provider::push_rule(schema, local, message);
    }
}

/// The references of one route (resolved under `routes[i].`).
impl References for Route {
    fn references(&self) -> Vec<Reference> {
        let all = [
            self.gateway.reference(),
            self.nat_gateway.reference(),
            self.instance.reference(),
        ];
        all.into_iter().flatten().collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Destination {
    V4(String),
    V6(String),
    PrefixList(String),
}

/// Where a route sends traffic. `Other` is a target the spec cannot name
/// (a transit gateway, a network interface...): such a route is replaced or
/// deleted, as the spec says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Hop {
    Gateway(String),
    NatGateway(String),
    Instance(String),
    Peering(String),
    Other(String),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(c) | Self::V6(c) | Self::PrefixList(c) => f.write_str(c),
        }
    }
}

impl Hop {
    fn id(&self) -> &str {
        match self {
            Self::Gateway(id)
            | Self::NatGateway(id)
            | Self::Instance(id)
            | Self::Peering(id)
            | Self::Other(id) => id,
        }
    }
}

pub(crate) type Routes = BTreeMap<Destination, Option<Hop>>;

/// The spec's routes, their referenced targets as resolved.
pub(crate) fn desired(routes: &[Route], resolved: &BTreeMap<String, String>) -> Routes {
    let each = routes.iter().enumerate().filter_map(|(i, r)| {
        let by_ref = |field: &str| {
            let id = resolved.get(&item_key(ROUTES, i, field));
            id.filter(|id| !id.is_empty()).cloned()
        };
        let hop = by_ref(RouteGateway::FIELD)
            .map(Hop::Gateway)
            .or_else(|| by_ref(RouteNatGateway::FIELD).map(Hop::NatGateway))
            .or_else(|| by_ref(RouteInstance::FIELD).map(Hop::Instance))
            .or_else(|| r.vpc_peering_connection_id.clone().map(Hop::Peering));
        let v4 = r.destination_cidr_block.clone().map(Destination::V4);
        let destination = v4.or_else(|| r.destination_ipv6_cidr_block.clone().map(Destination::V6));
        Some((destination?, hop))
    });
    each.collect()
}

fn destination(r: &sdk::Route) -> Option<Destination> {
    let v4 = r
        .destination_cidr_block()
        .map(|c| Destination::V4(c.into()));
    let v6 = || {
        r.destination_ipv6_cidr_block()
            .map(|c| Destination::V6(c.into()))
    };
    let list = || {
        r.destination_prefix_list_id()
            .map(|p| Destination::PrefixList(p.into()))
    };
    v4.or_else(v6).or_else(list)
}

fn hop(r: &sdk::Route) -> Option<Hop> {
    let set = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
    set(r.gateway_id())
        .map(Hop::Gateway)
        .or_else(|| set(r.nat_gateway_id()).map(Hop::NatGateway))
        .or_else(|| set(r.instance_id()).map(Hop::Instance))
        .or_else(|| set(r.vpc_peering_connection_id()).map(Hop::Peering))
        .or_else(|| set(r.transit_gateway_id()).map(Hop::Other))
        .or_else(|| set(r.network_interface_id()).map(Hop::Other))
        .or_else(|| set(r.egress_only_internet_gateway_id()).map(Hop::Other))
        .or_else(|| set(r.carrier_gateway_id()).map(Hop::Other))
        .or_else(|| set(r.local_gateway_id()).map(Hop::Other))
}

/// AWS's own routes: the VPC's `local` route and propagated ones.
fn aws_own(r: &sdk::Route) -> bool {
    r.gateway_id() == Some("local")
        || r.origin() == Some(&sdk::RouteOrigin::EnableVgwRoutePropagation)
}

/// The routes of a table that the spec manages.
pub(crate) fn observed(routes: &[sdk::Route]) -> Routes {
    let managed = routes.iter().filter(|r| !aws_own(r));
    managed
        .filter_map(|r| Some((destination(r)?, hop(r))))
        .collect()
}

/// `0.0.0.0/0 -> igw-1`, for diffs.
pub(crate) fn shown(routes: &Routes) -> Vec<String> {
    let hop = |h: &Option<Hop>| h.as_ref().map_or("(no target)", Hop::id).to_string();
    routes
        .iter()
        .map(|(d, h)| format!("{d} -> {}", hop(h)))
        .collect()
}

/// Every route as AWS reports it, `local` included, with its state
/// (`active`, or `blackhole` once its target is gone).
pub(crate) fn status(routes: &[sdk::Route]) -> Vec<RouteStatus> {
    let each = routes.iter().map(|r| RouteStatus {
        destination: destination(r).map(|d| d.to_string()),
        target: hop(r).map(|h| h.id().to_string()),
        state: r.state().map(|s| s.as_str().to_string()),
        origin: r.origin().map(|o| o.as_str().to_string()),
    });
    each.collect()
}

observation! {
    /// One route as AWS reports it.
    pub struct RouteStatus {
        /// A CIDR block or a prefix list id.
        destination: String,
        /// The target's id (`local` for the VPC's own route).
        target: String,
        /// `active`, or `blackhole` when the target is gone.
        state: String,
        /// `CreateRouteTable`, `CreateRoute` or `EnableVgwRoutePropagation`.
        origin: String,
    }
}

/// CreateRoute and ReplaceRoute take the same fields; their builders differ
/// only in type.
macro_rules! route_call {
    ($ec2:ident.$call:ident($table:expr, $destination:expr, $hop:expr)) => {{
        let req = $ec2.client.$call().route_table_id($table);
        let req = match $destination {
            Destination::V4(c) => req.destination_cidr_block(c),
            Destination::V6(c) => req.destination_ipv6_cidr_block(c),
            Destination::PrefixList(p) => req.destination_prefix_list_id(p),
        };
        let req = match $hop {
            Hop::Gateway(id) => req.gateway_id(id),
            Hop::NatGateway(id) => req.nat_gateway_id(id),
            Hop::Instance(id) => req.instance_id(id),
            Hop::Peering(id) => req.vpc_peering_connection_id(id),
            // Never desired (the spec cannot name one): kept for exhaustiveness.
            Hop::Other(id) => req.network_interface_id(id),
        };
        req.send().await.map(drop).map_err(cloud_error)
    }};
}

impl Ec2 {
    /// Creates what is missing, replaces what has another target, deletes
    /// what the spec does not have.
    pub(crate) async fn sync_routes(
        &self,
        table: &str,
        have: &Routes,
        want: &Routes,
    ) -> Result<(), CloudError> {
        for (destination, hop) in want {
            let Some(hop) = hop else { continue };
            match have.get(destination) {
                None => route_call!(self.create_route(table, destination, hop))?,
                Some(h) if h.as_ref() != Some(hop) => {
                    route_call!(self.replace_route(table, destination, hop))?
                }
                Some(_) => {}
            }
        }
        for destination in have.keys().filter(|d| !want.contains_key(*d)) {
            let req = self.client.delete_route().route_table_id(table);
            let req = match destination {
                Destination::V4(c) => req.destination_cidr_block(c),
                Destination::V6(c) => req.destination_ipv6_cidr_block(c),
                Destination::PrefixList(p) => req.destination_prefix_list_id(p),
            };
            match req.send().await {
                // Already gone: what we wanted.
                Err(e) if !is_not_found(&e) => return Err(cloud_error(e)),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftless_provider::item_references;

    fn aws(destination: &str, gateway: &str, origin: sdk::RouteOrigin) -> sdk::Route {
        sdk::Route::builder()
            .destination_cidr_block(destination)
            .gateway_id(gateway)
            .origin(origin)
            .build()
    }

    #[test]
    fn the_local_route_is_not_managed_and_references_resolve_per_item() {
        let have = observed(&[
            aws("10.0.0.0/16", "local", sdk::RouteOrigin::CreateRouteTable),
            aws("0.0.0.0/0", "igw-1", sdk::RouteOrigin::CreateRoute),
        ]);
        let spec: Vec<Route> = serde_json::from_value(serde_json::json!([
            {"destinationCidrBlock": "0.0.0.0/0", "gatewayRef": {"name": "igw"}},
            {"destinationIpv6CidrBlock": "::/0", "gatewayId": "igw-2"},
        ]))
        .unwrap();
        let resolved = BTreeMap::from([
            ("routes[0].gatewayId".to_string(), "igw-1".to_string()),
            ("routes[1].gatewayId".to_string(), "igw-2".to_string()),
        ]);
        let want = desired(&spec, &resolved);
        assert_eq!(shown(&have), ["0.0.0.0/0 -> igw-1"]);
        assert_eq!(shown(&want), ["0.0.0.0/0 -> igw-1", "::/0 -> igw-2"]);
        let keys: Vec<String> = item_references(ROUTES, &spec)
            .into_iter()
            .map(|r| r.field)
            .collect();
        assert_eq!(keys, ["routes[0].gatewayId", "routes[1].gatewayId"]);
    }
}
