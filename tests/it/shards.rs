//! `--shard`: a controller reconciles only the managed resources and
//! GitSyncs labelled `driftless.dev/shard=<its shard>`; the one started
//! without `--shard` only those without the label (Flux's model).

use std::time::Duration;

use driftless::gitsync::GitSync;
use driftless_aws::Vpc;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::ec2::{cidr16, create, manifest, wait_ready};
use crate::gitsync::{new_gitsync, ready_at, rev, wait_gitsync, Repo};
use crate::support::Scope;

const POLL: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(90);

fn labelled(mut m: Value, shard: Option<&str>) -> Value {
    if let Some(shard) = shard {
        m["metadata"]["labels"] = json!({"driftless.dev/shard": shard});
    }
    m
}

async fn gitsync(api: &Api<GitSync>, name: &str, url: &str, shard: Option<&str>) {
    let mut gs = new_gitsync(name, url, json!({}));
    if let Some(shard) = shard {
        gs.labels_mut()
            .insert("driftless.dev/shard".into(), shard.into());
    }
    api.create(&PostParams::default(), &gs).await.unwrap();
}

#[tokio::test]
async fn each_shard_reconciles_only_its_own_objects() {
    let mut scope = Scope::new("shards").await;
    let ns = scope.ns.clone();
    let vpcs: Api<Vpc> = scope.api();
    let gitsyncs: Api<GitSync> = scope.api();
    let (mine, theirs) = (cidr16().0, cidr16().0);
    let vpc = |name, cidr: &str, shard| {
        labelled(
            manifest(&scope, "Vpc", name, json!({"cidrBlock": cidr})),
            shard,
        )
    };
    create::<Vpc>(&scope, vpc("in-a", &mine, Some("a"))).await;
    create::<Vpc>(&scope, vpc("unlabelled", &theirs, None)).await;
    let repo = Repo::new();
    repo.write(
        "clusters/test/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {a: b}\n",
    );
    let c1 = repo.commit("app");
    gitsync(&gitsyncs, "in-a", &repo.url(), Some("a")).await;
    gitsync(&gitsyncs, "unlabelled", &repo.url(), None).await;

    // Shard a: its Vpc and GitSync, polled again and again; the others never.
    scope.start_controller_with(POLL, |s| s.shard = Some("a".into()));
    wait_ready(&vpcs, "in-a").await;
    wait_gitsync(&gitsyncs, "in-a", "Ready at c1", WAIT, |g| {
        ready_at(g, &rev(&c1))
    })
    .await;
    let passes = scope.passes.clone();
    passes
        .wait_until("Vpc", &ns, "in-a", 4, WAIT)
        .await
        .expect("shard a polls its Vpc");
    assert_eq!(passes.count("Vpc", &ns, "unlabelled"), 0);
    assert_eq!(passes.count("GitSync", &ns, "unlabelled"), 0);
    let untouched = vpcs.get("unlabelled").await.unwrap();
    assert!(untouched.finalizers().is_empty() && untouched.status.is_none());
    assert!(gitsyncs.get("unlabelled").await.unwrap().status.is_none());

    // The controller without --shard: the unlabelled ones, not shard a's.
    scope.stop_controller();
    scope.start_controller(POLL);
    wait_ready(&vpcs, "unlabelled").await;
    // Counted once the new controller works: shard a's last pass is over.
    let in_a = passes.count("Vpc", &ns, "in-a");
    wait_gitsync(&gitsyncs, "unlabelled", "Ready at c1", WAIT, |g| {
        ready_at(g, &rev(&c1))
    })
    .await;
    let seen = passes.count("Vpc", &ns, "unlabelled");
    passes
        .wait_until("Vpc", &ns, "unlabelled", seen + 3, WAIT)
        .await
        .expect("the unsharded controller polls the unlabelled Vpc");
    assert_eq!(
        passes.count("Vpc", &ns, "in-a"),
        in_a,
        "shard a's Vpc was reconciled"
    );
}

/// `deploy/shards` runs the base controller once per shard: each shard's
/// Deployment is the base one but for its name, its labels and `--shard`.
#[test]
fn the_shards_overlay_is_the_base_controller_once_per_shard() {
    let out = std::process::Command::new(crate::support::tool("kustomize"))
        .args(["build", "deploy/shards"])
        .current_dir(crate::support::repo_root())
        .output()
        .expect("kustomize runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let deployments: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Deployment").collect();
    let base = deployments
        .iter()
        .find(|d| d["metadata"]["name"] == "driftless")
        .expect("the base controller");
    let mut shards = Vec::new();
    for d in deployments
        .iter()
        .filter(|d| d["metadata"]["name"] != "driftless")
    {
        let name = d["metadata"]["name"].as_str().unwrap();
        let shard = name
            .strip_prefix("driftless-shard-")
            .expect("driftless-shard-<shard>");
        let labels =
            json!({"app.kubernetes.io/name": "driftless-shard", "driftless.dev/shard": shard});
        let mut expected = (*base).clone();
        expected["metadata"]["name"] = json!(name);
        expected["metadata"]["labels"] = labels.clone();
        expected["spec"]["selector"]["matchLabels"] = labels.clone();
        expected["spec"]["template"]["metadata"]["labels"] = labels;
        let args = expected["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array_mut()
            .unwrap();
        args.push(json!(format!("--shard={shard}")));
        assert_eq!(*d, &expected, "{name} differs from the base Deployment");
        shards.push(shard.to_string());
    }
    assert_eq!(shards, ["a", "b"]);
}
