//! Observing and writing the optional settings, one call each, dispatched
//! to their files.

use driftless_provider::{CloudError, FieldDiff, Target};

use super::tags::{desired_tags, set_in_spec};
use super::{bucket_name, Bucket, BucketClient, BucketField};

impl BucketClient {
    /// One Get per setting the spec sets, in [`CREATE_ORDER`].
    pub(super) async fn diff_settings(
        &self,
        t: &Target<'_, Bucket>,
        name: &str,
        diff: &mut Vec<FieldDiff<BucketField>>,
    ) -> Result<(), CloudError> {
        for field in CREATE_ORDER.into_iter().filter(|f| field_set(t, *f)) {
            self.diff_setting(t, name, field, diff).await?;
        }
        Ok(())
    }

    /// One Get: the setting `field` as the spec sets it (none if unset).
    pub(super) async fn diff_setting(
        &self,
        t: &Target<'_, Bucket>,
        name: &str,
        field: BucketField,
        diff: &mut Vec<FieldDiff<BucketField>>,
    ) -> Result<(), CloudError> {
        let spec = t.spec;
        match field {
            BucketField::Versioning => match spec.versioning {
                Some(want) => self.diff_versioning(name, want, diff).await,
                None => Ok(()),
            },
            BucketField::PublicAccessBlock => match &spec.public_access_block {
                Some(want) => self.diff_public_access_block(name, want, diff).await,
                None => Ok(()),
            },
            BucketField::ServerSideEncryption => match &spec.server_side_encryption {
                Some(want) => self.diff_encryption(name, want, diff).await,
                None => Ok(()),
            },
            BucketField::Policy => match &spec.policy {
                Some(want) => self.diff_policy(name, want, diff).await,
                None => Ok(()),
            },
            BucketField::LifecycleRules => match &spec.lifecycle_rules {
                Some(want) => self.diff_lifecycle(name, want, diff).await,
                None => Ok(()),
            },
            BucketField::Cors => match &spec.cors {
                Some(want) => self.diff_cors(name, want, diff).await,
                None => Ok(()),
            },
            BucketField::OwnershipControls => match spec.ownership_controls {
                Some(want) => self.diff_ownership(name, want, diff).await,
                None => Ok(()),
            },
            // Read with the bucket (HeadBucket) and its tags, not here.
            BucketField::Tags | BucketField::Region => Ok(()),
        }
    }

    /// Writes one setting as the spec has it (deleting a removed one).
    pub(super) async fn put_setting(
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
pub(super) const CREATE_ORDER: [BucketField; 7] = [
    BucketField::Versioning,
    BucketField::PublicAccessBlock,
    BucketField::ServerSideEncryption,
    BucketField::OwnershipControls,
    BucketField::Policy,
    BucketField::LifecycleRules,
    BucketField::Cors,
];

/// The spec sets `field` (a new bucket needs no write for the others).
pub(super) fn field_set(t: &Target<'_, Bucket>, field: BucketField) -> bool {
    let spec = t.spec;
    match field {
        BucketField::Versioning => spec.versioning.is_some(),
        BucketField::PublicAccessBlock => spec.public_access_block.is_some(),
        BucketField::ServerSideEncryption => spec.server_side_encryption.is_some(),
        BucketField::OwnershipControls => spec.ownership_controls.is_some(),
        other => set_in_spec(t, other),
    }
}
