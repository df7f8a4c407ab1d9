//! Kustomize and Helm, end to end with the real binaries: GitSync renders a
//! path holding a kustomization or a chart (or a chart from a Helm
//! repository), refuses what it must, and push mode renders the same way.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use driftless::gitsync::GitSync;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::Api;
use serde_json::json;

use crate::gitsync::{
    condition, event_notes, new_gitsync, ready_at, rev, trigger, wait_gitsync, wait_stalled_at,
    Repo,
};
use crate::support::{self, unique, Scope};

const POLL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(90);

const BASE_KUSTOMIZATION: &str = "resources:\n- deployment.yaml\n- settings.yaml\n";

fn base_deployment() -> &'static str {
    "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
"
}

fn overlay(tag: &str) -> String {
    format!(
        "namePrefix: test-
resources:
- ../../base
components:
- ../../components/audit
images:
- name: nginx
  newTag: \"{tag}\"
configMapGenerator:
- name: flags
  literals: [beta=true]
patches:
- path: more-memory.yaml
- target: {{kind: Deployment, name: web}}
  patch: |-
    - op: replace
      path: /spec/replicas
      value: 3
"
    )
}

/// A repository laid out as users do: a base, a component and an overlay.
fn kustomize_repo(repo: &Repo, tag: &str) {
    repo.write("base/kustomization.yaml", BASE_KUSTOMIZATION);
    repo.write("base/deployment.yaml", base_deployment());
    repo.write(
        "base/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata: {level: info}\n",
    );
    repo.write(
        "components/audit/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources:\n- audit.yaml\n",
    );
    repo.write(
        "components/audit/audit.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: audit\ndata: {enabled: \"true\"}\n",
    );
    repo.write("overlays/test/kustomization.yaml", &overlay(tag));
    // A strategic-merge patch: a container's field, merged by name.
    repo.write(
        "overlays/test/more-memory.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: web
        resources: {limits: {memory: 256Mi}}
",
    );
}

async fn container(api: &Api<Deployment>, name: &str) -> Option<serde_json::Value> {
    let d = api.get(name).await.ok()?;
    let v = serde_json::to_value(d).ok()?;
    v.pointer("/spec/template/spec/containers/0").cloned()
}

#[tokio::test]
async fn a_kustomize_overlay_is_applied_and_rolls_out() {
    let mut scope = Scope::new("render-kustomize").await;
    scope.start_controller(POLL);
    let gitsyncs: Api<GitSync> = scope.api();
    let repo = Repo::new();
    kustomize_repo(&repo, "1.27");
    let sha = repo.commit("base and overlay");
    let name = "overlay";
    let gs = new_gitsync(name, &repo.url(), json!({"path": "overlays/test"}));
    gitsyncs.create(&PostParams::default(), &gs).await.unwrap();
    wait_gitsync(&gitsyncs, name, "Ready at the overlay", WAIT, |g| {
        ready_at(g, &rev(&sha))
    })
    .await;

    let deployments: Api<Deployment> = scope.api();
    let web = container(&deployments, "test-web").await.expect("test-web");
    assert_eq!(web["image"], "nginx:1.27", "images: sets the tag");
    assert_eq!(
        web["resources"]["limits"]["memory"], "256Mi",
        "strategic patch"
    );
    let d = deployments.get("test-web").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(3), "JSON6902 patch");
    let configmaps: Api<ConfigMap> = scope.api();
    let names: Vec<String> = configmaps
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert!(names.contains(&"test-settings".to_string()), "{names:?}");
    assert!(
        names.contains(&"test-audit".to_string()),
        "component: {names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("test-flags-")),
        "configMapGenerator: {names:?}"
    );
    // kustomize's bookkeeping annotation is not applied.
    let settings = configmaps.get("test-settings").await.unwrap();
    let annotations = settings.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key("config.kubernetes.io/origin"),
        "{annotations:?}"
    );
    let rendered = event_notes(&scope, name, "Rendered").await;
    assert!(
        rendered
            .iter()
            .any(|n| n.contains("with kustomize") && n.contains("4 objects")),
        "{rendered:?}"
    );

    // Re-applies use the rendered revision: no second render.
    let before = scope.passes("GitSync", name);
    trigger(&gitsyncs, name).await;
    scope.wait_passes("GitSync", name, before + 1).await;
    assert_eq!(event_notes(&scope, name, "Rendered").await.len(), 1);

    // A new image tag in the overlay rolls out on the next revision.
    repo.write("overlays/test/kustomization.yaml", &overlay("1.28"));
    let next = repo.commit("nginx 1.28");
    trigger(&gitsyncs, name).await;
    wait_gitsync(&gitsyncs, name, "Ready at the new tag", WAIT, |g| {
        ready_at(g, &rev(&next))
    })
    .await;
    let web = container(&deployments, "test-web").await.unwrap();
    assert_eq!(web["image"], "nginx:1.28");
    assert_eq!(event_notes(&scope, name, "Rendered").await.len(), 2);
}

/// A chart with a values file, a vendored subchart, a CRD in `crds/` and
/// an object of that CRD.
fn chart(repo: &Repo, dir: &str) {
    let w = |f: &str, t: &str| repo.write(&format!("{dir}/{f}"), t);
    w(
        "Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n- name: cache\n  version: 0.1.0\n",
    );
    w("values.yaml", "replicas: 1\ncolor: red\nsize: small\n");
    w("values-test.yaml", "replicas: 2\ncolor: green\n");
    w(
        "templates/settings.yaml",
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
data:
  replicas: \"{{ .Values.replicas }}\"
  color: {{ .Values.color }}
  size: {{ .Values.size }}
  kube: \"{{ .Capabilities.KubeVersion.Version }}\"
  apps: \"{{ .Capabilities.APIVersions.Has \"apps/v1/Deployment\" }}\"
",
    );
    w(
        "templates/widget.yaml",
        "apiVersion: example.driftless.dev/v1\nkind: Widget\nmetadata:\n  name: {{ .Release.Name }}-widget\nspec: {size: 3}\n",
    );
    w(
        "templates/tests/check.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-test\n  annotations: {\"helm.sh/hook\": test}\n",
    );
    w(
        "crds/widgets.yaml",
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.driftless.dev
spec:
  group: example.driftless.dev
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
",
    );
    w(
        "charts/cache/Chart.yaml",
        "apiVersion: v2\nname: cache\nversion: 0.1.0\n",
    );
    w(
        "charts/cache/templates/cache.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cache\ndata: {from: subchart}\n",
    );
}

#[tokio::test]
async fn a_helm_chart_is_rendered_with_values_subcharts_and_crds() {
    let mut scope = Scope::new("render-helm").await;
    scope.start_controller(POLL);
    let gitsyncs: Api<GitSync> = scope.api();
    let repo = Repo::new();
    chart(&repo, "charts/web");
    let sha = repo.commit("a chart");
    let name = "chart";
    let spec = json!({
        "path": "charts/web",
        "helm": {
            "releaseName": "shop",
            "valuesFiles": ["values-test.yaml"],
            "values": {"color": "blue"},
            "skipTests": true,
        },
    });
    let gs = new_gitsync(name, &repo.url(), spec);
    gitsyncs.create(&PostParams::default(), &gs).await.unwrap();
    wait_gitsync(&gitsyncs, name, "Ready at the chart", WAIT, |g| {
        ready_at(g, &rev(&sha))
    })
    .await;

    let configmaps: Api<ConfigMap> = scope.api();
    let data = configmaps.get("shop-settings").await.unwrap().data.unwrap();
    assert_eq!(data["replicas"], "2", "the values file");
    assert_eq!(data["color"], "blue", "inline values come last");
    assert_eq!(data["size"], "small", "the chart's defaults");
    let version = scope.client.apiserver_version().await.unwrap().git_version;
    assert_eq!(data["kube"], version, ".Capabilities from the cluster");
    assert_eq!(data["apps"], "true");
    let cache = configmaps.get("shop-cache").await.unwrap();
    assert_eq!(cache.data.unwrap()["from"], "subchart");
    assert!(
        configmaps.get_opt("shop-test").await.unwrap().is_none(),
        "skipTests leaves the test hook out"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(scope.client.clone());
    assert!(crds
        .get_opt("widgets.example.driftless.dev")
        .await
        .unwrap()
        .is_some());
    let gvk = GroupVersionKind::gvk("example.driftless.dev", "v1", "Widget");
    let widgets: Api<DynamicObject> = Api::namespaced_with(
        scope.client.clone(),
        &scope.ns,
        &ApiResource::from_gvk(&gvk),
    );
    assert!(widgets.get_opt("shop-widget").await.unwrap().is_some());
    let _ = crds
        .delete("widgets.example.driftless.dev", &Default::default())
        .await;
}

/// Builds `helm package` of a chart in `dir` into `out`; returns the file name.
fn helm_package(dir: &Path, out: &Path) -> String {
    let status = Command::new(support::tool("helm"))
        .args(["package", "--destination"])
        .arg(out)
        .arg(dir)
        .env("HOME", out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    "web-0.2.0.tgz".to_string()
}

#[tokio::test]
async fn a_chart_from_a_helm_repository_is_rendered() {
    let mut scope = Scope::new("render-helm-repo").await;
    scope.start_controller(POLL);
    // The chart, packaged by the real helm, served with its index.
    let site = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let chart_dir = src.path().join("web");
    std::fs::create_dir_all(chart_dir.join("templates")).unwrap();
    std::fs::write(
        chart_dir.join("Chart.yaml"),
        "apiVersion: v2\nname: web\nversion: 0.2.0\n",
    )
    .unwrap();
    std::fs::write(chart_dir.join("values.yaml"), "greeting: hello\n").unwrap();
    std::fs::write(
        chart_dir.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\ndata:\n  text: {{ .Values.greeting }}\n",
    )
    .unwrap();
    let file = helm_package(&chart_dir, site.path());
    let bytes = std::fs::read(site.path().join(&file)).unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let index = format!(
        "apiVersion: v1\nentries:\n  web:\n  - name: web\n    version: 0.2.0\n    digest: {hex}\n    urls: [{file}]\n"
    );
    let files = vec![
        ("/index.yaml".to_string(), index.into_bytes()),
        (format!("/{file}"), bytes),
    ];
    let url = crate::chart_repo::serve_files(files).await;

    // The Git side holds only a values file.
    let repo = Repo::new();
    repo.write("values/prod.yaml", "greeting: bonjour\n");
    let sha = repo.commit("values");
    let gitsyncs: Api<GitSync> = scope.api();
    let name = "from-repo";
    let spec = json!({
        "path": "values",
        "helm": {
            "chart": {"repository": url, "name": "web", "version": "0.2.0"},
            "valuesFiles": ["prod.yaml"],
        },
    });
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync(name, &repo.url(), spec),
        )
        .await
        .unwrap();
    wait_gitsync(&gitsyncs, name, "Ready with the fetched chart", WAIT, |g| {
        ready_at(g, &rev(&sha))
    })
    .await;
    let configmaps: Api<ConfigMap> = scope.api();
    let cm = configmaps.get(&format!("{name}-greeting")).await.unwrap();
    assert_eq!(cm.data.unwrap()["text"], "bonjour");
}

/// Commits `files` as a new revision and waits until the GitSync is
/// Stalled on it; returns the Stalled message.
async fn stalled_on(
    gitsyncs: &Api<GitSync>,
    name: &str,
    repo: &Repo,
    files: &[(&str, &str)],
) -> String {
    for (path, text) in files {
        repo.write(path, text);
    }
    let sha = repo.commit("a revision to refuse");
    trigger(gitsyncs, name).await;
    let (_, message) = wait_stalled_at(gitsyncs, name, &sha).await;
    eprintln!("{name}: Stalled: {message}");
    message
}

#[tokio::test]
async fn render_failures_stall_the_revision_and_apply_nothing() {
    let mut scope = Scope::new("render-fail").await;
    scope.start_controller(POLL);
    let gitsyncs: Api<GitSync> = scope.api();
    let repo = Repo::new();
    kustomize_repo(&repo, "1.27");
    let good = repo.commit("good");
    let name = "failing";
    let spec = json!({"path": "overlays/test", "timeout": "5s"});
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync(name, &repo.url(), spec),
        )
        .await
        .unwrap();
    wait_gitsync(&gitsyncs, name, "Ready", WAIT, |g| ready_at(g, &rev(&good))).await;
    let k = "overlays/test/kustomization.yaml";

    // A kustomization that does not parse: named with its file:line.
    let broken = "resources:\n- ../../base\nimages: [unclosed\n";
    let msg = stalled_on(&gitsyncs, name, &repo, &[(k, broken)]).await;
    assert!(
        msg.contains("overlays/test/kustomization.yaml:") && msg.contains("invalid YAML"),
        "{msg}"
    );
    assert!(msg.contains("nothing was applied or pruned"), "{msg}");

    // A remote base: refused without --allow-remote-bases.
    let remote = "resources:\n- ../../base\n- https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.0.0\n";
    let msg = stalled_on(&gitsyncs, name, &repo, &[(k, remote)]).await;
    assert!(
        msg.contains("remote base") && msg.contains("--allow-remote-bases"),
        "{msg}"
    );
    assert!(msg.contains("overlays/test/kustomization.yaml:3"), "{msg}");

    // A base outside the repository.
    let escape = "resources:\n- ../../../../../../../etc\n";
    let msg = stalled_on(&gitsyncs, name, &repo, &[(k, escape)]).await;
    assert!(msg.contains("leaves the repository"), "{msg}");

    // A symbolic link out of the repository, named by a kustomization.
    repo.symlink("overlays/test/passwd.yaml", "/etc/passwd");
    let linked = "resources:\n- ../../base\n- passwd.yaml\n";
    let msg = stalled_on(&gitsyncs, name, &repo, &[(k, linked)]).await;
    assert!(
        msg.contains("overlays/test/passwd.yaml: a symbolic link to /etc/passwd"),
        "{msg}"
    );
    repo.remove("overlays/test/passwd.yaml");

    // kustomize's own error, quoted, with the file it names.
    let missing = "resources:\n- ../../base\n- missing.yaml\n";
    let msg = stalled_on(&gitsyncs, name, &repo, &[(k, missing)]).await;
    assert!(
        msg.contains("kustomize failed") && msg.contains("missing.yaml"),
        "{msg}"
    );
    let gs = gitsyncs.get(name).await.unwrap();
    assert_eq!(condition(&gs, "Ready").unwrap().reason, "RenderFailed");

    // A resource file that does not parse: its own file:line, not kustomize's text.
    let bad = [
        (k, "resources:\n- ../../base\n- bad.yaml\n"),
        (
            "overlays/test/bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"unclosed\n",
        ),
    ];
    let msg = stalled_on(&gitsyncs, name, &repo, &bad).await;
    assert!(msg.contains("overlays/test/bad.yaml:4:"), "{msg}");

    // A render that never ends is killed at spec.timeout; the controller
    // goes on and applies the next good revision.
    let forever = "{{- range until 100000 }}{{- range until 100000 }}{{- end }}{{- end }}\n";
    let spin = [
        (
            "spin/Chart.yaml",
            "apiVersion: v2\nname: spin\nversion: 0.1.0\n",
        ),
        ("spin/templates/spin.yaml", forever),
    ];
    let spinning = new_gitsync(
        "spin",
        &repo.url(),
        json!({"path": "spin", "timeout": "3s"}),
    );
    gitsyncs
        .create(&PostParams::default(), &spinning)
        .await
        .unwrap();
    let msg = stalled_on(&gitsyncs, "spin", &repo, &spin).await;
    assert!(msg.contains("killed"), "{msg}");
    repo.write(k, &overlay("1.29"));
    let fixed = repo.commit("fixed");
    trigger(&gitsyncs, name).await;
    wait_gitsync(&gitsyncs, name, "Ready after the fix", WAIT, |g| {
        ready_at(g, &rev(&fixed))
    })
    .await;
    let deployments: Api<Deployment> = scope.api();
    let web = container(&deployments, "test-web").await.unwrap();
    assert_eq!(web["image"], "nginx:1.29");

    // A chart whose dependency is not vendored.
    let deps = [(
        "unvendored/Chart.yaml",
        "apiVersion: v2\nname: u\nversion: 0.1.0\ndependencies:\n- name: redis\n  version: 1.0.0\n  repository: https://charts.example.com\n",
    )];
    let unvendored = new_gitsync("unvendored", &repo.url(), json!({"path": "unvendored"}));
    gitsyncs
        .create(&PostParams::default(), &unvendored)
        .await
        .unwrap();
    let msg = stalled_on(&gitsyncs, "unvendored", &repo, &deps).await;
    assert!(
        msg.contains("unvendored/Chart.yaml:5") && msg.contains("redis"),
        "{msg}"
    );
    assert!(msg.contains("not vendored"), "{msg}");
}

#[tokio::test]
async fn a_missing_binary_names_the_flag() {
    let mut scope = Scope::new("render-nobinary").await;
    scope.start_controller_with(POLL, |s| {
        s.render.helm.binary = "/nonexistent/helm".into();
    });
    let gitsyncs: Api<GitSync> = scope.api();
    let repo = Repo::new();
    chart(&repo, "chart");
    let sha = repo.commit("a chart");
    let name = "nobinary";
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync(name, &repo.url(), json!({"path": "chart"})),
        )
        .await
        .unwrap();
    let (_, msg) = wait_stalled_at(&gitsyncs, name, &sha).await;
    assert!(
        msg.contains("--helm-binary") && msg.contains("DRIFTLESS_HELM_BINARY"),
        "{msg}"
    );
}

/// Push mode renders an overlay the same way: its patch sets a Bucket's
/// versioning, and LocalStack's bucket has it.
#[tokio::test]
async fn push_mode_applies_an_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = unique("overlay-bucket");
    let w = |f: &str, t: &str| {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, t).unwrap();
    };
    w(
        "infra/base/kustomization.yaml",
        "resources: [bucket.yaml]\n",
    );
    w(
        "infra/base/bucket.yaml",
        &format!(
            "apiVersion: aws.driftless.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: {bucket}\n  namespace: web\nspec:\n  forProvider:\n    versioning: Suspended\n"
        ),
    );
    w(
        "infra/prod/kustomization.yaml",
        "resources: [../base]\npatches:\n- path: versioning.yaml\n",
    );
    w(
        "infra/prod/versioning.yaml",
        &format!(
            "apiVersion: aws.driftless.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: {bucket}\n  namespace: web\nspec:\n  forProvider:\n    versioning: Enabled\n"
        ),
    );
    let overlay = dir.path().join("infra/prod");
    let overlay = overlay.to_str().unwrap();
    support::render_tools();
    let stack = unique("overlay");
    let (code, _, err) = crate::push::driftless(&["validate", overlay]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("rendered") && err.contains("with kustomize"),
        "{err}"
    );
    let (code, out, _) = crate::push::driftless(&["plan", overlay, "--stack", &stack]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(&bucket) && out.contains("create"), "{out}");
    let (code, out, err) = crate::push::driftless(&["apply", overlay, "--stack", &stack]);
    assert_eq!(code, 0, "{out}{err}");
    let versioning = support::s3()
        .await
        .get_bucket_versioning()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(versioning.status().map(|s| s.as_str()), Some("Enabled"));
    let (code, out, _) = crate::push::driftless(&["plan", overlay, "--stack", &stack]);
    assert_eq!(code, 0, "nothing left to do: {out}");
    let empty = tempfile::tempdir().unwrap();
    let (code, _, _) = crate::push::driftless(&[
        "apply",
        empty.path().to_str().unwrap(),
        "--stack",
        &stack,
        "--prune",
    ]);
    assert_eq!(code, 0);
}

/// `validate` of an overlay names the source file (where kustomize read
/// the object) and the line of the bad field.
#[test]
fn validate_points_at_the_source_of_a_rendered_object() {
    let dir = tempfile::tempdir().unwrap();
    let w = |f: &str, t: &str| {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, t).unwrap();
    };
    w(
        "base/kustomization.yaml",
        "resources: [ok.yaml, bucket.yaml]\n",
    );
    w(
        "base/ok.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n",
    );
    w(
        "base/bucket.yaml",
        "apiVersion: aws.driftless.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: logs\n  namespace: web\nspec:\n  forProvider:\n    versioning: Sometimes\n",
    );
    w(
        "prod/kustomization.yaml",
        "namePrefix: prod-\nresources: [../base]\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(["validate", "prod"])
        .current_dir(dir.path())
        .env(support::tool_var("kustomize"), support::tool("kustomize"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("base/bucket.yaml:8:"), "{stdout}");
    assert!(stdout.contains("versioning"), "{stdout}");

    // `build` prints the rendered objects.
    let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(["build", "prod"])
        .current_dir(dir.path())
        .env(support::tool_var("kustomize"), support::tool("kustomize"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("name: prod-ok") && stdout.contains("name: prod-logs"),
        "{stdout}"
    );
}
