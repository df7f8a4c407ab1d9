//! Where a GitSync's objects go: this cluster, or another one through the
//! kubeconfig in `spec.kubeConfig.secretRef` (Flux's shape). Each cluster
//! has its own discovery cache, self-heal watches, helm capabilities and
//! impersonating clients; the GitSync itself, its Events and its status
//! always stay in this cluster.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};
use tracing::{debug, info};

use super::apply::Kinds;
use super::impersonate;
use super::{GitSync, KubeConfigRef, LABEL_NAME, LABEL_NAMESPACE};
use crate::render::Capabilities;

/// The keys a kubeconfig Secret is read from when `key` is not given.
pub const DEFAULT_KEYS: [&str; 2] = ["value", "value.yaml"];

/// One cluster objects are applied to, with the controller's credentials
/// for it (its own, or the kubeconfig's).
pub struct Cluster {
    /// For messages: empty here, else ` on cluster <server> (kubeconfig
    /// Secret <ns/name>)`.
    pub on: String,
    pub client: kube::Client,
    pub kinds: Kinds,
    pub watches: Watches,
    capabilities: Mutex<Option<(Instant, Capabilities)>>,
    impersonated: impersonate::Clients,
}

/// A GitSync's cluster and the identity it acts with there.
#[derive(Clone)]
pub struct Target {
    pub client: kube::Client,
    pub cluster: Arc<Cluster>,
}

impl Cluster {
    pub fn new(
        on: String,
        client: kube::Client,
        selector: String,
        trigger: mpsc::UnboundedSender<ObjectRef<GitSync>>,
    ) -> Self {
        Self {
            on,
            watches: Watches {
                client: client.clone(),
                selector,
                started: Mutex::default(),
                trigger,
            },
            client,
            kinds: Kinds::default(),
            capabilities: Mutex::default(),
            impersonated: impersonate::Clients::default(),
        }
    }

    /// A target acting as `account` (a ServiceAccount of `namespace` there,
    /// impersonated), or with the cluster's credentials.
    pub fn target(
        self: &Arc<Self>,
        namespace: &str,
        account: Option<&str>,
    ) -> Result<Target, String> {
        let client = match account {
            Some(sa) => {
                let user = impersonate::service_account_user(namespace, sa);
                self.impersonated.get(&self.client, &user)?
            }
            None => self.client.clone(),
        };
        Ok(Target {
            client,
            cluster: self.clone(),
        })
    }

    /// What helm is told of the cluster, looked up at most every 5 minutes.
    pub async fn capabilities(&self) -> Capabilities {
        if let Some((at, caps)) = self.capabilities.lock().expect("caps poisoned").as_ref() {
            if at.elapsed() < Duration::from_secs(300) {
                return caps.clone();
            }
        }
        let mut caps = Capabilities::default();
        if let Ok(v) = self.client.apiserver_version().await {
            caps.kube_version = Some(v.git_version);
        }
        if let Ok(discovery) = kube::Discovery::new(self.client.clone()).run().await {
            for group in discovery.groups() {
                for (ar, _) in group.recommended_resources() {
                    caps.api_versions.push(ar.api_version.clone());
                    caps.api_versions
                        .push(format!("{}/{}", ar.api_version, ar.kind));
                }
            }
            caps.api_versions.sort();
            caps.api_versions.dedup();
        }
        *self.capabilities.lock().expect("caps poisoned") = Some((Instant::now(), caps.clone()));
        caps
    }
}

/// Other clusters, one per kubeconfig Secret, made again when the
/// Secret's kubeconfig changes (a rotated credential).
#[derive(Default)]
pub struct Remotes {
    by_secret: Mutex<HashMap<String, (u64, Arc<Cluster>)>>,
}

impl Remotes {
    /// The cluster the kubeconfig of `ns/secret` (key `key`) reaches.
    pub async fn get(
        &self,
        ns: &str,
        reference: &KubeConfigRef,
        data: &BTreeMap<String, Vec<u8>>,
        make: impl FnOnce(String, kube::Client) -> Cluster,
    ) -> Result<Arc<Cluster>, String> {
        let secret = format!("{ns}/{}", reference.secret_ref.name);
        let mut h = DefaultHasher::new();
        (reference, data).hash(&mut h);
        let hash = h.finish();
        if let Some((seen, cluster)) = self
            .by_secret
            .lock()
            .expect("remotes poisoned")
            .get(&secret)
        {
            if *seen == hash {
                return Ok(cluster.clone());
            }
        }
        let (server, client) = connect(ns, reference, data).await?;
        info!(secret = %secret, server = %server, "connected to another cluster");
        let cluster = Arc::new(make(
            format!(" on cluster {server} (kubeconfig Secret {secret})"),
            client,
        ));
        self.by_secret
            .lock()
            .expect("remotes poisoned")
            .insert(secret, (hash, cluster.clone()));
        Ok(cluster)
    }
}

/// A client for the cluster `gs` applies to: `client`'s own, or the one
/// `spec.kubeConfig` names (its Secret read with `client`'s rights). For
/// commands that look at a GitSync's objects (`diff`, `tree`).
pub async fn client_of(client: &kube::Client, gs: &GitSync) -> Result<kube::Client, String> {
    let Some(reference) = &gs.spec.kube_config else {
        return Ok(client.clone());
    };
    let ns = gs.namespace().unwrap_or_default();
    let name = &reference.secret_ref.name;
    let at = format!("Secret {ns}/{name} (spec.kubeConfig.secretRef)");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|e| format!("reading {at}: {e}"))?
        .ok_or_else(|| format!("{at} does not exist"))?;
    let data = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    Ok(connect(&ns, reference, &data).await?.1)
}

/// The kubeconfig's key in the Secret: `key`, else `value`, else `value.yaml`.
fn pick_key<'a>(
    secret: &str,
    key: Option<&'a str>,
    data: &'a BTreeMap<String, Vec<u8>>,
) -> Result<(&'a str, &'a [u8]), String> {
    let keys: Vec<&str> = match key {
        Some(k) => vec![k],
        None => DEFAULT_KEYS.to_vec(),
    };
    keys.iter()
        .find_map(|k| data.get_key_value(*k))
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .ok_or_else(|| {
            format!(
                "Secret {secret} (spec.kubeConfig.secretRef) has no key {}",
                keys.join(" or ")
            )
        })
}

/// The server and a client for the kubeconfig in `data` (the Secret
/// `reference` names, in `ns`), refused if it would run a program or read a
/// file of the controller's.
pub async fn connect(
    ns: &str,
    reference: &KubeConfigRef,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<(String, kube::Client), String> {
    let secret = format!("{ns}/{}", reference.secret_ref.name);
    let (key, bytes) = pick_key(&secret, reference.secret_ref.key.as_deref(), data)?;
    let at = format!("Secret {secret} key {key} (spec.kubeConfig.secretRef)");
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{at}: not UTF-8 text"))?;
    let kubeconfig =
        Kubeconfig::from_yaml(text).map_err(|e| format!("{at}: not a kubeconfig: {e}"))?;
    refuse_local_access(&kubeconfig).map_err(|why| format!("{at}: {why}"))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("{at}: {e}"))?;
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| format!("{at}: {e}"))?;
    Ok((server.trim_end_matches('/').to_string(), client))
}

/// A kubeconfig from a Secret is anyone's with write access to that
/// Secret: it may not make the controller run programs (`exec`,
/// `auth-provider`), read its files (paths instead of `*-data`), or skip
/// TLS verification.
pub fn refuse_local_access(kc: &Kubeconfig) -> Result<(), String> {
    for named in &kc.auth_infos {
        let Some(user) = &named.auth_info else {
            continue;
        };
        let who = format!("user {:?}", named.name);
        if user.exec.is_some() {
            return Err(format!("{who} uses exec, which would run a program in the controller; use a token or client-certificate-data"));
        }
        if user.auth_provider.is_some() {
            return Err(format!("{who} uses auth-provider, which is not supported; use a token or client-certificate-data"));
        }
        for (field, path) in [
            ("tokenFile", &user.token_file),
            ("client-certificate", &user.client_certificate),
            ("client-key", &user.client_key),
        ] {
            if path.is_some() {
                return Err(format!("{who} names a file ({field}), which would be read from the controller's disk; inline it ({field}-data or token)"));
            }
        }
    }
    for named in &kc.clusters {
        let Some(cluster) = &named.cluster else {
            continue;
        };
        let which = format!("cluster {:?}", named.name);
        if cluster.certificate_authority.is_some() {
            return Err(format!("{which} names a file (certificate-authority), which would be read from the controller's disk; use certificate-authority-data"));
        }
        if cluster.insecure_skip_tls_verify == Some(true) {
            return Err(format!(
                "{which} sets insecure-skip-tls-verify; give certificate-authority-data instead"
            ));
        }
    }
    Ok(())
}

/// Watches of applied objects, one per kind, selected by the owner labels:
/// any change to an applied object triggers its GitSync (self-heal).
pub struct Watches {
    client: kube::Client,
    selector: String,
    started: Mutex<HashMap<(String, String, String), tokio::task::JoinHandle<()>>>,
    trigger: mpsc::UnboundedSender<ObjectRef<GitSync>>,
}

impl Watches {
    /// Asks for a reconcile of GitSync `namespace/name` now.
    pub fn trigger(&self, namespace: &str, name: &str) {
        let _ = self
            .trigger
            .unbounded_send(ObjectRef::new(name).within(namespace));
    }

    pub fn ensure(&self, resource: &ApiResource) {
        let key = (
            resource.group.clone(),
            resource.version.clone(),
            resource.kind.clone(),
        );
        let mut started = self.started.lock().expect("watches poisoned");
        if started.contains_key(&key) {
            return;
        }
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), resource);
        let trigger = self.trigger.clone();
        let config = watcher::Config::default().labels(&self.selector);
        let gitsyncs = resource.group == "driftless.dev" && resource.kind == "GitSync";
        debug!(kind = %resource.kind, "watching applied objects");
        let task = tokio::spawn(async move {
            let mut events = watcher(api, config)
                .default_backoff()
                .touched_objects()
                .boxed();
            while let Some(event) = events.next().await {
                let Ok(obj) = event else { continue };
                let labels = obj.labels();
                if let (Some(name), Some(ns)) =
                    (labels.get(LABEL_NAME), labels.get(LABEL_NAMESPACE))
                {
                    // A GitSync that applies itself: its own status writes
                    // would trigger it again and again; its spec changes
                    // trigger it through its own watch.
                    if gitsyncs
                        && obj.name_any() == *name
                        && obj.namespace().as_deref() == Some(ns.as_str())
                    {
                        continue;
                    }
                    if trigger
                        .unbounded_send(ObjectRef::new(name).within(ns))
                        .is_err()
                    {
                        return; // the controller is gone
                    }
                }
            }
        });
        started.insert(key, task);
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in self.started.lock().expect("watches poisoned").values() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(user: &str, cluster: &str) -> Kubeconfig {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443\n{cluster}users:\n- name: u\n  user:\n{user}contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        );
        Kubeconfig::from_yaml(&text).unwrap()
    }

    #[test]
    fn inline_credentials_are_accepted() {
        let kc = kubeconfig("    token: abc\n", "    certificate-authority-data: AAAA\n");
        assert_eq!(refuse_local_access(&kc), Ok(()));
    }

    #[test]
    fn programs_files_and_skipped_tls_are_refused() {
        let cases = [
            (
                "    exec: {apiVersion: client.authentication.k8s.io/v1, command: sh}\n",
                "",
                "uses exec",
            ),
            ("    tokenFile: /var/run/secrets/token\n", "", "(tokenFile)"),
            ("    client-key: /etc/key\n", "", "(client-key)"),
            (
                "    token: a\n",
                "    certificate-authority: /etc/ca\n",
                "(certificate-authority)",
            ),
            (
                "    token: a\n",
                "    insecure-skip-tls-verify: true\n",
                "insecure-skip-tls-verify",
            ),
        ];
        for (user, cluster, expected) in cases {
            let why = refuse_local_access(&kubeconfig(user, cluster)).unwrap_err();
            assert!(why.contains(expected), "{why:?} should say {expected:?}");
        }
    }

    #[test]
    fn the_key_defaults_to_value_then_value_yaml() {
        let mut data = BTreeMap::new();
        data.insert("value.yaml".to_string(), b"b".to_vec());
        assert_eq!(pick_key("ns/s", None, &data).unwrap().0, "value.yaml");
        data.insert("value".to_string(), b"a".to_vec());
        assert_eq!(pick_key("ns/s", None, &data).unwrap().0, "value");
        let err = pick_key("ns/s", Some("config"), &data).unwrap_err();
        assert_eq!(
            err,
            "Secret ns/s (spec.kubeConfig.secretRef) has no key config"
        );
    }
}
