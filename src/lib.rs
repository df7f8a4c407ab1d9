//! The driftless runtime. Each folder is one engine; none imports another in
//! a loop (arrows point down this list):
//!
//! - [`cli`]: the commands, and the `controller` process that composes the engines;
//! - [`push`]: `plan` / `apply` / `get` straight against the cloud, no cluster;
//! - [`tree`]: a GitSync or managed resource and what is under it, read from the cluster;
//! - [`gitsync`]: the GitSync kind and its pipeline (source, render, apply, prune, health);
//! - [`managed`]: the generic managed-resource controller and reconciler;
//! - [`decrypt`]: SOPS-encrypted objects opened with age identities (after render);
//! - [`render`]: a directory to objects (plain YAML, kustomize, helm), for GitSync and push mode;
//! - [`manifests`]: one `Manifest` type, one directory walker, offline validation;
//! - [`registry`]: the one list of provider kinds every caller visits;
//! - [`ops`]: settings, metrics, notifications, leader election, HTTP, shutdown;
//! - [`conditions`]: condition bookkeeping shared by every kind;
//! - [`http_client`]: the one outgoing HTTP client builder.
//!
//! No kind-specific code lives here: kinds come from the provider crates
//! through [`registry`].

pub mod cli;
pub mod conditions;
pub mod decrypt;
pub mod gitsync;
pub mod http_client;
pub mod managed;
pub mod manifests;
pub mod ops;
pub mod push;
pub mod registry;
pub mod render;
pub mod tree;

pub use ops::settings::Settings;

/// The field manager of every write driftless makes.
pub const FIELD_MANAGER: &str = "driftless";
/// The finalizer on every managed resource.
pub const FINALIZER: &str = "driftless.dev/finalizer";
