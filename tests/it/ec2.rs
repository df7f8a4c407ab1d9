//! EC2 kinds end to end: Vpc, Subnet, SecurityGroup and Instance, reconciled
//! by the in-process controller against LocalStack and the API server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{IpPermission, IpRange, Tag};
use driftless_aws::{Instance, InternetGateway, SecurityGroup, Subnet, Vpc};
use driftless_provider::{ManagedKind, CREATE_PENDING, EXTERNAL_NAME, TAG_OWNER};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::support::{self, code_in, unique, unless_not_found, wait_for, Scope};

const POLL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(90);
/// Drift is put back within a few short polls; generous (a loaded machine),
/// the tests print how long it took.
const DRIFT: Duration = Duration::from_secs(60);
/// LocalStack lists this AMI; it does not check AMIs anyway.
const AMI: &str = "ami-03cf127a";

// ---------------------------------------------------------------- helpers

/// A managed object's manifest; tests adjust it before creating it.
pub(crate) fn manifest(scope: &Scope, kind: &str, name: &str, for_provider: Value) -> Value {
    json!({
        "apiVersion": "aws.driftless.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": scope.ns},
        "spec": {"forProvider": for_provider, "providerConfigRef": {"name": scope.provider_config}},
    })
}

pub(crate) async fn create<K>(scope: &Scope, manifest: Value) -> K
where
    K: ManagedKind + DeserializeOwned,
{
    let obj: K = serde_json::from_value(manifest).expect("a valid manifest");
    scope
        .api::<K>()
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {} {}: {e}", K::kind(&()), obj.name_any()))
}

pub(crate) fn condition<K: ManagedKind>(o: &K, type_: &str) -> Option<(String, String, String)> {
    let c = o.managed_status()?.condition(type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until condition `type_` of `name` has `status` and a message
/// `message` accepts; returns the object and the message.
pub(crate) async fn wait_message<K: ManagedKind>(
    api: &Api<K>,
    name: &str,
    type_: &str,
    status: &str,
    message: impl Fn(&str, &str) -> bool,
) -> (K, String) {
    let what = format!("{} {name} {type_}={status}", K::kind(&()));
    wait_for(&what, WAIT, || async {
        let o = api.get(name).await.ok()?;
        let (s, reason, msg) = condition(&o, type_)?;
        (s == status && message(&reason, &msg)).then_some((o, msg))
    })
    .await
}

/// Waits (up to [`DRIFT`]) for drift to be put back; prints how long it took.
async fn wait_corrected<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let at = Instant::now();
    wait_for(what, DRIFT, check).await;
    eprintln!("{what} in {:?} (poll {POLL:?})", at.elapsed());
}

pub(crate) async fn wait_ready<K: ManagedKind>(api: &Api<K>, name: &str) -> K {
    wait_message(api, name, "Ready", "True", |_, _| true)
        .await
        .0
}

/// Ready, Synced and synced at the current generation (so a later change of
/// the cloud alone counts as drift).
pub(crate) async fn wait_synced<K: ManagedKind>(api: &Api<K>, name: &str) -> K {
    let what = format!("{} {name} synced at its generation", K::kind(&()));
    wait_for(&what, WAIT, || async {
        let o = api.get(name).await.ok()?;
        let synced = o.managed_status()?.condition("Synced")?.clone();
        let ready = condition(&o, "Ready")?.0 == "True";
        (ready && synced.status == "True" && synced.observed_generation == o.meta().generation)
            .then_some(o)
    })
    .await
}

pub(crate) async fn wait_gone<K: ManagedKind>(api: &Api<K>, name: &str) {
    let what = format!("{} {name} deleted", K::kind(&()));
    wait_for(&what, WAIT, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await
}

pub(crate) fn external_name<K: ManagedKind>(o: &K) -> String {
    o.annotations()
        .get(EXTERNAL_NAME)
        .cloned()
        .unwrap_or_else(|| panic!("{} {} has no external name", K::kind(&()), o.name_any()))
}

pub(crate) async fn patch_for_provider<K: ManagedKind>(
    api: &Api<K>,
    name: &str,
    for_provider: Value,
) {
    let patch = json!({"spec": {"forProvider": for_provider}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patch {} {name}: {e}", K::kind(&())));
}

async fn event_reasons(scope: &Scope, name: &str) -> Vec<String> {
    let events: Api<Event> = scope.api();
    let list = events.list(&ListParams::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

async fn wait_event(scope: &Scope, name: &str, reason: &str) {
    wait_for(&format!("{reason} event for {name}"), WAIT, || async {
        event_reasons(scope, name)
            .await
            .iter()
            .any(|r| r == reason)
            .then_some(())
    })
    .await
}

pub(crate) fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().into(),
                t.value().unwrap_or_default().into(),
            )
        })
        .collect()
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

// Each `None` means the cloud says there is no such resource; any other
// error fails the test (see `support::unless_not_found`).

async fn vpc(ec2: &aws_sdk_ec2::Client, id: &str) -> Option<aws_sdk_ec2::types::Vpc> {
    let result = ec2.describe_vpcs().vpc_ids(id).send().await;
    let out = unless_not_found(
        &format!("DescribeVpcs {id}"),
        result,
        code_in(&["InvalidVpcID.NotFound"]),
    )?;
    out.vpcs().first().cloned()
}

async fn subnet(ec2: &aws_sdk_ec2::Client, id: &str) -> Option<aws_sdk_ec2::types::Subnet> {
    let result = ec2.describe_subnets().subnet_ids(id).send().await;
    let out = unless_not_found(
        &format!("DescribeSubnets {id}"),
        result,
        code_in(&["InvalidSubnetID.NotFound"]),
    )?;
    out.subnets().first().cloned()
}

async fn group(ec2: &aws_sdk_ec2::Client, id: &str) -> Option<aws_sdk_ec2::types::SecurityGroup> {
    let result = ec2.describe_security_groups().group_ids(id).send().await;
    let out = unless_not_found(
        &format!("DescribeSecurityGroups {id}"),
        result,
        code_in(&["InvalidGroup.NotFound"]),
    )?;
    out.security_groups().first().cloned()
}

/// The instance, unless terminated.
async fn instance(ec2: &aws_sdk_ec2::Client, id: &str) -> Option<aws_sdk_ec2::types::Instance> {
    let result = ec2.describe_instances().instance_ids(id).send().await;
    let out = unless_not_found(
        &format!("DescribeInstances {id}"),
        result,
        code_in(&["InvalidInstanceID.NotFound"]),
    )?;
    let i = out.reservations().first()?.instances().first()?.clone();
    (i.state()?.name()?.as_str() != "terminated").then_some(i)
}

async fn dns_hostnames(ec2: &aws_sdk_ec2::Client, id: &str) -> Option<bool> {
    let out = ec2
        .describe_vpc_attribute()
        .vpc_id(id)
        .attribute(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames)
        .send()
        .await
        .unwrap();
    out.enable_dns_hostnames()?.value()
}

/// Ingress (or egress) rules as `proto from-to cidr` strings, sorted.
fn rules(perms: &[IpPermission]) -> Vec<String> {
    let mut out = Vec::new();
    for p in perms {
        let ports = format!(
            "{}-{}",
            p.from_port().unwrap_or(-1),
            p.to_port().unwrap_or(-1)
        );
        for r in p.ip_ranges() {
            out.push(format!(
                "{} {ports} {}",
                p.ip_protocol().unwrap_or_default(),
                r.cidr_ip().unwrap_or_default()
            ));
        }
        for g in p.user_id_group_pairs() {
            out.push(format!(
                "{} {ports} {}",
                p.ip_protocol().unwrap_or_default(),
                g.group_id().unwrap_or_default()
            ));
        }
    }
    out.sort();
    out
}

fn tcp(port: i32, cidr: &str) -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port)
        .to_port(port)
        .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
        .build()
}

/// A random private /16, so that tests never share address space.
pub(crate) fn cidr16() -> (String, u8) {
    let b: u8 = rand::random();
    (format!("10.{b}.0.0/16"), b)
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn vpc_create_update_drift_and_delete() {
    let mut scope = Scope::new("ec2-vpc").await;
    scope.start_controller(POLL);
    let api: Api<Vpc> = scope.api();
    let ec2 = support::ec2().await;
    let name = unique("net");
    let (cidr, _) = cidr16();

    let mut m = manifest(
        &scope,
        "Vpc",
        &name,
        json!({"cidrBlock": cidr, "enableDnsSupport": true, "enableDnsHostnames": true, "tags": {"team": "net", "env": "test"}}),
    );
    m["spec"]["writeConnectionSecretToRef"] = json!({"name": format!("{name}-conn")});
    create::<Vpc>(&scope, m).await;
    let ready = wait_synced(&api, &name).await;
    let id = external_name(&ready);
    let at = ready.status.unwrap().at_provider.unwrap();
    assert_eq!(at.vpc_id.as_deref(), Some(id.as_str()));
    assert_eq!(at.state.as_deref(), Some("available"));
    assert!(at.owner_id.is_some(), "atProvider.ownerId missing: {at:?}");

    // The cloud has what was asked for, tagged in the create call.
    let v = vpc(&ec2, &id).await.expect("the VPC exists");
    assert_eq!(v.cidr_block(), Some(cidr.as_str()));
    let tags = tag_map(v.tags());
    assert_eq!(tags.get("team").map(String::as_str), Some("net"));
    assert_eq!(tags.get(TAG_OWNER), Some(&format!("{}/{name}", scope.ns)));
    assert_eq!(
        tags.get("driftless.dev/kind").map(String::as_str),
        Some("Vpc")
    );
    assert_eq!(dns_hostnames(&ec2, &id).await, Some(true));
    assert_eq!(scope.calls.operation_total("CreateVpc"), 1);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = scope.api();
    let conn = secrets
        .get(&format!("{name}-conn"))
        .await
        .expect("connection secret");
    assert_eq!(conn.data.unwrap()["vpcId"].0, id.as_bytes());

    // kubectl lists it with the common columns.
    let (ok, out, err) = scope.kubectl(&["get", "vpcs", "-n", &scope.ns], None).await;
    assert!(ok, "kubectl get vpcs: {err}");
    let row = out
        .lines()
        .find(|l| l.contains(&name))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(&id), "EXTERNAL-NAME column: {out}");

    // A spec update reaches the cloud.
    patch_for_provider(
        &api,
        &name,
        json!({"enableDnsHostnames": false, "tags": {"team": "platform", "env": "test"}}),
    )
    .await;
    wait_for("VPC updated in EC2", WAIT, || async {
        let tags = tag_map(vpc(&ec2, &id).await?.tags());
        let done = tags.get("team").map(String::as_str) == Some("platform")
            && dns_hostnames(&ec2, &id).await == Some(false);
        done.then_some(())
    })
    .await;
    wait_event(&scope, &name, "UpdatedExternalResource").await;
    wait_synced(&api, &name).await;

    // Out-of-band changes are put back: a changed tag, an added tag, a DNS flag.
    ec2.create_tags()
        .resources(&id)
        .tags(tag("team", "hijacked"))
        .tags(tag("intruder", "yes"))
        .send()
        .await
        .unwrap();
    ec2.modify_vpc_attribute()
        .vpc_id(&id)
        .enable_dns_hostnames(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let drifted = Instant::now();
    wait_for("VPC drift corrected", DRIFT, || async {
        let tags = tag_map(vpc(&ec2, &id).await?.tags());
        let done = tags.get("team").map(String::as_str) == Some("platform")
            && !tags.contains_key("intruder")
            && dns_hostnames(&ec2, &id).await == Some(false);
        done.then_some(())
    })
    .await;
    eprintln!(
        "VPC drift corrected in {:?} (poll {POLL:?})",
        drifted.elapsed()
    );
    wait_event(&scope, &name, "DriftCorrected").await;

    // Delete.
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_gone(&api, &name).await;
    assert!(vpc(&ec2, &id).await.is_none(), "VPC {id} still exists");
}

#[tokio::test]
async fn immutable_changes_are_refused_and_change_nothing() {
    let mut scope = Scope::new("ec2-immutable").await;
    scope.start_controller_with(POLL, |s| s.reference_retry = POLL);
    let ec2 = support::ec2().await;
    let (cidr, b) = cidr16();
    let vpcs: Api<Vpc> = scope.api();
    let subnets: Api<Subnet> = scope.api();
    let instances: Api<Instance> = scope.api();
    create::<Vpc>(
        &scope,
        manifest(&scope, "Vpc", "net", json!({"cidrBlock": cidr})),
    )
    .await;
    let zone = format!("{}a", support::env().region);
    let subnet_cidr = format!("10.{b}.1.0/24");
    create::<Subnet>(
        &scope,
        manifest(
            &scope,
            "Subnet",
            "a",
            json!({"vpcRef": {"name": "net"}, "cidrBlock": subnet_cidr, "availabilityZone": zone}),
        ),
    )
    .await;
    create::<Instance>(
        &scope,
        manifest(
            &scope,
            "Instance",
            "web",
            json!({"imageId": AMI, "instanceType": "t3.micro", "subnetRef": {"name": "a"}}),
        ),
    )
    .await;
    let vpc_id = external_name(&wait_synced(&vpcs, "net").await);
    let subnet_id = external_name(&wait_synced(&subnets, "a").await);
    let instance_id = external_name(&wait_synced(&instances, "web").await);

    // Every immutable field changed: each change is refused, terminal, and
    // the message names every field; nothing changes.
    let other = format!("10.{}.0.0/16", b.wrapping_add(1));
    patch_for_provider(&vpcs, "net", json!({"cidrBlock": other})).await;
    patch_for_provider(
        &subnets,
        "a",
        json!({"cidrBlock": format!("10.{b}.3.0/24"), "availabilityZone": format!("{}b", support::env().region)}),
    )
    .await;
    patch_for_provider(
        &instances,
        "web",
        // Another subnet: by id instead of the reference.
        json!({"imageId": "ami-0000000000000dead", "subnetRef": null, "subnetId": "subnet-0123456789abcdef0"}),
    )
    .await;
    let terminal = |fields: &'static [&'static str]| {
        move |_: &str, m: &str| fields.iter().all(|f| m.contains(f))
    };
    for (kind, fields, msg) in [
        (
            "Vpc",
            &["forProvider.cidrBlock"][..],
            wait_message(&vpcs, "net", "Synced", "False", terminal(&["cidrBlock"]))
                .await
                .1,
        ),
        (
            "Subnet",
            &["forProvider.cidrBlock", "forProvider.availabilityZone"][..],
            wait_message(
                &subnets,
                "a",
                "Synced",
                "False",
                terminal(&["cidrBlock", "availabilityZone"]),
            )
            .await
            .1,
        ),
        (
            "Instance",
            &["forProvider.imageId", "forProvider.subnetId"][..],
            wait_message(
                &instances,
                "web",
                "Synced",
                "False",
                terminal(&["imageId", "subnetId"]),
            )
            .await
            .1,
        ),
    ] {
        for field in fields {
            assert!(
                msg.contains(&format!("{field} is immutable")),
                "{kind}: {msg}"
            );
        }
        assert!(
            msg.contains("ImmutableField") && msg.contains("nothing was changed"),
            "{kind}: {msg}"
        );
    }
    // The Event is published right after the status: give it a moment.
    for name in ["net", "a", "web"] {
        wait_for(
            &format!("{name}: a TerminalError event"),
            Duration::from_secs(10),
            || async {
                event_reasons(&scope, name)
                    .await
                    .contains(&"TerminalError".to_string())
                    .then_some(())
            },
        )
        .await;
    }
    // Terminal: not retried every poll. The three wait out the terminal
    // backoff (not requeued), so the ticker (no cloud calls) counts polls.
    let calls = scope.calls.total();
    scope.start_ticker().await;
    scope.wait_ticks(3).await;
    assert_eq!(
        scope.calls.total(),
        calls,
        "terminal errors were retried: {:?}",
        scope.calls.snapshot()
    );
    assert_eq!(
        vpc(&ec2, &vpc_id).await.unwrap().cidr_block(),
        Some(cidr.as_str())
    );
    let a = subnet(&ec2, &subnet_id).await.unwrap();
    assert_eq!(a.availability_zone(), Some(zone.as_str()));
    assert_eq!(a.cidr_block(), Some(subnet_cidr.as_str()));
    let i = instance(&ec2, &instance_id).await.unwrap();
    assert_eq!(i.image_id(), Some(AMI));
    assert_eq!(i.subnet_id(), Some(subnet_id.as_str()));
    for op in ["CreateVpc", "CreateSubnet", "RunInstances"] {
        assert_eq!(
            scope.calls.operation_total(op),
            1,
            "{op}: {:?}",
            scope.calls.snapshot()
        );
    }
    for op in [
        "DeleteVpc",
        "DeleteSubnet",
        "TerminateInstances",
        "ModifyVpcAttribute",
        "CreateTags",
    ] {
        assert_eq!(
            scope.calls.operation_total(op),
            0,
            "{op}: {:?}",
            scope.calls.snapshot()
        );
    }

    // Restoring the field heals it.
    patch_for_provider(&vpcs, "net", json!({"cidrBlock": cidr})).await;
    wait_synced(&vpcs, "net").await;

    // Everything at once: the VPC waits for its subnet.
    let dp = DeleteParams::default();
    vpcs.delete("net", &dp).await.unwrap();
    subnets.delete("a", &dp).await.unwrap();
    instances.delete("web", &dp).await.unwrap();
    wait_gone(&instances, "web").await;
    wait_gone(&subnets, "a").await;
    wait_gone(&vpcs, "net").await;
    assert!(vpc(&ec2, &vpc_id).await.is_none());
    assert!(instance(&ec2, &instance_id).await.is_none());
}

#[tokio::test]
async fn subnet_lifecycle_and_vpc_deletion_waits_for_it() {
    let mut scope = Scope::new("ec2-subnet").await;
    scope.start_controller(POLL);
    let ec2 = support::ec2().await;
    let vpcs: Api<Vpc> = scope.api();
    let subnets: Api<Subnet> = scope.api();
    let (cidr, b) = cidr16();
    create::<Vpc>(
        &scope,
        manifest(&scope, "Vpc", "net", json!({"cidrBlock": cidr})),
    )
    .await;
    let subnet_cidr = format!("10.{b}.8.0/24");
    create::<Subnet>(
        &scope,
        manifest(&scope, "Subnet", "public", json!({"vpcRef": {"name": "net"}, "cidrBlock": subnet_cidr, "tags": {"tier": "public"}})),
    )
    .await;
    let vpc_id = external_name(&wait_ready(&vpcs, "net").await);
    let s = wait_synced(&subnets, "public").await;
    let id = external_name(&s);
    let status = s.status.unwrap();
    let at = status.at_provider.unwrap();
    assert_eq!(at.subnet_id.as_deref(), Some(id.as_str()));
    assert_eq!(at.state.as_deref(), Some("available"));
    assert!(at.available_ip_address_count.unwrap_or(0) > 200, "{at:?}");
    assert_eq!(status.resolved_references.get("vpcId"), Some(&vpc_id));
    let cloud = subnet(&ec2, &id).await.unwrap();
    assert_eq!(cloud.vpc_id(), Some(vpc_id.as_str()));
    assert_eq!(cloud.map_public_ip_on_launch(), Some(false));
    assert_eq!(
        tag_map(cloud.tags()).get("tier").map(String::as_str),
        Some("public")
    );

    // Update: a flag and tags.
    patch_for_provider(
        &subnets,
        "public",
        json!({"mapPublicIpOnLaunch": true, "tags": {"tier": "edge"}}),
    )
    .await;
    wait_for("subnet updated in EC2", WAIT, || async {
        let s = subnet(&ec2, &id).await?;
        let done = s.map_public_ip_on_launch() == Some(true)
            && tag_map(s.tags()).get("tier").map(String::as_str) == Some("edge");
        done.then_some(())
    })
    .await;
    wait_synced(&subnets, "public").await;

    // Drift: the flag and a tag, put back.
    ec2.modify_subnet_attribute()
        .subnet_id(&id)
        .map_public_ip_on_launch(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    ec2.create_tags()
        .resources(&id)
        .tags(tag("tier", "hijacked"))
        .send()
        .await
        .unwrap();
    wait_corrected("subnet drift corrected", || async {
        let s = subnet(&ec2, &id).await?;
        let done = s.map_public_ip_on_launch() == Some(true)
            && tag_map(s.tags()).get("tier").map(String::as_str) == Some("edge");
        done.then_some(())
    })
    .await;
    wait_event(&scope, "public", "DriftCorrected").await;

    // The VPC cannot go while its subnet exists: Ready says which subnet, by
    // id and owner; the VPC stays.
    vpcs.delete("net", &DeleteParams::default()).await.unwrap();
    let (_, msg) = wait_message(&vpcs, "net", "Ready", "False", |reason, m| {
        reason == "Deleting" && m.contains(&id)
    })
    .await;
    assert!(
        msg.contains(&format!("subnet {id} (driftless {}/public)", scope.ns)),
        "{msg}"
    );
    assert!(
        vpc(&ec2, &vpc_id).await.is_some(),
        "VPC deleted while a subnet exists"
    );
    let (_, synced, _) = condition(&vpcs.get("net").await.unwrap(), "Synced").unwrap();
    assert_eq!(synced, "ReconcileSuccess", "waiting is not an error");
    // Backed off, not stormed: each waiting pass of the VPC makes one
    // attempt, and the next pass comes at least 5 s later. Two passes are
    // timed: a lower bound, which a slow machine cannot break.
    let before = scope.calls.operation_total("DeleteVpc");
    let passes = scope.passes("Vpc", "net");
    let at = Instant::now();
    scope.wait_passes("Vpc", "net", passes + 2).await;
    let took = at.elapsed();
    let attempts = scope.calls.operation_total("DeleteVpc") - before;
    eprintln!("two waiting passes of the VPC: {attempts} DeleteVpc in {took:?}");
    assert!(
        attempts <= 2,
        "DeleteVpc tried {attempts} times in two passes: {:?}",
        scope.calls.snapshot()
    );
    assert!(
        took >= Duration::from_secs(5),
        "two waiting passes within {took:?}: not backed off by 5 s"
    );

    subnets
        .delete("public", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&subnets, "public").await;
    wait_gone(&vpcs, "net").await;
    assert!(subnet(&ec2, &id).await.is_none());
    assert!(vpc(&ec2, &vpc_id).await.is_none());
    assert!(event_reasons(&scope, "net")
        .await
        .contains(&"DeletionWaiting".to_string()));
}

#[tokio::test]
async fn security_group_rules_are_a_set() {
    let mut scope = Scope::new("ec2-sg").await;
    scope.start_controller(POLL);
    let ec2 = support::ec2().await;
    let vpcs: Api<Vpc> = scope.api();
    let groups: Api<SecurityGroup> = scope.api();
    let (cidr, _) = cidr16();
    create::<Vpc>(
        &scope,
        manifest(&scope, "Vpc", "net", json!({"cidrBlock": cidr})),
    )
    .await;
    let name = unique("web");
    create::<SecurityGroup>(
        &scope,
        manifest(
            &scope,
            "SecurityGroup",
            &name,
            json!({
                "vpcRef": {"name": "net"},
                "description": "web servers",
                "ingress": [
                    {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]},
                    {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["10.0.0.0/8", "192.168.0.0/16"]},
                ],
                "tags": {"app": "web"},
            }),
        ),
    )
    .await;
    let vpc_id = external_name(&wait_ready(&vpcs, "net").await);
    let sg = wait_synced(&groups, &name).await;
    let id = external_name(&sg);
    let at = sg.status.unwrap().at_provider.unwrap();
    assert_eq!(
        at.group_name.as_deref(),
        Some(name.as_str()),
        "groupName defaults to metadata.name"
    );
    assert_eq!(at.vpc_id.as_deref(), Some(vpc_id.as_str()));
    let g = group(&ec2, &id).await.unwrap();
    assert_eq!(g.description(), Some("web servers"));
    assert_eq!(
        rules(g.ip_permissions()),
        [
            "tcp 22-22 10.0.0.0/8",
            "tcp 22-22 192.168.0.0/16",
            "tcp 443-443 0.0.0.0/0"
        ]
    );
    assert_eq!(
        rules(g.ip_permissions_egress()),
        ["-1 -1--1 0.0.0.0/0"],
        "egress unset: AWS's default kept"
    );

    // A second group, for a rule that admits its members.
    create::<SecurityGroup>(
        &scope,
        manifest(
            &scope,
            "SecurityGroup",
            "lb",
            json!({"vpcRef": {"name": "net"}, "description": "load balancers"}),
        ),
    )
    .await;
    let lb = external_name(&wait_ready(&groups, "lb").await);

    // Update: one rule more, one source less, a rule naming the other group;
    // egress becomes managed.
    patch_for_provider(
        &groups,
        &name,
        json!({
            "ingress": [
                {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]},
                {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["10.0.0.0/8"]},
                {"protocol": "udp", "fromPort": 53, "toPort": 53, "cidrBlocks": ["10.0.0.0/8"]},
                {"protocol": "tcp", "fromPort": 8080, "toPort": 8080, "securityGroupIds": [lb]},
            ],
            "egress": [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}],
        }),
    )
    .await;
    let mut want_ingress = vec![
        "tcp 22-22 10.0.0.0/8".to_string(),
        "tcp 443-443 0.0.0.0/0".to_string(),
        "udp 53-53 10.0.0.0/8".to_string(),
        format!("tcp 8080-8080 {lb}"),
    ];
    want_ingress.sort();
    wait_for("rules updated in EC2", WAIT, || async {
        let g = group(&ec2, &id).await?;
        let done = rules(g.ip_permissions()) == want_ingress
            && rules(g.ip_permissions_egress()) == ["tcp 443-443 0.0.0.0/0"];
        done.then_some(())
    })
    .await;
    wait_synced(&groups, &name).await;

    // Drift: a rule added out of band is revoked, a rule removed is restored,
    // a changed tag is put back.
    ec2.authorize_security_group_ingress()
        .group_id(&id)
        .ip_permissions(tcp(3389, "0.0.0.0/0"))
        .send()
        .await
        .unwrap();
    ec2.revoke_security_group_ingress()
        .group_id(&id)
        .ip_permissions(tcp(443, "0.0.0.0/0"))
        .send()
        .await
        .unwrap();
    ec2.create_tags()
        .resources(&id)
        .tags(tag("app", "hijacked"))
        .send()
        .await
        .unwrap();
    // No check here that the drift is there: the controller (poll 2 s) may
    // have put it back before this test reads the group. The DriftCorrected
    // Event below is what proves it saw the drift (the only earlier change
    // was a spec change, an Updated Event).
    wait_corrected("rule drift corrected", || async {
        let g = group(&ec2, &id).await?;
        let done = rules(g.ip_permissions()) == want_ingress
            && tag_map(g.tags()).get("app").map(String::as_str) == Some("web");
        done.then_some(())
    })
    .await;
    wait_event(&scope, &name, "DriftCorrected").await;
    assert!(scope.calls.operation_total("RevokeSecurityGroupIngress") >= 2);

    // Delete all at once: the groups, then the VPC.
    let dp = DeleteParams::default();
    vpcs.delete("net", &dp).await.unwrap();
    groups.delete("lb", &dp).await.unwrap();
    groups.delete(&name, &dp).await.unwrap();
    wait_gone(&groups, &name).await;
    wait_gone(&groups, "lb").await;
    wait_gone(&vpcs, "net").await;
    assert!(group(&ec2, &id).await.is_none());
    assert!(group(&ec2, &lb).await.is_none());
    assert!(vpc(&ec2, &vpc_id).await.is_none());
}

#[tokio::test]
async fn instance_lifecycle() {
    let mut scope = Scope::new("ec2-instance").await;
    scope.start_controller(POLL);
    let ec2 = support::ec2().await;
    let vpcs: Api<Vpc> = scope.api();
    let subnets: Api<Subnet> = scope.api();
    let groups: Api<SecurityGroup> = scope.api();
    let instances: Api<Instance> = scope.api();
    let (cidr, b) = cidr16();
    create::<Vpc>(
        &scope,
        manifest(&scope, "Vpc", "net", json!({"cidrBlock": cidr})),
    )
    .await;
    create::<Subnet>(
        &scope,
        manifest(
            &scope,
            "Subnet",
            "a",
            json!({"vpcRef": {"name": "net"}, "cidrBlock": format!("10.{b}.1.0/24")}),
        ),
    )
    .await;
    for sg in ["web", "ssh"] {
        create::<SecurityGroup>(
            &scope,
            manifest(
                &scope,
                "SecurityGroup",
                sg,
                json!({"vpcRef": {"name": "net"}}),
            ),
        )
        .await;
    }
    create::<Instance>(
        &scope,
        manifest(
            &scope,
            "Instance",
            "web",
            json!({
                "imageId": AMI,
                "instanceType": "t3.micro",
                "subnetRef": {"name": "a"},
                "securityGroupRefs": [{"name": "web"}],
                "userData": "#!/bin/sh\necho hello\n",
                "tags": {"role": "web"},
            }),
        ),
    )
    .await;
    let subnet_id = external_name(&wait_ready(&subnets, "a").await);
    let web_sg = external_name(&wait_ready(&groups, "web").await);
    let ssh_sg = external_name(&wait_ready(&groups, "ssh").await);
    let i = wait_synced(&instances, "web").await;
    let id = external_name(&i);
    let status = i.status.unwrap();
    let at = status.at_provider.unwrap();
    assert_eq!(at.instance_id.as_deref(), Some(id.as_str()));
    assert_eq!(at.state.as_deref(), Some("running"));
    assert!(
        at.private_ip_address
            .as_deref()
            .is_some_and(|ip| ip.starts_with(&format!("10.{b}.1."))),
        "{at:?}"
    );
    assert_eq!(status.resolved_references.get("subnetId"), Some(&subnet_id));
    assert_eq!(
        status.resolved_references.get("securityGroupIds"),
        Some(&web_sg)
    );
    let cloud = instance(&ec2, &id).await.unwrap();
    assert_eq!(cloud.subnet_id(), Some(subnet_id.as_str()));
    assert_eq!(cloud.instance_type().map(|t| t.as_str()), Some("t3.micro"));
    let sgs: Vec<&str> = cloud
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id())
        .collect();
    assert_eq!(sgs, [web_sg.as_str()]);
    let tags = tag_map(cloud.tags());
    assert_eq!(tags.get("role").map(String::as_str), Some("web"));
    assert_eq!(tags.get(TAG_OWNER), Some(&format!("{}/web", scope.ns)));
    if let Some(token) = cloud.client_token() {
        // LocalStack echoes the token it got (it ignores it otherwise).
        assert!(
            token.starts_with("dl-") && token.len() <= 64,
            "ClientToken {token}"
        );
    }

    // Update: tags, security groups, instance type (stop, change, start).
    patch_for_provider(
        &instances,
        "web",
        json!({"instanceType": "t3.small", "securityGroupRefs": [{"name": "web"}, {"name": "ssh"}], "tags": {"role": "frontend"}}),
    )
    .await;
    wait_for("instance updated in EC2", WAIT, || async {
        let i = instance(&ec2, &id).await?;
        let mut sgs: Vec<String> = i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(String::from))
            .collect();
        sgs.sort();
        let mut want = vec![web_sg.clone(), ssh_sg.clone()];
        want.sort();
        let done = i.instance_type().map(|t| t.as_str()) == Some("t3.small")
            && i.state()?.name()?.as_str() == "running"
            && sgs == want
            && tag_map(i.tags()).get("role").map(String::as_str) == Some("frontend");
        done.then_some(())
    })
    .await;
    wait_synced(&instances, "web").await;
    assert!(scope.calls.operation_total("StopInstances") >= 1);
    assert_eq!(
        scope.calls.operation_total("RunInstances"),
        1,
        "an update replaced the instance"
    );

    // Drift: a tag.
    ec2.create_tags()
        .resources(&id)
        .tags(tag("role", "hijacked"))
        .send()
        .await
        .unwrap();
    wait_corrected("instance tag drift corrected", || async {
        let i = instance(&ec2, &id).await?;
        (tag_map(i.tags()).get("role").map(String::as_str) == Some("frontend")).then_some(())
    })
    .await;
    wait_event(&scope, "web", "DriftCorrected").await;

    // userData is refused at admission once set.
    let (ok, _, err) = scope
        .kubectl(
            &[
                "patch",
                "instances.aws.driftless.dev",
                "web",
                "-n",
                &scope.ns,
                "--type",
                "merge",
                "-p",
                r#"{"spec":{"forProvider":{"userData":"changed"}}}"#,
            ],
            None,
        )
        .await;
    assert!(!ok && err.contains("userData is immutable"), "{err}");

    // Delete = terminate.
    instances
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&instances, "web").await;
    assert!(
        instance(&ec2, &id).await.is_none(),
        "instance {id} not terminated"
    );
    for sg in ["web", "ssh"] {
        groups.delete(sg, &DeleteParams::default()).await.unwrap();
    }
    subnets.delete("a", &DeleteParams::default()).await.unwrap();
    vpcs.delete("net", &DeleteParams::default()).await.unwrap();
    wait_gone(&vpcs, "net").await;
}

#[tokio::test]
async fn references_resolve_in_any_order() {
    let mut scope = Scope::new("ec2-refs").await;
    // No retry within the test's time: each object must be woken when what
    // it references turns Ready.
    scope.start_controller_with(POLL, |s| s.reference_retry = Duration::from_secs(3600));
    let ec2 = support::ec2().await;
    let vpcs: Api<Vpc> = scope.api();
    let subnets: Api<Subnet> = scope.api();
    let groups: Api<SecurityGroup> = scope.api();
    let instances: Api<Instance> = scope.api();
    let (cidr, b) = cidr16();

    // Reverse order: the instance first, the VPC last.
    create::<Instance>(
        &scope,
        manifest(
            &scope,
            "Instance",
            "app",
            json!({"imageId": AMI, "instanceType": "t3.micro", "subnetRef": {"name": "private"}, "securityGroupSelector": {"matchLabels": {"tier": "app"}}}),
        ),
    )
    .await;
    let (_, msg) = wait_message(&instances, "app", "Synced", "False", |reason, _| {
        reason == "ReferenceNotReady"
    })
    .await;
    assert!(msg.contains("subnetId") && msg.contains("private"), "{msg}");
    assert_eq!(
        scope.calls.total(),
        0,
        "cloud calls before references resolved: {:?}",
        scope.calls.snapshot()
    );

    let mut sg = manifest(
        &scope,
        "SecurityGroup",
        "app",
        json!({"vpcSelector": {"matchLabels": {"net": "main"}}}),
    );
    sg["metadata"]["labels"] = json!({"tier": "app"});
    create::<SecurityGroup>(&scope, sg).await;
    create::<Subnet>(
        &scope,
        manifest(
            &scope,
            "Subnet",
            "private",
            json!({"vpcRef": {"name": "main"}, "cidrBlock": format!("10.{b}.2.0/24")}),
        ),
    )
    .await;
    let (_, msg) = wait_message(&subnets, "private", "Synced", "False", |reason, _| {
        reason == "ReferenceNotReady"
    })
    .await;
    assert!(msg.contains("vpcId") && msg.contains("main"), "{msg}");
    let mut v = manifest(&scope, "Vpc", "main", json!({"cidrBlock": cidr}));
    v["metadata"]["labels"] = json!({"net": "main"});
    create::<Vpc>(&scope, v).await;

    let vpc_id = external_name(&wait_ready(&vpcs, "main").await);
    let subnet_id = external_name(&wait_ready(&subnets, "private").await);
    let sg_id = external_name(&wait_ready(&groups, "app").await);
    let app = wait_ready(&instances, "app").await;
    let id = external_name(&app);
    let resolved = app.status.unwrap().resolved_references;
    assert_eq!(resolved.get("subnetId"), Some(&subnet_id));
    assert_eq!(resolved.get("securityGroupIds"), Some(&sg_id));
    assert_eq!(
        subnet(&ec2, &subnet_id).await.unwrap().vpc_id(),
        Some(vpc_id.as_str())
    );
    assert_eq!(
        group(&ec2, &sg_id).await.unwrap().vpc_id(),
        Some(vpc_id.as_str())
    );
    assert_eq!(
        instance(&ec2, &id).await.unwrap().subnet_id(),
        Some(subnet_id.as_str())
    );

    // Everything deleted at once converges.
    let dp = DeleteParams::default();
    vpcs.delete("main", &dp).await.unwrap();
    subnets.delete("private", &dp).await.unwrap();
    groups.delete("app", &dp).await.unwrap();
    instances.delete("app", &dp).await.unwrap();
    wait_gone(&instances, "app").await;
    wait_gone(&groups, "app").await;
    wait_gone(&subnets, "private").await;
    wait_gone(&vpcs, "main").await;
    assert!(vpc(&ec2, &vpc_id).await.is_none());
    assert!(instance(&ec2, &id).await.is_none());
}

#[tokio::test]
async fn orphan_keeps_every_kind() {
    let mut scope = Scope::new("ec2-orphan").await;
    scope.start_controller(POLL);
    let ec2 = support::ec2().await;
    let (cidr, b) = cidr16();
    let orphan = |mut m: Value| {
        m["spec"]["deletionPolicy"] = json!("Orphan");
        m
    };
    create::<Vpc>(
        &scope,
        orphan(manifest(&scope, "Vpc", "net", json!({"cidrBlock": cidr}))),
    )
    .await;
    create::<Subnet>(
        &scope,
        orphan(manifest(
            &scope,
            "Subnet",
            "a",
            json!({"vpcRef": {"name": "net"}, "cidrBlock": format!("10.{b}.3.0/24")}),
        )),
    )
    .await;
    create::<SecurityGroup>(
        &scope,
        orphan(manifest(
            &scope,
            "SecurityGroup",
            "sg",
            json!({"vpcRef": {"name": "net"}}),
        )),
    )
    .await;
    create::<Instance>(
        &scope,
        orphan(manifest(
            &scope,
            "Instance",
            "vm",
            json!({"imageId": AMI, "instanceType": "t3.micro", "subnetRef": {"name": "a"}}),
        )),
    )
    .await;
    let vpc_id = external_name(&wait_ready(&scope.api::<Vpc>(), "net").await);
    let subnet_id = external_name(&wait_ready(&scope.api::<Subnet>(), "a").await);
    let sg_id = external_name(&wait_ready(&scope.api::<SecurityGroup>(), "sg").await);
    let instance_id = external_name(&wait_ready(&scope.api::<Instance>(), "vm").await);

    let dp = DeleteParams::default();
    scope.api::<Instance>().delete("vm", &dp).await.unwrap();
    scope
        .api::<SecurityGroup>()
        .delete("sg", &dp)
        .await
        .unwrap();
    scope.api::<Subnet>().delete("a", &dp).await.unwrap();
    scope.api::<Vpc>().delete("net", &dp).await.unwrap();
    wait_gone(&scope.api::<Instance>(), "vm").await;
    wait_gone(&scope.api::<SecurityGroup>(), "sg").await;
    wait_gone(&scope.api::<Subnet>(), "a").await;
    wait_gone(&scope.api::<Vpc>(), "net").await;
    assert!(
        instance(&ec2, &instance_id).await.is_some(),
        "Orphan terminated the instance"
    );
    assert!(
        group(&ec2, &sg_id).await.is_some(),
        "Orphan deleted the security group"
    );
    assert!(
        subnet(&ec2, &subnet_id).await.is_some(),
        "Orphan deleted the subnet"
    );
    assert!(vpc(&ec2, &vpc_id).await.is_some(), "Orphan deleted the VPC");
    for op in [
        "TerminateInstances",
        "DeleteSecurityGroup",
        "DeleteSubnet",
        "DeleteVpc",
    ] {
        assert_eq!(
            scope.calls.operation_total(op),
            0,
            "{op} called under Orphan"
        );
    }

    ec2.terminate_instances()
        .instance_ids(&instance_id)
        .send()
        .await
        .unwrap();
    ec2.delete_security_group()
        .group_id(&sg_id)
        .send()
        .await
        .unwrap();
    ec2.delete_subnet()
        .subnet_id(&subnet_id)
        .send()
        .await
        .unwrap();
    ec2.delete_vpc().vpc_id(&vpc_id).send().await.unwrap();
}

#[tokio::test]
async fn observe_only_imports_every_kind_without_changing_it() {
    let mut scope = Scope::new("ec2-import").await;
    scope.start_controller(POLL);
    let ec2 = support::ec2().await;
    let (cidr, b) = cidr16();
    // Made outside driftless: no owner tags.
    let vpc_id = ec2
        .create_vpc()
        .cidr_block(&cidr)
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    let subnet_cidr = format!("10.{b}.4.0/24");
    let subnet_id = ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block(&subnet_cidr)
        .send()
        .await
        .unwrap()
        .subnet()
        .unwrap()
        .subnet_id()
        .unwrap()
        .to_string();
    let sg_name = unique("legacy");
    let sg_id = ec2
        .create_security_group()
        .vpc_id(&vpc_id)
        .group_name(&sg_name)
        .description("legacy")
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&sg_id)
        .ip_permissions(tcp(22, "0.0.0.0/0"))
        .send()
        .await
        .unwrap();
    let instance_id = ec2
        .run_instances()
        .image_id(AMI)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .subnet_id(&subnet_id)
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();

    // Specs that differ where a change is possible: Observe never applies them.
    let import = |kind: &str, name: &str, id: &str, for_provider: Value| {
        let mut m = manifest(&scope, kind, name, for_provider);
        m["metadata"]["annotations"] = json!({EXTERNAL_NAME: id});
        m["spec"]["managementPolicies"] = json!(["Observe"]);
        m
    };
    create::<Vpc>(
        &scope,
        import(
            "Vpc",
            "net",
            &vpc_id,
            json!({"cidrBlock": cidr, "tags": {"would": "change"}}),
        ),
    )
    .await;
    create::<Subnet>(
        &scope,
        import(
            "Subnet",
            "a",
            &subnet_id,
            json!({"vpcId": vpc_id, "cidrBlock": subnet_cidr, "mapPublicIpOnLaunch": true}),
        ),
    )
    .await;
    create::<SecurityGroup>(
        &scope,
        import(
            "SecurityGroup",
            "sg",
            &sg_id,
            json!({"vpcId": vpc_id, "groupName": sg_name, "ingress": []}),
        ),
    )
    .await;
    create::<Instance>(
        &scope,
        import(
            "Instance",
            "vm",
            &instance_id,
            json!({"imageId": AMI, "instanceType": "t3.large", "subnetId": subnet_id}),
        ),
    )
    .await;
    let v = wait_ready(&scope.api::<Vpc>(), "net").await;
    assert_eq!(
        v.status.unwrap().at_provider.unwrap().vpc_id.as_deref(),
        Some(vpc_id.as_str())
    );
    let s = wait_ready(&scope.api::<Subnet>(), "a").await;
    assert_eq!(
        s.status.unwrap().at_provider.unwrap().subnet_id.as_deref(),
        Some(subnet_id.as_str())
    );
    let g = wait_ready(&scope.api::<SecurityGroup>(), "sg").await;
    assert_eq!(
        g.status.unwrap().at_provider.unwrap().group_name.as_deref(),
        Some(sg_name.as_str())
    );
    let i = wait_ready(&scope.api::<Instance>(), "vm").await;
    assert_eq!(
        i.status.unwrap().at_provider.unwrap().state.as_deref(),
        Some("running")
    );

    // Three more polls of each later, nothing was written.
    for (kind, name) in [
        ("Vpc", "net"),
        ("Subnet", "a"),
        ("SecurityGroup", "sg"),
        ("Instance", "vm"),
    ] {
        let seen = scope.passes(kind, name);
        scope.wait_passes(kind, name, seen + 3).await;
    }
    for op in [
        "CreateVpc",
        "CreateSubnet",
        "CreateSecurityGroup",
        "RunInstances",
        "CreateTags",
        "DeleteTags",
        "ModifySubnetAttribute",
        "RevokeSecurityGroupIngress",
        "ModifyInstanceAttribute",
        "StopInstances",
    ] {
        assert_eq!(
            scope.calls.operation_total(op),
            0,
            "{op} under Observe: {:?}",
            scope.calls.snapshot()
        );
    }
    assert!(
        tag_map(vpc(&ec2, &vpc_id).await.unwrap().tags()).is_empty(),
        "Observe tagged the VPC"
    );
    assert_eq!(
        rules(group(&ec2, &sg_id).await.unwrap().ip_permissions()),
        ["tcp 22-22 0.0.0.0/0"]
    );
    assert_eq!(
        subnet(&ec2, &subnet_id)
            .await
            .unwrap()
            .map_public_ip_on_launch(),
        Some(false)
    );

    // Deleting the objects keeps everything.
    let dp = DeleteParams::default();
    scope.api::<Instance>().delete("vm", &dp).await.unwrap();
    scope
        .api::<SecurityGroup>()
        .delete("sg", &dp)
        .await
        .unwrap();
    scope.api::<Subnet>().delete("a", &dp).await.unwrap();
    scope.api::<Vpc>().delete("net", &dp).await.unwrap();
    wait_gone(&scope.api::<Vpc>(), "net").await;
    wait_gone(&scope.api::<Instance>(), "vm").await;
    assert!(instance(&ec2, &instance_id).await.is_some());
    assert!(vpc(&ec2, &vpc_id).await.is_some());

    ec2.terminate_instances()
        .instance_ids(&instance_id)
        .send()
        .await
        .unwrap();
    ec2.delete_security_group()
        .group_id(&sg_id)
        .send()
        .await
        .unwrap();
    ec2.delete_subnet()
        .subnet_id(&subnet_id)
        .send()
        .await
        .unwrap();
    ec2.delete_vpc().vpc_id(&vpc_id).send().await.unwrap();
}

/// Resources driftless owns (by owner tag) of one kind, not terminated.
async fn owned(ec2: &aws_sdk_ec2::Client, kind: &str, owner: &str) -> Vec<String> {
    let filters = [
        aws_sdk_ec2::types::Filter::builder()
            .name(format!("tag:{TAG_OWNER}"))
            .values(owner)
            .build(),
        aws_sdk_ec2::types::Filter::builder()
            .name("tag:driftless.dev/kind")
            .values(kind)
            .build(),
    ];
    match kind {
        "Vpc" => {
            let out = ec2
                .describe_vpcs()
                .set_filters(Some(filters.to_vec()))
                .send()
                .await
                .unwrap();
            out.vpcs()
                .iter()
                .filter_map(|v| v.vpc_id().map(String::from))
                .collect()
        }
        _ => {
            let out = ec2
                .describe_instances()
                .set_filters(Some(filters.to_vec()))
                .send()
                .await
                .unwrap();
            out.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter(|i| {
                    i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated")
                })
                .filter_map(|i| i.instance_id().map(String::from))
                .collect()
        }
    }
}

/// What `names` (all of `kind`, Ready) cost while idle for `polls` more
/// passes each, after their creates' follow-up reads settled.
pub(crate) struct IdleCalls {
    /// Calls of the kind's batched listing.
    pub describes: u64,
    /// Every cloud call.
    pub total: u64,
    /// The most passes any one object had meanwhile (jitter: some get one more).
    pub polls: u64,
    pub took: Duration,
}

impl IdleCalls {
    pub(crate) async fn measure(
        scope: &Scope,
        kind: &str,
        names: &[String],
        describe: &str,
        polls: u64,
    ) -> Self {
        let passes = || -> Vec<u64> { names.iter().map(|n| scope.passes(kind, n)).collect() };
        // The quick re-read after a write, then a poll.
        for (n, seen) in names.iter().zip(passes()) {
            scope.wait_passes(kind, n, seen + 2).await;
        }
        let (describes, total, start) = (
            scope.calls.operation_total(describe),
            scope.calls.total(),
            passes(),
        );
        let started = Instant::now();
        for (n, seen) in names.iter().zip(&start) {
            scope.wait_passes(kind, n, seen + polls).await;
        }
        let polls = passes()
            .iter()
            .zip(&start)
            .map(|(now, was)| now - was)
            .max()
            .unwrap();
        Self {
            describes: scope.calls.operation_total(describe) - describes,
            total: scope.calls.total() - total,
            polls,
            took: started.elapsed(),
        }
    }

    /// Calls per resource per poll.
    pub(crate) fn per_resource(&self, n: usize) -> f64 {
        self.total as f64 / (n as f64 * self.polls as f64)
    }

    /// At most one batched listing per poll interval (a snapshot lives one
    /// interval), and no call per resource. Counted against the clock, not
    /// against passes: on a loaded machine an object's passes come later
    /// than every interval, while the snapshot still refreshes on time.
    pub(crate) fn assert_one_listing_per_poll(&self, describe: &str, scope: &Scope) {
        let (describes, polls) = (self.describes, self.polls);
        assert!(describes >= 1, "no observation at all in {polls} polls");
        let intervals = (self.took.as_secs_f64() / scope.poll.as_secs_f64()).floor() as u64;
        assert!(
            describes <= intervals + 1,
            "{describes} {describe} in {:?} ({intervals} poll intervals of {:?}): {:?}",
            self.took,
            scope.poll,
            scope.calls.snapshot()
        );
        assert_eq!(
            self.total,
            describes,
            "per-resource calls while idle: {:?}",
            scope.calls.snapshot()
        );
    }
}

/// Tag drift on EC2 resource `id` (a `kind`) is put back: its tag `team`
/// changed out of band returns to `team`, and a tag added out of band goes.
/// `tags` reads the resource's tags (`None`: not found yet). Prints the time.
pub(crate) async fn assert_tag_drift_corrected<F, Fut>(
    ec2: &aws_sdk_ec2::Client,
    kind: &str,
    id: &str,
    team: &str,
    tags: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<BTreeMap<String, String>>>,
{
    ec2.create_tags()
        .resources(id)
        .tags(tag("team", "hijacked"))
        .tags(tag("intruder", "yes"))
        .send()
        .await
        .unwrap();
    let drifted = Instant::now();
    wait_for(&format!("{kind} tag drift corrected"), WAIT, || async {
        let tags = tags().await?;
        let done =
            tags.get("team").map(String::as_str) == Some(team) && !tags.contains_key("intruder");
        done.then_some(())
    })
    .await;
    eprintln!("{kind} tag drift corrected in {:?}", drifted.elapsed());
}

/// The idle cost of 50 Ready objects of kind `K`, each made by `object`
/// (a manifest) from its name: created, measured over 5 idle polls, printed; at most one
/// `describe` listing per poll and no call per resource; then deleted.
pub(crate) async fn assert_idle_cost_of_fifty<K: ManagedKind + DeserializeOwned>(
    scope: &Scope,
    describe: &str,
    object: impl Fn(&str) -> Value,
) {
    const N: usize = 50;
    let kind = K::kind(&()).to_string();
    let api: Api<K> = scope.api();
    let names: Vec<String> = (0..N)
        .map(|i| format!("{}-{i:02}", kind.to_lowercase()))
        .collect();
    for n in &names {
        create::<K>(scope, object(n)).await;
    }
    for n in &names {
        wait_synced(&api, n).await;
    }
    let idle = IdleCalls::measure(scope, &kind, &names, describe, 5).await;
    eprintln!(
        "{N} Ready {kind}s over {} idle polls of {:?}: {} {describe}, {} cloud calls in all: {:.3} calls per resource per poll",
        idle.polls,
        scope.poll,
        idle.describes,
        idle.total,
        idle.per_resource(N)
    );
    idle.assert_one_listing_per_poll(describe, scope);
    for n in &names {
        api.delete(n, &DeleteParams::default()).await.unwrap();
    }
    for n in &names {
        wait_gone(&api, n).await;
    }
}

/// A Kubernetes client for a controller that "dies" right after a create
/// call returned: the first request that would record the external-name of
/// one of `names` never completes (the reconcile hangs there, as a killed
/// process would stop), and the name is reported in `crashed`. Everything
/// else passes through `inner` unchanged.
pub(crate) fn crashing_client(
    inner: kube::Client,
    ns: &str,
    names: &'static [&'static str],
    crashed: Arc<std::sync::Mutex<Vec<String>>>,
) -> kube::Client {
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let inner = inner.clone();
        let crashed = crashed.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await?;
            if parts.method == http::Method::PATCH {
                let path = parts.uri.path().to_string();
                let records_id = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .is_some_and(|p| p["metadata"]["annotations"][EXTERNAL_NAME].is_string());
                let target = names
                    .iter()
                    .find(|n| path.ends_with(&format!("/{n}")))
                    .filter(|_| records_id);
                if let Some(name) = target {
                    crashed.lock().unwrap().push(name.to_string());
                    std::future::pending::<()>().await;
                }
            }
            inner
                .send(http::Request::from_parts(
                    parts,
                    kube::client::Body::from(bytes),
                ))
                .await
        }
    });
    kube::Client::new(service, ns.to_string())
}

/// A create whose answer a crash loses (the controller dies before it
/// records the id) is adopted after a restart, not made again: `owned`
/// lists the cloud ids carrying the object's owner tags, `create_call` is the
/// API operation. Returns the adopted id.
pub(crate) async fn assert_lost_create_adopted<K, F, Fut>(
    scope: &mut Scope,
    name: &'static [&'static str; 1],
    create_call: &str,
    owned: F,
) -> String
where
    K: ManagedKind + DeserializeOwned,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let api: Api<K> = scope.api();
    let crashed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let client = crashing_client(scope.client.clone(), &scope.ns, name, crashed.clone());
    scope.start_controller_client(client, Duration::from_secs(2));
    wait_for("created, not recorded", WAIT, || async {
        (!crashed.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    scope.stop_controller();
    let o = api.get(name[0]).await.unwrap();
    assert!(
        !o.annotations().contains_key(EXTERNAL_NAME),
        "recorded before the crash"
    );
    assert!(
        o.annotations().contains_key(CREATE_PENDING),
        "create not marked pending"
    );
    let created = owned().await;
    assert_eq!(created.len(), 1, "one resource made: {created:?}");

    scope.start_controller(Duration::from_secs(2));
    let o = wait_synced(&api, name[0]).await;
    assert_eq!(external_name(&o), created[0], "the one made is adopted");
    let seen = scope.passes(&K::kind(&()), name[0]);
    scope.wait_passes(&K::kind(&()), name[0], seen + 2).await;
    assert_eq!(owned().await, created, "and no other made since");
    let calls = scope.calls.operation_total(create_call);
    assert_eq!(calls, 1, "{create_call}: {:?}", scope.calls.snapshot());
    created[0].clone()
}

#[tokio::test]
async fn a_crash_between_create_and_record_is_adopted_not_duplicated() {
    let mut scope = Scope::new("ec2-crash").await;
    let ec2 = support::ec2().await;
    let vpcs: Api<Vpc> = scope.api();
    let instances: Api<Instance> = scope.api();
    let (cidr, _) = cidr16();

    // The instance's subnet lives in a VPC made by hand, so that both
    // creates happen (and crash) under the same controller.
    let (other_cidr, other) = cidr16();
    let hand_vpc = ec2
        .create_vpc()
        .cidr_block(&other_cidr)
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    let subnet_id = ec2
        .create_subnet()
        .vpc_id(&hand_vpc)
        .cidr_block(format!("10.{other}.5.0/24"))
        .send()
        .await
        .unwrap()
        .subnet()
        .unwrap()
        .subnet_id()
        .unwrap()
        .to_string();
    create::<Vpc>(
        &scope,
        manifest(&scope, "Vpc", "net", json!({"cidrBlock": cidr})),
    )
    .await;
    create::<Instance>(
        &scope,
        manifest(
            &scope,
            "Instance",
            "vm",
            json!({"imageId": AMI, "instanceType": "t3.micro", "subnetId": subnet_id}),
        ),
    )
    .await;

    // The first controller makes both create calls and dies before it
    // records either id.
    let crashed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let client = crashing_client(
        scope.client.clone(),
        &scope.ns,
        &["net", "vm"],
        crashed.clone(),
    );
    scope.start_controller_client(client, POLL);
    wait_for("both creates made, neither recorded", WAIT, || async {
        (crashed.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    scope.stop_controller();
    assert_eq!(scope.calls.operation_total("CreateVpc"), 1);
    assert_eq!(scope.calls.operation_total("RunInstances"), 1);
    let net = vpcs.get("net").await.unwrap();
    let vm = instances.get("vm").await.unwrap();
    for (name, annotations) in [("net", net.annotations()), ("vm", vm.annotations())] {
        assert!(
            !annotations.contains_key(EXTERNAL_NAME),
            "{name}: id recorded before the crash"
        );
        assert!(
            annotations.contains_key(CREATE_PENDING),
            "{name}: create not marked pending"
        );
    }
    let vpc_owner = format!("{}/net", scope.ns);
    let vm_owner = format!("{}/vm", scope.ns);
    let created_vpc = owned(&ec2, "Vpc", &vpc_owner).await;
    let created_instance = owned(&ec2, "Instance", &vm_owner).await;
    assert_eq!(created_vpc.len(), 1, "{created_vpc:?}");
    assert_eq!(created_instance.len(), 1, "{created_instance:?}");

    // The restarted controller adopts both instead of creating again.
    scope.start_controller(POLL);
    let net = wait_ready(&vpcs, "net").await;
    let vm = wait_ready(&instances, "vm").await;
    assert_eq!(external_name(&net), created_vpc[0]);
    assert_eq!(external_name(&vm), created_instance[0]);
    assert!(!net.annotations().contains_key(CREATE_PENDING));
    assert!(!vm.annotations().contains_key(CREATE_PENDING));
    wait_event(&scope, "net", "AdoptedExternalResource").await;
    wait_event(&scope, "vm", "AdoptedExternalResource").await;
    // Two more polls of each later: still exactly one of each, and no
    // second create.
    for (kind, name) in [("Vpc", "net"), ("Instance", "vm")] {
        let seen = scope.passes(kind, name);
        scope.wait_passes(kind, name, seen + 2).await;
    }
    assert_eq!(owned(&ec2, "Vpc", &vpc_owner).await, created_vpc);
    assert_eq!(owned(&ec2, "Instance", &vm_owner).await, created_instance);
    for op in ["CreateVpc", "RunInstances"] {
        assert_eq!(
            scope.calls.operation_total(op),
            1,
            "{op} again after the restart: {:?}",
            scope.calls.snapshot()
        );
    }
    wait_synced(&vpcs, "net").await;
    wait_synced(&instances, "vm").await;

    let dp = DeleteParams::default();
    instances.delete("vm", &dp).await.unwrap();
    vpcs.delete("net", &dp).await.unwrap();
    wait_gone(&instances, "vm").await;
    wait_gone(&vpcs, "net").await;
    assert!(owned(&ec2, "Vpc", &vpc_owner).await.is_empty());
    assert!(owned(&ec2, "Instance", &vm_owner).await.is_empty());
    ec2.delete_subnet()
        .subnet_id(&subnet_id)
        .send()
        .await
        .unwrap();
    ec2.delete_vpc().vpc_id(&hand_vpc).send().await.unwrap();
}

#[tokio::test]
async fn observing_fifty_vpcs_costs_pages_not_resources() {
    let _turn = crate::support::heavy().await;
    const N: usize = 50;
    let mut scope = Scope::new("ec2-batch").await;
    scope.start_controller(POLL);
    let api: Api<Vpc> = scope.api();
    let ec2 = support::ec2().await;
    let (cidr, _) = cidr16();
    let names: Vec<String> = (0..N).map(|i| format!("net-{i:02}")).collect();
    futures::future::join_all(names.iter().map(|n| {
        create::<Vpc>(
            &scope,
            manifest(
                &scope,
                "Vpc",
                n,
                json!({"cidrBlock": cidr, "tags": {"batch": "yes"}}),
            ),
        )
    }))
    .await;
    let mut ids = Vec::new();
    for n in &names {
        ids.push(external_name(&wait_synced(&api, n).await));
    }
    // Idle: until every object has been polled 5 more times.
    let idle = IdleCalls::measure(&scope, "Vpc", &names, "DescribeVpcs", 5).await;
    let IdleCalls {
        describes,
        total,
        polls,
        took,
    } = idle;
    eprintln!(
        "{N} Ready VPCs over {polls} idle polls of {POLL:?} ({took:?}): {describes} DescribeVpcs ({:.1} per poll), {total} EC2 calls in all",
        describes as f64 / polls as f64
    );
    // One page (50 < the page size of 1000) per refresh.
    idle.assert_one_listing_per_poll("DescribeVpcs", &scope);
    // Every object still observed: atProvider is current.
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        N
    );

    // Drift on one of the fifty is still seen from the batched snapshot.
    ec2.create_tags()
        .resources(&ids[17])
        .tags(tag("batch", "hijacked"))
        .send()
        .await
        .unwrap();
    wait_corrected("drift on one of fifty corrected", || async {
        let tags = tag_map(vpc(&ec2, &ids[17]).await?.tags());
        (tags.get("batch").map(String::as_str) == Some("yes")).then_some(())
    })
    .await;

    for n in &names {
        api.delete(n, &DeleteParams::default()).await.unwrap();
    }
    for n in &names {
        wait_gone(&api, n).await;
    }
    for id in &ids {
        assert!(vpc(&ec2, id).await.is_none(), "VPC {id} left behind");
    }
}

#[tokio::test]
async fn invalid_ec2_specs_are_refused_at_admission() {
    let scope = Scope::new("ec2-admission").await;
    for (kind, for_provider, expect) in [
        ("Vpc", "{cidrBlock: 10.0.0.0/8}", "prefix from /16 to /28"),
        ("Vpc", "{cidrBlock: 10.0.300.0/16}", "cidrBlock must be an IPv4 CIDR block"),
        ("Vpc", "{cidrBlock: 10.0.0.0/16, instanceTenancy: host}", "Unsupported value: \"host\""),
        ("Subnet", "{cidrBlock: 10.0.1.0/24}", "one of vpcId, vpcRef or vpcSelector is required"),
        ("SecurityGroup", "{vpcId: vpc-1, ingress: [{protocol: tcp, cidrBlocks: [0.0.0.0/0]}]}", "fromPort and toPort are required"),
        ("SecurityGroup", "{vpcId: vpc-1, ingress: [{protocol: tcp, fromPort: 1, toPort: 2}]}", "a rule needs at least one of"),
        ("SecurityGroup", "{vpcId: vpc-1, ingress: [{protocol: gre, fromPort: 1, toPort: 2, cidrBlocks: [0.0.0.0/0]}]}", "protocol must be"),
        ("Instance", "{imageId: ami-1, instanceType: t3.micro}", "one of subnetId, subnetRef or subnetSelector is required"),
    ] {
        let manifest = format!(
            "apiVersion: aws.driftless.dev/v1alpha1\nkind: {kind}\nmetadata:\n  name: bad\n  namespace: {}\nspec:\n  forProvider: {for_provider}\n",
            scope.ns
        );
        let (ok, _, err) = scope.kubectl(&["apply", "-f", "-"], Some(&manifest)).await;
        assert!(!ok, "kubectl accepted an invalid {kind} {for_provider}");
        assert!(err.contains(expect), "for {kind} {for_provider}, expected {expect:?} in:\n{err}");
    }
}

async fn gateway(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Option<aws_sdk_ec2::types::InternetGateway> {
    let result = ec2
        .describe_internet_gateways()
        .internet_gateway_ids(id)
        .send()
        .await;
    let out = unless_not_found(
        &format!("DescribeInternetGateways {id}"),
        result,
        code_in(&["InvalidInternetGatewayID.NotFound"]),
    )?;
    out.internet_gateways().first().cloned()
}

/// The VPCs gateway `id` is attached to.
async fn gateway_vpcs(ec2: &aws_sdk_ec2::Client, id: &str) -> Vec<String> {
    gateway(ec2, id)
        .await
        .map(|g| {
            g.attachments()
                .iter()
                .filter(|a| a.state().map(|s| s.as_str()) != Some("detached"))
                .filter_map(|a| a.vpc_id().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn internet_gateway_lifecycle_and_moves() {
    let mut scope = Scope::new("ec2-igw").await;
    scope.start_controller(POLL);
    let ec2 = support::ec2().await;
    let vpcs: Api<Vpc> = scope.api();
    let gateways: Api<InternetGateway> = scope.api();
    for name in ["net", "net2"] {
        let (cidr, _) = cidr16();
        create::<Vpc>(
            &scope,
            manifest(&scope, "Vpc", name, json!({"cidrBlock": cidr})),
        )
        .await;
    }
    create::<InternetGateway>(
        &scope,
        manifest(
            &scope,
            "InternetGateway",
            "gw",
            json!({"vpcRef": {"name": "net"}, "tags": {"role": "edge"}}),
        ),
    )
    .await;
    let net = external_name(&wait_ready(&vpcs, "net").await);
    let net2 = external_name(&wait_ready(&vpcs, "net2").await);
    let gw = wait_synced(&gateways, "gw").await;
    let id = external_name(&gw);
    let status = gw.status.unwrap();
    let at = status.at_provider.unwrap();
    assert_eq!(at.internet_gateway_id.as_deref(), Some(id.as_str()));
    assert_eq!(at.vpc_id.as_deref(), Some(net.as_str()));
    assert_eq!(at.state.as_deref(), Some("available"));
    assert_eq!(status.resolved_references.get("vpcId"), Some(&net));
    assert_eq!(gateway_vpcs(&ec2, &id).await, [net.as_str()]);
    let tags = tag_map(gateway(&ec2, &id).await.unwrap().tags());
    assert_eq!(tags.get("role").map(String::as_str), Some("edge"));
    assert_eq!(tags.get(TAG_OWNER), Some(&format!("{}/gw", scope.ns)));

    // Update: tags, and a move to the other VPC.
    patch_for_provider(
        &gateways,
        "gw",
        json!({"vpcRef": {"name": "net2"}, "tags": {"role": "egress"}}),
    )
    .await;
    wait_for("gateway moved and retagged", WAIT, || async {
        let tags = tag_map(gateway(&ec2, &id).await?.tags());
        let done = gateway_vpcs(&ec2, &id).await == [net2.as_str()]
            && tags.get("role").map(String::as_str) == Some("egress");
        done.then_some(())
    })
    .await;
    wait_synced(&gateways, "gw").await;

    // Drift: detached and retagged out of band; both put back.
    ec2.detach_internet_gateway()
        .internet_gateway_id(&id)
        .vpc_id(&net2)
        .send()
        .await
        .unwrap();
    ec2.create_tags()
        .resources(&id)
        .tags(tag("role", "hijacked"))
        .send()
        .await
        .unwrap();
    wait_corrected("gateway drift corrected", || async {
        let tags = tag_map(gateway(&ec2, &id).await?.tags());
        let done = gateway_vpcs(&ec2, &id).await == [net2.as_str()]
            && tags.get("role").map(String::as_str) == Some("egress");
        done.then_some(())
    })
    .await;
    wait_event(&scope, "gw", "DriftCorrected").await;

    // Everything deleted at once converges. (AWS refuses to delete a VPC
    // with a gateway attached, and the VPC then waits naming it; LocalStack
    // deletes it anyway, so here the gateway may find its VPC gone.)
    let dp = DeleteParams::default();
    vpcs.delete("net2", &dp).await.unwrap();
    vpcs.delete("net", &dp).await.unwrap();
    gateways.delete("gw", &dp).await.unwrap();
    wait_gone(&gateways, "gw").await;
    wait_gone(&vpcs, "net2").await;
    wait_gone(&vpcs, "net").await;
    assert!(
        gateway(&ec2, &id).await.is_none(),
        "gateway {id} left behind"
    );
    assert!(vpc(&ec2, &net2).await.is_none());
}

#[tokio::test]
async fn internet_gateway_orphan_and_import() {
    let mut scope = Scope::new("ec2-igw-keep").await;
    scope.start_controller(POLL);
    let ec2 = support::ec2().await;
    let gateways: Api<InternetGateway> = scope.api();
    let (cidr, _) = cidr16();
    // Made outside driftless: a VPC and an attached gateway, no owner tags.
    let vpc_id = ec2
        .create_vpc()
        .cidr_block(&cidr)
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    let legacy = ec2
        .create_internet_gateway()
        .send()
        .await
        .unwrap()
        .internet_gateway()
        .unwrap()
        .internet_gateway_id()
        .unwrap()
        .to_string();
    ec2.attach_internet_gateway()
        .internet_gateway_id(&legacy)
        .vpc_id(&vpc_id)
        .send()
        .await
        .unwrap();

    // Import under Observe, with a spec that differs: nothing is changed.
    let mut m = manifest(
        &scope,
        "InternetGateway",
        "legacy",
        json!({"tags": {"would": "change"}}),
    );
    m["metadata"]["annotations"] = json!({EXTERNAL_NAME: legacy});
    m["spec"]["managementPolicies"] = json!(["Observe"]);
    create::<InternetGateway>(&scope, m).await;
    // Orphan: a gateway driftless makes, kept when its object goes.
    let mut m = manifest(&scope, "InternetGateway", "kept", json!({"vpcId": vpc_id}));
    m["spec"]["deletionPolicy"] = json!("Orphan");
    create::<InternetGateway>(&scope, m).await;
    let kept = external_name(&wait_ready(&gateways, "kept").await);

    let imported = wait_ready(&gateways, "legacy").await;
    let at = imported.status.unwrap().at_provider.unwrap();
    assert_eq!(at.internet_gateway_id.as_deref(), Some(legacy.as_str()));
    assert_eq!(at.vpc_id.as_deref(), Some(vpc_id.as_str()));
    // Three more polls of each later, nothing was changed.
    for name in ["legacy", "kept"] {
        let seen = scope.passes("InternetGateway", name);
        scope.wait_passes("InternetGateway", name, seen + 3).await;
    }
    for op in [
        "CreateTags",
        "DeleteTags",
        "DetachInternetGateway",
        "DeleteInternetGateway",
    ] {
        assert_eq!(
            scope.calls.operation_total(op),
            0,
            "{op}: {:?}",
            scope.calls.snapshot()
        );
    }
    assert!(tag_map(gateway(&ec2, &legacy).await.unwrap().tags()).is_empty());
    assert_eq!(gateway_vpcs(&ec2, &legacy).await, [vpc_id.as_str()]);

    let dp = DeleteParams::default();
    gateways.delete("legacy", &dp).await.unwrap();
    gateways.delete("kept", &dp).await.unwrap();
    wait_gone(&gateways, "legacy").await;
    wait_gone(&gateways, "kept").await;
    assert_eq!(gateway_vpcs(&ec2, &legacy).await, [vpc_id.as_str()]);
    assert_eq!(gateway_vpcs(&ec2, &kept).await, [vpc_id.as_str()]);
    for op in ["DetachInternetGateway", "DeleteInternetGateway"] {
        assert_eq!(
            scope.calls.operation_total(op),
            0,
            "{op} under Orphan/Observe"
        );
    }

    for g in [&legacy, &kept] {
        ec2.detach_internet_gateway()
            .internet_gateway_id(g)
            .vpc_id(&vpc_id)
            .send()
            .await
            .unwrap();
        ec2.delete_internet_gateway()
            .internet_gateway_id(g)
            .send()
            .await
            .unwrap();
    }
    ec2.delete_vpc().vpc_id(&vpc_id).send().await.unwrap();
}

/// One Ready Vpc with a controller whose metrics the test reads; `change`
/// adjusts the controller's settings.
struct DuplicateSetup {
    scope: Scope,
    shared: driftless::ops::Shared,
    api: Api<Vpc>,
    ec2: aws_sdk_ec2::Client,
    name: String,
    cidr: String,
    managed: String,
}

impl DuplicateSetup {
    async fn new(prefix: &str, change: impl FnOnce(&mut driftless::Settings)) -> Self {
        let mut scope = Scope::new(prefix).await;
        let shared = driftless::ops::Shared::new(scope.calls.clone());
        scope.shared = Some(shared.clone());
        scope.start_controller_with(POLL, change);
        let api: Api<Vpc> = scope.api();
        let name = unique("net");
        let (cidr, _) = cidr16();
        create::<Vpc>(
            &scope,
            manifest(&scope, "Vpc", &name, json!({"cidrBlock": cidr})),
        )
        .await;
        let managed = external_name(&wait_synced(&api, &name).await);
        let ec2 = support::ec2().await;
        Self {
            scope,
            shared,
            api,
            ec2,
            name,
            cidr,
            managed,
        }
    }

    async fn managed_tags(&self) -> Vec<Tag> {
        vpc(&self.ec2, &self.managed).await.unwrap().tags().to_vec()
    }

    /// A VPC made with these tags, as a retried create call makes one.
    async fn vpc_tagged(&self, tags: Vec<Tag>) -> String {
        let spec = aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
            .set_tags(Some(tags))
            .build();
        let out = self
            .ec2
            .create_vpc()
            .cidr_block(&self.cidr)
            .tag_specifications(spec);
        let out = out.send().await.unwrap();
        out.vpc().and_then(|v| v.vpc_id()).unwrap().to_string()
    }

    async fn wait_listed(&self, what: &str, want: Vec<String>) -> Vpc {
        wait_for(what, WAIT, || async {
            let o = self.api.get(&self.name).await.ok()?;
            (o.status.as_ref()?.duplicates == want).then_some(o)
        })
        .await
    }

    /// Deleting the object deletes everything carrying its owner tags.
    async fn delete(&self, ids: &[&String]) {
        self.api
            .delete(&self.name, &DeleteParams::default())
            .await
            .unwrap();
        wait_gone(&self.api, &self.name).await;
        for id in ids {
            assert!(vpc(&self.ec2, id).await.is_none(), "{id} was left");
        }
    }
}

/// A create whose answer was lost, then retried, leaves two VPCs with the
/// object's owner tags. driftless manages one and never hides the other: a
/// Warning Event names it, the metric counts it, `status.duplicates` lists
/// it while it exists, and it is left untouched. Deleted in the cloud, it
/// leaves the status at the next poll.
#[tokio::test]
async fn a_duplicate_from_a_lost_create_answer_is_reported() {
    let t = DuplicateSetup::new("ec2-dup", |_| {}).await;
    // What the retried create would have made: the same request, tags and all.
    let extra = t.vpc_tagged(t.managed_tags().await).await;
    let found = Instant::now();
    let with_dup = t
        .wait_listed(
            "status.duplicates to name the extra VPC",
            vec![extra.clone()],
        )
        .await;
    eprintln!("duplicate reported {:?} after it appeared", found.elapsed());
    assert_eq!(
        external_name(&with_dup),
        t.managed,
        "still manages the first"
    );
    assert_eq!(condition(&with_dup, "Ready").unwrap().0, "True");
    wait_event(&t.scope, &t.name, "DuplicatesFound").await;
    let notes: Vec<String> = crate::support::events_about(&t.scope, &t.name)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("DuplicatesFound"))
        .filter_map(|e| e.note)
        .collect();
    assert!(notes.iter().any(|n| n.contains(&extra)), "{notes:?}");
    let metrics = t.shared.metrics.render();
    assert!(
        metrics.contains("driftless_duplicates_found_total{kind=\"Vpc\"} 1"),
        "{metrics}"
    );
    assert!(
        vpc(&t.ec2, &extra).await.is_some(),
        "the duplicate was touched"
    );

    t.ec2.delete_vpc().vpc_id(&extra).send().await.unwrap();
    t.wait_listed("status.duplicates to be empty", Vec::new())
        .await;
    t.delete(&[&t.managed]).await;
}

/// With `--delete-proven-duplicates`, a duplicate made by the object's own
/// create call (its tags, create token included: what an SDK retry after a
/// lost answer makes) is deleted; one with the owner tags but another
/// create token (not provably from that call) is only reported.
#[tokio::test]
async fn proven_duplicates_are_deleted_with_the_flag_and_others_only_reported() {
    let t = DuplicateSetup::new("ec2-dup-del", |s| s.delete_proven_duplicates = true).await;
    let tags = t.managed_tags().await;
    assert!(
        tags.iter()
            .any(|t| t.key() == Some("driftless.dev/create-token")),
        "the create call tags a create token: {tags:?}"
    );
    let proven = t.vpc_tagged(tags.clone()).await;
    let other_token: Vec<Tag> = tags
        .iter()
        .map(|t| match t.key() {
            Some("driftless.dev/create-token") => tag("driftless.dev/create-token", "another"),
            _ => t.clone(),
        })
        .collect();
    let unproven = t.vpc_tagged(other_token).await;
    let started = Instant::now();
    wait_for("the proven duplicate deleted", WAIT, || async {
        vpc(&t.ec2, &proven).await.is_none().then_some(())
    })
    .await;
    eprintln!(
        "proven duplicate deleted {:?} after it appeared",
        started.elapsed()
    );
    t.wait_listed(
        "status.duplicates to list only the unproven one",
        vec![unproven.clone()],
    )
    .await;
    wait_event(&t.scope, &t.name, "DuplicateDeleted").await;
    assert!(
        vpc(&t.ec2, &unproven).await.is_some(),
        "an unproven duplicate was deleted"
    );
    assert!(
        vpc(&t.ec2, &t.managed).await.is_some(),
        "the managed VPC was deleted"
    );
    let metrics = t.shared.metrics.render();
    assert!(
        metrics.contains("driftless_duplicates_deleted_total{kind=\"Vpc\"} 1"),
        "{metrics}"
    );
    t.delete(&[&t.managed, &unproven]).await;
}
