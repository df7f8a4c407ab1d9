//! `slack`: an incoming-webhook message (the Secret's `url` is the
//! credential: no header carries one). Sent for a revision's result
//! (ready, refused, failed) and for drift corrected / resources failing;
//! not for "started" or "applied, waiting for health".
//!
//! `text` is the one-line fallback (notifications, old clients); `blocks`
//! hold the message, the revision, the result and the short change set.

use serde_json::{json, Value};

use super::config::Config;
use super::{Event, Notification, Request};

pub fn request(cfg: &Config, n: &Notification) -> Option<Request> {
    let result = result(n.event)?;
    let who = format!("{} {}/{}", n.kind, n.namespace, n.name);
    let at = n
        .short_revision()
        .map(|r| format!(" at {r}"))
        .unwrap_or_default();
    let mut fields = vec![json!({"type": "mrkdwn", "text": format!("*Result*\n{result}")})];
    if let Some(r) = n.short_revision() {
        fields.insert(
            0,
            json!({"type": "mrkdwn", "text": format!("*Revision*\n`{}`", escape(&r))}),
        );
    }
    let message: String = n.message.chars().take(2000).collect();
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("*{}*: {result}\n{}", escape(&who), escape(&message))}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(changes) = &n.changes {
        blocks.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": format!("*Changes:* {}", escape(changes))}]}));
    }
    let body: Value = json!({"text": format!("{who}: {result}{at}"), "blocks": blocks});
    Some(Request::json(
        cfg.url.as_str(),
        body.to_string().into_bytes(),
    ))
}

/// What the message says happened; `None`: not sent to Slack.
fn result(event: Event) -> Option<&'static str> {
    Some(match event {
        Event::SyncReady => "success",
        Event::SyncFailed => "failure",
        Event::SyncError => "error",
        Event::DriftCorrected => "drift corrected",
        Event::ResourceFailed => "failing",
        Event::SyncStarted | Event::SyncApplied => return None,
    })
}

/// Slack's three control characters.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{applied, config, refused, SHA};
    use super::*;

    #[test]
    fn a_ready_revision_with_its_change_set() {
        let cfg = config(&[
            ("provider", "slack"),
            ("url", "https://hooks.slack.com/services/T/B/X"),
        ]);
        let req = request(&cfg, &applied()).unwrap();
        assert_eq!(req.url, "https://hooks.slack.com/services/T/B/X");
        assert_eq!(req.header("authorization"), None);
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        let short = &SHA[..12];
        assert_eq!(
            v["text"],
            format!("GitSync team-a/web: success at main@sha1:{short}")
        );
        assert_eq!(v["blocks"][0]["text"]["type"], "mrkdwn");
        assert_eq!(
            v["blocks"][1]["fields"][0]["text"],
            format!("*Revision*\n`main@sha1:{short}`")
        );
        assert_eq!(v["blocks"][1]["fields"][1]["text"], "*Result*\nsuccess");
        assert_eq!(
            v["blocks"][2]["elements"][0]["text"],
            "*Changes:* 1 created (ConfigMap team-a/a), 0 configured, 2 unchanged, 0 pruned"
        );
    }

    #[test]
    fn a_refused_revision_says_file_and_line_and_started_is_not_sent() {
        let cfg = config(&[("provider", "slack"), ("url", "https://hooks.slack.com/x")]);
        let v: Value = serde_json::from_slice(&request(&cfg, &refused()).unwrap().body).unwrap();
        let text = v["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            text.starts_with("*GitSync team-a/web*: failure\n"),
            "{text}"
        );
        assert!(text.contains("clusters/test/broken.yaml:7"), "{text}");
        let mut started = applied();
        started.event = Event::SyncStarted;
        assert!(request(&cfg, &started).is_none());
        assert_eq!(escape("a <b> & c"), "a &lt;b&gt; &amp; c");
    }
}
