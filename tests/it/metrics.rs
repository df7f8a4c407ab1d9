//! `/metrics` from the first second: a controller with nothing to do shows
//! its build, its process and every kind's series at zero; the Grafana
//! dashboard and the README's Metrics section name only series a real
//! controller exposes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};

use crate::git_faults::controller_addr;
use crate::gitsync::{bucket_yaml, new_gitsync, ready_at, rev, wait_gitsync, Repo};
use crate::support::{controller_command, http_request, kubectl, kubectl_wait_ready, repo_root};
use crate::support::{Owned, Scope};
use driftless::gitsync::GitSync;

/// One scrape, checked for the OpenMetrics shape on the way in.
struct Scrape {
    /// `name{labels}` (as written) -> value.
    samples: BTreeMap<String, f64>,
    /// Family -> its type (counter, gauge, histogram, info).
    families: BTreeMap<String, String>,
    text: String,
}

impl Scrape {
    fn of(addr: SocketAddr) -> Self {
        let (status, text) = http_request(addr, "GET", "/metrics", &[], b"");
        assert_eq!(status, 200, "{text}");
        Self::parse(text)
    }

    /// Panics, naming the line, where `text` is not OpenMetrics text:
    /// each family declared once, its samples right after its `# TYPE`
    /// and named by its type's suffixes, and `# EOF` last.
    fn parse(text: String) -> Self {
        let body = text
            .strip_suffix("# EOF\n")
            .unwrap_or_else(|| panic!("no final # EOF:\n{text}"));
        let label_set =
            regex::Regex::new(r#"^\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\}$"#).unwrap();
        let (mut samples, mut families) = (BTreeMap::new(), BTreeMap::new());
        let mut current: Option<(String, String)> = None;
        for line in body.lines() {
            if let Some(decl) = line.strip_prefix("# TYPE ") {
                let (family, type_) = decl.split_once(' ').expect(line);
                let before = families.insert(family.to_string(), type_.to_string());
                assert!(before.is_none(), "family {family} declared twice");
                current = Some((family.to_string(), type_.to_string()));
                continue;
            }
            if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(line);
            let (name, labels) = series.split_at(series.find('{').unwrap_or(series.len()));
            assert!(
                labels.is_empty() || label_set.is_match(labels),
                "bad labels: {line}"
            );
            let (family, type_) = current
                .as_ref()
                .unwrap_or_else(|| panic!("sample before any # TYPE: {line}"));
            let suffixes: &[&str] = match type_.as_str() {
                "counter" => &["_total", "_created"],
                "gauge" => &[""],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "info" => &["_info"],
                other => panic!("unexpected type {other}: {line}"),
            };
            assert!(
                suffixes.iter().any(|s| name == format!("{family}{s}")),
                "{line}: not a sample of the {type_} {family}"
            );
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            assert!(
                samples.insert(series.to_string(), value).is_none(),
                "twice: {line}"
            );
        }
        Self {
            samples,
            families,
            text,
        }
    }

    fn value(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{}", self.text))
    }

    /// The names samples are queried by (`driftless_reconciles_total`,
    /// `..._bucket`, `process_open_fds`, ...).
    fn sample_names(&self) -> BTreeSet<String> {
        let name = |s: &String| s.split('{').next().unwrap().to_string();
        self.samples.keys().map(name).collect()
    }

    /// Each family as the README names it: counters with `_total`, info
    /// with `_info`, histograms and gauges as declared.
    fn documented_names(&self) -> BTreeSet<String> {
        let suffix = |t: &str| match t {
            "counter" => "_total",
            "info" => "_info",
            _ => "",
        };
        self.families
            .iter()
            .map(|(f, t)| format!("{f}{}", suffix(t)))
            .collect()
    }
}

/// `driftless controller` for `scope`'s namespace, logging JSON to `log`;
/// returns it and its HTTP address.
async fn start(scope: &Scope, log: &tempfile::NamedTempFile) -> (Owned, SocketAddr) {
    let controller = controller_command(&scope.ns)
        .args(["--log-json", "--allow-file-urls", "--poll-interval", "2s"])
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .map(Owned)
        .unwrap();
    let addr = controller_addr(log.path()).await;
    (controller, addr)
}

/// A `/proc/PID/status` field, in its own unit (kB for memory).
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    value.split_whitespace().next().unwrap().parse().unwrap()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Started with no managed resource and no GitSync, the controller's very
/// first scrape has its build, its process and, at zero, each registered
/// kind's reconciles (success and error), reconcile durations, drift and
/// duplicates, and counts by Ready/Synced, plus each renderer's durations.
#[tokio::test]
async fn an_idle_controller_exposes_every_series_from_the_first_scrape() {
    let scope = Scope::new("idle-metrics").await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let started = unix_now();
    let (controller, addr) = start(&scope, &log).await;
    let scrape = Scrape::of(addr);
    let pid = controller.0.id();

    let mut build = format!(
        r#"driftless_build_info{{version="{}""#,
        env!("CARGO_PKG_VERSION")
    );
    if let Some(sha) = option_env!("DRIFTLESS_GIT_SHA").filter(|s| !s.is_empty()) {
        build.push_str(&format!(r#",git_sha="{sha}""#));
    }
    let build_info: Vec<_> = scrape
        .samples
        .iter()
        .filter(|(k, _)| k.starts_with(&build))
        .collect();
    assert_eq!(build_info.len(), 1, "{build}... missing:\n{}", scrape.text);
    assert!(build_info[0].0.contains(",rustc=\"1."), "{build_info:?}");
    assert_eq!(*build_info[0].1, 1.0);

    let rss = scrape.value("process_resident_memory_bytes");
    let vm_rss = proc_status(pid, "VmRSS") as f64 * 1024.0;
    assert!(
        rss > vm_rss / 2.0 && rss < vm_rss * 2.0,
        "process_resident_memory_bytes {rss}, VmRSS now {vm_rss}"
    );
    let start_time = scrape.value("process_start_time_seconds");
    // /proc/stat's boot time is in whole seconds.
    assert!(
        start_time > started - 2.0 && start_time <= unix_now() + 1.0,
        "process_start_time_seconds {start_time}, test started {started}"
    );
    let (open, max) = (
        scrape.value("process_open_fds"),
        scrape.value("process_max_fds"),
    );
    assert!(open >= 3.0 && open < max, "open fds {open}, max {max}");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits.lines().any(|l| l.starts_with("Max open files")
            && l.split_whitespace().nth(3) == Some(&max.to_string())),
        "process_max_fds {max} is not the soft limit in:\n{limits}"
    );
    let cpu = scrape.value("process_cpu_seconds_total");
    assert!(cpu.is_finite() && cpu >= 0.0, "{cpu}");

    let managed = driftless::registry::managed_kinds();
    assert!(managed.len() >= 12, "{managed:?}");
    let statuses = ["True", "False", "Unknown"];
    for kind in managed.iter().map(String::as_str).chain(["GitSync"]) {
        for result in ["success", "error"] {
            let s = format!(r#"driftless_reconciles_total{{kind="{kind}",result="{result}"}}"#);
            assert_eq!(scrape.value(&s), 0.0, "{s}");
        }
        let s = format!(r#"driftless_reconcile_duration_seconds_count{{kind="{kind}"}}"#);
        assert_eq!(scrape.value(&s), 0.0, "{s}");
    }
    for kind in &managed {
        for family in [
            "drift_corrections",
            "duplicates_found",
            "duplicates_deleted",
        ] {
            let s = format!(r#"driftless_{family}_total{{kind="{kind}"}}"#);
            assert_eq!(scrape.value(&s), 0.0, "{s}");
        }
        for ready in statuses {
            for synced in statuses {
                let s = format!(
                    r#"driftless_managed_resources{{kind="{kind}",ready="{ready}",synced="{synced}"}}"#
                );
                assert_eq!(scrape.value(&s), 0.0, "{s}");
            }
        }
    }
    for renderer in ["plain", "kustomize", "helm"] {
        let s = format!(r#"driftless_render_duration_seconds_count{{renderer="{renderer}"}}"#);
        assert_eq!(scrape.value(&s), 0.0, "{s}");
    }
    eprintln!(
        "idle /metrics: {} families, {} samples, {} bytes; RSS {:.1} MiB, {open} fds",
        scrape.families.len(),
        scrape.samples.len(),
        scrape.text.len(),
        rss / 1048576.0
    );
}

/// Every metric name in a PromQL expression: ours all start with
/// `driftless_` or `process_`, which no PromQL function or label does.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let name = regex::Regex::new(r"\b(?:driftless|process)_[a-zA-Z0-9_]+").unwrap();
    name.find_iter(expr)
        .map(|m| m.as_str().to_string())
        .collect()
}

/// The queries of a Grafana dashboard: each panel target's `expr` and each
/// template variable's `query`, wherever they are nested.
fn dashboard_queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", Value::String(q)) => out.push(q.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// After a GitSync applied a Bucket (so the series that appear with their
/// first event exist too: cloud calls, per-GitSync durations), every metric
/// the Grafana dashboard queries is in the scrape, and the README's Metrics
/// section names exactly the families scraped.
#[tokio::test]
async fn the_dashboard_and_readme_name_only_series_the_controller_exposes() {
    let path = repo_root().join("deploy/grafana/driftless.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    let queried: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    assert!(queried.len() >= 15, "too few metrics found in {queries:#?}");

    let scope = Scope::new("dash-metrics").await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let (_controller, addr) = start(&scope, &log).await;
    let repo = Repo::new();
    let bucket = crate::support::unique("dash");
    repo.write(
        "clusters/test/bucket.yaml",
        &bucket_yaml(&bucket, &scope.provider_config, "v1"),
    );
    let sha = repo.commit("a bucket");
    let gitsyncs: Api<GitSync> = scope.api();
    let gs = new_gitsync("dash", &repo.url(), json!({}));
    gitsyncs.create(&PostParams::default(), &gs).await.unwrap();
    wait_gitsync(&gitsyncs, "dash", "applied", Duration::from_secs(90), |g| {
        ready_at(g, &rev(&sha))
    })
    .await;
    let (ok, out, err) = kubectl_wait_ready(&scope.ns, "60s", &[&format!("bucket/{bucket}")]);
    assert!(ok, "{out}{err}");
    let scrape = Scrape::of(addr);

    let exposed = scrape.sample_names();
    let missing: Vec<_> = queried.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "{} queries series the controller does not expose: {missing:?}\nexposed: {exposed:?}",
        path.display()
    );

    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a ## Metrics section");
    let documented: BTreeSet<String> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .flat_map(metric_names)
        .collect();
    let families = scrape.documented_names();
    let undocumented: Vec<_> = families.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "README's Metrics section lacks {undocumented:?}"
    );
    let unknown: Vec<_> = documented
        .iter()
        .filter(|n| !families.contains(*n) && !exposed.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "README's Metrics section names unexposed {unknown:?}"
    );
    eprintln!(
        "dashboard: {} queries over {} metrics, all exposed; README documents {} families",
        queries.len(),
        queried.len(),
        families.len()
    );

    let (ok, out, err) = kubectl(
        &["delete", "-n", &scope.ns, "gitsync/dash", "--timeout=90s"],
        None,
    );
    assert!(ok, "{out}{err}");
}
