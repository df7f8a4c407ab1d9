//! `Bucket` (aws.driftless.dev/v1alpha1): an S3 bucket named by the object's
//! `metadata.name` (or its external-name annotation). Each optional setting
//! is one file with its observe and update; a setting the spec leaves unset
//! costs no call.

mod cors;
mod empty;
mod encryption;
mod lifecycle;
mod ownership;
pub mod policy;
mod public_access;
mod tags;
mod versioning;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use driftless_provider::{
    field_keys, managed_resource, observation, CloudError, Compare, Created, Deletion, External,
    FieldDiff, Observation, Owned, Target, TAG_MANAGED_BY, TAG_OWNER,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use cors::CorsRule;
pub use encryption::{Encryption, EncryptionAlgorithm};
pub use lifecycle::{
    AbortIncompleteMultipartUpload, Expiration, LifecycleFilter, LifecycleRule,
    NoncurrentVersionExpiration, RuleStatus, Transition,
};
pub use ownership::ObjectOwnership;
pub use public_access::PublicAccessBlock;
pub use tags::TAG_SETTINGS;
pub use versioning::Versioning;

use crate::errors::{cloud_error, code_of, status_of};
use crate::{AwsKind, AwsSession};
use tags::{desired_tags, recorded, set_in_spec, DELETABLE};

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "policy::schema")]
    pub policy: Option<serde_json::Value>,
    /// Lifecycle rules, compared by id. Unset leaves them alone; `[]` means
    /// none; removing the field deletes the rules driftless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 1000),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["id"])
    )]
    pub lifecycle_rules: Option<Vec<LifecycleRule>>,
    /// CORS rules, in order (the first match applies). Unset leaves them
    /// alone; `[]` means none; removing the field deletes the rules driftless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub cors: Option<Vec<CorsRule>>,
    /// Object ownership. Unset (or removed) leaves it alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership_controls: Option<ObjectOwnership>,
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
        Policy = "policy",
        LifecycleRules = "lifecycleRules",
        Cors = "cors",
        OwnershipControls = "ownershipControls",
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

    /// One Get per setting the spec sets. A deletable setting the spec no
    /// longer sets but the tags record as ours is due for deletion (no Get:
    /// the delete is idempotent).
    async fn diff_settings(
        &self,
        t: &Target<'_, Bucket>,
        name: &str,
        tags: &BTreeMap<String, String>,
        diff: &mut Vec<FieldDiff<BucketField>>,
    ) -> Result<(), CloudError> {
        let spec = t.spec;
        if let Some(want) = spec.versioning {
            self.diff_versioning(name, want, diff).await?;
        }
        if let Some(want) = &spec.public_access_block {
            self.diff_public_access_block(name, want, diff).await?;
        }
        if let Some(want) = &spec.server_side_encryption {
            self.diff_encryption(name, want, diff).await?;
        }
        if let Some(want) = &spec.policy {
            self.diff_policy(name, want, diff).await?;
        }
        if let Some(want) = &spec.lifecycle_rules {
            self.diff_lifecycle(name, want, diff).await?;
        }
        if let Some(want) = &spec.cors {
            self.diff_cors(name, want, diff).await?;
        }
        if let Some(want) = spec.ownership_controls {
            self.diff_ownership(name, want, diff).await?;
        }
        for (field, key) in DELETABLE {
            if !set_in_spec(t, field) && recorded(tags, key) {
                diff.push(FieldDiff::new(
                    field,
                    format_args!("set by driftless"),
                    format_args!("deleted (removed from the spec)"),
                ));
            }
        }
        Ok(())
    }

    /// Writes one setting as the spec has it (deleting a removed one).
    async fn put_setting(
        &self,
        t: &Target<'_, Bucket>,
        field: BucketField,
    ) -> Result<(), CloudError> {
        let (name, spec) = (bucket_name(t), t.spec);
        match field {
            BucketField::Versioning => match spec.versioning {
                Some(v) => self.put_versioning(&name, v).await,
                None => Ok(()),
            },
            BucketField::PublicAccessBlock => match &spec.public_access_block {
                Some(p) => self.put_public_access_block(&name, p).await,
                None => Ok(()),
            },
            BucketField::ServerSideEncryption => match &spec.server_side_encryption {
                Some(enc) => self.put_encryption(&name, enc).await,
                None => Ok(()),
            },
            BucketField::Policy => match &spec.policy {
                Some(p) => self.put_policy(&name, p).await,
                None => self.delete_policy(&name).await,
            },
            BucketField::LifecycleRules => match &spec.lifecycle_rules {
                Some(rules) => self.put_lifecycle(&name, rules).await,
                None => self.delete_lifecycle(&name).await,
            },
            BucketField::Cors => match &spec.cors {
                Some(rules) => self.put_cors(&name, rules).await,
                None => self.delete_cors(&name).await,
            },
            BucketField::OwnershipControls => match spec.ownership_controls {
                Some(o) => self.put_ownership(&name, o).await,
                None => Ok(()),
            },
            BucketField::Tags => self.put_tags(&name, &desired_tags(t)).await,
            BucketField::Region => Ok(()), // immutable
        }
    }
}

/// The settings a new bucket gets after its tags, in this order.
const CREATE_ORDER: [BucketField; 7] = [
    BucketField::Versioning,
    BucketField::PublicAccessBlock,
    BucketField::ServerSideEncryption,
    BucketField::OwnershipControls,
    BucketField::Policy,
    BucketField::LifecycleRules,
    BucketField::Cors,
];

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
        self.diff_settings(t, &name, &tags, &mut diff).await?;
        let (at_provider, connection_details) = self.observation(&name, &region);
        Ok(Observation {
            exists: true,
            external_name: Some(name),
            diff,
            ready: true,
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
        for field in CREATE_ORDER {
            if field_set(t, field) {
                self.put_setting(t, field).await?;
            }
        }
        Ok(Created {
            external_name: name,
        })
    }

    /// The tags go last: they record which settings are ours, so a deletion
    /// that fails is retried rather than forgotten.
    async fn update(
        &self,
        t: &Target<'_, Bucket>,
        observed: &Observation<Bucket>,
    ) -> Result<(), CloudError> {
        let fields = observed.diff.iter().map(|d| d.field);
        for field in fields.clone().filter(|f| *f != BucketField::Tags) {
            self.put_setting(t, field).await?;
        }
        if fields.clone().any(|f| f == BucketField::Tags) {
            self.put_setting(t, BucketField::Tags).await?;
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

/// The spec sets `field` (a new bucket needs no write for the others).
fn field_set(t: &Target<'_, Bucket>, field: BucketField) -> bool {
    let spec = t.spec;
    match field {
        BucketField::Versioning => spec.versioning.is_some(),
        BucketField::PublicAccessBlock => spec.public_access_block.is_some(),
        BucketField::ServerSideEncryption => spec.server_side_encryption.is_some(),
        BucketField::OwnershipControls => spec.ownership_controls.is_some(),
        other => set_in_spec(t, other),
    }
}
