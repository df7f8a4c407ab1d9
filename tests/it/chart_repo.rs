//! Charts from a Helm repository served by a local static HTTP server: the
//! digest check, the cache (no request for a cached exact version) and basic
//! auth. Needs neither LocalStack nor the API server.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use driftless::render::chart_repo::{fetch, ChartSource, RepoAuth};

/// A static file server that counts requests and may require one
/// `authorization` header.
struct Repo {
    files: Mutex<HashMap<String, Vec<u8>>>,
    requests: AtomicUsize,
    authorization: Option<String>,
}

impl Repo {
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn serve_file(
    State(repo): State<Arc<Repo>>,
    uri: Uri,
    headers: HeaderMap,
) -> (StatusCode, Vec<u8>) {
    repo.requests.fetch_add(1, Ordering::SeqCst);
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    if repo.authorization.is_some() && given != repo.authorization.as_deref() {
        return (StatusCode::UNAUTHORIZED, vec![]);
    }
    match repo.files.lock().unwrap().get(uri.path()) {
        Some(body) => (StatusCode::OK, body.clone()),
        None => (StatusCode::NOT_FOUND, vec![]),
    }
}

async fn start(repo: Arc<Repo>) -> SocketAddr {
    let app = axum::Router::new().fallback(serve_file).with_state(repo);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A chart archive as `helm package` lays it out.
fn chart_tgz(version: &str) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let chart = format!("apiVersion: v2\nname: web\nversion: {version}\n");
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n";
    for (path, data) in [
        ("web/Chart.yaml", chart.as_str()),
        ("web/templates/cm.yaml", cm),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, path, data.as_bytes()).unwrap();
    }
    let mut gz = tar.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

fn sha256(data: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A repository holding web 1.0.0 and 1.1.0 under charts/, with an index
/// giving `digests` for them.
fn repository(digests: [&str; 2], authorization: Option<String>) -> Arc<Repo> {
    let index = format!(
        "apiVersion: v1\nentries:\n  web:\n\
         - version: 1.1.0\n    urls: [charts/web-1.1.0.tgz]\n    digest: {}\n\
         - version: 1.0.0\n    urls: [charts/web-1.0.0.tgz]\n    digest: {}\n",
        digests[1], digests[0]
    )
    .replace("\n- ", "\n  - ");
    let files = HashMap::from([
        ("/index.yaml".to_string(), index.into_bytes()),
        ("/charts/web-1.0.0.tgz".to_string(), chart_tgz("1.0.0")),
        ("/charts/web-1.1.0.tgz".to_string(), chart_tgz("1.1.0")),
    ]);
    Arc::new(Repo {
        files: Mutex::new(files),
        requests: AtomicUsize::new(0),
        authorization,
    })
}

fn source(addr: SocketAddr, version: &str) -> ChartSource {
    ChartSource {
        repository: format!("http://{addr}"),
        name: "web".into(),
        version: version.into(),
    }
}

const T: Duration = Duration::from_secs(10);

async fn fetch_into(
    src: &ChartSource,
    auth: Option<&RepoAuth>,
    cache: &Path,
) -> Result<String, String> {
    let into = tempfile::tempdir().unwrap();
    let dir = fetch(src, auth, cache, into.path(), T).await?;
    assert_eq!(dir, into.path().join("web"));
    assert!(dir.join("templates/cm.yaml").is_file());
    Ok(std::fs::read_to_string(dir.join("Chart.yaml")).unwrap())
}

#[tokio::test]
async fn charts_are_fetched_verified_and_cached() {
    let digests = [sha256(&chart_tgz("1.0.0")), sha256(&chart_tgz("1.1.0"))];
    let repo = repository([&digests[0], &digests[1]], None);
    let addr = start(repo.clone()).await;
    let cache = tempfile::tempdir().unwrap();

    let chart = fetch_into(&source(addr, "1.0.0"), None, cache.path())
        .await
        .unwrap();
    assert!(chart.contains("version: 1.0.0"), "{chart}");
    assert_eq!(repo.requests(), 2, "the index and the .tgz");
    fetch_into(&source(addr, "1.0.0"), None, cache.path())
        .await
        .unwrap();
    assert_eq!(
        repo.requests(),
        2,
        "a cached exact version needs no request"
    );

    // A damaged cached .tgz is fetched again, not served.
    let repo_dir = std::fs::read_dir(cache.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(repo_dir.join("web/web-1.0.0.tgz"), b"damaged").unwrap();
    fetch_into(&source(addr, "1.0.0"), None, cache.path())
        .await
        .unwrap();
    assert_eq!(repo.requests(), 4);

    // The newest always reads the index; its .tgz is then cached too.
    let chart = fetch_into(&source(addr, "*"), None, cache.path())
        .await
        .unwrap();
    assert!(chart.contains("version: 1.1.0"), "{chart}");
    fetch_into(&source(addr, ""), None, cache.path())
        .await
        .unwrap();
    assert_eq!(repo.requests(), 4 + 2 + 1);

    let err = fetch_into(&source(addr, "9.9.9"), None, cache.path())
        .await
        .unwrap_err();
    let index = format!("http://{addr}/index.yaml");
    assert_eq!(
        err,
        format!("chart web version 9.9.9 is not in {index} (it has 1.1.0, 1.0.0)")
    );
}

#[tokio::test]
async fn a_tampered_chart_is_refused() {
    let good = sha256(&chart_tgz("1.0.0"));
    let repo = repository([&good, &good], None);
    let addr = start(repo.clone()).await;
    let cache = tempfile::tempdir().unwrap();
    // 1.1.0's archive is not the one the index describes.
    let err = fetch_into(&source(addr, "1.1.0"), None, cache.path())
        .await
        .unwrap_err();
    assert!(
        err.contains("digest mismatch") && err.contains(&good),
        "{err}"
    );
    assert!(err.contains(&sha256(&chart_tgz("1.1.0"))), "{err}");
    assert!(err.starts_with("chart web version 1.1.0 from "), "{err}");
    assert_eq!(
        std::fs::read_dir(cache.path()).unwrap().count(),
        0,
        "nothing cached"
    );
}

#[tokio::test]
async fn basic_auth_is_sent_when_given() {
    let digests = [sha256(&chart_tgz("1.0.0")), sha256(&chart_tgz("1.1.0"))];
    // "Basic " + base64("me:s3cret")
    let header = "Basic bWU6czNjcmV0".to_string();
    let addr = start(repository([&digests[0], &digests[1]], Some(header))).await;
    let cache = tempfile::tempdir().unwrap();

    let err = fetch_into(&source(addr, "1.0.0"), None, cache.path())
        .await
        .unwrap_err();
    assert_eq!(err, format!("GET http://{addr}/index.yaml: HTTP 401"));
    let wrong = RepoAuth {
        username: "me".into(),
        password: "guess".into(),
    };
    let err = fetch_into(&source(addr, "1.0.0"), Some(&wrong), cache.path())
        .await
        .unwrap_err();
    assert!(err.ends_with("HTTP 401") && !err.contains("guess"), "{err}");

    let auth = RepoAuth {
        username: "me".into(),
        password: "s3cret".into(),
    };
    fetch_into(&source(addr, "1.0.0"), Some(&auth), cache.path())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_silent_repository_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let into = tempfile::tempdir().unwrap();
    let src = source(addr, "1.0.0");
    let err = fetch(
        &src,
        None,
        into.path(),
        into.path(),
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        format!("chart web version 1.0.0 from http://{addr}: timed out after 300ms")
    );
}

/// Serves `files` (path, body) over HTTP; returns the base URL.
pub(crate) async fn serve_files(files: Vec<(String, Vec<u8>)>) -> String {
    let repo = Arc::new(Repo {
        files: Mutex::new(files.into_iter().collect()),
        requests: AtomicUsize::new(0),
        authorization: None,
    });
    format!("http://{}", start(repo).await)
}
