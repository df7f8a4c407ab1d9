//! `Bucket` (aws.driftless.dev/v1alpha1): an S3 bucket named by the object's
//! `metadata.name` (or its external-name annotation).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    VersioningConfiguration,
};
use driftless_provider::{
    field_keys, managed_resource, observation, CloudError, Compare, Created, Deletion, External,
    FieldDiff, Observation, Owned, Target, TAG_MANAGED_BY, TAG_OWNER,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::errors::{cloud_error, code_of, status_of};
use crate::{AwsKind, AwsSession};

/// Versioning state of a bucket.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Versioning {
    Enabled,
    Suspended,
}

/// The four S3 public access block flags (each defaults to false).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicAccessBlock {
    #[serde(default)]
    pub block_public_acls: bool,
    #[serde(default)]
    pub ignore_public_acls: bool,
    #[serde(default)]
    pub block_public_policy: bool,
    #[serde(default)]
    pub restrict_public_buckets: bool,
}

/// Default encryption algorithm.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EncryptionAlgorithm {
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    AwsKms,
}

/// Default server-side encryption of new objects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.kmsKeyId) || self.algorithm == 'aws:kms'",
     "message": "kmsKeyId is only valid with algorithm aws:kms"}
]))]
pub struct Encryption {
    pub algorithm: EncryptionAlgorithm,
    /// KMS key id or ARN (aws:kms only; default: the AWS managed key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

/// The desired state of an S3 bucket.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketParameters {
    /// Region of the bucket (default: the ProviderConfig's). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "region is immutable"}
    ]))]
    pub region: Option<String>,
    /// Enabled or Suspended; unset leaves versioning alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<Versioning>,
    /// Tags of the bucket. driftless adds its own `driftless.dev/*` owner tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40))]
    pub tags: BTreeMap<String, String>,
    /// Unset leaves the public access block alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access_block: Option<PublicAccessBlock>,
    /// Unset leaves default encryption alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_side_encryption: Option<Encryption>,
    /// Delete the bucket's objects when the bucket is deleted. Without it, a
    /// non-empty bucket is not deleted and the status says so.
    #[serde(default)]
    pub force_destroy: bool,
}

observation! {
    /// What AWS reports about the bucket.
    pub struct BucketObservation {
        arn: String,
        region: String,
        endpoint: String,
    }
}

field_keys! {
    /// What a bucket's observation compares.
    pub enum BucketField {
        Region = "region" immutable,
        Tags = "tags",
        Versioning = "versioning",
        PublicAccessBlock = "publicAccessBlock",
        ServerSideEncryption = "serverSideEncryption",
    }
}

managed_resource! {
    /// An S3 bucket. Its name is `metadata.name`, or the
    /// `driftless.dev/external-name` annotation when set.
    kind Bucket("Bucket"), spec BucketSpec, status BucketStatus("BucketStatus"),
    group "aws.driftless.dev", category "aws",
    for_provider BucketParameters, at_provider BucketObservation, fields BucketField,
    references(),
    validation(Rule::new("self.metadata.name.size() >= 3 && self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9][a-z0-9.-]*[a-z0-9]$') && !self.metadata.name.contains('..') && !self.metadata.name.matches('^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$') && !self.metadata.name.startsWith('xn--') && !self.metadata.name.endsWith('-s3alias')")
        .message("invalid bucket name: S3 bucket names are 3 to 63 characters of lowercase letters, digits, dots and hyphens, start and end with a letter or digit, and are not formatted like an IP address")),
}

impl AwsKind for Bucket {
    fn external(session: &AwsSession, spec: &BucketParameters) -> Arc<dyn External<Self>> {
        let region = spec
            .region
            .clone()
            .unwrap_or_else(|| session.region.clone());
        let conf = aws_sdk_s3::config::Builder::from(&session.sdk)
            .region(aws_sdk_s3::config::Region::new(region.clone()))
            .force_path_style(session.s3_path_style)
            .interceptor(session.count_calls())
            .build();
        Arc::new(BucketClient {
            s3: aws_sdk_s3::Client::from_conf(conf),
            region,
            endpoint: session.endpoint.clone(),
        })
    }
}

struct BucketClient {
    s3: aws_sdk_s3::Client,
    region: String,
    endpoint: Option<String>,
}

fn bucket_name(t: &Target<'_, Bucket>) -> String {
    t.external_name
        .map(str::to_string)
        .unwrap_or_else(|| t.identity.name.clone())
}

fn desired_tags(t: &Target<'_, Bucket>) -> BTreeMap<String, String> {
    let mut tags = t.spec.tags.clone();
    tags.extend(t.identity.owner_tags());
    tags
}

fn build_error(e: impl std::fmt::Display) -> CloudError {
    CloudError::terminal("InvalidRequest", e.to_string())
}

impl BucketClient {
    fn observation(
        &self,
        name: &str,
        region: &str,
    ) -> (BucketObservation, BTreeMap<String, String>) {
        let arn = format!("arn:aws:s3:::{name}");
        let endpoint = match &self.endpoint {
            Some(e) => format!("{}/{name}", e.trim_end_matches('/')),
            None => format!("https://{name}.s3.{region}.amazonaws.com"),
        };
        let details = BTreeMap::from([
            ("bucket".to_string(), name.to_string()),
            ("arn".to_string(), arn.clone()),
            ("region".to_string(), region.to_string()),
            ("endpoint".to_string(), endpoint.clone()),
        ]);
        (
            BucketObservation {
                arn: Some(arn),
                region: Some(region.to_string()),
                endpoint: Some(endpoint),
            },
            details,
        )
    }

    async fn tags(&self, name: &str) -> Result<BTreeMap<String, String>, CloudError> {
        match self.s3.get_bucket_tagging().bucket(name).send().await {
            Ok(out) => Ok(out
                .tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()),
            Err(e) if code_of(&e) == Some("NoSuchTagSet") => Ok(BTreeMap::new()),
            Err(e) => Err(cloud_error(e)),
        }
    }

    async fn versioning(&self, name: &str) -> Result<Option<Versioning>, CloudError> {
        let out = self
            .s3
            .get_bucket_versioning()
            .bucket(name)
            .send()
            .await
            .map_err(cloud_error)?;
        Ok(match out.status() {
            Some(BucketVersioningStatus::Enabled) => Some(Versioning::Enabled),
            Some(BucketVersioningStatus::Suspended) => Some(Versioning::Suspended),
            _ => None,
        })
    }

    async fn public_access_block(
        &self,
        name: &str,
    ) -> Result<Option<PublicAccessBlock>, CloudError> {
        match self.s3.get_public_access_block().bucket(name).send().await {
            Ok(out) => Ok(out
                .public_access_block_configuration()
                .map(|c| PublicAccessBlock {
                    block_public_acls: c.block_public_acls().unwrap_or(false),
                    ignore_public_acls: c.ignore_public_acls().unwrap_or(false),
                    block_public_policy: c.block_public_policy().unwrap_or(false),
                    restrict_public_buckets: c.restrict_public_buckets().unwrap_or(false),
                })),
            Err(e) if code_of(&e) == Some("NoSuchPublicAccessBlockConfiguration") => Ok(None),
            Err(e) => Err(cloud_error(e)),
        }
    }

    async fn encryption(&self, name: &str) -> Result<Option<Encryption>, CloudError> {
        match self.s3.get_bucket_encryption().bucket(name).send().await {
            Ok(out) => Ok(out
                .server_side_encryption_configuration()
                .and_then(|c| c.rules().first())
                .and_then(|r| r.apply_server_side_encryption_by_default())
                .map(|d| Encryption {
                    algorithm: match d.sse_algorithm() {
                        ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse => {
                            EncryptionAlgorithm::AwsKms
                        }
                        _ => EncryptionAlgorithm::Aes256,
                    },
                    kms_key_id: d.kms_master_key_id().map(str::to_string),
                })),
            Err(e) if code_of(&e) == Some("ServerSideEncryptionConfigurationNotFoundError") => {
                Ok(None)
            }
            Err(e) => Err(cloud_error(e)),
        }
    }

    async fn put_tags(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        let tag_set = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(build_error))
            .collect::<Result<Vec<_>, _>>()?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tag_set))
            .build()
            .map_err(build_error)?;
        self.s3
            .put_bucket_tagging()
            .bucket(name)
            .tagging(tagging)
            .send()
            .await
            .map_err(cloud_error)?;
        Ok(())
    }

    async fn put_versioning(&self, name: &str, v: Versioning) -> Result<(), CloudError> {
        let status = match v {
            Versioning::Enabled => BucketVersioningStatus::Enabled,
            Versioning::Suspended => BucketVersioningStatus::Suspended,
        };
        self.s3
            .put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(VersioningConfiguration::builder().status(status).build())
            .send()
            .await
            .map_err(cloud_error)?;
        Ok(())
    }

    async fn put_public_access_block(
        &self,
        name: &str,
        p: &PublicAccessBlock,
    ) -> Result<(), CloudError> {
        let conf = PublicAccessBlockConfiguration::builder()
            .block_public_acls(p.block_public_acls)
            .ignore_public_acls(p.ignore_public_acls)
            .block_public_policy(p.block_public_policy)
            .restrict_public_buckets(p.restrict_public_buckets)
            .build();
        self.s3
            .put_public_access_block()
            .bucket(name)
            .public_access_block_configuration(conf)
            .send()
            .await
            .map_err(cloud_error)?;
        Ok(())
    }

    async fn put_encryption(&self, name: &str, enc: &Encryption) -> Result<(), CloudError> {
        let algorithm = match enc.algorithm {
            EncryptionAlgorithm::Aes256 => ServerSideEncryption::Aes256,
            EncryptionAlgorithm::AwsKms => ServerSideEncryption::AwsKms,
        };
        let default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(algorithm)
            .set_kms_master_key_id(enc.kms_key_id.clone())
            .build()
            .map_err(build_error)?;
        let conf = ServerSideEncryptionConfiguration::builder()
            .rules(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(default)
                    .build(),
            )
            .build()
            .map_err(build_error)?;
        self.s3
            .put_bucket_encryption()
            .bucket(name)
            .server_side_encryption_configuration(conf)
            .send()
            .await
            .map_err(cloud_error)?;
        Ok(())
    }

    /// Deletes every object version and delete marker, then every object.
    async fn empty(&self, name: &str) -> Result<(), CloudError> {
        loop {
            let listed = self
                .s3
                .list_object_versions()
                .bucket(name)
                .send()
                .await
                .map_err(cloud_error)?;
            let mut ids = Vec::new();
            for v in listed.versions() {
                ids.push((
                    v.key().unwrap_or_default().to_string(),
                    v.version_id().map(str::to_string),
                ));
            }
            for m in listed.delete_markers() {
                ids.push((
                    m.key().unwrap_or_default().to_string(),
                    m.version_id().map(str::to_string),
                ));
            }
            if ids.is_empty() {
                break;
            }
            let objects = ids
                .into_iter()
                .map(|(key, version)| {
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version)
                        .build()
                        .map_err(build_error)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let delete = aws_sdk_s3::types::Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(build_error)?;
            self.s3
                .delete_objects()
                .bucket(name)
                .delete(delete)
                .send()
                .await
                .map_err(cloud_error)?;
        }
        Ok(())
    }
}

#[async_trait]
impl External<Bucket> for BucketClient {
    async fn observe(&self, t: &Target<'_, Bucket>) -> Result<Observation<Bucket>, CloudError> {
        let name = bucket_name(t);
        let head = match self.s3.head_bucket().bucket(&name).send().await {
            Ok(out) => out,
            Err(e) if status_of(&e) == Some(404) => return Ok(Observation::absent()),
            Err(e) if status_of(&e) == Some(403) => {
                return Err(CloudError::terminal(
                    "AccessDenied",
                    format!("bucket {name} exists but this account may not access it (it may belong to another account)"),
                ))
            }
            Err(e) => return Err(cloud_error(e)),
        };
        let region = head.bucket_region().unwrap_or(&self.region).to_string();
        let tags = self.tags(&name).await?;
        // Never take over a bucket that is not ours, unless told to by
        // external-name, or unless our own create may have made it.
        if !t.identity.owns(&tags) {
            if let Some(other) = tags.get(TAG_OWNER) {
                return Err(CloudError::terminal(
                    "BucketOwnedByOther",
                    format!("bucket {name} is managed by driftless object {other}"),
                ));
            }
            if t.external_name.is_none() && !t.create_pending {
                return Err(CloudError::terminal(
                    "BucketAlreadyExists",
                    format!("bucket {name} already exists and was not created by this object; set annotation driftless.dev/external-name: {name} to adopt it"),
                ));
            }
        }

        let mut diff = Vec::new();
        diff.compare(BucketField::Region, &region, t.spec.region.as_ref());
        let want_tags = desired_tags(t);
        if tags != want_tags {
            diff.push(FieldDiff::map(BucketField::Tags, &tags, &want_tags));
        }
        if let Some(want) = t.spec.versioning {
            let have = self.versioning(&name).await?;
            if have != Some(want) {
                diff.push(FieldDiff::new(BucketField::Versioning, have, want));
            }
        }
        if let Some(want) = &t.spec.public_access_block {
            let have = self.public_access_block(&name).await?.unwrap_or_default();
            if have != *want {
                diff.push(FieldDiff::new(BucketField::PublicAccessBlock, have, want));
            }
        }
        if let Some(want) = &t.spec.server_side_encryption {
            let have = self.encryption(&name).await?;
            if have.as_ref() != Some(want) {
                diff.push(FieldDiff::new(
                    BucketField::ServerSideEncryption,
                    have,
                    want,
                ));
            }
        }
        let (at_provider, connection_details) = self.observation(&name, &region);
        Ok(Observation {
            exists: true,
            external_name: Some(name),
            diff,
            ready: true,
            not_ready: None,
            at_provider: Some(at_provider),
            connection_details,
            // A bucket name is unique: no duplicates.
            duplicates: Vec::new(),
            proven_duplicates: Vec::new(),
        })
    }

    async fn create(&self, t: &Target<'_, Bucket>) -> Result<Created, CloudError> {
        let name = bucket_name(t);
        let mut req = self.s3.create_bucket().bucket(&name);
        // us-east-1 is the one region that must not be named.
        if self.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => {}
            Err(e) if code_of(&e) == Some("BucketAlreadyOwnedByYou") => {}
            Err(e) => return Err(cloud_error(e)),
        }
        // Tag first: from here on the bucket is recognisably ours.
        self.put_tags(&name, &desired_tags(t)).await?;
        if let Some(v) = t.spec.versioning {
            self.put_versioning(&name, v).await?;
        }
        if let Some(p) = &t.spec.public_access_block {
            self.put_public_access_block(&name, p).await?;
        }
        if let Some(enc) = &t.spec.server_side_encryption {
            self.put_encryption(&name, enc).await?;
        }
        Ok(Created {
            external_name: name,
        })
    }

    async fn update(
        &self,
        t: &Target<'_, Bucket>,
        observed: &Observation<Bucket>,
    ) -> Result<(), CloudError> {
        let name = bucket_name(t);
        for d in &observed.diff {
            match d.field {
                BucketField::Tags => self.put_tags(&name, &desired_tags(t)).await?,
                BucketField::Versioning => {
                    if let Some(v) = t.spec.versioning {
                        self.put_versioning(&name, v).await?
                    }
                }
                BucketField::PublicAccessBlock => {
                    if let Some(p) = &t.spec.public_access_block {
                        self.put_public_access_block(&name, p).await?
                    }
                }
                BucketField::ServerSideEncryption => {
                    if let Some(enc) = &t.spec.server_side_encryption {
                        self.put_encryption(&name, enc).await?
                    }
                }
                BucketField::Region => {} // immutable
            }
        }
        Ok(())
    }

    async fn delete(&self, t: &Target<'_, Bucket>) -> Result<Deletion, CloudError> {
        let name = bucket_name(t);
        if t.spec.force_destroy {
            match self.empty(&name).await {
                Err(e) if e.code == "NoSuchBucket" => return Ok(Deletion::Done),
                other => other?,
            }
        }
        match self.s3.delete_bucket().bucket(&name).send().await {
            Ok(_) => Ok(Deletion::Done),
            Err(e) if code_of(&e) == Some("NoSuchBucket") || status_of(&e) == Some(404) => Ok(Deletion::Done),
            Err(e) if code_of(&e) == Some("BucketNotEmpty") => Ok(Deletion::Waiting(format!(
                "bucket {name} is not empty; set spec.forProvider.forceDestroy: true to delete its objects too, or empty it"
            ))),
            Err(e) => Err(cloud_error(e)),
        }
    }

    /// S3 cannot filter by tag: one ListBuckets (this region's buckets) plus
    /// one GetBucketTagging per bucket. Push mode only.
    async fn list_owned(&self) -> Result<Vec<Owned>, CloudError> {
        let mut names = Vec::new();
        let mut pages = self
            .s3
            .list_buckets()
            .bucket_region(&self.region)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(cloud_error)?;
            names.extend(
                page.buckets()
                    .iter()
                    .filter_map(|b| b.name().map(str::to_string)),
            );
        }
        let mut owned = Vec::new();
        for name in names {
            let tags = match self.tags(&name).await {
                Ok(tags) => tags,
                Err(e) if e.code == "NoSuchBucket" => continue, // deleted meanwhile
                Err(e) => return Err(e),
            };
            if tags.contains_key(TAG_MANAGED_BY) {
                owned.push(Owned {
                    external_name: name,
                    tags,
                    state: "available".to_string(),
                    ready: true,
                });
            }
        }
        Ok(owned)
    }
}
