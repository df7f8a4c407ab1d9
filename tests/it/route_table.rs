//! RouteTable end to end: routes and subnet associations by reference, a
//! route deleted, added or retargeted out of band put back (with its
//! DriftCorrected Event), the VPC's main table taken and given back, an
//! immutable VPC refused, admission rules, a lost create adopted, and the
//! idle cost of observing many tables.

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, RouteTable as AwsTable};
use driftless_aws::{InternetGateway, RouteTable, Subnet, Vpc};
use driftless_provider::TAG_OWNER;
use kube::api::DeleteParams;
use kube::Api;
use serde_json::{json, Value};

use crate::ec2::{
    assert_idle_cost_of_fifty, assert_lost_create_adopted, cidr16, create, external_name, manifest,
    patch_for_provider, tag_map, wait_gone, wait_message, wait_ready, wait_synced,
};
use crate::support::{self, code_in, unless_not_found, wait_for, Scope};

const POLL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(90);
const PREVIOUS_MAIN: &str = "driftless.dev/previous-main-route-table";

async fn table(ec2: &aws_sdk_ec2::Client, id: &str) -> Option<AwsTable> {
    let result = ec2.describe_route_tables().route_table_ids(id).send().await;
    let out = unless_not_found(
        &format!("DescribeRouteTables {id}"),
        result,
        code_in(&["InvalidRouteTableID.NotFound"]),
    )?;
    out.route_tables().first().cloned()
}

/// `destination -> target` of the table's routes, `local` included.
async fn routes(ec2: &aws_sdk_ec2::Client, id: &str) -> Vec<String> {
    let Some(t) = table(ec2, id).await else {
        return Vec::new();
    };
    let mut shown: Vec<String> = t
        .routes()
        .iter()
        .map(|r| {
            let to = r.gateway_id().or(r.instance_id()).unwrap_or("?");
            format!("{} -> {to}", r.destination_cidr_block().unwrap_or("?"))
        })
        .collect();
    shown.sort();
    shown
}

/// The subnets associated with the table.
async fn subnets_of(ec2: &aws_sdk_ec2::Client, id: &str) -> Vec<String> {
    let Some(t) = table(ec2, id).await else {
        return Vec::new();
    };
    let mut ids: Vec<String> = t
        .associations()
        .iter()
        .filter_map(|a| a.subnet_id().map(String::from))
        .collect();
    ids.sort();
    ids
}

/// The VPC's main table.
async fn main_table(ec2: &aws_sdk_ec2::Client, vpc: &str) -> String {
    let f = |k: &str, v: &str| Filter::builder().name(k).values(v).build();
    let out = ec2
        .describe_route_tables()
        .filters(f("vpc-id", vpc))
        .filters(f("association.main", "true"))
        .send()
        .await
        .unwrap();
    let tables = out.route_tables();
    assert_eq!(tables.len(), 1, "one main table in {vpc}: {tables:?}");
    tables[0].route_table_id().unwrap().to_string()
}

async fn hand_vpc(ec2: &aws_sdk_ec2::Client) -> String {
    let (cidr, _) = cidr16();
    let out = ec2.create_vpc().cidr_block(cidr).send().await.unwrap();
    out.vpc().unwrap().vpc_id().unwrap().to_string()
}

async fn hand_gateway(ec2: &aws_sdk_ec2::Client) -> String {
    let out = ec2.create_internet_gateway().send().await.unwrap();
    let igw = out.internet_gateway().unwrap();
    igw.internet_gateway_id().unwrap().to_string()
}

/// Waits for a DriftCorrected Event about `name` whose note says `what`.
async fn wait_drift_event(scope: &Scope, name: &str, what: &str) -> String {
    wait_for(&format!("DriftCorrected event ({what})"), WAIT, || async {
        let events = support::events_about(scope, name).await;
        events.into_iter().find_map(|e| {
            let note = e.note.unwrap_or_default();
            (e.reason.as_deref() == Some("DriftCorrected") && note.contains(what)).then_some(note)
        })
    })
    .await
}

/// How many times a DriftCorrected Event about `name` was published.
async fn drift_count(scope: &Scope, name: &str) -> i32 {
    let events = support::events_about(scope, name).await;
    let drift = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("DriftCorrected"));
    drift
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum()
}

async fn wait_routes(ec2: &aws_sdk_ec2::Client, id: &str, what: &str, want: &[String]) {
    let at = Instant::now();
    wait_for(what, WAIT, || async {
        (routes(ec2, id).await == want).then_some(())
    })
    .await;
    eprintln!("{what} in {:?} (poll {POLL:?})", at.elapsed());
}

#[tokio::test]
async fn route_table_lifecycle_references_drift_and_deletion() {
    let mut scope = Scope::new("rt").await;
    scope.start_controller(POLL);
    let ec2 = support::ec2().await;
    let (cidr, b) = cidr16();
    let vpcs: Api<Vpc> = scope.api();
    let tables: Api<RouteTable> = scope.api();
    create::<Vpc>(
        &scope,
        manifest(&scope, "Vpc", "net", json!({"cidrBlock": cidr})),
    )
    .await;
    let gw = manifest(
        &scope,
        "InternetGateway",
        "gw",
        json!({"vpcRef": {"name": "net"}}),
    );
    create::<InternetGateway>(&scope, gw).await;
    let subnet = json!({"vpcRef": {"name": "net"}, "cidrBlock": format!("10.{b}.1.0/24")});
    create::<Subnet>(&scope, manifest(&scope, "Subnet", "public", subnet)).await;
    let for_provider = json!({
        "vpcRef": {"name": "net"},
        "routes": [{"destinationCidrBlock": "0.0.0.0/0", "gatewayRef": {"name": "gw"}}],
        "subnetRefs": [{"name": "public"}],
        "tags": {"tier": "public"},
    });
    create::<RouteTable>(
        &scope,
        manifest(&scope, "RouteTable", "public", for_provider),
    )
    .await;

    let vpc = external_name(&wait_ready(&vpcs, "net").await);
    let igw = external_name(&wait_ready(&scope.api::<InternetGateway>(), "gw").await);
    let sub = external_name(&wait_ready(&scope.api::<Subnet>(), "public").await);
    let rt = wait_synced(&tables, "public").await;
    let id = external_name(&rt);
    assert!(id.starts_with("rtb-"), "{id}");
    let status = rt.status.unwrap();
    let refs = &status.resolved_references;
    assert_eq!(refs.get("vpcId"), Some(&vpc), "{refs:?}");
    assert_eq!(refs.get("routes[0].gatewayId"), Some(&igw), "{refs:?}");
    assert_eq!(refs.get("subnetIds"), Some(&sub), "{refs:?}");
    let at = status.at_provider.unwrap();
    assert_eq!(at.route_table_id.as_deref(), Some(id.as_str()));
    assert_eq!(at.vpc_id.as_deref(), Some(vpc.as_str()));
    assert_eq!(at.main, Some(false));
    let shown: Vec<(String, String, String)> = at
        .routes
        .unwrap()
        .into_iter()
        .map(|r| (r.destination.unwrap(), r.target.unwrap(), r.state.unwrap()))
        .collect();
    assert!(
        shown.contains(&("0.0.0.0/0".into(), igw.clone(), "active".into())),
        "{shown:?}"
    );
    assert!(
        shown.contains(&(cidr.clone(), "local".into(), "active".into())),
        "{shown:?}"
    );
    let associations = at.associations.unwrap();
    assert_eq!(associations.len(), 1, "{associations:?}");
    assert_eq!(associations[0].subnet_id.as_deref(), Some(sub.as_str()));
    // In AWS: the route, the association, the tags from the create call.
    let want = vec![format!("0.0.0.0/0 -> {igw}"), format!("{cidr} -> local")];
    assert_eq!(routes(&ec2, &id).await, want);
    assert_eq!(subnets_of(&ec2, &id).await, [sub.as_str()]);
    let tags = tag_map(table(&ec2, &id).await.unwrap().tags());
    assert_eq!(tags.get("tier").map(String::as_str), Some("public"));
    assert_eq!(tags.get(TAG_OWNER), Some(&format!("{}/public", scope.ns)));
    assert_eq!(scope.calls.operation_total("CreateRouteTable"), 1);
    assert_eq!(scope.calls.operation_total("CreateTags"), 0);

    // A route deleted out of band is put back, with its Event.
    let del = ec2
        .delete_route()
        .route_table_id(&id)
        .destination_cidr_block("0.0.0.0/0");
    del.send().await.unwrap();
    wait_routes(&ec2, &id, "deleted route restored", &want).await;
    let note = wait_drift_event(&scope, "public", "forProvider.routes").await;
    eprintln!("event: {note}");
    // One added out of band is removed.
    let add = ec2
        .create_route()
        .route_table_id(&id)
        .destination_cidr_block("192.168.0.0/16");
    add.gateway_id(&igw).send().await.unwrap();
    wait_routes(&ec2, &id, "added route removed", &want).await;
    // The same Event again (the recorder counts repeats in its series).
    wait_for("a second DriftCorrected", WAIT, || async {
        (drift_count(&scope, "public").await >= 2).then_some(())
    })
    .await;
    // One retargeted out of band is replaced.
    let other = hand_gateway(&ec2).await;
    let replace = ec2
        .replace_route()
        .route_table_id(&id)
        .destination_cidr_block("0.0.0.0/0");
    replace.gateway_id(&other).send().await.unwrap();
    wait_routes(&ec2, &id, "retargeted route replaced", &want).await;
    assert!(scope.calls.operation_total("ReplaceRoute") >= 1);
    // An association removed out of band is put back.
    let assoc = associations[0].association_id.clone().unwrap();
    ec2.disassociate_route_table()
        .association_id(assoc)
        .send()
        .await
        .unwrap();
    wait_for("association restored", WAIT, || async {
        (subnets_of(&ec2, &id).await == [sub.clone()]).then_some(())
    })
    .await;

    // Moved out of band to another table: taken back.
    let elsewhere_table = ec2.create_route_table().vpc_id(&vpc).send().await.unwrap();
    let elsewhere_table = elsewhere_table
        .route_table()
        .unwrap()
        .route_table_id()
        .unwrap()
        .to_string();
    let assoc = table(&ec2, &id).await.unwrap().associations()[0]
        .route_table_association_id()
        .unwrap()
        .to_string();
    let moved = ec2.replace_route_table_association().association_id(assoc);
    moved.route_table_id(&elsewhere_table).send().await.unwrap();
    wait_for("subnet taken back", WAIT, || async {
        let back = subnets_of(&ec2, &id).await == [sub.clone()];
        (back && subnets_of(&ec2, &elsewhere_table).await.is_empty()).then_some(())
    })
    .await;
    assert!(scope.calls.operation_total("ReplaceRouteTableAssociation") >= 1);
    ec2.delete_route_table()
        .route_table_id(elsewhere_table)
        .send()
        .await
        .unwrap();

    // The VPC is immutable: refused, nothing changed.
    let elsewhere = hand_vpc(&ec2).await;
    patch_for_provider(&tables, "public", json!({"vpcId": elsewhere})).await;
    let (_, msg) = wait_message(&tables, "public", "Synced", "False", |_, m| {
        m.contains("vpcId")
    })
    .await;
    eprintln!("immutable change refused: {msg}");
    assert_eq!(scope.calls.operation_total("DeleteRouteTable"), 0);
    assert_eq!(scope.calls.operation_total("CreateRouteTable"), 1);
    patch_for_provider(&tables, "public", json!({"vpcId": null})).await;
    wait_synced(&tables, "public").await;

    // Dropping the subnet from the spec disassociates it; deleting the
    // object deletes the table (disassociating what remains first).
    patch_for_provider(&tables, "public", json!({"subnetRefs": null})).await;
    wait_for("subnet disassociated", WAIT, || async {
        subnets_of(&ec2, &id).await.is_empty().then_some(())
    })
    .await;
    patch_for_provider(
        &tables,
        "public",
        json!({"subnetRefs": [{"name": "public"}]}),
    )
    .await;
    wait_for("subnet associated again", WAIT, || async {
        (subnets_of(&ec2, &id).await == [sub.clone()]).then_some(())
    })
    .await;
    tables
        .delete("public", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&tables, "public").await;
    assert!(table(&ec2, &id).await.is_none(), "table {id} not deleted");
    for (kind, name) in [
        ("Subnet", "public"),
        ("InternetGateway", "gw"),
        ("Vpc", "net"),
    ] {
        let (ok, _, err) = scope
            .kubectl(
                &["delete", kind, name, "-n", &scope.ns, "--wait=false"],
                None,
            )
            .await;
        assert!(ok, "{err}");
    }
    wait_gone(&vpcs, "net").await;
    ec2.delete_internet_gateway()
        .internet_gateway_id(other)
        .send()
        .await
        .unwrap();
    ec2.delete_vpc().vpc_id(elsewhere).send().await.unwrap();
}

#[tokio::test]
async fn a_main_table_takes_the_vpc_main_role_and_gives_it_back() {
    let mut scope = Scope::new("rt-main").await;
    scope.start_controller(POLL);
    let ec2 = support::ec2().await;
    let tables: Api<RouteTable> = scope.api();
    let vpc = hand_vpc(&ec2).await;
    let original = main_table(&ec2, &vpc).await;
    let m = manifest(
        &scope,
        "RouteTable",
        "main",
        json!({"vpcId": vpc, "main": true}),
    );
    create::<RouteTable>(&scope, m).await;
    let rt = wait_synced(&tables, "main").await;
    let id = external_name(&rt);
    assert_eq!(rt.status.unwrap().at_provider.unwrap().main, Some(true));
    assert_eq!(main_table(&ec2, &vpc).await, id);
    let tags = tag_map(table(&ec2, &id).await.unwrap().tags());
    assert_eq!(tags.get(PREVIOUS_MAIN), Some(&original), "{tags:?}");

    // main: false gives the role back to the table it was taken from.
    patch_for_provider(&tables, "main", json!({"main": false})).await;
    wait_for("main role given back", WAIT, || async {
        (main_table(&ec2, &vpc).await == original).then_some(())
    })
    .await;
    // The status of the next observation says so.
    wait_for("status.atProvider.main false", WAIT, || async {
        let at = tables.get("main").await.ok()?.status?.at_provider?;
        (at.main == Some(false)).then_some(())
    })
    .await;
    wait_for("previous-main tag dropped", WAIT, || async {
        let tags = tag_map(table(&ec2, &id).await?.tags());
        (!tags.contains_key(PREVIOUS_MAIN)).then_some(())
    })
    .await;

    // Main again, then deleted: the role goes back first (AWS refuses to
    // delete a main table; LocalStack does not).
    patch_for_provider(&tables, "main", json!({"main": true})).await;
    wait_for("main again", WAIT, || async {
        (main_table(&ec2, &vpc).await == id).then_some(())
    })
    .await;
    tables
        .delete("main", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&tables, "main").await;
    assert!(table(&ec2, &id).await.is_none(), "table {id} not deleted");
    assert_eq!(main_table(&ec2, &vpc).await, original);
    ec2.delete_vpc().vpc_id(vpc).send().await.unwrap();
}

#[tokio::test]
async fn admission_refuses_routes_without_one_destination_and_one_target() {
    let scope = Scope::new("rt-cel").await;
    let refused = [
        (
            json!({"destinationCidrBlock": "0.0.0.0/0"}),
            "exactly one target",
        ),
        (
            json!({"destinationCidrBlock": "0.0.0.0/0", "gatewayId": "igw-1", "natGatewayId": "nat-1"}),
            "exactly one target",
        ),
        (
            json!({"destinationCidrBlock": "0.0.0.0/0", "destinationIpv6CidrBlock": "::/0", "gatewayId": "igw-1"}),
            "exactly one of destinationCidrBlock or destinationIpv6CidrBlock",
        ),
        (
            json!({"destinationCidrBlock": "10.0.0.0/16", "gatewayId": "local"}),
            "local route",
        ),
    ];
    for (route, why) in refused {
        let m = manifest(
            &scope,
            "RouteTable",
            "x",
            json!({"vpcId": "vpc-1", "routes": [route]}),
        );
        let (ok, _, err) = scope
            .kubectl(
                &["create", "--dry-run=server", "-f", "-"],
                Some(&m.to_string()),
            )
            .await;
        assert!(!ok && err.contains(why), "{route}: {err}");
    }
    let twice = json!([
        {"destinationCidrBlock": "0.0.0.0/0", "gatewayId": "igw-1"},
        {"destinationCidrBlock": "0.0.0.0/0", "instanceId": "i-1"},
    ]);
    let m = manifest(
        &scope,
        "RouteTable",
        "x",
        json!({"vpcId": "vpc-1", "routes": twice}),
    );
    let (ok, _, err) = scope
        .kubectl(
            &["create", "--dry-run=server", "-f", "-"],
            Some(&m.to_string()),
        )
        .await;
    assert!(!ok && err.contains("only one route"), "{err}");
    let fine = json!([{"destinationIpv6CidrBlock": "::/0", "instanceRef": {"name": "nat"}}]);
    let m = manifest(
        &scope,
        "RouteTable",
        "x",
        json!({"vpcId": "vpc-1", "routes": fine}),
    );
    let (ok, _, err) = scope
        .kubectl(
            &["create", "--dry-run=server", "-f", "-"],
            Some(&m.to_string()),
        )
        .await;
    assert!(ok, "{err}");
}

/// The table ids carrying `owner`'s owner tag.
async fn owned(ec2: &aws_sdk_ec2::Client, owner: &str) -> Vec<String> {
    let f = Filter::builder()
        .name(format!("tag:{TAG_OWNER}"))
        .values(owner)
        .build();
    let out = ec2.describe_route_tables().filters(f).send().await.unwrap();
    let mut ids: Vec<String> = out
        .route_tables()
        .iter()
        .filter_map(|t| t.route_table_id().map(String::from))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_lost_route_table_create_is_adopted_not_made_again() {
    let mut scope = Scope::new("rt-crash").await;
    let ec2 = support::ec2().await;
    let tables: Api<RouteTable> = scope.api();
    let (vpc, igw) = (hand_vpc(&ec2).await, hand_gateway(&ec2).await);
    let routes_spec = json!([{"destinationCidrBlock": "0.0.0.0/0", "gatewayId": igw}]);
    let m = manifest(
        &scope,
        "RouteTable",
        "rt",
        json!({"vpcId": vpc, "routes": routes_spec}),
    );
    create::<RouteTable>(&scope, m).await;
    let owner = format!("{}/rt", scope.ns);
    let made = || owned(&ec2, &owner);
    let id = assert_lost_create_adopted::<RouteTable, _, _>(
        &mut scope,
        &["rt"],
        "CreateRouteTable",
        made,
    )
    .await;
    // What the create call did after CreateRouteTable happened too.
    assert!(routes(&ec2, &id)
        .await
        .contains(&format!("0.0.0.0/0 -> {igw}")));
    tables.delete("rt", &DeleteParams::default()).await.unwrap();
    wait_gone(&tables, "rt").await;
    assert!(owned(&ec2, &owner).await.is_empty());
    ec2.delete_internet_gateway()
        .internet_gateway_id(igw)
        .send()
        .await
        .unwrap();
    ec2.delete_vpc().vpc_id(vpc).send().await.unwrap();
}

#[tokio::test]
async fn observing_fifty_route_tables_costs_one_call_per_poll() {
    let _turn = crate::support::heavy().await;
    let mut scope = Scope::new("rt-batch").await;
    scope.start_controller(POLL);
    let ec2 = support::ec2().await;
    let vpc = hand_vpc(&ec2).await;
    let fp: Value = json!({"vpcId": vpc, "tags": {"batch": "yes"}});
    let table = |n: &str| manifest(&scope, "RouteTable", n, fp.clone());
    assert_idle_cost_of_fifty::<RouteTable>(&scope, "DescribeRouteTables", table).await;
    ec2.delete_vpc().vpc_id(vpc).send().await.unwrap();
}
