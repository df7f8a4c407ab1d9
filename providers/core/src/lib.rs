//! The provider contract of driftless.
//!
//! A provider (one crate per cloud) defines its managed kinds with
//! [`managed_resource!`] and implements [`External`] for each of them: four
//! idempotent operations, observe / create / update / delete. Everything else
//! (finalizers, conditions, events, policies, references, requeue and backoff)
//! belongs to the generic reconciler in the `driftless` runtime, which never
//! knows which kind it drives.

pub mod calls;
pub mod contract;
pub mod managed;
pub mod references;
pub mod tenancy;

pub use calls::CallCounter;
pub use contract::*;
pub use managed::*;
pub use references::*;
pub use tenancy::{AllowedNamespaces, PROVIDER_CONFIG_NOT_ALLOWED};

/// Re-exports used by [`managed_resource!`] so that provider crates do not need
/// to name these crates themselves.
#[doc(hidden)]
pub mod __private {
    pub use kube;
    pub use schemars;
    pub use serde;
}
