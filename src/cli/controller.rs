//! The `driftless controller` process: HTTP endpoints first, then leader
//! election, then every controller; on SIGTERM the controllers finish what
//! is in flight (for at most --shutdown-timeout) and the lease is released so
//! a standby takes over at once.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use futures::FutureExt;

use crate::ops::http::{self, HttpState};
use crate::ops::leader::{Elector, LeaseConfig};
use crate::ops::{shutdown_signal, Shared};
use crate::{gitsync, managed, Settings};

/// How the process runs, besides the controllers' own settings.
pub struct ManagerConfig {
    pub http_addr: SocketAddr,
    /// Serve `/metrics` here only (not on `http_addr`).
    pub metrics_addr: Option<SocketAddr>,
    /// `None`: no leader election (a single replica).
    pub lease: Option<LeaseConfig>,
    /// After SIGTERM, how long reconciles in flight may finish.
    pub shutdown_timeout: Duration,
    /// The web dashboard (`--ui-addr`), off when `None`.
    pub ui: Option<crate::ops::ui::Config>,
}

pub async fn run(
    client: kube::Client,
    settings: Settings,
    shared: Shared,
    config: ManagerConfig,
) -> ExitCode {
    init_series(&shared.metrics);
    let state = Arc::new(HttpState {
        client: client.clone(),
        metrics: shared.metrics.clone(),
        ready: false.into(),
        webhook: gitsync::webhook::Receiver::start(client.clone(), settings.namespace.clone()),
    });
    let routes = gitsync::webhook::routes();
    if let Err(e) = http::serve(config.http_addr, config.metrics_addr, state.clone(), routes).await
    {
        error!(addr = %config.http_addr, error = %e, "cannot serve HTTP (change --http-addr / --metrics-addr)");
        return ExitCode::FAILURE;
    }
    // Read-only unless --ui-actions; a standby serves it too.
    if let Some(ui) = config.ui.clone() {
        let addr = ui.addr;
        if let Err(e) = crate::ops::ui::serve(client.clone(), settings.namespace.clone(), ui).await
        {
            error!(%addr, error = %e, "cannot serve the dashboard (change --ui-addr)");
            return ExitCode::FAILURE;
        }
    }
    // A standby replica is ready: it serves metrics and webhooks, and takes
    // over the moment the leader goes.
    state.ready.store(true, Ordering::Relaxed);
    let Some(lease) = config.lease else {
        until_stopped(
            run_engines(client, settings, shared),
            config.shutdown_timeout,
        )
        .await;
        return ExitCode::SUCCESS;
    };
    let elector = Elector::new(client.clone(), lease);
    tokio::select! {
        acquired = elector.acquire() => {
            if let Err(e) = acquired {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        }
        _ = shutdown_signal() => return ExitCode::SUCCESS,
    }
    let outcome = tokio::select! {
        _ = until_stopped(run_engines(client, settings, shared), config.shutdown_timeout) => {
            // Bounded too: a hung API server must not hold the exit.
            if tokio::time::timeout(Duration::from_secs(5), elector.release()).await.is_err() {
                warn!("could not release the lease in 5 s; the standby takes over when it expires");
            }
            ExitCode::SUCCESS
        }
        _ = elector.hold() => {
            // Another replica may act from now on: stop at once, and let the
            // pod restart as a standby.
            error!("lost leadership: exiting so that two replicas never both act");
            ExitCode::FAILURE
        }
    };
    info!("stopped");
    outcome
}

/// Every kind's, result's and renderer's series at zero, before the first
/// scrape: a standby replica, or a controller with nothing to do, shows them.
fn init_series(metrics: &crate::ops::metrics::Metrics) {
    for kind in crate::registry::managed_kinds() {
        metrics.init_managed_kind(&kind);
    }
    metrics.init_kind(&<gitsync::GitSync as kube::Resource>::kind(&()));
    for renderer in crate::render::Renderer::ALL {
        metrics.init_renderer(renderer.name());
    }
    for provider in crate::ops::notify::Kind::ALL {
        metrics.init_notifications(provider.name());
    }
}

/// Runs `engines` until they stop after SIGTERM / Ctrl-C, or until `grace`
/// after the signal, whichever is first: a call hung in flight must not keep
/// the pod past its termination grace period (then it is killed, and its
/// Lease is never released). What is dropped is retried by the next leader:
/// creates are found again by their owner tags.
async fn until_stopped(engines: impl std::future::Future<Output = ()>, grace: Duration) {
    tokio::select! {
        _ = engines => {}
        _ = async {
            shutdown_signal().await;
            tokio::time::sleep(grace).await;
        } => {
            warn!(grace = %humantime::format_duration(grace), "reconciles still in flight at the end of --shutdown-timeout: leaving them to the next start");
        }
    }
}

/// Every controller: the managed kinds' and GitSync's, until SIGTERM / Ctrl-C.
pub async fn run_engines(client: kube::Client, settings: Settings, shared: Shared) {
    let engines = [
        managed::controller::run(client.clone(), settings.clone(), shared.clone()).boxed(),
        gitsync::run(client, settings, shared).boxed(),
    ];
    futures::future::join_all(engines).await;
}
