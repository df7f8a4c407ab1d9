//! Tenancy on the RBAC-enforcing test cluster: a GitSync acts with the
//! rights of its ServiceAccount (impersonated), never the controller's. A
//! revision reaching beyond them is refused with the API server's reason,
//! and nothing of it is applied.

use std::time::Duration;

use driftless::gitsync::GitSync;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::gitsync::{
    condition, is_true, new_gitsync, ready_at, rev, trigger, wait_gitsync, wait_stalled_at, Repo,
};
use crate::support::{kubectl, Scope};

const POLL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(90);

/// A ServiceAccount `name` in `ns` that may manage ConfigMaps and
/// Deployments there, and nothing else (what `edit` would allow a team).
fn team_account(ns: &str, name: &str) {
    let yaml = format!(
        "apiVersion: v1
kind: ServiceAccount
metadata: {{name: {name}, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: {name}, namespace: {ns}}}
rules:
- apiGroups: [\"\"]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {name}, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {name}}}
subjects:
- {{kind: ServiceAccount, name: {name}, namespace: {ns}}}
"
    );
    let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(&yaml));
    assert!(ok, "{out}{err}");
}

fn config_map(value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: team-config\ndata:\n  value: \"{value}\"\n")
}

async fn value_of(api: &Api<ConfigMap>) -> String {
    let cm = api.get("team-config").await.unwrap();
    cm.data.unwrap()["value"].clone()
}

/// Commits `files` plus a change to the team's own ConfigMap, triggers, and
/// waits for the revision to be refused; returns the Stalled message.
async fn attempt(
    gitsyncs: &Api<GitSync>,
    name: &str,
    repo: &Repo,
    file: &str,
    text: &str,
    n: usize,
) -> String {
    repo.write(file, text);
    repo.write(
        "clusters/test/config.yaml",
        &config_map(&format!("attempt-{n}")),
    );
    let sha = repo.commit("an attempt beyond the account's rights");
    trigger(gitsyncs, name).await;
    let (_, message) = wait_stalled_at(gitsyncs, name, &sha).await;
    repo.remove(file);
    message
}

#[tokio::test]
async fn a_gitsync_acts_only_with_its_service_accounts_rights() {
    let mut scope = Scope::new("tenant").await;
    scope.start_controller(POLL);
    let ns = scope.ns.clone();
    team_account(&ns, "deployer");
    let repo = Repo::new();
    repo.write("clusters/test/config.yaml", &config_map("first"));
    let first = repo.commit("the team's config");
    let gitsyncs: Api<GitSync> = scope.api();
    let name = "team";
    let spec = json!({"serviceAccountName": "deployer"});
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync(name, &repo.url(), spec),
        )
        .await
        .unwrap();
    wait_gitsync(&gitsyncs, name, "Ready", WAIT, |g| {
        ready_at(g, &rev(&first))
    })
    .await;
    let configmaps: Api<ConfigMap> = scope.api();
    assert_eq!(value_of(&configmaps).await, "first");

    let user = format!("system:serviceaccount:{ns}:deployer");
    let attempts = [
        (
            "a Deployment in kube-system",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: takeover, namespace: kube-system}\nspec:\n  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec: {containers: [{name: x, image: x}]}\n".to_string(),
        ),
        (
            "a ClusterRole",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: team-escalation}\nrules: [{apiGroups: ['*'], resources: ['*'], verbs: ['*']}]\n".to_string(),
        ),
        (
            "a patch to a CRD",
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: gitsyncs.driftless.dev\n  labels: {team: was-here}\n".to_string(),
        ),
        (
            "a Secret in another namespace",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: planted, namespace: default}\nstringData: {a: b}\n".to_string(),
        ),
        (
            "a Secret in its own namespace (no right to Secrets)",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: own}\nstringData: {a: b}\n".to_string(),
        ),
        (
            "a Namespace",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-made-this}\n".to_string(),
        ),
        (
            "a ProviderConfig",
            "apiVersion: driftless.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {name: team-cloud}\nspec: {region: us-east-1}\n".to_string(),
        ),
    ];
    let mut table = Vec::new();
    for (n, (what, text)) in attempts.iter().enumerate() {
        let msg = attempt(
            &gitsyncs,
            name,
            &repo,
            "clusters/test/attempt.yaml",
            text,
            n,
        )
        .await;
        assert!(
            msg.contains("forbidden") && msg.contains(&user),
            "{what}: {msg}"
        );
        assert!(
            msg.contains("nothing was applied or pruned"),
            "{what}: {msg}"
        );
        assert_eq!(
            value_of(&configmaps).await,
            "first",
            "{what}: the rest of the revision was applied"
        );
        table.push((what, msg));
    }
    let (ok, out, _) = kubectl(
        &["get", "deployment", "takeover", "-n", "kube-system"],
        None,
    );
    assert!(!ok, "a Deployment reached kube-system: {out}");
    let (ok, out, _) = kubectl(&["get", "clusterrole", "team-escalation"], None);
    assert!(!ok, "a ClusterRole was made: {out}");
    let (_, out, _) = kubectl(
        &[
            "get",
            "crd",
            "gitsyncs.driftless.dev",
            "-o",
            "jsonpath={.metadata.labels}",
        ],
        None,
    );
    assert!(!out.contains("was-here"), "the CRD was patched: {out}");
    let (ok, out, _) = kubectl(&["get", "namespace", "team-made-this"], None);
    assert!(!ok, "a Namespace was made: {out}");
    eprintln!("attempt | outcome (Stalled message)");
    for (what, msg) in &table {
        eprintln!("{what} | {msg}");
    }

    // Within its rights, the next revision applies.
    repo.write("clusters/test/config.yaml", &config_map("second"));
    let next = repo.commit("within the account's rights");
    trigger(&gitsyncs, name).await;
    wait_gitsync(&gitsyncs, name, "Ready", WAIT, |g| ready_at(g, &rev(&next))).await;
    assert_eq!(value_of(&configmaps).await, "second");
}

/// Lock-down mode: a GitSync without `serviceAccountName` acts as the
/// controller's `--default-service-account` of its namespace, which here
/// may do nothing.
#[tokio::test]
async fn lock_down_mode_acts_as_the_default_service_account() {
    let mut scope = Scope::new("lockdown").await;
    scope.start_controller_with(POLL, |s| s.default_service_account = Some("gitsync".into()));
    let ns = scope.ns.clone();
    let sa = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: gitsync, namespace: {ns}}}\n"
    );
    let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(&sa));
    assert!(ok, "{out}{err}");
    let repo = Repo::new();
    repo.write("clusters/test/config.yaml", &config_map("x"));
    let sha = repo.commit("a ConfigMap");
    let gitsyncs: Api<GitSync> = scope.api();
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync("locked", &repo.url(), json!({})),
        )
        .await
        .unwrap();
    let (_, msg) = wait_stalled_at(&gitsyncs, "locked", &sha).await;
    assert!(
        msg.contains(&format!("system:serviceaccount:{ns}:gitsync")) && msg.contains("forbidden"),
        "{msg}"
    );
    let configmaps: Api<ConfigMap> = scope.api();
    assert!(configmaps.get_opt("team-config").await.unwrap().is_none());
}

/// Sources: without `--allow-file-urls` a `file://` URL (the controller's own
/// disk) is refused before anything is fetched; credentials never go over
/// `http://`; a URL outside `--allowed-source-prefix` is refused.
#[tokio::test]
async fn source_urls_are_refused_by_policy() {
    let mut scope = Scope::new("sources").await;
    scope.start_controller_with(POLL, |s| {
        s.sources = driftless::gitsync::source::UrlPolicy::default();
    });
    let repo = Repo::new();
    repo.write("clusters/test/config.yaml", &config_map("x"));
    repo.commit("a ConfigMap");
    let gitsyncs: Api<GitSync> = scope.api();
    let cases = [
        ("local", repo.url(), json!({}), "--allow-file-urls"),
        (
            "plain-http",
            "http://127.0.0.1:9/team.git".to_string(),
            json!({"secretRef": {"name": "git-credentials"}}),
            "never sent over http://",
        ),
    ];
    for (name, url, spec, expected) in cases {
        gitsyncs
            .create(&PostParams::default(), &new_gitsync(name, &url, spec))
            .await
            .unwrap();
        let gs = wait_gitsync(&gitsyncs, name, "Stalled", WAIT, |g| is_true(g, "Stalled")).await;
        let ready = condition(&gs, "Ready").unwrap();
        assert_eq!(ready.reason, "SourceRefused", "{name}: {}", ready.message);
        assert!(
            ready.message.contains(expected),
            "{name}: {}",
            ready.message
        );
    }
    let configmaps: Api<ConfigMap> = scope.api();
    assert!(
        configmaps.get_opt("team-config").await.unwrap().is_none(),
        "nothing was applied"
    );
    let cache = std::env::temp_dir().join("driftless-tests").join(&scope.ns);
    assert!(
        !cache.join(&scope.ns).exists(),
        "nothing was fetched into {}",
        cache.display()
    );
}

/// `spec.targetNamespace` puts every namespaced object in one namespace,
/// whatever namespace its file names.
#[tokio::test]
async fn target_namespace_confines_every_namespaced_object() {
    let mut scope = Scope::new("target").await;
    scope.start_controller(POLL);
    let target = format!("{}-apps", scope.ns);
    let (ok, out, err) = kubectl(&["create", "namespace", &target], None);
    assert!(ok, "{out}{err}");
    let repo = Repo::new();
    repo.write("clusters/test/config.yaml", &config_map("here"));
    repo.write(
        "clusters/test/elsewhere.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: elsewhere, namespace: kube-system}\ndata: {a: b}\n",
    );
    let sha = repo.commit("two ConfigMaps");
    let gitsyncs: Api<GitSync> = scope.api();
    let spec = json!({"targetNamespace": target});
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync("confined", &repo.url(), spec),
        )
        .await
        .unwrap();
    let gs = wait_gitsync(&gitsyncs, "confined", "Ready", WAIT, |g| {
        ready_at(g, &rev(&sha))
    })
    .await;
    let in_target: Api<ConfigMap> = Api::namespaced(scope.client.clone(), &target);
    assert_eq!(value_of(&in_target).await, "here");
    assert!(in_target.get_opt("elsewhere").await.unwrap().is_some());
    let kube_system: Api<ConfigMap> = Api::namespaced(scope.client.clone(), "kube-system");
    assert!(kube_system.get_opt("elsewhere").await.unwrap().is_none());
    let inventory = gs.status.unwrap().inventory;
    assert!(
        inventory.iter().all(|e| e.namespace == target),
        "{inventory:?}"
    );
    let (_, _, _) = kubectl(&["delete", "namespace", &target, "--wait=false"], None);
}

/// Deleting a GitSync deletes its inventory as its ServiceAccount, not as
/// the controller: without the right to delete, the deletion waits and
/// says why (the API server's refusal); given the right back, it finishes.
#[tokio::test]
async fn a_gitsync_is_deleted_with_its_service_accounts_rights() {
    let mut scope = Scope::new("tenant-delete").await;
    scope.start_controller(POLL);
    let ns = scope.ns.clone();
    team_account(&ns, "deployer");
    let repo = Repo::new();
    repo.write("clusters/test/config.yaml", &config_map("first"));
    let first = repo.commit("the team's config");
    let gitsyncs: Api<GitSync> = scope.api();
    let configmaps: Api<ConfigMap> = scope.api();
    let name = "team";
    let spec = json!({"serviceAccountName": "deployer"});
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync(name, &repo.url(), spec),
        )
        .await
        .unwrap();
    wait_gitsync(&gitsyncs, name, "Ready", WAIT, |g| {
        ready_at(g, &rev(&first))
    })
    .await;
    // The team may no longer delete ConfigMaps.
    let revoke = r#"[{"op":"replace","path":"/rules/0/verbs","value":["get","list","watch","create","patch","update"]}]"#;
    let (ok, out, err) = scope
        .kubectl(
            &[
                "patch",
                "-n",
                &ns,
                "role/deployer",
                "--type",
                "json",
                "-p",
                revoke,
            ],
            None,
        )
        .await;
    assert!(ok, "{out}{err}");
    gitsyncs
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let gs = wait_gitsync(&gitsyncs, name, "DeletionFailed", WAIT, |g| {
        condition(g, "Ready").is_some_and(|c| c.reason == "DeletionFailed")
    })
    .await;
    let message = condition(&gs, "Ready").unwrap().message.clone();
    let user = format!("system:serviceaccount:{ns}:deployer");
    assert!(
        message.contains("deleting its inventory")
            && message.contains("forbidden")
            && message.contains(&user),
        "{message}"
    );
    assert!(configmaps.get_opt("team-config").await.unwrap().is_some());
    team_account(&ns, "deployer");
    crate::support::wait_for("the GitSync gone", WAIT, || async {
        gitsyncs
            .get_opt(name)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(configmaps.get_opt("team-config").await.unwrap().is_none());
}
