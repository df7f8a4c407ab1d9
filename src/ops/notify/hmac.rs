//! `generic-hmac`: the generic body, signed. Header
//! `X-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`, keyed
//! with the Secret's `key` (the shape of Flux's generic-hmac, and of
//! GitHub's `X-Hub-Signature-256`): a receiver recomputes it over the raw
//! body and compares in constant time.

use aws_lc_rs::hmac;

use super::config::Config;
use super::{generic, Notification, Request};

pub const HEADER: &str = "x-signature";

pub fn request(cfg: &Config, n: &Notification) -> Request {
    let body = generic::body(n);
    let key = cfg.key.as_deref().unwrap_or_default();
    let signature = sign(key, &body);
    let mut req = Request::json(cfg.url.as_str(), body);
    req.headers.push((HEADER, signature));
    req
}

/// `sha256=<lowercase hex>`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{applied, config};
    use super::*;

    #[test]
    fn signs_the_exact_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let cfg = config(&[
            ("provider", "generic-hmac"),
            ("url", "https://hooks.example.com/x"),
            ("key", "k3y"),
        ]);
        let req = request(&cfg, &applied());
        assert_eq!(req.header(HEADER), Some(sign(b"k3y", &req.body).as_str()));
        assert_eq!(req.header("authorization"), None);
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["event"], "sync_ready");
    }
}
