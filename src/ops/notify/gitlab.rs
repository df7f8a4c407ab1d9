//! `gitlab`: a commit status, `POST {url}/api/v4/projects/:id/statuses/:sha`
//! (url: `https://gitlab.com` or your instance), with `PRIVATE-TOKEN`, and
//! `name` = `driftless/<namespace>/<name>`. `:id` is the Secret's
//! `repository` (a numeric id or `group/project`), else the GitSync's
//! repository path, URL-encoded.

use serde_json::json;

use super::config::{repository_of, Config};
use super::{CommitState, Notification, Request};

const DESCRIPTION_MAX: usize = 255;

pub fn request(cfg: &Config, n: &Notification) -> Option<Request> {
    let state = match n.commit_state()? {
        CommitState::Pending => "pending",
        CommitState::Running => "running",
        CommitState::Success => "success",
        CommitState::Failure | CommitState::Error => "failed",
    };
    let sha = n.sha()?;
    let project = cfg
        .repository
        .clone()
        .or_else(|| repository_of(n.source_url.as_deref()?))?;
    let id: String = url::form_urlencoded::byte_serialize(project.as_bytes()).collect();
    let mut body = json!({
        "state": state,
        "name": n.context(),
        "description": n.description(DESCRIPTION_MAX),
    });
    if let Some(branch) = n.branch() {
        body["ref"] = branch.into();
    }
    if let Some(link) = n.target_url(cfg) {
        body["target_url"] = link.into();
    }
    let url = format!("{}/api/v4/projects/{id}/statuses/{sha}", cfg.base());
    let mut req = Request::json(&url, body.to_string().into_bytes());
    req.headers
        .push(("private-token", cfg.token.clone().unwrap_or_default()));
    Some(req)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{applied, config, refused, SHA};
    use super::super::Event;
    use super::*;

    #[test]
    fn a_status_on_the_encoded_project_path() {
        let cfg = config(&[
            ("provider", "gitlab"),
            ("token", "glpat-x"),
            ("repository", "group/sub/app"),
        ]);
        let req = request(&cfg, &applied()).unwrap();
        assert_eq!(
            req.url,
            format!("https://gitlab.com/api/v4/projects/group%2Fsub%2Fapp/statuses/{SHA}")
        );
        assert_eq!(req.header("private-token"), Some("glpat-x"));
        assert_eq!(req.header("authorization"), None);
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["state"], "success");
        assert_eq!(v["name"], "driftless/team-a/web");
        assert_eq!(v["ref"], "main");
        assert!(v.get("target_url").is_none());
    }

    #[test]
    fn states() {
        let cfg = config(&[("provider", "gitlab"), ("token", "t"), ("repository", "42")]);
        let state = |n: super::super::Notification| {
            let r = request(&cfg, &n).unwrap();
            assert!(r.url.contains("/projects/42/statuses/"), "{}", r.url);
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            v["state"].as_str().unwrap().to_string()
        };
        let with = |e: Event| {
            let mut n = applied();
            n.event = e;
            n
        };
        assert_eq!(state(with(Event::SyncStarted)), "pending");
        assert_eq!(state(with(Event::SyncApplied)), "running");
        assert_eq!(state(with(Event::SyncError)), "failed");
        assert_eq!(state(refused()), "failed");
    }
}
