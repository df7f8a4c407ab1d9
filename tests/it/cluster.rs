//! The test API server itself (tests/cluster/): RBAC is enforced for
//! everyone but the admin certificate, ServiceAccounts are users through
//! their tokens and through impersonation, access reviews tell the truth.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::support::{kube_client, kube_config, kubectl, unique, wait_for};

fn apply(yaml: &str) {
    let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(yaml));
    assert!(ok, "kubectl apply: {out}{err}");
}

fn create_namespace(name: &str) {
    let (ok, out, err) = kubectl(&["create", "namespace", name], None);
    assert!(ok, "create namespace {name}: {out}{err}");
}

/// A client that authenticates with a bearer token only (no certificate).
async fn token_client(token: &str, impersonate: Option<&str>) -> kube::Client {
    let mut config = kube_config().await;
    config.auth_info = serde_json::from_value(json!({"token": token})).unwrap();
    config.auth_info.impersonate = impersonate.map(str::to_string);
    kube::Client::try_from(config).expect("token client")
}

/// The admin client impersonating `user`.
async fn admin_as(user: &str) -> kube::Client {
    let mut config = kube_config().await;
    config.auth_info.impersonate = Some(user.to_string());
    kube::Client::try_from(config).expect("impersonating client")
}

/// The status code and message of a failed API call.
fn api_error<T: std::fmt::Debug>(what: &str, r: Result<T, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.message),
        other => panic!("{what}: expected an API error, got {other:?}"),
    }
}

/// `kubectl create token`: the TokenRequest subresource.
fn create_token(ns: &str, sa: &str) -> String {
    let (ok, out, err) = kubectl(&["-n", ns, "create", "token", sa], None);
    assert!(ok, "kubectl create token {ns}/{sa}: {out}{err}");
    let token = out.trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    token
}

/// `client` may list and get configmaps in `allowed` (once the binding is
/// seen) and is refused in `denied` with kube-apiserver's message.
async fn only_in(client: &kube::Client, user: &str, allowed: &str, denied: &str) {
    let in_allowed: Api<ConfigMap> = Api::namespaced(client.clone(), allowed);
    wait_for(
        &format!("{user} may list configmaps in {allowed}"),
        Duration::from_secs(10),
        || async { in_allowed.list(&ListParams::default()).await.ok() },
    )
    .await;
    let cm = in_allowed
        .get("settings")
        .await
        .expect("get in the allowed namespace");
    assert_eq!(cm.data.unwrap()["k"], "v");

    let in_denied: Api<ConfigMap> = Api::namespaced(client.clone(), denied);
    let (code, message) = api_error(
        "list in the other namespace",
        in_denied.list(&ListParams::default()).await,
    );
    assert_eq!(code, 403);
    assert_eq!(
        message,
        format!(
            r#"configmaps is forbidden: User "{user}" cannot list resource "configmaps" in API group "" in the namespace "{denied}""#
        )
    );
    let (code, message) = api_error(
        "get in the other namespace",
        in_denied.get("settings").await,
    );
    assert_eq!(code, 403);
    assert_eq!(
        message,
        format!(
            r#"configmaps "settings" is forbidden: User "{user}" cannot get resource "configmaps" in API group "" in the namespace "{denied}""#
        )
    );
    // The Role grants get and list only.
    let (code, message) = api_error(
        "delete in the allowed namespace",
        in_allowed.delete("settings", &Default::default()).await,
    );
    assert_eq!(code, 403);
    assert_eq!(
        message,
        format!(
            r#"configmaps "settings" is forbidden: User "{user}" cannot delete resource "configmaps" in API group "" in the namespace "{allowed}""#
        )
    );
}

#[tokio::test]
async fn a_service_account_bound_to_a_role_may_act_in_that_namespace_only() {
    let a = unique("rbac-a");
    let b = unique("rbac-b");
    create_namespace(&a);
    create_namespace(&b);
    for ns in [&a, &b] {
        apply(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {ns}}}\ndata: {{k: v}}\n"
        ));
    }
    apply(&format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: bot, namespace: {a}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: read-configmaps, namespace: {a}}}
rules:
- {{apiGroups: [""], resources: [configmaps], verbs: [get, list]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: bot-reads, namespace: {a}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-configmaps}}
subjects:
- {{kind: ServiceAccount, name: bot}}
"#
    ));
    let user = format!("system:serviceaccount:{a}:bot");

    // With the ServiceAccount's own token.
    let token = create_token(&a, "bot");
    let sa = token_client(&token, None).await;
    let me: Api<SelfSubjectReview> = Api::all(sa.clone());
    let review: SelfSubjectReview = serde_json::from_value(
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
    )
    .unwrap();
    let info = me
        .create(&PostParams::default(), &review)
        .await
        .expect("whoami with the token")
        .status
        .unwrap()
        .user_info
        .unwrap();
    assert_eq!(info.username.as_deref(), Some(user.as_str()));
    let mut groups = info.groups.unwrap();
    groups.sort();
    assert_eq!(
        groups,
        vec![
            "system:authenticated".to_string(),
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{a}"),
        ]
    );
    only_in(&sa, &user, &a, &b).await;

    // The same user through impersonation by the admin certificate.
    only_in(&admin_as(&user).await, &user, &a, &b).await;

    // The ServiceAccount may not impersonate anyone without the "impersonate"
    // verb. (Kubernetes 1.36's impersonation filter, ConstrainedImpersonation
    // on by default, names the constrained verb it tried last.)
    let escalate = token_client(&token, Some("driftless-admin")).await;
    let cms: Api<ConfigMap> = Api::namespaced(escalate, &b);
    let (code, message) = api_error(
        "impersonation without the verb",
        cms.list(&ListParams::default()).await,
    );
    assert_eq!(code, 403);
    assert_eq!(
        message,
        format!(
            r#"configmaps is forbidden: User "{user}" cannot impersonate-on:user-info:list resource "configmaps" in API group "" in the namespace "{b}""#
        )
    );
    // With it, for one user only, it may.
    apply(&format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {a}-impersonate}}
rules:
- {{apiGroups: [""], resources: [users], resourceNames: [someone], verbs: [impersonate]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {a}-impersonate}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {a}-impersonate}}
subjects: [{{kind: ServiceAccount, name: bot, namespace: {a}}}]
"#
    ));
    let as_someone = token_client(&token, Some("someone")).await;
    let whoami: Api<SelfSubjectReview> = Api::all(as_someone);
    let info = wait_for(
        "the impersonate grant to take effect",
        Duration::from_secs(10),
        || async { whoami.create(&PostParams::default(), &review).await.ok() },
    )
    .await
    .status
    .unwrap()
    .user_info
    .unwrap();
    assert_eq!(info.username.as_deref(), Some("someone"));
    let cms: Api<ConfigMap> = Api::namespaced(token_client(&token, Some("someone")).await, &a);
    let (code, message) = api_error(
        "someone reads configmaps",
        cms.list(&ListParams::default()).await,
    );
    assert_eq!(code, 403);
    assert_eq!(
        message,
        format!(
            r#"configmaps is forbidden: User "someone" cannot list resource "configmaps" in API group "" in the namespace "{a}""#
        )
    );
    let escalate = token_client(&token, Some("driftless-admin")).await;
    let cms: Api<ConfigMap> = Api::namespaced(escalate, &a);
    let (code, _) = api_error(
        "impersonating another user",
        cms.list(&ListParams::default()).await,
    );
    assert_eq!(code, 403);

    // A wrong token is not a user at all.
    let forged = token_client(&format!("{token}x"), None).await;
    let cms: Api<ConfigMap> = Api::namespaced(forged, &a);
    let (code, _) = api_error("forged token", cms.list(&ListParams::default()).await);
    assert_eq!(code, 401);

    // SubjectAccessReview (the admin asks about the ServiceAccount).
    let sars: Api<SubjectAccessReview> = Api::all(kube_client().await);
    for (ns, verb, allowed) in [
        (&a, "list", true),
        (&b, "list", false),
        (&a, "delete", false),
    ] {
        let sar: SubjectAccessReview = serde_json::from_value(json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{a}"), "system:authenticated"],
                "resourceAttributes": {"namespace": ns, "verb": verb, "resource": "configmaps"},
            }
        }))
        .unwrap();
        let got = sars
            .create(&PostParams::default(), &sar)
            .await
            .expect("SubjectAccessReview");
        assert_eq!(
            got.status.unwrap().allowed,
            allowed,
            "{verb} configmaps in {ns}"
        );
    }

    // Deleting the ServiceAccount ends its tokens.
    let (ok, out, err) = kubectl(&["-n", &a, "delete", "serviceaccount", "bot"], None);
    assert!(ok, "{out}{err}");
    let cms: Api<ConfigMap> = Api::namespaced(sa, &a);
    let (code, _) = api_error(
        "token of a deleted ServiceAccount",
        cms.list(&ListParams::default()).await,
    );
    assert_eq!(code, 401);
}

/// `kubectl auth can-i ... --as <user>`: (answered yes, stdout).
fn can_i(user: &str, ns: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-n", ns, "--as", user]);
    let (ok, out, err) = kubectl(&all, None);
    let answer = out.trim().to_string();
    assert!(
        answer == "yes" || answer == "no",
        "kubectl {}: {out}{err}",
        all.join(" ")
    );
    assert_eq!(
        ok,
        answer == "yes",
        "exit status of kubectl {}",
        all.join(" ")
    );
    (ok, answer)
}

#[tokio::test]
async fn kubectl_auth_can_i_answers_from_the_stored_rules() {
    let ns = unique("canii");
    create_namespace(&ns);
    apply(&format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: reader, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: narrow, namespace: {ns}}}
rules:
- {{apiGroups: [""], resources: [configmaps], resourceNames: [allowed], verbs: [get, update]}}
- {{apiGroups: [""], resources: [pods/log], verbs: [get]}}
- {{apiGroups: [apps], resources: ["*/scale"], verbs: [update]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: narrow, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: narrow}}
subjects: [{{kind: ServiceAccount, name: reader, namespace: {ns}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {ns}-cluster}}
rules:
- {{apiGroups: [""], resources: [namespaces], verbs: [get, list, watch]}}
- {{nonResourceURLs: [/metrics, "/debug/*"], verbs: [get]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {ns}-cluster}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}-cluster}}
subjects: [{{kind: ServiceAccount, name: reader, namespace: {ns}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {ns}-aggregate}}
aggregationRule:
  clusterRoleSelectors: [{{matchLabels: {{driftless.dev/aggregate-to: {ns}}}}}]
rules: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {ns}-part
  labels: {{driftless.dev/aggregate-to: {ns}}}
rules:
- {{apiGroups: [""], resources: [secrets], verbs: [list]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: aggregate, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}-aggregate}}
subjects: [{{kind: ServiceAccount, name: reader, namespace: {ns}}}]
"#
    ));
    let user = format!("system:serviceaccount:{ns}:reader");
    // The bindings take effect once the server's informers have them.
    wait_for(
        "the bindings to take effect",
        Duration::from_secs(10),
        || async {
            let yes = can_i(&user, &ns, &["get", "configmaps/allowed"]).0
                && can_i(&user, &ns, &["list", "namespaces"]).0
                && can_i(&user, &ns, &["list", "secrets"]).0;
            yes.then_some(())
        },
    )
    .await;
    for (args, want) in [
        // resourceNames
        (&["get", "configmaps/allowed"][..], "yes"),
        (&["update", "configmaps/allowed"], "yes"),
        (&["get", "configmaps/other"], "no"),
        (&["get", "configmaps"], "no"),
        (&["list", "configmaps"], "no"),
        (&["delete", "configmaps/allowed"], "no"),
        // subresources
        (&["get", "pods", "--subresource=log"], "yes"),
        (&["get", "pods"], "no"),
        (&["get", "pods", "--subresource=exec"], "no"),
        (
            &["update", "deployments.apps", "--subresource=scale"],
            "yes",
        ),
        (&["update", "deployments.apps"], "no"),
        (
            &["update", "deployments.apps", "--subresource=status"],
            "no",
        ),
        // a cluster-scoped kind through the ClusterRoleBinding
        (&["list", "namespaces"], "yes"),
        (&["get", "namespaces/default"], "yes"),
        (&["delete", "namespaces/default"], "no"),
        // non-resource URLs
        (&["get", "/metrics"], "yes"),
        (&["get", "/debug/pprof"], "yes"),
        (&["get", "/logs"], "no"),
        // the aggregated ClusterRole
        (&["list", "secrets"], "yes"),
        (&["get", "secrets"], "no"),
        // always allowed to ask
        (
            &["create", "selfsubjectaccessreviews.authorization.k8s.io"],
            "yes",
        ),
    ] {
        let (_, answer) = can_i(&user, &ns, args);
        assert_eq!(
            answer,
            want,
            "kubectl auth can-i {} as {user}",
            args.join(" ")
        );
    }
    // The namespace matters for the RoleBindings, not for the ClusterRoleBinding.
    assert_eq!(
        can_i(&user, "default", &["get", "configmaps/allowed"]).1,
        "no"
    );
    assert_eq!(can_i(&user, "default", &["list", "secrets"]).1, "no");
    assert_eq!(can_i(&user, "default", &["list", "namespaces"]).1, "yes");
    // The admin certificate may do everything.
    let (ok, out, err) = kubectl(&["auth", "can-i", "*", "*", "-A"], None);
    assert!(ok && out.trim() == "yes", "{out}{err}");

    // --list: SelfSubjectRulesReview shows the rules.
    let (ok, out, err) = kubectl(&["auth", "can-i", "--list", "-n", &ns, "--as", &user], None);
    assert!(ok, "{out}{err}");
    for want in [
        "configmaps",
        "[allowed]",
        "pods/log",
        "*.apps/scale",
        "namespaces",
        "secrets",
        "/metrics",
    ] {
        assert!(out.contains(want), "can-i --list shows {want}: {out}");
    }
}

/// Every storage-only kind: (apiVersion, kind, the manifest without
/// apiVersion, kind and metadata). `NS` is replaced with the test namespace.
const STORED_KINDS: &[(&str, &str, &str)] = &[
    (
        "v1",
        "Pod",
        r#"{"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}"#,
    ),
    (
        "v1",
        "PersistentVolumeClaim",
        r#"{"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}"#,
    ),
    (
        "v1",
        "ResourceQuota",
        r#"{"spec": {"hard": {"pods": "10"}}}"#,
    ),
    (
        "v1",
        "LimitRange",
        r#"{"spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}}]}}"#,
    ),
    (
        "v1",
        "Endpoints",
        r#"{"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}"#,
    ),
    (
        "apps/v1",
        "StatefulSet",
        r#"{"spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}}}"#,
    ),
    (
        "apps/v1",
        "DaemonSet",
        r#"{"spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}}}}"#,
    ),
    (
        "apps/v1",
        "ReplicaSet",
        r#"{"spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}"#,
    ),
    (
        "batch/v1",
        "Job",
        r#"{"spec": {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "once", "image": "busybox:1"}]}}}}"#,
    ),
    (
        "batch/v1",
        "CronJob",
        r#"{"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "tick", "image": "busybox:1"}]}}}}}}"#,
    ),
    (
        "networking.k8s.io/v1",
        "Ingress",
        r#"{"spec": {"rules": [{"host": "example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}"#,
    ),
    (
        "networking.k8s.io/v1",
        "IngressClass",
        r#"{"spec": {"controller": "example.com/ingress"}}"#,
    ),
    (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        r#"{"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}"#,
    ),
    (
        "policy/v1",
        "PodDisruptionBudget",
        r#"{"spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}"#,
    ),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        r#"{"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 3, "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}}"#,
    ),
    (
        "storage.k8s.io/v1",
        "StorageClass",
        r#"{"provisioner": "example.com/disk", "reclaimPolicy": "Retain"}"#,
    ),
    (
        "scheduling.k8s.io/v1",
        "PriorityClass",
        r#"{"value": 1000, "description": "important"}"#,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        r#"{"webhooks": [{"name": "check.example.com", "clientConfig": {"url": "https://example.com/check"}, "admissionReviewVersions": ["v1"], "sideEffects": "None"}]}"#,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        r#"{"webhooks": [{"name": "mutate.example.com", "clientConfig": {"url": "https://example.com/mutate"}, "admissionReviewVersions": ["v1"], "sideEffects": "None"}]}"#,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
        r#"{"spec": {"validations": [{"expression": "true"}]}}"#,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        r#"{"spec": {"policyName": "p", "validationActions": ["Deny"]}}"#,
    ),
];

#[tokio::test]
async fn every_storage_only_kind_is_discovered_and_round_trips_server_side_apply() {
    use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams};
    use kube::discovery::{Discovery, Scope};

    let client = kube_client().await;
    let ns = unique("stored");
    create_namespace(&ns);
    // Only the groups under test: other tests create and delete CRDs, and a
    // group that vanishes between the listing and its read fails discovery.
    let mut groups: Vec<&str> = STORED_KINDS
        .iter()
        .map(|(api_version, _, _)| api_version.split_once('/').map_or("", |(g, _)| g))
        .collect();
    groups.sort();
    groups.dedup();
    let discovery = Discovery::new(client.clone())
        .filter(&groups)
        .run()
        .await
        .expect("discovery");
    let mut listed = Vec::new();
    for (api_version, kind, body) in STORED_KINDS {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, caps) = discovery
            .resolve_gvk(&gvk)
            .unwrap_or_else(|| panic!("{api_version} {kind} is not in discovery"));
        let namespaced = caps.scope == Scope::Namespaced;
        let name = if namespaced {
            "it".to_string()
        } else {
            format!("{ns}-it")
        };
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client.clone(), &ns, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        let mut manifest: serde_json::Value = serde_json::from_str(body).unwrap();
        manifest["apiVersion"] = json!(api_version);
        manifest["kind"] = json!(kind);
        manifest["metadata"] = json!({"name": name, "labels": {"round": "1"}});
        let ssa = PatchParams::apply("driftless-tests");
        let applied = api
            .patch(&name, &ssa, &Patch::Apply(&manifest))
            .await
            .unwrap_or_else(|e| panic!("server-side apply of {kind}: {e}"));
        let stored = serde_json::to_value(api.get(&name).await.unwrap()).unwrap();
        for (key, want) in manifest.as_object().unwrap() {
            if key == "metadata" {
                continue;
            }
            // What was applied comes back (defaulted fields may be added).
            assert_json_includes(&stored[key], want, &format!("{kind} .{key}"));
        }
        let managers: Vec<_> = applied
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                (
                    m.manager.unwrap_or_default(),
                    m.operation.unwrap_or_default(),
                )
            })
            .collect();
        assert!(
            managers.contains(&("driftless-tests".to_string(), "Apply".to_string())),
            "{kind}: managed fields {managers:?}"
        );
        // A second apply changes what the same field manager owns.
        manifest["metadata"] = json!({"name": name, "labels": {"round": "2"}});
        let again = api
            .patch(&name, &ssa, &Patch::Apply(&manifest))
            .await
            .unwrap();
        assert_eq!(
            again
                .metadata
                .labels
                .unwrap()
                .get("round")
                .map(String::as_str),
            Some("2"),
            "{kind}"
        );
        listed.push((ar.plural.clone(), namespaced, name));
    }

    // Structured merge: Pod containers are a list keyed by name, so a second
    // manager's container is added, not a replacement of the list.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    let sidecar = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "it"},
        "spec": {"containers": [{"name": "sidecar", "image": "busybox:1"}]}});
    let pod = pods
        .patch(
            "it",
            &PatchParams::apply("another-manager"),
            &Patch::Apply(&sidecar),
        )
        .await
        .expect("second manager's apply");
    let names: Vec<String> = pod
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["app", "sidecar"]);

    // kubectl get prints them.
    for (plural, namespaced, name) in listed {
        let mut args = vec!["get", plural.as_str()];
        if namespaced {
            args.extend_from_slice(&["-n", &ns]);
        }
        let (ok, out, err) = kubectl(&args, None);
        assert!(
            ok && out.lines().any(|l| l.starts_with(&name)),
            "kubectl get {plural}: {out}{err}"
        );
    }
}

/// Every field of `want` is in `got` with the same value.
fn assert_json_includes(got: &serde_json::Value, want: &serde_json::Value, at: &str) {
    match (got, want) {
        (serde_json::Value::Object(g), serde_json::Value::Object(w)) => {
            for (k, v) in w {
                assert_json_includes(
                    g.get(k).unwrap_or(&serde_json::Value::Null),
                    v,
                    &format!("{at}.{k}"),
                );
            }
        }
        (serde_json::Value::Array(g), serde_json::Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{at}: {got} vs {want}");
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                assert_json_includes(g, w, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(got, want, "{at}"),
    }
}
