//! `generic`: the notification as JSON (see [`super::Notification`]),
//! POSTed to the Secret's `url`; its `token`, if any, as a Bearer token.

use super::config::Config;
use super::{Notification, Request};

pub fn request(cfg: &Config, n: &Notification) -> Request {
    let mut req = Request::json(cfg.url.as_str(), body(n));
    if let Some(token) = &cfg.token {
        req.headers
            .push(("authorization", format!("Bearer {token}")));
    }
    req
}

/// The body the generic providers send.
pub fn body(n: &Notification) -> Vec<u8> {
    serde_json::to_vec(n).expect("a notification serializes")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{applied, config};
    use super::*;

    #[test]
    fn the_body_is_the_notification_and_the_token_a_bearer() {
        let cfg = config(&[("url", "https://hooks.example.com/x"), ("token", "s3cret")]);
        let req = request(&cfg, &applied());
        assert_eq!(req.url, "https://hooks.example.com/x");
        assert_eq!(req.header("authorization"), Some("Bearer s3cret"));
        assert_eq!(req.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["event"], "sync_ready");
        assert_eq!(v["kind"], "GitSync");
        assert_eq!(v["namespace"], "team-a");
        assert_eq!(v["name"], "web");
        assert_eq!(
            v["revision"],
            format!("main@sha1:{}", super::super::tests::SHA)
        );
        assert_eq!(
            v["changes"],
            "1 created (ConfigMap team-a/a), 0 configured, 2 unchanged, 0 pruned"
        );
        assert!(v["time"].is_string());
        // What is internal is not sent.
        assert!(v.get("source_url").is_none(), "{v}");
    }
}
