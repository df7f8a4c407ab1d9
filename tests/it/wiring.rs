//! The test environment itself works: CRDs, status, watch, kubectl printer
//! columns, and the AWS SDKs against LocalStack.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{conditions, wait::await_condition, watcher, WatchStreamExt};
use kube::{Api, CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::support::{self, unique};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "wiring.test.driftless.dev",
    version = "v1",
    kind = "Gadget",
    namespaced,
    status = "GadgetStatus",
    printcolumn = r#"{"name":"COLOR","type":"string","jsonPath":".spec.color"}"#,
    printcolumn = r#"{"name":"PHASE","type":"string","jsonPath":".status.phase"}"#
)]
pub struct GadgetSpec {
    color: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
pub struct GadgetStatus {
    phase: String,
}

#[tokio::test]
async fn crd_status_watch_and_printer_columns() {
    let scope = support::Scope::new("wiring").await;
    let crds: Api<CustomResourceDefinition> = Api::all(scope.client.clone());
    let crd = Gadget::crd();
    let crd_name = crd.metadata.name.clone().unwrap();
    crds.patch(
        &crd_name,
        &PatchParams::apply("driftless-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds.clone(), &crd_name, conditions::is_crd_established()),
    )
    .await
    .expect("CRD established within 30 s")
    .unwrap();

    let gadgets: Api<Gadget> = scope.api();
    let mut events = watcher(gadgets.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    gadgets
        .create(
            &PostParams::default(),
            &Gadget::new(
                "g1",
                GadgetSpec {
                    color: "teal".into(),
                },
            ),
        )
        .await
        .unwrap();
    gadgets
        .patch_status(
            "g1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Shiny"}})),
        )
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = events.next().await {
            let g = ev.unwrap();
            if g.status.as_ref().map(|s| s.phase.as_str()) == Some("Shiny") {
                return g;
            }
        }
        panic!("watch ended")
    })
    .await
    .expect("the watcher sees the status change");
    assert_eq!(seen.spec.color, "teal");

    let (ok, out, err) = scope
        .kubectl(&["get", "gadgets", "-n", &scope.ns], None)
        .await;
    assert!(ok, "kubectl get failed: {err}");
    let header = out.lines().next().unwrap_or_default();
    for col in ["NAME", "COLOR", "PHASE"] {
        assert!(header.contains(col), "column {col} missing in:\n{out}");
    }
    assert!(
        out.contains("g1") && out.contains("teal") && out.contains("Shiny"),
        "{out}"
    );
}

#[tokio::test]
async fn aws_sdks_reach_localstack() {
    let s3 = support::s3().await;
    let bucket = unique("wiring");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let listed = s3.list_buckets().send().await.unwrap();
    assert!(listed
        .buckets()
        .iter()
        .any(|b| b.name() == Some(bucket.as_str())));
    s3.delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("delete bucket");
    let gone = s3.head_bucket().bucket(&bucket).send().await;
    assert!(gone.is_err(), "bucket still exists after delete");

    let ec2 = support::ec2().await;
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.42.0.0/16")
        .send()
        .await
        .expect("create VPC");
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_string();
    let described = ec2.describe_vpcs().vpc_ids(&vpc_id).send().await.unwrap();
    assert_eq!(described.vpcs().len(), 1);
    assert_eq!(described.vpcs()[0].cidr_block(), Some("10.42.0.0/16"));
    ec2.delete_vpc()
        .vpc_id(&vpc_id)
        .send()
        .await
        .expect("delete VPC");
    let after = ec2.describe_vpcs().vpc_ids(&vpc_id).send().await;
    assert!(
        after.map(|o| o.vpcs().is_empty()).unwrap_or(true),
        "VPC {vpc_id} still listed after delete"
    );
}
