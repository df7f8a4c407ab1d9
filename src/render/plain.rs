//! The plain-YAML renderer: the files of the path as they are, read by
//! the one loader (every `.yaml`/`.yml` file, multi-document files and
//! `kind: List`, each object with its file:line:col).

use super::Request;
use crate::manifests::{self, Manifest, ManifestError};

/// The objects of the files under `req.path`.
pub fn render(req: &Request<'_>) -> Result<Vec<Manifest>, ManifestError> {
    manifests::load_dir(req.root, req.path)
}
