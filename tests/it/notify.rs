//! Notification providers end to end: a loopback HTTP server records what
//! the controller sends (method, path, headers, body), checked against the
//! shapes README "Notifications" documents. Commit statuses are driven by a
//! real GitSync on the test API server; retries and the queue bound by
//! scripted answers, waited on by counters.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use driftless::gitsync::GitSync;
use driftless::ops::notify::{Counts, Delivery, Event, Notification, Notifier};
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};

use crate::gitsync::{new_gitsync, ready_at, rev, wait_gitsync, wait_stalled_at, Repo};
use crate::support::{wait_for, Scope};

const POLL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(90);

/// One request as the receiver got it.
#[derive(Clone, Debug)]
struct Got {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: not JSON ({e}): {:?}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A loopback receiver: records every request, answers with the scripted
/// statuses in turn (then 201), and while `hold` is set keeps each request
/// waiting until it is released.
#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    gate: Arc<tokio::sync::Semaphore>,
    hold: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    async fn start() -> (Self, SocketAddr) {
        let me = Self {
            got: Arc::default(),
            script: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            hold: Arc::default(),
        };
        let state = me.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { state.answer(method, uri, headers, body).await }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (me, addr)
    }

    async fn answer(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        self.got.lock().unwrap().push(Got {
            method,
            path: uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers,
            body: body.to_vec(),
        });
        if self.hold.load(std::sync::atomic::Ordering::SeqCst) {
            self.gate.acquire().await.unwrap().forget();
        }
        let code = self.script.lock().unwrap().pop_front().unwrap_or(201);
        StatusCode::from_u16(code).unwrap()
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The requests whose path starts with `prefix`.
    fn under(&self, prefix: &str) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.path.starts_with(prefix))
            .collect()
    }
}

/// Secret `name` in the scope's namespace with `data` (string values).
async fn secret(scope: &Scope, name: &str, data: &[(&str, String)]) {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
        .collect();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = scope.api();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data}))
                .unwrap(),
        )
        .await
        .unwrap();
}

fn fast() -> Delivery {
    Delivery {
        queue: 100,
        attempts: 4,
        backoff: Duration::from_millis(20),
        timeout: Duration::from_secs(10),
    }
}

/// Waits until every queued notification is finished with, and `done` holds.
async fn settle(notifier: &Notifier, what: &str, done: impl Fn(Counts) -> bool) -> Counts {
    wait_for(what, WAIT, || async {
        let c = notifier.counts();
        (c.handled + c.dropped == c.queued && done(c)).then_some(c)
    })
    .await
}

/// The `state` of each commit status posted under `prefix` for `sha`.
fn states(receiver: &Receiver, prefix: &str, sha: &str) -> Vec<String> {
    receiver
        .under(prefix)
        .iter()
        .filter(|g| g.path.ends_with(&format!("/statuses/{sha}")))
        .map(|g| g.json()["state"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_statuses_and_messages_follow_a_good_and_a_broken_commit() {
    let (receiver, addr) = Receiver::start().await;
    let mut scope = Scope::new("notify").await;
    let ns = scope.ns.clone();
    let base = format!("http://{addr}");
    secret(
        &scope,
        "github",
        &[
            ("provider", "github".into()),
            ("url", format!("{base}/github")),
            ("token", "ghp_test".into()),
            ("repository", "acme/web".into()),
            (
                "target_url",
                "https://dash.example.com/{namespace}/{name}/{sha}".into(),
            ),
        ],
    )
    .await;
    secret(
        &scope,
        "gitlab",
        &[
            ("provider", "gitlab".into()),
            ("url", format!("{base}/gitlab")),
            ("token", "glpat_test".into()),
            ("repository", "group/app".into()),
        ],
    )
    .await;
    secret(
        &scope,
        "slack",
        &[
            ("provider", "slack".into()),
            ("url", format!("{base}/slack/T0/B0/X0")),
        ],
    )
    .await;
    secret(
        &scope,
        "hmac",
        &[
            ("provider", "generic-hmac".into()),
            ("url", format!("{base}/hmac")),
            ("key", "hmac-key".into()),
        ],
    )
    .await;
    let mut shared = driftless::ops::Shared::new(scope.calls.clone());
    let names: Vec<(String, String)> = ["github", "gitlab", "slack", "hmac"]
        .iter()
        .map(|n| (ns.clone(), n.to_string()))
        .collect();
    let notifier = Arc::new(Notifier::from_secrets(
        scope.client.clone(),
        &names,
        Some(shared.metrics.clone()),
        fast(),
    ));
    notifier.check().await.unwrap();
    shared.notifier = notifier.clone();
    scope.shared = Some(shared.clone());
    scope.start_controller(POLL);

    let name = "notified";
    let repo = Repo::new();
    repo.write(
        "clusters/test/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\ndata: {a: b}\n",
    );
    let good = repo.commit("a good commit");
    let gitsyncs: Api<GitSync> = scope.api();
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync(name, &repo.url(), json!({"interval": "2s"})),
        )
        .await
        .unwrap();
    wait_gitsync(&gitsyncs, name, "Ready at the good commit", WAIT, |g| {
        ready_at(g, &rev(&good))
    })
    .await;
    settle(&notifier, "the good commit's statuses", |_| {
        states(&receiver, "/github/", &good)
            .last()
            .map(String::as_str)
            == Some("success")
    })
    .await;

    // GitHub: pending, then success; POST /repos/{owner}/{repo}/statuses/{sha}.
    assert_eq!(states(&receiver, "/github/", &good), ["pending", "success"]);
    let gh = receiver.under("/github/");
    for g in &gh {
        assert_eq!(g.method, Method::POST);
        assert_eq!(g.path, format!("/github/repos/acme/web/statuses/{good}"));
        assert_eq!(g.header("authorization"), Some("Bearer ghp_test"));
        assert_eq!(g.header("accept"), Some("application/vnd.github+json"));
        assert_eq!(g.header("x-github-api-version"), Some("2022-11-28"));
        assert_eq!(g.header("content-type"), Some("application/json"));
        assert!(g
            .header("user-agent")
            .is_some_and(|u| u.starts_with("driftless/")));
        let v = g.json();
        assert_eq!(v["context"], format!("driftless/{ns}/{name}"));
        assert_eq!(
            v["target_url"],
            format!("https://dash.example.com/{ns}/{name}/{good}")
        );
    }
    let success = gh[1].json();
    assert_eq!(
        success["description"],
        "applied and ready: 1 created, 0 configured, 0 unchanged, 0 pruned"
    );

    // GitLab: pending, running (applied), success; PRIVATE-TOKEN; name = context.
    assert_eq!(
        states(&receiver, "/gitlab/", &good),
        ["pending", "running", "success"]
    );
    for g in receiver.under("/gitlab/") {
        assert_eq!(g.method, Method::POST);
        assert_eq!(
            g.path,
            format!("/gitlab/api/v4/projects/group%2Fapp/statuses/{good}")
        );
        assert_eq!(g.header("private-token"), Some("glpat_test"));
        assert_eq!(g.header("authorization"), None);
        let v = g.json();
        assert_eq!(
            (v["name"].as_str(), v["ref"].as_str()),
            (Some(&*format!("driftless/{ns}/{name}")), Some("main"))
        );
    }

    // Slack: one message, the result, the revision, the change set.
    let slack = receiver.under("/slack/");
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert_eq!(slack[0].path, "/slack/T0/B0/X0");
    let v = slack[0].json();
    let short = &good[..12];
    assert_eq!(
        v["text"],
        format!("GitSync {ns}/{name}: success at main@sha1:{short}")
    );
    assert_eq!(
        v["blocks"][1]["fields"][0]["text"],
        format!("*Revision*\n`main@sha1:{short}`")
    );
    assert_eq!(v["blocks"][1]["fields"][1]["text"], "*Result*\nsuccess");
    assert_eq!(
        v["blocks"][2]["elements"][0]["text"],
        format!("*Changes:* 1 created (ConfigMap {ns}/ok), 0 configured, 0 unchanged, 0 pruned")
    );

    // generic-hmac: every event, each body signed with the Secret's key.
    let signed = receiver.under("/hmac");
    let events: Vec<String> = signed
        .iter()
        .map(|g| g.json()["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["sync_started", "sync_applied", "sync_ready"]);
    for g in &signed {
        let want = driftless::ops::notify::hmac_sign(b"hmac-key", &g.body);
        assert_eq!(g.header("x-signature"), Some(want.as_str()));
        assert_eq!(g.json()["revision"], rev(&good));
    }

    // A broken commit: pending, then failure with the file:line reason.
    repo.write(
        "clusters/test/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\ndata:\n  key: [unclosed\n  other: value\n",
    );
    let broken = repo.commit("a broken file");
    wait_stalled_at(&gitsyncs, name, &broken).await;
    settle(&notifier, "the broken commit's statuses", |_| {
        states(&receiver, "/github/", &broken)
            .last()
            .map(String::as_str)
            == Some("failure")
            && states(&receiver, "/gitlab/", &broken)
                .last()
                .map(String::as_str)
                == Some("failed")
    })
    .await;
    assert_eq!(
        states(&receiver, "/github/", &broken),
        ["pending", "failure"]
    );
    assert_eq!(
        states(&receiver, "/gitlab/", &broken),
        ["pending", "failed"]
    );
    let failure = receiver.under("/github/").last().unwrap().json();
    let d = failure["description"].as_str().unwrap();
    assert!(d.starts_with("clusters/test/broken.yaml:7"), "{d}");
    assert!(d.chars().count() <= 140, "{d}");
    let slack = receiver.under("/slack/");
    assert_eq!(slack.len(), 2, "{slack:?}");
    let text = slack[1].json()["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains(": failure\n") && text.contains("clusters/test/broken.yaml:7"),
        "{text}"
    );
    // The good commit's statuses are as they were.
    assert_eq!(states(&receiver, "/github/", &good), ["pending", "success"]);

    // Counted; no credential in what the controller wrote.
    let c = notifier.counts();
    assert_eq!(
        (c.failed, c.refused, c.dropped, c.unconfigured),
        (0, 0, 0, 0),
        "{c:?}"
    );
    let metrics = shared.metrics.render();
    assert!(
        metrics
            .contains(r#"driftless_notifications_total{provider="github",result="delivered"} 4"#),
        "{metrics}"
    );
    let gs = gitsyncs.get(name).await.unwrap();
    let status = serde_json::to_string(&gs.status).unwrap();
    let events = crate::support::events_about(&scope, name).await;
    let notes: Vec<String> = events.into_iter().filter_map(|e| e.note).collect();
    for secret in ["ghp_test", "glpat_test", "hmac-key", "X0"] {
        assert!(!status.contains(secret), "{secret} in the status");
        assert!(
            !notes.iter().any(|n| n.contains(secret)),
            "{secret} in an Event: {notes:?}"
        );
    }
}

/// A notifier for Secret `name` of the scope, delivered as `delivery`.
fn notifier_for(
    scope: &Scope,
    name: &str,
    delivery: Delivery,
) -> (Notifier, Arc<driftless::ops::metrics::Metrics>) {
    let metrics = Arc::new(driftless::ops::metrics::Metrics::new(scope.calls.clone()));
    let names = [(scope.ns.clone(), name.to_string())];
    (
        Notifier::from_secrets(
            scope.client.clone(),
            &names,
            Some(metrics.clone()),
            delivery,
        ),
        metrics,
    )
}

fn note(i: usize) -> Notification {
    Notification::new(Event::DriftCorrected, "Bucket", "ns", "b", format!("n{i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_retry_5xx_and_not_4xx() {
    let (receiver, addr) = Receiver::start().await;
    let scope = Scope::new("notify-retry").await;
    secret(
        &scope,
        "hook",
        &[
            ("url", format!("http://{addr}/hook")),
            ("token", "tok".into()),
        ],
    )
    .await;
    let (notifier, metrics) = notifier_for(&scope, "hook", fast());
    notifier.check().await.unwrap();

    receiver.script.lock().unwrap().extend([503, 503]);
    notifier.send(note(1));
    let c = settle(&notifier, "a delivery after two 503s", |c| c.handled == 1).await;
    assert_eq!((c.delivered, c.attempts, c.failed), (1, 3, 0), "{c:?}");
    let got = receiver.got();
    assert_eq!(got.len(), 3);
    for g in &got {
        assert_eq!((g.method.as_str(), g.path.as_str()), ("POST", "/hook"));
        assert_eq!(g.header("authorization"), Some("Bearer tok"));
        assert_eq!(g.json()["message"], "n1");
        assert_eq!(g.json()["event"], "drift_corrected");
    }

    // 4xx: the receiver will not take it; one attempt.
    receiver.script.lock().unwrap().push_back(400);
    notifier.send(note(2));
    let c = settle(&notifier, "a refused delivery", |c| c.handled == 2).await;
    assert_eq!((c.delivered, c.refused, c.attempts), (1, 1, 4), "{c:?}");

    // Bounded: 4 attempts of 503, then given up.
    receiver.script.lock().unwrap().extend([503; 4]);
    notifier.send(note(3));
    let c = settle(&notifier, "a delivery given up", |c| c.handled == 3).await;
    assert_eq!((c.failed, c.attempts), (1, 8), "{c:?}");
    let text = metrics.render();
    for want in [
        r#"driftless_notifications_total{provider="generic",result="delivered"} 1"#,
        r#"driftless_notifications_total{provider="generic",result="refused"} 1"#,
        r#"driftless_notifications_total{provider="generic",result="failed"} 1"#,
        r#"driftless_notification_attempts_total{provider="generic"} 8"#,
    ] {
        assert!(text.contains(want), "missing {want} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_the_oldest_and_counts_it() {
    let (receiver, addr) = Receiver::start().await;
    let scope = Scope::new("notify-queue").await;
    secret(&scope, "hook", &[("url", format!("http://{addr}/hook"))]).await;
    let delivery = Delivery { queue: 3, ..fast() };
    let (notifier, metrics) = notifier_for(&scope, "hook", delivery);
    notifier.check().await.unwrap();
    receiver
        .hold
        .store(true, std::sync::atomic::Ordering::SeqCst);

    // The worker takes n0 and waits on the receiver...
    notifier.send(note(0));
    wait_for("the first delivery to arrive", WAIT, || async {
        (!receiver.got().is_empty()).then_some(())
    })
    .await;
    // ...while six more come: three fit, the three oldest of them go.
    for i in 1..=6 {
        notifier.send(note(i));
    }
    let c = notifier.counts();
    assert_eq!((c.queued, c.dropped), (7, 3), "{c:?}");
    assert!(metrics
        .render()
        .contains(r#"driftless_notifications_total{provider="generic",result="dropped"} 3"#));

    receiver.gate.add_permits(10);
    let c = settle(&notifier, "the queue drained", |c| c.handled == 4).await;
    assert_eq!((c.delivered, c.dropped), (4, 3), "{c:?}");
    let messages: Vec<String> = receiver
        .got()
        .iter()
        .map(|g| g.json()["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(messages, ["n0", "n4", "n5", "n6"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_go_only_over_https_or_to_loopback() {
    let scope = Scope::new("notify-https").await;
    secret(
        &scope,
        "gh",
        &[
            ("provider", "github".into()),
            ("url", "http://ghe.example.invalid/api/v3".into()),
            ("token", "ghp_never_sent".into()),
        ],
    )
    .await;
    let (notifier, _) = notifier_for(&scope, "gh", fast());
    let err = notifier.check().await.unwrap_err();
    for want in [
        "provider github",
        "http://ghe.example.invalid/api/v3",
        "only over https",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    assert!(!err.contains("ghp_never_sent"), "{err}");
    let mut n = note(0);
    n.kind = "GitSync".into();
    notifier.send(n);
    let c = settle(&notifier, "the notification not sent", |c| c.handled == 1).await;
    assert_eq!((c.unconfigured, c.attempts), (1, 0), "{c:?}");

    // The controller refuses to start with it, and says why.
    let mut cmd = crate::support::controller_command(&scope.ns);
    cmd.args(["--notification-secret", &format!("{}/gh", scope.ns)]);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("the controller exits at once")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--notification-secret") && stderr.contains("provider github"),
        "{stderr}"
    );
    assert!(
        stderr.contains("http://ghe.example.invalid/api/v3") && !stderr.contains("ghp_never_sent"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_failure_is_an_error_without_a_commit_status() {
    let (receiver, addr) = Receiver::start().await;
    let mut scope = Scope::new("notify-fetch").await;
    let ns = scope.ns.clone();
    secret(&scope, "hook", &[("url", format!("http://{addr}/hook"))]).await;
    secret(
        &scope,
        "github",
        &[
            ("provider", "github".into()),
            ("url", format!("http://{addr}/github")),
            ("token", "t".into()),
            ("repository", "acme/web".into()),
        ],
    )
    .await;
    let mut shared = driftless::ops::Shared::new(scope.calls.clone());
    let names = [
        (ns.clone(), "hook".to_string()),
        (ns.clone(), "github".to_string()),
    ];
    let notifier = Arc::new(Notifier::from_secrets(
        scope.client.clone(),
        &names,
        None,
        fast(),
    ));
    notifier.check().await.unwrap();
    shared.notifier = notifier.clone();
    scope.shared = Some(shared);
    scope.start_controller(POLL);

    let gone = std::env::temp_dir().join(crate::support::unique("no-such-repo"));
    let url = format!("file://{}", gone.display());
    let gitsyncs: Api<GitSync> = scope.api();
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync("unfetched", &url, json!({})),
        )
        .await
        .unwrap();
    // The generic provider hears of it; GitHub has no commit to mark.
    let c = settle(&notifier, "the fetch error", |c| {
        c.delivered >= 1 && c.skipped >= 1
    })
    .await;
    let got = receiver.got();
    assert_eq!(got.len(), 1, "{got:?}");
    let v = got[0].json();
    assert_eq!(
        (v["event"].as_str(), v["name"].as_str()),
        (Some("sync_error"), Some("unfetched"))
    );
    assert!(v.get("revision").is_none(), "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("no-such-repo"),
        "{v}"
    );
    assert!(receiver.under("/github/").is_empty());
    assert_eq!((c.delivered, c.skipped), (1, 1), "{c:?}");
}
