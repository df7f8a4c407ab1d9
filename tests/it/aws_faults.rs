//! Faults: the cloud answers badly. A small HTTP proxy in front of
//! LocalStack (the ProviderConfig's endpoint points at it) injects, on
//! creates only, server errors, throttling and lost answers (LocalStack
//! handled the request, the connection is dropped before the answer). Over
//! 200 creates nothing leaks, every duplicate is reported, throttling backs
//! off and the faults cost at most twice the calls of a fault-free run.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use driftless_provider::{EXTERNAL_NAME, TAG_OWNER};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube::{Api, ResourceExt};
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;

use crate::support::{wait_for, Scope};

/// What the proxy did with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Injected {
    /// Forwarded, LocalStack's answer returned.
    Nothing,
    /// Answered by the proxy: this HTTP status, EC2's `InternalError` /
    /// `Unavailable`; LocalStack never saw the request.
    ServerError(u16),
    /// Answered by the proxy: 503 `RequestLimitExceeded`.
    Throttled,
    /// Forwarded (LocalStack created), then the connection was dropped
    /// without an answer.
    Dropped,
}

/// One request through the proxy.
#[derive(Clone, Debug)]
struct Record {
    at: Instant,
    action: String,
    /// The `driftless.dev/owner` tag in the request's TagSpecification.
    owner: Option<String>,
    injected: Injected,
    /// The VPC LocalStack created, for a dropped answer.
    created: Option<String>,
}

/// Fault rates on create calls (`Action=Create*`), drawn from a seeded RNG
/// in request order.
#[derive(Clone, Copy)]
struct Faults {
    server_error: f64,
    throttle: f64,
    drop: f64,
    seed: u64,
}

impl Faults {
    const NONE: Faults = Faults {
        server_error: 0.0,
        throttle: 0.0,
        drop: 0.0,
        seed: 0,
    };
}

struct State {
    upstream: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    faults: Faults,
    rng: Mutex<rand::rngs::StdRng>,
    log: Arc<Mutex<Vec<Record>>>,
}

/// The fault proxy: forwards HTTP/1.1 to `upstream`, on a thread and
/// runtime of its own (its clock is not held up by the controller's work).
struct Proxy {
    url: String,
    log: Arc<Mutex<Vec<Record>>>,
}

impl Proxy {
    fn start(upstream: &str, faults: Faults) -> Self {
        let log: Arc<Mutex<Vec<Record>>> = Arc::default();
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
            faults,
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(faults.seed)),
            log: log.clone(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(listener, state));
        });
        Self { url, log }
    }

    fn records(&self) -> Vec<Record> {
        self.log.lock().unwrap().clone()
    }
}

async fn serve(listener: std::net::TcpListener, state: Arc<State>) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    while let Ok((stream, _)) = listener.accept().await {
        let state = state.clone();
        // Notified to drop this connection without answering.
        let kill = Arc::new(Notify::new());
        let k = kill.clone();
        let svc = hyper::service::service_fn(move |req| handle(req, state.clone(), k.clone()));
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = kill.notified() => {} // the connection (and its socket) dropped here
            }
        });
    }
}

/// The form parameters of an EC2 Query request body.
fn form(body: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The value of the tag `key` in the request's TagSpecification parameters.
fn tag_value(params: &BTreeMap<String, String>, key: &str) -> Option<String> {
    params.iter().find_map(|(k, v)| {
        let prefix = k.strip_suffix(".Key").filter(|_| v == key)?;
        params.get(&format!("{prefix}.Value")).cloned()
    })
}

fn ec2_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let id: u64 = rand::random();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{id:016x}</RequestID></Response>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "text/xml;charset=UTF-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: Arc<State>,
    kill: Arc<Notify>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(ec2_error(400, "IncompleteBody", "request body not read")),
    };
    let params = form(&body);
    let action = params.get("Action").cloned().unwrap_or_else(|| "-".into());
    let owner = tag_value(&params, TAG_OWNER);
    let f = state.faults;
    let injected = if action.starts_with("Create") {
        let r: f64 = state.rng.lock().unwrap().random();
        if r < f.server_error {
            // Half 500 InternalError, half 503 Unavailable.
            Injected::ServerError(if r < f.server_error / 2.0 { 500 } else { 503 })
        } else if r < f.server_error + f.throttle {
            Injected::Throttled
        } else if r < f.server_error + f.throttle + f.drop {
            Injected::Dropped
        } else {
            Injected::Nothing
        }
    } else {
        Injected::Nothing
    };
    let mut record = Record {
        at,
        action,
        owner,
        injected,
        created: None,
    };
    let answer = match injected {
        Injected::ServerError(500) => ec2_error(
            500,
            "InternalError",
            "An internal error has occurred (injected)",
        ),
        Injected::ServerError(status) => ec2_error(
            status,
            "Unavailable",
            "The server is overloaded and can't handle the request (injected)",
        ),
        Injected::Throttled => ec2_error(503, "RequestLimitExceeded", "Request limit exceeded."),
        Injected::Nothing | Injected::Dropped => {
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut forward = Request::builder()
                .method(parts.method.clone())
                .uri(format!("{}{path}", state.upstream));
            for (k, v) in &parts.headers {
                forward = forward.header(k, v);
            }
            let forwarded = state
                .client
                .request(forward.body(Full::new(body)).unwrap())
                .await;
            match forwarded {
                Ok(resp) => {
                    let (mut parts, body) = resp.into_parts();
                    let body = body.collect().await.map(|b| b.to_bytes());
                    let body = body.unwrap_or_default();
                    parts.headers.remove("transfer-encoding");
                    parts.headers.remove("content-length");
                    if injected == Injected::Dropped {
                        let text = String::from_utf8_lossy(&body);
                        record.created = text
                            .split("<vpcId>")
                            .nth(1)
                            .and_then(|s| s.split('<').next())
                            .map(str::to_string);
                    }
                    Response::from_parts(parts, Full::new(body))
                }
                Err(e) => ec2_error(502, "ProxyError", &format!("upstream: {e}")),
            }
        }
    };
    state.log.lock().unwrap().push(record);
    if injected == Injected::Dropped {
        kill.notify_one();
        std::future::pending::<()>().await;
    }
    Ok(answer)
}

fn vpc(ns: &str, name: &str, pc: &str, n: usize) -> String {
    format!(
        "apiVersion: aws.driftless.dev/v1alpha1\nkind: Vpc\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  providerConfigRef: {{name: {pc}}}\n  forProvider: {{cidrBlock: 10.{n}.0.0/16}}\n---\n"
    )
}

/// A ProviderConfig whose endpoint is `url`, with the scope's credentials.
async fn provider_config(scope: &Scope, name: &str, url: &str) {
    crate::support::create_provider_config(&scope.client, name, url, &scope.ns).await;
}

fn is_ready(v: &driftless_aws::Vpc) -> bool {
    v.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Applies `n` Vpcs named `{prefix}{i}` on ProviderConfig `pc` and waits
/// until all are Ready; how long that took, and the proxy's record up to
/// that moment.
async fn converge(scope: &Scope, prefix: &str, pc: &str, n: usize, proxy: &Proxy) -> Duration {
    let manifests: String = (0..n)
        .map(|i| vpc(&scope.ns, &format!("{prefix}{i}"), pc, i % 250))
        .collect();
    let started = Instant::now();
    let (ok, out, err) = scope.kubectl(&["apply", "-f", "-"], Some(&manifests)).await;
    assert!(ok, "{out}{err}");
    let vpcs: Api<driftless_aws::Vpc> = scope.api();
    wait_for(
        &format!("{n} Vpcs {prefix}* Ready"),
        Duration::from_secs(900),
        || {
            let vpcs = vpcs.clone();
            async move {
                let list = vpcs.list(&Default::default()).await.ok()?;
                let ready = list
                    .items
                    .iter()
                    .filter(|v| v.name_any().starts_with(prefix) && is_ready(v))
                    .count();
                (ready == n).then_some(())
            }
        },
    )
    .await;
    let took = started.elapsed();
    eprintln!(
        "{n} Vpcs through {} Ready in {took:.1?} ({} requests)",
        proxy.url,
        proxy.records().len()
    );
    took
}

/// Requests per Action.
fn by_action(records: &[Record]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        *counts.entry(r.action.clone()).or_default() += 1;
    }
    counts
}

/// Deletes every Vpc of the scope (the controller deletes in the cloud).
async fn delete_all(scope: &Scope) -> Duration {
    let deleting = Instant::now();
    let (ok, out, err) = scope
        .kubectl(
            &["delete", "-n", &scope.ns, "vpcs", "--all", "--timeout=300s"],
            None,
        )
        .await;
    assert!(ok, "{out}{err}");
    deleting.elapsed()
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

const CREATES: usize = 200;
/// A seed whose draws include lost answers among the first creates.
const SEED: u64 = 21;

/// 200 Vpcs created through the fault proxy: 10% server errors, 5%
/// throttling, 1% answers lost after LocalStack created. Every Vpc Ready,
/// no VPC without an object, every extra VPC of an owner reported (status
/// and a Warning Event), throttled requests retried after a delay, at most
/// twice the calls of the same 200 creates without faults; nothing left.
#[tokio::test]
async fn faulty_creates_leak_nothing_report_duplicates_and_back_off() {
    let _turn = crate::support::heavy().await;
    let mut scope = Scope::new("awsfault").await;
    let ns = scope.ns.clone();
    let upstream = &crate::support::env().aws_endpoint;
    let clean = Proxy::start(upstream, Faults::NONE);
    let faults = Faults {
        server_error: 0.10,
        throttle: 0.05,
        drop: 0.01,
        seed: SEED,
    };
    let faulty = Proxy::start(upstream, faults);
    let (clean_pc, faulty_pc) = (format!("clean-{ns}"), format!("faulty-{ns}"));
    provider_config(&scope, &clean_pc, &clean.url).await;
    provider_config(&scope, &faulty_pc, &faulty.url).await;
    scope.start_controller(Duration::from_secs(2));
    let ec2 = crate::support::ec2().await;

    // Fault-free: the baseline.
    let clean_took = converge(&scope, "c", &clean_pc, CREATES, &clean).await;
    let clean_calls = clean.records();
    let clean_deleted = delete_all(&scope).await;
    assert!(
        crate::ops::owned_vpcs(&ec2, &ns).await.is_empty(),
        "fault-free run: VPCs left behind"
    );

    // The same creates with faults.
    let faulty_took = converge(&scope, "v", &faulty_pc, CREATES, &faulty).await;
    let mut calls = faulty.records();
    calls.sort_by_key(|r| r.at);

    // 0 leaks: every VPC with this namespace's owner tag belongs to an
    // object, and every object's external name exists.
    let vpcs: Api<driftless_aws::Vpc> = scope.api();
    let objects = vpcs.list(&Default::default()).await.unwrap().items;
    let external: BTreeMap<String, String> = objects
        .iter()
        .map(|v| {
            let id = v.annotations().get(EXTERNAL_NAME).cloned();
            let id = id.unwrap_or_else(|| panic!("{} Ready without external name", v.name_any()));
            (format!("{ns}/{}", v.name_any()), id)
        })
        .collect();
    let owned = crate::ops::owned_vpcs(&ec2, &ns).await;
    let ids: BTreeSet<&str> = owned.iter().map(|(_, id)| id.as_str()).collect();
    for (owner, id) in &external {
        assert!(ids.contains(id.as_str()), "{owner}: {id} not in LocalStack");
    }
    let leaks: Vec<&(String, String)> = owned
        .iter()
        .filter(|(owner, _)| !external.contains_key(owner))
        .collect();
    assert!(leaks.is_empty(), "VPCs without an object: {leaks:?}");
    // Duplicates: the other VPCs of an owner.
    let mut duplicates: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (owner, id) in &owned {
        if external.get(owner) != Some(id) {
            let name = owner.strip_prefix(&format!("{ns}/")).unwrap();
            duplicates
                .entry(name.to_string())
                .or_default()
                .push(id.clone());
        }
    }
    for d in duplicates.values_mut() {
        d.sort();
    }
    let dropped: Vec<&Record> = calls
        .iter()
        .filter(|r| r.injected == Injected::Dropped)
        .collect();
    assert!(!dropped.is_empty(), "seed {SEED}: no answer was lost");
    for r in &dropped {
        let id = r.created.as_deref().expect("LocalStack created a VPC");
        assert!(ids.contains(id), "the VPC of a lost answer, {id}, is gone");
    }
    // A duplicate is the VPC of a lost answer, never one driftless made
    // by itself (a retry of a create that had failed without creating).
    let lost: BTreeSet<&str> = dropped
        .iter()
        .filter_map(|r| r.created.as_deref())
        .collect();
    for (name, d) in &duplicates {
        for id in d {
            assert!(
                lost.contains(id.as_str()),
                "{name}: duplicate {id} is not from a lost answer"
            );
        }
    }
    // And each is provably the object's own: the SDK's retry resent the
    // create call's token (what --delete-proven-duplicates relies on).
    let token = |id: String| {
        let ec2 = ec2.clone();
        async move {
            let out = ec2.describe_vpcs().vpc_ids(&id).send().await.unwrap();
            out.vpcs()
                .iter()
                .flat_map(|v| v.tags())
                .find(|t| t.key() == Some("driftless.dev/create-token"))
                .and_then(|t| t.value().map(str::to_string))
        }
    };
    for (name, d) in &duplicates {
        let managed = &external[&format!("{ns}/{name}")];
        let want = token(managed.clone()).await;
        assert!(want.is_some(), "{managed} has no create token");
        for id in d {
            assert_eq!(
                token(id.clone()).await,
                want,
                "{name}: {id} is not from the same create call"
            );
        }
    }
    let reported_at = Instant::now();
    wait_for(
        "status.duplicates of every object to list its duplicates",
        Duration::from_secs(60),
        || {
            let (vpcs, duplicates) = (vpcs.clone(), duplicates.clone());
            async move {
                let list = vpcs.list(&Default::default()).await.ok()?;
                list.items
                    .iter()
                    .all(|v| {
                        let listed = v.status.as_ref().map(|s| s.duplicates.clone());
                        let want = duplicates.get(&v.name_any()).cloned().unwrap_or_default();
                        listed.unwrap_or_default() == want
                    })
                    .then_some(())
            }
        },
    )
    .await;
    let events: Api<k8s_openapi::api::events::v1::Event> = scope.api();
    wait_for(
        "a DuplicatesFound Event naming each duplicate",
        Duration::from_secs(60),
        || {
            let (events, duplicates) = (events.clone(), duplicates.clone());
            async move {
                let list = events.list(&Default::default()).await.ok()?.items;
                duplicates
                    .iter()
                    .all(|(name, ids)| {
                        list.iter().any(|e| {
                            e.reason.as_deref() == Some("DuplicatesFound")
                                && e.type_.as_deref() == Some("Warning")
                                && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                                    == Some(name.as_str())
                                && ids
                                    .iter()
                                    .all(|id| e.note.as_deref().unwrap_or("").contains(id))
                        })
                    })
                    .then_some(())
            }
        },
    )
    .await;
    let reported_in = reported_at.elapsed();

    // Backoff: from each injected failure of a create to the next request
    // carrying the same owner tag. A failure may have no next request: the
    // SDK's retry of a create whose first answer was lost fails after the
    // object has adopted that create's VPC (every object is Ready, above).
    let delays_after = |what: fn(Injected) -> bool| -> Vec<Duration> {
        let mut delays: Vec<Duration> = calls
            .iter()
            .enumerate()
            .filter(|(_, r)| what(r.injected) && r.owner.is_some())
            .filter_map(|(i, r)| {
                let next = calls[i + 1..].iter().find(|n| n.owner == r.owner)?;
                Some(next.at - r.at)
            })
            .collect();
        delays.sort();
        delays
    };
    let throttled = delays_after(|i| i == Injected::Throttled);
    let server_errors = delays_after(|i| matches!(i, Injected::ServerError(_)));
    assert!(!throttled.is_empty(), "seed {SEED}: nothing was throttled");

    let injected = |what: fn(&Injected) -> bool| calls.iter().filter(|r| what(&r.injected)).count();
    let creates = calls.iter().filter(|r| r.action == "CreateVpc").count();
    let (fault_counts, clean_counts) = (by_action(&calls), by_action(&clean_calls));
    let dup_count: usize = duplicates.values().map(Vec::len).sum();
    eprintln!("--- {CREATES} Vpcs created through the fault proxy (seed {SEED}) ---");
    eprintln!(
        "CreateVpc requests: {creates}; injected: {} server errors (500/503), {} throttled (RequestLimitExceeded), {} answers dropped after LocalStack created",
        injected(|i| matches!(i, Injected::ServerError(_))),
        injected(|i| *i == Injected::Throttled),
        dropped.len()
    );
    eprintln!(
        "all Ready: fault-free {clean_took:.1?}, with faults {faulty_took:.1?} (fault-free deleted in {clean_deleted:.1?})"
    );
    eprintln!(
        "leaks: {}; duplicates: {dup_count} (of {} lost answers), all in status.duplicates and a DuplicatesFound Event {reported_in:.1?} after all were Ready",
        leaks.len(),
        dropped.len()
    );
    for (name, ids) in &duplicates {
        eprintln!(
            "  duplicate of {name}: {ids:?} (manages {})",
            external[&format!("{ns}/{name}")]
        );
    }
    let show = |d: &[Duration]| {
        if d.is_empty() {
            return "n=0".to_string();
        }
        format!(
            "n={} min {:.1?} median {:.1?} max {:.1?}",
            d.len(),
            d[0],
            percentile(d, 50),
            d[d.len() - 1]
        )
    };
    eprintln!(
        "next request after a throttled create: {}",
        show(&throttled)
    );
    eprintln!("next request after a 5xx create: {}", show(&server_errors));
    eprintln!(
        "{:<24} {:>10} {:>12}",
        "requests by Action", "fault-free", "with faults"
    );
    let actions: BTreeSet<&String> = fault_counts.keys().chain(clean_counts.keys()).collect();
    for a in actions {
        let get = |m: &BTreeMap<String, usize>| m.get(a).copied().unwrap_or(0);
        eprintln!(
            "{a:<24} {:>10} {:>12}",
            get(&clean_counts),
            get(&fault_counts)
        );
    }
    eprintln!(
        "{:<24} {:>10} {:>12}",
        "total",
        clean_calls.len(),
        calls.len()
    );
    eprintln!(
        "requests until all Ready, with faults / fault-free: {:.2} (limit 2)",
        calls.len() as f64 / clean_calls.len() as f64
    );
    assert!(
        calls.len() <= 2 * clean_calls.len(),
        "with faults {} calls, fault-free {}",
        calls.len(),
        clean_calls.len()
    );

    // Deleting an object deletes every VPC carrying its owner tags (its
    // finalizer stays until the owner lookup finds none): the duplicates go
    // with their objects. Whatever is left is deleted directly, then judged.
    let deleted = delete_all(&scope).await;
    let left = crate::ops::owned_vpcs(&ec2, &ns).await;
    for (_, id) in &left {
        ec2.delete_vpc().vpc_id(id).send().await.unwrap();
    }
    eprintln!(
        "{CREATES} Vpcs deleted in {deleted:.1?}, their {dup_count} duplicates with them ({} VPCs left)",
        left.len()
    );
    assert!(left.is_empty(), "VPCs left behind: {left:?}");
    assert!(
        crate::ops::owned_vpcs(&ec2, &ns).await.is_empty(),
        "VPCs left after deleting the leftovers"
    );
}
