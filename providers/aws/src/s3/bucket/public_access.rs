//! `forProvider.publicAccessBlock`: one GetPublicAccessBlock per poll when set.

use aws_sdk_s3::types::PublicAccessBlockConfiguration;
use driftless_provider::{CloudError, Compare, FieldDiff};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BucketClient, BucketField};
use crate::errors::{cloud_error, code_of};

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

impl BucketClient {
    pub(super) async fn diff_public_access_block(
        &self,
        name: &str,
        want: &PublicAccessBlock,
        diff: &mut Vec<FieldDiff<BucketField>>,
    ) -> Result<(), CloudError> {
        let have = match self.s3.get_public_access_block().bucket(name).send().await {
            Ok(out) => out
                .public_access_block_configuration()
                .map(|c| PublicAccessBlock {
                    block_public_acls: c.block_public_acls().unwrap_or(false),
                    ignore_public_acls: c.ignore_public_acls().unwrap_or(false),
                    block_public_policy: c.block_public_policy().unwrap_or(false),
                    restrict_public_buckets: c.restrict_public_buckets().unwrap_or(false),
                }),
            Err(e) if code_of(&e) == Some("NoSuchPublicAccessBlockConfiguration") => None,
            Err(e) => return Err(cloud_error(e)),
        };
        diff.compare(
            BucketField::PublicAccessBlock,
            have.unwrap_or_default(),
            Some(*want),
        );
        Ok(())
    }

    pub(super) async fn put_public_access_block(
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
}
