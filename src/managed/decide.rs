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
    /// Exists and matches the spec (or only observed: the policies forbid updates).
    Observe,
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
    if observed.up_to_date() || !policies.allows(ManagementPolicy::Update) {
        return Decision::Observe;
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
