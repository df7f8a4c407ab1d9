//! The driftless runtime: the CLI's commands, the controller manager and the
//! generic managed-resource reconciler. No kind-specific code lives here:
//! kinds come from the provider crates through [`driftless_provider::KindVisitor`].

pub mod commands;
pub mod conditions;
pub mod controller;
pub mod crds;
pub mod election;
pub mod gitsync;
pub mod http;
pub mod leader;
pub mod manager;
pub mod manifests;
pub mod metrics;
pub mod notify;
pub mod passes;
pub mod push;
pub mod reconciler;
pub mod resolve;
pub mod settings;
pub mod validate;
pub mod waiters;

pub use settings::Settings;

/// The field manager of every write driftless makes.
pub const FIELD_MANAGER: &str = "driftless";
/// The finalizer on every managed resource.
pub const FINALIZER: &str = "driftless.dev/finalizer";
