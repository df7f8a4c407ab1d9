//! Push mode (`driftless plan | apply | get`) against LocalStack: the binary
//! itself, run as a user runs it, with the AWS environment pointing at it.

use std::path::Path;
use std::process::Command;

use crate::support::{env, s3, unique};

/// Runs the driftless binary; returns (exit code, stdout, stderr).
pub fn driftless(args: &[&str]) -> (i32, String, String) {
    let env = env();
    let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(args)
        .env("AWS_ENDPOINT_URL", &env.aws_endpoint)
        .env("AWS_REGION", &env.region)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("the driftless binary runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("$ driftless {}\n{stdout}{stderr}", args.join(" "));
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn bucket_yaml(name: &str, team: &str, extra: &str) -> String {
    format!(
        "apiVersion: aws.driftless.dev/v1alpha1
kind: Bucket
metadata:
  name: {name}
  namespace: web
spec:
{extra}  forProvider:
    versioning: Enabled
    tags:
      team: {team}
"
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(file), text).unwrap();
}

async fn s3_tag(name: &str, key: &str) -> Option<String> {
    let out = s3()
        .await
        .get_bucket_tagging()
        .bucket(name)
        .send()
        .await
        .ok()?;
    out.tag_set()
        .iter()
        .find(|t| t.key() == key)
        .map(|t| t.value().to_string())
}

async fn bucket_exists(name: &str) -> bool {
    s3().await.head_bucket().bucket(name).send().await.is_ok()
}

#[tokio::test]
async fn plan_apply_then_replan_is_a_noop() {
    let stack = unique("st");
    let dir = tempfile::tempdir().unwrap();
    let (logs, assets) = (unique("push-logs"), unique("push-assets"));
    write(dir.path(), "logs.yaml", &bucket_yaml(&logs, "web", ""));
    write(dir.path(), "assets.yaml", &bucket_yaml(&assets, "web", ""));
    // Not ours: push mode leaves it to a cluster.
    write(
        dir.path(),
        "app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n",
    );
    let path = dir.path().to_str().unwrap();

    let (code, out, _) = driftless(&["plan", path, "--stack", &stack]);
    assert_eq!(code, 2, "changes pending");
    assert!(
        out.contains(&format!("+ Bucket web/{logs}: create")),
        "{out}"
    );
    assert!(
        out.contains("plan: 2 to create, 0 to update, 0 to delete"),
        "{out}"
    );
    assert!(!bucket_exists(&logs).await, "plan changes nothing");

    let (code, out, err) = driftless(&["apply", path, "--stack", &stack]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 created, 0 failed"), "{out}");
    assert!(
        err.contains(&format!("created   Bucket web/{logs}")),
        "progress is shown: {err}"
    );
    // The tags are the state: one names the stack, one the object.
    assert_eq!(
        s3_tag(&logs, "driftless.dev/stack").await.as_deref(),
        Some(stack.as_str())
    );
    assert_eq!(
        s3_tag(&logs, "driftless.dev/owner").await,
        Some(format!("stack/{stack}/web/{logs}"))
    );

    let (code, out, _) = driftless(&["plan", path, "--stack", &stack]);
    assert_eq!(code, 0, "a re-plan after apply is a no-op: {out}");
    assert!(
        out.contains("0 to create, 0 to update, 0 to delete, 2 unchanged"),
        "{out}"
    );
    // What it cost is reported: two buckets are observed with a handful of
    // calls each (list by tags, head, tags, versioning, ...), never zero.
    let calls: u64 = out
        .split(" cloud API calls")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("plan reports its cloud API calls: {out}"));
    assert!(
        (2..=40).contains(&calls),
        "{calls} calls for 2 buckets: {out}"
    );
    let (code, out, _) = driftless(&["apply", path, "--stack", &stack]);
    assert_eq!(code, 0);
    assert!(out.contains("2 unchanged, 0 failed"), "{out}");

    // A change in the manifests is a field-level update.
    write(dir.path(), "logs.yaml", &bucket_yaml(&logs, "data", ""));
    let (code, out, _) = driftless(&["plan", path, "--stack", &stack]);
    assert_eq!(code, 2);
    assert!(
        out.contains(&format!("~ Bucket web/{logs}: update")),
        "{out}"
    );
    assert!(
        out.contains(r#"forProvider.tags: {team="web"} -> {team="data"}"#),
        "only the changed tag is shown: {out}"
    );
    let (code, _, _) = driftless(&["apply", path, "--stack", &stack]);
    assert_eq!(code, 0);
    assert_eq!(s3_tag(&logs, "team").await.as_deref(), Some("data"));

    // Drift made by hand is put back by the next apply.
    s3().await
        .put_bucket_versioning()
        .bucket(&assets)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (code, out, _) = driftless(&["plan", path, "--stack", &stack]);
    assert_eq!(code, 2);
    assert!(
        out.contains("forProvider.versioning: Suspended -> Enabled"),
        "{out}"
    );
    assert_eq!(driftless(&["apply", path, "--stack", &stack]).0, 0);
    assert_eq!(driftless(&["plan", path, "--stack", &stack]).0, 0);

    let (code, out, _) = driftless(&["get", "--stack", &stack]);
    assert_eq!(code, 0);
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("KIND")
            && header.contains("READY")
            && header.contains("EXTERNAL-NAME")
            && header.contains("STATE"),
        "{out}"
    );
    for name in [&logs, &assets] {
        let row = out
            .lines()
            .find(|l| l.contains(&format!("web/{name}")))
            .unwrap_or_else(|| panic!("{name} listed: {out}"));
        assert!(
            row.starts_with("Bucket") && row.contains("True") && row.contains("available"),
            "{row}"
        );
    }

    // Clean up through the product: an empty set with --prune.
    let empty = tempfile::tempdir().unwrap();
    let (code, _, _) = driftless(&[
        "apply",
        empty.path().to_str().unwrap(),
        "--stack",
        &stack,
        "--prune",
    ]);
    assert_eq!(code, 0);
    assert!(!bucket_exists(&logs).await && !bucket_exists(&assets).await);
}

#[tokio::test]
async fn prune_deletes_what_left_git_and_keeps_orphans() {
    let stack = unique("st");
    let dir = tempfile::tempdir().unwrap();
    let (stays, goes, kept) = (
        unique("push-stays"),
        unique("push-goes"),
        unique("push-kept"),
    );
    write(dir.path(), "stays.yaml", &bucket_yaml(&stays, "a", ""));
    write(dir.path(), "goes.yaml", &bucket_yaml(&goes, "a", ""));
    write(
        dir.path(),
        "kept.yaml",
        &bucket_yaml(&kept, "a", "  deletionPolicy: Orphan\n"),
    );
    let path = dir.path().to_str().unwrap();
    assert_eq!(driftless(&["apply", path, "--stack", &stack]).0, 0);
    // Another stack's bucket is never touched by this stack's prune.
    let other_stack = unique("st");
    let other_dir = tempfile::tempdir().unwrap();
    let other = unique("push-other");
    write(
        other_dir.path(),
        "other.yaml",
        &bucket_yaml(&other, "a", ""),
    );
    assert_eq!(
        driftless(&[
            "apply",
            other_dir.path().to_str().unwrap(),
            "--stack",
            &other_stack
        ])
        .0,
        0
    );

    std::fs::remove_file(dir.path().join("goes.yaml")).unwrap();
    std::fs::remove_file(dir.path().join("kept.yaml")).unwrap();

    // Without --prune nothing is deleted.
    let (code, out, _) = driftless(&["apply", path, "--stack", &stack]);
    assert_eq!(code, 0, "{out}");
    assert!(bucket_exists(&goes).await);

    let (code, out, _) = driftless(&["plan", path, "--stack", &stack, "--prune"]);
    assert_eq!(code, 2);
    assert!(
        out.contains(&format!("- Bucket web/{goes}: delete {goes}")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "= Bucket web/{kept}: no longer declared; {kept} is kept (deletionPolicy: Orphan)"
        )),
        "{out}"
    );
    assert!(!out.contains(&other), "another stack is not listed: {out}");

    let (code, out, _) = driftless(&["apply", path, "--stack", &stack, "--prune"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 deleted") && out.contains("1 orphaned"),
        "{out}"
    );
    assert!(!bucket_exists(&goes).await, "pruned");
    assert!(bucket_exists(&kept).await, "Orphan is honoured");
    assert!(bucket_exists(&stays).await);
    assert!(bucket_exists(&other).await, "another stack's bucket stays");

    // Clean up.
    let empty = tempfile::tempdir().unwrap();
    let empty = empty.path().to_str().unwrap();
    driftless(&["apply", empty, "--stack", &stack, "--prune"]);
    driftless(&["apply", empty, "--stack", &other_stack, "--prune"]);
    let _ = s3().await.delete_bucket().bucket(&kept).send().await;
}

#[tokio::test]
async fn invalid_manifests_apply_nothing() {
    let stack = unique("st");
    let dir = tempfile::tempdir().unwrap();
    let good = unique("push-good");
    write(dir.path(), "good.yaml", &bucket_yaml(&good, "a", ""));
    write(
        dir.path(),
        "bad.yaml",
        "apiVersion: aws.driftless.dev/v1alpha1\nkind: Bucket\nmetadata: {name: Bad_Name}\nspec:\n  forProvider: {}\n",
    );
    let path = dir.path().to_str().unwrap();
    let (code, out, _) = driftless(&["apply", path, "--stack", &stack]);
    assert_eq!(code, 1);
    assert!(
        out.contains("bad.yaml:3:12: Bucket Bad_Name: metadata.name: invalid bucket name"),
        "{out}"
    );
    assert!(!bucket_exists(&good).await, "a broken set applies nothing");

    let (code, _, err) = driftless(&["plan", path, "--stack", "no spaces"]);
    assert_eq!(code, 1);
    assert!(err.contains("--stack \"no spaces\""), "{err}");
}

#[tokio::test]
async fn a_crashed_apply_is_completed_without_duplicates() {
    use std::io::{BufRead, BufReader};
    let stack = unique("st");
    let dir = tempfile::tempdir().unwrap();
    let count = 12;
    let mut text = String::new();
    for i in 0..count {
        text.push_str(&format!(
            "---\napiVersion: aws.driftless.dev/v1alpha1\nkind: Vpc\nmetadata: {{name: net-{i}, namespace: crash}}\nspec:\n  forProvider: {{cidrBlock: 10.{i}.0.0/16}}\n"
        ));
    }
    write(dir.path(), "vpcs.yaml", &text);
    let path = dir.path().to_str().unwrap();

    // Kill the first apply (SIGKILL: no cleanup) as soon as one VPC is done.
    let env = env();
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(["apply", path, "--stack", &stack, "--concurrency", "2"])
        .env("AWS_ENDPOINT_URL", &env.aws_endpoint)
        .env("AWS_REGION", &env.region)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    for line in BufReader::new(stderr).lines() {
        if line.unwrap().contains("created") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let ec2 = crate::support::ec2().await;
    let tagged = || async {
        let out = ec2
            .describe_vpcs()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:driftless.dev/stack")
                    .values(&stack)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.vpcs()
            .iter()
            .map(|v| {
                v.tags()
                    .iter()
                    .find(|t| t.key() == Some("driftless.dev/owner"))
                    .and_then(|t| t.value())
                    .unwrap_or_default()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    let before = tagged().await.len();
    assert!(
        before >= 1 && before < count,
        "the apply was killed halfway: {before} of {count} created"
    );

    let (code, out, _) = driftless(&["apply", path, "--stack", &stack]);
    assert_eq!(code, 0, "{out}");
    let mut owners = tagged().await;
    owners.sort();
    let mut unique_owners = owners.clone();
    unique_owners.dedup();
    assert_eq!(
        owners.len(),
        count,
        "exactly one VPC per object: {owners:?}"
    );
    assert_eq!(unique_owners.len(), count, "{owners:?}");
    let (code, out, _) = driftless(&["plan", path, "--stack", &stack]);
    assert_eq!(code, 0, "the next plan is a no-op: {out}");

    let empty = tempfile::tempdir().unwrap();
    let (code, out, _) = driftless(&[
        "apply",
        empty.path().to_str().unwrap(),
        "--stack",
        &stack,
        "--prune",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(tagged().await.is_empty(), "pruned");
}
