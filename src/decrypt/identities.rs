//! age identities (X25519, what `age-keygen` makes), from a Secret or from
//! sops' own `SOPS_AGE_KEY` / `SOPS_AGE_KEY_FILE` text. Messages name keys
//! and line numbers, never key material.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use age::x25519;

/// The suffix every Secret key holding an age identity must have (Flux's).
pub const AGE_KEY_SUFFIX: &str = ".agekey";
const SECRET_KEY_PREFIX: &str = "AGE-SECRET-KEY-1";

/// age identities, and where they came from (for messages).
pub struct Identities {
    pub(crate) keys: Vec<x25519::Identity>,
    /// "secret ns/name", "SOPS_AGE_KEY", ...
    pub(crate) source: String,
    /// Secret keys that hold an age identity but are not named `*.agekey`.
    pub(crate) misnamed: Vec<String>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities")
            .field("source", &self.source)
            .field("count", &self.keys.len())
            .field("misnamed", &self.misnamed)
            .finish()
    }
}

impl Identities {
    /// Every key of a Secret's data ending in `.agekey`. `secret` is
    /// "ns/name". Refused when that gives no identity, naming any key that
    /// holds one under another name (flux2#5154: `age.key`).
    pub fn from_secret_data(
        secret: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, String> {
        let mut keys = Vec::new();
        let mut misnamed = Vec::new();
        for (name, bytes) in data {
            if name.ends_with(AGE_KEY_SUFFIX) {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| format!("key {name} of secret {secret} is not UTF-8 text"))?;
                let parsed = Self::from_text(&format!("key {name} of secret {secret}"), text)?;
                if parsed.is_empty() {
                    return Err(format!(
                        "key {name} of secret {secret} holds no age identity"
                    ));
                }
                keys.extend(parsed.keys);
            } else if looks_like_identity(bytes) {
                misnamed.push(name.clone());
            }
        }
        if keys.is_empty() {
            return Err(match misnamed.first() {
                Some(name) => format!(
                    "key {name} of secret {secret} holds an age identity but is not named *{AGE_KEY_SUFFIX}"
                ),
                None => format!("secret {secret} has no key ending in {AGE_KEY_SUFFIX}"),
            });
        }
        Ok(Self {
            keys,
            source: format!("secret {secret}"),
            misnamed,
        })
    }

    /// `AGE-SECRET-KEY-1...` lines; blank lines and `#` comments are allowed
    /// (age-keygen's output). `source` names the text in messages.
    pub fn from_text(source: &str, text: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            if line.starts_with("AGE-PLUGIN-") {
                return Err(format!(
                    "line {n} of {source} is an age plugin identity, which driftless does not support"
                ));
            }
            if !line.starts_with(SECRET_KEY_PREFIX) {
                return Err(format!("line {n} of {source} is not an age identity"));
            }
            let key = x25519::Identity::from_str(line).map_err(|why| {
                format!("line {n} of {source} is not a valid age identity ({why})")
            })?;
            keys.push(key);
        }
        Ok(Self {
            keys,
            source: source.to_string(),
            misnamed: Vec::new(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The public recipients (`age1...`), for messages and `keys public`.
    pub fn recipients(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.to_public().to_string())
            .collect()
    }
}

fn looks_like_identity(bytes: &[u8]) -> bool {
    let needle = SECRET_KEY_PREFIX.as_bytes();
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn keygen() -> (String, String) {
        let k = x25519::Identity::generate();
        let text = format!(
            "# created: 2026-12-01T00:00:00Z\n# public key: {}\n{}\n",
            k.to_public(),
            k.to_string().expose_secret()
        );
        (text, k.to_public().to_string())
    }

    #[test]
    fn age_keygen_output_parses() {
        let (text, public) = keygen();
        let ids = Identities::from_text("SOPS_AGE_KEY", &text).unwrap();
        assert_eq!(ids.recipients(), [public]);
        assert!(Identities::from_text("t", "# only a comment\n")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bad_lines_are_named_without_their_content() {
        let err = Identities::from_text("t", "\nAGE-SECRET-KEY-1NOTBECH32\n").unwrap_err();
        assert!(
            err.starts_with("line 2 of t is not a valid age identity"),
            "{err}"
        );
        assert!(!err.contains("NOTBECH32"), "{err}");
        let err = Identities::from_text("t", "hello\n").unwrap_err();
        assert_eq!(err, "line 1 of t is not an age identity");
    }

    #[test]
    fn secret_keys_must_end_in_agekey() {
        let (text, _) = keygen();
        let misnamed = BTreeMap::from([("age.key".to_string(), text.clone().into_bytes())]);
        let err = Identities::from_secret_data("ns/x", &misnamed).unwrap_err();
        assert_eq!(
            err,
            "key age.key of secret ns/x holds an age identity but is not named *.agekey"
        );
        let empty = BTreeMap::from([("other".to_string(), b"x".to_vec())]);
        let err = Identities::from_secret_data("ns/x", &empty).unwrap_err();
        assert_eq!(err, "secret ns/x has no key ending in .agekey");

        let (second, _) = keygen();
        let both = BTreeMap::from([
            ("age.key".to_string(), text.into_bytes()),
            ("main.agekey".to_string(), second.into_bytes()),
        ]);
        let ids = Identities::from_secret_data("ns/x", &both).unwrap();
        assert_eq!(ids.keys.len(), 1);
        assert_eq!(ids.misnamed, ["age.key"]);
        assert_eq!(ids.source, "secret ns/x");
        assert!(!format!("{ids:?}").contains("AGE-SECRET"));
    }
}
