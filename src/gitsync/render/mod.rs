//! Render: the objects a revision's path stands for. A seam: plain YAML
//! today; kustomize, helm and SOPS decryption plug in behind [`Renderer`]
//! without touching the rest of the pipeline.

pub mod plain;

use std::path::Path;

use super::source;
pub use crate::manifests::{Manifest, ManifestError, Origin};

/// Turns a directory of a checkout into objects, each with its origin.
pub trait Renderer: Send + Sync {
    /// How status messages name this renderer (e.g. `plain YAML`).
    fn name(&self) -> &'static str;
    /// The objects under `path` (relative to `root`, the checkout). Any
    /// problem refuses the whole revision, naming file and line.
    fn render(&self, root: &Path, path: &str) -> Result<Vec<Manifest>, ManifestError>;
}

/// The renderer for `path`: the only one today is plain YAML.
pub fn for_path(_root: &Path, _path: &str) -> &'static dyn Renderer {
    &plain::Plain
}

/// Checks out commit `sha` of the bare clone `dir` and renders its `path`.
pub fn checkout_and_render(
    dir: &Path,
    sha: &str,
    path: &str,
) -> Result<Vec<Manifest>, ManifestError> {
    let shown = if path.is_empty() { "." } else { path };
    let checkout = source::checkout(dir, sha, path)
        .map_err(|reason| ManifestError::new(&Origin::file(shown), reason))?;
    for_path(checkout.root(), path).render(checkout.root(), path)
}
