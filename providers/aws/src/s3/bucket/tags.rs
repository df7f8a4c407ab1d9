//! The bucket's tags: the spec's, driftless's owner tags, and the record of
//! which deletable settings driftless manages (read with the tags, so it
//! costs no call of its own).

use std::collections::BTreeMap;

use aws_sdk_s3::types::{Tag, Tagging};
use driftless_provider::{CloudError, FieldDiff, Target, TAG_OWNER};

use super::{build_error, Bucket, BucketClient, BucketField};
use crate::errors::{cloud_error, code_of};

/// The settings (`policy`, `lifecycleRules`, `cors`) this object's spec set,
/// space-separated. A setting removed from the spec but still named here was
/// put by driftless, so driftless deletes it; one never named here (say, the
/// policy of an imported bucket) is left alone.
pub const TAG_SETTINGS: &str = "driftless.dev/settings";

/// The settings that are deleted when the spec drops them, with their keys.
pub(super) const DELETABLE: [(BucketField, &str); 3] = [
    (BucketField::Policy, "policy"),
    (BucketField::LifecycleRules, "lifecycleRules"),
    (BucketField::Cors, "cors"),
];

/// Which deletable settings the spec sets.
pub(super) fn set_in_spec(t: &Target<'_, Bucket>, field: BucketField) -> bool {
    let spec = t.spec;
    match field {
        BucketField::Policy => spec.policy.is_some(),
        BucketField::LifecycleRules => spec.lifecycle_rules.is_some(),
        BucketField::Cors => spec.cors.is_some(),
        _ => false,
    }
}

pub(super) fn desired_tags(t: &Target<'_, Bucket>) -> BTreeMap<String, String> {
    let mut tags = t.spec.tags.clone();
    tags.extend(t.identity.owner_tags());
    let settings: Vec<&str> = DELETABLE
        .iter()
        .filter(|(field, _)| set_in_spec(t, *field))
        .map(|(_, key)| *key)
        .collect();
    if !settings.is_empty() {
        tags.insert(TAG_SETTINGS.to_string(), settings.join(" "));
    }
    tags
}

/// The deletable setting `key` is recorded in the bucket's tags as ours.
pub(super) fn recorded(tags: &BTreeMap<String, String>, key: &str) -> bool {
    tags.get(TAG_SETTINGS)
        .is_some_and(|v| v.split(' ').any(|k| k == key))
}

impl BucketClient {
    /// One GetBucketTagging: refuses a bucket that is not this object's,
    /// then adds the tags' drift and the deletable settings due for deletion.
    pub(super) async fn diff_tags(
        &self,
        t: &Target<'_, Bucket>,
        name: &str,
        diff: &mut Vec<FieldDiff<BucketField>>,
    ) -> Result<(), CloudError> {
        let tags = self.tags(name).await?;
        check_owner(t, name, &tags)?;
        let want = desired_tags(t);
        if tags != want {
            diff.push(FieldDiff::map(BucketField::Tags, &tags, &want));
        }
        for (field, key) in DELETABLE {
            if !set_in_spec(t, field) && recorded(&tags, key) {
                diff.push(FieldDiff::new(
                    field,
                    format_args!("set by driftless"),
                    format_args!("deleted (removed from the spec)"),
                ));
            }
        }
        Ok(())
    }

    pub(super) async fn tags(&self, name: &str) -> Result<BTreeMap<String, String>, CloudError> {
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

    pub(super) async fn put_tags(
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
}

/// Never take over a bucket that is not ours, unless told to by
/// external-name, or unless our own create may have made it.
fn check_owner(
    t: &Target<'_, Bucket>,
    name: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(), CloudError> {
    if t.identity.owns(tags) {
        return Ok(());
    }
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
    Ok(())
}
