//! Lifecycle rules to and from the SDK's types: the filter as S3 wants it
//! (a prefix alone, one tag alone, or `And`), dates as midnight UTC.

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use aws_sdk_s3::types as s3;
use driftless_provider::CloudError;

use super::build_error;
use super::lifecycle::{
    AbortIncompleteMultipartUpload, Expiration, LifecycleFilter, LifecycleRule,
    NoncurrentVersionExpiration, RuleStatus, Transition,
};

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

pub(super) fn rule_from(r: &s3::LifecycleRule) -> LifecycleRule {
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

pub(super) fn rule_to(r: &LifecycleRule) -> Result<s3::LifecycleRule, CloudError> {
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
