//! The decision step: what to do about one object, from what the cloud
//! says and what the policies allow. One function serves the controller
//! and push mode, so both make the same choice for the same input.

use driftless_provider::{CloudError, ManagedFields, ManagedKind, ManagementPolicy, Observation};

/// The one action a pass takes (Crossplane's meaning of the policies).
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Absent, and creating is allowed.
    Create,
    /// Absent, and the policies forbid creating it: an error to report.
    Missing(CloudError),
    /// Differs from the spec and the cloud can change it in place.
    Update,
    /// Differs in a field the cloud cannot change: a terminal error.
    Immutable(CloudError),
    /// Exists and matches the spec.
    UpToDate,
    /// Exists, and the policies forbid updates (`["Observe"]`): differences
    /// are shown, never acted on or reported as errors.
    ObserveOnly,
}

/// Decides for an observation of an object whose external name is
/// `external_name` (as the annotation says).
pub fn decide<K: ManagedKind>(
    observed: &Observation<K>,
    policies: &ManagedFields,
    external_name: Option<&str>,
) -> Decision {
    if !observed.exists {
        return if policies.allows(ManagementPolicy::Create) {
            Decision::Create
        } else {
            Decision::Missing(missing(external_name))
        };
    }
    if !policies.allows(ManagementPolicy::Update) {
        return Decision::ObserveOnly;
    }
    if observed.up_to_date() {
        return Decision::UpToDate;
    }
    match observed.immutable_error() {
        Some(e) => Decision::Immutable(e),
        None => Decision::Update,
    }
}

/// The error for a resource that does not exist and may not be created.
fn missing(external_name: Option<&str>) -> CloudError {
    CloudError::terminal(
        "NotFound",
        format!(
            "external resource {} does not exist, and the management policies do not allow creating it",
            external_name.unwrap_or("(no external-name annotation)")
        ),
    )
}

#[cfg(test)]
mod tests {
    use driftless_aws::s3::bucket::BucketField;
    use driftless_aws::Bucket;
    use driftless_provider::FieldDiff;

    use super::*;

    fn policies(p: &[ManagementPolicy]) -> ManagedFields {
        ManagedFields {
            management_policies: p.to_vec(),
            ..ManagedFields::default()
        }
    }

    fn differing(field: BucketField) -> Observation<Bucket> {
        let mut o = Observation::exists("b");
        o.diff.push(FieldDiff::new(field, "have", "want"));
        o
    }

    #[test]
    fn the_policies_decide_what_an_observation_leads_to() {
        use ManagementPolicy::*;
        let all = policies(&[All]);
        let observe = policies(&[Observe]);
        let absent = Observation::<Bucket>::absent();
        assert_eq!(decide(&absent, &all, None), Decision::Create);
        assert!(
            matches!(decide(&absent, &observe, Some("b")), Decision::Missing(e) if e.message.contains("external resource b does not exist"))
        );
        let same = Observation::<Bucket>::exists("b");
        assert_eq!(decide(&same, &all, None), Decision::UpToDate);
        assert_eq!(decide(&same, &observe, None), Decision::ObserveOnly);
        let drifted = differing(BucketField::Tags);
        assert_eq!(decide(&drifted, &all, None), Decision::Update);
        assert_eq!(decide(&drifted, &observe, None), Decision::ObserveOnly);
        assert_eq!(
            decide(&drifted, &policies(&[Observe, Create]), None),
            Decision::ObserveOnly
        );
        let moved = differing(BucketField::Region);
        assert!(
            matches!(decide(&moved, &all, None), Decision::Immutable(e) if e.code == "ImmutableField")
        );
    }
}
