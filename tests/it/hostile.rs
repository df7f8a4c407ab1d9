//! Hostile manifests: the 419-byte YAML bomb is refused in milliseconds
//! with its file:line, by `validate` and by a GitSync, and another GitSync
//! of the same controller keeps syncing meanwhile.

use std::process::Command;
use std::time::{Duration, Instant};

use driftless::gitsync::GitSync;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

use crate::gitsync::{new_gitsync, ready_at, rev, trigger, wait_gitsync, wait_stalled_at, Repo};
use crate::support::Scope;

const WAIT: Duration = Duration::from_secs(90);

/// The classic "billion laughs": nine levels of nine aliases, 419 bytes,
/// which a naive reader expands to 9^9 strings (GBs).
const BOMB: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";

#[test]
fn validate_refuses_the_yaml_bomb_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bomb.yaml"), BOMB).unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(["validate", "bomb.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("bomb.yaml:9:") && stdout.contains("alias expansion exceeds"),
        "{stdout}"
    );
    eprintln!("validate refused the bomb in {took:?}");
}

#[tokio::test]
async fn a_yaml_bomb_stalls_its_gitsync_and_another_keeps_syncing() {
    let mut scope = Scope::new("hostile").await;
    scope.start_controller(Duration::from_secs(2));
    let gitsyncs: Api<GitSync> = scope.api();
    let hostile = Repo::new();
    hostile.write("clusters/test/bomb.yaml", BOMB);
    let bomb = hostile.commit("a YAML bomb");
    let healthy = Repo::new();
    let cm = |v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: healthy}}\ndata: {{v: \"{v}\"}}\n"
        )
    };
    healthy.write("clusters/test/cm.yaml", &cm("0"));
    let first = healthy.commit("healthy");
    let started = Instant::now();
    for (name, repo) in [("bomb", &hostile), ("healthy", &healthy)] {
        gitsyncs
            .create(
                &PostParams::default(),
                &new_gitsync(name, &repo.url(), json!({})),
            )
            .await
            .unwrap();
    }
    let (_, msg) = wait_stalled_at(&gitsyncs, "bomb", &bomb).await;
    assert!(
        msg.contains("clusters/test/bomb.yaml:9:") && msg.contains("alias expansion exceeds"),
        "{msg}"
    );
    eprintln!(
        "the bomb was refused {:?} after the GitSyncs were created",
        started.elapsed()
    );
    wait_gitsync(&gitsyncs, "healthy", "Ready", WAIT, |g| {
        ready_at(g, &rev(&first))
    })
    .await;

    // The other GitSync goes on: commit -> applied, while the bomb's stays refused.
    healthy.write("clusters/test/cm.yaml", &cm("1"));
    let next = healthy.commit("next");
    let since = trigger(&gitsyncs, "healthy").await;
    trigger(&gitsyncs, "bomb").await;
    wait_gitsync(
        &gitsyncs,
        "healthy",
        "Ready at the next commit",
        WAIT,
        |g| ready_at(g, &rev(&next)),
    )
    .await;
    eprintln!(
        "commit -> applied for the healthy GitSync: {:?}",
        since.elapsed()
    );
    let configmaps: Api<ConfigMap> = scope.api();
    assert_eq!(
        configmaps.get("healthy").await.unwrap().data.unwrap()["v"],
        "1"
    );
    assert!(configmaps.get_opt("lol").await.unwrap().is_none());
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?");
    eprintln!("test process (controller in-process) peak RSS: {peak}");
}

/// A 100 MB manifest in Git: refused at checkout from its size in the object
/// header, before the blob is read, naming the file.
#[tokio::test]
async fn a_huge_file_is_refused_before_it_is_read() {
    let mut scope = Scope::new("hostile-size").await;
    scope.start_controller(Duration::from_secs(2));
    let repo = Repo::new();
    let line = "# padding padding padding padding padding padding padding padding padding\n";
    let big = format!(
        "{}apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\n",
        line.repeat(100 * 1024 * 1024 / line.len())
    );
    repo.write("clusters/test/big.yaml", &big);
    drop(big);
    let sha = repo.commit("100 MB");
    let gitsyncs: Api<GitSync> = scope.api();
    let started = Instant::now();
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync("big", &repo.url(), json!({})),
        )
        .await
        .unwrap();
    let (_, msg) = wait_stalled_at(&gitsyncs, "big", &sha).await;
    assert!(
        msg.contains("clusters/test/big.yaml") && msg.contains("--max-file-size"),
        "{msg}"
    );
    eprintln!(
        "the 100 MB file was refused {:?} after the GitSync was created: {msg}",
        started.elapsed()
    );
}
