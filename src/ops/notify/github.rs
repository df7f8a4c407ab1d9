//! `github`: a commit status, `POST {url}/repos/{owner}/{repo}/statuses/{sha}`
//! (url: `https://api.github.com`, or GitHub Enterprise's `/api/v3`), with
//! `Authorization: Bearer <token>` and context `driftless/<namespace>/<name>`.
//! GitHub has no "running": an applied revision waiting for health stays
//! pending until it is ready (success) or not (failure).

use serde_json::json;

use super::config::{repository_of, Config};
use super::{CommitState, Notification, Request};

/// GitHub refuses longer descriptions (422).
const DESCRIPTION_MAX: usize = 140;

pub fn request(cfg: &Config, n: &Notification) -> Option<Request> {
    let state = match n.commit_state()? {
        CommitState::Pending => "pending",
        CommitState::Running => return None,
        CommitState::Success => "success",
        CommitState::Failure => "failure",
        CommitState::Error => "error",
    };
    let sha = n.sha()?;
    let repo = cfg
        .repository
        .clone()
        .or_else(|| repository_of(n.source_url.as_deref()?))?;
    if repo.split('/').count() != 2 {
        return None; // GitHub repositories are owner/name
    }
    let mut body = json!({
        "state": state,
        "context": n.context(),
        "description": n.description(DESCRIPTION_MAX),
    });
    if let Some(link) = n.target_url(cfg) {
        body["target_url"] = link.into();
    }
    let url = format!("{}/repos/{repo}/statuses/{sha}", cfg.base());
    let mut req = Request::json(&url, body.to_string().into_bytes());
    req.headers.extend([
        ("accept", "application/vnd.github+json".to_string()),
        ("x-github-api-version", "2022-11-28".to_string()),
        (
            "authorization",
            format!("Bearer {}", cfg.token.as_deref().unwrap_or_default()),
        ),
    ]);
    Some(req)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{applied, config, refused, SHA};
    use super::super::Event;
    use super::*;

    fn github() -> Config {
        config(&[
            ("provider", "github"),
            ("token", "ghp_x"),
            (
                "target_url",
                "https://dash.example.com/{namespace}/{name}?sha={sha}",
            ),
        ])
    }

    #[test]
    fn success_with_context_link_and_token() {
        let req = request(&github(), &applied()).unwrap();
        assert_eq!(
            req.url,
            format!("https://api.github.com/repos/acme/web/statuses/{SHA}")
        );
        assert_eq!(req.header("authorization"), Some("Bearer ghp_x"));
        assert_eq!(req.header("accept"), Some("application/vnd.github+json"));
        assert_eq!(req.header("x-github-api-version"), Some("2022-11-28"));
        assert!(req.header("user-agent").unwrap().starts_with("driftless/"));
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["state"], "success");
        assert_eq!(v["context"], "driftless/team-a/web");
        assert_eq!(
            v["target_url"],
            format!("https://dash.example.com/team-a/web?sha={SHA}")
        );
        assert_eq!(
            v["description"],
            "applied and ready: 1 created, 0 configured, 2 unchanged, 0 pruned"
        );
    }

    #[test]
    fn failure_names_file_and_line_within_140_characters() {
        let req = request(&github(), &refused()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["state"], "failure");
        let d = v["description"].as_str().unwrap();
        assert!(d.starts_with("clusters/test/broken.yaml:7: "), "{d}");
        assert!(d.chars().count() <= 140, "{d}");
    }

    #[test]
    fn states_and_what_is_not_a_status() {
        let cfg = github();
        let state = |e: Event| {
            let mut n = applied();
            n.event = e;
            request(&cfg, &n).map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                v["state"].as_str().unwrap().to_string()
            })
        };
        assert_eq!(state(Event::SyncStarted).as_deref(), Some("pending"));
        assert_eq!(state(Event::SyncApplied), None);
        assert_eq!(state(Event::SyncError).as_deref(), Some("error"));
        assert_eq!(state(Event::DriftCorrected), None);
        // No revision (a fetch failure), or no repository: nothing to post.
        let mut n = applied();
        n.revision = None;
        assert!(request(&cfg, &n).is_none());
        let mut n = applied();
        n.source_url = Some("file:///tmp/r.git".into());
        assert!(request(&cfg, &n).is_none());
    }
}
