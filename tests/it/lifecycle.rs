//! GitSync lifecycle: what deleting a GitSync does to what it applied
//! (with and without prune), and `status.history`.

use std::time::Duration;

use driftless::gitsync::GitSync;
use driftless_aws::Bucket;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::gitsync::{
    bucket_yaml, condition, event_notes, new_gitsync, provider_config_yaml, ready_at, rev, trigger,
    wait_gitsync, Repo,
};
use crate::support::{self, unique, wait_for, Scope};

const POLL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(90);
const FINALIZER: &str = "driftless.dev/finalizer";
const OWNER_LABEL: &str = "driftless.dev/gitsync-name";

fn config_map_yaml(name: &str, value: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\ndata: {{value: \"{value}\"}}\n"
    )
}

/// A repository with a ProviderConfig, a Bucket, a ConfigMap `app` and a
/// ConfigMap `keep` annotated `driftless.dev/prune: disabled`.
fn infra_repo(scope: &Scope, pc: &str, bucket: &str) -> (Repo, String) {
    let repo = Repo::new();
    repo.write(
        "clusters/test/provider-config.yaml",
        &provider_config_yaml(pc, &scope.ns),
    );
    repo.write("clusters/test/bucket.yaml", &bucket_yaml(bucket, pc, "v1"));
    repo.write("clusters/test/app.yaml", &config_map_yaml("app", "a", ""));
    repo.write(
        "clusters/test/keep.yaml",
        &config_map_yaml("keep", "k", "driftless.dev/prune: disabled"),
    );
    let c1 = repo.commit("infra and app");
    (repo, c1)
}

async fn wait_gone(api: &Api<GitSync>, name: &str) {
    wait_for(&format!("GitSync {name} gone"), WAIT, || async {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

fn ready_message(gs: &GitSync) -> String {
    condition(gs, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

async fn bucket_exists(s3: &aws_sdk_s3::Client, name: &str) -> bool {
    let result = s3.head_bucket().bucket(name).send().await;
    support::unless_not_found(&format!("HeadBucket {name}"), result, |e| {
        e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
    })
    .is_some()
}

/// prune: true. Deleting the GitSync deletes its inventory, Rest stage
/// first (the Bucket, then its ProviderConfig), says what it waits on (a
/// Bucket S3 refuses to delete, with the Bucket's own reason), keeps the
/// opted-out ConfigMap without the owner labels, and goes once all is gone.
#[tokio::test]
async fn deleting_a_gitsync_deletes_what_it_applied() {
    let mut scope = Scope::new("gs-delete").await;
    scope.start_controller(POLL);
    let s3 = support::s3().await;
    let gitsyncs: Api<GitSync> = scope.api();
    let config_maps: Api<ConfigMap> = scope.api();
    let buckets: Api<Bucket> = scope.api();
    let (bucket, pc) = (unique("dl-gs-delete"), unique("pc-gs-delete"));
    let (repo, c1) = infra_repo(&scope, &pc, &bucket);
    let name = "infra";
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync(name, &repo.url(), json!({})),
        )
        .await
        .unwrap();
    let gs = wait_gitsync(&gitsyncs, name, "Ready at c1", WAIT, |g| {
        ready_at(g, &rev(&c1))
    })
    .await;
    assert!(gs.finalizers().contains(&FINALIZER.to_string()));
    assert!(bucket_exists(&s3, &bucket).await);

    // An object in the bucket: S3 refuses to delete it, the Bucket waits.
    s3.put_object()
        .bucket(&bucket)
        .key("blocker")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    gitsyncs
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let gs = wait_gitsync(&gitsyncs, name, "waiting for the Bucket", WAIT, |g| {
        let m = ready_message(g);
        m.contains("is not empty") && condition(g, "Ready").unwrap().reason == "Deleting"
    })
    .await;
    let message = ready_message(&gs);
    eprintln!("waiting message: {message}");
    assert!(
        message.contains("waiting for 2 objects (1 Bucket, 1 ProviderConfig)"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "Bucket {}/{bucket} (Ready=False: bucket {bucket} is not empty",
            scope.ns
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "ProviderConfig {pc} (deleted once the objects before it are gone)"
        )),
        "{message}"
    );
    let inventory: Vec<String> = gs
        .status
        .unwrap()
        .inventory
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        inventory,
        vec![
            format!("Bucket {}/{bucket}", scope.ns),
            format!("ProviderConfig {pc}")
        ]
    );
    assert!(config_maps.get_opt("app").await.unwrap().is_none());
    let keep = config_maps.get("keep").await.unwrap();
    assert!(
        !keep.labels().contains_key(OWNER_LABEL),
        "{:?}",
        keep.labels()
    );

    // Emptied, the bucket goes, then the ProviderConfig, then the GitSync.
    s3.delete_object()
        .bucket(&bucket)
        .key("blocker")
        .send()
        .await
        .unwrap();
    wait_gone(&gitsyncs, name).await;
    assert!(
        !bucket_exists(&s3, &bucket).await,
        "bucket {bucket} is still in S3"
    );
    assert!(buckets.get_opt(&bucket).await.unwrap().is_none());
    let pcs: Api<driftless_aws::ProviderConfig> = Api::all(scope.client.clone());
    assert!(pcs.get_opt(&pc).await.unwrap().is_none());
    let deleted = event_notes(&scope, name, "Deleted").await;
    assert!(
        deleted
            .iter()
            .any(|n| n.contains("deleted its inventory: 2 objects")),
        "{deleted:?}"
    );
}

/// prune: false. Deleting the GitSync keeps everything (the bucket stays
/// in S3), without the owner labels. A GitSync that never fetched goes at once.
#[tokio::test]
async fn deleting_a_gitsync_without_prune_orphans_what_it_applied() {
    let mut scope = Scope::new("gs-orphan").await;
    scope.start_controller(POLL);
    let s3 = support::s3().await;
    let gitsyncs: Api<GitSync> = scope.api();
    let config_maps: Api<ConfigMap> = scope.api();
    let buckets: Api<Bucket> = scope.api();
    let (bucket, pc) = (unique("dl-gs-orphan"), unique("pc-gs-orphan"));
    let (repo, c1) = infra_repo(&scope, &pc, &bucket);
    let name = "infra";
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync(name, &repo.url(), json!({"prune": false})),
        )
        .await
        .unwrap();
    wait_gitsync(&gitsyncs, name, "Ready at c1", WAIT, |g| {
        ready_at(g, &rev(&c1))
    })
    .await;
    gitsyncs
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&gitsyncs, name).await;
    assert!(bucket_exists(&s3, &bucket).await);
    let b = buckets.get(&bucket).await.unwrap();
    assert!(!b.labels().contains_key(OWNER_LABEL), "{:?}", b.labels());
    for cm in ["app", "keep"] {
        let cm = config_maps.get(cm).await.unwrap();
        assert!(!cm.labels().contains_key(OWNER_LABEL), "{:?}", cm.labels());
    }
    let pcs: Api<driftless_aws::ProviderConfig> = Api::all(scope.client.clone());
    let p = pcs.get(&pc).await.unwrap();
    assert!(!p.labels().contains_key(OWNER_LABEL), "{:?}", p.labels());
    let orphaned = event_notes(&scope, name, "Orphaned").await;
    assert!(
        orphaned
            .iter()
            .any(|n| n.contains("spec.prune is false") && n.contains("4 objects")),
        "{orphaned:?}"
    );

    // Never fetched, nothing applied: it goes at once.
    let never = "never-fetched";
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync(never, "file:///nonexistent/repo.git", json!({})),
        )
        .await
        .unwrap();
    wait_gitsync(&gitsyncs, never, "FetchFailed", WAIT, |g| {
        condition(g, "Ready").is_some_and(|c| c.reason == "FetchFailed")
            && g.finalizers().contains(&FINALIZER.to_string())
    })
    .await;
    gitsyncs
        .delete(never, &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&gitsyncs, never).await;

    // Clean up the cloud: the Bucket is no longer any GitSync's.
    buckets
        .delete(&bucket, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the orphaned Bucket deleted", WAIT, || async {
        buckets
            .get_opt(&bucket)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    pcs.delete(&pc, &DeleteParams::default()).await.unwrap();
}

/// `status.history` after three revisions, newest first, with the change
/// set of each; the Applied Event carries the last one; at most 10 kept.
#[tokio::test]
async fn history_records_each_applied_revision() {
    let mut scope = Scope::new("gs-history").await;
    scope.start_controller(POLL);
    let gitsyncs: Api<GitSync> = scope.api();
    let repo = Repo::new();
    repo.write("clusters/test/a.yaml", &config_map_yaml("a", "1", ""));
    repo.write("clusters/test/b.yaml", &config_map_yaml("b", "1", ""));
    let c1 = repo.commit("a and b");
    let name = "apps";
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
    // c2: a changes, b stays, c is new.
    repo.write("clusters/test/a.yaml", &config_map_yaml("a", "2", ""));
    repo.write("clusters/test/c.yaml", &config_map_yaml("c", "1", ""));
    let c2 = repo.commit("a changes, c");
    trigger(&gitsyncs, name).await;
    wait_gitsync(&gitsyncs, name, "Ready at c2", WAIT, |g| {
        ready_at(g, &rev(&c2))
    })
    .await;
    // c3: b goes.
    repo.remove("clusters/test/b.yaml");
    let c3 = repo.commit("no b");
    trigger(&gitsyncs, name).await;
    let gs = wait_gitsync(&gitsyncs, name, "Ready at c3", WAIT, |g| {
        ready_at(g, &rev(&c3))
    })
    .await;
    let history = gs.status.unwrap().history;
    let summary: Vec<(String, &str, [u32; 4])> = history
        .iter()
        .map(|h| {
            (
                h.revision.clone(),
                h.result.as_str(),
                [h.created, h.configured, h.unchanged, h.pruned],
            )
        })
        .collect();
    let ok = "ReconciliationSucceeded";
    assert_eq!(
        summary,
        vec![
            (rev(&c3), ok, [0, 0, 2, 1]),
            (rev(&c2), ok, [1, 1, 1, 0]),
            (rev(&c1), ok, [2, 0, 0, 0]),
        ]
    );
    assert!(history[0].started_at.0 >= history[1].started_at.0);
    assert!(history.iter().all(|h| !h.duration.is_empty()));
    eprintln!("history: {history:#?}");
    let applied = event_notes(&scope, name, "Applied").await;
    let note = applied
        .iter()
        .find(|n| n.contains(&rev(&c3)))
        .unwrap_or_else(|| panic!("no Applied event for c3: {applied:?}"));
    assert!(
        note.contains("0 created, 0 configured, 2 unchanged, 1 pruned (ConfigMap ")
            && note.contains("/b)"),
        "{note}"
    );

    // Eight more revisions: the oldest (c1) drops out, ten are kept.
    let mut last = c3;
    for i in 0..8 {
        repo.write(
            "clusters/test/a.yaml",
            &config_map_yaml("a", &format!("v{i}"), ""),
        );
        last = repo.commit(&format!("a v{i}"));
        trigger(&gitsyncs, name).await;
        wait_gitsync(&gitsyncs, name, "Ready at the next commit", WAIT, |g| {
            ready_at(g, &rev(&last))
        })
        .await;
    }
    let history = gitsyncs.get(name).await.unwrap().status.unwrap().history;
    assert_eq!(history.len(), 10);
    assert_eq!(history[0].revision, rev(&last));
    assert_eq!(history[0].configured, 1);
    assert_eq!(history[9].revision, rev(&c2));
}

/// A repository whose clusters/test holds one ConfigMap, `name`.
fn one_config_map_repo(name: &str) -> (Repo, String) {
    let repo = Repo::new();
    repo.write("clusters/test/cm.yaml", &config_map_yaml(name, "1", ""));
    let sha = repo.commit(name);
    (repo, sha)
}

async fn create(api: &Api<GitSync>, name: &str, url: &str, spec: serde_json::Value) {
    api.create(&PostParams::default(), &new_gitsync(name, url, spec))
        .await
        .unwrap();
}

fn reason_is(g: &GitSync, reason: &str) -> bool {
    condition(g, "Ready").is_some_and(|c| c.status == "False" && c.reason == reason)
}

/// dependsOn: apps applies only once infra is Ready at its latest revision;
/// until then DependencyNotReady names infra and why. A cycle is reported
/// (Stalled) on each member, and breaking it lets both apply.
#[tokio::test]
async fn depends_on_waits_for_dependencies_and_reports_cycles() {
    let mut scope = Scope::new("gs-depends").await;
    scope.start_controller(POLL);
    let gitsyncs: Api<GitSync> = scope.api();
    let config_maps: Api<ConfigMap> = scope.api();
    let ns = scope.ns.clone();
    let (infra_repo, infra_sha) = one_config_map_repo("infra-cm");
    let (apps_repo, apps_sha) = one_config_map_repo("apps-cm");
    // Suspended before its first apply: Ready=False, OutOfSync.
    create(
        &gitsyncs,
        "infra",
        &infra_repo.url(),
        json!({"suspend": true}),
    )
    .await;
    create(
        &gitsyncs,
        "apps",
        &apps_repo.url(),
        json!({"dependsOn": [{"name": "infra"}, {"name": "infra", "namespace": ns}]}),
    )
    .await;
    let gs = wait_gitsync(&gitsyncs, "apps", "waiting for infra", WAIT, |g| {
        reason_is(g, "DependencyNotReady")
    })
    .await;
    let message = ready_message(&gs);
    assert!(
        message.contains(&format!(
            "waits for its dependencies to be Ready at their latest revision: {ns}/infra ("
        )),
        "{message}"
    );
    let gs = wait_gitsync(&gitsyncs, "apps", "naming infra's OutOfSync", WAIT, |g| {
        ready_message(g).contains("Ready=False, OutOfSync: suspended")
    })
    .await;
    assert_eq!(gs.status.unwrap().last_applied_revision, None);
    assert!(config_maps.get_opt("apps-cm").await.unwrap().is_none());

    gitsyncs
        .patch(
            "infra",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    let since = std::time::Instant::now();
    wait_gitsync(&gitsyncs, "apps", "Ready once infra is", WAIT, |g| {
        ready_at(g, &rev(&apps_sha))
    })
    .await;
    eprintln!("infra unsuspended to apps Ready: {:?}", since.elapsed());
    let infra = gitsyncs.get("infra").await.unwrap();
    assert!(ready_at(&infra, &rev(&infra_sha)));
    assert!(config_maps.get_opt("apps-cm").await.unwrap().is_some());

    // x -> y -> x: both say so, neither hangs.
    let (x_repo, x_sha) = one_config_map_repo("x-cm");
    let (y_repo, y_sha) = one_config_map_repo("y-cm");
    create(
        &gitsyncs,
        "x",
        &x_repo.url(),
        json!({"dependsOn": [{"name": "y"}]}),
    )
    .await;
    create(
        &gitsyncs,
        "y",
        &y_repo.url(),
        json!({"dependsOn": [{"name": "x"}]}),
    )
    .await;
    for (me, other) in [("x", "y"), ("y", "x")] {
        let gs = wait_gitsync(&gitsyncs, me, "a reported cycle", WAIT, |g| {
            reason_is(g, "DependencyNotReady")
                && condition(g, "Stalled").is_some_and(|c| c.status == "True")
        })
        .await;
        let message = ready_message(&gs);
        assert!(
            message.contains(&format!(
                "dependency cycle: {ns}/{me} -> {ns}/{other} -> {ns}/{me}"
            )),
            "{message}"
        );
    }
    // Breaking it: y applies, then x.
    gitsyncs
        .patch(
            "y",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"dependsOn": null}})),
        )
        .await
        .unwrap();
    wait_gitsync(&gitsyncs, "y", "Ready", WAIT, |g| ready_at(g, &rev(&y_sha))).await;
    wait_gitsync(&gitsyncs, "x", "Ready", WAIT, |g| ready_at(g, &rev(&x_sha))).await;
}
