//! The web dashboard (`--ui-addr`, off by default): every GitSync with its
//! state, revision, history and tree of objects, and driftless' recent
//! Events, updated live over server-sent events (see [`sse`]).
//!
//! Read-only unless `--ui-actions` is given with a token: then "sync now"
//! (annotation `driftless.dev/requested-at`) and suspend/resume
//! (`spec.suspend`) are offered, each request carrying the token as
//! `Authorization: Bearer`, compared in constant time. The assets are
//! embedded in the binary (no CDN, no build step). Requests whose `Host` is
//! not an IP address or `localhost` are refused, so that a web page cannot
//! reach a port-forwarded dashboard through DNS rebinding.

mod actions;
mod sse;
pub mod view;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response, Sse};
use axum::routing::{get, post};
use axum::Router;
use tracing::{info, warn};

pub use actions::Token;
use sse::Hub;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// No script, style or connection but the dashboard's own; no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How the dashboard is served.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    /// Actions are offered only with a token.
    pub token: Option<Token>,
    /// How often the state is re-read while a browser is connected.
    pub interval: Duration,
}

impl Config {
    /// `--ui-addr`, `--ui-actions` with `--ui-token-file` or
    /// `DRIFTLESS_UI_TOKEN`; an error names what is missing or wrong.
    pub fn from_flags(
        addr: SocketAddr,
        actions: bool,
        token_file: Option<&Path>,
        token_env: Option<String>,
    ) -> Result<Self, String> {
        let token = match (actions, token_file, token_env) {
            (false, None, None) => None,
            (false, _, _) => {
                return Err("a UI token is given without --ui-actions: add --ui-actions to offer sync and suspend, or drop the token".into())
            }
            (true, Some(path), _) => Some(Token::from_file(path)?),
            (true, None, Some(t)) => Some(Token::new(t, "DRIFTLESS_UI_TOKEN")?),
            (true, None, None) => {
                return Err("--ui-actions needs a token: --ui-token-file PATH or DRIFTLESS_UI_TOKEN".into())
            }
        };
        Ok(Self {
            addr,
            token,
            interval: DEFAULT_INTERVAL,
        })
    }
}

/// How often a connected dashboard is refreshed.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

struct Ui {
    hub: Arc<Hub>,
    client: kube::Client,
    scope: Option<String>,
    token: Option<Token>,
}

/// Serves the dashboard of the GitSyncs in `scope` (all namespaces when
/// `None`) on `config.addr`; returns the bound address.
pub async fn serve(
    client: kube::Client,
    scope: Option<String>,
    config: Config,
) -> std::io::Result<SocketAddr> {
    let hub = Hub::start(
        client.clone(),
        scope.clone(),
        config.interval,
        config.token.is_some(),
    );
    let actions = config.token.is_some();
    let ui = Arc::new(Ui {
        hub,
        client,
        scope,
        token: config.token,
    });
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let bound = listener.local_addr()?;
    let app = router(ui).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "dashboard server stopped");
        }
    });
    info!(%bound, actions, "serving the dashboard");
    Ok(bound)
}

fn router(ui: Arc<Ui>) -> Router {
    let mut app = Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/api/state", get(state))
        .route("/api/stream", get(stream));
    if ui.token.is_some() {
        app = app.route("/api/gitsyncs/{namespace}/{name}/{action}", post(act));
    }
    app.layer(middleware::from_fn(guard)).with_state(ui)
}

/// The page; its stream will want the state, so reading it starts now
/// (while the browser loads the script and connects).
async fn index(State(ui): State<Arc<Ui>>) -> Response {
    ui.hub.prefetch();
    asset("text/html; charset=utf-8", INDEX)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn state(State(ui): State<Arc<Ui>>) -> Response {
    let body = ui.hub.snapshot().await;
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn stream(State(ui): State<Arc<Ui>>) -> Response {
    let Some(claim) = ui.hub.watch() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many dashboards are open; close one and reload",
        )
            .into_response();
    };
    let events = ui.hub.clone().stream(claim).await;
    Sse::new(events)
        .keep_alive(sse::keep_alive())
        .into_response()
}

async fn act(
    State(ui): State<Arc<Ui>>,
    UrlPath((namespace, name, action)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let token = ui
        .token
        .as_ref()
        .expect("the route exists only with a token");
    if !token.authorizes(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            "missing or wrong token (Authorization: Bearer <the --ui-token-file token>)",
        )
            .into_response();
    }
    let Some(action) = actions::Action::parse(&action) else {
        return (
            StatusCode::NOT_FOUND,
            format!("unknown action {action:?}: sync, suspend or resume"),
        )
            .into_response();
    };
    match actions::run(&ui.client, ui.scope.as_deref(), &namespace, &name, action).await {
        Ok(done) => {
            info!(gitsync = %format!("{namespace}/{name}"), action = ?action, "dashboard action");
            ui.hub.poke();
            (StatusCode::OK, done).into_response()
        }
        Err((code, why)) => (code, why).into_response(),
    }
}

/// Refuses a foreign `Host` (DNS rebinding), then adds the security
/// headers to every answer.
async fn guard(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut response = if local_host(&host) {
        next.run(request).await
    } else {
        (
            StatusCode::MISDIRECTED_REQUEST,
            format!("the dashboard answers only to an IP address or localhost, not {host:?}: reach it with kubectl port-forward"),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `localhost`, or an IP address (with or without a port).
fn local_host(host: &str) -> bool {
    let bare = match host.strip_prefix('[') {
        // [::1]:8090
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ip_addresses_and_localhost_are_served() {
        for ok in [
            "127.0.0.1:8090",
            "localhost:8090",
            "localhost",
            "[::1]:8090",
            "10.0.0.7",
        ] {
            assert!(local_host(ok), "{ok}");
        }
        for no in [
            "evil.example:8090",
            "evil.example",
            "",
            "127.0.0.1.evil.example",
        ] {
            assert!(!local_host(no), "{no}");
        }
    }

    #[test]
    fn actions_need_a_token_and_a_token_needs_actions() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(Config::from_flags(addr, false, None, None)
            .unwrap()
            .token
            .is_none());
        let e = Config::from_flags(addr, true, None, None).unwrap_err();
        assert!(e.contains("--ui-token-file"), "{e}");
        let e = Config::from_flags(addr, false, None, Some("x".repeat(32))).unwrap_err();
        assert!(e.contains("--ui-actions"), "{e}");
        let c = Config::from_flags(addr, true, None, Some("x".repeat(32))).unwrap();
        assert!(c.token.is_some());
    }
}
