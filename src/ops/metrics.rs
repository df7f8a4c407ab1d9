//! Prometheus metrics of the controller, served on `/metrics`. Every series
//! whose labels are known before the first event (build, process, each
//! registered kind and result, each renderer) exists from the first scrape,
//! at zero: an idle controller is visible, and `rate()` sees the first event.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftless_provider::CallCounter;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::process::ProcessCollector;

/// The `result` label of `driftless_reconciles_total`.
pub const RESULTS: [&str; 2] = ["success", "error"];
/// The values of a condition's status, as `driftless_managed_resources`
/// labels `ready` and `synced`.
const CONDITION_STATUSES: [&str; 3] = ["True", "False", "Unknown"];

/// `driftless_build_info`'s labels: the crate version, the Git commit when
/// the build was given `DRIFTLESS_GIT_SHA` (the image build is), and the
/// compiler (from build.rs).
fn build_labels() -> Vec<(&'static str, &'static str)> {
    let mut labels = vec![("version", env!("CARGO_PKG_VERSION"))];
    if let Some(sha) = option_env!("DRIFTLESS_GIT_SHA").filter(|s| !s.is_empty()) {
        labels.push(("git_sha", sha));
    }
    labels.push(("rustc", env!("DRIFTLESS_RUSTC_VERSION")));
    labels
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindResult {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: String,
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceState {
    kind: String,
    ready: String,
    synced: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GitSyncLabel {
    namespace: String,
    name: String,
}

type StateSource = Box<dyn Fn() -> Vec<(String, String, String)> + Send + Sync>;

/// Creates `labels`' series in `family` at zero (a no-op when it exists).
/// How a notification can end (the `result` label).
pub const NOTIFICATION_RESULTS: [&str; 6] = [
    "delivered",
    "refused",
    "failed",
    "dropped",
    "skipped",
    "unconfigured",
];

fn zero<S, M, C>(family: &Family<S, M, C>, labels: S)
where
    S: Clone + std::hash::Hash + Eq,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    // The read guard returned is of no use: creating the series is the point.
    let _ = family.get_or_create(&labels);
}

fn duration_histogram() -> Histogram {
    // 5 ms .. ~80 s
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Every metric, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    /// The unprefixed `process_*` series (the names dashboards expect).
    process: Registry,
    calls: Arc<CallCounter>,
    reconciles: Family<KindResult, Counter>,
    reconcile_seconds: Family<KindLabel, Histogram, fn() -> Histogram>,
    cloud_calls: Family<CallLabels, Counter>,
    drift_corrections: Family<KindLabel, Counter>,
    duplicates: Family<KindLabel, Counter>,
    duplicates_deleted: Family<KindLabel, Counter>,
    resources: Family<ResourceState, Gauge>,
    /// The managed kinds whose `managed_resources` series are shown at
    /// zero when none of that kind exists.
    managed_kinds: Mutex<BTreeSet<String>>,
    /// Each kind's (kind, Ready, Synced) per object, read from the
    /// controllers' caches at scrape time: the truth, not a tally.
    state_sources: Mutex<Vec<StateSource>>,
    gitsync_seconds: Family<GitSyncLabel, Histogram, fn() -> Histogram>,
    gitsync_last_applied: Family<GitSyncLabel, Gauge>,
    render_seconds: Family<RendererLabel, Histogram, fn() -> Histogram>,
    notifications: Family<NotificationLabels, Counter>,
    notification_attempts: Family<ProviderLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    provider: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RendererLabel {
    renderer: String,
}

impl Metrics {
    /// Metrics whose cloud-call figures come from `calls`.
    pub fn new(calls: Arc<CallCounter>) -> Self {
        let m = Self {
            registry: Registry::with_prefix("driftless"),
            process: Registry::default(),
            calls,
            reconciles: Family::default(),
            reconcile_seconds: Family::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            ),
            cloud_calls: Family::default(),
            drift_corrections: Family::default(),
            duplicates: Family::default(),
            duplicates_deleted: Family::default(),
            resources: Family::default(),
            managed_kinds: Mutex::default(),
            state_sources: Mutex::default(),
            gitsync_seconds: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            gitsync_last_applied: Family::default(),
            render_seconds: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            notifications: Family::default(),
            notification_attempts: Family::default(),
        };
        let mut registry = Registry::with_prefix("driftless");
        registry.register(
            "build",
            "The running build: version, Git commit (when built with DRIFTLESS_GIT_SHA), compiler; always 1",
            Info::new(build_labels()),
        );
        registry.register(
            "reconciles",
            "Reconciles of managed resources and GitSyncs, by kind and result (success, error)",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile of a managed resource or GitSync, by kind",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "cloud_api_calls",
            "Cloud API calls, by service, operation and outcome (ok, or the HTTP status of a failure)",
            m.cloud_calls.clone(),
        );
        registry.register(
            "drift_corrections",
            "Drift corrected in the cloud, by kind",
            m.drift_corrections.clone(),
        );
        registry.register(
            "duplicates_deleted",
            "Proven duplicates deleted (--delete-proven-duplicates), by kind",
            m.duplicates_deleted.clone(),
        );
        registry.register(
            "duplicates_found",
            "Cloud resources found carrying another resource's owner tags (a lost create answer, retried), by kind",
            m.duplicates.clone(),
        );
        registry.register(
            "managed_resources",
            "Managed resources, by kind and their Ready and Synced condition status",
            m.resources.clone(),
        );
        registry.register(
            "gitsync_duration_seconds",
            "Duration of one GitSync sync (fetch, load, apply)",
            m.gitsync_seconds.clone(),
        );
        registry.register(
            "gitsync_last_applied_timestamp_seconds",
            "When a GitSync last applied a revision (Unix time)",
            m.gitsync_last_applied.clone(),
        );
        registry.register(
            "render_duration_seconds",
            "Duration of rendering one revision, by renderer (plain, kustomize, helm); cached renders are not counted",
            m.render_seconds.clone(),
        );
        registry.register(
            "notifications",
            "Notifications, by provider and result (delivered, refused, failed, dropped, skipped, unconfigured)",
            m.notifications.clone(),
        );
        registry.register(
            "notification_attempts",
            "HTTP requests made to deliver notifications (retries included), by provider",
            m.notification_attempts.clone(),
        );
        let mut process = Registry::default();
        process.register_collector(Box::new(ProcessCollector));
        Self {
            registry,
            process,
            ..m
        }
    }

    /// Shows `kind`'s reconcile series (each result, and the duration) at
    /// zero until its first reconcile.
    pub fn init_kind(&self, kind: &str) {
        for result in RESULTS {
            let labels = KindResult {
                kind: kind.to_string(),
                result: result.to_string(),
            };
            zero(&self.reconciles, labels);
        }
        let labels = KindLabel {
            kind: kind.to_string(),
        };
        zero(&self.reconcile_seconds, labels);
    }

    /// Like [`Self::init_kind`], plus the series only managed resources
    /// have: drift, duplicates, and counts by condition.
    pub fn init_managed_kind(&self, kind: &str) {
        self.init_kind(kind);
        let label = KindLabel {
            kind: kind.to_string(),
        };
        zero(&self.drift_corrections, label.clone());
        zero(&self.duplicates, label.clone());
        zero(&self.duplicates_deleted, label);
        self.managed_kinds
            .lock()
            .expect("metrics poisoned")
            .insert(kind.to_string());
    }

    /// Shows `renderer`'s duration at zero until its first render.
    pub fn init_renderer(&self, renderer: &str) {
        let labels = RendererLabel {
            renderer: renderer.to_string(),
        };
        zero(&self.render_seconds, labels);
    }

    /// Shows `provider`'s notification series (each result, and the
    /// attempts) at zero until its first notification.
    pub fn init_notifications(&self, provider: &str) {
        for result in NOTIFICATION_RESULTS {
            let labels = NotificationLabels {
                provider: provider.to_string(),
                result: result.to_string(),
            };
            zero(&self.notifications, labels);
        }
        let label = ProviderLabel {
            provider: provider.to_string(),
        };
        zero(&self.notification_attempts, label);
    }

    /// A notification to a `provider` ended with `result`.
    pub fn notification(&self, provider: &str, result: &str) {
        let labels = NotificationLabels {
            provider: provider.to_string(),
            result: result.to_string(),
        };
        self.notifications.get_or_create(&labels).inc();
    }

    /// One HTTP request to deliver a notification to a `provider`.
    pub fn notification_attempt(&self, provider: &str) {
        let label = ProviderLabel {
            provider: provider.to_string(),
        };
        self.notification_attempts.get_or_create(&label).inc();
    }

    pub fn reconciled(&self, kind: &str, ok: bool, took: Duration) {
        let result = if ok { RESULTS[0] } else { RESULTS[1] };
        self.reconciles
            .get_or_create(&KindResult {
                kind: kind.to_string(),
                result: result.to_string(),
            })
            .inc();
        self.reconcile_seconds
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// `n` cloud resources newly seen carrying one object's owner tags.
    pub fn duplicates_found(&self, kind: &str, n: usize) {
        self.duplicates
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc_by(n as u64);
    }

    pub fn duplicates_deleted(&self, kind: &str) {
        self.duplicates_deleted
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn drift_corrected(&self, kind: &str) {
        self.drift_corrections
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Adds a source of (kind, Ready status, Synced status) per object.
    pub fn add_state_source(
        &self,
        f: impl Fn() -> Vec<(String, String, String)> + Send + Sync + 'static,
    ) {
        self.state_sources
            .lock()
            .expect("metrics poisoned")
            .push(Box::new(f));
    }

    /// One GitSync reconcile (fetch, load, apply) took `took`.
    pub fn git_synced(&self, namespace: &str, name: &str, took: Duration) {
        let label = GitSyncLabel {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.gitsync_seconds
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// A GitSync applied a new revision at Unix time `at`.
    pub fn git_applied(&self, namespace: &str, name: &str, at: i64) {
        let label = GitSyncLabel {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.gitsync_last_applied.get_or_create(&label).set(at);
    }

    /// A revision was rendered (not served from the cache) in `took`.
    pub fn rendered(&self, renderer: &str, took: Duration) {
        self.render_seconds
            .get_or_create(&RendererLabel {
                renderer: renderer.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        for (k, n) in self.calls.snapshot() {
            self.cloud_calls
                .get_or_create(&CallLabels {
                    service: k.service,
                    operation: k.operation,
                    outcome: k.outcome,
                })
                .inner()
                .store(n, std::sync::atomic::Ordering::Relaxed);
        }
        self.resources.clear();
        for kind in self.managed_kinds.lock().expect("metrics poisoned").iter() {
            for ready in CONDITION_STATUSES {
                for synced in CONDITION_STATUSES {
                    let labels = ResourceState {
                        kind: kind.clone(),
                        ready: ready.to_string(),
                        synced: synced.to_string(),
                    };
                    zero(&self.resources, labels);
                }
            }
        }
        for source in self.state_sources.lock().expect("metrics poisoned").iter() {
            for (kind, ready, synced) in source() {
                self.resources
                    .get_or_create(&ResourceState {
                        kind,
                        ready,
                        synced,
                    })
                    .inc();
            }
        }
        let mut out = String::new();
        encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &self.process))
            .and_then(|()| encode_eof(&mut out))
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_labels() {
        let calls = Arc::new(CallCounter::default());
        calls.record("ec2", "DescribeVpcs", "ok");
        let m = Metrics::new(calls);
        m.reconciled("Vpc", true, Duration::from_millis(20));
        m.drift_corrected("Vpc");
        m.add_state_source(|| {
            let s = |r: &str, y: &str| ("Vpc".to_string(), r.to_string(), y.to_string());
            vec![s("True", "True"), s("True", "True"), s("False", "Unknown")]
        });
        m.git_synced("apps", "main", Duration::from_millis(300));
        m.git_applied("apps", "main", 1_700_000_000);
        m.notification("github", "delivered");
        m.notification_attempt("github");
        let text = m.render();
        for want in [
            r#"driftless_reconciles_total{kind="Vpc",result="success"} 1"#,
            r#"driftless_reconcile_duration_seconds_count{kind="Vpc"} 1"#,
            r#"driftless_cloud_api_calls_total{service="ec2",operation="DescribeVpcs",outcome="ok"} 1"#,
            r#"driftless_drift_corrections_total{kind="Vpc"} 1"#,
            r#"driftless_managed_resources{kind="Vpc",ready="True",synced="True"} 2"#,
            r#"driftless_managed_resources{kind="Vpc",ready="False",synced="Unknown"} 1"#,
            r#"driftless_gitsync_last_applied_timestamp_seconds{namespace="apps",name="main"} 1700000000"#,
            r#"driftless_notifications_total{provider="github",result="delivered"} 1"#,
            r#"driftless_notification_attempts_total{provider="github"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want} in:\n{text}");
        }
    }

    #[test]
    fn known_series_start_at_zero() {
        let m = Metrics::new(Arc::new(CallCounter::default()));
        m.init_managed_kind("Vpc");
        m.init_kind("GitSync");
        m.init_renderer("helm");
        let text = m.render();
        for want in [
            r#"driftless_reconciles_total{kind="Vpc",result="success"} 0"#,
            r#"driftless_reconciles_total{kind="Vpc",result="error"} 0"#,
            r#"driftless_reconciles_total{kind="GitSync",result="error"} 0"#,
            r#"driftless_reconcile_duration_seconds_count{kind="GitSync"} 0"#,
            r#"driftless_drift_corrections_total{kind="Vpc"} 0"#,
            r#"driftless_duplicates_found_total{kind="Vpc"} 0"#,
            r#"driftless_duplicates_deleted_total{kind="Vpc"} 0"#,
            r#"driftless_managed_resources{kind="Vpc",ready="Unknown",synced="False"} 0"#,
            r#"driftless_render_duration_seconds_count{renderer="helm"} 0"#,
            "# TYPE driftless_build info\n",
            "# TYPE process_cpu_seconds counter\n",
        ] {
            assert!(text.contains(want), "missing {want} in:\n{text}");
        }
        assert!(
            !text.contains(r#"driftless_drift_corrections_total{kind="GitSync"}"#),
            "GitSync has no cloud drift:\n{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        // A counted object replaces its zero, it does not add a series.
        m.add_state_source(|| vec![("Vpc".into(), "True".into(), "True".into())]);
        let text = m.render();
        let vpc_true = r#"driftless_managed_resources{kind="Vpc",ready="True",synced="True"} "#;
        assert_eq!(text.matches(vpc_true).count(), 1, "{text}");
        assert!(text.contains(&format!("{vpc_true}1")), "{text}");
    }
}
