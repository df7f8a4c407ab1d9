//! `driftless bootstrap`: the embedded install is what kustomize builds of
//! deploy/; bootstrapping twice changes nothing; the GitSync it creates
//! applies the written PATH, its own install and itself included.
//!
//! The install is the real one (CRDs, namespace driftless-system, the
//! ClusterRole driftless exactly as deploy/base/rbac.yaml has it, as other
//! tests install them); only the GitSync and its ServiceAccount live in the
//! test's namespace, so that the test's own controller runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use driftless::gitsync::GitSync;
use serde_json::Value;

use crate::gitsync::{ready_at, rev, wait_gitsync, Repo};
use crate::support::{self, Scope};

const PATH: &str = "clusters/test";
const WAIT: Duration = Duration::from_secs(90);

/// Runs `driftless bootstrap ARGS` in `dir` against `kubeconfig`; returns
/// (exit code, stdout, stderr).
fn bootstrap_in(dir: &Path, kubeconfig: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .arg("bootstrap")
        .args(args)
        .current_dir(dir)
        .env("KUBECONFIG", kubeconfig)
        .env("DRIFTLESS_LOG", "off")
        .output()
        .expect("the driftless binary runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("$ driftless bootstrap {}\n{stdout}{stderr}", args.join(" "));
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn bootstrap(repo: &Repo, args: &[&str]) -> (i32, String, String) {
    bootstrap_in(
        &repo.work_dir(),
        Path::new(&support::env().kubeconfig),
        args,
    )
}

/// Objects by (kind, name): the order of kustomize's output is its own.
fn by_kind_name(objects: Vec<Value>) -> BTreeMap<(String, String), Value> {
    objects
        .into_iter()
        .map(|o| {
            let key = (
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            (key, o)
        })
        .collect()
}

/// Every number as a float: kustomize writes the CRDs' `minimum: 0.0` as 0.
fn same_numbers(v: Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.into_iter().map(same_numbers).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, same_numbers(v))).collect())
        }
        other => other,
    }
}

#[test]
fn embedded_install_is_what_kustomize_builds() {
    for (dir, lockdown) in [("deploy", false), ("deploy/lockdown", true)] {
        let out = Command::new(support::tool("kustomize"))
            .arg("build")
            .arg(support::repo_root().join(dir))
            .output()
            .expect("kustomize runs");
        assert!(
            out.status.success(),
            "kustomize build {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let built: Vec<Value> =
            serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).unwrap();
        let built = by_kind_name(built);
        let embedded = by_kind_name(driftless::cli::bootstrap::install::objects(lockdown).unwrap());
        assert_eq!(
            built.keys().collect::<Vec<_>>(),
            embedded.keys().collect::<Vec<_>>(),
            "{dir}: the same objects"
        );
        for (key, want) in &built {
            assert_eq!(
                same_numbers(embedded[key].clone()),
                same_numbers(want.clone()),
                "{dir}: {key:?} as kustomize builds it"
            );
        }
    }
}

/// `kubectl get -f` of the written files: each object's resourceVersion
/// and managedFields, by `Kind namespace/name`.
async fn live(scope: &Scope, dir: &Path) -> BTreeMap<String, (String, Vec<Value>)> {
    let install = dir.join("install.yaml");
    let gitsync = dir.join("gitsync.yaml");
    let (ok, out, err) = scope
        .kubectl(
            &[
                "get",
                "-f",
                install.to_str().unwrap(),
                "-f",
                gitsync.to_str().unwrap(),
                "-o",
                "json",
            ],
            None,
        )
        .await;
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let m = &o["metadata"];
            let key = format!(
                "{} {}/{}",
                o["kind"].as_str().unwrap(),
                m["namespace"].as_str().unwrap_or(""),
                m["name"].as_str().unwrap()
            );
            let rv = m["resourceVersion"].as_str().unwrap().to_string();
            (
                key,
                (
                    rv,
                    m["managedFields"].as_array().cloned().unwrap_or_default(),
                ),
            )
        })
        .collect()
}

/// Nothing was written between `before` and `after`: each resourceVersion
/// is the same (the RBAC test, which writes deploy/'s ClusterRole too,
/// waits: [`support::install_writer`]).
fn assert_not_written(
    before: &BTreeMap<String, (String, Vec<Value>)>,
    after: &BTreeMap<String, (String, Vec<Value>)>,
) {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (key, (rv, fields)) in before {
        let (rv2, fields2) = &after[key];
        assert_eq!(
            rv, rv2,
            "{key} was written; managedFields before: {fields:#?}, after: {fields2:#?}"
        );
    }
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// Lines of `stdout` that report an object: (what was done, the object).
fn object_lines(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (word, rest) = l.split_once(' ')?;
            ["created", "configured", "unchanged"]
                .contains(&word)
                .then(|| (word.to_string(), rest.trim().to_string()))
        })
        .filter(|(_, rest)| !rest.starts_with(PATH))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_twice_changes_nothing_and_its_gitsync_applies_itself() {
    let _install = support::install_writer().await;
    let mut scope = Scope::new("boot").await;
    let repo = Repo::new();
    let url = repo.url();
    let gitsync = format!("{}/fleet", scope.ns);
    let args = [
        "--url",
        url.as_str(),
        "--path",
        PATH,
        "--gitsync",
        gitsync.as_str(),
        "--interval",
        "1h",
    ];
    let dir = repo.work_dir().join(PATH).join("driftless-system");

    let (code, first, _) = bootstrap(&repo, &args);
    assert_eq!(code, 0);
    let objects = object_lines(&first);
    assert_eq!(objects.len(), 26, "one line per object:\n{first}");
    // This test's own objects are new; the shared install may be there.
    for own in [
        format!("GitSync {gitsync}"),
        format!("ServiceAccount {}/fleet-bootstrap", scope.ns),
        format!("ClusterRoleBinding driftless-bootstrap:{}:fleet", scope.ns),
    ] {
        assert!(
            objects.contains(&("created".into(), own.clone())),
            "{own} created:\n{first}"
        );
    }
    // Objects there before get this test's owner labels: none is unchanged.
    assert!(
        objects.iter().all(|(w, _)| w != "unchanged"),
        "created or configured:\n{first}"
    );
    for file in ["install.yaml", "gitsync.yaml"] {
        assert!(
            first.contains(&format!("wrote      {PATH}/driftless-system/{file}")),
            "{file} written:\n{first}"
        );
    }
    assert!(first.contains("2 files written"), "{first}");
    assert!(first.contains("git -C"), "the git commands:\n{first}");
    let before = live(&scope, &dir).await;
    assert_eq!(before.len(), 26);
    let texts: Vec<(Vec<u8>, SystemTime)> = ["install.yaml", "gitsync.yaml"]
        .iter()
        .map(|f| (std::fs::read(dir.join(f)).unwrap(), mtime(&dir.join(f))))
        .collect();

    let (code, second, _) = bootstrap(&repo, &args);
    assert_eq!(code, 0, "{second}");
    let again = object_lines(&second);
    assert_eq!(again.len(), 26, "{second}");
    assert!(
        again.iter().all(|(w, _)| w == "unchanged"),
        "every object unchanged:\n{second}"
    );
    assert!(second.contains("0 files written, 2 unchanged"), "{second}");
    assert!(second.contains("nothing changed"), "{second}");
    assert_not_written(&before, &live(&scope, &dir).await);
    for (f, (text, at)) in ["install.yaml", "gitsync.yaml"].iter().zip(&texts) {
        assert_eq!(&std::fs::read(dir.join(f)).unwrap(), text, "{f}");
        assert_eq!(mtime(&dir.join(f)), *at, "{f} not rewritten");
    }

    // Published, the GitSync applies PATH: its own install and itself.
    let sha = repo.commit("driftless bootstrap");
    scope.start_controller(Duration::from_secs(30));
    let gitsyncs = scope.api::<GitSync>();
    let gs = wait_gitsync(
        &gitsyncs,
        "fleet",
        "Ready at the bootstrap commit",
        WAIT,
        |g| ready_at(g, &rev(&sha)),
    )
    .await;
    let inventory: BTreeSet<String> = gs
        .status
        .unwrap()
        .inventory
        .iter()
        .map(|e| format!("{} {}/{}", e.kind, e.namespace, e.name))
        .collect();
    let applied: BTreeSet<String> = before.keys().cloned().collect();
    assert_eq!(
        inventory, applied,
        "the inventory is the install and itself"
    );
    assert!(inventory.contains(&format!("GitSync {gitsync}")));

    // The GitSync and bootstrap agree: a third run still changes nothing.
    let settled = live(&scope, &dir).await;
    let (code, third, _) = bootstrap(&repo, &args);
    assert_eq!(code, 0, "{third}");
    assert!(
        object_lines(&third).iter().all(|(w, _)| w == "unchanged"),
        "{third}"
    );
    assert_not_written(&settled, &live(&scope, &dir).await);
}

#[tokio::test]
async fn bootstrap_refuses_bad_input_an_edited_file_and_no_cluster() {
    let repo = Repo::new();
    let kubeconfig = Path::new(&support::env().kubeconfig);
    let base = ["--url", "https://git.example.com/fleet", "--path", PATH];
    let cases: [(&[&str], &str); 4] = [
        (
            &["--url", "github.com/acme/fleet", "--path", PATH],
            "--url \"github.com/acme/fleet\"",
        ),
        (
            &["--url", "https://x/y", "--path", "../elsewhere"],
            "escapes the checkout",
        ),
        (
            &[&base[..], &["--gitsync", "no-slash"]].concat(),
            "--gitsync \"no-slash\": expected NAMESPACE/NAME",
        ),
        (
            &[&base[..], &["--interval", "soon"]].concat(),
            "--interval \"soon\"",
        ),
    ];
    for (args, want) in cases {
        let (code, _, err) = bootstrap_in(&repo.work_dir(), kubeconfig, args);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(want), "{args:?}: {want} in {err}");
    }

    // A file edited by hand: named, nothing applied nor written.
    let edited = format!("{PATH}/driftless-system/install.yaml");
    repo.write(&edited, "# my edit\n");
    let (code, out, err) = bootstrap_in(&repo.work_dir(), kubeconfig, &base);
    assert_eq!(code, 1);
    assert!(err.contains(&edited) && err.contains("--force"), "{err}");
    assert!(err.contains("nothing was applied or written"), "{err}");
    assert!(out.is_empty(), "nothing applied: {out}");
    assert_eq!(
        std::fs::read_to_string(repo.work_dir().join(&edited)).unwrap(),
        "# my edit\n"
    );
    assert!(!repo
        .work_dir()
        .join(PATH)
        .join("driftless-system/gitsync.yaml")
        .exists());

    // No cluster: a kubeconfig whose server nothing listens on.
    repo.remove(&edited);
    let dead = repo.work_dir().join("dead-kubeconfig");
    std::fs::write(
        &dead,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    )
    .unwrap();
    let (code, _, err) = bootstrap_in(&repo.work_dir(), &dead, &base);
    assert_eq!(code, 1);
    assert!(
        err.contains("the cluster at https://127.0.0.1:1/ does not answer"),
        "{err}"
    );
    assert!(!repo.work_dir().join(&edited).exists(), "nothing written");
}
