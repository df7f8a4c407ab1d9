//! Changed configuration reaches the pods: each Deployment, StatefulSet and
//! DaemonSet of a revision gets a digest of the ConfigMaps and Secrets it
//! uses on its pod template, so a change to them in Git (or to a connection
//! Secret driftless writes) changes the template and rolls the workload.
//!
//! Stamped on every apply pass, not at render: the rendered revision is
//! cached, and connection Secrets change outside Git.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_lc_rs::digest::{Context, SHA256};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::Value;

use super::apply::{self, Applied, ApplyError, Kinds, Owner};
use crate::manifests::Manifest;

/// On the pod template: the digest of the configuration the pods use.
pub const CONFIG_HASH: &str = "driftless.dev/config-hash";
/// `driftless.dev/config-rollout: disabled` on a workload leaves its pod
/// template alone.
pub const CONFIG_ROLLOUT: &str = "driftless.dev/config-rollout";
/// Hashed for a connection Secret not written yet, so that its appearance
/// changes the hash too.
const ABSENT: &str = "<absent>";

/// A ConfigMap or a Secret, as a pod spec names it: (is a Secret, name).
type Ref = (bool, String);
/// Connection Secrets by (namespace, name): their content's digest, or
/// `None` while absent. Digests only: the plaintext is not kept.
pub type Connections = BTreeMap<(String, String), Option<String>>;

/// [`apply::revision`] of `manifests` with the hash stamped on each workload
/// that uses configuration of this revision. Every apply of a GitSync goes
/// through here, re-applies too: one that did not stamp would take the hash
/// off again and roll the workloads back and forth.
pub async fn apply(
    client: &kube::Client,
    kinds: &Kinds,
    manifests: &[Manifest],
    owner: &Owner,
    atomic: bool,
    timeout: Duration,
) -> Result<Vec<Applied>, ApplyError> {
    let default_ns = owner.namespace_for(None);
    let connections = connection_secrets(client, manifests, default_ns).await?;
    let manifests = stamp(manifests, default_ns, &connections);
    apply::revision(client, kinds, &manifests, owner, atomic, timeout).await
}

/// Reads (and digests) the connection Secrets of this revision's managed
/// resources that some workload uses; none used, no API call.
pub async fn connection_secrets(
    client: &kube::Client,
    manifests: &[Manifest],
    default_ns: &str,
) -> Result<Connections, kube::Error> {
    let used: BTreeSet<(String, String)> = workloads(manifests)
        .flat_map(|(m, pod)| {
            let ns = namespace_of(m, default_ns).to_string();
            references(pod)
                .into_iter()
                .filter(|(secret, _)| *secret)
                .map(move |(_, name)| (ns.clone(), name))
        })
        .collect();
    let mut out = Connections::new();
    for key in connection_refs(manifests, default_ns) {
        if !used.contains(&key) || out.contains_key(&key) {
            continue;
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), &key.0);
        let digest = api
            .get_opt(&key.1)
            .await?
            .map(|s| digest(&serde_json::to_value(s).expect("secrets serialize")));
        out.insert(key, digest);
    }
    Ok(out)
}

/// The pure part: `manifests` with [`CONFIG_HASH`] on the pod template of
/// each workload whose referenced ConfigMaps and Secrets this revision
/// applies (or are connection Secrets in `connections`).
pub fn stamp<'a>(
    manifests: &'a [Manifest],
    default_ns: &str,
    connections: &Connections,
) -> Cow<'a, [Manifest]> {
    // (is a Secret, namespace, name) -> digest of its content.
    let mut config: BTreeMap<(bool, String, String), String> = BTreeMap::new();
    for m in manifests {
        if m.api_version() == "v1" && matches!(m.kind(), "ConfigMap" | "Secret") {
            let key = (
                m.kind() == "Secret",
                namespace_of(m, default_ns).to_string(),
                m.name().to_string(),
            );
            config.insert(key, digest(&m.value));
        }
    }
    let mut hashes: BTreeMap<usize, String> = BTreeMap::new();
    for (i, m) in manifests.iter().enumerate() {
        let Some(pod) = pod_spec(m) else { continue };
        let ns = namespace_of(m, default_ns);
        let mut h = Context::new(&SHA256);
        let mut any = false;
        for (secret, name) in references(pod) {
            let key = (secret, ns.to_string(), name);
            let found = config.get(&key).map(String::as_str).or_else(|| {
                let conn = connections.get(&(key.1.clone(), key.2.clone()))?;
                Some(conn.as_deref().unwrap_or(ABSENT))
            });
            if let Some(d) = found {
                any = true;
                let kind = if secret { "Secret" } else { "ConfigMap" };
                feed(&mut h, &[kind, &key.2, d]);
            }
        }
        if any {
            hashes.insert(i, hex(h.finish().as_ref()));
        }
    }
    if hashes.is_empty() {
        return Cow::Borrowed(manifests);
    }
    let stamped = manifests.iter().enumerate().map(|(i, m)| {
        let Some(hash) = hashes.get(&i) else {
            return m.clone();
        };
        let mut value = m.value.clone();
        if let Some(template) = value
            .pointer_mut("/spec/template")
            .and_then(Value::as_object_mut)
        {
            let meta = template
                .entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(meta) = meta.as_object_mut() {
                let annotations = meta
                    .entry("annotations")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(a) = annotations.as_object_mut() {
                    a.insert(CONFIG_HASH.into(), Value::String(hash.clone()));
                }
            }
        }
        m.with_value(value)
    });
    Cow::Owned(stamped.collect())
}

/// Each workload that has not opted out, with its pod spec.
fn workloads(manifests: &[Manifest]) -> impl Iterator<Item = (&Manifest, &Value)> {
    manifests.iter().filter_map(|m| pod_spec(m).map(|p| (m, p)))
}

/// The pod spec of a Deployment, StatefulSet or DaemonSet that has not opted out.
fn pod_spec(m: &Manifest) -> Option<&Value> {
    let workload =
        m.group() == "apps" && matches!(m.kind(), "Deployment" | "StatefulSet" | "DaemonSet");
    let opted_out = m.value["metadata"]["annotations"][CONFIG_ROLLOUT].as_str() == Some("disabled");
    (workload && !opted_out)
        .then(|| m.value.pointer("/spec/template/spec"))
        .flatten()
}

/// The ConfigMaps and Secrets a pod spec mounts, takes env from, or uses via envFrom.
fn references(pod: &Value) -> BTreeSet<Ref> {
    let mut refs = BTreeSet::new();
    let mut add = |secret: bool, name: &Value| {
        if let Some(n) = name.as_str().filter(|n| !n.is_empty()) {
            refs.insert((secret, n.to_string()));
        }
    };
    let each = |v: &Value| v.as_array().cloned().unwrap_or_default();
    for v in each(&pod["volumes"]) {
        add(false, &v["configMap"]["name"]);
        add(true, &v["secret"]["secretName"]);
        for s in each(&v["projected"]["sources"]) {
            add(false, &s["configMap"]["name"]);
            add(true, &s["secret"]["name"]);
        }
    }
    for c in each(&pod["containers"])
        .into_iter()
        .chain(each(&pod["initContainers"]))
    {
        for e in each(&c["env"]) {
            add(false, &e["valueFrom"]["configMapKeyRef"]["name"]);
            add(true, &e["valueFrom"]["secretKeyRef"]["name"]);
        }
        for e in each(&c["envFrom"]) {
            add(false, &e["configMapRef"]["name"]);
            add(true, &e["secretRef"]["name"]);
        }
    }
    refs
}

/// (namespace, name) of each `spec.writeConnectionSecretToRef` of this
/// revision's managed resources (the Secret lives in the resource's namespace).
fn connection_refs(manifests: &[Manifest], default_ns: &str) -> Vec<(String, String)> {
    manifests
        .iter()
        .filter(|m| m.group().ends_with("driftless.dev"))
        .filter_map(|m| {
            let name = m.str_at("/spec/writeConnectionSecretToRef/name");
            (!name.is_empty()).then(|| (namespace_of(m, default_ns).to_string(), name.to_string()))
        })
        .collect()
}

/// As apply does: a namespaced object without a namespace goes to the GitSync's.
fn namespace_of<'a>(m: &'a Manifest, default_ns: &'a str) -> &'a str {
    match m.namespace() {
        "" => default_ns,
        ns => ns,
    }
}

/// The content of a ConfigMap or Secret, canonically: sorted keys (whatever
/// order Git or the server gives), each part length-prefixed.
fn digest(obj: &Value) -> String {
    let mut h = Context::new(&SHA256);
    for field in ["data", "stringData", "binaryData"] {
        let Some(map) = obj[field].as_object() else {
            continue;
        };
        let sorted: BTreeMap<&String, &Value> = map.iter().collect();
        feed(&mut h, &[field]);
        for (k, v) in sorted {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            feed(&mut h, &[k, &v]);
        }
    }
    hex(h.finish().as_ref())
}

fn feed(h: &mut Context, parts: &[&str]) {
    for p in parts {
        h.update(format!("{}:", p.len()).as_bytes());
        h.update(p.as_bytes());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::Origin;
    use serde_json::json;

    fn manifest(v: Value) -> Manifest {
        Manifest::new(Origin::at("f.yaml", 1, 1), v, Default::default())
    }

    fn cm(name: &str, data: Value) -> Manifest {
        manifest(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name}, "data": data}))
    }

    fn secret(name: &str, ns: Option<&str>, data: Value) -> Manifest {
        manifest(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns}, "stringData": data}))
    }

    fn deployment(pod: Value, annotations: Value) -> Manifest {
        manifest(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "annotations": annotations},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": pod}}}))
    }

    /// The hash stamped on the (only) workload, if any.
    fn hash_of(manifests: &[Manifest], connections: &Connections) -> Option<String> {
        let out = stamp(manifests, "team", connections);
        out.iter()
            .find(|m| m.kind() == "Deployment")
            .and_then(|m| {
                m.value["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH].as_str()
            })
            .map(str::to_string)
    }

    #[test]
    fn each_reference_form_is_found() {
        let pods = [
            json!({"volumes": [{"name": "v", "configMap": {"name": "x"}}]}),
            json!({"volumes": [{"name": "v", "secret": {"secretName": "x"}}]}),
            json!({"volumes": [{"name": "v", "projected": {"sources": [{"configMap": {"name": "x"}}]}}]}),
            json!({"volumes": [{"name": "v", "projected": {"sources": [{"secret": {"name": "x"}}]}}]}),
            json!({"containers": [{"name": "c", "env": [{"name": "E", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}}]}]}),
            json!({"initContainers": [{"name": "c", "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "x", "key": "k"}}}]}]}),
            json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "x"}}]}]}),
            json!({"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "x"}}]}]}),
        ];
        for pod in pods {
            let is_secret = pod.to_string().contains("ecret");
            let config = if is_secret {
                secret("x", None, json!({"k": "1"}))
            } else {
                cm("x", json!({"k": "1"}))
            };
            let changed = if is_secret {
                secret("x", None, json!({"k": "2"}))
            } else {
                cm("x", json!({"k": "2"}))
            };
            let d = deployment(pod.clone(), json!({}));
            let before = hash_of(&[config, d.clone()], &Connections::new());
            let after = hash_of(&[changed, d], &Connections::new());
            assert!(before.is_some(), "{pod}: no hash");
            assert_ne!(before, after, "{pod}: a change is not seen");
        }
    }

    #[test]
    fn stable_across_key_order_and_unrelated_config() {
        let pod =
            json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "app"}}]}]});
        let d = deployment(pod, json!({}));
        let a = hash_of(
            &[cm("app", json!({"a": "1", "b": "2"})), d.clone()],
            &Connections::new(),
        );
        let reordered: Value = serde_json::from_str(r#"{"b": "2", "a": "1"}"#).unwrap();
        let b = hash_of(
            &[
                d.clone(),
                cm("app", reordered),
                cm("other", json!({"z": "9"})),
            ],
            &Connections::new(),
        );
        assert_eq!(a, b);
        let c = hash_of(
            &[
                cm("app", json!({"a": "1", "b": "2"})),
                d,
                cm("other", json!({"z": "8"})),
            ],
            &Connections::new(),
        );
        assert_eq!(a, c, "an unreferenced ConfigMap changed the hash");
    }

    #[test]
    fn nothing_referenced_or_opted_out_is_left_alone() {
        let pod = json!({"volumes": [{"name": "v", "configMap": {"name": "app"}}]});
        let config = cm("app", json!({"a": "1"}));
        // References nothing of the revision: borrowed, untouched.
        let none = [
            config.clone(),
            deployment(json!({"containers": []}), json!({})),
        ];
        assert!(matches!(
            stamp(&none, "team", &Connections::new()),
            Cow::Borrowed(_)
        ));
        let opted = [config, deployment(pod, json!({CONFIG_ROLLOUT: "disabled"}))];
        assert!(matches!(
            stamp(&opted, "team", &Connections::new()),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_secret_in_another_namespace_is_not_included() {
        let pod = json!({"volumes": [{"name": "v", "secret": {"secretName": "db"}}]});
        let d = deployment(pod, json!({}));
        let elsewhere = hash_of(
            &[secret("db", Some("other"), json!({"p": "1"})), d.clone()],
            &Connections::new(),
        );
        assert_eq!(elsewhere, None);
        // Without a namespace it goes to the GitSync's ("team"), as the workload does.
        let here = hash_of(
            &[secret("db", None, json!({"p": "1"})), d.clone()],
            &Connections::new(),
        );
        let explicit = hash_of(
            &[secret("db", Some("team"), json!({"p": "1"})), d],
            &Connections::new(),
        );
        assert!(here.is_some());
        assert_eq!(here, explicit);
    }

    #[test]
    fn connection_secrets_count_absent_or_present() {
        let pod = json!({"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "bucket-conn"}}]}]});
        let d = deployment(pod, json!({}));
        let bucket = manifest(
            json!({"apiVersion": "aws.driftless.dev/v1alpha1", "kind": "Bucket",
            "metadata": {"name": "b"}, "spec": {"writeConnectionSecretToRef": {"name": "bucket-conn"}}}),
        );
        let all = [bucket, d];
        assert_eq!(
            connection_refs(&all, "team"),
            vec![("team".to_string(), "bucket-conn".to_string())]
        );
        let key = ("team".to_string(), "bucket-conn".to_string());
        let absent = hash_of(&all, &Connections::from([(key.clone(), None)]));
        let one = hash_of(&all, &Connections::from([(key.clone(), Some("d1".into()))]));
        let two = hash_of(&all, &Connections::from([(key, Some("d2".into()))]));
        assert!(absent.is_some());
        assert_ne!(absent, one);
        assert_ne!(one, two);
    }

    #[test]
    fn digest_is_of_content_only() {
        let a = json!({"metadata": {"name": "x", "resourceVersion": "1"}, "data": {"k": "dg=="}});
        let b = json!({"metadata": {"name": "x", "resourceVersion": "2"}, "data": {"k": "dg=="}});
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&json!({"data": {"k": "dw=="}})));
        // A key moved between fields is a change.
        assert_ne!(
            digest(&json!({"data": {"k": "v"}})),
            digest(&json!({"binaryData": {"k": "v"}}))
        );
    }
}
