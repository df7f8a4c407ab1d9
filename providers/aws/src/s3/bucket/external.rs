//! The bucket's observe, create, update, delete and (push mode) listing.

use async_trait::async_trait;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use driftless_provider::{
    CloudError, Compare, Created, Deletion, External, FieldDiff, Observation, Owned, Target,
    TAG_MANAGED_BY, TAG_OWNER,
};

use super::settings::{field_set, CREATE_ORDER};
use super::tags::desired_tags;
use super::{bucket_name, Bucket, BucketClient, BucketField};
use crate::errors::{cloud_error, code_of, status_of};

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
