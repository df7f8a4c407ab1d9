//! Decryption of SOPS-encrypted manifests (age identities), after rendering
//! and before dry-run and apply. Plaintext stays in memory: nothing here
//! writes, logs or puts a value in an error message.

mod enc;
mod identities;
pub mod sops;
mod tree;

pub use identities::{Identities, AGE_KEY_SUFFIX};
pub use sops::{decrypt, is_encrypted, DecryptError, SopsFile};
