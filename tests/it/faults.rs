//! Faults: the cloud hangs. An endpoint that accepts connections and never
//! answers holds neither the healthy resources of the same kind nor the
//! controller's shutdown.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftless_provider::EXTERNAL_NAME;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::support::{
    controller_command, create_provider_config, kubectl, kubectl_wait_ready, wait_for, Owned, Scope,
};

const HUNG: usize = 12;
const HEALTHY: usize = 5;

/// A TCP server that accepts and never answers, counting its connections
/// (on a thread of its own: the test's runtime may be blocked in kubectl).
fn tarpit() -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(conn);
        }
    });
    (url, accepted)
}

pub(crate) fn vpc(ns: &str, name: &str, pc: &str, n: usize) -> String {
    format!(
        "apiVersion: aws.driftless.dev/v1alpha1\nkind: Vpc\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  providerConfigRef: {{name: {pc}}}\n  forProvider: {{cidrBlock: 10.{n}.0.0/16}}\n---\n"
    )
}

/// Waits until process `child` has exited; how long that took.
async fn exited_within(child: &mut Owned, timeout: Duration) -> Duration {
    let started = Instant::now();
    wait_for("the controller to exit", timeout, || {
        let done = child.0.try_wait().unwrap().is_some();
        async move { done.then_some(()) }
    })
    .await;
    started.elapsed()
}

fn sigterm(child: &Owned) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM {}", child.0.id());
}

/// 12 Vpcs whose ProviderConfig points at a tarpit, and 5 healthy ones:
/// with call timeouts the healthy ones are Ready while the hung calls time
/// out and retry; the hung ones say why in their status. Then a controller
/// with the default (60 s) call timeout, leading, gets SIGTERM while its
/// calls hang: it exits within --shutdown-timeout (20 s, under Kubernetes'
/// 30 s grace period) and releases its Lease.
#[tokio::test]
async fn a_hung_cloud_endpoint_holds_neither_healthy_resources_nor_shutdown() {
    let scope = Scope::new("hung").await;
    let ns = scope.ns.clone();
    let (url, accepted) = tarpit();
    let hung_pc = format!("hung-{ns}");
    create_provider_config(&scope.client, &hung_pc, &url, &ns).await;
    let mut manifests = String::new();
    for i in 0..HUNG {
        manifests += &vpc(&ns, &format!("hung-{i}"), &hung_pc, 100 + i);
    }
    for i in 0..HEALTHY {
        manifests += &vpc(&ns, &format!("ok-{i}"), &scope.provider_config, 120 + i);
    }
    let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(&manifests));
    assert!(ok, "{out}{err}");

    let log = tempfile::NamedTempFile::new().unwrap();
    let started = Instant::now();
    let mut controller = controller_command(&ns)
        .args(["--poll-interval", "30s"])
        .args([
            "--cloud-attempt-timeout",
            "2s",
            "--cloud-operation-timeout",
            "4s",
        ])
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .map(Owned)
        .unwrap();
    let healthy: Vec<String> = (0..HEALTHY).map(|i| format!("vpc/ok-{i}")).collect();
    let targets: Vec<&str> = healthy.iter().map(String::as_str).collect();
    let (ok, out, err) = kubectl_wait_ready(&ns, "120s", &targets);
    let ready_in = started.elapsed();
    let logged = std::fs::read_to_string(log.path()).unwrap();
    assert!(ok, "{out}{err}\ncontroller log:\n{logged}");
    eprintln!(
        "{HEALTHY} healthy Vpcs Ready {ready_in:?} after start, beside {HUNG} hung on a tarpit ({} connections so far)",
        accepted.load(Ordering::SeqCst)
    );
    let vpcs: Api<driftless_aws::Vpc> = scope.api();
    let hung = wait_for(
        "a hung Vpc to report the timeout",
        Duration::from_secs(60),
        || {
            let vpcs = vpcs.clone();
            async move {
                let v = vpcs.get("hung-0").await.ok()?;
                let msg = serde_json::to_value(&v).ok()?["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "Synced")?["message"]
                    .as_str()?
                    .to_string();
                msg.contains("did not answer in time").then_some(msg)
            }
        },
    )
    .await;
    eprintln!("hung-0: {hung}");
    let mut delete = vec!["delete", "-n", &ns, "--timeout=60s"];
    delete.extend(targets.iter().copied());
    let (ok, out, err) = kubectl(&delete, None);
    assert!(ok, "{out}{err}");
    sigterm(&controller);
    let took = exited_within(&mut controller, Duration::from_secs(30)).await;
    eprintln!("with 4 s call timeouts: exited {took:?} after SIGTERM");

    // Default call timeouts (60 s), leader election on: SIGTERM while calls hang.
    let before = accepted.load(Ordering::SeqCst);
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut leader = controller_command(&ns)
        .args(["--leader-elect", "--leader-election-namespace", &ns])
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .map(Owned)
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(scope.client.clone(), &ns);
    wait_for(
        "calls in flight to the tarpit",
        Duration::from_secs(60),
        || {
            let n = accepted.load(Ordering::SeqCst);
            async move { (n > before).then_some(()) }
        },
    )
    .await;
    let holder = leases
        .get("driftless-controller")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert!(holder.is_some(), "the controller leads");
    sigterm(&leader);
    let took = exited_within(&mut leader, Duration::from_secs(30)).await;
    let logged = std::fs::read_to_string(log.path()).unwrap();
    let lease = leases.get("driftless-controller").await.unwrap();
    eprintln!("leader with calls hung (60 s call timeout): exited {took:?} after SIGTERM");
    assert!(
        lease.spec.unwrap().holder_identity.is_none(),
        "the lease was not released\ncontroller log:\n{logged}"
    );
    assert!(
        took < Duration::from_secs(28),
        "exited after {took:?}\n{logged}"
    );

    // The hung Vpcs never reached a cloud: let them go without a controller.
    for i in 0..HUNG {
        let name = format!("hung-{i}");
        let gone = json!({"metadata": {"finalizers": null}});
        let _ = vpcs
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&gone),
            )
            .await;
    }
}

/// A LocalStack of this test's own, on a free port (the shared one serves
/// the other tests): its endpoint and PID. Stopped by its own script (by
/// the recorded PID) on drop.
struct OwnLocalStack {
    port: u16,
    endpoint: String,
    pid: u32,
}

impl OwnLocalStack {
    fn start_on(port: u16) -> Self {
        let out = std::process::Command::new(crate::support::repo_root().join("localstack/start"))
            .env("LOCALSTACK_PORT", port.to_string())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "localstack/start: {stderr}");
        let pid = stderr
            .split("(pid ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pid in: {stderr}"));
        Self {
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            pid,
        }
    }

    /// Killed outright (SIGKILL, by its PID): the cloud dies mid-call.
    fn kill(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -KILL {}", self.pid);
    }
}

impl Drop for OwnLocalStack {
    fn drop(&mut self) {
        let _ = std::process::Command::new(crate::support::repo_root().join("localstack/stop"))
            .env("LOCALSTACK_PORT", self.port.to_string())
            .output();
    }
}

const CONVERGE: usize = 200;

/// LocalStack killed in the middle of a 200-VPC converge and started again
/// (an empty cloud): afterwards every VPC is Ready again, each exactly once
/// in the new cloud, none left over.
#[tokio::test]
async fn the_cloud_killed_mid_converge_and_restarted_empty_converges_exactly_once() {
    let _turn = crate::support::heavy().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cloud = OwnLocalStack::start_on(port);
    let mut scope = Scope::new("cloud-restart").await;
    let ns = scope.ns.clone();
    let pc = format!("own-{ns}");
    create_provider_config(&scope.client, &pc, &cloud.endpoint, &ns).await;
    scope.start_controller(Duration::from_secs(2));
    let manifests: String = (0..CONVERGE)
        .map(|i| vpc(&ns, &format!("v{i}"), &pc, i % 250))
        .collect();
    let started = Instant::now();
    let (ok, out, err) = scope.kubectl(&["apply", "-f", "-"], Some(&manifests)).await;
    assert!(ok, "{out}{err}");
    let vpcs: Api<driftless_aws::Vpc> = scope.api();
    let ready = |vpcs: Api<driftless_aws::Vpc>| async move {
        let list = vpcs.list(&Default::default()).await.unwrap();
        list.items
            .iter()
            .filter(|v| {
                v.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count()
    };
    let at_kill = wait_for(
        "a quarter of the VPCs Ready",
        Duration::from_secs(300),
        || {
            let vpcs = vpcs.clone();
            async move {
                let n = ready(vpcs).await;
                (n >= CONVERGE / 4).then_some(n)
            }
        },
    )
    .await;
    cloud.kill();
    let killed_at = started.elapsed();
    let cloud = OwnLocalStack::start_on(port);
    let restarted = Instant::now();
    let ec2 = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&crate::support::aws_config().await)
            .endpoint_url(&cloud.endpoint)
            .build(),
    );
    // Recovered: every object Ready with an external name that exists in the
    // new cloud (a status from the old cloud is stale until its next poll).
    let recovered_count = || {
        let (vpcs, ec2, ns) = (vpcs.clone(), ec2.clone(), ns.clone());
        async move {
            let ids: BTreeSet<String> = crate::ops::owned_vpcs(&ec2, &ns)
                .await
                .into_iter()
                .map(|(_, id)| id)
                .collect();
            let list = vpcs.list(&Default::default()).await.unwrap();
            let n = list
                .items
                .iter()
                .filter(|v| {
                    let ready = v.status.as_ref().is_some_and(|s| {
                        s.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                    });
                    let id = v.annotations().get(EXTERNAL_NAME);
                    ready && id.is_some_and(|id| ids.contains(id))
                })
                .count();
            (n == CONVERGE).then_some(())
        }
    };
    wait_for(
        "every VPC Ready in the new cloud",
        Duration::from_secs(600),
        recovered_count,
    )
    .await;
    let recovered = restarted.elapsed();
    let owned = crate::ops::owned_vpcs(&ec2, &ns).await;
    let mut owners: Vec<&str> = owned.iter().map(|(o, _)| o.as_str()).collect();
    owners.sort();
    let total = owners.len();
    owners.dedup();
    eprintln!(
        "{CONVERGE} VPCs: LocalStack killed {killed_at:?} into the converge ({at_kill} Ready), restarted empty; every VPC Ready in the new cloud {recovered:?} after the restart; {total} VPCs there for {} owners",
        owners.len()
    );
    assert_eq!(
        (total, owners.len()),
        (CONVERGE, CONVERGE),
        "each VPC exactly once"
    );
    // On the blocking pool: the controller, on this runtime, does the deletes.
    let deleting = Instant::now();
    let (ok, out, err) = scope
        .kubectl(
            &["delete", "-n", &ns, "vpcs", "--all", "--timeout=300s"],
            None,
        )
        .await;
    assert!(ok, "{out}{err}");
    eprintln!("{CONVERGE} VPCs deleted in {:?}", deleting.elapsed());
    assert!(
        crate::ops::owned_vpcs(&ec2, &ns).await.is_empty(),
        "VPCs left behind"
    );
}

/// A TCP proxy that can black-hole its traffic: bytes are read and dropped
/// (in both directions, on open and new connections), as a cut network
/// drops packets; nothing is refused or closed.
struct BlackHole {
    addr: std::net::SocketAddr,
    holed: Arc<std::sync::atomic::AtomicBool>,
}

impl BlackHole {
    fn start(target: std::net::SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let holed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cut = holed.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let cut = cut.clone();
                    std::thread::spawn(move || pipe(from, to, &cut));
                }
            }
        });
        Self { addr, holed }
    }

    fn hole(&self) {
        self.holed.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either closes; while `cut`, drops the bytes.
fn pipe(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    cut: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) if cut.load(Ordering::SeqCst) => {}
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// The leader's network to the API server is black-holed (a proxy drops
/// its bytes; the standby's path is fine). The leader cannot renew, and
/// stops acting (it exits, to restart as a standby) before its lease could
/// expire, so the standby that takes over never overlaps with it; the
/// standby then reconciles.
#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_stops_before_its_lease_ends() {
    const LEASE: Duration = Duration::from_secs(6);
    let scope = Scope::new("blackhole").await;
    let ns = scope.ns.clone();
    let kubeconfig = std::fs::read_to_string(&crate::support::env().kubeconfig).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .expect("a server in the kubeconfig")
        .to_string();
    let proxy = BlackHole::start(server.parse().unwrap());
    let cut_off = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        cut_off.path(),
        kubeconfig.replace(&server, &proxy.addr.to_string()),
    )
    .unwrap();
    let replica = |name: &str, kubeconfig: &std::path::Path, log: &tempfile::NamedTempFile| {
        controller_command(&ns)
            .args(["--leader-elect", "--leader-election-namespace", &ns])
            .args(["--lease-duration", "6s", "--poll-interval", "1s"])
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", name)
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .map(Owned)
            .unwrap()
    };
    let leases: Api<Lease> = Api::namespaced(scope.client.clone(), &ns);
    let holder_is = |who: &'static str| {
        let leases = leases.clone();
        move || {
            let leases = leases.clone();
            async move {
                let l = leases.get_opt("driftless-controller").await.ok()??;
                (l.spec?.holder_identity.as_deref() == Some(who)).then_some(())
            }
        }
    };
    let a_log = tempfile::NamedTempFile::new().unwrap();
    let mut a = replica("replica-a", cut_off.path(), &a_log);
    wait_for(
        "replica-a to lead",
        Duration::from_secs(60),
        holder_is("replica-a"),
    )
    .await;
    let b_log = tempfile::NamedTempFile::new().unwrap();
    let _b = replica("replica-b", &crate::support::env().kubeconfig, &b_log);
    let pc = scope.provider_config.clone();
    let first: String = (0..5)
        .map(|i| vpc(&ns, &format!("v{i}"), &pc, 130 + i))
        .collect();
    let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(&first));
    assert!(ok, "{out}{err}");
    let (ok, out, err) = kubectl_wait_ready(
        &ns,
        "60s",
        &["vpc/v0", "vpc/v1", "vpc/v2", "vpc/v3", "vpc/v4"],
    );
    assert!(ok, "{out}{err}");

    proxy.hole();
    let cut = Instant::now();
    let stopped = exited_within(&mut a, Duration::from_secs(30)).await;
    wait_for(
        "replica-b to lead",
        Duration::from_secs(60),
        holder_is("replica-b"),
    )
    .await;
    let took_over = cut.elapsed();
    let a_said = std::fs::read_to_string(a_log.path()).unwrap();
    eprintln!(
        "lease {LEASE:?}: the cut-off leader stopped {stopped:?} after the cut (0.8 x lease = {:?}); the standby led {took_over:?} after it",
        LEASE.mul_f64(0.8)
    );
    assert!(
        a_said.contains("could not renew the lease in time"),
        "{a_said}"
    );
    assert!(
        stopped < LEASE,
        "stopped {stopped:?} after the cut\n{a_said}"
    );
    assert!(stopped < took_over, "the two replicas overlapped");

    // The new leader acts.
    let next = vpc(&ns, "v5", &pc, 135);
    let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(&next));
    assert!(ok, "{out}{err}");
    let (ok, out, err) = kubectl_wait_ready(&ns, "60s", &["vpc/v5"]);
    let b_said = std::fs::read_to_string(b_log.path()).unwrap();
    assert!(ok, "{out}{err}\n{b_said}");
    let (ok, out, err) = kubectl(
        &["delete", "-n", &ns, "vpcs", "--all", "--timeout=60s"],
        None,
    );
    assert!(ok, "{out}{err}");
}
