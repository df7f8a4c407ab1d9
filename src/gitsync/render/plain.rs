//! The plain-YAML renderer: the files of the path as they are, read by
//! the one loader (every `.yaml`/`.yml` file, multi-document files and
//! `kind: List`, each object with its file:line:col).

use std::path::Path;

use super::Renderer;
use crate::manifests::{self, Manifest, ManifestError};

/// Plain YAML: the files as they are.
pub struct Plain;

impl Renderer for Plain {
    fn name(&self) -> &'static str {
        "plain YAML"
    }

    fn render(&self, root: &Path, path: &str) -> Result<Vec<Manifest>, ManifestError> {
        manifests::load_dir(root, path)
    }
}
