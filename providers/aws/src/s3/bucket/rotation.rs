//! Which of a bucket's checks an observation makes.
//!
//! S3 has no batch read of a bucket's tags or settings: ListBuckets gives
//! names only, and the Resource Groups Tagging API does not list buckets on
//! LocalStack (4.13 answers an empty list), so it could not be tested. Every
//! check is one call per bucket. To cost one call per bucket per poll, a
//! steady-state observation makes one check, in turn: the tags, then each
//! setting the spec sets (the bucket's "checks", at most 8). That one call also
//! proves the bucket exists (a missing bucket answers `NoSuchBucket`), so
//! deletion is seen at every poll, and any drift within as many polls as
//! the bucket has checks.
//!
//! A full observation (HeadBucket for the region, the tags, every set
//! setting) is made the first time this process observes the bucket, after
//! its spec, external name or owner tags change, after any write (so what
//! driftless changed is confirmed at once) and after any error.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use driftless_provider::Target;

use super::settings::{field_set, CREATE_ORDER};
use super::tags::desired_tags;
use super::{Bucket, BucketField};

/// What the last full observation of each bucket found, per ProviderConfig
/// (kept across session re-reads, like the EC2 snapshots), by owner and
/// bucket name: another object claiming the same bucket (and refused) does
/// not disturb the owner's entry.
#[derive(Debug, Default)]
pub struct BucketChecks {
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug)]
struct Seen {
    /// [`fingerprint`] of the target that was fully observed.
    target: u64,
    region: String,
    /// How many single checks were made since: picks the next one.
    made: usize,
    /// Recorded by a create: the next observation is served from what it
    /// wrote, with no call.
    created: bool,
}

/// What the next observation of a bucket reads.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Due {
    Full,
    /// Nothing to read: the create that just made the bucket in `region`
    /// wrote every setting it has.
    Created {
        region: String,
    },
    /// One check, `field` (`Tags` or a setting the spec sets), of a bucket
    /// known to be in `region`.
    One {
        field: BucketField,
        region: String,
    },
}

impl BucketChecks {
    /// The check due for bucket `name` of `t`, counted as made.
    pub(super) fn due(&self, t: &Target<'_, Bucket>, name: &str) -> Due {
        let mut seen = self.seen.lock().expect("bucket checks poisoned");
        let entry = seen.get_mut(&key(t, name));
        let Some(s) = entry.filter(|s| s.target == fingerprint(t)) else {
            return Due::Full;
        };
        if std::mem::take(&mut s.created) {
            let region = s.region.clone();
            return Due::Created { region };
        }
        let checks = checks(t);
        let field = checks[s.made % checks.len()];
        s.made += 1;
        Due::One {
            field,
            region: s.region.clone(),
        }
    }

    /// A full observation of `t` found bucket `name` in `region`, in sync
    /// or about to be written (a write forgets it again).
    pub(super) fn observed_fully(&self, t: &Target<'_, Bucket>, name: &str, region: &str) {
        self.record(t, name, region, false);
    }

    /// `t`'s create made bucket `name` in `region` with every setting of
    /// the spec: the observation that follows it (of the target with the
    /// external name recorded) reads nothing.
    pub(super) fn created(&self, t: &Target<'_, Bucket>, name: &str, region: &str) {
        let made = Target {
            external_name: Some(name),
            create_pending: false,
            ..*t
        };
        self.record(&made, name, region, true);
    }

    fn record(&self, t: &Target<'_, Bucket>, name: &str, region: &str, created: bool) {
        let seen = Seen {
            target: fingerprint(t),
            region: region.to_string(),
            made: 0,
            created,
        };
        let mut all = self.seen.lock().expect("bucket checks poisoned");
        all.insert(key(t, name), seen);
    }

    /// The next observation of `name` is a full one.
    pub(super) fn forget(&self, t: &Target<'_, Bucket>, name: &str) {
        self.seen
            .lock()
            .expect("bucket checks poisoned")
            .remove(&key(t, name));
    }
}

fn key(t: &Target<'_, Bucket>, name: &str) -> String {
    format!("{} {name}", t.identity.owner())
}

/// The checks of `t`'s bucket, in the order they are made: the tags (which
/// also carry the owner and the record of deletable settings), then each
/// setting the spec sets. A setting the spec leaves unset is not checked.
pub(super) fn checks(t: &Target<'_, Bucket>) -> Vec<BucketField> {
    let settings = CREATE_ORDER.into_iter().filter(|f| field_set(t, *f));
    std::iter::once(BucketField::Tags).chain(settings).collect()
}

/// Everything of `t` an observation depends on: a change of any of it
/// (spec, external name, create mark, owner tags) makes the next
/// observation a full one.
fn fingerprint(t: &Target<'_, Bucket>) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_string(t.spec)
        .unwrap_or_default()
        .hash(&mut h);
    desired_tags(t).hash(&mut h);
    t.external_name.hash(&mut h);
    t.create_pending.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use driftless_provider::Identity;

    use super::*;
    use crate::s3::bucket::{BucketParameters, Versioning};

    fn identity() -> Identity {
        Identity {
            kind: "Bucket".into(),
            namespace: "web".into(),
            name: "logs".into(),
            stack: None,
            orphan_on_prune: false,
        }
    }

    fn target<'a>(
        identity: &'a Identity,
        spec: &'a BucketParameters,
        resolved: &'a BTreeMap<String, String>,
    ) -> Target<'a, Bucket> {
        Target {
            identity,
            external_name: Some("logs"),
            create_pending: false,
            spec,
            resolved,
        }
    }

    /// Full first; after it, the tags then each set setting, round and
    /// round; a spec change or a write makes the next one full again.
    #[test]
    fn checks_go_round_after_a_full_observation() {
        let (id, resolved) = (identity(), BTreeMap::new());
        let spec = BucketParameters {
            versioning: Some(Versioning::Enabled),
            cors: Some(Vec::new()),
            ..BucketParameters::default()
        };
        let t = target(&id, &spec, &resolved);
        let checks = BucketChecks::default();
        assert_eq!(checks.due(&t, "logs"), Due::Full);
        checks.observed_fully(&t, "logs", "eu-west-1");
        let one = |field| Due::One {
            field,
            region: "eu-west-1".into(),
        };
        for field in [
            BucketField::Tags,
            BucketField::Versioning,
            BucketField::Cors,
            BucketField::Tags,
        ] {
            assert_eq!(checks.due(&t, "logs"), one(field));
        }

        let changed = BucketParameters {
            versioning: Some(Versioning::Suspended),
            ..spec.clone()
        };
        assert_eq!(
            checks.due(&target(&id, &changed, &resolved), "logs"),
            Due::Full
        );
        checks.forget(&t, "logs");
        assert_eq!(checks.due(&t, "logs"), Due::Full);
    }

    /// Without settings, every check reads the tags.
    #[test]
    fn a_bucket_without_settings_checks_its_tags_every_time() {
        let (id, resolved, spec) = (identity(), BTreeMap::new(), BucketParameters::default());
        let t = target(&id, &spec, &resolved);
        assert_eq!(checks(&t), [BucketField::Tags]);
    }
}
