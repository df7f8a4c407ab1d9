//! `forProvider.lifecycleRules`, compared as a set of rules by id. One
//! GetBucketLifecycleConfiguration per poll when set; none when unset.

use std::collections::BTreeMap;

use aws_sdk_s3::types as s3;
use driftless_provider::{CloudError, FieldDiff};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::lifecycle_sdk::{rule_from, rule_to};
use super::{build_error, BucketClient, BucketField};
use crate::errors::{cloud_error, code_of};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RuleStatus {
    #[default]
    Enabled,
    Disabled,
}

/// One lifecycle rule: which objects (filter), and at least one action
/// (AWS refuses a rule without one; LocalStack accepts it, so admission
/// checks it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.expiration) || (has(self.transitions) && size(self.transitions) > 0) || has(self.noncurrentVersionExpiration) || has(self.abortIncompleteMultipartUpload)",
     "message": "a lifecycle rule needs at least one action: expiration, transitions, noncurrentVersionExpiration or abortIncompleteMultipartUpload"}
]))]
pub struct LifecycleRule {
    /// Unique among the bucket's rules.
    #[schemars(length(min = 1, max = 255))]
    pub id: String,
    /// Enabled (default) or Disabled.
    #[serde(default)]
    pub status: RuleStatus,
    /// Which objects the rule applies to (default: all).
    #[serde(default, skip_serializing_if = "LifecycleFilter::is_all")]
    pub filter: LifecycleFilter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Expiration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub transitions: Vec<Transition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_version_expiration: Option<NoncurrentVersionExpiration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_incomplete_multipart_upload: Option<AbortIncompleteMultipartUpload>,
}

/// Objects under `prefix` carrying every one of `tags` (both optional).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleFilter {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl LifecycleFilter {
    fn is_all(&self) -> bool {
        self.prefix.is_empty() && self.tags.is_empty()
    }
}

/// Expire current objects after `days`, on `date` (YYYY-MM-DD, midnight
/// UTC), or remove expired delete markers: exactly one of them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.days) ? 1 : 0) + (has(self.date) ? 1 : 0) + (has(self.expiredObjectDeleteMarker) ? 1 : 0) == 1",
     "message": "expiration takes exactly one of days, date and expiredObjectDeleteMarker"}
]))]
pub struct Expiration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub days: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_object_delete_marker: Option<bool>,
}

/// Move objects to `storageClass` `days` after their creation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    #[schemars(range(min = 0))]
    pub days: i32,
    #[schemars(extend("enum" = ["STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"]))]
    pub storage_class: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoncurrentVersionExpiration {
    #[schemars(range(min = 1))]
    pub noncurrent_days: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AbortIncompleteMultipartUpload {
    #[schemars(range(min = 1))]
    pub days_after_initiation: i32,
}

/// Rules by id, transitions in order of days: the form both sides compare in.
fn by_id(rules: &[LifecycleRule]) -> BTreeMap<String, LifecycleRule> {
    rules
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.transitions.sort();
            if let Some(e) = r.expiration.as_mut() {
                // AWS may send `false` beside days or a date: the same as unset.
                e.expired_object_delete_marker = e.expired_object_delete_marker.filter(|m| *m);
            }
            (r.id.clone(), r)
        })
        .collect()
}

impl BucketClient {
    pub(super) async fn diff_lifecycle(
        &self,
        name: &str,
        want: &[LifecycleRule],
        diff: &mut Vec<FieldDiff<BucketField>>,
    ) -> Result<(), CloudError> {
        let req = self.s3.get_bucket_lifecycle_configuration().bucket(name);
        let have: Vec<LifecycleRule> = match req.send().await {
            Ok(out) => out.rules().iter().map(rule_from).collect(),
            Err(e) if code_of(&e) == Some("NoSuchLifecycleConfiguration") => Vec::new(),
            Err(e) => return Err(cloud_error(e)),
        };
        let (have, want) = (by_id(&have), by_id(want));
        if have != want {
            // Only the rules that differ, by id.
            let differs = |a: &BTreeMap<String, LifecycleRule>,
                           b: &BTreeMap<String, LifecycleRule>| {
                a.iter()
                    .filter(|(id, r)| b.get(*id) != Some(*r))
                    .map(|(_, r)| r.clone())
                    .collect::<Vec<_>>()
            };
            diff.push(FieldDiff::new(
                BucketField::LifecycleRules,
                differs(&have, &want),
                differs(&want, &have),
            ));
        }
        Ok(())
    }

    /// An empty list deletes the configuration (S3 refuses an empty one).
    pub(super) async fn put_lifecycle(
        &self,
        name: &str,
        rules: &[LifecycleRule],
    ) -> Result<(), CloudError> {
        if rules.is_empty() {
            return self.delete_lifecycle(name).await;
        }
        let rules = rules.iter().map(rule_to).collect::<Result<Vec<_>, _>>()?;
        let conf = s3::BucketLifecycleConfiguration::builder()
            .set_rules(Some(rules))
            .build()
            .map_err(build_error)?;
        self.s3
            .put_bucket_lifecycle_configuration()
            .bucket(name)
            .lifecycle_configuration(conf)
            .send()
            .await
            .map_err(cloud_error)?;
        Ok(())
    }

    pub(super) async fn delete_lifecycle(&self, name: &str) -> Result<(), CloudError> {
        self.s3
            .delete_bucket_lifecycle()
            .bucket(name)
            .send()
            .await
            .map_err(cloud_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, filter: LifecycleFilter) -> LifecycleRule {
        LifecycleRule {
            id: id.to_string(),
            status: RuleStatus::Enabled,
            filter,
            expiration: Some(Expiration {
                days: None,
                date: Some("2030-01-01".to_string()),
                expired_object_delete_marker: None,
            }),
            transitions: vec![
                Transition {
                    days: 90,
                    storage_class: "GLACIER".to_string(),
                },
                Transition {
                    days: 30,
                    storage_class: "STANDARD_IA".to_string(),
                },
            ],
            noncurrent_version_expiration: Some(NoncurrentVersionExpiration { noncurrent_days: 5 }),
            abort_incomplete_multipart_upload: Some(AbortIncompleteMultipartUpload {
                days_after_initiation: 2,
            }),
        }
    }

    /// What S3 is sent reads back as the same rule, for each filter shape.
    #[test]
    fn a_rule_survives_the_round_trip_through_the_sdk() {
        let tags = |n: usize| (0..n).map(|i| (format!("k{i}"), "v".to_string())).collect();
        for filter in [
            LifecycleFilter::default(),
            LifecycleFilter {
                prefix: "logs/".into(),
                tags: BTreeMap::new(),
            },
            LifecycleFilter {
                prefix: String::new(),
                tags: tags(1),
            },
            LifecycleFilter {
                prefix: "logs/".into(),
                tags: tags(1),
            },
            LifecycleFilter {
                prefix: String::new(),
                tags: tags(2),
            },
        ] {
            let want = vec![rule("r", filter)];
            let sent = rule_to(&want[0]).unwrap();
            assert_eq!(by_id(&[rule_from(&sent)]), by_id(&want), "{sent:?}");
        }
    }

    #[test]
    fn rules_compare_by_id_not_by_order() {
        let (a, b) = (
            rule("a", LifecycleFilter::default()),
            rule("b", LifecycleFilter::default()),
        );
        assert_eq!(by_id(&[a.clone(), b.clone()]), by_id(&[b, a.clone()]));
        let mut disabled = a.clone();
        disabled.status = RuleStatus::Disabled;
        assert_ne!(by_id(&[a]), by_id(&[disabled]));
    }
}
