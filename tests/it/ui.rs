//! The web dashboard (`--ui-addr`) in a real browser: Debian's headless
//! Chromium, driven over WebDriver (Debian's chromium-driver, the same
//! build as the browser) with the fantoccini crate, against the controller
//! and the test cluster. Every wait is on a condition in the page.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{Tag, Tagging};
use base64::Engine;
use driftless::gitsync::GitSync;
use fantoccini::{Client, ClientBuilder, Locator};
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gitsync::{
    bucket_yaml, condition, deployment_yaml, new_gitsync, provider_config_yaml, ready_at, rev,
    wait_gitsync, Repo,
};
use crate::support::{self, s3_tags, unique, wait_for, OwnCluster, Owned, Scope};

const POLL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(120);
const TOKEN: &str = "ui-test-token-0123456789abcdef";
/// A Secret's value that must never reach the browser.
const SENTINEL: &str = "dashboard-must-never-show-this-7f3a";

/// The flags the brief of this test environment asks for: headless, no
/// sandbox (root in a container), and nothing that reaches the network.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

struct Browser {
    client: Client,
    _driver: Owned,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// chromedriver on a free port, and one headless Chromium session with
    /// a fresh profile.
    async fn start() -> Self {
        let port = OwnCluster::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run chromedriver ({e}): install Debian's chromium and chromium-driver (.ci/run does)")
            });
        let driver = Owned(driver);
        wait_for(
            "chromedriver to listen",
            Duration::from_secs(30),
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
            },
        )
        .await;
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), json!({ "args": args }));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a headless Chromium session through chromedriver");
        Self {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// The value of `expr` evaluated in the page.
    async fn js(&self, expr: &str) -> Value {
        self.client
            .execute(&format!("return ({expr});"), vec![])
            .await
            .unwrap_or_else(|e| panic!("evaluating {expr}: {e}"))
    }

    /// Waits until `expr` is truthy in the page; returns its value.
    async fn wait_until(&self, what: &str, expr: &str) -> Value {
        wait_for(what, WAIT, || async {
            let v = self.js(expr).await;
            let truthy =
                !matches!(v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            truthy.then_some(v)
        })
        .await
    }

    /// `fetch(path, {method, headers})` from the page: (status, body).
    async fn fetch(&self, method: &str, path: &str, token: Option<&str>) -> (u64, String) {
        let headers = token.map_or(
            json!({}),
            |t| json!({"Authorization": format!("Bearer {t}")}),
        );
        let script = format!(
            "const done = arguments[arguments.length - 1];
             fetch({path}, {{method: {method}, headers: {headers}}})
               .then(async r => done([r.status, await r.text()]), e => done([0, String(e)]));",
            path = json!(path),
            method = json!(method),
        );
        let v = self.client.execute_async(&script, vec![]).await.unwrap();
        (v[0].as_u64().unwrap(), v[1].as_str().unwrap().to_string())
    }

    /// A PNG of the viewport, into $DRIFTLESS_UI_SCREENSHOTS (docs/ui to
    /// refresh the README's) or the test's scratch directory.
    async fn screenshot(&self, name: &str) {
        let dir = std::env::var_os("DRIFTLESS_UI_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui"));
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// The dashboard of `scope`'s namespace on a free loopback port, with
/// actions when `token` is given.
async fn serve_ui(scope: &Scope, token: Option<&str>) -> String {
    let config = driftless::ops::ui::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        token: token.map(|t| driftless::ops::ui::Token::new(t.into(), "the test").unwrap()),
        interval: Duration::from_secs(1),
    };
    let addr = driftless::ops::ui::serve(scope.client.clone(), Some(scope.ns.clone()), config)
        .await
        .expect("serve the dashboard");
    format!("http://{addr}")
}

/// A GitSync with a Bucket, a Deployment and a Secret: the page shows its
/// tree with health, Ready/Synced and the external name; a tag changed out
/// of band in S3 shows up as a DriftCorrected Event without a reload;
/// suspended with the token (a wrong one is refused), a newer commit shows
/// OutOfSync, and resuming applies it. No Secret data reaches the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_tree_drift_and_out_of_sync_live() {
    let mut scope = Scope::new("ui").await;
    scope.start_controller(POLL);
    let ns = scope.ns.clone();
    let (pc, bucket) = (unique("pc-ui"), unique("dl-ui"));
    let repo = Repo::new();
    repo.write("clusters/test/pc.yaml", &provider_config_yaml(&pc, &ns));
    repo.write(
        "clusters/test/bucket.yaml",
        &bucket_yaml(&bucket, &pc, "v1"),
    );
    repo.write("clusters/test/web.yaml", &deployment_yaml(&ns, "v1"));
    repo.write(
        "clusters/test/secret.yaml",
        &format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\nstringData: {{password: {SENTINEL}}}\n"),
    );
    let c1 = repo.commit("a bucket, an app and its secret");
    let gitsyncs: Api<GitSync> = scope.api();
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync("web", &repo.url(), json!({})),
        )
        .await
        .unwrap();
    wait_gitsync(&gitsyncs, "web", "Ready at c1", WAIT, |g| {
        ready_at(g, &rev(&c1))
    })
    .await;
    let external = scope
        .api::<driftless_aws::Bucket>()
        .get(&bucket)
        .await
        .unwrap();
    let external = &external.metadata.annotations.unwrap()["driftless.dev/external-name"];

    let url = serve_ui(&scope, Some(TOKEN)).await;
    let browser = Browser::start().await;
    browser.open(&format!("{url}/#/{ns}/web")).await;

    // 1. The list and the tree.
    let gs = format!("[data-gitsync=\"{ns}/web\"]");
    browser
        .wait_until(
            "the GitSync listed Ready at c1",
            &format!(
                "document.querySelector('{gs}[data-status=\"Ready\"][data-revision=\"{}\"]')",
                rev(&c1)
            ),
        )
        .await;
    let bucket_row = format!("[data-object=\"Bucket {ns}/{bucket}\"]");
    let text = browser
        .wait_until(
            "the Bucket in the tree",
            &format!("document.querySelector('{bucket_row}')?.innerText"),
        )
        .await;
    let text = text.as_str().unwrap();
    for want in ["Ready=True", "Synced=True", external.as_str()] {
        assert!(
            text.contains(want),
            "{want:?} not in the Bucket's row: {text}"
        );
    }
    let deployment = browser
        .js(&format!(
            "document.querySelector('[data-object=\"Deployment {ns}/web\"]')?.innerText"
        ))
        .await;
    assert!(
        deployment
            .as_str()
            .is_some_and(|t| t.contains("Deployment")),
        "{deployment}"
    );
    let history = browser
        .js("document.querySelector('table.history')?.innerText")
        .await;
    assert!(
        history
            .as_str()
            .is_some_and(|t| t.contains("ReconciliationSucceeded")),
        "{history}"
    );
    browser.screenshot("overview.png").await;

    // No Secret data: not in the page, not in the API (the name is shown).
    let encoded = base64::engine::general_purpose::STANDARD.encode(SENTINEL);
    let page = browser.js("document.documentElement.outerHTML").await;
    let (status, api) = browser.fetch("GET", "/api/state", None).await;
    assert_eq!(status, 200, "{api}");
    for text in [page.as_str().unwrap(), api.as_str()] {
        assert!(
            !text.contains(SENTINEL) && !text.contains(&encoded),
            "Secret data shown"
        );
    }
    assert!(
        api.contains(&format!(
            "\"kind\":\"Secret\",\"namespace\":\"{ns}\",\"name\":\"creds\""
        )),
        "{api}"
    );

    // 2. Drift corrected, shown live: the same document, never reloaded.
    browser.js("(window.notReloaded = true)").await;
    drift_tags(&bucket).await;
    let drift =
        format!("#events tr[data-reason=\"DriftCorrected\"][data-object=\"Bucket {ns}/{bucket}\"]");
    let shown = Instant::now();
    browser
        .wait_until(
            "DriftCorrected on the page",
            &format!("document.querySelector('{drift}')"),
        )
        .await;
    eprintln!(
        "drift correction on the page {:?} after the tag changed",
        shown.elapsed()
    );
    assert_eq!(browser.js("window.notReloaded === true").await, json!(true));
    browser.screenshot("drift-corrected.png").await;

    // 3. Actions: a wrong token is refused; the right one suspends.
    let (status, body) = browser
        .fetch(
            "POST",
            &format!("/api/gitsyncs/{ns}/web/suspend"),
            Some("wrong-token-wrong-token"),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(!gitsyncs.get("web").await.unwrap().spec.suspend);
    browser
        .client
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    click(&browser, "button[data-action=\"suspend\"]").await;
    wait_for("spec.suspend set by the dashboard", WAIT, || async {
        gitsyncs.get("web").await.ok().filter(|g| g.spec.suspend)
    })
    .await;
    browser
        .wait_until(
            "the Resume button",
            "document.querySelector('button[data-action=\"resume\"]')",
        )
        .await;

    // A newer commit while suspended: "Sync now" fetches it, OutOfSync.
    repo.write(
        "clusters/test/bucket.yaml",
        &bucket_yaml(&bucket, &pc, "v2"),
    );
    let c2 = repo.commit("bucket tag v2");
    click(&browser, "button[data-action=\"sync\"]").await;
    browser
        .wait_until(
            "OutOfSync on the page",
            &format!("document.querySelector('{gs}[data-status=\"OutOfSync\"]')"),
        )
        .await;
    let g = gitsyncs.get("web").await.unwrap();
    let ready = condition(&g, "Ready").unwrap();
    assert_eq!(ready.reason, "OutOfSync");
    assert!(ready.message.contains(&rev(&c2)), "{}", ready.message);
    let detail = browser
        .js("document.querySelector('#detail .message')?.innerText")
        .await;
    assert!(
        detail.as_str().is_some_and(|t| t.contains(&rev(&c2))),
        "{detail}"
    );
    browser.screenshot("out-of-sync.png").await;

    // Resumed: c2 is applied, and the page says so.
    click(&browser, "button[data-action=\"resume\"]").await;
    browser
        .wait_until(
            "Ready at c2 on the page",
            &format!(
                "document.querySelector('{gs}[data-status=\"Ready\"][data-revision=\"{}\"]')",
                rev(&c2)
            ),
        )
        .await;
    assert_eq!(browser.js("window.notReloaded === true").await, json!(true));

    // Without --ui-actions: no buttons, no token box, no action routes.
    let read_only = serve_ui(&scope, None).await;
    browser.open(&format!("{read_only}/#/{ns}/web")).await;
    browser
        .wait_until(
            "the read-only page",
            "document.documentElement.dataset.rendered",
        )
        .await;
    assert_eq!(
        browser
            .js("document.querySelectorAll('button[data-action]').length")
            .await,
        json!(0)
    );
    assert_eq!(
        browser
            .js("document.getElementById('token-box').hidden")
            .await,
        json!(true)
    );
    let (status, _) = browser
        .fetch(
            "POST",
            &format!("/api/gitsyncs/{ns}/web/suspend"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 404);
    browser.close().await;

    // A foreign Host (DNS rebinding) is refused.
    let (status, _) = raw_get(&read_only, "evil.example").await;
    assert_eq!(status, 421);
}

async fn click(browser: &Browser, css: &str) {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// The bucket's `team` tag changed out of band, as in bucket.rs.
async fn drift_tags(bucket: &str) {
    let s3 = support::s3().await;
    let tags: Vec<Tag> = s3_tags(&s3, bucket)
        .await
        .into_iter()
        .map(|(k, v)| {
            let v = if k == "team" {
                "hijacked".to_string()
            } else {
                v
            };
            Tag::builder().key(k).value(v).build().unwrap()
        })
        .collect();
    s3.put_bucket_tagging()
        .bucket(bucket)
        .tagging(Tagging::builder().set_tag_set(Some(tags)).build().unwrap())
        .send()
        .await
        .unwrap();
}

/// `GET /` with `Host: host`: (status, body).
async fn raw_get(base: &str, host: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.0\r\nhost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

/// 1,000 ConfigMaps from one GitSync: every object is drawn, and the first
/// render (navigation start to the painted tree, from the page's
/// performance timing) is printed against its 1 s goal. A figure, not an
/// assertion: timings on this shared 2-core machine are reported, never
/// made to fail the build (see the README's Benchmarks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_objects_render_and_the_first_render_is_reported() {
    const N: usize = 1000;
    let _turn = support::heavy().await;
    let mut scope = Scope::new("ui-big").await;
    scope.start_controller(POLL);
    let ns = scope.ns.clone();
    let repo = Repo::new();
    let docs: Vec<String> = (0..N)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i:04}}}\ndata: {{n: \"{i}\"}}\n"))
        .collect();
    repo.write("clusters/test/many.yaml", &docs.join("---\n"));
    let c1 = repo.commit("1,000 ConfigMaps");
    let gitsyncs: Api<GitSync> = scope.api();
    gitsyncs
        .create(
            &PostParams::default(),
            &new_gitsync("big", &repo.url(), json!({})),
        )
        .await
        .unwrap();
    wait_gitsync(
        &gitsyncs,
        "big",
        "Ready at c1",
        Duration::from_secs(600),
        |g| ready_at(g, &rev(&c1)),
    )
    .await;

    let url = serve_ui(&scope, None).await;
    let browser = Browser::start().await;
    let mut figures = Vec::new();
    // The first load reads the cluster; the next two reuse that read.
    for _ in 0..3 {
        browser.open("about:blank").await;
        browser.open(&format!("{url}/#/{ns}/big")).await;
        browser
            .wait_until(
                "the first render",
                "document.documentElement.dataset.rendered",
            )
            .await;
        let objects = browser
            .js("document.querySelectorAll('#detail [data-object]').length")
            .await;
        assert_eq!(objects, json!(N), "every object drawn");
        let ms = browser
            .js("performance.getEntriesByName('driftless-first-render')[0].startTime")
            .await
            .as_f64()
            .unwrap();
        let snapshot = browser
            .js("performance.getEntriesByName('driftless-snapshot')[0].startTime")
            .await
            .as_f64()
            .unwrap();
        figures.push((ms, snapshot));
    }
    browser.screenshot("thousand-objects.png").await;
    browser.close().await;
    let shown: Vec<String> = figures
        .iter()
        .map(|(ms, at)| format!("{ms:.0} ms (state received at {at:.0} ms)"))
        .collect();
    eprintln!(
        "first render with {N} objects, navigation start to the painted tree: {} on the first load (the cluster read included), then {} and {}",
        shown[0], shown[1], shown[2]
    );
    let goal = if figures[0].0 <= 1000.0 {
        "met"
    } else {
        "missed"
    };
    eprintln!("first render goal (<= 1000 ms): {goal}");
}
