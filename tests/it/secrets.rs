//! Secrets in Git, end to end: a key made in the cluster with `driftless
//! keys create`, a Secret encrypted with the real `sops` for its recipient,
//! a GitSync (the real controller binary) that applies it decrypted, and the
//! plaintext nowhere else. Refused revisions name the file; push mode
//! decrypts with sops' own SOPS_AGE_KEY_FILE.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use driftless::gitsync::GitSync;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::gitsync::{
    condition, new_gitsync, ready_at, rev, trigger, wait_gitsync, wait_stalled_at, Repo,
};
use crate::support::{self, env, tool, unique, Owned, Scope};

const WAIT: Duration = Duration::from_secs(90);

/// Runs the driftless binary against the test cluster; (ok, stdout, stderr).
fn driftless(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(args)
        .env("KUBECONFIG", &env().kubeconfig)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sops --encrypt` of `plain` (named `name`, so `.sops.yaml` rules in
/// `dir` apply), with the real binary.
fn sops_encrypt(dir: &Path, name: &str, plain: &str, extra: &[&str]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, plain).unwrap();
    let out = Command::new(tool("sops"))
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY")
        .args(["--disable-version-check", "--encrypt"])
        .args(extra)
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(
        out.status.success(),
        "sops: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn secret_yaml(password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\nstringData:\n  password: {password}\n  user: app\n"
    )
}

/// The controller as users run it, logging at debug level into `log`.
fn controller(ns: &str, cache: &Path, log: &Path) -> Owned {
    let child = support::controller_command(ns)
        .args([
            "--health-check-workloads=false",
            "--allow-file-urls",
            "--git-cache",
        ])
        .arg(cache)
        .env("DRIFTLESS_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Owned(child)
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(p.display().to_string());
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn a_key_made_in_the_cluster_decrypts_a_secret_from_git_and_the_plaintext_stays_in_memory() {
    let scope = Scope::new("secrets").await;
    let ns = scope.ns.clone();
    let work = tempfile::tempdir().unwrap();
    let (cache, log) = (
        work.path().join("cache"),
        work.path().join("controller.log"),
    );
    let _controller = controller(&ns, &cache, &log);

    // The sealed-secrets flow: the key is made in the cluster, only the
    // recipient comes back.
    let (ok, recipient, err) = driftless(&["keys", "create", "-n", &ns, "sops-key"]);
    assert!(ok, "{err}");
    let recipient = recipient.trim().to_string();
    assert!(
        recipient.starts_with("age1") && !recipient.contains('\n'),
        "{recipient}"
    );
    assert!(!err.contains("AGE-SECRET-KEY") && !recipient.contains("AGE-SECRET-KEY"));
    let (ok, again, _) = driftless(&["keys", "public", "-n", &ns, "sops-key"]);
    assert!(ok);
    assert_eq!(again.trim(), recipient);
    let (ok, _, err) = driftless(&["keys", "create", "-n", &ns, "sops-key"]);
    assert!(!ok && err.contains("never overwritten"), "{err}");

    // .sops.yaml as users commit it; sops encrypts for the printed recipient.
    let repo = Repo::new();
    let rules = format!(
        "creation_rules:\n- path_regex: .*\\.yaml$\n  encrypted_regex: ^(data|stringData)$\n  age: {recipient}\n"
    );
    std::fs::write(work.path().join(".sops.yaml"), &rules).unwrap();
    repo.write(".sops.yaml", &rules);
    let password = unique("hunter2-plain");
    let encrypted = sops_encrypt(work.path(), "db.yaml", &secret_yaml(&password), &[]);
    assert!(!encrypted.contains(&password));
    repo.write("clusters/test/db.yaml", &encrypted);
    let sha = repo.commit("an encrypted Secret");
    let gitsyncs: Api<GitSync> = scope.api();
    let spec = json!({"decryption": {"provider": "sops", "secretRef": {"name": "sops-key"}}});
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync("secrets", &repo.url(), spec),
        )
        .await
        .unwrap();
    let gs = wait_gitsync(&gitsyncs, "secrets", "Ready", WAIT, |g| {
        ready_at(g, &rev(&sha))
    })
    .await;

    let secrets: Api<Secret> = scope.api();
    let db = secrets.get("db").await.unwrap();
    let data = db.data.unwrap_or_default();
    assert_eq!(data["password"].0, password.as_bytes(), "applied decrypted");
    assert_eq!(data["user"].0, b"app");

    // Nowhere else: status, Events, the controller's debug log, the git
    // cache (and what is left of checkouts next to it).
    let status = serde_json::to_string(&gs.status).unwrap();
    assert!(!status.contains(&password), "status: {status}");
    for e in support::events_about(&scope, "secrets").await {
        let note = e.note.unwrap_or_default();
        assert!(!note.contains(&password), "Event: {note}");
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("applied"),
        "the controller logged nothing:\n{logged}"
    );
    assert!(!logged.contains(&password), "the log holds the plaintext");
    assert!(
        files_holding(&cache, &password).is_empty(),
        "{:?}",
        files_holding(&cache, &password)
    );
    let tmp = std::env::temp_dir();
    let leftovers: Vec<String> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("driftless-"))
        .flat_map(|e| files_holding(&e.path(), &password))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn revisions_that_cannot_be_decrypted_are_refused_and_change_nothing() {
    let mut scope = Scope::new("secrets-refused").await;
    scope.start_controller(Duration::from_secs(2));
    let ns = scope.ns.clone();
    let work = tempfile::tempdir().unwrap();
    let (ok, recipient, err) = driftless(&["keys", "create", "-n", &ns, "sops-key"]);
    assert!(ok, "{err}");
    let recipient = recipient.trim().to_string();
    let flags = [
        "--age",
        recipient.as_str(),
        "--encrypted-regex",
        "^(data|stringData)$",
    ];
    let good = sops_encrypt(
        work.path(),
        "db.yaml",
        &secret_yaml("first-password"),
        &flags,
    );
    let repo = Repo::new();
    repo.write("clusters/test/db.yaml", &good);
    let first = repo.commit("good");
    let gitsyncs: Api<GitSync> = scope.api();
    let name = "refusing";
    let spec = json!({"decryption": {"provider": "sops", "secretRef": {"name": "sops-key"}}});
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

    let secrets: Api<Secret> = scope.api();
    let unchanged = || async {
        let db = secrets.get("db").await.unwrap();
        assert_eq!(
            db.data.unwrap()["password"].0,
            b"first-password",
            "nothing changed"
        );
    };
    // Encrypted for another key.
    let other = sops_encrypt(
        work.path(),
        "db.yaml",
        &secret_yaml("other-password"),
        &[
            "--age",
            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        ],
    );
    let msg = refused(&repo, &gitsyncs, name, &first, other).await;
    assert!(msg.contains("clusters/test/db.yaml"), "{msg}");
    assert!(
        msg.contains(&format!("no age identity in secret {ns}/sops-key")),
        "{msg}"
    );
    assert!(
        msg.contains("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"),
        "{msg}"
    );
    unchanged().await;

    // A value changed in the file (another valid ciphertext moved in).
    let swapped = {
        let enc: Vec<&str> = good.lines().filter(|l| l.contains("ENC[")).collect();
        let (a, b) = (
            enc[0].split_once(": ").unwrap().1,
            enc[1].split_once(": ").unwrap().1,
        );
        good.replace(a, "@A@").replace(b, a).replace("@A@", b)
    };
    let msg = refused(&repo, &gitsyncs, name, &first, swapped).await;
    assert!(
        msg.contains("clusters/test/db.yaml") && msg.contains("authentication failed"),
        "{msg}"
    );
    unchanged().await;

    // A broken MAC.
    let mac = good
        .lines()
        .find(|l| l.trim_start().starts_with("mac: "))
        .unwrap();
    let broken = good.replace(
        mac,
        &mac.replacen("ENC[AES256_GCM,data:", "ENC[AES256_GCM,data:AA", 1),
    );
    let msg = refused(&repo, &gitsyncs, name, &first, broken).await;
    assert!(msg.contains("clusters/test/db.yaml"), "{msg}");
    unchanged().await;

    // The right key under the wrong name (flux2#5154): the message says so.
    let keys: Api<Secret> = scope.api();
    let held = keys.get("sops-key").await.unwrap().data.unwrap();
    let identity = String::from_utf8(held["sops-key.agekey"].0.clone()).unwrap();
    keys.patch(
        "sops-key",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": null, "stringData": {"age.key": identity}})),
    )
    .await
    .unwrap();
    let msg = refused(&repo, &gitsyncs, name, &first, format!("{good}\n")).await;
    assert!(msg.contains("age.key") && msg.contains("*.agekey"), "{msg}");
    assert!(!msg.contains("AGE-SECRET-KEY"), "{msg}");
    unchanged().await;
}

/// Commits `text` as the encrypted file; waits until the GitSync refuses
/// that revision (DecryptionFailed) with `first` still applied; returns the
/// Stalled message.
async fn refused(
    repo: &Repo,
    gitsyncs: &Api<GitSync>,
    name: &str,
    first: &str,
    text: String,
) -> String {
    repo.write("clusters/test/db.yaml", &text);
    let sha = repo.commit("a revision to refuse");
    trigger(gitsyncs, name).await;
    let (gs, message) = wait_stalled_at(gitsyncs, name, &sha).await;
    assert_eq!(condition(&gs, "Ready").unwrap().reason, "DecryptionFailed");
    let status = gs.status.clone().unwrap();
    assert_eq!(status.last_applied_revision.unwrap(), rev(first));
    eprintln!("{name}: Stalled: {message}");
    message
}

/// Push mode decrypts with sops' own SOPS_AGE_KEY_FILE: an encrypted tag of
/// a Bucket reaches LocalStack in plain text, and without the key the
/// command says how to give it.
#[tokio::test]
async fn push_mode_decrypts_with_sops_age_key_file() {
    let work = tempfile::tempdir().unwrap();
    let key_file = work.path().join("keys.txt");
    let out = Command::new(tool("age-keygen"))
        .arg("-o")
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(&key_file).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap();
    let bucket = unique("sops-bucket");
    let plain = format!(
        "apiVersion: aws.driftless.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: {bucket}\n  namespace: web\nspec:\n  forProvider:\n    tags:\n      owner: team-secret\n"
    );
    let encrypted = sops_encrypt(
        work.path(),
        "bucket.yaml",
        &plain,
        &["--age", recipient, "--encrypted-regex", "^(tags)$"],
    );
    let dir = work.path().join("infra");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bucket.yaml"), &encrypted).unwrap();
    let dir = dir.to_str().unwrap();
    let stack = unique("sops");

    let run = |args: &[&str], key: bool| {
        let e = env();
        let mut c = Command::new(env!("CARGO_BIN_EXE_driftless"));
        c.args(args)
            .env("AWS_ENDPOINT_URL", &e.aws_endpoint)
            .env("AWS_REGION", &e.region)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("HOME", work.path())
            .env_remove("SOPS_AGE_KEY")
            .env_remove("XDG_CONFIG_HOME");
        if key {
            c.env("SOPS_AGE_KEY_FILE", &key_file);
        } else {
            c.env_remove("SOPS_AGE_KEY_FILE");
        }
        let out = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, out) = run(&["validate", dir], false);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("bucket.yaml") && out.contains("SOPS_AGE_KEY_FILE"),
        "{out}"
    );
    let (code, out) = run(&["build", dir], true);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("owner: '**SOPS**'") || out.contains("owner: \"**SOPS**\""),
        "build masks what was encrypted: {out}"
    );
    assert!(
        !out.contains("team-secret") && !out.contains("ENC["),
        "{out}"
    );
    let (code, out) = run(&["apply", dir, "--stack", &stack], true);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("team-secret"), "{out}");
    let tags = support::s3_tags(&support::s3().await, &bucket).await;
    assert!(
        tags.contains(&("owner".to_string(), "team-secret".to_string())),
        "{tags:?}"
    );
    let empty = tempfile::tempdir().unwrap();
    let (code, _) = run(
        &[
            "apply",
            empty.path().to_str().unwrap(),
            "--stack",
            &stack,
            "--prune",
        ],
        true,
    );
    assert_eq!(code, Some(0));
}
