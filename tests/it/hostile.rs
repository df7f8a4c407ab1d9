//! Hostile manifests: the 419-byte YAML bomb, 10,000-deep nesting, a 100 MB
//! file and a 20,000-file revision are each refused within seconds with a
//! clear message (the bomb and the nesting with their file:line), by
//! `validate` and by a GitSync, while another GitSync of the same controller
//! keeps syncing, and the controller stays under its memory limit.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use driftless::gitsync::GitSync;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

use crate::gitsync::{new_gitsync, ready_at, rev, trigger, wait_gitsync, wait_stalled_at, Repo};
use crate::support::{controller_command, peak_rss_kib, Owned, Scope};

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

/// `validate` refuses with the controller's limits: the 10,000-deep nesting
/// at its line, and a directory of more files than `--max-files`.
#[test]
fn validate_refuses_deep_nesting_and_too_many_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deep.yaml"), deep()).unwrap();
    for i in 0..4 {
        let cm = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\n");
        std::fs::create_dir_all(dir.path().join("many")).unwrap();
        std::fs::write(dir.path().join(format!("many/cm-{i}.yaml")), cm).unwrap();
    }
    let validate = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = validate(&["validate", "deep.yaml"]);
    assert!(
        out.contains("deep.yaml:5:") && out.contains("nesting deeper than"),
        "{out}"
    );
    let out = validate(&["validate", "--max-files", "3", "many"]);
    assert!(
        out.contains("more than 3 files") && out.contains("--max-files"),
        "{out}"
    );
}

/// A flow sequence nested 10,000 deep (20 KB).
fn deep() -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\ndata:\n  x: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    )
}

/// 100 MB of comments ahead of a ConfigMap.
fn huge() -> String {
    let line = "# padding padding padding padding padding padding padding padding padding\n";
    format!(
        "{}apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\n",
        line.repeat(100 * 1024 * 1024 / line.len())
    )
}

const MANY: usize = 20_000;

/// One hostile revision: what it writes, and what its Stalled message names.
struct Attack {
    what: &'static str,
    write: fn(&Repo),
    clean: fn(&Repo),
    says: &'static [&'static str],
}

const ATTACKS: [Attack; 4] = [
    Attack {
        what: "YAML bomb (419 bytes)",
        write: |r| r.write("clusters/test/bomb.yaml", BOMB),
        clean: |r| r.remove("clusters/test/bomb.yaml"),
        says: &["clusters/test/bomb.yaml:9:", "alias expansion exceeds"],
    },
    Attack {
        what: "10,000-deep nesting",
        write: |r| r.write("clusters/test/deep.yaml", &deep()),
        clean: |r| r.remove("clusters/test/deep.yaml"),
        says: &["clusters/test/deep.yaml:5:", "nesting deeper than"],
    },
    Attack {
        what: "100 MB file",
        write: |r| r.write("clusters/test/big.yaml", &huge()),
        clean: |r| r.remove("clusters/test/big.yaml"),
        says: &["clusters/test/big.yaml", "--max-file-size"],
    },
    Attack {
        what: "20,000-file revision",
        write: |r| {
            for i in 0..MANY {
                r.write(
                    &format!("clusters/test/many/cm-{i}.yaml"),
                    &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\n"),
                )
            }
        },
        clean: |_| {},
        says: &["more than 10000 files", "--max-files"],
    },
];

/// The hostile revisions, committed one after another to one GitSync of a
/// controller running as its own process (as in its Deployment): each is
/// Stalled at its commit with a clear message and applies nothing, while a
/// second GitSync of the same controller applies a commit after each; the
/// controller's peak memory stays under the Deployment's 256 MiB limit.
#[tokio::test]
async fn hostile_revisions_stall_their_gitsync_and_another_keeps_syncing() {
    let scope = Scope::new("hostile").await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let controller = controller_command(&scope.ns)
        .args(["--allow-file-urls", "--poll-interval", "2s"])
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .map(Owned)
        .unwrap();
    let gitsyncs: Api<GitSync> = scope.api();
    let configmaps: Api<ConfigMap> = scope.api();
    let hostile = Repo::new();
    hostile.write(
        "clusters/test/ok.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n",
    );
    let ok = hostile.commit("a first, harmless revision");
    let healthy = Repo::new();
    let cm = |v: usize| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: healthy}}\ndata: {{v: \"{v}\"}}\n"
        )
    };
    healthy.write("clusters/test/cm.yaml", &cm(0));
    let first = healthy.commit("healthy");
    for (name, repo) in [("hostile", &hostile), ("healthy", &healthy)] {
        let gs = new_gitsync(name, &repo.url(), json!({}));
        gitsyncs.create(&PostParams::default(), &gs).await.unwrap();
    }
    for (name, sha) in [("hostile", &ok), ("healthy", &first)] {
        wait_gitsync(&gitsyncs, name, "Ready", WAIT, |g| ready_at(g, &rev(sha))).await;
    }

    let mut table = vec![format!(
        "{:<22} {:>10} {:>16} {:>9}  message",
        "revision", "stalled in", "healthy applied", "peak RSS"
    )];
    for (i, attack) in ATTACKS.iter().enumerate() {
        (attack.write)(&hostile);
        let sha = hostile.commit(attack.what);
        let since = trigger(&gitsyncs, "hostile").await;
        let (_, msg) = wait_stalled_at(&gitsyncs, "hostile", &sha).await;
        let stalled = since.elapsed();
        let logged = std::fs::read_to_string(log.path()).unwrap_or_default();
        for needle in attack.says {
            assert!(
                msg.contains(needle),
                "{}: {msg}\ncontroller log:\n{logged}",
                attack.what
            );
        }
        (attack.clean)(&hostile);

        // The other GitSync of the same controller goes on: commit -> applied.
        healthy.write("clusters/test/cm.yaml", &cm(i + 1));
        let next = healthy.commit("next");
        let since = trigger(&gitsyncs, "healthy").await;
        wait_gitsync(
            &gitsyncs,
            "healthy",
            "Ready at the next commit",
            WAIT,
            |g| ready_at(g, &rev(&next)),
        )
        .await;
        let applied = since.elapsed();
        let data = configmaps.get("healthy").await.unwrap().data.unwrap();
        assert_eq!(data["v"], (i + 1).to_string());
        table.push(format!(
            "{:<22} {:>9.2}s {:>15.2}s {:>5} MiB  {}",
            attack.what,
            stalled.as_secs_f64(),
            applied.as_secs_f64(),
            peak_rss_kib(controller.0.id()) / 1024,
            msg.chars().take(110).collect::<String>()
        ));
    }
    // Nothing of any hostile revision was applied.
    for name in ["lol", "deep", "big", "cm-0"] {
        assert!(
            configmaps.get_opt(name).await.unwrap().is_none(),
            "{name} was applied"
        );
    }
    let peak = peak_rss_kib(controller.0.id());
    table.push(format!(
        "controller peak RSS: {} MiB (limit 256 MiB)",
        peak / 1024
    ));
    eprintln!("{}", table.join("\n"));
    assert!(peak < 256 * 1024, "the controller peaked at {peak} KiB");
}
