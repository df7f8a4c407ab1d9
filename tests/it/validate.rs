//! `driftless validate`: offline, every problem with its file:line:col.

use std::process::Command;

use crate::support;

fn validate(files: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .arg("validate")
        .arg(dir.path())
        .current_dir(dir.path())
        .env_remove("KUBECONFIG")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).replace(&format!("{}/", dir.path().display()), "");
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Every entry point of examples/ users run (the overlays, the chart, the
/// GitSyncs) renders and is valid: exit 0, no errors.
#[test]
fn the_examples_and_the_install_are_valid() {
    support::tool("kustomize");
    support::tool("helm");
    for path in [
        "examples/staging",
        "examples/prod",
        "examples/charts/web",
        "examples/gitsync",
        // What users install: both modes render and validate.
        "deploy",
        "deploy/lockdown",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args(["validate", path])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "validate {path}:\n{text}");
        assert!(text.contains(" 0 errors"), "validate {path}:\n{text}");
    }
}

#[test]
fn broken_yaml_is_reported_at_its_line() {
    let (code, out) = validate(&[(
        "broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n data: [\n",
    )]);
    assert_eq!(code, 1);
    assert_eq!(
        out.trim(),
        "broken.yaml:5:2: invalid YAML: while parsing a block mapping, did not find expected key"
    );
}

#[test]
fn an_unknown_field_and_a_bad_enum_are_reported_where_written() {
    let (code, out) = validate(&[(
        "bucket.yaml",
        "# uploads\n---\napiVersion: aws.driftless.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: uploads\n  namespace: web\nspec:\n  forProvider:\n    versioning: Sometimes\n    colour: red\n",
    )]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            r#"bucket.yaml:10:5: Bucket web/uploads: spec.forProvider.versioning: unsupported value "Sometimes": supported values: "Enabled", "Suspended""#,
            r#"bucket.yaml:11:5: Bucket web/uploads: spec.forProvider: unknown field "colour""#,
        ]
    );
}

#[test]
fn an_object_without_kind_or_name_is_refused() {
    let (code, out) = validate(&[(
        "list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {}\n",
    )]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("list.yaml:4:3:") && out.contains("metadata.name"),
        "{out}"
    );
}

#[test]
fn a_bad_cidr_and_a_dangling_reference_are_reported_where_written() {
    let (code, out) = validate(&[(
        "net.yaml",
        "apiVersion: aws.driftless.dev/v1alpha1
kind: Vpc
metadata: {name: main, namespace: net}
spec:
  forProvider:
    cidrBlock: 10.0.0.0/99
---
apiVersion: aws.driftless.dev/v1alpha1
kind: Subnet
metadata: {name: a, namespace: net}
spec:
  forProvider:
    vpcRef: {name: mian}
    cidrBlock: 10.0.1.0/24
",
    )]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "net.yaml:6:5: Vpc net/main: spec.forProvider.cidrBlock: cidrBlock must be an IPv4 CIDR block with a prefix from /16 to /28, e.g. 10.0.0.0/16",
            r#"net.yaml:13:5: Subnet net/a: vpcId: Vpc "mian" is not defined in namespace net of these manifests"#,
        ]
    );
}

#[test]
fn management_policies_without_observe_are_refused() {
    let bucket = |policies: &str| {
        format!("apiVersion: aws.driftless.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: logs\n  namespace: web\nspec:\n  managementPolicies: {policies}\n  forProvider: {{}}\n")
    };
    let (code, out) = validate(&[("bucket.yaml", &bucket("[Create, Delete]"))]);
    assert_eq!(code, 1);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["bucket.yaml:7:3: Bucket web/logs: spec.managementPolicies: managementPolicies must include Observe (or *): driftless does not manage what it does not observe"]
    );
    let (code, out) = validate(&[("bucket.yaml", &bucket("[Observe, Create]"))]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = validate(&[("bucket.yaml", &bucket("[LateInitialize]"))]);
    assert_eq!(code, 1, "LateInitialize is not offered: {out}");
}

#[test]
fn a_misspelt_kind_of_ours_is_reported_where_written() {
    let (code, out) = validate(&[(
        "rt.yaml",
        "apiVersion: aws.driftless.dev/v1alpha1\nkind: RouteTabel\nmetadata: {name: public, namespace: net}\nspec: {}\n---\napiVersion: aws.driftless.dev/v1beta1\nkind: Vpc\nmetadata: {name: main, namespace: net}\nspec: {}\n",
    )]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(r#"rt.yaml:2:1: RouteTabel net/public: aws.driftless.dev has no kind "RouteTabel"; its kinds: Bucket, "#),
        "{out}"
    );
    assert_eq!(
        lines[1], "rt.yaml:7:1: Vpc net/main: Vpc has no version aws.driftless.dev/v1beta1",
        "{out}"
    );
}
