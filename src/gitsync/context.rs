//! What every GitSync pass shares: revisions seen, parsed manifests,
//! Event recorders and self-heal watches, plus reading Git and its Secret.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use super::cluster::{Cluster, Remotes, Target};
use super::pass::reason;
use super::source::{self, Credentials, Revision, SourceError};
use super::{GitSync, LABEL_NAME, LABEL_NAMESPACE};
use crate::decrypt::{self, Identities};
use crate::manifests::{Manifest, ManifestError, Origin};
use crate::ops::notify::{Event as NotifyEvent, Notification};
use crate::ops::Shared;
use crate::render::chart_repo::{self, ChartSource, RepoAuth};
use crate::render::process::TempDir;
use crate::render::{self, Rendered, Renderer};
use crate::Settings;

/// What one GitSync's reconciles remember between runs (in memory only: a
/// restarted controller checks the remote and re-applies, nothing is lost).
#[derive(Default)]
pub(super) struct Tracked {
    /// The last remote check: when, for which spec generation, what it found.
    pub(super) checked: Option<(Instant, Option<i64>, Revision)>,
    /// Rendered manifests by (commit, render options): the latest and the
    /// last applied one.
    manifests: HashMap<String, Arc<Vec<Manifest>>>,
    /// A revision that failed to load or apply, so that re-applies triggered
    /// by watches do not retry it before the next remote check.
    pub(super) failed: Option<Revision>,
    /// When the applied revision was first applied (for the health timeout).
    pub(super) applied_at: Option<(Revision, Instant)>,
    /// The last new revision's change set, for the notification that says
    /// it is ready.
    pub(super) changes: Option<(Revision, String)>,
}

/// Everything a GitSync reconcile needs.
pub struct Context {
    pub(super) client: kube::Client,
    pub(super) settings: Settings,
    pub(super) shared: Shared,
    events: Events,
    tracked: Mutex<HashMap<String, Tracked>>,
    /// This cluster: its kinds, self-heal watches, impersonating clients.
    pub(super) local: Arc<Cluster>,
    /// Other clusters (`spec.kubeConfig`), by kubeconfig Secret.
    remotes: Remotes,
    /// What a new cluster's self-heal watches select and trigger.
    selector: String,
    trigger: mpsc::UnboundedSender<ObjectRef<GitSync>>,
}

impl Context {
    /// A context whose self-heal watches send the GitSync to re-reconcile
    /// into `trigger`. Restricted to one namespace (`settings.namespace`),
    /// only that namespace's GitSyncs' objects trigger anything.
    pub(super) fn new(
        client: kube::Client,
        settings: Settings,
        shared: Shared,
        trigger: mpsc::UnboundedSender<ObjectRef<GitSync>>,
    ) -> Self {
        let selector = match &settings.namespace {
            Some(ns) => format!("{LABEL_NAME},{LABEL_NAMESPACE}={ns}"),
            None => format!("{LABEL_NAME},{LABEL_NAMESPACE}"),
        };
        let reporter = Reporter {
            controller: "driftless".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            events: Events {
                client: client.clone(),
                reporter,
                recorders: Mutex::default(),
            },
            tracked: Mutex::default(),
            local: Arc::new(Cluster::new(
                String::new(),
                client.clone(),
                selector.clone(),
                trigger.clone(),
            )),
            remotes: Remotes::default(),
            selector,
            trigger,
            settings,
            shared,
            client,
        }
    }

    /// The cluster `gs` applies to and the identity it applies, prunes and
    /// reads its objects with. Here: its `spec.serviceAccountName`, else
    /// `--default-service-account` (both in its namespace), else the
    /// controller's own. In another cluster (`spec.kubeConfig`): the
    /// kubeconfig's user, as `spec.serviceAccountName` there if set (the
    /// default account is one of this cluster's, so it does not apply).
    pub(super) async fn target_for(&self, gs: &GitSync) -> Result<Target, String> {
        let ns = gs.namespace().unwrap_or_default();
        let own = gs.spec.service_account_name.as_deref();
        let Some(reference) = &gs.spec.kube_config else {
            let account = own.or(self.settings.default_service_account.as_deref());
            return self.local.target(&ns, account);
        };
        let data = secret_data(
            &self.client,
            &ns,
            &reference.secret_ref.name,
            "spec.kubeConfig.secretRef",
        )
        .await?;
        let make =
            |name, client| Cluster::new(name, client, self.selector.clone(), self.trigger.clone());
        let cluster = self.remotes.get(&ns, reference, &data, make).await?;
        cluster.target(&ns, own)
    }

    /// Forgets what passes of GitSync `key` remembered (it is gone).
    pub(super) fn forget(&self, key: &str) {
        self.tracked.lock().expect("tracked poisoned").remove(key);
    }
}

/// Event recorders, one per GitSync, reason and note. kube's Recorder
/// folds every repeat of a reason into the first Event's series and keeps
/// that first note, so "applied revision B" would show as a repeat of
/// "applied revision A". Here only a repeat of the same note is folded.
struct Events {
    client: kube::Client,
    reporter: Reporter,
    recorders: Mutex<HashMap<u64, Recorder>>,
}

impl Events {
    fn recorder(&self, gs: &GitSync, reason: &str, note: &str) -> Recorder {
        let mut h = DefaultHasher::new();
        (gs.uid(), reason, note).hash(&mut h);
        let mut recorders = self.recorders.lock().expect("recorders poisoned");
        // Bounded: forgetting only means a repeat starts a new Event.
        if recorders.len() >= 512 {
            recorders.clear();
        }
        recorders
            .entry(h.finish())
            .or_insert_with(|| Recorder::new(self.client.clone(), self.reporter.clone()))
            .clone()
    }
}

/// Why a reconcile failed (and is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

pub(super) async fn publish(
    ctx: &Context,
    gs: &GitSync,
    type_: EventType,
    reason: &str,
    note: String,
) {
    // One recorder per note: see [`Events`].
    let recorder = ctx.events.recorder(gs, reason, &note);
    crate::ops::publish_event(&recorder, &gs.object_ref(&()), type_, reason, note).await;
}

impl Context {
    /// Queues a notification about `gs` (at `revision`, when one is known;
    /// with the revision's change set, when it has one).
    pub(super) fn notify(
        &self,
        gs: &GitSync,
        event: NotifyEvent,
        revision: Option<&str>,
        message: &str,
        changes: Option<String>,
    ) {
        let mut n = Notification::new(
            event,
            "GitSync",
            &gs.namespace().unwrap_or_default(),
            &gs.name_any(),
            message,
        );
        n.revision = revision.map(String::from);
        n.changes = changes;
        n.source_url = Some(gs.spec.url.clone());
        self.shared.notifier.send(n);
    }

    pub(super) fn with<T>(&self, key: &str, f: impl FnOnce(&mut Tracked) -> T) -> T {
        let mut tracked = self.tracked.lock().expect("tracked poisoned");
        f(tracked.entry(key.to_string()).or_default())
    }

    /// The revision seen by a remote check of the current spec less than
    /// `interval` ago.
    pub(super) fn known_revision(
        &self,
        key: &str,
        generation: Option<i64>,
        interval: Duration,
    ) -> Option<Revision> {
        self.with(key, |t| {
            let (at, gen, revision) = t.checked.as_ref()?;
            (*gen == generation && at.elapsed() < interval).then(|| revision.clone())
        })
    }

    /// The objects of commit `sha` as `gs` renders them, rendered once per
    /// (revision, path, render options): interval re-applies and self-heal
    /// never render again.
    pub(super) async fn manifests(
        &self,
        key: &str,
        dir: &Path,
        sha: &str,
        gs: &GitSync,
        cluster: &Cluster,
        timeout: Duration,
    ) -> Result<Arc<Vec<Manifest>>, RenderFailure> {
        let mut h = DefaultHasher::new();
        (
            sha,
            &gs.spec.path,
            serde_json::to_string(&gs.spec.helm).ok(),
        )
            .hash(&mut h);
        let cache_key = format!("{sha}:{:016x}", h.finish());
        if let Some(m) = self.with(key, |t| t.manifests.get(&cache_key).cloned()) {
            return Ok(m);
        }
        let rendered = self.render(dir, sha, gs, cluster, timeout).await?;
        let manifests = Arc::new(rendered.manifests);
        self.shared
            .metrics
            .rendered(rendered.renderer.name(), rendered.took);
        let note = format!(
            "rendered revision {} with {}: {} objects in {} ms",
            &sha[..12.min(sha.len())],
            rendered.renderer.name(),
            manifests.len(),
            rendered.took.as_millis()
        );
        publish(self, gs, EventType::Normal, "Rendered", note).await;
        self.with(key, |t| {
            // Keep two: the latest and the one before (usually the applied one).
            if t.manifests.len() >= 2 {
                t.manifests.clear();
            }
            t.manifests.insert(cache_key, manifests.clone());
        });
        Ok(manifests)
    }

    /// Checks out what the renderer needs (the whole repository for
    /// kustomize and helm: an overlay reads `../base`) and renders it.
    async fn render(
        &self,
        dir: &Path,
        sha: &str,
        gs: &GitSync,
        cluster: &Cluster,
        timeout: Duration,
    ) -> Result<Rendered, RenderFailure> {
        let path = gs.spec.path.clone();
        let shown = if path.is_empty() { "." } else { path.as_str() }.to_string();
        let chart = gs.spec.helm.as_ref().and_then(|h| h.chart.clone());
        let from_chart_repo = chart.is_some();
        let mut checked_out = read_revision(dir, sha, &path, from_chart_repo).await;
        if let Err(SourceError::Damaged(why)) = checked_out {
            // An object of the revision cannot be read: delete the cache,
            // clone again, once, and read again.
            checked_out = match self.fetch(gs, dir, timeout, Some(why)).await {
                Ok(_) => read_revision(dir, sha, &path, from_chart_repo).await,
                Err(e) => Err(SourceError::Other(e)),
            };
        }
        let checked_out = checked_out.map_err(|e| e.to_string());
        let (checkout, renderer) = checked_out.map_err(|why| RenderFailure {
            reason: reason::INVALID_MANIFESTS,
            error: ManifestError::new(&Origin::file(&shown), why),
        })?;
        let fail = |error: ManifestError| RenderFailure {
            reason: match renderer {
                Renderer::Plain => reason::INVALID_MANIFESTS,
                _ => reason::RENDER_FAILED,
            },
            error,
        };
        let chart_dir =
            match &chart {
                Some(c) => Some(self.fetch_chart(gs, c, timeout).await.map_err(|why| {
                    fail(ManifestError::new(&Origin::file("spec.helm.chart"), why))
                })?),
                None => None,
            };
        let capabilities = match renderer {
            Renderer::Helm => Some(cluster.capabilities().await),
            _ => None,
        };
        let name = gs.name_any();
        let namespace = gs
            .spec
            .target_namespace
            .clone()
            .unwrap_or_else(|| gs.namespace().unwrap_or_default());
        let request = render::Request {
            root: checkout.root(),
            path: &path,
            helm: gs.spec.helm.as_ref(),
            release_name: &name,
            namespace: &namespace,
            timeout,
            capabilities: capabilities.as_ref(),
            chart_dir: chart_dir.as_ref().map(|(_, dir)| dir.as_path()),
        };
        let rendered = render::render(&self.settings.render, &request)
            .await
            .map_err(fail)?;
        self.decrypt(gs, checkout.root(), rendered).await
    }

    /// The decrypt step: SOPS-encrypted objects opened with the identities
    /// of `spec.decryption`, while the checkout (the files as written, which
    /// the MAC covers) still exists. The plaintext lives in memory only.
    async fn decrypt(
        &self,
        gs: &GitSync,
        root: &Path,
        rendered: Rendered,
    ) -> Result<Rendered, RenderFailure> {
        let fail = |error: ManifestError| RenderFailure {
            reason: reason::DECRYPTION_FAILED,
            error,
        };
        let ids = match &gs.spec.decryption {
            Some(d) => {
                let ns = gs.namespace().unwrap_or_default();
                let ids = read_identities(&self.client, &ns, &d.secret_ref.name)
                    .await
                    .map_err(|why| {
                        fail(ManifestError::new(&Origin::file("spec.decryption"), why))
                    })?;
                Some(ids)
            }
            None => None,
        };
        let hint = "set spec.decryption: {provider: sops, secretRef: {name: <a Secret with *.agekey keys>}}";
        let manifests =
            decrypt::manifests(rendered.manifests, root, ids.as_ref(), hint).map_err(fail)?;
        Ok(Rendered {
            manifests,
            ..rendered
        })
    }

    /// A chart from a Helm repository (`spec.helm.chart`), unpacked into a
    /// directory that lives as long as the returned guard.
    async fn fetch_chart(
        &self,
        gs: &GitSync,
        chart: &ChartSource,
        timeout: Duration,
    ) -> Result<(TempDir, std::path::PathBuf), String> {
        let ns = gs.namespace().unwrap_or_default();
        let auth = match &gs.spec.secret_ref {
            Some(r) => read_repo_auth(&self.client, &ns, &r.name).await?,
            None => None,
        };
        let into = TempDir::new("chart")?;
        let cache = self.settings.git_cache.join("charts");
        let dir = chart_repo::fetch(chart, auth.as_ref(), &cache, into.path(), timeout).await?;
        Ok((into, dir))
    }
}

/// A render (or decrypt) that failed, and the reason the status gives.
pub(super) struct RenderFailure {
    pub(super) reason: &'static str,
    pub(super) error: ManifestError,
}

impl Context {
    /// Asks the remote for the revision `gs` follows (fetching it when new).
    pub(super) async fn fetch_latest(
        &self,
        gs: &GitSync,
        dir: &Path,
        timeout: Duration,
    ) -> Result<Revision, String> {
        self.fetch(gs, dir, timeout, None).await
    }

    /// [`Self::fetch_latest`], deleting the cache first when `damaged` says
    /// why it must go. One fetch per cache at a time: one abandoned at its
    /// timeout keeps the cache until it ends (at the server timeouts), and
    /// passes meanwhile say so instead of starting another.
    async fn fetch(
        &self,
        gs: &GitSync,
        dir: &Path,
        timeout: Duration,
        damaged: Option<String>,
    ) -> Result<Revision, String> {
        let shown = source::redact_url(&gs.spec.url);
        let ns = gs.namespace().unwrap_or_default();
        let creds = match &gs.spec.secret_ref {
            Some(r) => Some(read_credentials(&self.client, &ns, &r.name).await?),
            None => None,
        };
        // The message stays the same while it waits (no new Event per pass).
        let lock = source::CacheLock::try_acquire(dir).map_err(|_running| {
            format!(
                "a previous fetch of {shown} is still running (abandoned at spec.timeout; a server silent for {}s is cut off); not fetching again until it ends",
                source::IO_TIMEOUT.as_secs()
            )
        })?;
        let (dir, url, git_ref) = (
            dir.to_path_buf(),
            gs.spec.url.clone(),
            gs.spec.git_ref.clone(),
        );
        let started = Instant::now();
        let deadline = started + timeout;
        let wipe_first = damaged.is_some();
        let task = tokio::task::spawn_blocking(move || {
            let _lock = lock; // held until the fetch really ends
            if wipe_first {
                source::wipe(&dir)?;
            }
            source::latest(&dir, &url, &git_ref, creds.as_ref(), deadline)
        });
        // The callbacks stop a transfer at the deadline; a read that waits
        // for a silent server cannot be stopped before the server timeout, so
        // the pass stops waiting for it shortly after the deadline.
        let fetched = match tokio::time::timeout(timeout + FETCH_GRACE, task).await {
            Ok(Ok(result)) => result?,
            Ok(Err(e)) => return Err(format!("the git task failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "fetching {shown} took longer than {} (spec.timeout)",
                    humantime::format_duration(timeout)
                ))
            }
        };
        if let Some(why) = damaged.or(fetched.recloned) {
            let note = format!(
                "the git cache of {shown} was damaged ({why}): deleted it and cloned again in {} ms",
                started.elapsed().as_millis()
            );
            tracing::warn!(gitsync = %gs.name_any(), %note, "git cache recloned");
            publish(self, gs, EventType::Warning, reason::CACHE_RECLONED, note).await;
        }
        Ok(fetched.revision)
    }
}

/// The names under `path` of commit `sha`, the renderer they call for, and
/// the checkout of what it needs.
async fn read_revision(
    dir: &Path,
    sha: &str,
    path: &str,
    from_chart_repo: bool,
) -> Result<(source::Checkout, Renderer), SourceError> {
    let (d, s, p) = (dir.to_path_buf(), sha.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || {
        let names = source::names_at(&d, &s, &p)?;
        let renderer = match from_chart_repo {
            true => Renderer::Helm,
            false => Renderer::for_files(&names),
        };
        let scope = if renderer.needs_whole_repository() {
            ""
        } else {
            p.as_str()
        };
        source::checkout(&d, &s, scope).map(|c| (c, renderer))
    })
    .await
    .unwrap_or_else(|e| {
        Err(SourceError::Other(format!(
            "reading the revision failed: {e}"
        )))
    })
}

/// How long after spec.timeout a pass still waits for its fetch to report.
const FETCH_GRACE: Duration = Duration::from_secs(2);

/// The data of Secret `ns/name`, which `field` of the GitSync names (for
/// messages): one read, one way to say it is missing.
async fn secret_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
    field: &str,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = api
        .get_opt(name)
        .await
        .map_err(|e| format!("reading Secret {ns}/{name} ({field}): {e}"))?
        .ok_or_else(|| format!("Secret {ns}/{name} ({field}) does not exist"))?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

async fn read_credentials(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Credentials, String> {
    let data = secret_data(client, ns, name, "spec.secretRef").await?;
    Credentials::from_secret_data(&format!("{ns}/{name}"), |key| {
        let value = String::from_utf8_lossy(data.get(key)?).into_owned();
        // Keys and known_hosts keep their newlines; single-line values are trimmed.
        Some(match key {
            "identity" | "known_hosts" => value,
            _ => value.trim().to_string(),
        })
    })
}

/// Basic auth for a Helm repository: the `username` and `password` keys of
/// the GitSync's secretRef (none when the Secret has no username).
async fn read_repo_auth(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<RepoAuth>, String> {
    let data = secret_data(client, ns, name, "spec.secretRef").await?;
    let key = |k: &str| {
        data.get(k)
            .map(|v| String::from_utf8_lossy(v).trim().to_string())
    };
    Ok(key("username").map(|username| RepoAuth {
        username,
        password: key("password").unwrap_or_default(),
    }))
}

/// The age identities of Secret `ns/name` (`spec.decryption.secretRef`).
async fn read_identities(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Identities, String> {
    let data = secret_data(client, ns, name, "spec.decryption.secretRef").await?;
    Identities::from_secret_data(&format!("{ns}/{name}"), &data)
}
