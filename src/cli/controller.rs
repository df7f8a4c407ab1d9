//! The `driftless controller` process: HTTP endpoints first, then leader
//! election, then every controller; on SIGTERM the controllers finish what
//! is in flight and the lease is released so a standby takes over at once.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::{error, info};

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
}

pub async fn run(
    client: kube::Client,
    settings: Settings,
    shared: Shared,
    config: ManagerConfig,
) -> ExitCode {
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
    // A standby replica is ready: it serves metrics and webhooks, and takes
    // over the moment the leader goes.
    state.ready.store(true, Ordering::Relaxed);
    let Some(lease) = config.lease else {
        run_engines(client, settings, shared).await;
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
        _ = run_engines(client, settings, shared) => {
            elector.release().await;
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

/// Every controller: the managed kinds' and GitSync's, until SIGTERM / Ctrl-C.
pub async fn run_engines(client: kube::Client, settings: Settings, shared: Shared) {
    let engines = [
        managed::controller::run(client.clone(), settings.clone(), shared.clone()).boxed(),
        gitsync::run(client, settings, shared).boxed(),
    ];
    futures::future::join_all(engines).await;
}
