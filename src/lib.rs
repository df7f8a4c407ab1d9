//! The driftless runtime: the CLI's commands, the controller manager and the
//! generic managed-resource reconciler. No kind-specific code lives here:
//! kinds come from the provider crates through [`driftless_provider::KindVisitor`].

pub mod conditions;
pub mod controller;
pub mod crds;
pub mod gitsync;
pub mod reconciler;
pub mod resolve;
pub mod settings;

pub use settings::Settings;

/// The field manager of every write driftless makes.
pub const FIELD_MANAGER: &str = "driftless";
/// The finalizer on every managed resource.
pub const FINALIZER: &str = "driftless.dev/finalizer";
