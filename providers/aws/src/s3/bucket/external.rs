//! The bucket's observe, create, update, delete and (push mode) listing.

use async_trait::async_trait;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use driftless_provider::{
    CloudError, Compare, Created, Deletion, External, FieldDiff, Observation, Owned, Target,
    TAG_MANAGED_BY,
};

use super::rotation::Due;
use super::settings::{field_set, CREATE_ORDER};
use super::tags::desired_tags;
use super::{bucket_name, Bucket, BucketClient, BucketField};
use crate::errors::{cloud_error, code_of, status_of};

#[async_trait]
impl External<Bucket> for BucketClient {
    /// One call in steady state, a full read when due (see `rotation.rs`).
    async fn observe(&self, t: &Target<'_, Bucket>) -> Result<Observation<Bucket>, CloudError> {
        let name = bucket_name(t);
        let observed = match self.checks.due(t, &name) {
            Due::Full => self.observe_fully(t, &name).await,
            Due::Created { region } => Ok(self.found(&name, &region, Vec::new())),
            Due::One { field, region } => self.observe_one(t, &name, field, &region).await,
        };
        if !observed.as_ref().is_ok_and(|o| o.exists) {
            self.checks.forget(t, &name);
        }
        observed
    }

    async fn create(&self, t: &Target<'_, Bucket>) -> Result<Created, CloudError> {
        let name = bucket_name(t);
        self.checks.forget(t, &name);
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
        self.checks.created(t, &name, &self.region);
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
        // Whatever the outcome, the next observation reads everything.
        self.checks.forget(t, &bucket_name(t));
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
        self.checks.forget(t, &name);
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

impl BucketClient {
    /// HeadBucket (existence and region), the tags, then every setting the
    /// spec sets.
    async fn observe_fully(
        &self,
        t: &Target<'_, Bucket>,
        name: &str,
    ) -> Result<Observation<Bucket>, CloudError> {
        let head = match self.s3.head_bucket().bucket(name).send().await {
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
        let mut diff = Vec::new();
        diff.compare(BucketField::Region, &region, t.spec.region.as_ref());
        // The tags first: they refuse a bucket that is not ours.
        self.diff_tags(t, name, &mut diff).await?;
        self.diff_settings(t, name, &mut diff).await?;
        // Single checks follow only a bucket in sync: a drift that is not
        // written (observe-only, an immutable field) is read in full again.
        if diff.is_empty() {
            self.checks.observed_fully(t, name, &region);
        }
        Ok(self.found(name, &region, diff))
    }

    /// One check (the tags, or one setting): one call, which also proves
    /// the bucket still exists.
    async fn observe_one(
        &self,
        t: &Target<'_, Bucket>,
        name: &str,
        field: BucketField,
        region: &str,
    ) -> Result<Observation<Bucket>, CloudError> {
        let mut diff = Vec::new();
        let read = match field {
            BucketField::Tags => self.diff_tags(t, name, &mut diff).await,
            setting => self.diff_setting(t, name, setting, &mut diff).await,
        };
        match read {
            Err(e) if e.code == "NoSuchBucket" => Ok(Observation::absent()),
            Err(e) => Err(e),
            Ok(()) => Ok(self.found(name, region, diff)),
        }
    }

    fn found(
        &self,
        name: &str,
        region: &str,
        diff: Vec<FieldDiff<BucketField>>,
    ) -> Observation<Bucket> {
        let (at_provider, connection_details) = self.observation(name, region);
        Observation {
            exists: true,
            external_name: Some(name.to_string()),
            diff,
            ready: true,
            not_ready: None,
            at_provider: Some(at_provider),
            connection_details,
            // A bucket name is unique: no duplicates.
            duplicates: Vec::new(),
            proven_duplicates: Vec::new(),
        }
    }
}
