//! examples/ as users run it: the staging overlay's network and bucket
//! brought up by push mode (`driftless apply`) and by a GitSync, then all of
//! it deleted at once, leaving nothing in the cloud.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use driftless::gitsync::GitSync;
use driftless_provider::{TAG_OWNER, TAG_STACK};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::gitsync::{new_gitsync, ready_at, rev, wait_gitsync, Repo};
use crate::push::driftless;
use crate::support::{self, ec2, repo_root, s3, unique, wait_for, Scope};

/// The whole network converging (a NAT gateway becoming available included).
const CONVERGE: Duration = Duration::from_secs(300);

/// Copies examples/ into `to`.
fn copy_examples(to: &Path) {
    let from = repo_root().join("examples");
    let out = std::process::Command::new("cp")
        .args(["-r", &format!("{}/.", from.display()), to.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "cp examples: {out:?}");
}

/// A kustomize patch renaming the one Bucket and its policy's resources (S3
/// names are global: each test run gets its own).
fn rename_bucket(bucket: &str) -> String {
    format!(
        "- target: {{group: aws.driftless.dev, kind: Bucket}}
  patch: |-
    - op: replace
      path: /metadata/name
      value: {bucket}
    - op: replace
      path: /spec/forProvider/policy/Statement/0/Resource
      value: [arn:aws:s3:::{bucket}, arn:aws:s3:::{bucket}/*]
"
    )
}

/// The EC2 resources (type, id) carrying a tag `key` whose value `matches`,
/// leaving out those that are only listed after their deletion (terminated
/// instances, deleted NAT gateways).
async fn live_tagged(key: &str, matches: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let ec2 = ec2().await;
    let tags: Vec<_> = ec2
        .describe_tags()
        .filters(Filter::builder().name("key").values(key).build())
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await;
    let mut live = Vec::new();
    for tag in tags {
        let tag = tag.expect("DescribeTags");
        if !matches(tag.value().unwrap_or_default()) {
            continue;
        }
        let (kind, id) = (
            tag.resource_type().map(|t| t.as_str().to_string()),
            tag.resource_id().unwrap_or_default().to_string(),
        );
        // LocalStack's names for AWS's `natgateway` and `elastic-ip`.
        let kind = match kind.unwrap_or_default().as_str() {
            "nat-gateway" => "natgateway".to_string(),
            "vpc-elastic-ip" => "elastic-ip".to_string(),
            other => other.to_string(),
        };
        if !gone(&ec2, &kind, &id).await {
            live.push((kind, id));
        }
    }
    live.sort();
    live.dedup();
    live
}

/// Listed after deletion: a terminated instance, a deleted NAT gateway.
async fn gone(ec2: &aws_sdk_ec2::Client, kind: &str, id: &str) -> bool {
    match kind {
        "instance" => {
            let out = ec2.describe_instances().instance_ids(id).send().await;
            out.ok().is_none_or(|o| {
                o.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .all(|i| {
                        i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("terminated")
                    })
            })
        }
        "natgateway" => {
            let out = ec2.describe_nat_gateways().nat_gateway_ids(id).send().await;
            out.ok().is_none_or(|o| {
                o.nat_gateways()
                    .iter()
                    .all(|n| n.state().map(|s| s.as_str()) == Some("deleted"))
            })
        }
        // LocalStack keeps the tags of deleted resources in DescribeTags
        // (AWS drops them): ask each kind whether the id still exists.
        "vpc" => is_not_found(ec2.describe_vpcs().vpc_ids(id).send().await),
        "subnet" => is_not_found(ec2.describe_subnets().subnet_ids(id).send().await),
        "route-table" => is_not_found(ec2.describe_route_tables().route_table_ids(id).send().await),
        "internet-gateway" => is_not_found(
            ec2.describe_internet_gateways()
                .internet_gateway_ids(id)
                .send()
                .await,
        ),
        "security-group" => is_not_found(ec2.describe_security_groups().group_ids(id).send().await),
        "elastic-ip" => is_not_found(ec2.describe_addresses().allocation_ids(id).send().await),
        _ => false,
    }
}

/// Whether a describe-by-id call said the id does not exist.
fn is_not_found<T, E: aws_sdk_ec2::error::ProvideErrorMetadata, R>(
    result: Result<T, aws_sdk_ec2::error::SdkError<E, R>>,
) -> bool {
    use aws_sdk_ec2::error::ProvideErrorMetadata as _;
    let code = result.err().and_then(|e| e.code().map(str::to_string));
    code.is_some_and(|c| c.ends_with(".NotFound"))
}

async fn bucket_exists(name: &str) -> bool {
    s3().await.head_bucket().bucket(name).send().await.is_ok()
}

/// What the example network must have in the cloud once converged: routes
/// to the internet gateway and the NAT gateway, and the bucket's policy and
/// lifecycle rules.
async fn assert_network_routes(owned: &[(String, String)], bucket: &str) {
    let count = |kind: &str| owned.iter().filter(|(k, _)| k == kind).count();
    assert_eq!(count("vpc"), 1, "{owned:?}");
    assert_eq!(count("subnet"), 4, "two public, two private: {owned:?}");
    assert_eq!(count("natgateway"), 1, "{owned:?}");
    assert_eq!(count("elastic-ip"), 1, "{owned:?}");
    assert_eq!(count("internet-gateway"), 1, "{owned:?}");
    assert_eq!(count("instance"), 1, "{owned:?}");
    let tables: Vec<&str> = owned
        .iter()
        .filter(|(k, _)| k == "route-table")
        .map(|(_, id)| id.as_str())
        .collect();
    assert_eq!(tables.len(), 2, "public and private tables: {owned:?}");
    let ec2 = ec2().await;
    let out = ec2
        .describe_route_tables()
        .set_route_table_ids(Some(tables.iter().map(|t| t.to_string()).collect()))
        .send()
        .await
        .unwrap();
    let default_route_targets: Vec<String> = out
        .route_tables()
        .iter()
        .flat_map(|t| t.routes())
        .filter(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
        .map(|r| {
            r.gateway_id()
                .or(r.nat_gateway_id())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(
        default_route_targets.iter().any(|t| t.starts_with("igw-"))
            && default_route_targets.iter().any(|t| t.starts_with("nat-")),
        "0.0.0.0/0 through the internet gateway and through the NAT gateway: {default_route_targets:?}"
    );
    let associated: usize = out
        .route_tables()
        .iter()
        .map(|t| {
            t.associations()
                .iter()
                .filter(|a| a.subnet_id().is_some())
                .count()
        })
        .sum();
    assert_eq!(associated, 4, "every subnet routed: {out:?}");
    let s3 = s3().await;
    let policy = s3.get_bucket_policy().bucket(bucket).send().await;
    assert!(policy.is_ok(), "the bucket has its policy: {policy:?}");
    let rules = s3
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
        .expect("the bucket has lifecycle rules");
    assert!(!rules.rules().is_empty());
}

#[tokio::test]
async fn the_example_network_is_applied_by_push_mode_and_pruned() {
    let _turn = crate::support::heavy().await;
    support::tool("kustomize");
    let stack = unique("examples");
    let bucket = unique("driftless-examples-push");
    let dir = tempfile::tempdir().unwrap();
    copy_examples(dir.path());
    let overlay = dir.path().join("test");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "resources: [../staging]\npatches:\n{}",
            rename_bucket(&bucket)
        ),
    )
    .unwrap();

    let started = Instant::now();
    let path = overlay.to_str().unwrap();
    let (code, out, err) = driftless(&["apply", path, "--stack", &stack]);
    assert_eq!(code, 0, "apply the staging overlay:\n{out}\n{err}");
    eprintln!(
        "push mode: the example network converged in {:?}",
        started.elapsed()
    );
    let owned = live_tagged(TAG_STACK, |v| v == stack).await;
    assert_network_routes(&owned, &bucket).await;
    assert!(bucket_exists(&bucket).await);
    let (code, out, _) = driftless(&["plan", path, "--stack", &stack]);
    assert_eq!(code, 0, "applied again, nothing to change: {out}");

    let empty = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (code, out, err) = driftless(&[
        "apply",
        empty.path().to_str().unwrap(),
        "--stack",
        &stack,
        "--prune",
    ]);
    assert_eq!(code, 0, "prune everything:\n{out}\n{err}");
    eprintln!(
        "push mode: the example network deleted in {:?}",
        started.elapsed()
    );
    let left = live_tagged(TAG_STACK, |v| v == stack).await;
    assert!(left.is_empty(), "nothing left in EC2: {left:?}");
    assert!(!bucket_exists(&bucket).await, "bucket {bucket} deleted");
}

#[tokio::test]
async fn the_example_network_is_synced_from_git_and_deleted_at_once() {
    let _turn = crate::support::heavy().await;
    support::tool("kustomize");
    let mut scope = Scope::new("examples").await;
    scope.start_controller(Duration::from_secs(5));
    let bucket = unique("driftless-examples-git");
    let repo = Repo::new();
    copy_examples(&repo.work_dir());
    // The infrastructure half of the base, into this test's namespace,
    // through its ProviderConfig instead of the examples' `default`.
    let ns = &scope.ns;
    let pc = &scope.provider_config;
    repo.write(
        "clusters/test/kustomization.yaml",
        &format!(
            "resources: [../../base/infra]
namespace: {ns}
patches:
- patch: |-
    apiVersion: driftless.dev/v1alpha1
    kind: ProviderConfig
    metadata: {{name: default}}
    $patch: delete
- target: {{group: aws.driftless.dev}}
  patch: |-
    - op: add
      path: /spec/providerConfigRef
      value: {{name: {pc}}}
{}",
            rename_bucket(&bucket)
        ),
    );
    let sha = repo.commit("the example network");
    let gitsyncs: Api<GitSync> = scope.api();
    let gs = new_gitsync("infra", &repo.url(), json!({}));
    gitsyncs.create(&PostParams::default(), &gs).await.unwrap();
    let started = Instant::now();
    wait_gitsync(&gitsyncs, "infra", "applied", CONVERGE, |g| {
        ready_at(g, &rev(&sha))
    })
    .await;
    let timeout = format!("--timeout={}s", CONVERGE.as_secs());
    let (ok, out, err) = scope
        .kubectl(
            &[
                "wait",
                "-n",
                ns,
                "--for=condition=Ready",
                &timeout,
                "managed",
                "--all",
            ],
            None,
        )
        .await;
    assert!(ok, "every managed resource Ready:\n{out}\n{err}");
    eprintln!(
        "GitSync: the example network Ready {:?} after the GitSync was created",
        started.elapsed()
    );
    let prefix = format!("{ns}/");
    let owned = live_tagged(TAG_OWNER, |v| v.starts_with(&prefix)).await;
    assert_network_routes(&owned, &bucket).await;

    // Deleted at once: the GitSync first (it would put them back), then
    // every managed resource in one call; each waits for what depends on it.
    gitsyncs
        .delete("infra", &DeleteParams::default())
        .await
        .unwrap();
    let started = Instant::now();
    let (ok, out, err) = scope
        .kubectl(
            &["delete", "-n", ns, "managed", "--all", "--wait=false"],
            None,
        )
        .await;
    assert!(ok, "delete everything:\n{out}\n{err}");
    wait_for("every managed resource gone", CONVERGE, || async {
        let (ok, out, _) = scope
            .kubectl(&["get", "-n", ns, "managed", "-o", "name"], None)
            .await;
        (ok && out.trim().is_empty()).then_some(())
    })
    .await;
    eprintln!(
        "GitSync: the example network deleted in {:?}",
        started.elapsed()
    );
    let left = live_tagged(TAG_OWNER, |v| v.starts_with(&prefix)).await;
    assert!(left.is_empty(), "nothing left in EC2: {left:?}");
    assert!(!bucket_exists(&bucket).await, "bucket {bucket} deleted");
}
