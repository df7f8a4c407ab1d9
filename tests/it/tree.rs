//! `driftless tree`: a GitSync, its objects by stage, each managed
//! resource's conditions, external name and cloud state, its references as
//! children; exit codes; `-o json`; `--watch` redrawing on change.

use std::process::Command;
use std::time::Duration;

use driftless::gitsync::GitSync;
use driftless_aws::{Instance, Subnet, Vpc};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::ec2::cidr16;
use crate::gitsync::{
    bucket_yaml, create_ready, new_gitsync, provider_config_yaml, rev, trigger, Repo,
};
use crate::support::{self, unique, wait_for, Scope};

const POLL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(120);
const AMI: &str = "ami-03cf127a";

fn driftless_tree(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .arg("tree")
        .args(args)
        .env("KUBECONFIG", &support::env().kubeconfig)
        .output()
        .expect("the driftless binary runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("$ driftless tree {}\n{stdout}{stderr}", args.join(" "));
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn managed(kind: &str, name: &str, pc: &str, for_provider: Value) -> String {
    let doc = json!({
        "apiVersion": "aws.driftless.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"providerConfigRef": {"name": pc}, "forProvider": for_provider},
    });
    serde_json::to_string(&doc).unwrap()
}

fn external_name<K: kube::Resource>(obj: &K) -> String {
    obj.annotations()["driftless.dev/external-name"].clone()
}

/// A network (Vpc <- Subnet <- Instance), a Bucket and a ConfigMap from Git:
/// the tree shows them by stage with their references nested; a managed
/// resource as the root shows its own chain; exit 0 when all is healthy.
/// A Bucket whose ProviderConfig is missing makes it exit 1 with the reason.
#[tokio::test]
async fn the_tree_shows_a_gitsync_its_objects_and_their_references() {
    let _turn = support::heavy().await;
    let mut scope = Scope::new("tree").await;
    scope.start_controller_with(POLL, |s| s.reference_retry = POLL);
    let ns = scope.ns.clone();
    let (cidr, b) = cidr16();
    let (pc, bucket) = (unique("pc-tree"), unique("dl-tree"));
    let zone = format!("{}a", support::env().region);
    let repo = Repo::new();
    repo.write("clusters/test/pc.yaml", &provider_config_yaml(&pc, &ns));
    repo.write(
        "clusters/test/vpc.yaml",
        &managed("Vpc", "net", &pc, json!({"cidrBlock": cidr})),
    );
    repo.write(
        "clusters/test/subnet.yaml",
        &managed(
            "Subnet",
            "a",
            &pc,
            json!({"vpcRef": {"name": "net"}, "cidrBlock": format!("10.{b}.1.0/24"), "availabilityZone": zone}),
        ),
    );
    repo.write(
        "clusters/test/instance.yaml",
        &managed(
            "Instance",
            "web",
            &pc,
            json!({"imageId": AMI, "instanceType": "t3.micro", "subnetRef": {"name": "a"}}),
        ),
    );
    repo.write(
        "clusters/test/bucket.yaml",
        &bucket_yaml(&bucket, &pc, "v1"),
    );
    repo.write(
        "clusters/test/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {a: b}\n",
    );
    let c1 = repo.commit("a network, a bucket, an app");
    let gitsyncs: Api<GitSync> = scope.api();
    create_ready(&gitsyncs, "infra", &repo.url(), json!({}), &c1).await;
    let vpc = external_name(&scope.api::<Vpc>().get("net").await.unwrap());
    let subnet = external_name(&scope.api::<Subnet>().get("a").await.unwrap());
    let instance = external_name(&scope.api::<Instance>().get("web").await.unwrap());

    let (code, text, _) = driftless_tree(&["gitsync/infra", "-n", &ns]);
    assert_eq!(code, 0, "{text}");
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "GitSync {ns}/infra  Ready=True  {}  applied revision",
            rev(&c1)
        )),
        "{first}"
    );
    let expected = format!(
        "\
├── ProviderConfigs
│   └── ProviderConfig {pc}  healthy
└── Objects
    ├── Bucket {ns}/{bucket}  Ready=True Synced=True  {bucket}
    ├── ConfigMap {ns}/app  healthy
    ├── Instance {ns}/web  Ready=True Synced=True  {instance}  running
    │   └── subnetId: Subnet {ns}/a  Ready=True Synced=True  {subnet}  available
    │       └── vpcId: Vpc {ns}/net  Ready=True Synced=True  {vpc}  available
    ├── Subnet {ns}/a  Ready=True Synced=True  {subnet}  available
    │   └── vpcId: Vpc {ns}/net  Ready=True Synced=True  {vpc}  available
    └── Vpc {ns}/net  Ready=True Synced=True  {vpc}  available
"
    );
    assert!(text.ends_with(&expected), "{text}");

    // A managed resource as the root: its own chain.
    let (code, text, _) = driftless_tree(&["instance/web", "-n", &ns]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text,
        format!(
            "Instance {ns}/web  Ready=True Synced=True  {instance}  running
└── subnetId: Subnet {ns}/a  Ready=True Synced=True  {subnet}  available
    └── vpcId: Vpc {ns}/net  Ready=True Synced=True  {vpc}  available
"
        )
    );

    // The same tree as JSON.
    let (code, json_text, _) = driftless_tree(&["gitsync/infra", "-n", &ns, "-o", "json"]);
    assert_eq!(code, 0);
    let tree: Value = serde_json::from_str(&json_text).unwrap();
    let stages: Vec<&str> = tree["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["ProviderConfigs", "Objects"]);
    let web = &tree["stages"][1]["objects"][2];
    assert_eq!(web["kind"], "Instance");
    assert_eq!(web["externalName"], instance.as_str());
    assert_eq!(web["references"][0]["via"], "subnetId");
    assert_eq!(
        web["references"][0]["references"][0]["externalName"],
        vpc.as_str()
    );

    // Unknown kinds and missing objects are errors: exit 2.
    let (code, _, err) = driftless_tree(&["vpcs/nope", "-n", &ns]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("Vpc {ns}/nope does not exist")),
        "{err}"
    );
    let (code, _, err) = driftless_tree(&["pod/x", "-n", &ns]);
    assert_eq!(code, 2);
    assert!(
        err.contains("\"pod\" is not a kind driftless manages"),
        "{err}"
    );

    // Not healthy: a Bucket whose ProviderConfig does not exist. Exit 1, and
    // its line says why.
    let broken = Repo::new();
    broken.write(
        "clusters/test/bucket.yaml",
        &bucket_yaml(&unique("dl-tree-b"), "no-such-pc", "v1"),
    );
    broken.commit("a bucket without its ProviderConfig");
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync("broken", &broken.url(), json!({})),
        )
        .await
        .unwrap();
    wait_for(
        "the broken Bucket applied and Synced=False",
        WAIT,
        || async {
            let (code, text, _) = driftless_tree(&["gitsync/broken", "-n", &ns]);
            (code == 1 && text.contains("Synced=False")).then_some(text)
        },
    )
    .await;
    let (_, text, _) = driftless_tree(&["gitsync/broken", "-n", &ns]);
    let line = text.lines().find(|l| l.contains("└── Bucket ")).unwrap();
    assert!(
        line.ends_with("Ready=Unknown Synced=False  ReconcileError: ProviderConfigNotFound: ProviderConfig no-such-pc does not exist"),
        "{line}"
    );
}

/// `--watch` redraws when the tree changes: a new revision shows without
/// restarting the command.
#[tokio::test]
async fn tree_watch_redraws_on_change() {
    let mut scope = Scope::new("tree-watch").await;
    scope.start_controller(POLL);
    let ns = scope.ns.clone();
    let repo = Repo::new();
    repo.write(
        "clusters/test/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {v: \"1\"}\n",
    );
    let c1 = repo.commit("v1");
    let gitsyncs: Api<GitSync> = scope.api();
    create_ready(&gitsyncs, "apps", &repo.url(), json!({}), &c1).await;
    // Its output goes to a file the test reads without blocking the
    // runtime (the in-process controller runs on it).
    let out_path = std::env::temp_dir().join(unique("driftless-tree-watch"));
    let _child = Watching(
        Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args([
                "tree",
                "gitsync/apps",
                "-n",
                &ns,
                "--watch",
                "--interval",
                "300ms",
            ])
            .env("KUBECONFIG", &support::env().kubeconfig)
            .stdout(std::fs::File::create(&out_path).unwrap())
            .spawn()
            .unwrap(),
        out_path.clone(),
    );
    let output = || std::fs::read_to_string(&out_path).unwrap_or_default();
    let frames = |text: &str| text.lines().filter(|l| l.starts_with("--- ")).count();
    let first = format!("Ready=True  {}", rev(&c1));
    let text = wait_for("the first frame", WAIT, || async {
        let text = output();
        text.contains(&first).then_some(text)
    })
    .await;
    assert_eq!(frames(&text), 1, "{text}");
    repo.write(
        "clusters/test/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {v: \"2\"}\n",
    );
    let c2 = repo.commit("v2");
    trigger(&gitsyncs, "apps").await;
    let second = format!("Ready=True  {}", rev(&c2));
    let text = wait_for("a frame with the new revision", WAIT, || async {
        let text = output();
        text.contains(&second).then_some(text)
    })
    .await;
    eprintln!("{text}");
    // Redrawn only on change: one frame per state seen, not one per read.
    assert!(frames(&text) >= 2, "{text}");
    assert!(frames(&text) <= 4, "{text}");
}

/// The `--watch` child, stopped by its own handle when the test ends
/// (passed or not).
struct Watching(std::process::Child, std::path::PathBuf);

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_file(&self.1);
    }
}
