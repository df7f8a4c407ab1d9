//! Checking an SSH server's host key against OpenSSH known_hosts text.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// The result of checking a server's host key against known_hosts.
#[derive(Debug, PartialEq, Eq)]
pub enum HostKey {
    Known,
    /// No entry for this host and key type.
    Unknown,
    /// The host is listed with this key type, with another key.
    Mismatch,
    Revoked,
}

/// Checks `key` (the raw key blob) of type `kind` (e.g. `ssh-ed25519`) for
/// `host` against OpenSSH known_hosts text: plain (`host`, `[host]:port`,
/// comma-separated) and hashed (`|1|salt|hash`) host fields, `@revoked`.
/// Wildcards and `@cert-authority` lines are not supported and never match.
pub fn check_host_key(known_hosts: &str, host: &str, kind: &str, key: &[u8]) -> HostKey {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut result = HostKey::Unknown;
    for line in known_hosts.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let marker = first.strip_prefix('@');
        if marker.is_some() {
            first = fields.next().unwrap_or_default();
        }
        let (Some(line_kind), Some(line_key)) = (fields.next(), fields.next()) else {
            continue;
        };
        if marker == Some("cert-authority") || !host_matches(first, host) {
            continue;
        }
        let Ok(line_key) = b64.decode(line_key) else {
            continue;
        };
        if marker == Some("revoked") {
            if line_key == key {
                return HostKey::Revoked;
            }
            continue;
        }
        if line_kind != kind {
            continue;
        }
        if line_key == key {
            result = HostKey::Known;
        } else if result == HostKey::Unknown {
            result = HostKey::Mismatch;
        }
    }
    result
}

fn host_matches(patterns: &str, host: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
            return false;
        };
        mac.update(host.as_bytes());
        return mac.verify_slice(&hash).is_ok();
    }
    patterns.split(',').any(|p| {
        p == host
            || p.strip_prefix('[')
                .and_then(|rest| rest.split_once("]:"))
                .is_some_and(|(h, _port)| h == host)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_are_checked_against_known_hosts() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = b"the-host-key".to_vec();
        let other = b"another-key".to_vec();
        let k = b64.encode(&key);
        let known = format!(
            "# comment\ngit.example.com,10.0.0.1 ssh-ed25519 {k}\n[gitlab.example]:2222 ssh-ed25519 {k}\n"
        );
        let check = |host, kind, key: &[u8]| check_host_key(&known, host, kind, key);
        assert_eq!(
            check("git.example.com", "ssh-ed25519", &key),
            HostKey::Known
        );
        assert_eq!(check("10.0.0.1", "ssh-ed25519", &key), HostKey::Known);
        assert_eq!(check("gitlab.example", "ssh-ed25519", &key), HostKey::Known);
        assert_eq!(
            check("git.example.com", "ssh-ed25519", &other),
            HostKey::Mismatch
        );
        assert_eq!(check("git.example.com", "ssh-rsa", &key), HostKey::Unknown);
        assert_eq!(check("evil.example", "ssh-ed25519", &key), HostKey::Unknown);

        // Hashed entry (ssh-keyscan -H): |1|base64(salt)|base64(HMAC-SHA1(salt, host)).
        let salt = b"0123456789abcdefghij";
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"hashed.example");
        let hash = mac.finalize().into_bytes();
        let hashed = format!(
            "|1|{}|{} ssh-ed25519 {k}\n",
            b64.encode(salt),
            b64.encode(hash)
        );
        assert_eq!(
            check_host_key(&hashed, "hashed.example", "ssh-ed25519", &key),
            HostKey::Known
        );
        assert_eq!(
            check_host_key(&hashed, "other.example", "ssh-ed25519", &key),
            HostKey::Unknown
        );

        let revoked = format!("{known}@revoked git.example.com ssh-ed25519 {k}\n");
        assert_eq!(
            check_host_key(&revoked, "git.example.com", "ssh-ed25519", &key),
            HostKey::Revoked
        );
    }
}
