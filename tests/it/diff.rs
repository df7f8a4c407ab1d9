//! `driftless diff` against a GitSync the controller applied: the binary as
//! a CI job runs it (exit codes, output), and the cloud plan in-process,
//! where its cloud calls are counted.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::types::BucketVersioningStatus;
use driftless::cli::diff::{self, Request};
use driftless::gitsync::GitSync;
use driftless_provider::CallCounter;
use kube::api::PostParams;
use kube::Api;

use crate::gitsync::{new_gitsync, ready_at, rev, wait_gitsync, Repo};
use crate::support::{self, s3, unique, Scope};

const WAIT: Duration = Duration::from_secs(90);
const PATH: &str = "clusters/test";

/// Runs `driftless diff` in the repository's working clone (as a CI job in
/// its checkout); returns (exit code, stdout, stderr).
pub(crate) fn driftless_diff(repo: &Repo, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .arg("diff")
        .args(args)
        .current_dir(repo.work_dir())
        .env("KUBECONFIG", &support::env().kubeconfig)
        .env("DRIFTLESS_KUSTOMIZE_BINARY", support::tool("kustomize"))
        .env("DRIFTLESS_HELM_BINARY", support::tool("helm"))
        .output()
        .expect("the driftless binary runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("$ driftless diff {}\n{stdout}{stderr}", args.join(" "));
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn config_map(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  color: {value}\n")
}

fn secret(password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-login\nstringData:\n  user: admin\n  password: {password}\n"
    )
}

fn bucket_yaml(name: &str, pc: &str, versioning: &str) -> String {
    format!(
        "apiVersion: aws.driftless.dev/v1alpha1
kind: Bucket
metadata:
  name: {name}
spec:
  providerConfigRef:
    name: {pc}
  forProvider:
    versioning: {versioning}
"
    )
}

/// What a GitSync has applied (and the controller made in the cloud): a
/// ConfigMap to change, one to remove, a Secret, and a Bucket whose
/// versioning is Suspended. The controller is stopped afterwards, so that
/// only the diff acts.
struct Applied {
    scope: Scope,
    repo: Repo,
    bucket: String,
    /// A second bucket, which the pull request removes.
    logs: String,
    gitsync: String,
}

async fn applied(prefix: &str) -> Applied {
    let mut scope = Scope::new(prefix).await;
    let repo = Repo::new();
    let bucket = unique("diff-uploads");
    repo.write(&format!("{PATH}/web.yaml"), &config_map("web", "blue"));
    repo.write(&format!("{PATH}/old.yaml"), &config_map("old", "grey"));
    repo.write(&format!("{PATH}/secret.yaml"), &secret("hunter2"));
    let pc = scope.provider_config.clone();
    repo.write(
        &format!("{PATH}/bucket.yaml"),
        &bucket_yaml(&bucket, &pc, "Suspended"),
    );
    let logs = unique("diff-logs");
    repo.write(
        &format!("{PATH}/logs.yaml"),
        &bucket_yaml(&logs, &pc, "Enabled"),
    );
    let sha = repo.commit("the applied revision");
    scope.start_controller(Duration::from_secs(2));
    let api: Api<GitSync> = scope.api();
    let gs = new_gitsync("apps", &repo.url(), serde_json::json!({}));
    api.create(&PostParams::default(), &gs).await.unwrap();
    wait_gitsync(&api, "apps", "applied", WAIT, |g| ready_at(g, &rev(&sha))).await;
    // Ready includes the bucket's own Ready: it exists in the cloud.
    assert_eq!(
        versioning(&bucket).await,
        Some(BucketVersioningStatus::Suspended)
    );
    scope.stop_controller();
    let gitsync = format!("{}/apps", scope.ns);
    Applied {
        scope,
        repo,
        bucket,
        logs,
        gitsync,
    }
}

/// The pull request: the ConfigMap's color, the Secret's password and the
/// bucket's versioning change; `old.yaml` and the logs bucket go.
fn pull_request(a: &Applied) {
    a.repo
        .write(&format!("{PATH}/web.yaml"), &config_map("web", "green"));
    a.repo
        .write(&format!("{PATH}/secret.yaml"), &secret("correct-horse"));
    a.repo.write(
        &format!("{PATH}/bucket.yaml"),
        &bucket_yaml(&a.bucket, &a.scope.provider_config, "Enabled"),
    );
    a.repo.remove(&format!("{PATH}/old.yaml"));
    a.repo.remove(&format!("{PATH}/logs.yaml"));
}

async fn versioning(name: &str) -> Option<BucketVersioningStatus> {
    let out = s3().await.get_bucket_versioning().bucket(name).send().await;
    out.ok()?.status().cloned()
}

#[tokio::test]
async fn diff_exits_0_1_2_masks_secrets_and_lists_what_prune_deletes() {
    let a = applied("diff-exit").await;
    let (ns, gitsync) = (&a.scope.ns, a.gitsync.as_str());

    // The applied revision itself: nothing to say.
    let (code, out, _) = driftless_diff(&a.repo, &[PATH, "--gitsync", gitsync]);
    assert_eq!(code, 0, "no difference: {out}");
    assert!(
        out.contains("0 to create, 0 to update, 0 to prune, 5 unchanged"),
        "{out}"
    );
    assert!(out.contains("0 writes"), "{out}");

    pull_request(&a);
    let (code, out, _) = driftless_diff(&a.repo, &[PATH, "--gitsync", gitsync]);
    assert_eq!(code, 1, "differences: {out}");
    assert!(
        out.contains(&format!(
            "~ ConfigMap {ns}/web (clusters/test/web.yaml:1:1)"
        )),
        "{out}"
    );
    assert!(out.contains("-  color: blue\n+  color: green\n"), "{out}");
    // The Secret: which key changed, never a value (nor its base64).
    assert!(out.contains(&format!("~ Secret {ns}/web-login")), "{out}");
    assert!(
        out.contains("-  password: \"*** (before)\"\n+  password: \"*** (after)\""),
        "{out}"
    );
    assert!(out.contains("   user: \"***\""), "{out}");
    for leak in ["hunter2", "correct-horse", "aHVudGVyMg", "YWRtaW4"] {
        assert!(!out.contains(leak), "{leak} shown: {out}");
    }
    // Prune: the removed ConfigMap, with its live content.
    assert!(
        out.contains(&format!("- ConfigMap {ns}/old (pruned: no longer in PATH)")),
        "{out}"
    );
    assert!(out.contains("-  color: grey"), "{out}");
    assert!(out.contains("2 to prune"), "{out}");
    // The cloud plan of the bucket, and the bucket left as it is.
    let line = format!(
        "~ Bucket {ns}/{}: forProvider.versioning: Suspended -> Enabled",
        a.bucket
    );
    assert!(out.contains(&line), "{out}");
    let gone = format!(
        "- Bucket {ns}/{0}: delete {0} (deletionPolicy Delete)",
        a.logs
    );
    assert!(out.contains(&gone), "{out}");
    assert!(
        out.contains("cloud: 0 to create, 1 to update, 1 to delete"),
        "{out}"
    );
    assert_eq!(
        versioning(&a.bucket).await,
        Some(BucketVersioningStatus::Suspended)
    );
    assert_eq!(
        versioning(&a.logs).await,
        Some(BucketVersioningStatus::Enabled)
    );

    // -o markdown: a section per object, for a pull-request comment.
    let (code, md, _) = driftless_diff(
        &a.repo,
        &[PATH, "-n", ns, "--gitsync", "apps", "-o", "markdown"],
    );
    assert_eq!(code, 1, "{md}");
    assert!(md.starts_with("### driftless diff\n"), "{md}");
    assert_eq!(
        md.matches("<details>").count(),
        5,
        "web, web-login, 2 buckets, old: {md}"
    );
    assert!(
        md.contains(&format!("<summary><code>- ConfigMap {ns}/old (pruned")),
        "{md}"
    );
    assert!(md.contains(&format!("```diff\n{line}\n")), "{md}");

    // Without --gitsync there is no inventory: no prune list, and it says so.
    let (code, out, _) = driftless_diff(&a.repo, &[PATH, "-n", ns]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("prune: not shown (no --gitsync"), "{out}");
    assert!(!out.contains(&format!("ConfigMap {ns}/old")), "{out}");
    assert!(
        !out.contains("-    driftless.dev/gitsync-name"),
        "the owner labels objects have live are kept: {out}"
    );

    // An object the API server refuses (no selector): exit 2, at its file:line,
    // the other objects still compared.
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad\nspec:\n  template:\n    spec:\n      containers: [{name: web, image: web}]\n";
    a.repo.write(&format!("{PATH}/deploy.yaml"), deployment);
    let (code, out, _) = driftless_diff(&a.repo, &[PATH, "--gitsync", gitsync]);
    assert_eq!(code, 2, "{out}");
    let refused = format!(
        "error: clusters/test/deploy.yaml:1:1: Deployment {ns}/bad was refused by the API server (dry-run)"
    );
    assert!(out.contains(&refused), "{out}");
    assert!(out.contains(&format!("~ ConfigMap {ns}/web")), "{out}");
    a.repo.remove(&format!("{PATH}/deploy.yaml"));

    // A broken manifest: exit 2, at its file:line, nothing compared.
    a.repo.write(
        &format!("{PATH}/broken.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n",
    );
    let (code, out, err) = driftless_diff(&a.repo, &[PATH, "--gitsync", gitsync]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("clusters/test/broken.yaml:4"), "{err}");
    assert!(out.is_empty(), "nothing compared: {out}");
}

#[tokio::test]
async fn diff_plans_the_cloud_read_only() {
    let a = applied("diff-cloud").await;
    pull_request(&a);
    let calls = Arc::new(CallCounter::default());
    let local = driftless::render::Local {
        tools: support::render_tools(),
        helm: None,
        timeout: Duration::from_secs(60),
    };
    let req = Request {
        paths: vec![a.repo.work_dir().join(PATH)],
        gitsync: Some((a.scope.ns.clone(), "apps".into())),
        namespace: None,
    };
    let report = diff::run(&a.scope.client, &req, &local, calls.clone())
        .await
        .expect("the diff runs");
    let key = format!("Bucket {}/{}", a.scope.ns, a.bucket);
    let lines: Vec<String> = report.cloud.iter().map(ToString::to_string).collect();
    let logs = format!("Bucket {}/{}", a.scope.ns, a.logs);
    assert_eq!(
        lines,
        vec![
            format!("~ {key}: forProvider.versioning: Suspended -> Enabled"),
            format!("- {logs}: delete {} (deletionPolicy Delete)", a.logs),
        ],
        "{report:#?}"
    );
    assert_eq!(report.exit_code(), 1);
    // Every call the diff made, by operation: reads only, and some.
    let made = calls.snapshot();
    eprintln!("cloud calls of the diff: {made:?}");
    assert!(!made.is_empty(), "the cloud was read");
    let writes: Vec<_> = made
        .keys()
        .filter(|k| !diff::is_read(&k.operation))
        .collect();
    assert!(writes.is_empty(), "write calls: {writes:?}");
    assert_eq!(report.cloud_writes(), 0);
    assert_eq!(
        versioning(&a.bucket).await,
        Some(BucketVersioningStatus::Suspended)
    );
    assert_eq!(
        versioning(&a.logs).await,
        Some(BucketVersioningStatus::Enabled),
        "not deleted"
    );

    // Merged, not applied yet (the controller is stopped): without PATH, the
    // GitSync's next revision, from its repository, says the same.
    a.repo.commit("the pull request, merged");
    let (code, out, err) = driftless_diff(&a.repo, &["--gitsync", &a.gitsync]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("next revision main@sha1:"), "{err}");
    assert!(out.contains(&lines.join("\n  ")), "{out}");
    assert!(out.contains("(clusters/test/web.yaml:1:1)"), "{out}");
    assert!(
        out.contains("0 to create, 3 to update, 2 to prune"),
        "{out}"
    );
}

#[tokio::test]
async fn what_sops_encrypted_is_masked_in_the_diff() {
    let mut scope = Scope::new("diff-sops").await;
    let sops = crate::sops::Sops::new();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sops-age"},
        "stringData": {"diff.agekey": sops.key_text()},
    }))
    .unwrap();
    scope
        .api::<k8s_openapi::api::core::v1::Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let encrypted = |token: &str| {
        let plain = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: api\ndata:\n  token: {token}\n  region: eu\n"
        );
        sops.encrypt("api.yaml", &plain, &["--encrypted-regex", "^token$"])
    };
    let repo = Repo::new();
    repo.write(&format!("{PATH}/api.yaml"), &encrypted("old-t0ken"));
    let sha = repo.commit("an encrypted ConfigMap");
    scope.start_controller(Duration::from_secs(2));
    let api: Api<GitSync> = scope.api();
    let spec =
        serde_json::json!({"decryption": {"provider": "sops", "secretRef": {"name": "sops-age"}}});
    api.create(
        &PostParams::default(),
        &new_gitsync("apps", &repo.url(), spec),
    )
    .await
    .unwrap();
    wait_gitsync(&api, "apps", "applied", WAIT, |g| ready_at(g, &rev(&sha))).await;
    scope.stop_controller();

    repo.write(&format!("{PATH}/api.yaml"), &encrypted("new-t0ken"));
    let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(["diff", PATH, "--gitsync", &format!("{}/apps", scope.ns)])
        .current_dir(repo.work_dir())
        .env("KUBECONFIG", &support::env().kubeconfig)
        .env("SOPS_AGE_KEY_FILE", &sops.key_file)
        .env_remove("SOPS_AGE_KEY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("-  token: \"**SOPS** (before)\"\n+  token: \"**SOPS** (after)\""),
        "{text}"
    );
    assert!(
        text.contains("   region: eu"),
        "what was not encrypted shows: {text}"
    );
    for leak in ["old-t0ken", "new-t0ken"] {
        assert!(!text.contains(leak), "{leak} shown: {text}");
    }
}
