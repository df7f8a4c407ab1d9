//! `forProvider.ownershipControls`: who owns objects others upload. One
//! GetBucketOwnershipControls per poll when set; none when unset. Removing it
//! from the spec stops managing it (S3 has no "unset": new buckets already
//! default to BucketOwnerEnforced).

use aws_sdk_s3::types::{ObjectOwnership as S3Ownership, OwnershipControls, OwnershipControlsRule};
use driftless_provider::{CloudError, FieldDiff};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{build_error, BucketClient, BucketField};
use crate::errors::{cloud_error, code_of};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ObjectOwnership {
    /// ACLs are disabled; the bucket owner owns every object.
    BucketOwnerEnforced,
    /// The bucket owner owns objects uploaded with `bucket-owner-full-control`.
    BucketOwnerPreferred,
    /// The uploading account owns the object.
    ObjectWriter,
}

impl ObjectOwnership {
    fn to_aws(self) -> S3Ownership {
        match self {
            Self::BucketOwnerEnforced => S3Ownership::BucketOwnerEnforced,
            Self::BucketOwnerPreferred => S3Ownership::BucketOwnerPreferred,
            Self::ObjectWriter => S3Ownership::ObjectWriter,
        }
    }
}

impl BucketClient {
    pub(super) async fn diff_ownership(
        &self,
        name: &str,
        want: ObjectOwnership,
        diff: &mut Vec<FieldDiff<BucketField>>,
    ) -> Result<(), CloudError> {
        let req = self.s3.get_bucket_ownership_controls().bucket(name);
        let have = match req.send().await {
            Ok(out) => out
                .ownership_controls()
                .and_then(|c| c.rules().first())
                .map(|r| r.object_ownership().clone()),
            Err(e) if code_of(&e) == Some("OwnershipControlsNotFoundError") => None,
            Err(e) => return Err(cloud_error(e)),
        };
        let want = want.to_aws();
        if have.as_ref() != Some(&want) {
            let have = have.as_ref().map_or("none", |o| o.as_str());
            diff.push(FieldDiff::new(
                BucketField::OwnershipControls,
                format_args!("{have}"),
                format_args!("{}", want.as_str()),
            ));
        }
        Ok(())
    }

    pub(super) async fn put_ownership(
        &self,
        name: &str,
        want: ObjectOwnership,
    ) -> Result<(), CloudError> {
        let rule = OwnershipControlsRule::builder()
            .object_ownership(want.to_aws())
            .build()
            .map_err(build_error)?;
        let controls = OwnershipControls::builder()
            .rules(rule)
            .build()
            .map_err(build_error)?;
        self.s3
            .put_bucket_ownership_controls()
            .bucket(name)
            .ownership_controls(controls)
            .send()
            .await
            .map_err(cloud_error)?;
        Ok(())
    }
}
