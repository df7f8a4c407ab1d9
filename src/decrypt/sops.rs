//! SOPS files encrypted for age: data key, values, MAC.
//!
//! Our own decryptor, not the `rops` crate: rops 0.1.x is a young one-person
//! project that pulls serde_yaml (unmaintained), aws-sdk-kms, tokio and
//! age 0.11 by default, reads one document per file, and works on its own
//! file model rather than on rendered objects. What we need is a few hundred
//! lines: the `age` crate for the data key, AES-256-GCM for values, SHA-512
//! for the MAC.
//!
//! Order. sops hashes every value of the file (all documents) in document
//! order, so the MAC can only be checked on the file as written; kustomize
//! and `serde_json` re-order keys. [`SopsFile::open`] verifies the whole
//! file text; [`SopsFile::decrypt`] then opens a rendered object from that
//! file, wherever its keys moved, provided its encrypted values are exactly
//! the file's (see its doc). Flux instead skips the MAC (kustomize-controller's
//! `checkSopsMac` is off) and decrypts the re-ordered object value by value.

use std::fmt;
use std::io::Read;

use age::armor::ArmoredReader;
use aws_lc_rs::digest;
use regex::Regex;
use serde_json::{Number, Value};
use zeroize::Zeroizing;

use super::enc::{self, DataKey, OpenError};
use super::identities::{Identities, AGE_KEY_SUFFIX};
use super::tree::{self, Node, Scalar};

/// sops' `MACOnlyEncryptedInitialization`: a MAC over encrypted values only
/// starts with these bytes, so it never equals a MAC over all values.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];
const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";
/// Key types sops knows besides age, for the "unsupported" message.
const OTHER_KEY_TYPES: [&str; 5] = ["kms", "pgp", "gcp_kms", "azure_kv", "hc_vault"];

/// Why a SOPS file or object cannot be decrypted. Never holds plaintext:
/// values are named by their path only.
#[derive(Debug, Clone, PartialEq)]
pub enum DecryptError {
    /// No identity opens the data key.
    NoIdentity {
        source: String,
        recipients: Vec<String>,
        misnamed: Vec<String>,
    },
    MacMismatch,
    /// AES-GCM refused a value: changed, or moved to another key path.
    Tampered(String),
    Unsupported(String),
    /// Not a valid SOPS file, or a rendered object that is not its file's.
    Invalid(String),
}

impl fmt::Display for DecryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecryptError::NoIdentity {
                source,
                recipients,
                misnamed,
            } => {
                write!(
                    f,
                    "no age identity in {source} matches the recipients {}",
                    recipients.join(", ")
                )?;
                match misnamed.as_slice() {
                    [] => Ok(()),
                    [one] => write!(f, " (its key {one} is not named *{AGE_KEY_SUFFIX})"),
                    many => write!(
                        f,
                        " (its keys {} are not named *{AGE_KEY_SUFFIX})",
                        many.join(", ")
                    ),
                }
            }
            DecryptError::MacMismatch => {
                f.write_str("MAC mismatch: the file was changed after encryption")
            }
            DecryptError::Tampered(path) => {
                write!(f, "value at {path}: authentication failed (tampered?)")
            }
            DecryptError::Unsupported(why) => write!(f, "unsupported: {why}"),
            DecryptError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for DecryptError {}

/// Whether a document (a rendered object) is SOPS-encrypted: a top-level
/// `sops` mapping with a non-empty `mac` (Flux's test).
pub fn is_encrypted(value: &Value) -> bool {
    value
        .get("sops")
        .and_then(|s| s.get("mac"))
        .and_then(Value::as_str)
        .is_some_and(|m| !m.is_empty())
}

/// Decrypts one rendered object of the SOPS file whose text is `source_text`
/// (its origin file, as written). See [`SopsFile::decrypt`].
pub fn decrypt(value: &Value, source_text: &str, ids: &Identities) -> Result<Value, DecryptError> {
    SopsFile::open(source_text, ids)?.decrypt(value)
}

/// A SOPS file whose MAC verified, its plaintext in memory only. Open a file
/// once and decrypt every rendered object that came from it.
pub struct SopsFile {
    mac: String,
    rules: Rules,
    docs: Vec<Vec<Leaf>>,
}

impl fmt::Debug for SopsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SopsFile")
            .field("documents", &self.docs.len())
            .finish_non_exhaustive()
    }
}

/// One encrypted value of the file: where, as written, and its plaintext.
struct Leaf {
    at: Vec<Seg>,
    enc: String,
    plain: Value,
}

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

impl SopsFile {
    /// Verifies a whole SOPS file (YAML, one or more documents, or JSON) the
    /// way `sops --decrypt` does: metadata from the first document, the data
    /// key from an age recipient, every value and then the MAC over all
    /// documents in document order.
    pub fn open(text: &str, ids: &Identities) -> Result<Self, DecryptError> {
        let docs: Vec<Node> = tree::parse(text)
            .map_err(|why| DecryptError::Invalid(format!("cannot read the file: {why}")))?
            .into_iter()
            .flatten()
            .collect();
        let meta = docs
            .first()
            .and_then(|d| d.get("sops"))
            .ok_or_else(|| invalid("the file's first document has no sops metadata"))?;
        let metadata = Metadata::read(meta)?;
        let key = data_key(&metadata.recipients, ids)?;
        let mut walk = Walk::new(&metadata, &key);
        let docs = docs
            .iter()
            .map(|doc| walk.document(doc))
            .collect::<Result<Vec<_>, _>>()?;
        walk.check_mac(&metadata, &key)?;
        Ok(Self {
            mac: metadata.mac,
            rules: metadata.rules,
            docs,
        })
    }

    /// Decrypts a rendered object that came from this file: the object as
    /// kustomize (or driftless's own parser) produced it, keys in any order.
    /// Its `sops` block must be this file's, and its encrypted values exactly
    /// one document's (same values at the same paths, none added, dropped or
    /// moved; every value the file's rules say is encrypted is one of them).
    /// Plain fields may differ: kustomize sets namespaces, labels, prefixes.
    /// Returns the object with its values decrypted and `sops` removed.
    pub fn decrypt(&self, rendered: &Value) -> Result<Value, DecryptError> {
        let mac = rendered
            .get("sops")
            .and_then(|s| s.get("mac"))
            .and_then(Value::as_str);
        if mac != Some(self.mac.as_str()) {
            return Err(invalid(
                "the object's sops metadata is not its source file's",
            ));
        }
        let mut found = Vec::new();
        collect_enc(rendered, &mut Vec::new(), &mut found);
        let doc = self.document_of(&found)?;
        let mut out = rendered.clone();
        if let Some(map) = out.as_object_mut() {
            map.remove("sops");
        }
        for leaf in doc {
            *pointer_mut(&mut out, &leaf.at).expect("collected from this value") =
                leaf.plain.clone();
        }
        self.check_rules(rendered, doc)?;
        Ok(out)
    }

    /// The document whose encrypted values are exactly `found` (path, text).
    fn document_of(&self, found: &[(Vec<Seg>, String)]) -> Result<&[Leaf], DecryptError> {
        let same = |doc: &[Leaf]| {
            doc.len() == found.len()
                && doc
                    .iter()
                    .all(|l| found.iter().any(|(at, e)| *e == l.enc && *at == l.at))
        };
        if let Some(doc) = self.docs.iter().find(|d| same(d)) {
            return Ok(doc);
        }
        // Explain against the document that shares the most values.
        let shared = |doc: &[Leaf]| {
            doc.iter()
                .filter(|l| found.iter().any(|(_, e)| *e == l.enc))
                .count()
        };
        let Some(best) = self
            .docs
            .iter()
            .max_by_key(|d| shared(d))
            .filter(|d| shared(d) > 0)
        else {
            return Err(invalid(
                "none of the object's encrypted values is in its source file (was the file changed?)",
            ));
        };
        for leaf in best {
            match found.iter().find(|(_, e)| *e == leaf.enc) {
                None => return Err(invalid(format!("the encrypted value at {} of the source file is missing from the rendered object", show(&leaf.at)))),
                Some((at, _)) if *at != leaf.at => return Err(invalid(format!("the encrypted value at {} of the source file was moved to {}", show(&leaf.at), show(at)))),
                Some(_) => {}
            }
        }
        let extra = found
            .iter()
            .find(|(_, e)| !best.iter().any(|l| l.enc == *e));
        let at = extra.map_or_else(String::new, |(at, _)| show(at));
        Err(invalid(format!("the rendered object holds an encrypted value at {at} that its source document does not")))
    }

    /// Every value the rules say is encrypted must be one of the verified
    /// ones: a kustomize patch must not slip a plain value in among them.
    fn check_rules(&self, rendered: &Value, doc: &[Leaf]) -> Result<(), DecryptError> {
        let mut keys = Vec::new();
        let mut at = Vec::new();
        let Some(map) = rendered.as_object() else {
            return Ok(());
        };
        for (k, v) in map.iter().filter(|(k, _)| k.as_str() != "sops") {
            keys.push(k.clone());
            at.push(Seg::Key(k.clone()));
            self.check_value(v, &mut keys, &mut at, doc)?;
            keys.pop();
            at.pop();
        }
        Ok(())
    }

    fn check_value(
        &self,
        v: &Value,
        keys: &mut Vec<String>,
        at: &mut Vec<Seg>,
        doc: &[Leaf],
    ) -> Result<(), DecryptError> {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    keys.push(k.clone());
                    at.push(Seg::Key(k.clone()));
                    self.check_value(v, keys, at, doc)?;
                    keys.pop();
                    at.pop();
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    at.push(Seg::Index(i));
                    self.check_value(v, keys, at, doc)?;
                    at.pop();
                }
            }
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            _ => {
                if self.rules.encrypts(keys) && !doc.iter().any(|l| l.at == *at) {
                    return Err(invalid(format!("the value at {} is not encrypted, but the file's rules say it must be (added by a kustomize patch or transformer?)", show(at))));
                }
            }
        }
        Ok(())
    }
}

fn invalid(why: impl Into<String>) -> DecryptError {
    DecryptError::Invalid(why.into())
}

/// `data.password`, `spec.list[1].name`.
fn show(at: &[Seg]) -> String {
    let mut out = String::new();
    for seg in at {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Every string that looks encrypted, with its path (`sops` left out).
fn collect_enc(v: &Value, at: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, String)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if at.is_empty() && k == "sops" {
                    continue;
                }
                at.push(Seg::Key(k.clone()));
                collect_enc(v, at, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                at.push(Seg::Index(i));
                collect_enc(v, at, out);
                at.pop();
            }
        }
        Value::String(s) if s.starts_with(enc::PREFIX) => out.push((at.clone(), s.clone())),
        _ => {}
    }
}

fn pointer_mut<'a>(v: &'a mut Value, at: &[Seg]) -> Option<&'a mut Value> {
    at.iter().try_fold(v, |v, seg| match seg {
        Seg::Key(k) => v.get_mut(k.as_str()),
        Seg::Index(i) => v.get_mut(*i),
    })
}

/// Which values are encrypted: sops' `shouldBeEncrypted`, one rule per file.
enum Rules {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(Regex),
    EncryptedRegex(Regex),
}

impl Rules {
    fn encrypts(&self, keys: &[String]) -> bool {
        match self {
            Rules::UnencryptedSuffix(s) => !keys.iter().any(|k| k.ends_with(s.as_str())),
            Rules::EncryptedSuffix(s) => keys.iter().any(|k| k.ends_with(s.as_str())),
            Rules::UnencryptedRegex(r) => !keys.iter().any(|k| r.is_match(k)),
            Rules::EncryptedRegex(r) => keys.iter().any(|k| r.is_match(k)),
        }
    }
}

struct Metadata {
    recipients: Vec<(String, String)>,
    rules: Rules,
    mac_only_encrypted: bool,
    lastmodified: String,
    mac: String,
}

impl Metadata {
    fn read(sops: &Node) -> Result<Self, DecryptError> {
        let text = |k: &str| sops.get(k).and_then(Node::str).filter(|s| !s.is_empty());
        let mac = text("mac").ok_or_else(|| invalid("the sops metadata has no mac"))?;
        let lastmodified =
            text("lastmodified").ok_or_else(|| invalid("the sops metadata has no lastmodified"))?;
        for k in ["encrypted_comment_regex", "unencrypted_comment_regex"] {
            if text(k).is_some() {
                return Err(DecryptError::Unsupported(format!(
                    "{k} (driftless does not read YAML comments)"
                )));
            }
        }
        let mac_only_encrypted = matches!(
            sops.get("mac_only_encrypted"),
            Some(Node::Scalar(Scalar::Bool(true)))
        );
        Ok(Self {
            recipients: recipients(sops)?,
            rules: rules(
                text("unencrypted_suffix"),
                text("encrypted_suffix"),
                text("unencrypted_regex"),
                text("encrypted_regex"),
            )?,
            mac_only_encrypted,
            lastmodified: go_rfc3339(lastmodified),
            mac: mac.to_string(),
        })
    }
}

fn rules(
    unencrypted_suffix: Option<&str>,
    encrypted_suffix: Option<&str>,
    unencrypted_regex: Option<&str>,
    encrypted_regex: Option<&str>,
) -> Result<Rules, DecryptError> {
    let regex = |r: &str| {
        Regex::new(r)
            .map_err(|_| invalid("the file's encryption regex is not a valid regular expression"))
    };
    match (unencrypted_suffix, encrypted_suffix, unencrypted_regex, encrypted_regex) {
        (None, None, None, None) => Ok(Rules::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.into())),
        (Some(s), None, None, None) => Ok(Rules::UnencryptedSuffix(s.into())),
        (None, Some(s), None, None) => Ok(Rules::EncryptedSuffix(s.into())),
        (None, None, Some(r), None) => Ok(Rules::UnencryptedRegex(regex(r)?)),
        (None, None, None, Some(r)) => Ok(Rules::EncryptedRegex(regex(r)?)),
        _ => Err(invalid("the sops metadata sets more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex and unencrypted_regex")),
    }
}

/// Go formats the parsed `lastmodified` back with `time.RFC3339`, which is
/// the additional data of the MAC: whole seconds, `Z` for UTC.
fn go_rfc3339(text: &str) -> String {
    let (head, zone) = match text
        .rfind(['Z', 'z', '+'])
        .or_else(|| text.rfind('-').filter(|&i| i > 10))
    {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let head = head.split_once('.').map_or(head, |(whole, _)| whole);
    let zone = match zone {
        "z" | "+00:00" | "-00:00" => "Z",
        z => z,
    };
    format!("{head}{zone}")
}

/// (recipient, armored data key) of every age entry, top level or in key groups.
fn recipients(sops: &Node) -> Result<Vec<(String, String)>, DecryptError> {
    let groups = match sops.get("key_groups") {
        Some(Node::Seq(groups)) if groups.len() > 1 => {
            return Err(DecryptError::Unsupported(
                "Shamir key groups (more than one key group)".into(),
            ))
        }
        Some(Node::Seq(groups)) => groups.iter().collect(),
        _ => vec![sops],
    };
    let mut out = Vec::new();
    let mut others: Vec<&str> = Vec::new();
    for group in groups {
        if let Some(Node::Seq(entries)) = group.get("age") {
            for e in entries {
                match (
                    e.get("recipient").and_then(Node::str),
                    e.get("enc").and_then(Node::str),
                ) {
                    (Some(r), Some(enc)) => out.push((r.to_string(), enc.to_string())),
                    _ => {
                        return Err(invalid(
                            "an age entry of the sops metadata lacks recipient or enc",
                        ))
                    }
                }
            }
        }
        others.extend(
            OTHER_KEY_TYPES
                .iter()
                .filter(|k| matches!(group.get(k), Some(Node::Seq(s)) if !s.is_empty()))
                .copied(),
        );
    }
    if out.is_empty() {
        let why = match others.as_slice() {
            [] => "the file has no age recipient".to_string(),
            types => format!("this file is encrypted with {} only", types.join("/")),
        };
        return Err(DecryptError::Unsupported(why));
    }
    Ok(out)
}

/// The data key, from the first age entry an identity opens.
fn data_key(recipients: &[(String, String)], ids: &Identities) -> Result<DataKey, DecryptError> {
    let identities = || ids.keys.iter().map(|k| k as &dyn age::Identity);
    for (recipient, armored) in recipients {
        let malformed = || {
            invalid(format!(
                "the data key for recipient {recipient} is not a valid age file"
            ))
        };
        let decryptor =
            age::Decryptor::new(ArmoredReader::new(armored.as_bytes())).map_err(|_| malformed())?;
        match decryptor.decrypt(identities()) {
            Ok(mut reader) => {
                let mut key = Zeroizing::new(Vec::with_capacity(32));
                reader.read_to_end(&mut key).map_err(|_| malformed())?;
                if key.len() != 32 {
                    return Err(invalid(format!(
                        "the data key for recipient {recipient} is not 32 bytes"
                    )));
                }
                return Ok(DataKey(key));
            }
            Err(age::DecryptError::NoMatchingKeys) => continue,
            Err(_) => return Err(malformed()),
        }
    }
    Err(DecryptError::NoIdentity {
        source: ids.source.clone(),
        recipients: recipients.iter().map(|(r, _)| r.clone()).collect(),
        misnamed: ids.misnamed.clone(),
    })
}

/// sops' `Tree.Decrypt`: every value in document order, opened when the
/// rules say it is encrypted, hashed into the MAC.
struct Walk<'a> {
    rules: &'a Rules,
    key: &'a DataKey,
    mac_only_encrypted: bool,
    hash: digest::Context,
    leaves: Vec<Leaf>,
}

impl<'a> Walk<'a> {
    fn new(metadata: &'a Metadata, key: &'a DataKey) -> Self {
        let mut hash = digest::Context::new(&digest::SHA512);
        if metadata.mac_only_encrypted {
            hash.update(&MAC_ONLY_ENCRYPTED_INIT);
        }
        Self {
            rules: &metadata.rules,
            key,
            mac_only_encrypted: metadata.mac_only_encrypted,
            hash,
            leaves: Vec::new(),
        }
    }

    /// Walks one document (its top-level `sops` left out); its encrypted values.
    fn document(&mut self, doc: &Node) -> Result<Vec<Leaf>, DecryptError> {
        let Node::Map(items) = doc else {
            return Err(invalid("a document of the file is not a mapping"));
        };
        let (mut keys, mut at) = (Vec::new(), Vec::new());
        for (k, v) in items.iter().filter(|(k, _)| k != "sops") {
            keys.push(k.clone());
            at.push(Seg::Key(k.clone()));
            self.node(v, &mut keys, &mut at)?;
            keys.pop();
            at.pop();
        }
        Ok(std::mem::take(&mut self.leaves))
    }

    fn node(
        &mut self,
        node: &Node,
        keys: &mut Vec<String>,
        at: &mut Vec<Seg>,
    ) -> Result<(), DecryptError> {
        match node {
            Node::Map(items) => {
                for (k, v) in items {
                    keys.push(k.clone());
                    at.push(Seg::Key(k.clone()));
                    self.node(v, keys, at)?;
                    keys.pop();
                    at.pop();
                }
            }
            Node::Seq(items) => {
                for (i, v) in items.iter().enumerate() {
                    at.push(Seg::Index(i));
                    self.node(v, keys, at)?;
                    at.pop();
                }
            }
            Node::Scalar(Scalar::Null) => {} // sops neither decrypts nor hashes nil
            Node::Scalar(s) => self.leaf(s, keys, at)?,
        }
        Ok(())
    }

    fn leaf(&mut self, s: &Scalar, keys: &[String], at: &[Seg]) -> Result<(), DecryptError> {
        let encrypted = self.rules.encrypts(keys);
        let value = if !encrypted {
            s.clone()
        } else {
            match s.as_str() {
                None => {
                    return Err(invalid(format!(
                        "value at {}: expected an encrypted value (a string)",
                        show(at)
                    )))
                }
                Some("") => s.clone(), // sops leaves empty strings as they are
                Some(text) => {
                    let value = enc::open(text, self.key, &enc::aad(keys))
                        .map_err(|e| open_error(e, at))?;
                    self.leaves.push(Leaf {
                        at: at.to_vec(),
                        enc: text.to_string(),
                        plain: to_json(&value, at)?,
                    });
                    value
                }
            }
        };
        if !self.mac_only_encrypted || encrypted {
            self.hash.update(&Zeroizing::new(value.mac_bytes()));
        }
        Ok(())
    }

    fn check_mac(self, metadata: &Metadata, key: &DataKey) -> Result<(), DecryptError> {
        let computed = hex_upper(self.hash.finish().as_ref());
        let stored =
            enc::open(&metadata.mac, key, &metadata.lastmodified).map_err(|e| match e {
                OpenError::Authentication => DecryptError::MacMismatch,
                _ => invalid("the sops mac is not a valid encrypted value"),
            })?;
        match stored {
            Scalar::Str(mac) if mac == computed => Ok(()),
            _ => Err(DecryptError::MacMismatch),
        }
    }
}

fn open_error(e: OpenError, at: &[Seg]) -> DecryptError {
    match e {
        OpenError::Authentication => DecryptError::Tampered(show(at)),
        OpenError::Format(why) => invalid(format!("value at {}: {why}", show(at))),
        OpenError::Type(why) => invalid(format!("value at {}: {why}", show(at))),
    }
}

/// A decrypted value as JSON; a float sops wrote for a JSON integer stays an integer.
fn to_json(s: &Scalar, at: &[Seg]) -> Result<Value, DecryptError> {
    Ok(match s {
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => Value::Bool(*b),
        Scalar::Int(i) => Value::Number((*i).into()),
        Scalar::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            Value::Number((*f as i64).into())
        }
        Scalar::Float(f) => Value::Number(
            Number::from_f64(*f)
                .ok_or_else(|| invalid(format!("value at {}: not a finite number", show(at))))?,
        ),
        Scalar::Str(s) => Value::String(s.clone()),
    })
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lastmodified_is_reformatted_as_go_does() {
        assert_eq!(go_rfc3339("2026-12-01T12:05:44Z"), "2026-12-01T12:05:44Z");
        assert_eq!(
            go_rfc3339("2026-12-01T12:05:44.123Z"),
            "2026-12-01T12:05:44Z"
        );
        assert_eq!(
            go_rfc3339("2026-12-01T12:05:44+00:00"),
            "2026-12-01T12:05:44Z"
        );
        assert_eq!(
            go_rfc3339("2026-12-01T12:05:44-05:00"),
            "2026-12-01T12:05:44-05:00"
        );
    }

    #[test]
    fn one_rule_decides_what_is_encrypted() {
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let default = rules(None, None, None, None).unwrap();
        assert!(default.encrypts(&keys(&["data", "password"])));
        assert!(!default.encrypts(&keys(&["note_unencrypted", "x"])));
        let regex = rules(None, None, None, Some("^(data|stringData)$")).unwrap();
        assert!(regex.encrypts(&keys(&["stringData", "password"])));
        assert!(!regex.encrypts(&keys(&["metadata", "name"])));
        let suffix = rules(None, Some("_enc"), None, None).unwrap();
        assert!(suffix.encrypts(&keys(&["spec", "token_enc"])));
        assert!(rules(Some("_u"), None, None, Some("x")).is_err());
    }

    #[test]
    fn paths_read_like_field_paths() {
        let at = [
            Seg::Key("extra".into()),
            Seg::Key("list".into()),
            Seg::Index(1),
            Seg::Key("two".into()),
        ];
        assert_eq!(show(&at), "extra.list[1].two");
    }

    #[test]
    fn encrypted_means_a_sops_block_with_a_mac() {
        assert!(is_encrypted(
            &serde_json::json!({"sops": {"mac": "ENC[...]"}})
        ));
        assert!(!is_encrypted(&serde_json::json!({"sops": {"mac": ""}})));
        assert!(!is_encrypted(&serde_json::json!({"kind": "Secret"})));
    }
}
