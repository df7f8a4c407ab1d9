//! Decryption of SOPS-encrypted manifests (age identities), after rendering
//! and before dry-run and apply. Plaintext stays in memory: nothing here
//! writes, logs or puts a value in an error message.

mod enc;
mod identities;
pub mod sops;
mod tree;

pub use identities::{Identities, AGE_KEY_SUFFIX};
pub use sops::{decrypt, is_encrypted, DecryptError, SopsFile};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::manifests::{Manifest, ManifestError, Origin};

/// The largest SOPS file read (Flux's cap).
const MAX_SOPS_FILE: u64 = 5 << 20;

/// The decrypt step: every SOPS-encrypted object of `manifests` decrypted
/// with `ids`, checked against the file it came from (`root` joined with
/// its origin: the MAC covers the file as written). Plain objects pass
/// through. Without identities an encrypted object is refused, and `hint`
/// says how to give them. Messages name the file and why, never a value.
pub fn manifests(
    manifests: Vec<Manifest>,
    root: &Path,
    ids: Option<&Identities>,
    hint: &str,
) -> Result<Vec<Manifest>, ManifestError> {
    let mut files: HashMap<PathBuf, SopsFile> = HashMap::new();
    let mut out = Vec::with_capacity(manifests.len());
    for mut m in manifests {
        if !is_encrypted(&m.value) {
            out.push(m);
            continue;
        }
        // A whole-file encryption leaves even kind and name as ciphertext.
        let object = Some(m.describe()).filter(|d| !d.contains("ENC["));
        let fail = |why: String| ManifestError {
            origin: m.origin.clone(),
            object: object.clone(),
            message: why,
        };
        let Some(ids) = ids else {
            return Err(fail(format!(
                "encrypted with SOPS, and no age identity is given: {hint}"
            )));
        };
        let file = root.join(&m.origin.file);
        if !files.contains_key(&file) {
            let text = read_capped(&file, &m.origin).map_err(&fail)?;
            let opened =
                SopsFile::open(&text, ids).map_err(|e| fail(format!("cannot decrypt: {e}")))?;
            files.insert(file.clone(), opened);
        }
        m.value = files[&file]
            .decrypt(&m.value)
            .map_err(|e| fail(format!("cannot decrypt: {e}")))?;
        out.push(m);
    }
    Ok(out)
}

/// The text of a SOPS file, within the cap.
fn read_capped(file: &Path, origin: &Origin) -> Result<String, String> {
    let size = std::fs::metadata(file)
        .map_err(|e| format!("cannot read {}: {e}", origin.file.display()))?
        .len();
    if size > MAX_SOPS_FILE {
        return Err(format!(
            "a SOPS file of {size} bytes is over the {} MiB limit",
            MAX_SOPS_FILE >> 20
        ));
    }
    std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", origin.file.display()))
}
