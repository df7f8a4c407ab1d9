//! The controller's HTTP endpoints: `/healthz`, `/readyz`, `/metrics`, plus
//! the routes other engines add (GitSync's webhook receiver); and [`client`],
//! the one way driftless builds an outgoing HTTP(S) client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tracing::{info, warn};

use super::metrics::Metrics;

/// Request bodies (webhooks) larger than this are refused (GitHub's own
/// limit is 25 MB; a signature check needs no more, so memory stays bounded).
pub const MAX_BODY: usize = 1024 * 1024;

pub struct HttpState {
    pub client: kube::Client,
    pub metrics: Arc<Metrics>,
    pub ready: AtomicBool,
    /// Webhook keys, deliveries seen, failed verifications.
    pub webhook: Arc<crate::gitsync::webhook::Receiver>,
}

/// The operations routes plus `routes` (e.g. GitSync's webhook); `/metrics`
/// only `with_metrics`.
pub fn router(state: Arc<HttpState>, routes: Router<Arc<HttpState>>, with_metrics: bool) -> Router {
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    if with_metrics {
        app = app.route("/metrics", get(metrics));
    }
    app.merge(routes)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Serves until the process ends; `/metrics` on `metrics_addr` alone when
/// given. Returns the bound addresses (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    state: Arc<HttpState>,
    routes: Router<Arc<HttpState>>,
) -> std::io::Result<(SocketAddr, Option<SocketAddr>)> {
    let bound = listen(addr, router(state.clone(), routes, metrics_addr.is_none())).await?;
    info!(%bound, "serving /healthz, /readyz and /hooks");
    let Some(metrics_addr) = metrics_addr else {
        return Ok((bound, None));
    };
    let only = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    let metrics_bound = listen(metrics_addr, only).await?;
    info!(bound = %metrics_bound, "serving /metrics");
    Ok((bound, Some(metrics_bound)))
}

async fn listen(addr: SocketAddr, app: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "HTTP server stopped");
        }
    });
    Ok(bound)
}

async fn readyz(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

async fn metrics(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}
