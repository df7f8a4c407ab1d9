//! Webhooks against the real HTTP server and API server: the signature is
//! checked before any API call (an unsigned, wrongly signed or unknown-GitSync
//! request costs 0 calls and gets the same answer), a replayed delivery is
//! ignored, GitLab's token form works only where configured, failures from
//! one peer are rate-limited, and `/metrics` can move to its own address.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_lc_rs::hmac;
use driftless::gitsync::{GitSync, REQUESTED_AT};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::gitsync::{new_gitsync, Repo};
use crate::support::{self, Scope};

/// `inner`, counting every request sent through it.
fn counting_client(inner: kube::Client, calls: Arc<AtomicUsize>) -> kube::Client {
    let ns = inner.default_namespace().to_string();
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let inner = inner.clone();
        calls.fetch_add(1, Ordering::SeqCst);
        async move { inner.send(req).await }
    });
    kube::Client::new(service, ns)
}

fn sign(key: &[u8], body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

// Multi-threaded: the requests below block their thread while the server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_verify_before_any_api_call_ignore_replays_and_limit_floods() {
    let scope = Scope::new("webhook").await;
    let ns = scope.ns.clone();
    let repo = Repo::new();
    repo.write(
        "clusters/test/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    repo.commit("one");
    for (secret, extra) in [("hub-key", ""), ("lab-key", "--from-literal=type=gitlab")] {
        let mut args = vec![
            "create",
            "secret",
            "generic",
            "-n",
            &ns,
            secret,
            "--from-literal=token=s3cret",
        ];
        if !extra.is_empty() {
            args.push(extra);
        }
        let (ok, out, err) = scope.kubectl(&args, None).await;
        assert!(ok, "{out}{err}");
    }
    let gitsyncs: Api<GitSync> = scope.api();
    for (name, secret) in [("hub", "hub-key"), ("lab", "lab-key")] {
        let spec = json!({"webhookSecretRef": {"name": secret}});
        gitsyncs
            .create(
                &PostParams::default(),
                &new_gitsync(name, &repo.url(), spec),
            )
            .await
            .unwrap();
    }

    // The receiver learns keys with its own client; the handler's calls
    // (the only ones a request may cause) are counted.
    let receiver =
        driftless::gitsync::webhook::Receiver::start(scope.client.clone(), Some(ns.clone()));
    receiver.synced().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let state = Arc::new(driftless::ops::http::HttpState {
        client: counting_client(scope.client.clone(), calls.clone()),
        metrics: Arc::new(driftless::ops::metrics::Metrics::new(scope.calls.clone())),
        ready: true.into(),
        webhook: receiver,
    });
    let (addr, metrics_addr) = driftless::ops::http::serve(
        "127.0.0.1:0".parse().unwrap(),
        Some("127.0.0.1:0".parse().unwrap()),
        state,
        driftless::gitsync::webhook::routes(),
    )
    .await
    .unwrap();
    let post = |path: &str, headers: &[(&str, &str)], body: &[u8]| {
        support::http_request(addr, "POST", path, headers, body)
    };
    let body = br#"{"ref":"refs/heads/main","after":"1"}"#;
    let hub = format!("/hooks/{ns}/hub");

    // Refused before any API call, all alike.
    let good = sign(b"s3cret", body);
    let refusals = [
        post(&hub, &[], body),
        post(
            &hub,
            &[("x-hub-signature-256", &sign(b"wrong", body))],
            body,
        ),
        post(
            &format!("/hooks/{ns}/nosuch"),
            &[("x-hub-signature-256", &good)],
            body,
        ),
        post(&hub, &[("x-gitlab-token", "s3cret")], body),
    ];
    for (status, text) in &refusals {
        assert_eq!(
            (*status, text.as_str()),
            (refusals[0].0, refusals[0].1.as_str()),
            "{refusals:?}"
        );
    }
    assert_eq!(refusals[0].0, 401);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a refused webhook made API calls"
    );

    // A signed delivery triggers a sync (one PATCH); its replay does nothing.
    let delivery = [
        ("x-hub-signature-256", good.as_str()),
        ("x-github-delivery", "d-1"),
    ];
    let (status, text) = post(&hub, &delivery, body);
    assert_eq!(status, 202, "{text}");
    let after_first = calls.load(Ordering::SeqCst);
    assert!(after_first >= 1);
    let requested = gitsyncs
        .get("hub")
        .await
        .unwrap()
        .annotations()
        .get(REQUESTED_AT)
        .cloned();
    assert!(requested.is_some());
    let (status, text) = post(&hub, &delivery, body);
    assert_eq!((status, text.trim()), (200, "duplicate delivery, ignored"));
    let fresh_id = [
        ("x-hub-signature-256", good.as_str()),
        ("x-github-delivery", "d-2"),
    ];
    let (status, _) = post(&hub, &fresh_id, body);
    assert_eq!(
        status, 200,
        "the same signed body under a new delivery id is a replay too"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        after_first,
        "a replay made API calls"
    );
    let again = gitsyncs
        .get("hub")
        .await
        .unwrap()
        .annotations()
        .get(REQUESTED_AT)
        .cloned();
    assert_eq!(again, requested);

    // GitLab's token form, where its Secret says `type: gitlab`.
    let (status, text) = post(
        &format!("/hooks/{ns}/lab"),
        &[("x-gitlab-token", "s3cret")],
        body,
    );
    assert_eq!(status, 202, "{text}");

    // /metrics only on its own address.
    let (status, _) = support::http_request(addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 404);
    let (status, text) = support::http_request(metrics_addr.unwrap(), "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    assert!(
        text.trim_end().ends_with("# EOF"),
        "an OpenMetrics exposition: {text}"
    );

    // A flood of unsigned requests from one peer is cut off with 429, still
    // without an API call.
    let before = calls.load(Ordering::SeqCst);
    let statuses: Vec<u16> = (0..20).map(|_| post(&hub, &[], body).0).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(calls.load(Ordering::SeqCst), before);
}
