//! Helm charts from an HTTP(S) Helm repository: `index.yaml`, then the
//! chart's `.tgz`, checked against the index's sha256 digest, cached on disk
//! and unpacked safely.
//!
//! Cache layout, under `cache/<16 hex of sha256(repository URL)>/<name>/`:
//! `<name>-<version>.tgz` and `<name>-<version>.sha256` (the digest the
//! index gave for that version). An exact version whose two files agree is
//! served with no network at all; an empty or `*` version always reads the
//! index, since "newest" can change. Redirects are not followed: a 3xx is an
//! error naming the status (point `repository` at the final URL).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing::warn;
use url::Url;

mod unpack;

const MAX_INDEX: usize = 10 << 20;
const MAX_CHART: usize = 20 << 20;

/// `spec.helm.chart` of a GitSync: a chart from a Helm repository.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChartSource {
    /// The repository's base URL, `https://...` or `http://...`.
    pub repository: String,
    pub name: String,
    /// An exact version; `""` or `"*"` is the newest stable one in the index.
    #[serde(default)]
    pub version: String,
}

/// Basic auth for the repository (from the GitSync's secretRef:
/// `username`/`password` keys). Its `Debug` hides the password.
#[derive(Clone)]
pub struct RepoAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RepoAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RepoAuth {{ username: {:?}, password: <hidden> }}",
            self.username
        )
    }
}

/// Fetches (or finds in `cache`) the chart's .tgz, checks its sha256 digest
/// against the index, and unpacks it into `into`; returns the chart
/// directory (`into/<name>`, the one holding Chart.yaml). `timeout` bounds
/// the network part; credentials are never logged nor put in errors.
pub async fn fetch(
    source: &ChartSource,
    auth: Option<&RepoAuth>,
    cache: &Path,
    into: &Path,
    timeout: Duration,
) -> Result<PathBuf, String> {
    let repo = Repo::parse(&source.repository)?;
    safe_name("chart name", &source.name)?;
    let dir = cache.join(repo.cache_key());
    let cached = match pinned(&source.version) {
        Some(v) => read_pinned(&dir, &source.name, v).await?,
        None => None,
    };
    let (version, tgz) = match cached {
        Some(tgz) => (source.version.clone(), tgz),
        None => tokio::time::timeout(timeout, download(&repo, source, auth, &dir))
            .await
            .map_err(|_| {
                format!(
                    "{} from {}: timed out after {}",
                    describe(&source.name, &source.version),
                    repo.shown,
                    humantime::format_duration(timeout)
                )
            })??,
    };
    let into = into.to_path_buf();
    blocking(move || unpack::unpack(&tgz, &into))
        .await?
        .map_err(|e| {
            format!(
                "chart {} version {version} from {}: {e}",
                source.name, repo.shown
            )
        })
}

/// A repository URL, normalized to end in `/` so that relative chart URLs
/// join under it.
struct Repo {
    base: Url,
    /// For messages and the cache key: no trailing `/` (and never credentials).
    shown: String,
}

impl Repo {
    fn parse(s: &str) -> Result<Self, String> {
        let mut base = Url::parse(s.trim()).map_err(|e| match s.contains('@') {
            true => format!("chart repository is not a valid URL: {e}"),
            false => format!("chart repository {s:?} is not a valid URL: {e}"),
        })?;
        if !base.username().is_empty() || base.password().is_some() {
            return Err(format!(
                "chart repository on {}: put credentials in the secretRef, not in the URL",
                base.host_str().unwrap_or("?")
            ));
        }
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!(
                "chart repository: {}:// is not supported (only http:// and https://)",
                base.scheme()
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            // Not echoed: a query often carries a token.
            return Err(format!(
                "chart repository on {}: the URL must have no query or fragment",
                base.host_str().unwrap_or("?")
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let shown = base.as_str().trim_end_matches('/').to_string();
        Ok(Self { base, shown })
    }

    fn index_url(&self) -> Url {
        self.base
            .join("index.yaml")
            .expect("index.yaml joins onto any http(s) URL")
    }

    /// A chart URL from the index: relative ones join onto the repository;
    /// absolute ones must keep its scheme (no https → http downgrade).
    fn resolve(&self, reference: &str) -> Result<Url, String> {
        let url = self
            .base
            .join(reference)
            .map_err(|e| format!("chart URL {reference:?} in {}: {e}", self.index_url()))?;
        if url.scheme() != self.base.scheme() {
            return Err(format!(
                "chart URL {url} in {}: only {}:// URLs are allowed for this repository",
                self.index_url(),
                self.base.scheme()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "a chart URL in {} holds credentials: refused",
                self.index_url()
            ));
        }
        Ok(url)
    }

    /// Whether the repository's credentials may go to `url`: only to the same
    /// scheme, host and port (as Helm without --pass-credentials).
    fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.base.origin()
    }

    fn cache_key(&self) -> String {
        sha256_hex(self.shown.as_bytes())[..16].to_string()
    }
}

/// The exact version asked for, or None for the newest.
fn pinned(version: &str) -> Option<&str> {
    (!matches!(version, "" | "*")).then_some(version)
}

fn describe(name: &str, version: &str) -> String {
    match pinned(version) {
        Some(v) => format!("chart {name} version {v}"),
        None => format!("chart {name} (newest version)"),
    }
}

/// The fields of `index.yaml` this needs; the rest is ignored.
#[derive(Deserialize, Debug)]
struct Index {
    #[serde(default)]
    entries: BTreeMap<String, Vec<IndexEntry>>,
}

#[derive(Deserialize, Clone, Debug)]
struct IndexEntry {
    version: String,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    digest: String,
}

fn parse_index(yaml: &[u8], at: &Url) -> Result<Index, String> {
    // A 10 MiB index (big public repositories) has far more nodes than the
    // default budget, which is sized for config files.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 20_000_000;
    budget.max_events = 40_000_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    serde_saphyr::from_slice_with_options(yaml, options)
        .map_err(|e| format!("{at} is not a Helm repository index: {e}"))
}

/// The entry for `version` (exact), or the highest stable semver for an
/// empty/`*` version (pre-releases only by exact version, as Helm).
fn choose<'a>(
    index: &'a Index,
    name: &str,
    version: &str,
    at: &Url,
) -> Result<&'a IndexEntry, String> {
    let entries = index
        .entries
        .get(name)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| format!("chart {name} is not in {at}"))?;
    let found = match pinned(version) {
        Some(v) => entries.iter().find(|e| e.version == v),
        None => entries
            .iter()
            .filter_map(|e| Some((semver(&e.version)?, e)))
            .filter(|(v, _)| v.pre.is_empty())
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, e)| e),
    };
    found.ok_or_else(|| {
        let what = match pinned(version) {
            Some(v) => format!("chart {name} version {v} is not in"),
            None => format!("chart {name} has no stable semver version in"),
        };
        format!("{what} {at} (it has {})", version_list(entries))
    })
}

fn semver(v: &str) -> Option<semver::Version> {
    semver::Version::parse(v.strip_prefix('v').unwrap_or(v)).ok()
}

fn version_list(entries: &[IndexEntry]) -> String {
    let mut list: Vec<&str> = entries
        .iter()
        .take(10)
        .map(|e| e.version.as_str())
        .collect();
    let more = format!("… {} more", entries.len().saturating_sub(10));
    if entries.len() > 10 {
        list.push(&more);
    }
    list.join(", ")
}

/// The index's digest as lowercase hex (Helm writes bare hex; `sha256:` is
/// accepted too). A chart without one is refused rather than used unchecked.
fn expected_digest(entry: &IndexEntry, what: &str, at: &Url) -> Result<String, String> {
    let d = entry.digest.trim();
    let d = d.strip_prefix("sha256:").unwrap_or(d).to_ascii_lowercase();
    match d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()) {
        true => Ok(d),
        false => Err(format!(
            "{what} has no sha256 digest in {at}: refusing it unverified"
        )),
    }
}

fn verify(tgz: &[u8], expected: &str, what: &str, from: &Url) -> Result<(), String> {
    let got = sha256_hex(tgz);
    match got == expected {
        true => Ok(()),
        false => Err(format!(
            "{what} from {from}: sha256 digest mismatch: the index says {expected}, the download is {got}"
        )),
    }
}

/// Index, entry, then the .tgz from the cache or the network. Returns the
/// chosen version and the verified archive.
async fn download(
    repo: &Repo,
    source: &ChartSource,
    auth: Option<&RepoAuth>,
    dir: &Path,
) -> Result<(String, Bytes), String> {
    let client = crate::http_client::client::<Empty<Bytes>>()?;
    let at = repo.index_url();
    let index = parse_index(&get(&client, &at, auth, MAX_INDEX).await?, &at)?;
    let entry = choose(&index, &source.name, &source.version, &at)?;
    let what = format!("chart {} version {}", source.name, entry.version);
    safe_name("chart version", &entry.version)?;
    let digest = expected_digest(entry, &what, &at)?;
    let (tgz_path, pin_path) = cache_paths(dir, &source.name, &entry.version);
    let cached = {
        let (path, digest) = (tgz_path.clone(), digest.clone());
        blocking(move || read_verified(&path, &digest)).await?
    };
    let (tgz, fresh) = match cached {
        Some(tgz) => (tgz, false),
        None => {
            let reference = entry
                .urls
                .first()
                .ok_or(format!("{what} has no URL in {at}"))?;
            let url = repo.resolve(reference)?;
            let auth = auth.filter(|_| repo.same_origin(&url));
            let tgz = get(&client, &url, auth, MAX_CHART)
                .await
                .map_err(|e| format!("{what}: {e}"))?;
            verify(&tgz, &digest, &what, &url)?;
            (tgz, true)
        }
    };
    let keep = fresh.then(|| tgz.clone());
    blocking(move || store(&tgz_path, keep.as_deref(), &pin_path, &digest)).await?;
    Ok((entry.version.clone(), tgz))
}

async fn get(
    client: &crate::http_client::Client<Empty<Bytes>>,
    url: &Url,
    auth: Option<&RepoAuth>,
    max: usize,
) -> Result<Bytes, String> {
    let mut req = hyper::Request::get(url.as_str()).header(
        "user-agent",
        concat!("driftless/", env!("CARGO_PKG_VERSION")),
    );
    if let Some(auth) = auth {
        req = req.header(hyper::header::AUTHORIZATION, basic(auth));
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| format!("GET {url}: {e}"))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("GET {url}: {}", chain(&e)))?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(format!(
            "GET {url}: HTTP {} (redirects are not followed)",
            status.as_u16()
        ));
    }
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {}", status.as_u16()));
    }
    match Limited::new(resp.into_body(), max).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => {
            Err(format!("GET {url}: larger than {} MiB", max >> 20))
        }
        Err(e) => Err(format!("GET {url}: {}", chain(&*e))),
    }
}

fn basic(auth: &RepoAuth) -> hyper::header::HeaderValue {
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", auth.username, auth.password));
    let mut value = hyper::header::HeaderValue::from_str(&format!("Basic {token}"))
        .expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

/// An error and its sources: hyper's own message alone says little.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

/// Names and versions become file names: one plain path component only.
fn safe_name(what: &str, s: &str) -> Result<(), String> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"._+-".contains(&b);
    match !s.is_empty() && s.len() <= 200 && !s.starts_with('.') && s.bytes().all(ok) {
        true => Ok(()),
        false => Err(format!(
            "{what} {s:?} is not a plain name (letters, digits, . _ + -)"
        )),
    }
}

/// One folder per chart name, so that `a-1` 2 and `a` 1-2 never share a file.
fn cache_paths(dir: &Path, name: &str, version: &str) -> (PathBuf, PathBuf) {
    let dir = dir.join(name);
    let file = |ext: &str| dir.join(format!("{name}-{version}.{ext}"));
    (file("tgz"), file("sha256"))
}

/// The cached .tgz of an exact version, if its pinned digest still matches.
async fn read_pinned(dir: &Path, name: &str, version: &str) -> Result<Option<Bytes>, String> {
    if safe_name("chart version", version).is_err() {
        return Ok(None); // not a version the cache can hold; the index will say
    }
    let (tgz, pin) = cache_paths(dir, name, version);
    blocking(move || {
        let digest = fs::read_to_string(pin).ok()?;
        read_verified(&tgz, digest.trim())
    })
    .await
}

fn read_verified(path: &Path, digest: &str) -> Option<Bytes> {
    let tgz = fs::read(path).ok()?;
    (sha256_hex(&tgz) == digest).then(|| tgz.into())
}

/// Writes a fresh .tgz (when `tgz` is given) and the version's digest pin.
/// The cache only saves work: failing to write it is logged, not fatal.
fn store(tgz_path: &Path, tgz: Option<&[u8]>, pin_path: &Path, digest: &str) {
    let dir = tgz_path.parent().expect("a cache path has a parent");
    let done = fs::create_dir_all(dir)
        .and_then(|()| tgz.map_or(Ok(()), |tgz| write_atomic(tgz_path, tgz)))
        .and_then(|()| write_atomic(pin_path, digest.as_bytes()));
    if let Err(e) = done {
        warn!(error = %e, path = %tgz_path.display(), "cannot cache the chart");
    }
}

/// Temp file then rename: a crash never leaves a half file under the real name.
fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{seq}", std::process::id()));
    let written = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(data).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn sha256_hex(data: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("chart fetch task failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"
apiVersion: v1
entries:
  web:
    - version: 1.10.0-rc.1
      urls: [web-1.10.0-rc.1.tgz]
      digest: aa
    - version: 1.2.0
      created: 2024-01-01T00:00:00Z
      urls: [charts/web-1.2.0.tgz]
      digest: sha256:ABCDEF0000000000000000000000000000000000000000000000000000000000
    - version: v1.9.0
      urls: [https://cdn.example/web-1.9.0.tgz]
    - version: 1.0
      urls: [web-1.0.tgz]
    - version: not-semver
      urls: [x.tgz]
  other: []
generated: 2024-01-01T00:00:00Z
"#;

    fn at() -> Url {
        Url::parse("https://charts.example/index.yaml").unwrap()
    }

    fn index() -> Index {
        parse_index(INDEX.as_bytes(), &at()).unwrap()
    }

    #[test]
    fn exact_and_newest_versions() {
        let index = index();
        assert_eq!(
            choose(&index, "web", "1.2.0", &at()).unwrap().urls,
            ["charts/web-1.2.0.tgz"]
        );
        // A plain `1.0` stays the string the index wrote, not a float.
        assert_eq!(choose(&index, "web", "1.0", &at()).unwrap().version, "1.0");
        // Newest stable: v-prefixed semver counts; pre-releases and junk do not.
        assert_eq!(choose(&index, "web", "", &at()).unwrap().version, "v1.9.0");
        assert_eq!(choose(&index, "web", "*", &at()).unwrap().version, "v1.9.0");
        let pre = choose(&index, "web", "1.10.0-rc.1", &at()).unwrap();
        assert_eq!(pre.version, "1.10.0-rc.1");
    }

    #[test]
    fn missing_charts_and_versions_are_named() {
        let index = index();
        assert_eq!(
            choose(&index, "web", "9.9.9", &at()).unwrap_err(),
            "chart web version 9.9.9 is not in https://charts.example/index.yaml \
             (it has 1.10.0-rc.1, 1.2.0, v1.9.0, 1.0, not-semver)"
        );
        let err = choose(&index, "db", "1.0.0", &at()).unwrap_err();
        assert_eq!(err, "chart db is not in https://charts.example/index.yaml");
        assert!(choose(&index, "other", "", &at()).is_err());
        assert!(parse_index(b"entries: [1, 2]", &at())
            .unwrap_err()
            .contains("not a Helm"));
    }

    #[test]
    fn digests_are_normalized_or_refused() {
        let index = index();
        let e = choose(&index, "web", "1.2.0", &at()).unwrap();
        assert_eq!(
            expected_digest(e, "w", &at()).unwrap(),
            format!("abcdef{}", "0".repeat(58))
        );
        let e = choose(&index, "web", "v1.9.0", &at()).unwrap();
        assert!(expected_digest(e, "w", &at())
            .unwrap_err()
            .contains("no sha256 digest"));
    }

    #[test]
    fn digest_mismatch_names_both_digests() {
        let good = sha256_hex(b"chart");
        assert!(verify(b"chart", &good, "chart web version 1.2.0", &at()).is_ok());
        let err = verify(b"tampered", &good, "chart web version 1.2.0", &at()).unwrap_err();
        assert!(err.starts_with("chart web version 1.2.0 from https://charts.example/index.yaml"));
        assert!(
            err.contains(&good) && err.contains(&sha256_hex(b"tampered")),
            "{err}"
        );
    }

    #[test]
    fn chart_urls_join_onto_the_repository() {
        let repo = Repo::parse("https://charts.example/sub").unwrap();
        assert_eq!(repo.shown, "https://charts.example/sub");
        assert_eq!(
            repo.index_url().as_str(),
            "https://charts.example/sub/index.yaml"
        );
        let join = |r: &str| repo.resolve(r).map(String::from);
        assert_eq!(
            join("web-1.tgz").unwrap(),
            "https://charts.example/sub/web-1.tgz"
        );
        assert_eq!(
            join("a/web-1.tgz").unwrap(),
            "https://charts.example/sub/a/web-1.tgz"
        );
        assert_eq!(
            join("/web-1.tgz").unwrap(),
            "https://charts.example/web-1.tgz"
        );
        assert_eq!(
            join("https://cdn.example/w.tgz").unwrap(),
            "https://cdn.example/w.tgz"
        );
        assert_eq!(
            join("//cdn.example/w.tgz").unwrap(),
            "https://cdn.example/w.tgz"
        );
        assert!(join("http://cdn.example/w.tgz")
            .unwrap_err()
            .contains("only https://"));
        assert!(join("https://u:p@cdn.example/w.tgz")
            .unwrap_err()
            .contains("credentials"));
        // Credentials go only where the repository is.
        assert!(repo.same_origin(&repo.resolve("x.tgz").unwrap()));
        assert!(!repo.same_origin(&repo.resolve("https://cdn.example/x.tgz").unwrap()));
        assert_eq!(
            Repo::parse("http://h:8080/").unwrap().shown,
            "http://h:8080"
        );
    }

    #[test]
    fn bad_repository_urls_are_refused_without_echoing_credentials() {
        let err = Repo::parse("https://me:secret@charts.example/")
            .err()
            .unwrap();
        assert!(
            err.contains("secretRef") && !err.contains("secret@"),
            "{err}"
        );
        let err = Repo::parse("https://h.example/charts?token=abc")
            .err()
            .unwrap();
        assert!(err.contains("no query") && !err.contains("abc"), "{err}");
        assert!(Repo::parse("oci://registry.example/charts")
            .err()
            .unwrap()
            .contains("only http"));
        let err = Repo::parse("me:secret@nowhere").err().unwrap();
        assert!(!err.contains("secret"), "{err}");
        assert!(safe_name("chart name", "../web").is_err());
        assert!(safe_name("chart version", "1.2.3+build.1").is_ok());
    }

    #[tokio::test]
    async fn a_pinned_version_is_read_back_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (tgz, pin) = cache_paths(dir.path(), "web", "1.2.0");
        let digest = sha256_hex(b"archive");
        store(&tgz, Some(b"archive"), &pin, &digest);
        let read = read_pinned(dir.path(), "web", "1.2.0").await.unwrap();
        assert_eq!(read.as_deref(), Some(&b"archive"[..]));
        fs::write(&tgz, b"corrupted").unwrap();
        let read = read_pinned(dir.path(), "web", "1.2.0").await.unwrap();
        assert_eq!(read, None, "a corrupted .tgz is not served");
        assert!(tgz.ends_with("web/web-1.2.0.tgz"), "{}", tgz.display());
        let names: Vec<_> = fs::read_dir(dir.path().join("web"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temp files left: {names:?}");
    }
}
