//! `driftless keys`: age key pairs made in the cluster (the sealed-secrets
//! flow): the identity goes straight into a Secret, only the public
//! recipient is printed, so the private key never crosses the terminal.

use std::collections::BTreeMap;

use age::secrecy::ExposeSecret;
use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

use crate::decrypt::{Identities, AGE_KEY_SUFFIX};

/// Makes an age identity in Secret `ns/name` (key `<name>.agekey`) and
/// returns its recipient. An existing Secret is never overwritten.
pub async fn create(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    if api.get_opt(name).await?.is_some() {
        bail!(
            "Secret {ns}/{name} already exists; a key is never overwritten (`driftless keys public -n {ns} {name}` prints its recipient)"
        );
    }
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = format!(
        "# created: {created} by driftless keys create\n# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "driftless"},
            "annotations": {"driftless.dev/age-recipient": recipient},
        },
        "type": "Opaque",
        "stringData": {format!("{name}{AGE_KEY_SUFFIX}"): text},
    }))?;
    api.create(&PostParams::default(), &secret)
        .await
        .with_context(|| format!("creating Secret {ns}/{name}"))?;
    Ok(recipient)
}

/// The recipients of the age identities in Secret `ns/name`.
pub async fn public(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = api
        .get_opt(name)
        .await?
        .with_context(|| format!("Secret {ns}/{name} does not exist"))?;
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let ids = Identities::from_secret_data(&format!("{ns}/{name}"), &data)
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(ids.recipients())
}
