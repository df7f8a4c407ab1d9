//! KeyPair end to end: an OpenSSH public key imported (never a private key
//! made), tag drift corrected, immutable changes refused, deleted; and the
//! cost of observing many key pairs while idle.

use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{KeyPairInfo, Tag};
use driftless_aws::{Instance, KeyPair};
use driftless_provider::{ManagedKind, TAG_OWNER};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use serde_json::{json, to_value, Value};

use crate::ec2::{assert_idle_cost_of_fifty, external_name, tag_map, wait_synced};
use crate::support::{self, wait_for, Scope};

const POLL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(90);
const AMI: &str = "ami-03cf127a";

/// A valid ed25519 public key, used where generating one is not worth it.
pub(crate) const FIXED_PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDzYZaiIMeMSeNCXGIks5zK/2ww94DzF72zDi25nPQNm fixed@test";

/// A fresh ed25519 public key from ssh-keygen (the fixed one without it).
fn public_key(comment: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&path)
        .status();
    match made {
        Ok(s) if s.success() => std::fs::read_to_string(path.with_extension("pub")).unwrap(),
        _ => FIXED_PUBLIC_KEY.to_string(),
    }
}

fn manifest(scope: &Scope, name: &str, for_provider: Value) -> KeyPair {
    serde_json::from_value(json!({
        "apiVersion": "aws.driftless.dev/v1alpha1",
        "kind": "KeyPair",
        "metadata": {"name": name, "namespace": scope.ns},
        "spec": {"forProvider": for_provider, "providerConfigRef": {"name": scope.provider_config},
                 "writeConnectionSecretToRef": {"name": format!("{name}-conn")}},
    }))
    .unwrap()
}

/// Waits until condition `type_` is `status` at the object's generation and
/// its message satisfies `ok`; returns the object and the message.
async fn wait_condition(
    api: &Api<KeyPair>,
    name: &str,
    type_: &str,
    status: &str,
    ok: impl Fn(&str) -> bool,
) -> (KeyPair, String) {
    wait_for(
        &format!("KeyPair {name} {type_}={status}"),
        WAIT,
        || async {
            let o = api.get(name).await.ok()?;
            let c = o.managed_status()?.condition(type_)?.clone();
            let current = c.observed_generation == o.meta().generation;
            (c.status == status && current && ok(&c.message)).then_some((o, c.message))
        },
    )
    .await
}

/// The key pair `id` as LocalStack lists it (it ignores KeyPairIds: filter here).
async fn key_pair(ec2: &aws_sdk_ec2::Client, id: &str) -> Option<KeyPairInfo> {
    let out = ec2
        .describe_key_pairs()
        .include_public_key(true)
        .send()
        .await
        .expect("DescribeKeyPairs");
    let found = out.key_pairs().iter().find(|k| k.key_pair_id() == Some(id));
    found.cloned()
}

#[tokio::test]
async fn key_pair_import_drift_immutable_and_delete() {
    let mut scope = Scope::new("keypair").await;
    scope.start_controller(POLL);
    let ec2 = support::ec2().await;
    let api: Api<KeyPair> = scope.api();
    let key = public_key("deploy@test");
    let spec = json!({"publicKeyMaterial": key, "tags": {"team": "ops"}});
    api.create(&PostParams::default(), &manifest(&scope, "deploy", spec))
        .await
        .unwrap();
    let ready = wait_synced(&api, "deploy").await;
    let id = external_name(&ready);
    assert!(id.starts_with("key-"), "external name {id}");
    let at = ready.status.unwrap().at_provider.unwrap();
    let name = format!("{}-deploy", scope.ns);
    assert_eq!(at.key_pair_id.as_deref(), Some(id.as_str()));
    assert_eq!(at.key_name.as_deref(), Some(name.as_str()));
    assert_eq!(at.key_type.as_deref(), Some("ed25519"));
    let fingerprint = at.key_fingerprint.clone().unwrap_or_default();
    assert!(!fingerprint.is_empty(), "no fingerprint: {at:?}");
    eprintln!("LocalStack's fingerprint of the imported ed25519 key: {fingerprint}");
    let secrets: Api<Secret> = scope.api();
    let conn = secrets.get("deploy-conn").await.expect("connection secret");
    let data = conn.data.unwrap_or_default();
    let text = |k: &str| String::from_utf8(data.get(k).expect(k).0.clone()).unwrap();
    assert_eq!(text("keyName"), name);
    assert_eq!(text("fingerprint"), fingerprint);

    // Imported, never created; tagged in the import call.
    let kp = key_pair(&ec2, &id).await.expect("the key pair exists");
    let blob = |k: &str| k.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(blob(kp.public_key().unwrap_or_default()), blob(&key));
    let tags = tag_map(kp.tags());
    assert_eq!(tags.get("team").map(String::as_str), Some("ops"));
    assert_eq!(tags.get(TAG_OWNER), Some(&format!("{}/deploy", scope.ns)));
    assert_eq!(scope.calls.operation_total("ImportKeyPair"), 1);
    assert_eq!(scope.calls.operation_total("CreateKeyPair"), 0);
    assert_eq!(scope.calls.operation_total("CreateTags"), 0);

    // Tag drift is put back.
    let hijack = Tag::builder().key("team").value("hijacked").build();
    ec2.create_tags()
        .resources(&id)
        .tags(hijack)
        .send()
        .await
        .unwrap();
    let at = Instant::now();
    wait_for("tag drift corrected", WAIT, || async {
        let tags = tag_map(key_pair(&ec2, &id).await?.tags());
        (tags.get("team").map(String::as_str) == Some("ops")).then_some(())
    })
    .await;
    eprintln!(
        "key pair tag drift corrected in {:?} (poll {POLL:?})",
        at.elapsed()
    );

    // Immutable: another name and another key are refused, terminal, and
    // nothing changes.
    let other = public_key("other@test");
    let patch =
        json!({"spec": {"forProvider": {"keyName": "renamed", "publicKeyMaterial": other}}});
    api.patch("deploy", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let (_, msg) = wait_condition(&api, "deploy", "Synced", "False", |m| {
        m.contains("keyName") && m.contains("publicKeyMaterial")
    })
    .await;
    for field in ["forProvider.keyName", "forProvider.publicKeyMaterial"] {
        assert!(msg.contains(&format!("{field} is immutable")), "{msg}");
    }
    assert!(
        msg.contains("ImmutableField") && msg.contains("nothing was changed"),
        "{msg}"
    );
    let kp = key_pair(&ec2, &id)
        .await
        .expect("the key pair is still there");
    assert_eq!(kp.key_name(), Some(name.as_str()));
    assert_eq!(blob(kp.public_key().unwrap_or_default()), blob(&key));
    for (op, n) in [
        ("ImportKeyPair", 1),
        ("DeleteKeyPair", 0),
        ("CreateKeyPair", 0),
    ] {
        assert_eq!(
            scope.calls.operation_total(op),
            n,
            "{op}: {:?}",
            scope.calls.snapshot()
        );
    }
    // Restoring the spec heals it.
    let patch = json!({"spec": {"forProvider": {"keyName": null, "publicKeyMaterial": key}}});
    api.patch("deploy", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_synced(&api, "deploy").await;

    // Not an OpenSSH public key: refused at admission, with the reason.
    let bad = format!(
        "apiVersion: aws.driftless.dev/v1alpha1\nkind: KeyPair\nmetadata: {{name: bad, namespace: {}}}\nspec:\n  forProvider: {{publicKeyMaterial: not-a-key}}\n",
        scope.ns
    );
    let (ok, _, err) = scope.kubectl(&["apply", "-f", "-"], Some(&bad)).await;
    assert!(
        !ok && err.contains("must be an OpenSSH public key"),
        "{err}"
    );

    api.delete("deploy", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("KeyPair deploy deleted", WAIT, || async {
        api.get_opt("deploy").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        key_pair(&ec2, &id).await.is_none(),
        "key pair {id} left behind"
    );
    assert_eq!(scope.calls.operation_total("DeleteKeyPair"), 1);
}

#[tokio::test]
async fn observing_fifty_key_pairs_costs_one_call_per_poll() {
    let _turn = crate::support::heavy().await;
    let mut scope = Scope::new("keypair-batch").await;
    scope.start_controller(POLL);
    let spec = |n: &str| json!({"publicKeyMaterial": public_key(n)});
    let imported = |n: &str| to_value(manifest(&scope, n, spec(n))).unwrap();
    assert_idle_cost_of_fifty::<KeyPair>(&scope, "DescribeKeyPairs", imported).await;
}

/// An Instance names its key pair by `keyPairRef`: it waits until the
/// KeyPair is Ready, then launches with the key pair's EC2 name (not its id).
#[tokio::test]
async fn an_instance_launches_with_the_key_pair_it_references() {
    let mut scope = Scope::new("keypair-ref").await;
    scope.start_controller(POLL);
    let ec2 = support::ec2().await;
    let (vpc, subnet) = crate::nat_gateway::network(&ec2).await;
    let instances: Api<Instance> = scope.api();
    let vm = crate::ec2::manifest(
        &scope,
        "Instance",
        "vm",
        json!({"imageId": AMI, "instanceType": "t3.micro", "subnetId": subnet, "keyPairRef": {"name": "login"}}),
    );
    crate::ec2::create::<Instance>(&scope, vm).await;
    let (_, why) =
        crate::ec2::wait_message::<Instance>(&instances, "vm", "Synced", "False", |_, m| {
            m.contains("keyName: KeyPair login does not exist")
        })
        .await;
    eprintln!("before the KeyPair exists: {why}");
    let keys: Api<KeyPair> = scope.api();
    let spec = json!({"publicKeyMaterial": FIXED_PUBLIC_KEY});
    keys.create(&PostParams::default(), &manifest(&scope, "login", spec))
        .await
        .unwrap();
    let vm = wait_synced(&instances, "vm").await;
    let id = external_name(&vm);
    let out = ec2
        .describe_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    let launched = out.reservations()[0].instances()[0]
        .key_name()
        .map(str::to_string);
    let name = format!("{}-login", scope.ns);
    assert_eq!(
        launched.as_deref(),
        Some(name.as_str()),
        "launched with the key pair's name"
    );
    let resolved = vm.status.unwrap().resolved_references;
    assert_eq!(resolved.get("keyName"), Some(&name), "{resolved:?}");
    instances
        .delete("vm", &DeleteParams::default())
        .await
        .unwrap();
    crate::ec2::wait_gone(&instances, "vm").await;
    keys.delete("login", &DeleteParams::default())
        .await
        .unwrap();
    crate::ec2::wait_gone(&keys, "login").await;
    ec2.delete_subnet().subnet_id(&subnet).send().await.unwrap();
    ec2.delete_vpc().vpc_id(&vpc).send().await.unwrap();
}
