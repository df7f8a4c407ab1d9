//! ElasticIp end to end: allocate, status and connection Secret, tag drift,
//! an immutable field refused, deletion waiting while associated, a lost
//! create adopted, and the idle cost of observing many addresses.

use std::time::Duration;

use aws_sdk_ec2::types::Address;
use driftless_aws::ElasticIp;
use driftless_provider::TAG_OWNER;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{json, to_value, Value};

use crate::ec2::{
    assert_idle_cost_of_fifty, assert_lost_create_adopted, assert_tag_drift_corrected,
    external_name, tag_map, wait_gone, wait_message, wait_synced,
};
use crate::support::{self, code_in, unique, unless_not_found, wait_for, Scope};

const POLL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(90);
const AMI: &str = "ami-03cf127a";

fn manifest(scope: &Scope, name: &str, for_provider: Value) -> ElasticIp {
    serde_json::from_value(json!({
        "apiVersion": "aws.driftless.dev/v1alpha1",
        "kind": "ElasticIp",
        "metadata": {"name": name, "namespace": scope.ns},
        "spec": {
            "forProvider": for_provider,
            "providerConfigRef": {"name": scope.provider_config},
            "writeConnectionSecretToRef": {"name": format!("{name}-conn")},
        },
    }))
    .expect("a valid manifest")
}

async fn create(api: &Api<ElasticIp>, obj: ElasticIp) {
    let name = obj.name_any();
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create ElasticIp {name}: {e}"));
}

/// The address, `None` when EC2 says there is no such allocation.
async fn address(ec2: &aws_sdk_ec2::Client, id: &str) -> Option<Address> {
    let result = ec2.describe_addresses().allocation_ids(id).send().await;
    let out = unless_not_found(
        &format!("DescribeAddresses {id}"),
        result,
        code_in(&["InvalidAllocationID.NotFound"]),
    )?;
    out.addresses().first().cloned()
}

/// The allocation ids carrying `owner`'s owner tag.
async fn owned(ec2: &aws_sdk_ec2::Client, owner: &str) -> Vec<String> {
    let f = aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{TAG_OWNER}"))
        .values(owner)
        .build();
    let out = ec2.describe_addresses().filters(f).send().await.unwrap();
    let mut ids: Vec<String> = out
        .addresses()
        .iter()
        .filter_map(|a| a.allocation_id().map(String::from))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn elastic_ip_lifecycle_drift_and_deletion_waits_while_associated() {
    let mut scope = Scope::new("eip").await;
    scope.start_controller(POLL);
    let api: Api<ElasticIp> = scope.api();
    let ec2 = support::ec2().await;
    let name = unique("eip");
    let for_provider = json!({"domain": "vpc", "tags": {"team": "net"}});
    create(&api, manifest(&scope, &name, for_provider)).await;

    let ready = wait_synced(&api, &name).await;
    let id = external_name(&ready);
    assert!(id.starts_with("eipalloc-"), "{id}");
    let at = ready.status.unwrap().at_provider.unwrap();
    assert_eq!(at.allocation_id.as_deref(), Some(id.as_str()));
    assert_eq!(at.domain.as_deref(), Some("vpc"));
    assert_eq!(at.association_id, None);
    let ip = at.public_ip.expect("status.atProvider.publicIp");
    let secrets: Api<Secret> = scope.api();
    let conn = secrets.get(&format!("{name}-conn")).await.unwrap();
    let data = conn.data.expect("connection Secret data");
    assert_eq!(data["publicIp"].0, ip.as_bytes());
    assert_eq!(data["allocationId"].0, id.as_bytes());
    // Tagged in the create call: the spec's tags and the owner tags.
    let a = address(&ec2, &id).await.expect("the address exists");
    assert_eq!(a.public_ip(), Some(ip.as_str()));
    let tags = tag_map(a.tags());
    assert_eq!(tags.get("team").map(String::as_str), Some("net"));
    assert_eq!(tags.get(TAG_OWNER), Some(&format!("{}/{name}", scope.ns)));
    assert_eq!(scope.calls.operation_total("AllocateAddress"), 1);
    assert_eq!(scope.calls.operation_total("CreateTags"), 0);

    // Tag drift is put back: a changed tag and an added one.
    let tags = || async { Some(tag_map(address(&ec2, &id).await?.tags())) };
    assert_tag_drift_corrected(&ec2, "ElasticIp", &id, "net", tags).await;

    // An immutable field is refused and nothing is changed.
    let patch = json!({"spec": {"forProvider": {"networkBorderGroup": "us-west-2-lax-1"}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let (_, msg) = wait_message(&api, &name, "Synced", "False", |_, m| {
        m.contains("networkBorderGroup")
    })
    .await;
    eprintln!("immutable change refused: {msg}");
    assert_eq!(scope.calls.operation_total("ReleaseAddress"), 0);
    assert_eq!(scope.calls.operation_total("AllocateAddress"), 1);
    assert_eq!(
        address(&ec2, &id).await.unwrap().public_ip(),
        Some(ip.as_str())
    );
    let patch = json!({"spec": {"forProvider": {"networkBorderGroup": null}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_synced(&api, &name).await;

    // Associated by hand with an instance: the deletion waits and names it.
    let instance = ec2
        .run_instances()
        .image_id(AMI)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    let association = ec2
        .associate_address()
        .allocation_id(&id)
        .instance_id(&instance)
        .send()
        .await
        .unwrap()
        .association_id()
        .unwrap()
        .to_string();
    wait_for("status.atProvider.associationId", WAIT, || async {
        let o = api.get(&name).await.ok()?;
        let at = o.status?.at_provider?;
        (at.association_id.as_deref() == Some(association.as_str())).then_some(())
    })
    .await;
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    let (_, msg) = wait_message(&api, &name, "Ready", "False", |reason, m| {
        reason == "Deleting" && m.contains("associated with")
    })
    .await;
    assert!(msg.contains(&format!("instance {instance}")), "{msg}");
    assert!(msg.contains(&id), "{msg}");
    assert!(
        address(&ec2, &id).await.is_some(),
        "released while associated"
    );
    assert_eq!(scope.calls.operation_total("ReleaseAddress"), 0);

    // Disassociated: released, and gone from EC2.
    ec2.disassociate_address()
        .association_id(&association)
        .send()
        .await
        .unwrap();
    wait_gone(&api, &name).await;
    assert!(
        address(&ec2, &id).await.is_none(),
        "address {id} not released"
    );
    assert_eq!(scope.calls.operation_total("ReleaseAddress"), 1);
    ec2.terminate_instances()
        .instance_ids(&instance)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lost_allocation_is_adopted_not_allocated_again() {
    let mut scope = Scope::new("eip-crash").await;
    let api: Api<ElasticIp> = scope.api();
    let ec2 = support::ec2().await;
    create(&api, manifest(&scope, "ip", json!({}))).await;
    let owner = format!("{}/ip", scope.ns);
    let allocated = || owned(&ec2, &owner);
    assert_lost_create_adopted::<ElasticIp, _, _>(
        &mut scope,
        &["ip"],
        "AllocateAddress",
        allocated,
    )
    .await;
    api.delete("ip", &DeleteParams::default()).await.unwrap();
    wait_gone(&api, "ip").await;
    assert!(owned(&ec2, &owner).await.is_empty());
}

#[tokio::test]
async fn observing_fifty_addresses_costs_one_call_per_poll() {
    let _turn = crate::support::heavy().await;
    let mut scope = Scope::new("eip-batch").await;
    scope.start_controller(POLL);
    let tagged =
        |n: &str| to_value(manifest(&scope, n, json!({"tags": {"batch": "yes"}}))).unwrap();
    assert_idle_cost_of_fifty::<ElasticIp>(&scope, "DescribeAddresses", tagged).await;
}
