//! One SOPS value: `ENC[AES256_GCM,data:..,iv:..,tag:..,type:..]`, opened
//! with the file's data key. AES-GCM here is RustCrypto's `aes-gcm`, because
//! sops uses 32-byte IVs and aws-lc-rs's AEAD takes 12-byte nonces only.

use std::sync::LazyLock;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine;
use regex::Regex;
use zeroize::Zeroizing;

use super::tree::Scalar;

/// The file's 32-byte data key; wiped when dropped.
pub(crate) struct DataKey(pub(crate) Zeroizing<Vec<u8>>);

/// sops' own pattern (aes/cipher.go), unanchored at the end as there.
static ENC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]").expect("valid regex")
});

pub(crate) const PREFIX: &str = "ENC[AES256_GCM,";

#[derive(Debug, PartialEq)]
pub(crate) struct Encrypted {
    pub(crate) data: Vec<u8>,
    pub(crate) iv: Vec<u8>,
    pub(crate) tag: Vec<u8>,
    pub(crate) kind: String,
}

/// Why a value cannot be opened; the caller adds where it is.
#[derive(Debug, PartialEq)]
pub(crate) enum OpenError {
    /// Not in the ENC[...] format (the text itself is never repeated: it may be plaintext).
    Format(&'static str),
    /// AES-GCM refused: wrong key, changed ciphertext or moved to another key path.
    Authentication,
    /// Decrypted, but not a value of its declared type.
    Type(String),
}

pub(crate) fn parse(text: &str) -> Result<Encrypted, OpenError> {
    let caps = ENC
        .captures(text)
        .ok_or(OpenError::Format("not a sops ENC[AES256_GCM,...] value"))?;
    let b64 = |i: usize, what: &'static str| {
        base64::engine::general_purpose::STANDARD
            .decode(&caps[i])
            .map_err(|_| OpenError::Format(what))
    };
    Ok(Encrypted {
        data: b64(1, "its data is not base64")?,
        iv: b64(2, "its iv is not base64")?,
        tag: b64(3, "its tag is not base64")?,
        kind: caps[4].to_string(),
    })
}

/// The additional data AES-GCM authenticates: the key path (list indices
/// left out) joined by `:`, with a trailing `:`.
pub(crate) fn aad(keys: &[String]) -> String {
    let mut out = keys.join(":");
    out.push(':');
    out
}

/// Decrypts one value; `Scalar` typed as sops' `type:` says.
pub(crate) fn open(text: &str, key: &DataKey, aad: &str) -> Result<Scalar, OpenError> {
    let enc = parse(text)?;
    let plain = Zeroizing::new(open_bytes(&enc, key, aad)?);
    typed(&enc.kind, &plain)
}

fn open_bytes(enc: &Encrypted, key: &DataKey, aad: &str) -> Result<Vec<u8>, OpenError> {
    if enc.iv.len() != 32 || enc.tag.len() != 16 {
        return Err(OpenError::Format("its iv or tag has the wrong length"));
    }
    let cipher = AesGcm::<Aes256, U32>::new_from_slice(&key.0)
        .map_err(|_| OpenError::Format("the data key is not 32 bytes"))?;
    let mut sealed = Vec::with_capacity(enc.data.len() + 16);
    sealed.extend_from_slice(&enc.data);
    sealed.extend_from_slice(&enc.tag);
    let payload = Payload {
        msg: &sealed,
        aad: aad.as_bytes(),
    };
    cipher
        .decrypt(Nonce::<U32>::from_slice(&enc.iv), payload)
        .map_err(|_| OpenError::Authentication)
}

fn typed(kind: &str, plain: &[u8]) -> Result<Scalar, OpenError> {
    let text = std::str::from_utf8(plain)
        .map_err(|_| OpenError::Type(format!("its {kind} value is not UTF-8")))?;
    let bad = || OpenError::Type(format!("it does not hold a valid {kind}"));
    Ok(match kind {
        "str" | "bytes" | "time" => Scalar::Str(text.to_string()),
        "int" => Scalar::Int(text.parse().map_err(|_| bad())?),
        "float" => Scalar::Float(text.parse().map_err(|_| bad())?),
        // Go's strconv.ParseBool.
        "bool" => Scalar::Bool(match text {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            _ => return Err(bad()),
        }),
        "comment" => {
            return Err(OpenError::Type(
                "a comment stands where a value should".into(),
            ))
        }
        other => return Err(OpenError::Type(format!("unknown type {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::AeadCore;

    fn seal(key: &DataKey, plain: &str, aad: &str, kind: &str) -> String {
        let cipher = AesGcm::<Aes256, U32>::new_from_slice(&key.0).unwrap();
        let iv = AesGcm::<Aes256, U32>::generate_nonce(&mut aes_gcm::aead::OsRng);
        let out = cipher
            .encrypt(
                &iv,
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .unwrap();
        let (data, tag) = out.split_at(out.len() - 16);
        let b = |x: &[u8]| base64::engine::general_purpose::STANDARD.encode(x);
        format!(
            "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
            b(data),
            b(&iv),
            b(tag)
        )
    }

    fn key() -> DataKey {
        DataKey(Zeroizing::new(vec![7; 32]))
    }

    #[test]
    fn enc_values_parse() {
        let e = parse("ENC[AES256_GCM,data:ZB4=,iv:AAAA,tag:AAAA,type:str]").unwrap();
        assert_eq!((e.data, e.kind.as_str()), (vec![0x64, 0x1e], "str"));
        assert_eq!(
            parse("hunter2"),
            Err(OpenError::Format("not a sops ENC[AES256_GCM,...] value"))
        );
        assert!(parse("ENC[AES256_GCM,data:!!,iv:AAAA,tag:AAAA,type:str]").is_err());
    }

    #[test]
    fn the_key_path_is_the_additional_data() {
        let keys = ["data".to_string(), "password".to_string()];
        assert_eq!(aad(&keys), "data:password:");
        assert_eq!(aad(&[]), ":");
        let v = seal(&key(), "hunter2", "data:password:", "str");
        assert_eq!(
            open(&v, &key(), "data:password:"),
            Ok(Scalar::Str("hunter2".into()))
        );
        // The same ciphertext under another key path is refused.
        assert_eq!(
            open(&v, &key(), "data:token:"),
            Err(OpenError::Authentication)
        );
        let other = DataKey(Zeroizing::new(vec![8; 32]));
        assert_eq!(
            open(&v, &other, "data:password:"),
            Err(OpenError::Authentication)
        );
    }

    #[test]
    fn types_follow_the_tag() {
        let k = key();
        assert_eq!(
            open(&seal(&k, "42", "a:", "int"), &k, "a:"),
            Ok(Scalar::Int(42))
        );
        assert_eq!(
            open(&seal(&k, "1.5", "a:", "float"), &k, "a:"),
            Ok(Scalar::Float(1.5))
        );
        assert_eq!(
            open(&seal(&k, "True", "a:", "bool"), &k, "a:"),
            Ok(Scalar::Bool(true))
        );
        assert!(matches!(
            open(&seal(&k, "x", "a:", "int"), &k, "a:"),
            Err(OpenError::Type(_))
        ));
    }
}
