//! `KeyPair` (aws.driftless.dev/v1alpha1): an EC2 key pair imported from an
//! OpenSSH public key. Import only: driftless never calls CreateKeyPair
//! (which returns a private key), so no private key passes through it.

use super::is_not_found;
use super::prelude::*;
use crate::errors::code_of;

/// The CEL rule of `publicKeyMaterial`: the key types EC2 imports.
fn public_key_rule() -> serde_json::Value {
    serde_json::json!({
        "rule": r"self.matches('^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( [^\\n]*)?\\s*$')",
        "message": "publicKeyMaterial must be an OpenSSH public key: ssh-rsa, ssh-ed25519 or ecdsa-sha2-nistp256/384/521, a space and the base64 key (e.g. the contents of id_ed25519.pub)"
    })
}

/// The desired state of a key pair.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyPairParameters {
    /// The OpenSSH public key to import, e.g. `ssh-ed25519 AAAA... me@host`
    /// (the comment is not compared). Immutable: a change is refused.
    #[schemars(length(min = 1, max = 16384), extend("x-kubernetes-validations" = [public_key_rule()]))]
    pub public_key_material: String,
    /// The key pair's name in EC2 (unset: `<namespace>-<name>`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub key_name: Option<String>,
    /// Tags of the key pair. driftless adds its own `driftless.dev/*` owner tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40))]
    pub tags: BTreeMap<String, String>,
}

observation! {
    /// What AWS reports about the key pair.
    pub struct KeyPairObservation {
        key_pair_id: String,
        key_name: String,
        /// The fingerprint EC2 computed for the imported key.
        key_fingerprint: String,
        /// `rsa` or `ed25519`.
        key_type: String,
    }
}

field_keys! {
    /// What a key pair's observation compares.
    pub enum KeyPairField {
        PublicKeyMaterial = "publicKeyMaterial" immutable,
        KeyName = "keyName" immutable,
        Tags = "tags",
    }
}

managed_resource! {
    /// An EC2 key pair imported from a public key. Its id (`key-...`) is
    /// recorded in the `driftless.dev/external-name` annotation; set that
    /// annotation by hand to import an existing key pair.
    kind KeyPair("KeyPair"), spec KeyPairSpec, status KeyPairStatus("KeyPairStatus"),
    group "aws.driftless.dev", category "aws",
    for_provider KeyPairParameters, at_provider KeyPairObservation, fields KeyPairField,
    references(),
}

/// `DescribeKeyPairs` has no pagination: one call returns every match.
#[async_trait]
impl Described for sdk::KeyPairInfo {
    const WHAT: &'static str = "key pair";

    fn id(&self) -> &str {
        self.key_pair_id().unwrap_or_default()
    }

    fn tags(&self) -> &[sdk::Tag] {
        sdk::KeyPairInfo::tags(self)
    }

    async fn list(
        ec2: &aws_sdk_ec2::Client,
        filters: Vec<sdk::Filter>,
    ) -> Result<Vec<Self>, CloudError> {
        let req = ec2.describe_key_pairs().include_public_key(true);
        let out = req.set_filters(Some(filters)).send().await;
        Ok(out.map_err(cloud_error)?.key_pairs().to_vec())
    }

    async fn describe_one(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<Option<Self>, CloudError> {
        let req = ec2.describe_key_pairs().include_public_key(true);
        match req.key_pair_ids(id).send().await {
            // LocalStack ignores KeyPairIds and returns every key pair.
            Ok(out) => Ok(out.key_pairs().iter().find(|k| k.id() == id).cloned()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(cloud_error(e)),
        }
    }
}

/// The name the key pair has in EC2.
fn key_name(t: &Target<'_, KeyPair>) -> String {
    let i = t.identity;
    let default = || format!("{}-{}", i.namespace, i.name);
    t.spec.key_name.clone().unwrap_or_else(default)
}

/// A public key without its comment: its type and base64 blob.
fn key_only(key: &str) -> String {
    key.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

#[async_trait]
impl Ec2Kind for KeyPair {
    type Sdk = sdk::KeyPairInfo;

    async fn observe(
        _ec2: &Ec2,
        t: &Target<'_, KeyPair>,
        kp: &sdk::KeyPairInfo,
    ) -> Observed<KeyPair> {
        let mut diff = Vec::new();
        // Not compared when the describe did not return the key.
        let want_key = key_only(&t.spec.public_key_material);
        let have_key = kp.public_key().map(key_only);
        diff.compare(
            KeyPairField::PublicKeyMaterial,
            have_key.as_deref().unwrap_or_default(),
            have_key.as_ref().map(|_| want_key.as_str()),
        );
        let name = kp.key_name().unwrap_or_default();
        diff.compare(KeyPairField::KeyName, name, Some(key_name(t).as_str()));
        diff.extend(tags_diff(KeyPairField::Tags, kp, t.identity, &t.spec.tags));
        let fingerprint = kp.key_fingerprint().unwrap_or_default();
        Ok(Observation {
            diff,
            ready: true,
            at_provider: Some(KeyPairObservation {
                key_pair_id: Some(kp.id().to_string()),
                key_name: Some(name.to_string()),
                key_fingerprint: kp.key_fingerprint().map(str::to_string),
                key_type: kp.key_type().map(|k| k.as_str().to_string()),
            }),
            connection_details: BTreeMap::from([
                ("keyName".to_string(), name.to_string()),
                ("fingerprint".to_string(), fingerprint.to_string()),
            ]),
            ..Observation::exists(kp.id())
        })
    }

    async fn create(ec2: &Ec2, t: &Target<'_, KeyPair>) -> Result<Created, CloudError> {
        let tags = tag_specification(ResourceType::KeyPair, t.identity, &t.spec.tags);
        let material = aws_sdk_ec2::primitives::Blob::new(t.spec.public_key_material.trim());
        let req = ec2.client.import_key_pair().key_name(key_name(t));
        let sent = req
            .public_key_material(material)
            .tag_specifications(tags)
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(e) if code_of(&e) == Some("InvalidKeyPair.Duplicate") => {
                let why = format!(
                    "a key pair named {:?} already exists and is not this object's: set forProvider.keyName to another name, or import it by its id with the driftless.dev/external-name annotation",
                    key_name(t)
                );
                return Err(CloudError::terminal("InvalidKeyPair.Duplicate", why));
            }
            Err(e) => return Err(cloud_error(e)),
        };
        let id = new_id(out.key_pair_id(), "ImportKeyPair returned no key pair id")?;
        let _written = ec2.created::<sdk::KeyPairInfo>(t.identity, &id);
        Ok(Created { external_name: id })
    }

    async fn update(
        ec2: &Ec2,
        t: &Target<'_, KeyPair>,
        kp: &sdk::KeyPairInfo,
        fields: Vec<KeyPairField>,
    ) -> Result<(), CloudError> {
        for field in fields {
            match field {
                KeyPairField::Tags => ec2.sync_tags(kp, t.identity, &t.spec.tags).await?,
                KeyPairField::PublicKeyMaterial | KeyPairField::KeyName => {} // immutable
            }
        }
        Ok(())
    }

    async fn delete(ec2: &Ec2, kp: &sdk::KeyPairInfo) -> Result<Deletion, CloudError> {
        // By name (unique in a region, read with the id just now): LocalStack
        // ignores KeyPairId here, answering success and deleting nothing.
        let req = ec2.client.delete_key_pair();
        let sent = req
            .set_key_name(kp.key_name().map(str::to_string))
            .send()
            .await;
        ec2.deletion(kp, sent).await
    }
}
