//! `forProvider.versioning`: one GetBucketVersioning per poll when set.

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use driftless_provider::{CloudError, FieldDiff};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BucketClient, BucketField};
use crate::errors::cloud_error;

/// Versioning state of a bucket.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Versioning {
    Enabled,
    Suspended,
}

impl BucketClient {
    pub(super) async fn diff_versioning(
        &self,
        name: &str,
        want: Versioning,
        diff: &mut Vec<FieldDiff<BucketField>>,
    ) -> Result<(), CloudError> {
        let out = self
            .s3
            .get_bucket_versioning()
            .bucket(name)
            .send()
            .await
            .map_err(cloud_error)?;
        let have = match out.status() {
            Some(BucketVersioningStatus::Enabled) => Some(Versioning::Enabled),
            Some(BucketVersioningStatus::Suspended) => Some(Versioning::Suspended),
            _ => None,
        };
        if have != Some(want) {
            // Shown as S3 names the states: a bucket never versioned is Unversioned.
            let observed = have.map_or("Unversioned".into(), |v| format!("{v:?}"));
            diff.push(FieldDiff {
                observed,
                ..FieldDiff::new(BucketField::Versioning, have, want)
            });
        }
        Ok(())
    }

    pub(super) async fn put_versioning(&self, name: &str, v: Versioning) -> Result<(), CloudError> {
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
}
