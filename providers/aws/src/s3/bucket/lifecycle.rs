//! `forProvider.lifecycleRules`, compared as a set of rules by id. One
//! GetBucketLifecycleConfiguration per poll when set; none when unset.

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use aws_sdk_s3::types as s3;
use driftless_provider::{CloudError, FieldDiff};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{build_error, BucketClient, BucketField};
use crate::errors::{cloud_error, code_of};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RuleStatus {
    #[default]
    Enabled,
    Disabled,
}

/// One lifecycle rule: which objects (filter), and at least one action.
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

fn tag_map(tags: &[s3::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

fn filter_from(rule: &s3::LifecycleRule) -> LifecycleFilter {
    let Some(f) = rule.filter() else {
        // A rule written before filters existed has its prefix at rule level.
        #[allow(deprecated)]
        let prefix = rule.prefix().unwrap_or_default().to_string();
        return LifecycleFilter {
            prefix,
            tags: BTreeMap::new(),
        };
    };
    if let Some(and) = f.and() {
        return LifecycleFilter {
            prefix: and.prefix().unwrap_or_default().to_string(),
            tags: tag_map(and.tags()),
        };
    }
    LifecycleFilter {
        prefix: f.prefix().unwrap_or_default().to_string(),
        tags: tag_map(f.tag().into_iter().cloned().collect::<Vec<_>>().as_slice()),
    }
}

fn rule_from(r: &s3::LifecycleRule) -> LifecycleRule {
    LifecycleRule {
        id: r.id().unwrap_or_default().to_string(),
        status: match r.status() {
            s3::ExpirationStatus::Enabled => RuleStatus::Enabled,
            _ => RuleStatus::Disabled,
        },
        filter: filter_from(r),
        expiration: r.expiration().map(|e| Expiration {
            days: e.days(),
            date: e
                .date()
                .and_then(|d| d.fmt(DateTimeFormat::DateTime).ok())
                .map(|d| d.chars().take(10).collect()),
            expired_object_delete_marker: e.expired_object_delete_marker(),
        }),
        transitions: r
            .transitions()
            .iter()
            .map(|t| Transition {
                days: t.days().unwrap_or_default(),
                storage_class: t.storage_class().map_or("", |c| c.as_str()).to_string(),
            })
            .collect(),
        noncurrent_version_expiration: r.noncurrent_version_expiration().map(|n| {
            NoncurrentVersionExpiration {
                noncurrent_days: n.noncurrent_days().unwrap_or_default(),
            }
        }),
        abort_incomplete_multipart_upload: r.abort_incomplete_multipart_upload().map(|a| {
            AbortIncompleteMultipartUpload {
                days_after_initiation: a.days_after_initiation().unwrap_or_default(),
            }
        }),
    }
}

fn aws_tag(k: &str, v: &str) -> Result<s3::Tag, CloudError> {
    s3::Tag::builder()
        .key(k)
        .value(v)
        .build()
        .map_err(build_error)
}

/// A prefix alone, one tag alone, or both under `And`, as S3 wants it.
fn filter_to(f: &LifecycleFilter) -> Result<s3::LifecycleRuleFilter, CloudError> {
    let b = s3::LifecycleRuleFilter::builder();
    Ok(match f.tags.iter().collect::<Vec<_>>().as_slice() {
        [] => b.prefix(&f.prefix).build(),
        [(k, v)] if f.prefix.is_empty() => b.tag(aws_tag(k, v)?).build(),
        _ => {
            let tags = f.tags.iter().map(|(k, v)| aws_tag(k, v));
            let and = s3::LifecycleRuleAndOperator::builder()
                .set_prefix(Some(f.prefix.clone()).filter(|p| !p.is_empty()))
                .set_tags(Some(tags.collect::<Result<_, _>>()?))
                .build();
            b.and(and).build()
        }
    })
}

fn expiration_to(e: &Expiration) -> Result<s3::LifecycleExpiration, CloudError> {
    let date = e
        .date
        .as_ref()
        .map(|d| DateTime::from_str(&format!("{d}T00:00:00Z"), DateTimeFormat::DateTime))
        .transpose()
        .map_err(|err| {
            CloudError::terminal(
                "InvalidArgument",
                format!(
                    "forProvider.lifecycleRules: expiration date {:?}: {err}",
                    e.date
                ),
            )
        })?;
    Ok(s3::LifecycleExpiration::builder()
        .set_days(e.days)
        .set_date(date)
        .set_expired_object_delete_marker(e.expired_object_delete_marker)
        .build())
}

fn rule_to(r: &LifecycleRule) -> Result<s3::LifecycleRule, CloudError> {
    let status = match r.status {
        RuleStatus::Enabled => s3::ExpirationStatus::Enabled,
        RuleStatus::Disabled => s3::ExpirationStatus::Disabled,
    };
    let transitions = r.transitions.iter().map(|t| {
        s3::Transition::builder()
            .days(t.days)
            .storage_class(s3::TransitionStorageClass::from(t.storage_class.as_str()))
            .build()
    });
    s3::LifecycleRule::builder()
        .id(&r.id)
        .status(status)
        .filter(filter_to(&r.filter)?)
        .set_expiration(r.expiration.as_ref().map(expiration_to).transpose()?)
        .set_transitions(Some(transitions.collect()))
        .set_noncurrent_version_expiration(r.noncurrent_version_expiration.as_ref().map(|n| {
            s3::NoncurrentVersionExpiration::builder()
                .noncurrent_days(n.noncurrent_days)
                .build()
        }))
        .set_abort_incomplete_multipart_upload(r.abort_incomplete_multipart_upload.as_ref().map(
            |a| {
                s3::AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(a.days_after_initiation)
                    .build()
            },
        ))
        .build()
        .map_err(build_error)
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
