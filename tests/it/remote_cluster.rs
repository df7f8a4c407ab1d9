//! `spec.kubeConfig`: a GitSync here applies to another cluster (a second
//! test API server of this test's own), and health, self-heal, prune and
//! deletion act there.

use std::time::Duration;

use driftless::gitsync::GitSync;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::diff::driftless_diff;
use crate::gitsync::{
    condition, create_ready, new_gitsync, ready_at, rev, trigger, wait_gitsync, Repo,
};
use crate::support::{unique, wait_for, OwnCluster, Scope};

const POLL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(90);

fn config_map(ns: &str, name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\ndata: {{value: \"{value}\"}}\n")
}

async fn kubeconfig_secret(scope: &Scope, name: &str, key: &str, kubeconfig: String) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": {key: ByteString(kubeconfig.into_bytes())},
    }))
    .unwrap();
    let secrets: Api<Secret> = scope.api();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

fn ready_message(gs: &GitSync) -> String {
    condition(gs, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

async fn value_of(api: &Api<ConfigMap>, name: &str) -> Option<String> {
    let cm = api.get_opt(name).await.unwrap()?;
    cm.data.and_then(|d| d.get("value").cloned())
}

/// The objects land in the other cluster and not here; a change made there
/// is put back; a file removed from Git is pruned there; deleting the
/// GitSync deletes them there.
#[tokio::test]
async fn a_gitsync_applies_to_another_cluster() {
    let remote = OwnCluster::start(OwnCluster::free_port());
    let mut scope = Scope::new("gs-remote").await;
    scope.start_controller(POLL);
    let there = remote.client().await;
    let apps = unique("apps");
    let kubeconfig = std::fs::read_to_string(&remote.kubeconfig).unwrap();
    kubeconfig_secret(&scope, "other-cluster", "value", kubeconfig).await;

    let repo = Repo::new();
    repo.write(
        "clusters/test/namespace.yaml",
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {apps}}}\n"),
    );
    repo.write("clusters/test/app.yaml", &config_map(&apps, "app", "v1"));
    repo.write("clusters/test/extra.yaml", &config_map(&apps, "extra", "x"));
    let c1 = repo.commit("app and extra, for the other cluster");
    let gitsyncs: Api<GitSync> = scope.api();
    let spec = json!({"kubeConfig": {"secretRef": {"name": "other-cluster"}}});
    let gs = create_ready(&gitsyncs, "remote", &repo.url(), spec, &c1).await;
    let message = ready_message(&gs);
    let server = format!("https://127.0.0.1:{}", remote.port);
    assert!(
        message.ends_with(&format!(
            " on cluster {server} (kubeconfig Secret {}/other-cluster)",
            scope.ns
        )),
        "{message}"
    );
    let inventory: Vec<String> = gs
        .status
        .as_ref()
        .unwrap()
        .inventory
        .iter()
        .map(|e| format!("{}/{}", e.kind, e.name))
        .collect();
    assert_eq!(
        inventory,
        [
            "ConfigMap/app",
            "ConfigMap/extra",
            &format!("Namespace/{apps}")
        ]
    );

    // There, and not here.
    let cms_there: Api<ConfigMap> = Api::namespaced(there.clone(), &apps);
    assert_eq!(value_of(&cms_there, "app").await.as_deref(), Some("v1"));
    let namespaces_here: Api<Namespace> = Api::all(scope.client.clone());
    assert!(namespaces_here.get_opt(&apps).await.unwrap().is_none());

    // Self-heal there: a manual change is put back.
    let patched = cms_there
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"value": "changed by hand"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["value"], "changed by hand");
    let changed = std::time::Instant::now();
    wait_for("the change there put back", WAIT, || async {
        (value_of(&cms_there, "app").await.as_deref() == Some("v1")).then_some(())
    })
    .await;
    eprintln!(
        "manual change in the other cluster put back in {:?}",
        changed.elapsed()
    );

    // `driftless diff` compares the next revision with the other cluster.
    repo.write("clusters/test/app.yaml", &config_map(&apps, "app", "v2"));
    repo.remove("clusters/test/extra.yaml");
    let c2 = repo.commit("app v2, extra removed");
    let (code, out, _) = driftless_diff(&repo, &["--gitsync", &format!("{}/remote", scope.ns)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("-  value: v1\n+  value: v2"), "{out}");
    assert!(out.contains(&format!("ConfigMap {apps}/extra")), "{out}");

    // Applied and pruned there.
    trigger(&gitsyncs, "remote").await;
    wait_gitsync(&gitsyncs, "remote", "Ready at c2", WAIT, |g| {
        ready_at(g, &rev(&c2))
    })
    .await;
    assert_eq!(value_of(&cms_there, "app").await.as_deref(), Some("v2"));
    wait_for("extra pruned there", WAIT, || async {
        cms_there
            .get_opt("extra")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    // Deleting the GitSync deletes what it applied there.
    gitsyncs
        .delete("remote", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the GitSync gone", WAIT, || async {
        gitsyncs
            .get_opt("remote")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(cms_there.get_opt("app").await.unwrap().is_none());
    remote.stop();
}

/// A kubeconfig that would run a program in the controller, or a Secret
/// without the key, is refused with a message naming the Secret and what
/// is wrong; nothing is applied.
#[tokio::test]
async fn a_kubeconfig_that_reaches_into_the_controller_is_refused() {
    let mut scope = Scope::new("gs-remote-bad").await;
    scope.start_controller(POLL);
    let marker = std::env::temp_dir().join(unique("driftless-exec-ran"));
    let exec = format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:1'}}\nusers:\n- name: u\n  user:\n    exec: {{apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: ['-c', 'touch {}']}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n", marker.display());
    kubeconfig_secret(&scope, "exec-config", "value", exec.clone()).await;
    kubeconfig_secret(&scope, "other-key", "config", exec).await;

    let repo = Repo::new();
    repo.write(
        "clusters/test/app.yaml",
        &config_map(&scope.ns, "app", "v1"),
    );
    repo.commit("app");
    let gitsyncs: Api<GitSync> = scope.api();
    for (name, secret) in [("exec", "exec-config"), ("no-key", "other-key")] {
        let spec = json!({"kubeConfig": {"secretRef": {"name": secret}}});
        gitsyncs
            .create(
                &PostParams::default(),
                &new_gitsync(name, &repo.url(), spec),
            )
            .await
            .unwrap();
    }
    let ns = scope.ns.clone();
    let expected = [
        (
            "exec",
            format!("Secret {ns}/exec-config key value (spec.kubeConfig.secretRef): user \"u\" uses exec, which would run a program in the controller"),
        ),
        (
            "no-key",
            format!("Secret {ns}/other-key (spec.kubeConfig.secretRef) has no key value or value.yaml"),
        ),
    ];
    for (name, message) in expected {
        let gs = wait_gitsync(&gitsyncs, name, "refused", WAIT, |g| {
            condition(g, "Ready").is_some_and(|c| c.status == "False")
        })
        .await;
        let got = ready_message(&gs);
        assert!(got.contains(&message), "{name}: {got}");
        assert_eq!(condition(&gs, "Ready").unwrap().reason, "ApplyRefused");
        assert!(gs.status.as_ref().unwrap().inventory.is_empty());
    }
    let cms: Api<ConfigMap> = scope.api();
    assert!(cms.get_opt("app").await.unwrap().is_none());
    assert!(!marker.exists(), "the kubeconfig's exec command ran");
}
