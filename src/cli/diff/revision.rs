//! `driftless diff --gitsync NS/NAME` without PATH: the GitSync's next
//! revision, fetched from its repository into a temporary cache, checked
//! out and rendered as the controller renders it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use serde_json::Value;

use crate::gitsync::source::{self, Credentials};
use crate::gitsync::GitSync;
use crate::manifests::Manifest;
use crate::render::{self, Local, Renderer};

/// A directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The objects of the revision `gs` follows now (decrypted with the age
/// key of the environment), each as written too, and the revision.
pub(super) async fn load(
    client: &kube::Client,
    gs: &GitSync,
    local: &Local,
) -> Result<(Vec<Manifest>, Vec<Value>, String), String> {
    if gs.spec.helm.as_ref().is_some_and(|h| h.chart.is_some()) {
        return Err(
            "spec.helm.chart (a chart from a Helm repository): give the chart as PATH".into(),
        );
    }
    let ns = gs.namespace().unwrap_or_default();
    let creds = match &gs.spec.secret_ref {
        Some(r) => Some(credentials(client, &ns, &r.name).await?),
        None => None,
    };
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "driftless-diff-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )));
    let (cache, url, git_ref) = (
        scratch.0.join("cache"),
        gs.spec.url.clone(),
        gs.spec.git_ref.clone(),
    );
    let deadline = Instant::now() + local.timeout;
    let path = gs.spec.path.clone();
    let (revision, checkout) = tokio::task::spawn_blocking(move || {
        let fetched = source::latest(&cache, &url, &git_ref, creds.as_ref(), deadline)?;
        let sha = fetched.revision.sha.clone();
        let names = source::names_at(&cache, &sha, &path).map_err(|e| e.to_string())?;
        let renderer = Renderer::for_files(&names);
        let scope = if renderer.needs_whole_repository() {
            ""
        } else {
            path.as_str()
        };
        let checkout = source::checkout(&cache, &sha, scope).map_err(|e| e.to_string())?;
        Ok::<_, String>((fetched.revision, checkout))
    })
    .await
    .map_err(|e| format!("fetching failed: {e}"))??;
    let namespace = gs
        .spec
        .target_namespace
        .clone()
        .unwrap_or_else(|| ns.clone());
    let request = render::Request {
        root: checkout.root(),
        path: &gs.spec.path,
        helm: gs.spec.helm.as_ref(),
        release_name: &gs.name_any(),
        namespace: &namespace,
        timeout: local.timeout,
        capabilities: None,
        chart_dir: None,
    };
    let rendered = render::render(&local.tools, &request)
        .await
        .map_err(|e| e.to_string())?;
    let written: Vec<Value> = rendered.manifests.iter().map(|m| m.value.clone()).collect();
    let ids = super::super::commands::push_identities()?;
    let hint = "set SOPS_AGE_KEY_FILE (or SOPS_AGE_KEY) to an age identity file, as for sops";
    let manifests =
        crate::decrypt::manifests(rendered.manifests, checkout.root(), ids.as_ref(), hint)
            .map_err(|e| e.to_string())?;
    Ok((manifests, written, revision.to_string()))
}

/// The GitSync's Git credentials (`spec.secretRef`), read as the controller
/// reads them.
async fn credentials(client: &kube::Client, ns: &str, name: &str) -> Result<Credentials, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = api
        .get_opt(name)
        .await
        .map_err(|e| format!("reading Secret {ns}/{name} (spec.secretRef): {e}"))?
        .ok_or_else(|| format!("Secret {ns}/{name} (spec.secretRef) does not exist"))?;
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    Credentials::from_secret_data(&format!("{ns}/{name}"), |key| {
        let value = String::from_utf8_lossy(data.get(key)?).into_owned();
        // Keys and known_hosts keep their newlines; single-line values are trimmed.
        Some(match key {
            "identity" | "known_hosts" => value,
            _ => value.trim().to_string(),
        })
    })
}
