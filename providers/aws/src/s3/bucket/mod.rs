//! `Bucket` (aws.driftless.dev/v1alpha1): an S3 bucket named by the object's
//! `metadata.name` (or its external-name annotation). Each optional setting
//! is one file with its observe and update; a setting the spec leaves unset
//! costs no call. An observation in steady state makes one call: see
//! `rotation.rs`.

mod cors;
mod empty;
mod encryption;
mod external;
mod lifecycle;
mod lifecycle_sdk;
mod ownership;
pub mod policy;
mod public_access;
mod rotation;
mod settings;
mod tags;
mod versioning;

use std::collections::BTreeMap;
use std::sync::Arc;

use driftless_provider::{field_keys, managed_resource, observation, CloudError, External, Target};
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
pub use rotation::BucketChecks;
pub use tags::TAG_SETTINGS;
pub use versioning::Versioning;

use crate::{AwsKind, AwsSession};

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
            checks: session.s3.clone(),
            region,
            endpoint: session.endpoint.clone(),
        })
    }
}

struct BucketClient {
    s3: aws_sdk_s3::Client,
    checks: Arc<BucketChecks>,
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
    pub(super) fn observation(
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
}
