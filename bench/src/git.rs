//! The Git loop: a local repository, a GitSync applying it, and timings from
//! commit (plus the trigger annotation) to objects applied, and from a manual
//! change of an applied object to its restoration.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use crate::world::MANAGER;

pub struct Repo {
    dir: PathBuf,
}

impl Repo {
    pub fn init(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let repo = Self {
            dir: dir.to_path_buf(),
        };
        repo.git(&["init", "-q", "-b", "main"])?;
        Ok(repo)
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    fn git(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=bench",
                "-c",
                "user.email=bench@driftless.invalid",
            ])
            .args(args)
            .current_dir(&self.dir)
            .output()
            .context("running git")?;
        if !out.status.success() {
            bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Writes `files` (path, content), then commits everything.
    pub fn commit(&self, files: &[(String, String)], message: &str) -> anyhow::Result<()> {
        for (path, text) in files {
            let path = self.dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap_or(&self.dir))?;
            std::fs::write(path, text)?;
        }
        self.git(&["add", "-A"])?;
        self.git(&["commit", "-q", "-m", message])
    }
}

pub fn config_map(ns: &str, name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n  value: \"{value}\"\n"
    )
}

fn gitsync_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("driftless.dev", "v1alpha1", "GitSync");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// Creates the GitSync (long interval: only the trigger makes it sync early)
/// and waits for its first sync.
pub async fn create_gitsync(
    client: &kube::Client,
    ns: &str,
    url: &str,
    path: &str,
) -> anyhow::Result<()> {
    let gs = json!({
        "apiVersion": "driftless.dev/v1alpha1",
        "kind": "GitSync",
        "metadata": {"name": "bench", "namespace": ns},
        "spec": {"url": url, "path": path, "interval": "1h", "prune": true},
    });
    gitsync_api(client, ns)
        .patch(
            "bench",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&gs),
        )
        .await?;
    Ok(())
}

/// Asks for a sync now: the trigger annotation (what `kubectl annotate` or a
/// CI step would set after a push).
pub async fn trigger(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    let now = format!("{:?}", std::time::SystemTime::now());
    gitsync_api(client, ns)
        .patch(
            "bench",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"driftless.dev/requested-at": now}}}),
            ),
        )
        .await?;
    Ok(())
}

/// Waits until `count` ConfigMaps in `ns` have data.value == `value`.
pub async fn wait_values(
    client: &kube::Client,
    ns: &str,
    value: &str,
    count: usize,
    since: Instant,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    loop {
        let n = api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|c| {
                c.data
                    .as_ref()
                    .and_then(|d| d.get("value"))
                    .is_some_and(|v| v == value)
            })
            .count();
        if n >= count {
            return Ok(since.elapsed());
        }
        if since.elapsed() > timeout {
            bail!("{n} of {count} ConfigMaps in {ns} have value {value:?} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Changes one applied ConfigMap by hand (another field manager, like
/// `kubectl edit`), then times how long until Git's value is back.
pub async fn self_heal(
    client: &kube::Client,
    ns: &str,
    name: &str,
    git_value: &str,
) -> anyhow::Result<Duration> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let since = Instant::now();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"value": "changed by hand"}})),
    )
    .await?;
    loop {
        let cm = api.get(name).await?;
        if cm
            .data
            .as_ref()
            .and_then(|d| d.get("value"))
            .map(String::as_str)
            == Some(git_value)
        {
            return Ok(since.elapsed());
        }
        if since.elapsed() > Duration::from_secs(60) {
            bail!("{ns}/{name} not restored after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
