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
    health_report(&s.telemetry, &s.health)
}

/// 200 while running (503 once shutdown has begun), with the components that are degraded:
/// an exporter whose last attempt failed, a detection pipeline skipping batches. A degraded
/// component does not make otelwatch unready: forwarding goes on, and taking the instance out
/// of a load balancer would not help it.
pub fn health_report(telemetry: &Telemetry, health: &HealthState) -> (StatusCode, String) {
    if !health.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into());
    }
    let label = |labels: &super::Labels, key: &str| {
        labels
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut lines = Vec::new();
    for l in telemetry.gauges_set(super::names::EXPORTER_FAILING) {
        lines.push(format!(
            "exporter {}: failing, retrying",
            label(&l, "exporter")
        ));
    }
    for l in telemetry.gauges_set(super::names::PIPELINE_SKIPPING) {
        lines.push(format!(
            "pipeline {}: full, skipping batches so that forwarding goes on",
            label(&l, "pipeline")
        ));
    }
    for l in telemetry.gauges_set(super::names::MEMORY_LIMITED) {
        lines.push(format!(
            "processor {}: memory limit reached, refusing new data",
            label(&l, "processor")
        ));
    }
    lines.dedup();
    if lines.is_empty() {
        (StatusCode::OK, "ok\n".into())
    } else {
        (StatusCode::OK, format!("degraded\n{}\n", lines.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_components_are_named_and_shutdown_is_unready() {
        let t = Telemetry::new();
        let h = HealthState::default();
        h.set_ready(true);
        assert_eq!(health_report(&t, &h), (StatusCode::OK, "ok\n".to_string()));
        let failing = Arc::new(AtomicBool::new(true));
        let f = failing.clone();
        t.gauge_fn(
            crate::telemetry::names::EXPORTER_FAILING,
            "",
            vec![("exporter", "otlp/collector".into())],
            move || f.load(Ordering::Relaxed) as u8 as f64,
        );
        let (code, body) = health_report(&t, &h);
        assert_eq!(code, StatusCode::OK);
        assert!(
            body.starts_with("degraded\nexporter otlp/collector: failing"),
            "{body}"
        );
        failing.store(false, Ordering::Relaxed);
        assert_eq!(health_report(&t, &h).1, "ok\n");
        h.set_ready(false);
        assert_eq!(health_report(&t, &h).0, StatusCode::SERVICE_UNAVAILABLE);
    }
}
