//! The small HTTP server for `/metrics` and `/healthz`.

use super::Telemetry;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Healthy from start until shutdown begins.
#[derive(Clone, Default)]
pub struct HealthState(Arc<AtomicBool>);

impl HealthState {
    pub fn set_ready(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryServerError {
    #[error("cannot listen on {addr} for self-telemetry: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct AppState {
    telemetry: Telemetry,
    health: HealthState,
}

/// Binds now (so a taken port fails startup) and serves until `stop` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    telemetry: Telemetry,
    health: HealthState,
    stop: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), TelemetryServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryServerError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| TelemetryServerError::Bind { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(AppState { telemetry, health });
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "self-telemetry server stopped");
        }
    });
    Ok((local, task))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.telemetry.render(),
    )
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    }
}
