//! Faults: the API server and etcd stop for 60 s (a cluster of this test's
//! own: the shared one serves the other tests) in the middle of a 100-VPC
//! converge and of a GitSync apply. Afterwards everything is Ready, each VPC
//! exists once, the revision is applied whole, and a drift made in the cloud
//! during the outage is corrected.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use driftless::gitsync::GitSync;
use driftless_aws::Vpc;
use driftless_provider::{ManagedKind, EXTERNAL_NAME};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::gitsync::{new_gitsync, ready_at, rev, trigger, wait_gitsync, Repo};
use crate::support::{
    controller_command, create_namespace_with_credentials, create_provider_config, env, unique,
    wait_for, OwnCluster, Owned,
};

const VPCS: usize = 100;
const CONFIGMAPS: usize = 100;
const OUTAGE: Duration = Duration::from_secs(60);

fn configmaps(version: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("clusters/test/cm-{i}.yaml"),
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\ndata: {{v: \"{version}\"}}\n"),
            )
        })
        .collect()
}

/// The VPCs of namespace `ns` in the cloud, by owner, with their ids.
async fn owned(ec2: &aws_sdk_ec2::Client, ns: &str) -> Vec<(String, String)> {
    crate::ops::owned_vpcs(ec2, ns).await
}

async fn ready_in_cloud(vpcs: &Api<Vpc>, ec2: &aws_sdk_ec2::Client, ns: &str) -> usize {
    let ids: BTreeSet<String> = owned(ec2, ns).await.into_iter().map(|(_, id)| id).collect();
    let Ok(list) = vpcs.list(&Default::default()).await else {
        return 0;
    };
    list.items
        .iter()
        .filter(|v| {
            let ready = v
                .managed_status()
                .and_then(|s| s.condition("Ready"))
                .is_some_and(|c| c.status == "True");
            ready
                && v.annotations()
                    .get(EXTERNAL_NAME)
                    .is_some_and(|id| ids.contains(id))
        })
        .count()
}

async fn has_drift_tag(ec2: &aws_sdk_ec2::Client, id: &str) -> bool {
    let out = ec2.describe_vpcs().vpc_ids(id).send().await.unwrap();
    out.vpcs()
        .iter()
        .flat_map(|v| v.tags())
        .any(|t| t.key() == Some("drift"))
}

#[tokio::test]
async fn an_api_server_outage_mid_converge_and_mid_apply_loses_nothing() {
    let _turn = crate::support::heavy().await;
    let port = OwnCluster::free_port();
    let cluster = OwnCluster::start(port);
    let client = cluster.client().await;
    crate::support::install_crds(&client).await;
    let ns = unique("outage");
    create_namespace_with_credentials(&client, &ns).await;
    let pc = format!("pc-{ns}");
    create_provider_config(&client, &pc, &env().aws_endpoint, &ns).await;

    let repo = Repo::new();
    for (path, text) in configmaps("a", CONFIGMAPS) {
        repo.write(&path, &text);
    }
    let first = repo.commit("a");
    let log = tempfile::NamedTempFile::new().unwrap();
    let _controller = controller_command(&ns)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args(["--allow-file-urls", "--poll-interval", "2s"])
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .map(Owned)
        .unwrap();
    let gitsyncs: Api<GitSync> = Api::namespaced(client.clone(), &ns);
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync("apps", &repo.url(), json!({})),
        )
        .await
        .unwrap();
    wait_gitsync(&gitsyncs, "apps", "Ready", Duration::from_secs(90), |g| {
        ready_at(g, &rev(&first))
    })
    .await;

    // The converge and the next revision are under way when the cluster stops.
    let manifests: String = (0..VPCS)
        .map(|i| crate::faults::vpc(&ns, &format!("v{i}"), &pc, 100 + i))
        .collect();
    cluster.kubectl(&["apply", "-f", "-"], &manifests);
    let vpcs: Api<Vpc> = Api::namespaced(client.clone(), &ns);
    let ec2 = crate::support::ec2().await;
    let at_stop = wait_for(
        "a quarter of the VPCs Ready",
        Duration::from_secs(120),
        || async {
            let n = ready_in_cloud(&vpcs, &ec2, &ns).await;
            (n >= VPCS / 4).then_some(n)
        },
    )
    .await;
    for (path, text) in configmaps("b", CONFIGMAPS + 20) {
        repo.write(&path, &text);
    }
    let second = repo.commit("b");
    trigger(&gitsyncs, "apps").await;
    cluster.stop();
    let stopped = Instant::now();

    // During the outage, a drift in the cloud: an extra tag on a Ready VPC.
    let drifted = owned(&ec2, &ns)
        .await
        .first()
        .map(|(_, id)| id.clone())
        .expect("a VPC");
    ec2.create_tags()
        .resources(&drifted)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("drift")
                .value("outage")
                .build(),
        )
        .send()
        .await
        .unwrap();
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    let down = stopped.elapsed();
    cluster.start_again();
    let back = Instant::now();
    eprintln!(
        "cluster (API server and etcd) down for {down:?}, from {at_stop} of {VPCS} VPCs Ready and revision b just triggered; started again with its data"
    );

    // Each outcome timed from the restart, all watched at once.
    let (mut converged, mut corrected, mut synced) = (None, None, None);
    let revision_b = rev(&second);
    while converged.is_none() || corrected.is_none() || synced.is_none() {
        assert!(
            back.elapsed() < Duration::from_secs(180),
            "after 180 s: VPCs {converged:?}, drift {corrected:?}, GitSync {synced:?}"
        );
        if converged.is_none() && ready_in_cloud(&vpcs, &ec2, &ns).await == VPCS {
            converged = Some(back.elapsed());
        }
        if corrected.is_none() && !has_drift_tag(&ec2, &drifted).await {
            corrected = Some(back.elapsed());
        }
        let at_b = gitsyncs
            .get("apps")
            .await
            .is_ok_and(|g| ready_at(&g, &revision_b));
        if synced.is_none() && at_b {
            synced = Some(back.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (converged, corrected, synced) = (converged.unwrap(), corrected.unwrap(), synced.unwrap());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let list = cms.list(&Default::default()).await.unwrap();
    let at_b = list
        .items
        .iter()
        .filter(|c| c.name_any().starts_with("cm-"))
        .filter(|c| c.data.as_ref().and_then(|d| d.get("v")).map(String::as_str) == Some("b"))
        .count();
    let owned_now = owned(&ec2, &ns).await;
    let owners: BTreeSet<&str> = owned_now.iter().map(|(o, _)| o.as_str()).collect();
    eprintln!(
        "after a {OUTAGE:?} outage: {VPCS} VPCs Ready {converged:?} after the restart ({} VPCs for {} owners); drift corrected {corrected:?} after; GitSync Ready at b {synced:?} after, {at_b} of {} ConfigMaps at b",
        owned_now.len(),
        owners.len(),
        CONFIGMAPS + 20
    );
    let logged = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert_eq!(
        (owned_now.len(), owners.len()),
        (VPCS, VPCS),
        "each VPC exactly once"
    );
    assert_eq!(
        at_b,
        CONFIGMAPS + 20,
        "the revision is applied whole\n{logged}"
    );
    // Generous bounds (2 shared cores); the figures are printed above.
    assert!(
        converged < Duration::from_secs(120),
        "converged {converged:?} after"
    );
    assert!(synced < Duration::from_secs(120), "synced {synced:?} after");
    assert!(
        corrected < Duration::from_secs(120),
        "drift corrected {corrected:?} after"
    );

    let names: Vec<String> = (0..VPCS).map(|i| format!("vpc/v{i}")).collect();
    let mut delete = vec!["delete", "-n", &ns, "--timeout=300s"];
    delete.extend(names.iter().map(String::as_str));
    cluster.kubectl(&delete, "");
    assert!(owned(&ec2, &ns).await.is_empty(), "VPCs left behind");
}
