//! NatGateway end to end: a public gateway by references (Vpc, Subnet,
//! ElasticIp), status, tag drift, an immutable subnet refused, its Elastic
//! IP held until the gateway is deleted (and the message says so), the
//! admission rules on the Elastic IP, a lost create adopted, and the idle
//! cost of observing many gateways.

use std::time::Duration;

use aws_sdk_ec2::types::{Filter, NatGateway as SdkNatGateway};
use driftless_aws::{ElasticIp, NatGateway, Subnet, Vpc};
use driftless_provider::TAG_OWNER;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};

use crate::ec2::{
    assert_lost_create_adopted, assert_tag_drift_corrected, create, external_name, manifest,
    tag_map, wait_gone, wait_message, wait_synced, IdleCalls,
};
use crate::support::{self, unique, Scope};

const POLL: Duration = Duration::from_secs(2);

/// The gateway as EC2 lists it (deleted ones too, for a while).
async fn gateway(ec2: &aws_sdk_ec2::Client, id: &str) -> Option<SdkNatGateway> {
    let out = ec2.describe_nat_gateways().nat_gateway_ids(id).send().await;
    match out {
        Ok(out) => out.nat_gateways().first().cloned(),
        Err(e) if format!("{e:?}").contains("NatGatewayNotFound") => None,
        Err(e) => panic!("DescribeNatGateways {id}: {e:?}"),
    }
}

fn state(g: &SdkNatGateway) -> &str {
    g.state().map(|s| s.as_str()).unwrap_or_default()
}

/// The live (not `deleted`) gateways carrying `owner`'s owner tag (checked
/// here too: LocalStack ignores `tag:` filters on DescribeNatGateways).
async fn owned(ec2: &aws_sdk_ec2::Client, owner: &str) -> Vec<String> {
    let f = Filter::builder()
        .name(format!("tag:{TAG_OWNER}"))
        .values(owner)
        .build();
    let out = ec2.describe_nat_gateways().filter(f).send().await.unwrap();
    let mut ids: Vec<String> = out
        .nat_gateways()
        .iter()
        .filter(|g| {
            state(g) != "deleted" && tag_map(g.tags()).get(TAG_OWNER) == Some(&owner.to_string())
        })
        .filter_map(|g| g.nat_gateway_id().map(String::from))
        .collect();
    ids.sort();
    ids
}

/// A VPC and a subnet made by hand (not driftless objects): (vpc, subnet).
pub(crate) async fn network(ec2: &aws_sdk_ec2::Client) -> (String, String) {
    let b: u8 = rand::random();
    let out = ec2
        .create_vpc()
        .cidr_block(format!("10.{b}.0.0/16"))
        .send()
        .await
        .unwrap();
    let vpc = out.vpc().unwrap().vpc_id().unwrap().to_string();
    let out = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block(format!("10.{b}.1.0/24"))
        .send()
        .await
        .unwrap();
    (vpc, out.subnet().unwrap().subnet_id().unwrap().to_string())
}

async fn delete_network(ec2: &aws_sdk_ec2::Client, (vpc, subnet): (String, String)) {
    ec2.delete_subnet().subnet_id(subnet).send().await.unwrap();
    ec2.delete_vpc().vpc_id(vpc).send().await.unwrap();
}

async fn delete<K: driftless_provider::ManagedKind>(api: &Api<K>, name: &str) {
    api.delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
}

#[tokio::test]
async fn nat_gateway_lifecycle_and_its_elastic_ip_waits_for_it() {
    let mut scope = Scope::new("nat").await;
    scope.start_controller(POLL);
    let ec2 = support::ec2().await;
    let b: u8 = rand::random();
    let for_vpc = json!({"cidrBlock": format!("10.{b}.0.0/16")});
    create::<Vpc>(&scope, manifest(&scope, "Vpc", "net", for_vpc)).await;
    for (name, i) in [("public-a", 1), ("public-b", 2)] {
        let for_subnet =
            json!({"vpcRef": {"name": "net"}, "cidrBlock": format!("10.{b}.{i}.0/24")});
        create::<Subnet>(&scope, manifest(&scope, "Subnet", name, for_subnet)).await;
    }
    create::<ElasticIp>(&scope, manifest(&scope, "ElasticIp", "ip", json!({}))).await;
    let name = unique("nat");
    let for_nat = json!({
        "subnetRef": {"name": "public-a"},
        "allocationRef": {"name": "ip"},
        "tags": {"team": "net"},
    });
    create::<NatGateway>(&scope, manifest(&scope, "NatGateway", &name, for_nat)).await;

    let api: Api<NatGateway> = scope.api();
    let ready = wait_synced(&api, &name).await;
    let id = external_name(&ready);
    assert!(id.starts_with("nat-"), "{id}");
    let (vpcs, subnets, ips) = (
        scope.api::<Vpc>(),
        scope.api::<Subnet>(),
        scope.api::<ElasticIp>(),
    );
    let vpc = external_name(&vpcs.get("net").await.unwrap());
    let subnet = external_name(&subnets.get("public-a").await.unwrap());
    let eip = ips.get("ip").await.unwrap();
    let allocation = external_name(&eip);
    let public_ip = eip.status.unwrap().at_provider.unwrap().public_ip.unwrap();
    let at = ready.status.unwrap().at_provider.unwrap();
    assert_eq!(at.nat_gateway_id.as_deref(), Some(id.as_str()));
    assert_eq!(at.state.as_deref(), Some("available"));
    assert_eq!(at.subnet_id.as_deref(), Some(subnet.as_str()));
    assert_eq!(at.vpc_id.as_deref(), Some(vpc.as_str()));
    assert_eq!(at.allocation_id.as_deref(), Some(allocation.as_str()));
    assert_eq!(at.public_ip.as_deref(), Some(public_ip.as_str()));
    assert_eq!(at.connectivity_type.as_deref(), Some("public"));
    assert!(at.private_ip.is_some(), "{at:?}");
    assert_eq!(at.failure_message, None);
    // Tagged in the create call: the spec's tags and the owner tags.
    let g = gateway(&ec2, &id).await.expect("the gateway exists");
    let tags = tag_map(g.tags());
    assert_eq!(tags.get("team").map(String::as_str), Some("net"));
    assert_eq!(tags.get(TAG_OWNER), Some(&format!("{}/{name}", scope.ns)));
    assert_eq!(scope.calls.operation_total("CreateNatGateway"), 1);
    assert_eq!(scope.calls.operation_total("CreateTags"), 0);

    // Tag drift is put back: a changed tag and an added one.
    let tags = || async { Some(tag_map(gateway(&ec2, &id).await?.tags())) };
    assert_tag_drift_corrected(&ec2, "NatGateway", &id, "net", tags).await;

    // Another subnet is refused (immutable) and nothing is changed.
    let patch = |subnet: &str| json!({"spec": {"forProvider": {"subnetRef": {"name": subnet}}}});
    let params = PatchParams::default();
    api.patch(&name, &params, &Patch::Merge(&patch("public-b")))
        .await
        .unwrap();
    let (_, msg) = wait_message(&api, &name, "Synced", "False", |_, m| {
        m.contains("subnetId is immutable")
    })
    .await;
    eprintln!("immutable change refused: {msg}");
    assert_eq!(scope.calls.operation_total("CreateNatGateway"), 1);
    assert_eq!(scope.calls.operation_total("DeleteNatGateway"), 0);
    let g = gateway(&ec2, &id).await.unwrap();
    assert_eq!(
        (state(&g), g.subnet_id()),
        ("available", Some(subnet.as_str()))
    );
    api.patch(&name, &params, &Patch::Merge(&patch("public-a")))
        .await
        .unwrap();
    wait_synced(&api, &name).await;

    // The Elastic IP is not released while the gateway holds it, and says so.
    delete(&ips, "ip").await;
    let (_, msg) = wait_message(&ips, "ip", "Ready", "False", |reason, m| {
        reason == "Deleting" && m.contains("NAT gateway")
    })
    .await;
    eprintln!("ElasticIp deletion waits: {msg}");
    assert!(msg.contains(&allocation), "{msg}");
    assert!(
        msg.contains(&format!("in use by NAT gateway {id}")),
        "{msg}"
    );
    assert!(msg.contains(&format!("{}/{name}", scope.ns)), "{msg}");
    assert_eq!(scope.calls.operation_total("ReleaseAddress"), 0);

    // The gateway's deletion holds its object until the gateway is deleted;
    // then the Elastic IP goes too.
    delete(&api, &name).await;
    wait_gone(&api, &name).await;
    let g = gateway(&ec2, &id).await;
    assert!(g.as_ref().is_none_or(|g| state(g) == "deleted"), "{g:?}");
    wait_gone(&ips, "ip").await;
    assert_eq!(scope.calls.operation_total("DeleteNatGateway"), 1);
    assert_eq!(scope.calls.operation_total("ReleaseAddress"), 1);
    let released = ec2
        .describe_addresses()
        .allocation_ids(&allocation)
        .send()
        .await;
    assert!(
        released.is_err(),
        "address {allocation} not released: {released:?}"
    );
    for s in ["public-a", "public-b"] {
        delete(&subnets, s).await;
    }
    delete(&vpcs, "net").await;
    for s in ["public-a", "public-b"] {
        wait_gone(&subnets, s).await;
    }
    wait_gone(&vpcs, "net").await;
}

#[tokio::test]
async fn admission_wants_an_elastic_ip_for_public_gateways_only() {
    let scope = Scope::new("nat-cel").await;
    let api: Api<NatGateway> = scope.api();
    let refused = |for_provider: Value| {
        let obj: NatGateway =
            serde_json::from_value(manifest(&scope, "NatGateway", "bad", for_provider)).unwrap();
        let api = api.clone();
        async move {
            let e = api.create(&Default::default(), &obj).await.unwrap_err();
            e.to_string()
        }
    };
    let e = refused(json!({"subnetId": "subnet-1"})).await;
    assert!(
        e.contains("a public NAT gateway needs an Elastic IP"),
        "{e}"
    );
    let e = refused(json!({"subnetId": "subnet-1", "connectivityType": "private", "allocationId": "eipalloc-1"})).await;
    assert!(
        e.contains("a private NAT gateway takes no Elastic IP"),
        "{e}"
    );
    let e = refused(json!({"allocationId": "eipalloc-1"})).await;
    assert!(
        e.contains("one of subnetId, subnetRef or subnetSelector is required"),
        "{e}"
    );
}

#[tokio::test]
async fn a_lost_nat_gateway_create_is_adopted_not_created_again() {
    let mut scope = Scope::new("nat-crash").await;
    let api: Api<NatGateway> = scope.api();
    let ec2 = support::ec2().await;
    let net = network(&ec2).await;
    let allocation = ec2
        .allocate_address()
        .send()
        .await
        .unwrap()
        .allocation_id()
        .unwrap()
        .to_string();
    let for_nat = json!({"subnetId": net.1, "allocationId": allocation});
    create::<NatGateway>(&scope, manifest(&scope, "NatGateway", "nat", for_nat)).await;
    let owner = format!("{}/nat", scope.ns);
    let created = || owned(&ec2, &owner);
    assert_lost_create_adopted::<NatGateway, _, _>(
        &mut scope,
        &["nat"],
        "CreateNatGateway",
        created,
    )
    .await;
    delete(&api, "nat").await;
    wait_gone(&api, "nat").await;
    assert!(owned(&ec2, &owner).await.is_empty());
    ec2.release_address()
        .allocation_id(&allocation)
        .send()
        .await
        .unwrap();
    delete_network(&ec2, net).await;
}

#[tokio::test]
async fn observing_fifty_nat_gateways_costs_one_call_per_poll() {
    let _turn = crate::support::heavy().await;
    const N: usize = 50;
    const POLLS: u64 = 5;
    let mut scope = Scope::new("nat-batch").await;
    scope.start_controller(POLL);
    let api: Api<NatGateway> = scope.api();
    let ec2 = support::ec2().await;
    // Private gateways: no Elastic IP each, only the gateways are measured.
    let net = network(&ec2).await;
    let names: Vec<String> = (0..N).map(|i| format!("nat-{i:02}")).collect();
    for n in &names {
        let for_nat = json!({"subnetId": net.1, "connectivityType": "private"});
        create::<NatGateway>(&scope, manifest(&scope, "NatGateway", n, for_nat)).await;
    }
    for n in &names {
        let o = wait_synced(&api, n).await;
        let at = o.status.unwrap().at_provider.unwrap();
        assert_eq!(at.connectivity_type.as_deref(), Some("private"));
        assert_eq!((at.public_ip, at.allocation_id), (None, None));
    }
    let idle = IdleCalls::measure(&scope, "NatGateway", &names, "DescribeNatGateways", POLLS).await;
    let IdleCalls {
        describes,
        total,
        polls,
        ..
    } = idle;
    eprintln!(
        "{N} Ready NatGateways over {polls} idle polls of {POLL:?}: {describes} DescribeNatGateways, {total} EC2 calls in all: {:.3} calls per resource per poll",
        idle.per_resource(N)
    );
    idle.assert_one_listing_per_poll("DescribeNatGateways", &scope);
    for n in &names {
        delete(&api, n).await;
    }
    for n in &names {
        wait_gone(&api, n).await;
    }
    delete_network(&ec2, net).await;
}

#[tokio::test]
async fn push_mode_applies_and_prunes_a_nat_gateway_with_its_network() {
    use crate::push::driftless;
    let ec2 = support::ec2().await;
    let (stack, b) = (unique("st"), rand::random::<u8>());
    let dir = tempfile::tempdir().unwrap();
    let kind = |kind: &str, name: &str, for_provider: &str| {
        format!("apiVersion: aws.driftless.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n  forProvider: {for_provider}\n---\n")
    };
    let manifests = [
        kind("Vpc", "net", &format!("{{cidrBlock: 10.{b}.0.0/16}}")),
        kind(
            "Subnet",
            "public-a",
            &format!("{{vpcRef: {{name: net}}, cidrBlock: 10.{b}.1.0/24}}"),
        ),
        kind("ElasticIp", "nat-ip", "{}"),
        kind(
            "NatGateway",
            "nat",
            "{subnetRef: {name: public-a}, allocationRef: {name: nat-ip}}",
        ),
    ];
    std::fs::write(dir.path().join("net.yaml"), manifests.concat()).unwrap();
    let path = dir.path().to_str().unwrap();
    let (code, out, _) = driftless(&["apply", path, "--stack", &stack]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("4 created, 0 failed"), "{out}");
    let (code, out, _) = driftless(&["plan", path, "--stack", &stack]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("4 unchanged"), "a re-plan is a no-op: {out}");
    let (_, out, _) = driftless(&["get", "--stack", &stack]);
    let line = out
        .lines()
        .find(|l| l.starts_with("NatGateway"))
        .expect(&out);
    assert!(
        line.contains("True") && line.contains("available"),
        "{line}"
    );
    let id = line
        .split_whitespace()
        .find(|w| w.starts_with("nat-"))
        .unwrap()
        .to_string();

    // Pruned all at once: the Elastic IP is released after the gateway is gone.
    let empty = tempfile::tempdir().unwrap();
    let empty = empty.path().to_str().unwrap();
    let (code, out, _) = driftless(&["apply", empty, "--stack", &stack, "--prune"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("4 deleted, 0 failed"), "{out}");
    let g = gateway(&ec2, &id).await;
    assert!(g.as_ref().is_none_or(|g| state(g) == "deleted"), "{g:?}");
}
