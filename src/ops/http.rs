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
}

/// The operations routes plus `routes` (e.g. GitSync's webhook).
pub fn router(state: Arc<HttpState>, routes: Router<Arc<HttpState>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(routes)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Serves until the process ends. Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    state: Arc<HttpState>,
    routes: Router<Arc<HttpState>>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    info!(%bound, "serving /healthz, /readyz, /metrics and /hooks");
    let app = router(state, routes);
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
