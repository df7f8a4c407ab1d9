//! Changed configuration reaches the pods: the config hash on the pod
//! templates of workloads a GitSync applies (src/gitsync/rollout.rs). The
//! test API server runs no workload controllers, so a roll shows as a new
//! `metadata.generation` of the Deployment.

use std::time::Duration;

use driftless::gitsync::rollout::{self, Connections, CONFIG_HASH, CONFIG_ROLLOUT};
use driftless::gitsync::{GitSync, REQUESTED_AT};
use driftless::manifests::{Manifest, Origin};
use driftless_aws::Bucket;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::gitsync::{new_gitsync, ready_at, rev, trigger, wait_gitsync, Repo};
use crate::support::{unique, wait_for, Scope};

const POLL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(90);

fn config_map(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

fn deployment(name: &str, annotations: Value, pod: Value) -> Value {
    let mut pod = pod;
    pod["containers"][0]["name"] = json!("app");
    pod["containers"][0]["image"] = json!("registry.example/app:v1");
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}})
}

/// JSON is YAML: each object its own file.
fn write(repo: &Repo, file: &str, v: &Value) {
    repo.write(
        &format!("clusters/test/{file}.yaml"),
        &serde_json::to_string_pretty(v).unwrap(),
    );
}

/// The Deployment's config hash (if any) and generation.
async fn hash_of(api: &Api<Deployment>, name: &str) -> (Option<String>, i64) {
    let d = api.get(name).await.unwrap();
    let hash = d
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .and_then(|a| a.get(CONFIG_HASH).cloned());
    (hash, d.metadata.generation.unwrap())
}

/// Asks for a sync and waits until that pass has finished (its status
/// records the request): a counter, not a sleep.
async fn sync_again(gitsyncs: &Api<GitSync>, name: &str) {
    trigger(gitsyncs, name).await;
    let asked = gitsyncs.get(name).await.unwrap().annotations()[REQUESTED_AT].clone();
    wait_gitsync(gitsyncs, name, "the requested pass", WAIT, |g| {
        g.status
            .as_ref()
            .and_then(|s| s.last_handled_requested_at.as_ref())
            == Some(&asked)
    })
    .await;
}

async fn commit_and_sync(repo: &Repo, gitsyncs: &Api<GitSync>, name: &str, msg: &str) {
    let sha = repo.commit(msg);
    trigger(gitsyncs, name).await;
    wait_gitsync(gitsyncs, name, msg, WAIT, |g| ready_at(g, &rev(&sha))).await;
}

/// A ConfigMap change in Git rolls the workload that uses it; a change to
/// one nothing uses does not; the opt-out is honoured; a hand edit of the
/// hash is put back; a re-apply of the same content changes nothing.
#[tokio::test]
async fn changed_config_rolls_the_workload() {
    let mut scope = Scope::new("rollout").await;
    scope.start_controller(POLL);
    let gitsyncs: Api<GitSync> = scope.api();
    let deployments: Api<Deployment> = scope.api();
    let name = "apps";
    let env_from = json!({"containers": [{"envFrom": [{"configMapRef": {"name": "web-config"}}]}]});
    let mounts = json!({"containers": [{}],
        "volumes": [{"name": "c", "configMap": {"name": "web-config"}}]});

    let repo = Repo::new();
    write(
        &repo,
        "web-config",
        &config_map("web-config", json!({"greeting": "hello"})),
    );
    write(
        &repo,
        "unrelated",
        &config_map("unrelated", json!({"x": "1"})),
    );
    write(&repo, "web", &deployment("web", json!({}), env_from));
    write(
        &repo,
        "opted-out",
        &deployment("opted-out", json!({CONFIG_ROLLOUT: "disabled"}), mounts),
    );
    // Uses only a ConfigMap this GitSync does not apply: nothing to hash.
    let elsewhere =
        json!({"containers": [{"envFrom": [{"configMapRef": {"name": "not-in-git"}}]}]});
    write(&repo, "plain", &deployment("plain", json!({}), elsewhere));
    let c1 = repo.commit("web and its config");
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync(name, &repo.url(), json!({})),
        )
        .await
        .unwrap();
    wait_gitsync(&gitsyncs, name, "Ready at c1", WAIT, |g| {
        ready_at(g, &rev(&c1))
    })
    .await;
    let (h1, g1) = hash_of(&deployments, "web").await;
    let h1 = h1.expect("web has a config hash");
    assert_eq!(hash_of(&deployments, "opted-out").await, (None, 1));
    assert_eq!(hash_of(&deployments, "plain").await, (None, 1));

    // An unrelated ConfigMap changes: web is not rolled.
    write(
        &repo,
        "unrelated",
        &config_map("unrelated", json!({"x": "2"})),
    );
    commit_and_sync(&repo, &gitsyncs, name, "unrelated change").await;
    assert_eq!(hash_of(&deployments, "web").await, (Some(h1.clone()), g1));

    // web's ConfigMap changes: web rolls, the opted-out one does not.
    write(
        &repo,
        "web-config",
        &config_map("web-config", json!({"greeting": "hi"})),
    );
    commit_and_sync(&repo, &gitsyncs, name, "web-config change").await;
    let (h2, g2) = hash_of(&deployments, "web").await;
    let h2 = h2.unwrap();
    assert_ne!(h2, h1);
    assert_eq!(g2, g1 + 1, "one new generation");
    assert_eq!(hash_of(&deployments, "opted-out").await, (None, 1));

    // A hand edit of the hash is put back (self-heal).
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {CONFIG_HASH: "edited"}}}}})),
        )
        .await
        .unwrap();
    let healed = wait_for("the hash put back", WAIT, || async {
        let (h, g) = hash_of(&deployments, "web").await;
        (h.as_deref() == Some(h2.as_str())).then_some(g)
    })
    .await;

    // Re-applies of unchanged content do not churn.
    sync_again(&gitsyncs, name).await;
    assert_eq!(hash_of(&deployments, "web").await, (Some(h2), healed));

    gitsyncs
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
}

/// A connection Secret driftless writes for a Bucket the same GitSync
/// applies rolls the app that reads it, when it appears (the real outcome:
/// LocalStack makes the bucket, the managed controller writes the Secret).
#[tokio::test]
async fn a_connection_secret_rolls_the_workload() {
    let mut scope = Scope::new("rollout-conn").await;
    scope.start_controller(POLL);
    let gitsyncs: Api<GitSync> = scope.api();
    let deployments: Api<Deployment> = scope.api();
    let secrets: Api<Secret> = scope.api();
    let name = "apps";
    let bucket = unique("dl-rollout");
    let conn = format!("{bucket}-conn");

    let repo = Repo::new();
    let bucket_v = json!({"apiVersion": "aws.driftless.dev/v1alpha1", "kind": "Bucket",
        "metadata": {"name": bucket},
        "spec": {"providerConfigRef": {"name": scope.provider_config},
            "writeConnectionSecretToRef": {"name": conn}, "forProvider": {}}});
    let web = deployment(
        "web",
        json!({}),
        json!({"containers": [{"envFrom": [{"secretRef": {"name": conn}}]}]}),
    );
    write(&repo, "bucket", &bucket_v);
    write(&repo, "web", &web);
    let c1 = repo.commit("a bucket and the app that reads it");
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync(name, &repo.url(), json!({})),
        )
        .await
        .unwrap();
    // Ready waits for the Bucket, whose status change (after the Secret is
    // written) triggers the GitSync pass that stamps its content.
    wait_gitsync(&gitsyncs, name, "Ready at c1", WAIT, |g| {
        ready_at(g, &rev(&c1))
    })
    .await;
    let written = secrets
        .get(&conn)
        .await
        .expect("the connection Secret is written");
    assert!(written.data.unwrap().contains_key("endpoint"));

    // What the hash was while the Secret did not exist yet, by the same function.
    let manifests: Vec<Manifest> = [bucket_v, web]
        .into_iter()
        .map(|v| Manifest::placed(Origin::at("x.yaml", 1, 1), v))
        .collect();
    let absent = Connections::from([((scope.ns.clone(), conn.clone()), None)]);
    let before = rollout::stamp(&manifests, &scope.ns, &absent)[1].value["spec"]["template"]
        ["metadata"]["annotations"][CONFIG_HASH]
        .as_str()
        .unwrap()
        .to_string();
    let (hash, generation) = wait_for("web rolled for the Secret", WAIT, || async {
        let (h, g) = hash_of(&deployments, "web").await;
        (g == 2).then_some((h, g))
    })
    .await;
    let hash = hash.unwrap();
    assert_ne!(hash, before, "the hash still says the Secret is absent");
    let now = rollout::connection_secrets(&scope.client, &manifests, &scope.ns)
        .await
        .unwrap();
    let expected = rollout::stamp(&manifests, &scope.ns, &now)[1].value["spec"]["template"]
        ["metadata"]["annotations"][CONFIG_HASH]
        .clone();
    assert_eq!(json!(hash), expected);

    // Further passes keep it.
    sync_again(&gitsyncs, name).await;
    assert_eq!(hash_of(&deployments, "web").await, (Some(hash), generation));

    // Clean up the bucket in LocalStack while the controller runs.
    gitsyncs
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let buckets: Api<Bucket> = scope.api();
    buckets
        .delete(&bucket, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the Bucket deleted", WAIT, || async {
        buckets
            .get_opt(&bucket)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}
