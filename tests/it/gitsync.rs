//! GitSync end to end: local Git repositories (file://) made with the git
//! CLI, the controller in-process, the API server and LocalStack.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use driftless::gitsync::source::{self as fetch, Revision};
use driftless::gitsync::{GitRef, GitSync, REQUESTED_AT};
use driftless_aws::Bucket;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::support::{self, s3_tags, unique, wait_for, Scope};

const POLL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(90);
/// Self-heal: generous (a loaded machine); each test prints how long it took.
const HEAL: Duration = Duration::from_secs(30);

/// A bare repository (the remote the GitSync reads) and a working clone.
pub(crate) struct Repo {
    dir: PathBuf,
}

impl Repo {
    pub(crate) fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("driftless-gitsync-repo"));
        std::fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
        git(&dir, &["init", "-q", "-b", "main", "work"]);
        let repo = Self { dir };
        let remote = repo.dir.join("remote.git");
        repo.git(&["remote", "add", "origin", remote.to_str().unwrap()]);
        repo
    }

    /// The working clone's directory.
    pub(crate) fn work_dir(&self) -> PathBuf {
        self.dir.join("work")
    }

    pub(crate) fn url(&self) -> String {
        format!("file://{}", self.dir.join("remote.git").display())
    }

    pub(crate) fn git(&self, args: &[&str]) -> String {
        git(&self.dir.join("work"), args)
    }

    pub(crate) fn write(&self, path: &str, content: &str) {
        let p = self.dir.join("work").join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// A symbolic link at `path` pointing at `target`.
    pub(crate) fn symlink(&self, path: &str, target: &str) {
        let p = self.dir.join("work").join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    pub(crate) fn remove(&self, path: &str) {
        std::fs::remove_file(self.dir.join("work").join(path)).unwrap();
    }

    /// Commits everything and pushes; returns the commit's sha.
    pub(crate) fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.push()
    }

    fn push(&self) -> String {
        self.git(&["push", "-q", "origin", "main"]);
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=driftless tests",
            "-c",
            "user.email=tests@driftless.dev",
        ])
        .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn rev(sha: &str) -> String {
    format!("main@sha1:{sha}")
}

pub(crate) fn condition<'a>(gs: &'a GitSync, type_: &str) -> Option<&'a Condition> {
    gs.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

pub(crate) fn is_true(gs: &GitSync, type_: &str) -> bool {
    condition(gs, type_).is_some_and(|c| c.status == "True")
}

/// Ready, for this generation, with `revision` applied.
pub(crate) fn ready_at(gs: &GitSync, revision: &str) -> bool {
    let status = gs.status.as_ref();
    is_true(gs, "Ready")
        && condition(gs, "Ready").unwrap().observed_generation == gs.metadata.generation
        && status.and_then(|s| s.last_applied_revision.as_deref()) == Some(revision)
}

pub(crate) async fn wait_gitsync(
    api: &Api<GitSync>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&GitSync) -> bool,
) -> GitSync {
    let what = format!("GitSync {name}: {what}");
    let last = std::sync::Mutex::new(None::<GitSync>);
    let found = tokio::time::timeout(
        timeout,
        wait_for(&what, timeout + Duration::from_secs(1), || async {
            let gs = api.get(name).await.ok()?;
            let ok = check(&gs);
            *last.lock().unwrap() = Some(gs.clone());
            ok.then_some(gs)
        }),
    )
    .await;
    match found {
        Ok(gs) => gs,
        Err(_) => panic!(
            "timed out after {timeout:?} waiting for {what}; last status: {:#?}",
            last.lock().unwrap().as_ref().and_then(|g| g.status.clone())
        ),
    }
}

/// Waits until GitSync `name` is Stalled on commit `sha` (its message names
/// that revision); returns it and the Stalled message.
pub(crate) async fn wait_stalled_at(
    api: &Api<GitSync>,
    name: &str,
    sha: &str,
) -> (GitSync, String) {
    let revision = rev(sha);
    let gs = wait_gitsync(api, name, "Stalled on the new revision", WAIT, |g| {
        is_true(g, "Stalled")
            && condition(g, "Stalled").is_some_and(|c| c.message.contains(&revision))
    })
    .await;
    let message = condition(&gs, "Stalled").unwrap().message.clone();
    (gs, message)
}

/// Sets `driftless.dev/requested-at`: sync now.
pub(crate) async fn trigger(api: &Api<GitSync>, name: &str) -> Instant {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {REQUESTED_AT: now}}})),
    )
    .await
    .unwrap();
    Instant::now()
}

/// Creates GitSync `name` (see [`new_gitsync`]) and waits until it is Ready
/// at commit `sha`.
pub(crate) async fn create_ready(
    api: &Api<GitSync>,
    name: &str,
    url: &str,
    spec: serde_json::Value,
    sha: &str,
) -> GitSync {
    api.create(&PostParams::default(), &new_gitsync(name, url, spec))
        .await
        .unwrap();
    wait_gitsync(api, name, "Ready at its commit", WAIT, |g| {
        ready_at(g, &rev(sha))
    })
    .await
}

pub(crate) fn new_gitsync(name: &str, url: &str, spec: serde_json::Value) -> GitSync {
    let mut s = json!({
        "url": url,
        "ref": {"branch": "main"},
        "path": "clusters/test",
        // Long: every sync in these tests is triggered, and so measured.
        "interval": "1h",
        "prune": true,
        "timeout": "2m",
    });
    s.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "apiVersion": "driftless.dev/v1alpha1",
        "kind": "GitSync",
        "metadata": {"name": name},
        "spec": s,
    }))
    .unwrap()
}

pub(crate) async fn event_notes(scope: &Scope, name: &str, reason: &str) -> Vec<String> {
    let events = support::events_about(scope, name).await;
    let theirs = events
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason));
    theirs.filter_map(|e| e.note).collect()
}

async fn image_of(api: &Api<Deployment>) -> Option<String> {
    let d = api.get("web").await.ok()?;
    d.spec?.template.spec?.containers[0].image.clone()
}

async fn replicas_of(api: &Api<Deployment>) -> Option<i32> {
    api.get("web").await.ok()?.spec?.replicas
}

fn namespace_yaml(ns: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n")
}

pub(crate) fn deployment_yaml(ns: &str, tag: &str) -> String {
    format!(
        r#"# The app: three replicas of web.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
spec:
  replicas: 3
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: registry.example/web:{tag}
"#
    )
}

pub(crate) fn provider_config_yaml(name: &str, creds_ns: &str) -> String {
    let env = support::env();
    format!(
        r#"apiVersion: driftless.dev/v1alpha1
kind: ProviderConfig
metadata:
  name: {name}
spec:
  region: {region}
  endpoint: {endpoint}
  credentials:
    source: Secret
    secretRef: {{namespace: {creds_ns}, name: aws-creds}}
"#,
        region = env.region,
        endpoint = env.aws_endpoint,
    )
}

/// No namespace: it lands in the GitSync's.
pub(crate) fn bucket_yaml(name: &str, provider_config: &str, version: &str) -> String {
    format!(
        r#"apiVersion: aws.driftless.dev/v1alpha1
kind: Bucket
metadata:
  name: {name}
spec:
  providerConfigRef: {{name: {provider_config}}}
  forProvider:
    tags: {{team: web, version: {version}}}
"#
    )
}

/// The whole story against LocalStack: apps and infra from one repository,
/// updates, revert, self-heal, atomic refusal of bad revisions, prune, suspend.
#[tokio::test]
async fn gitsync_applies_apps_and_infra_and_keeps_them() {
    let mut scope = Scope::new("gitsync").await;
    scope.start_controller(POLL);
    let s3 = support::s3().await;
    let gitsyncs: Api<GitSync> = scope.api();
    let buckets: Api<Bucket> = scope.api();
    let app_ns = unique("gs-app");
    let deployments: Api<Deployment> = Api::namespaced(scope.client.clone(), &app_ns);
    let bucket = unique("dl-gitsync");
    let pc = unique("pc-gitsync");
    let name = "platform";

    let repo = Repo::new();
    repo.write("README.md", "apps and infra\n");
    // Outside spec.path: never read, however broken.
    repo.write("other/broken.yaml", "this: [is not\n");
    repo.write("clusters/test/app/namespace.yaml", &namespace_yaml(&app_ns));
    repo.write(
        "clusters/test/app/deployment.yaml",
        &deployment_yaml(&app_ns, "v1"),
    );
    repo.write(
        "clusters/test/app/config.yaml",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep-me\n  namespace: {app_ns}\n  annotations: {{driftless.dev/prune: disabled}}\ndata: {{a: b}}\n"),
    );
    repo.write(
        "clusters/test/infra/provider-config.yaml",
        &provider_config_yaml(&pc, &scope.ns),
    );
    repo.write(
        "clusters/test/infra/bucket.yml",
        &bucket_yaml(&bucket, &pc, "v1"),
    );
    let c1 = repo.commit("app and infra");

    // 1. Everything is applied; kubectl wait --for=condition=Ready means live.
    let created = Instant::now();
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync(name, &repo.url(), json!({})),
        )
        .await
        .unwrap();
    let (ok, _, err) = scope
        .kubectl(
            &[
                "wait",
                "--for=condition=Ready",
                &format!("gitsync/{name}"),
                "-n",
                &scope.ns,
                "--timeout=90s",
            ],
            None,
        )
        .await;
    assert!(ok, "kubectl wait for Ready: {err}");
    let first_sync = created.elapsed();
    let gs = gitsyncs.get(name).await.unwrap();
    let status = gs.status.clone().unwrap();
    assert_eq!(status.last_applied_revision, Some(rev(&c1)));
    assert_eq!(status.last_attempted_revision, Some(rev(&c1)));
    let inventory: Vec<String> = status.inventory.iter().map(ToString::to_string).collect();
    assert_eq!(
        inventory,
        vec![
            format!("Bucket {}/{bucket}", scope.ns),
            format!("ConfigMap {app_ns}/keep-me"),
            format!("Deployment {app_ns}/web"),
            format!("Namespace {app_ns}"),
            format!("ProviderConfig {pc}"),
        ]
    );
    let b = buckets.get(&bucket).await.unwrap();
    let ready = b
        .status
        .as_ref()
        .and_then(|s| s.condition("Ready"))
        .unwrap();
    assert_eq!(ready.status, "True", "GitSync Ready before its Bucket");
    assert!(s3.head_bucket().bucket(&bucket).send().await.is_ok());
    assert!(s3_tags(&s3, &bucket)
        .await
        .contains(&("version".into(), "v1".into())));
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(
        image_of(&deployments).await.as_deref(),
        Some("registry.example/web:v1")
    );
    assert_eq!(
        d.labels()
            .get("driftless.dev/gitsync-name")
            .map(String::as_str),
        Some(name)
    );
    let managers: Vec<_> = d
        .managed_fields()
        .iter()
        .filter_map(|f| f.manager.clone())
        .collect();
    assert!(managers.contains(&"driftless".to_string()), "{managers:?}");
    let (ok, out, err) = scope
        .kubectl(&["get", "gitsync", "-n", &scope.ns], None)
        .await;
    assert!(ok, "{err}");
    for col in ["NAME", "READY", "REVISION", "STATUS", "AGE"] {
        assert!(
            out.lines().next().unwrap_or_default().contains(col),
            "column {col}:\n{out}"
        );
    }
    assert!(out.contains(&rev(&c1)) && out.contains("True"), "{out}");
    eprintln!("first sync (create to Ready, bucket created in LocalStack): {first_sync:?}");

    // 2. A commit changes the image and a bucket tag: both follow.
    repo.write(
        "clusters/test/app/deployment.yaml",
        &deployment_yaml(&app_ns, "v2"),
    );
    repo.write(
        "clusters/test/infra/bucket.yml",
        &bucket_yaml(&bucket, &pc, "v2"),
    );
    let c2 = repo.commit("web v2, bucket tag v2");
    let at = trigger(&gitsyncs, name).await;
    wait_gitsync(&gitsyncs, name, "c2 applied", WAIT, |g| {
        g.status
            .as_ref()
            .and_then(|s| s.last_applied_revision.as_deref())
            == Some(rev(&c2).as_str())
    })
    .await;
    let applied_in = at.elapsed();
    assert_eq!(
        image_of(&deployments).await.as_deref(),
        Some("registry.example/web:v2")
    );
    wait_gitsync(&gitsyncs, name, "Ready at c2", WAIT, |g| {
        ready_at(g, &rev(&c2))
    })
    .await;
    let ready_in = at.elapsed();
    assert!(
        s3_tags(&s3, &bucket)
            .await
            .contains(&("version".into(), "v2".into())),
        "Ready at c2 but S3 has {:?}",
        s3_tags(&s3, &bucket).await
    );
    eprintln!(
        "commit + trigger to applied: {applied_in:?}; to Ready (bucket tags in S3): {ready_in:?}"
    );
    // One Applied event per revision, each naming its own (not folded into
    // the first revision's event).
    let applied = event_notes(&scope, name, "Applied").await;
    for c in [&c1, &c2] {
        assert!(
            applied.iter().any(|n| n.contains(&rev(c))),
            "no Applied event for {c}: {applied:?}"
        );
    }

    // 3. git revert rolls back.
    repo.git(&["revert", "--no-edit", "HEAD"]);
    let c3 = repo.push();
    let at = trigger(&gitsyncs, name).await;
    wait_gitsync(&gitsyncs, name, "Ready at the revert", WAIT, |g| {
        ready_at(g, &rev(&c3))
    })
    .await;
    eprintln!("revert + trigger to Ready: {:?}", at.elapsed());
    assert_eq!(
        image_of(&deployments).await.as_deref(),
        Some("registry.example/web:v1")
    );
    assert!(s3_tags(&s3, &bucket)
        .await
        .contains(&("version".into(), "v1".into())));

    // 4. Manual edits are put back within 5 s.
    let (ok, _, err) = scope
        .kubectl(
            &["scale", "deployment/web", "--replicas=1", "-n", &app_ns],
            None,
        )
        .await;
    assert!(ok, "kubectl scale: {err}");
    let at = Instant::now();
    wait_for("replicas restored to 3", HEAL, || async {
        (replicas_of(&deployments).await == Some(3)).then_some(())
    })
    .await;
    eprintln!("kubectl scale put back in {:?}", at.elapsed());
    let (ok, _, err) = scope
        .kubectl(
            &[
                "set",
                "image",
                "deployment/web",
                "web=registry.example/web:hacked",
                "-n",
                &app_ns,
            ],
            None,
        )
        .await;
    assert!(ok, "kubectl set image: {err}");
    let at = Instant::now();
    wait_for("image restored", HEAL, || async {
        (image_of(&deployments).await.as_deref() == Some("registry.example/web:v1")).then_some(())
    })
    .await;
    eprintln!("kubectl set image put back in {:?}", at.elapsed());
    // kubectl apply of an edited copy (what `kubectl edit` also does: a
    // write of the whole object by another field manager).
    let edited = deployment_yaml(&app_ns, "edited").replace("replicas: 3", "replicas: 5");
    let (ok, _, err) = scope
        .kubectl(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager",
                "someone",
                "-f",
                "-",
            ],
            Some(&edited),
        )
        .await;
    assert!(ok, "kubectl apply: {err}");
    let at = Instant::now();
    wait_for("kubectl apply undone", HEAL, || async {
        (image_of(&deployments).await.as_deref() == Some("registry.example/web:v1")
            && replicas_of(&deployments).await == Some(3))
        .then_some(())
    })
    .await;
    eprintln!("kubectl apply put back in {:?}", at.elapsed());
    wait_for("DriftCorrected event", WAIT, || async {
        let notes = event_notes(&scope, name, "DriftCorrected").await;
        notes
            .iter()
            .any(|n| n.contains(&format!("Deployment {app_ns}/web")))
            .then_some(())
    })
    .await;

    // 5. Broken YAML in a commit that also changes the image: nothing changes.
    repo.write(
        "clusters/test/app/deployment.yaml",
        &deployment_yaml(&app_ns, "v3"),
    );
    repo.write(
        "clusters/test/app/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\ndata:\n  key: [unclosed\n  other: value\n",
    );
    let c4 = repo.commit("v3, and a broken file");
    trigger(&gitsyncs, name).await;
    let stalled = wait_gitsync(&gitsyncs, name, "Stalled", WAIT, |g| is_true(g, "Stalled")).await;
    let message = condition(&stalled, "Stalled").unwrap().message.clone();
    assert!(
        message.contains("clusters/test/app/broken.yaml:7:8: invalid YAML"),
        "{message}"
    );
    assert!(message.contains(&rev(&c4)), "{message}");
    assert!(!is_true(&stalled, "Ready"));
    let status = stalled.status.clone().unwrap();
    assert_eq!(status.last_attempted_revision, Some(rev(&c4)));
    assert_eq!(status.last_applied_revision, Some(rev(&c3)));
    assert_eq!(
        image_of(&deployments).await.as_deref(),
        Some("registry.example/web:v1")
    );
    wait_for("a Warning event naming file and line", WAIT, || async {
        let notes = event_notes(&scope, name, "InvalidManifests").await;
        notes
            .iter()
            .any(|n| n.contains("broken.yaml:7"))
            .then_some(())
    })
    .await;
    // The last applied revision is still kept in place while stalled.
    let healed_at = scope.passes("GitSync", name);
    let (ok, _, err) = scope
        .kubectl(
            &["scale", "deployment/web", "--replicas=2", "-n", &app_ns],
            None,
        )
        .await;
    assert!(ok, "kubectl scale: {err}");
    let at = Instant::now();
    wait_for("replicas restored while stalled", HEAL, || async {
        (replicas_of(&deployments).await == Some(3)).then_some(())
    })
    .await;
    eprintln!("kubectl scale put back while stalled in {:?}", at.elapsed());
    // The self-heal pass has finished (the scale woke the GitSync): it put
    // back the last applied revision, not the stalled one.
    scope.wait_passes("GitSync", name, healed_at + 1).await;
    assert_eq!(
        image_of(&deployments).await.as_deref(),
        Some("registry.example/web:v1")
    );

    // 6. An object the API server refuses (dry-run) also changes nothing.
    repo.remove("clusters/test/app/broken.yaml");
    repo.write(
        "clusters/test/infra/bad-bucket.yaml",
        "# S3 refuses names like IP addresses; so does the CRD's rule.\napiVersion: aws.driftless.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: \"192.168.7.9\"\nspec:\n  forProvider: {}\n",
    );
    let c5 = repo.commit("v3, and a bucket the server refuses");
    trigger(&gitsyncs, name).await;
    let refused = wait_gitsync(&gitsyncs, name, "Stalled at c5", WAIT, |g| {
        is_true(g, "Stalled") && condition(g, "Stalled").unwrap().message.contains(&c5)
    })
    .await;
    let message = condition(&refused, "Stalled").unwrap().message.clone();
    assert!(
        message.contains("clusters/test/infra/bad-bucket.yaml:2"),
        "{message}"
    );
    assert!(message.contains("invalid bucket name"), "{message}");
    assert_eq!(condition(&refused, "Ready").unwrap().reason, "ApplyRefused");
    assert_eq!(
        image_of(&deployments).await.as_deref(),
        Some("registry.example/web:v1")
    );
    assert!(buckets.get_opt("192.168.7.9").await.unwrap().is_none());

    // 7. Fixed: v3 applies. Then a deleted file is pruned, in the cloud too;
    //    the opted-out ConfigMap stays.
    repo.remove("clusters/test/infra/bad-bucket.yaml");
    let c6 = repo.commit("drop the bad bucket");
    trigger(&gitsyncs, name).await;
    wait_gitsync(&gitsyncs, name, "Ready at c6", WAIT, |g| {
        ready_at(g, &rev(&c6))
    })
    .await;
    assert_eq!(
        image_of(&deployments).await.as_deref(),
        Some("registry.example/web:v3")
    );
    assert!(!is_true(&gitsyncs.get(name).await.unwrap(), "Stalled"));

    repo.remove("clusters/test/infra/bucket.yml");
    repo.remove("clusters/test/app/config.yaml");
    let c7 = repo.commit("no more bucket");
    let at = trigger(&gitsyncs, name).await;
    let pruned = wait_gitsync(&gitsyncs, name, "Ready at c7", WAIT, |g| {
        ready_at(g, &rev(&c7))
    })
    .await;
    eprintln!("prune (Bucket deleted in LocalStack) in {:?}", at.elapsed());
    assert!(
        buckets.get_opt(&bucket).await.unwrap().is_none(),
        "Bucket object still there"
    );
    assert!(
        s3.head_bucket().bucket(&bucket).send().await.is_err(),
        "bucket {bucket} still in S3"
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(scope.client.clone(), &app_ns);
    assert!(
        configmaps.get_opt("keep-me").await.unwrap().is_some(),
        "prune: disabled was pruned"
    );
    let inventory: Vec<String> = pruned
        .status
        .unwrap()
        .inventory
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        inventory,
        vec![
            format!("Deployment {app_ns}/web"),
            format!("Namespace {app_ns}"),
            format!("ProviderConfig {pc}"),
        ]
    );
    assert!(event_notes(&scope, name, "Pruned")
        .await
        .iter()
        .any(|n| n.contains(&bucket)));

    // 8. Suspended: a new commit is detected (interval, no trigger) and
    //    shown as OutOfSync; nothing is applied.
    gitsyncs
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true, "interval": "2s"}})),
        )
        .await
        .unwrap();
    wait_gitsync(&gitsyncs, name, "suspended", WAIT, |g| {
        condition(g, "Reconciling").is_some_and(|c| {
            c.reason == "Suspended" && c.observed_generation == g.metadata.generation
        })
    })
    .await;
    repo.write(
        "clusters/test/app/deployment.yaml",
        &deployment_yaml(&app_ns, "v9"),
    );
    let c8 = repo.commit("v9 while suspended");
    let at = Instant::now();
    let out_of_sync = wait_gitsync(&gitsyncs, name, "OutOfSync", WAIT, |g| {
        condition(g, "Ready").is_some_and(|c| c.reason == "OutOfSync" && c.message.contains(&c8))
    })
    .await;
    eprintln!(
        "new commit seen while suspended (interval 2s) in {:?}",
        at.elapsed()
    );
    let message = condition(&out_of_sync, "Ready").unwrap().message.clone();
    assert!(
        message.contains(&rev(&c7)) && message.contains(&rev(&c8)),
        "{message}"
    );
    assert_eq!(condition(&out_of_sync, "Ready").unwrap().status, "False");
    // Two more suspended passes (the 2 s interval) later, still nothing applied.
    let seen = scope.passes("GitSync", name);
    scope.wait_passes("GitSync", name, seen + 2).await;
    assert_eq!(
        image_of(&deployments).await.as_deref(),
        Some("registry.example/web:v3")
    );
    assert_eq!(
        gitsyncs
            .get(name)
            .await
            .unwrap()
            .status
            .unwrap()
            .last_applied_revision,
        Some(rev(&c7))
    );
    gitsyncs
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    wait_gitsync(&gitsyncs, name, "Ready at c8 after resume", WAIT, |g| {
        ready_at(g, &rev(&c8))
    })
    .await;
    assert_eq!(
        image_of(&deployments).await.as_deref(),
        Some("registry.example/web:v9")
    );

    // Clean up what is cluster-scoped or outside the test namespace.
    gitsyncs
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let pcs: Api<driftless_aws::ProviderConfig> = Api::all(scope.client.clone());
    let _ = pcs.delete(&pc, &DeleteParams::default()).await;
    let _ = deployments.delete("web", &DeleteParams::default()).await;
    let _ = configmaps.delete("keep-me", &DeleteParams::default()).await;
}

/// A CRD and objects of its kind in one revision: the CRD is applied and
/// established first, then its objects (dry-run included).
#[tokio::test]
async fn crd_and_its_objects_in_one_revision() {
    let mut scope = Scope::new("gitsync-crd").await;
    scope.start_controller(POLL);
    let gitsyncs: Api<GitSync> = scope.api();
    let group = format!("{}.example.com", unique("widgets"));
    let crd_name = format!("widgets.{group}");
    let repo = Repo::new();
    repo.write(
        "clusters/test/crd.yaml",
        &format!(
            r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {crd_name}
spec:
  group: {group}
  names: {{kind: Widget, plural: widgets, singular: widget}}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {{type: integer, maximum: 10}}
"#
        ),
    );
    // A List, whose items are applied like documents.
    repo.write(
        "clusters/test/widgets.yaml",
        &format!(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: {group}/v1\n  kind: Widget\n  metadata: {{name: small}}\n  spec: {{size: 1}}\n- apiVersion: {group}/v1\n  kind: Widget\n  metadata: {{name: large}}\n  spec: {{size: 9}}\n"
        ),
    );
    let c1 = repo.commit("a CRD and two widgets");
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync("widgets", &repo.url(), json!({})),
        )
        .await
        .unwrap();
    let gs = wait_gitsync(&gitsyncs, "widgets", "Ready at c1", WAIT, |g| {
        ready_at(g, &rev(&c1))
    })
    .await;
    assert_eq!(gs.status.unwrap().inventory.len(), 3);
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, "v1", "Widget"));
    let widgets: Api<DynamicObject> = Api::namespaced_with(scope.client.clone(), &scope.ns, &ar);
    let large = widgets.get("large").await.unwrap();
    assert_eq!(large.data["spec"]["size"], 9);

    // The schema of the new kind is enforced by the dry-run: nothing changes.
    repo.write(
        "clusters/test/widgets.yaml",
        &format!(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: {group}/v1\n  kind: Widget\n  metadata: {{name: small}}\n  spec: {{size: 2}}\n- apiVersion: {group}/v1\n  kind: Widget\n  metadata: {{name: large}}\n  spec: {{size: 99}}\n"
        ),
    );
    let c2 = repo.commit("too large");
    trigger(&gitsyncs, "widgets").await;
    let stalled = wait_gitsync(&gitsyncs, "widgets", "Stalled at c2", WAIT, |g| {
        is_true(g, "Stalled") && condition(g, "Stalled").unwrap().message.contains(&c2)
    })
    .await;
    let message = condition(&stalled, "Stalled").unwrap().message.clone();
    assert!(
        message.contains("clusters/test/widgets.yaml:8"),
        "{message}"
    );
    assert_eq!(widgets.get("small").await.unwrap().data["spec"]["size"], 1);

    gitsyncs
        .delete("widgets", &DeleteParams::default())
        .await
        .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(scope.client.clone());
    let _ = crds.delete(&crd_name, &DeleteParams::default()).await;
}

/// With workload checks on, a Deployment gates Ready until it is Available
/// (the test plays the Deployment controller this API server does not run).
#[tokio::test]
async fn deployments_gate_ready_until_available() {
    let mut scope = Scope::new("gitsync-health").await;
    scope.start_controller_with(POLL, |s| s.health_check_workloads = true);
    let gitsyncs: Api<GitSync> = scope.api();
    let deployments: Api<Deployment> = scope.api();
    let repo = Repo::new();
    let ns = scope.ns.clone();
    repo.write("clusters/test/web.yaml", &deployment_yaml(&ns, "v1"));
    let c1 = repo.commit("web");
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync("health", &repo.url(), json!({})),
        )
        .await
        .unwrap();
    let waiting = wait_gitsync(
        &gitsyncs,
        "health",
        "Reconciling on the Deployment",
        WAIT,
        |g| {
            is_true(g, "Reconciling")
                && g.status
                    .as_ref()
                    .and_then(|s| s.last_applied_revision.as_deref())
                    == Some(rev(&c1).as_str())
        },
    )
    .await;
    let message = condition(&waiting, "Reconciling").unwrap().message.clone();
    assert!(
        message.contains(&format!("Deployment {ns}/web (not yet observed")),
        "{message}"
    );
    assert_eq!(condition(&waiting, "Ready").unwrap().status, "False");

    let generation = deployments.get("web").await.unwrap().metadata.generation;
    deployments
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "observedGeneration": generation, "replicas": 3, "updatedReplicas": 3,
                "readyReplicas": 3, "availableReplicas": 3,
                "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
            }})),
        )
        .await
        .unwrap();
    let at = Instant::now();
    wait_gitsync(&gitsyncs, "health", "Ready once Available", WAIT, |g| {
        ready_at(g, &rev(&c1))
    })
    .await;
    eprintln!(
        "Ready after the Deployment became Available: {:?}",
        at.elapsed()
    );
}

/// fetch.rs against real repositories: branches, annotated tags, pinned
/// commits, paths, and the cheap check that fetches nothing when unchanged.
#[test]
fn fetch_follows_branches_tags_and_commits() {
    let repo = Repo::new();
    repo.write("clusters/test/a.yaml", "a: 1\n");
    repo.write("clusters/test/nested/deeper/b.yml", "b: 2\n");
    repo.write("clusters/test/notes.txt", "not yaml\n");
    repo.write("clusters/other/c.yaml", "c: 3\n");
    let c1 = repo.commit("one");
    repo.git(&["tag", "-a", "v1.0.0", "-m", "release"]);
    repo.git(&["push", "-q", "origin", "v1.0.0"]);
    std::os::unix::fs::symlink("a.yaml", repo.dir.join("work/clusters/test/link.yaml")).unwrap();
    repo.write("clusters/test/a.yaml", "a: 2\n");
    let c2 = repo.commit("two");

    let cache = repo.dir.join("cache.git");
    let deadline = Instant::now() + Duration::from_secs(30);
    let latest =
        |r: GitRef| fetch::latest(&cache, &repo.url(), &r, None, deadline).map(|f| f.revision);
    let branch = latest(GitRef {
        branch: Some("main".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        branch,
        Revision {
            name: "main".into(),
            sha: c2.clone()
        }
    );
    // No ref at all: branch main.
    assert_eq!(latest(GitRef::default()).unwrap(), branch);
    let tag = latest(GitRef {
        tag: Some("v1.0.0".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(tag.to_string(), format!("v1.0.0@sha1:{c1}"));
    let commit = latest(GitRef {
        commit: Some(c1.clone()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(commit.to_string(), format!("sha1:{c1}"));

    // A checkout holds the regular files under the path, at their place
    // from the repository root (no symbolic links), and goes when dropped.
    let co = fetch::checkout(&cache, &c2, "clusters/test").unwrap();
    assert_eq!(
        files_under(co.root()),
        vec![
            "clusters/test/a.yaml",
            "clusters/test/nested/deeper/b.yml",
            "clusters/test/notes.txt"
        ]
    );
    assert_eq!(
        std::fs::read(co.root().join("clusters/test/a.yaml")).unwrap(),
        b"a: 2\n"
    );
    let root = co.root().to_path_buf();
    drop(co);
    assert!(!root.exists(), "a checkout outlived its use");
    let old = fetch::checkout(&cache, &c1, "./clusters/test/").unwrap();
    assert_eq!(
        std::fs::read(old.root().join("clusters/test/a.yaml")).unwrap(),
        b"a: 1\n"
    );
    let all = fetch::checkout(&cache, &c2, "").unwrap();
    assert_eq!(files_under(all.root()).len(), 4);
    let err = fetch::checkout(&cache, &c2, "clusters/none")
        .unwrap_err()
        .to_string();
    assert!(err.contains("clusters/none"), "{err}");
    let err = latest(GitRef {
        branch: Some("nope".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.contains("refs/heads/nope"), "{err}");

    // Unchanged remote: the cheap check lists refs and fetches nothing (a
    // fetch writes FETCH_HEAD); a new commit is fetched.
    let fetch_head = cache.join("FETCH_HEAD");
    assert!(fetch_head.exists(), "the first check fetched");
    std::fs::remove_file(&fetch_head).unwrap();
    assert_eq!(latest(GitRef::default()).unwrap(), branch);
    assert!(!fetch_head.exists(), "an unchanged ref was fetched again");
    repo.write("clusters/test/a.yaml", "a: 3\n");
    let c3 = repo.commit("three");
    assert_eq!(latest(GitRef::default()).unwrap().sha, c3);
    assert!(fetch_head.exists(), "a new commit was not fetched");
}

/// Every file below `root`, as paths from it, sorted.
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Credentials never show: not in the status, not in Events. A Secret that
/// is missing or incomplete is named, with what it lacks.
#[tokio::test]
async fn credentials_are_never_shown() {
    let mut scope = Scope::new("gitsync-creds").await;
    scope.start_controller(POLL);
    let gitsyncs: Api<GitSync> = scope.api();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = scope.api();
    let secret = |name: &str, data: serde_json::Value| {
        serde_json::from_value::<k8s_openapi::api::core::v1::Secret>(
            json!({"metadata": {"name": name}, "stringData": data}),
        )
        .unwrap()
    };
    secrets
        .create(
            &PostParams::default(),
            &secret("token", json!({"token": "tok-SECRET-1"})),
        )
        .await
        .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &secret(
                "no-known-hosts",
                json!({"identity": "-----BEGIN OPENSSH PRIVATE KEY-----\nKEY-SECRET-2\n"}),
            ),
        )
        .await
        .unwrap();
    // Port 9 (discard) on this machine: nothing listens, so every fetch fails.
    let cases = [
        (
            "in-url",
            "https://bob:pw-SECRET-3@127.0.0.1:9/r.git",
            None,
            "https://bob:***@127.0.0.1:9/r.git",
        ),
        (
            "token",
            "https://127.0.0.1:9/r.git",
            Some("token"),
            "cannot reach https://127.0.0.1:9/r.git",
        ),
        (
            "missing",
            "https://127.0.0.1:9/r.git",
            Some("nope"),
            &format!("Secret {}/nope (spec.secretRef) does not exist", scope.ns),
        ),
        (
            "ssh",
            "ssh://git@127.0.0.1:9/r.git",
            Some("no-known-hosts"),
            "has an identity but no known_hosts",
        ),
    ];
    for (name, url, secret_ref, _) in &cases {
        let mut spec = json!({});
        if let Some(s) = secret_ref {
            spec = json!({"secretRef": {"name": s}});
        }
        gitsyncs
            .create(&PostParams::default(), &new_gitsync(name, url, spec))
            .await
            .unwrap();
    }
    for (name, _, _, expected) in &cases {
        let gs = wait_gitsync(&gitsyncs, name, "FetchFailed", WAIT, |g| {
            condition(g, "Ready").is_some_and(|c| c.reason == "FetchFailed")
        })
        .await;
        let message = condition(&gs, "Ready").unwrap().message.clone();
        assert!(message.contains(expected), "{name}: {message}");
        let shown = serde_json::to_string(&gs.status).unwrap();
        let events = wait_for("a FetchFailed event", WAIT, || async {
            let notes = event_notes(&scope, name, "FetchFailed").await;
            (!notes.is_empty()).then_some(notes)
        })
        .await;
        for text in [shown, events.join("\n")] {
            assert!(
                !text.contains("SECRET"),
                "{name}: a credential is shown: {text}"
            );
        }
    }
}

/// `POST /hooks/<ns>/<gitsync>` with a valid signature triggers a sync at
/// once; a bad or missing one gets 401 and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_triggers_a_sync() {
    use aws_lc_rs::hmac;

    let mut scope = Scope::new("hook").await;
    let repo = Repo::new();
    repo.write("clusters/test/cm.yaml", &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: hooked, namespace: {}}}\ndata: {{v: one}}\n", scope.ns));
    repo.commit("one");
    let (ok, out, err) = scope
        .kubectl(
            &[
                "create",
                "secret",
                "generic",
                "-n",
                &scope.ns,
                "hook-key",
                "--from-literal=token=s3cret",
            ],
            None,
        )
        .await;
    assert!(ok, "{out}{err}");
    let api: Api<GitSync> = scope.api();
    api.create(
        &PostParams::default(),
        &new_gitsync(
            "hooked",
            &repo.url(),
            json!({"webhookSecretRef": {"name": "hook-key"}}),
        ),
    )
    .await
    .unwrap();
    let metrics = std::sync::Arc::new(driftless::ops::metrics::Metrics::new(scope.calls.clone()));
    let addr = support::serve_http(scope.client.clone(), metrics).await;
    scope.start_controller(POLL);
    let cms: Api<ConfigMap> = scope.api();
    let value = |cms: Api<ConfigMap>| async move {
        cms.get_opt("hooked")
            .await
            .ok()
            .flatten()
            .and_then(|c| c.data?.get("v").cloned())
    };
    wait_for("the first revision", WAIT, || async {
        value(cms.clone()).await.filter(|v| v == "one")
    })
    .await;

    let post = |path: String, headers: Vec<(&'static str, String)>, body: &'static [u8]| {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        support::http_request(addr, "POST", &path, &headers, body).0
    };
    let body: &'static [u8] = br#"{"ref":"refs/heads/main"}"#;
    let sign = |key: &[u8]| {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), body);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256={hex}")
    };
    let path = format!("/hooks/{}/hooked", scope.ns);

    // A new commit; the interval is an hour, so only a webhook applies it.
    repo.write("clusters/test/cm.yaml", &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: hooked, namespace: {}}}\ndata: {{v: two}}\n", scope.ns));
    repo.commit("two");
    let requested = || async {
        api.get("hooked")
            .await
            .unwrap()
            .annotations()
            .get(REQUESTED_AT)
            .cloned()
    };
    let before = requested().await;
    let passes = scope.passes("GitSync", "hooked");
    assert_eq!(
        post(
            path.clone(),
            vec![("x-hub-signature-256", sign(b"wrong"))],
            body
        ),
        401
    );
    assert_eq!(post(path.clone(), vec![], body), 401, "no signature");
    assert_eq!(
        post(
            format!("/hooks/{}/nosuch", scope.ns),
            vec![("x-hub-signature-256", sign(b"s3cret"))],
            body
        ),
        401
    );
    // The handler answers a refusal without writing anything, and a sync
    // starts only from the request annotation it would write: there is
    // nothing to wait for. The accepted webhook below is the positive
    // control (the annotation appears, and a pass applies the commit).
    assert_eq!(requested().await, before, "a refused webhook does nothing");
    assert_eq!(value(cms.clone()).await.as_deref(), Some("one"));

    let sent = Instant::now();
    assert_eq!(
        post(
            path.clone(),
            vec![("x-hub-signature-256", sign(b"s3cret"))],
            body
        ),
        202
    );
    // Generous: the figure is printed (and benchmarked), the outcome asserted.
    wait_for("the webhook to apply the new commit", WAIT, || async {
        value(cms.clone()).await.filter(|v| v == "two")
    })
    .await;
    eprintln!("webhook to applied: {:?}", sent.elapsed());
    assert!(requested().await.is_some());
    // The webhook's sync is a pass of the GitSync.
    scope.wait_passes("GitSync", "hooked", passes + 1).await;
}

/// A refused revision keeps saying why (Stalled, file:line) for as long as
/// it is the latest: sampled across several intervals, each of which makes
/// a pass that checks the remote again. (It once flipped to
/// "Progressing: applying revision" at the next interval and stayed there.)
#[tokio::test]
async fn a_refused_revision_stays_stalled_across_intervals() {
    let mut scope = Scope::new("gitsync-stalled").await;
    scope.start_controller(POLL);
    let gitsyncs: Api<GitSync> = scope.api();
    let name = "stalled";
    let repo = Repo::new();
    repo.write(
        "clusters/test/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\ndata: {a: b}\n",
    );
    repo.write(
        "clusters/test/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\ndata:\n  key: [unclosed\n  other: value\n",
    );
    let sha = repo.commit("a broken file");
    let interval = Duration::from_secs(2);
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync(name, &repo.url(), json!({"interval": "2s"})),
        )
        .await
        .unwrap();
    wait_gitsync(&gitsyncs, name, "Stalled", WAIT, |g| is_true(g, "Stalled")).await;
    let first = scope.passes("GitSync", name);
    let started = Instant::now();
    let mut samples = 0;
    // At least three more intervals, each with its own pass.
    while scope.passes("GitSync", name) < first + 3 {
        assert!(
            started.elapsed() < interval * 30,
            "the controller made no passes: {} after {:?}",
            scope.passes("GitSync", name) - first,
            started.elapsed()
        );
        let gs = gitsyncs.get(name).await.unwrap();
        let stalled = condition(&gs, "Stalled").map(|c| (c.status.clone(), c.message.clone()));
        let ready = condition(&gs, "Ready").map(|c| (c.reason.clone(), c.message.clone()));
        assert!(
            matches!(&stalled, Some((s, m)) if s == "True" && m.contains("clusters/test/broken.yaml:7") && m.contains(&rev(&sha))),
            "sample {samples}: Stalled must name file:line of the latest revision, got {stalled:?} (Ready {ready:?})"
        );
        assert!(
            matches!(&ready, Some((r, _)) if r == "InvalidManifests"),
            "sample {samples}: Ready must say InvalidManifests, got {ready:?}"
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "{samples} samples over {:?} and {} passes: Stalled throughout",
        started.elapsed(),
        scope.passes("GitSync", name) - first
    );
}
