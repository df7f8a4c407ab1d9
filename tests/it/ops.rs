//! Running in a cluster: deploy/ (kustomize, RBAC), the HTTP endpoints,
//! notifications and leader election.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftless::ops::http::HttpState;
use driftless::ops::notify::Notifier;
use driftless::ops::Shared;
use driftless_provider::CallCounter;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};

use crate::support::{env, kube_client, kubectl, repo_root, wait_for, Scope};

/// (verb, API group, resource[/subresource]) of one request.
type Access = (String, String, String);

/// Classifies a Kubernetes API request as RBAC sees it; `None` for
/// discovery and other non-resource paths.
fn access_of(method: &http::Method, uri: &http::Uri) -> Option<Access> {
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _, rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let rest = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        &rest[2..]
    } else {
        rest
    };
    let (resource, named) = match rest {
        [] => return None,
        [r] => (r.to_string(), false),
        [r, _] => (r.to_string(), true),
        [r, _, sub, ..] => (format!("{r}/{sub}"), true),
    };
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match (method.as_str(), named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some((verb.to_string(), group.to_string(), resource))
}

/// A client that records every request's access before passing it on.
fn recording_client(
    inner: kube::Client,
    ns: &str,
    seen: Arc<Mutex<BTreeSet<Access>>>,
) -> kube::Client {
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let inner = inner.clone();
        if let Some(a) = access_of(req.method(), req.uri()) {
            seen.lock().unwrap().insert(a);
        }
        async move { inner.send(req).await }
    });
    kube::Client::new(service, ns.to_string())
}

/// The rules of deploy/rbac.yaml's ClusterRole and Role.
fn rbac_rules() -> Vec<Value> {
    let path = repo_root().join("deploy/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let objects = driftless::manifests::parse(&path, &text).expect("deploy/rbac.yaml parses");
    objects
        .iter()
        .filter(|m| matches!(m.kind(), "ClusterRole" | "Role"))
        .flat_map(|m| m.value["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn allowed(rules: &[Value], (verb, group, resource): &Access) -> bool {
    let has = |rule: &Value, key: &str, want: &str| {
        rule[key]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v.as_str() == Some(want))
    };
    rules.iter().any(|r| {
        has(r, "apiGroups", group) && has(r, "resources", resource) && has(r, "verbs", verb)
    })
}

#[tokio::test]
async fn deploy_applies_with_server_side_dry_run() {
    let namespaces: Api<Namespace> = Api::all(kube_client().await);
    // Namespaced objects are checked against their namespace: have it.
    let _ = namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "driftless-system"}})).unwrap(),
        )
        .await;
    crate::support::install_crds(&kube_client().await).await;
    let root = repo_root();
    let deploy = root.join("deploy");
    let (ok, out, err) = kubectl(
        &[
            "apply",
            "-k",
            deploy.to_str().unwrap(),
            "--server-side",
            "--dry-run=server",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    for want in [
        "customresourcedefinition.apiextensions.k8s.io/buckets.aws.driftless.dev",
        "serviceaccount/driftless",
        "clusterrole.rbac.authorization.k8s.io/driftless",
        "clusterrolebinding.rbac.authorization.k8s.io/driftless",
        "role.rbac.authorization.k8s.io/driftless-leader-election",
        "deployment.apps/driftless",
        "service/driftless",
    ] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }
    for rule in rbac_rules() {
        for key in ["apiGroups", "resources", "verbs"] {
            assert!(
                !rule[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v.as_str().unwrap().contains('*')),
                "no wildcards in deploy/rbac.yaml: {rule}"
            );
        }
    }
    let deployment = std::fs::read_to_string(deploy.join("deployment.yaml")).unwrap();
    for must in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "livenessProbe",
        "readinessProbe",
        "limits",
    ] {
        assert!(
            deployment.contains(must),
            "deploy/deployment.yaml lacks {must}"
        );
    }
}

/// Runs a lifecycle of every kind through a controller whose every request
/// is recorded, then checks deploy/rbac.yaml grants each.
// Multi-threaded: kubectl blocks its thread while the controller works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_role_covers_every_request_the_controller_makes() {
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let mut scope = Scope::new("rbac").await;
    let client = recording_client(scope.client.clone(), &scope.ns, seen.clone());
    scope.start_controller_client(client.clone(), Duration::from_secs(2));
    let bucket = crate::support::unique("rbac");
    let pc = scope.provider_config.clone();
    let ns = scope.ns.clone();
    let manifests = format!(
        r#"
apiVersion: aws.driftless.dev/v1alpha1
kind: Bucket
metadata: {{name: {bucket}, namespace: {ns}}}
spec:
  providerConfigRef: {{name: {pc}}}
  writeConnectionSecretToRef: {{name: {bucket}-conn}}
  forProvider: {{tags: {{a: b}}}}
---
apiVersion: aws.driftless.dev/v1alpha1
kind: Vpc
metadata: {{name: net, namespace: {ns}}}
spec:
  providerConfigRef: {{name: {pc}}}
  forProvider: {{cidrBlock: 10.77.0.0/16}}
---
apiVersion: aws.driftless.dev/v1alpha1
kind: Subnet
metadata: {{name: net-a, namespace: {ns}}}
spec:
  providerConfigRef: {{name: {pc}}}
  forProvider: {{vpcRef: {{name: net}}, cidrBlock: 10.77.1.0/24}}
"#
    );
    let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(&manifests));
    assert!(ok, "{out}{err}");
    let (ok, out, err) = kubectl(
        &[
            "wait",
            "-n",
            &ns,
            "--for=condition=Ready",
            "--timeout=60s",
            "buckets,vpcs,subnets",
            "--all",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = kubectl(
        &[
            "delete",
            "-n",
            &ns,
            "subnets,vpcs,buckets",
            "--all",
            "--timeout=60s",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    // GitSync: an app and a ConfigMap from a repository, applied and healthy.
    let repo = crate::gitsync::Repo::new();
    repo.write(
        "clusters/test/app.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app, namespace: {ns}}}\ndata: {{a: b}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: app, namespace: {ns}}}\nspec: {{ports: [{{port: 80}}]}}\n"
        ),
    );
    repo.commit("app");
    let gitsyncs: Api<driftless::gitsync::GitSync> = Api::namespaced(scope.client.clone(), &ns);
    gitsyncs
        .create(
            &PostParams::default(),
            &crate::gitsync::new_gitsync("rbac", &repo.url(), json!({})),
        )
        .await
        .unwrap();
    let (ok, out, err) = kubectl(
        &[
            "wait",
            "-n",
            &ns,
            "--for=condition=Ready",
            "--timeout=60s",
            "gitsync/rbac",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    // Leader election, as the controller process does it.
    let elector = driftless::ops::leader::Elector::new(
        client.clone(),
        driftless::ops::leader::LeaseConfig {
            namespace: ns.clone(),
            name: "driftless-controller".into(),
            identity: "rbac-test".into(),
            duration: Duration::from_secs(3),
        },
    );
    elector.acquire().await.unwrap();
    elector.release().await;
    scope.stop_controller();

    let rules = rbac_rules();
    let seen = seen.lock().unwrap().clone();
    let missing: Vec<&Access> = seen.iter().filter(|a| !allowed(&rules, a)).collect();
    assert!(
        missing.is_empty(),
        "deploy/rbac.yaml does not grant {missing:?}; the controller made {seen:?}"
    );
    // The recording saw the work itself, not just the watches.
    for want in [
        ("patch", "aws.driftless.dev", "buckets/status"),
        ("patch", "", "secrets"),
        ("create", "coordination.k8s.io", "leases"),
    ] {
        let want = (want.0.to_string(), want.1.to_string(), want.2.to_string());
        assert!(seen.contains(&want), "expected {want:?} among {seen:?}");
    }
}

/// One plain HTTP/1.0 request; returns (status, body).
fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nhost: test\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A loopback receiver that records every JSON body POSTed to it.
fn notification_receiver() -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read headers, then content-length bytes of body.
            let body = loop {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break Some(body[..len].to_string());
                    }
                }
            };
            let _ = conn.write_all(
                b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            if let Some(body) = body.and_then(|b| serde_json::from_str(&b).ok()) {
                sink.lock().unwrap().push(body);
            }
        }
    });
    (addr, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_notifications() {
    let (receiver, got) = notification_receiver();
    let mut scope = Scope::new("ops").await;
    let ns = scope.ns.clone();
    let (ok, out, err) = kubectl(
        &[
            "create",
            "secret",
            "generic",
            "-n",
            &ns,
            "notify",
            &format!("--from-literal=url=http://{receiver}/hook"),
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    let calls = Arc::new(CallCounter::default());
    let mut shared = Shared::new(calls.clone());
    shared.notifier = Arc::new(Notifier::from_secret(scope.client.clone(), &ns, "notify"));
    scope.calls = calls;
    scope.shared = Some(shared.clone());
    let state = Arc::new(HttpState {
        client: scope.client.clone(),
        metrics: shared.metrics.clone(),
        ready: true.into(),
    });
    let addr = driftless::ops::http::serve(
        "127.0.0.1:0".parse().unwrap(),
        state,
        driftless::gitsync::webhook::routes(),
    )
    .await
    .unwrap();
    scope.start_controller(Duration::from_secs(2));

    let good = crate::support::unique("ops-good");
    let pc = scope.provider_config.clone();
    let manifests = format!(
        r#"
apiVersion: aws.driftless.dev/v1alpha1
kind: Bucket
metadata: {{name: {good}, namespace: {ns}}}
spec:
  providerConfigRef: {{name: {pc}}}
  forProvider: {{tags: {{team: web}}}}
---
apiVersion: aws.driftless.dev/v1alpha1
kind: Bucket
metadata: {{name: {good}-bad, namespace: {ns}}}
spec:
  providerConfigRef: {{name: {pc}}}
  forProvider: {{region: mars-north-1}}
"#
    );
    let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(&manifests));
    assert!(ok, "{out}{err}");
    let (ok, out, err) = kubectl(
        &[
            "wait",
            "-n",
            &ns,
            "--for=condition=Ready",
            "--timeout=60s",
            &format!("bucket/{good}"),
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    // Drift: a tag changed out of band is put back, and reported.
    crate::support::s3()
        .await
        .put_bucket_tagging()
        .bucket(&good)
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .tag_set(
                    aws_sdk_s3::types::Tag::builder()
                        .key("team")
                        .value("hacked")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let events = wait_for(
        "drift_corrected and resource_failed notifications",
        Duration::from_secs(30),
        || {
            let got = got.clone();
            async move {
                let got = got.lock().unwrap().clone();
                let has = |e: &str| got.iter().any(|n| n["event"] == e);
                (has("drift_corrected") && has("resource_failed")).then_some(got)
            }
        },
    )
    .await;
    let drift = events
        .iter()
        .find(|n| n["event"] == "drift_corrected")
        .unwrap();
    assert_eq!(drift["kind"], "Bucket");
    assert_eq!(drift["namespace"], ns.as_str());
    assert_eq!(drift["name"], good.as_str());
    assert!(
        drift["message"].as_str().unwrap().contains("team"),
        "{drift}"
    );
    let failed = events
        .iter()
        .find(|n| n["event"] == "resource_failed")
        .unwrap();
    assert_eq!(failed["name"], format!("{good}-bad"));
    assert!(failed["time"].is_string());
    // Once per failure, not once per retry.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let failures = got
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n["event"] == "resource_failed")
        .count();
    assert_eq!(failures, 1, "a failing resource is reported once");

    let (status, body) = http_request(addr, "GET", "/healthz", &[], b"");
    assert_eq!((status, body.trim()), (200, "ok"));
    assert_eq!(http_request(addr, "GET", "/readyz", &[], b"").0, 200);
    let (status, metrics) = http_request(addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    for want in [
        r#"driftless_reconciles_total{kind="Bucket",result="success"}"#,
        r#"driftless_reconciles_total{kind="Bucket",result="error"}"#,
        r#"driftless_reconcile_duration_seconds_bucket{le="+Inf",kind="Bucket"}"#,
        r#"driftless_cloud_api_calls_total{service="S3",operation="HeadBucket",outcome="ok"}"#,
        r#"driftless_drift_corrections_total{kind="Bucket"} 1"#,
        r#"driftless_managed_resources{kind="Bucket",ready="True",synced="True"} 1"#,
    ] {
        assert!(
            metrics.contains(want),
            "{want} missing from /metrics:\n{metrics}"
        );
    }
    // Webhook bodies are bounded (signatures: tests/it/gitsync.rs).
    let big = vec![b'x'; driftless::ops::http::MAX_BODY + 1];
    let (status, _) = http_request(addr, "POST", &format!("/hooks/{ns}/nope"), &[], &big);
    assert_eq!(status, 413, "bodies are bounded");

    let (ok, out, err) = kubectl(
        &["delete", "-n", &ns, "buckets", "--all", "--timeout=60s"],
        None,
    );
    assert!(ok, "{out}{err}");
}

/// A child process this test owns: killed (by its PID) when dropped, even
/// when the test fails halfway.
struct Owned(std::process::Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two controller processes: one leads; killed, the other takes over within
/// the lease duration, and nothing is created twice.
#[tokio::test]
async fn a_standby_takes_over_when_the_leader_dies() {
    let scope = Scope::new("leader").await;
    let ns = scope.ns.clone();
    let lease_secs = 3;
    let spawn = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args([
                "controller",
                "--namespace",
                &ns,
                "--leader-election-namespace",
                &ns,
                "--lease-duration",
                &format!("{lease_secs}s"),
                "--http-addr",
                "127.0.0.1:0",
                "--poll-interval",
                "2s",
            ])
            .env("KUBECONFIG", &env().kubeconfig)
            .env("POD_NAME", name)
            .env("AWS_ENDPOINT_URL", &env().aws_endpoint)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(Owned)
            .unwrap()
    };
    let mut a = spawn("replica-a");
    let mut b = spawn("replica-b");
    let leases: Api<Lease> = Api::namespaced(scope.client.clone(), &ns);
    let holder = || {
        let leases = leases.clone();
        async move {
            leases
                .get_opt("driftless-controller")
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec?.holder_identity)
        }
    };
    let first = wait_for("a leader", Duration::from_secs(20), || async {
        holder().await
    })
    .await;
    let pc = scope.provider_config.clone();
    let vpcs: String = (0..4)
        .map(|i| {
            format!(
                "---\napiVersion: aws.driftless.dev/v1alpha1\nkind: Vpc\nmetadata: {{name: v{i}, namespace: {ns}}}\nspec:\n  providerConfigRef: {{name: {pc}}}\n  forProvider: {{cidrBlock: 10.{}.0.0/16}}\n",
                80 + i
            )
        })
        .collect();
    let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(&vpcs));
    assert!(ok, "{out}{err}");
    let (ok, out, err) = kubectl(
        &[
            "wait",
            "-n",
            &ns,
            "--for=condition=Ready",
            "--timeout=60s",
            "vpcs",
            "--all",
        ],
        None,
    );
    assert!(ok, "{out}{err}");

    // Kill the leader without a chance to release the lease.
    let (leader, standby) = if first == "replica-a" {
        (&mut a, "replica-b")
    } else {
        (&mut b, "replica-a")
    };
    leader.0.kill().unwrap();
    leader.0.wait().unwrap();
    let killed = std::time::Instant::now();
    let next = wait_for("the standby to lead", Duration::from_secs(20), || async {
        holder().await.filter(|h| h == standby)
    })
    .await;
    let took = killed.elapsed();
    eprintln!("standby took over {took:?} after the leader was killed (lease {lease_secs} s)");
    assert_eq!(next, standby);
    assert!(
        took <= Duration::from_secs(lease_secs + 2),
        "took over in {took:?}, lease duration {lease_secs} s"
    );
    // The new leader acts: a new VPC becomes Ready, and no VPC was made twice.
    let extra = format!(
        "apiVersion: aws.driftless.dev/v1alpha1\nkind: Vpc\nmetadata: {{name: v9, namespace: {ns}}}\nspec:\n  providerConfigRef: {{name: {pc}}}\n  forProvider: {{cidrBlock: 10.99.0.0/16}}\n"
    );
    assert!(kubectl(&["apply", "-f", "-"], Some(&extra)).0);
    let (ok, out, err) = kubectl(
        &[
            "wait",
            "-n",
            &ns,
            "--for=condition=Ready",
            "--timeout=60s",
            "vpc/v9",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    let ec2 = crate::support::ec2().await;
    for name in ["v0", "v1", "v2", "v3", "v9"] {
        let owner = format!("{ns}/{name}");
        let found = ec2
            .describe_vpcs()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:driftless.dev/owner")
                    .values(&owner)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(found.vpcs().len(), 1, "exactly one VPC for {owner}");
    }
    let (ok, out, err) = kubectl(
        &["delete", "-n", &ns, "vpcs", "--all", "--timeout=60s"],
        None,
    );
    assert!(ok, "{out}{err}");
    drop((a, b));
}
