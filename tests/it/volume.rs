//! Volume and VolumeAttachment end to end: create, status, tag drift, online
//! growth, admission refusals (a shrink, a zone move), an attachment to an
//! Instance, deletion order (a volume waits for its attachment), a lost
//! create adopted, and the idle cost of observing many volumes.

use driftless_aws::{Instance, Subnet, Volume, VolumeAttachment, Vpc};
use driftless_provider::TAG_OWNER;
use kube::api::DeleteParams;
use kube::Api;
use serde_json::{json, Value};

use crate::ec2::{
    assert_idle_cost_of_fifty, assert_lost_create_adopted, assert_tag_drift_corrected, create,
    external_name, manifest, tag_map, wait_gone, wait_message, wait_synced,
};
use crate::support::{self, code_in, unless_not_found, wait_for, Scope};

const POLL: std::time::Duration = std::time::Duration::from_secs(2);
const WAIT: std::time::Duration = std::time::Duration::from_secs(90);
const AMI: &str = "ami-03cf127a";
const ZONE: &str = "us-east-1a";

/// The volume, `None` once EC2 says there is no such volume (or it is deleted).
async fn volume(ec2: &aws_sdk_ec2::Client, id: &str) -> Option<aws_sdk_ec2::types::Volume> {
    let result = ec2.describe_volumes().volume_ids(id).send().await;
    let out = unless_not_found(
        &format!("DescribeVolumes {id}"),
        result,
        code_in(&["InvalidVolume.NotFound"]),
    )?;
    out.volumes()
        .first()
        .filter(|v| v.state().map(|s| s.as_str()) != Some("deleted"))
        .cloned()
}

/// The volume ids carrying `owner`'s owner tag.
async fn owned(ec2: &aws_sdk_ec2::Client, owner: &str) -> Vec<String> {
    let f = aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{TAG_OWNER}"))
        .values(owner)
        .build();
    let out = ec2.describe_volumes().filters(f).send().await.unwrap();
    let mut ids: Vec<String> = out
        .volumes()
        .iter()
        .filter_map(|v| v.volume_id().map(String::from))
        .collect();
    ids.sort();
    ids
}

/// `kubectl patch` of `forProvider`; returns (accepted, stderr).
async fn kubectl_patch(scope: &Scope, resource: &str, name: &str, fp: Value) -> (bool, String) {
    let patch = json!({"spec": {"forProvider": fp}}).to_string();
    let args = [
        "patch", resource, name, "-n", &scope.ns, "--type", "merge", "-p", &patch,
    ];
    let (ok, _, err) = scope.kubectl(&args, None).await;
    (ok, err)
}

async fn set_for_provider(scope: &Scope, resource: &str, name: &str, fp: Value) {
    let (ok, err) = kubectl_patch(scope, resource, name, fp).await;
    assert!(ok, "patch {resource} {name}: {err}");
}

#[tokio::test]
async fn volume_lifecycle_drift_online_growth_and_refusals() {
    let mut scope = Scope::new("vol").await;
    scope.start_controller(POLL);
    let api: Api<Volume> = scope.api();
    let ec2 = support::ec2().await;
    let fp = json!({"availabilityZone": ZONE, "size": 2, "tags": {"team": "storage"}});
    create::<Volume>(&scope, manifest(&scope, "Volume", "disk", fp)).await;

    let ready = wait_synced(&api, "disk").await;
    let id = external_name(&ready);
    assert!(id.starts_with("vol-"), "{id}");
    let at = ready.status.unwrap().at_provider.unwrap();
    assert_eq!(at.volume_id.as_deref(), Some(id.as_str()));
    assert_eq!(at.state.as_deref(), Some("available"));
    assert_eq!((at.size, at.volume_type.as_deref()), (Some(2), Some("gp3")));
    assert_eq!(at.encrypted, Some(false));
    assert_eq!(at.attachments, Some(Vec::new()));
    // Tagged in the create call: the spec's tags and the owner tags.
    let v = volume(&ec2, &id).await.expect("the volume exists");
    assert_eq!(v.availability_zone(), Some(ZONE));
    let tags = tag_map(v.tags());
    assert_eq!(tags.get("team").map(String::as_str), Some("storage"));
    assert_eq!(tags.get(TAG_OWNER), Some(&format!("{}/disk", scope.ns)));
    assert_eq!(scope.calls.operation_total("CreateVolume"), 1);
    assert_eq!(scope.calls.operation_total("CreateTags"), 0);

    // Tag drift is put back: a changed tag and an added one.
    let tags = || async { Some(tag_map(volume(&ec2, &id).await?.tags())) };
    assert_tag_drift_corrected(&ec2, "Volume", &id, "storage", tags).await;

    // Grown online, with a new throughput: one ModifyVolume, seen in AWS
    // and in the status.
    set_for_provider(
        &scope,
        "volumes.aws.driftless.dev",
        "disk",
        json!({"size": 4, "throughput": 250}),
    )
    .await;
    wait_for("the volume grown in EC2", WAIT, || async {
        let v = volume(&ec2, &id).await?;
        (v.size() == Some(4) && v.throughput() == Some(250)).then_some(())
    })
    .await;
    wait_for("status.atProvider shows the new size", WAIT, || async {
        let at = api.get("disk").await.ok()?.status?.at_provider?;
        (at.size == Some(4) && at.throughput == Some(250)).then_some(())
    })
    .await;
    assert_eq!(scope.calls.operation_total("ModifyVolume"), 1);
    assert_eq!(scope.calls.operation_total("CreateVolume"), 1);

    // Refused at admission: a shrink, a move to another zone, and a
    // combination EBS does not offer.
    let vols = "volumes.aws.driftless.dev";
    let (ok, err) = kubectl_patch(&scope, vols, "disk", json!({"size": 3})).await;
    assert!(!ok, "a shrink was accepted");
    assert!(
        err.contains("size cannot decrease: an EBS volume can only grow"),
        "{err}"
    );
    let (ok, err) = kubectl_patch(
        &scope,
        vols,
        "disk",
        json!({"availabilityZone": "us-east-1b"}),
    )
    .await;
    assert!(
        !ok && err.contains("availabilityZone is immutable"),
        "{err}"
    );
    let (ok, err) = kubectl_patch(&scope, vols, "disk", json!({"volumeType": "gp2"})).await;
    assert!(
        !ok && err.contains("throughput can be set only for gp3 volumes"),
        "{err}"
    );
    let io1 = serde_json::to_string(&manifest(
        &scope,
        "Volume",
        "fast",
        json!({"availabilityZone": ZONE, "size": 10, "volumeType": "io1"}),
    ))
    .unwrap();
    let (ok, _, err) = scope.kubectl(&["create", "-f", "-"], Some(&io1)).await;
    assert!(
        !ok && err.contains("iops is required for io1 and io2 volumes"),
        "{err}"
    );
    assert_eq!(volume(&ec2, &id).await.unwrap().size(), Some(4));

    api.delete("disk", &DeleteParams::default()).await.unwrap();
    wait_gone(&api, "disk").await;
    assert!(volume(&ec2, &id).await.is_none(), "volume {id} not deleted");
    assert_eq!(scope.calls.operation_total("DeleteVolume"), 1);
}

/// A VPC, a subnet and an instance in it, Ready; returns the instance's id.
async fn instance_in_new_vpc(scope: &Scope) -> String {
    let b: u8 = rand::random();
    let cidr = format!("10.{b}.0.0/16");
    create::<Vpc>(
        scope,
        manifest(scope, "Vpc", "net", json!({"cidrBlock": cidr})),
    )
    .await;
    let subnet = json!({"vpcRef": {"name": "net"}, "cidrBlock": format!("10.{b}.1.0/24"), "availabilityZone": ZONE});
    create::<Subnet>(scope, manifest(scope, "Subnet", "a", subnet)).await;
    let vm = json!({"imageId": AMI, "instanceType": "t3.micro", "subnetRef": {"name": "a"}});
    create::<Instance>(scope, manifest(scope, "Instance", "vm", vm)).await;
    external_name(&wait_synced(&scope.api::<Instance>(), "vm").await)
}

#[tokio::test]
async fn an_attached_volume_waits_for_its_attachment_to_go() {
    let mut scope = Scope::new("vol-attach").await;
    scope.start_controller(POLL);
    let ec2 = support::ec2().await;
    let volumes: Api<Volume> = scope.api();
    let attachments: Api<VolumeAttachment> = scope.api();
    let fp = json!({"availabilityZone": ZONE, "size": 1});
    create::<Volume>(&scope, manifest(&scope, "Volume", "disk", fp)).await;
    let att =
        json!({"volumeRef": {"name": "disk"}, "instanceRef": {"name": "vm"}, "device": "/dev/sdf"});
    create::<VolumeAttachment>(&scope, manifest(&scope, "VolumeAttachment", "disk-vm", att)).await;
    let instance = instance_in_new_vpc(&scope).await;

    let a = wait_synced(&attachments, "disk-vm").await;
    let vol = external_name(&wait_synced(&volumes, "disk").await);
    assert_eq!(external_name(&a), format!("{vol}:{instance}"));
    let at = a.status.unwrap().at_provider.unwrap();
    assert_eq!(at.state.as_deref(), Some("attached"));
    assert_eq!(at.device.as_deref(), Some("/dev/sdf"));
    assert_eq!(
        (at.volume_id, at.instance_id),
        (Some(vol.clone()), Some(instance.clone()))
    );
    let v = volume(&ec2, &vol).await.unwrap();
    let on: Vec<_> = v
        .attachments()
        .iter()
        .map(|a| (a.instance_id(), a.device()))
        .collect();
    assert_eq!(on, [(Some(instance.as_str()), Some("/dev/sdf"))]);
    let want = format!("{instance} /dev/sdf (attached)");
    wait_for("the volume's status lists its attachment", WAIT, || async {
        let at = volumes.get("disk").await.ok()?.status?.at_provider?;
        (at.state.as_deref() == Some("in-use") && at.attachments? == [want.clone()]).then_some(())
    })
    .await;
    assert_eq!(scope.calls.operation_total("AttachVolume"), 1);
    let attach_kind = "volumeattachments.aws.driftless.dev";
    let (ok, err) = kubectl_patch(
        &scope,
        attach_kind,
        "disk-vm",
        json!({"device": "/dev/sdg"}),
    )
    .await;
    assert!(!ok && err.contains("device is immutable"), "{err}");

    // Attached: the volume's deletion waits and names the instance.
    volumes
        .delete("disk", &DeleteParams::default())
        .await
        .unwrap();
    let (_, msg) = wait_message(&volumes, "disk", "Ready", "False", |reason, m| {
        reason == "Deleting" && m.contains("attached to instance")
    })
    .await;
    assert!(msg.contains(&instance) && msg.contains(&vol), "{msg}");
    assert!(volume(&ec2, &vol).await.is_some(), "deleted while attached");
    assert_eq!(scope.calls.operation_total("DeleteVolume"), 0);

    // The attachment goes (detached), then the volume.
    attachments
        .delete("disk-vm", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&attachments, "disk-vm").await;
    assert_eq!(scope.calls.operation_total("DetachVolume"), 1);
    wait_gone(&volumes, "disk").await;
    assert!(
        volume(&ec2, &vol).await.is_none(),
        "volume {vol} not deleted"
    );

    let instances: Api<Instance> = scope.api();
    instances
        .delete("vm", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&instances, "vm").await;
    let subnets: Api<Subnet> = scope.api();
    subnets.delete("a", &DeleteParams::default()).await.unwrap();
    wait_gone(&subnets, "a").await;
    let vpcs: Api<Vpc> = scope.api();
    vpcs.delete("net", &DeleteParams::default()).await.unwrap();
    wait_gone(&vpcs, "net").await;
}

#[tokio::test]
async fn a_lost_volume_create_is_adopted_not_created_again() {
    let mut scope = Scope::new("vol-crash").await;
    let api: Api<Volume> = scope.api();
    let ec2 = support::ec2().await;
    let fp = json!({"availabilityZone": ZONE, "size": 1});
    create::<Volume>(&scope, manifest(&scope, "Volume", "disk", fp)).await;
    let owner = format!("{}/disk", scope.ns);
    let created = || owned(&ec2, &owner);
    assert_lost_create_adopted::<Volume, _, _>(&mut scope, &["disk"], "CreateVolume", created)
        .await;
    api.delete("disk", &DeleteParams::default()).await.unwrap();
    wait_gone(&api, "disk").await;
    assert!(owned(&ec2, &owner).await.is_empty());
}

#[tokio::test]
async fn observing_fifty_volumes_costs_one_call_per_poll() {
    let _turn = crate::support::heavy().await;
    let mut scope = Scope::new("vol-batch").await;
    scope.start_controller(POLL);
    let fp = json!({"availabilityZone": ZONE, "size": 1, "tags": {"batch": "yes"}});
    let volume = |n: &str| manifest(&scope, "Volume", n, fp.clone());
    assert_idle_cost_of_fifty::<Volume>(&scope, "DescribeVolumes", volume).await;
}

/// Push mode: the stack applied in reference order (the attachment after its
/// volume and instance), applied again unchanged (the attachment found by its
/// spec, having no tags), then pruned: the volume waits until terminating the
/// instance has detached it.
#[tokio::test]
async fn push_mode_orders_a_volume_attachment_and_prunes_it() {
    let stack = crate::support::unique("st-vol");
    let dir = tempfile::tempdir().unwrap();
    let b: u8 = rand::random();
    let doc = |kind: &str, name: &str, fp: Value| {
        let m = json!({"apiVersion": "aws.driftless.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": "infra"}, "spec": {"forProvider": fp}});
        serde_json::to_string(&m).unwrap()
    };
    let docs = [
        doc(
            "VolumeAttachment",
            "data-vm",
            json!({"volumeRef": {"name": "data"}, "instanceRef": {"name": "vm"}, "device": "/dev/sdf"}),
        ),
        doc(
            "Instance",
            "vm",
            json!({"imageId": AMI, "instanceType": "t3.micro", "subnetRef": {"name": "a"}}),
        ),
        doc(
            "Volume",
            "data",
            json!({"availabilityZone": ZONE, "size": 1}),
        ),
        doc(
            "Subnet",
            "a",
            json!({"vpcRef": {"name": "net"}, "cidrBlock": format!("10.{b}.1.0/24"), "availabilityZone": ZONE}),
        ),
        doc("Vpc", "net", json!({"cidrBlock": format!("10.{b}.0.0/16")})),
    ];
    std::fs::write(dir.path().join("stack.yaml"), docs.join("\n---\n")).unwrap();
    let path = dir.path().to_str().unwrap();
    let driftless = crate::push::driftless;

    let (code, out, err) = driftless(&["apply", path, "--stack", &stack]);
    assert_eq!(code, 0, "{out}{err}");
    // Progress lines, one per object as it finishes, go to stderr.
    let line = |what: &str| {
        let at = err.lines().position(|l| l.contains(what));
        at.unwrap_or_else(|| panic!("{what} missing from {err}"))
    };
    let attachment = line("VolumeAttachment infra/data-vm");
    assert!(
        attachment > line("Volume infra/data") && attachment > line("Instance infra/vm"),
        "{err}"
    );
    let ec2 = support::ec2().await;
    let owner = format!("stack/{stack}/infra/data");
    let vol = owned(&ec2, &owner).await;
    assert_eq!(vol.len(), 1, "{vol:?}");
    let v = volume(&ec2, &vol[0]).await.unwrap();
    assert_eq!(v.attachments().len(), 1, "{v:?}");
    assert_eq!(v.attachments()[0].device(), Some("/dev/sdf"));

    let (code, out, err) = driftless(&["apply", path, "--stack", &stack]);
    assert_eq!(code, 0, "{out}{err}");
    let unchanged =
        |l: &str| l.contains("VolumeAttachment infra/data-vm") && l.contains("unchanged");
    assert!(err.lines().any(unchanged), "{err}");
    assert!(
        out.contains("5 unchanged") && !err.contains("created"),
        "{out}{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let empty = empty.path().to_str().unwrap();
    let (code, out, err) = driftless(&["apply", empty, "--stack", &stack, "--prune"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        volume(&ec2, &vol[0]).await.is_none(),
        "volume {} not deleted",
        vol[0]
    );
    let (code, out, _) = driftless(&["get", "--stack", &stack]);
    assert_eq!(code, 0);
    assert!(!out.contains("infra/"), "{out}");
}
