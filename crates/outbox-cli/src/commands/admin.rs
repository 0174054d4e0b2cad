//! The admin listener (`[admin] listen`): `/metrics` (Prometheus text), `/healthz` (the
//! process is alive) and `/readyz` (database reachable, schema check passed, not stopping).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use outbox_store::PgStore;
use outbox_worker::Metrics;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What `/readyz` reports on.
#[derive(Default)]
pub struct Readiness {
    /// The schema check passed (or was skipped) and the worker is running.
    pub schema_ok: AtomicBool,
    /// A stop signal arrived.
    pub stopping: AtomicBool,
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    /// A store of its own (one connection at most) for the reachability check.
    store: Arc<PgStore>,
}

/// Binds `addr` now (a failure is fatal for the caller) and serves until the process ends.
pub async fn start(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    store: PgStore,
) -> Result<SocketAddr, std::io::Error> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let state = AdminState {
        metrics,
        readiness,
        store: Arc::new(store),
    };
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics_page))
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz))
        .with_state(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "The admin listener stopped");
        }
    });
    Ok(bound)
}

async fn metrics_page(State(s): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "alive"}))).into_response()
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let not_ready = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ready": false, "reason": reason})),
        )
            .into_response()
    };
    if s.readiness.stopping.load(Ordering::Relaxed) {
        return not_ready("shutting down".into());
    }
    if !s.readiness.schema_ok.load(Ordering::Relaxed) {
        return not_ready("starting: the schema check has not passed yet".into());
    }
    let ping = async {
        let client = s.store.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| outbox_core::StoreError::Unavailable(e.to_string()))?;
        Ok::<(), outbox_core::StoreError>(())
    };
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(())) => (StatusCode::OK, axum::Json(json!({"ready": true}))).into_response(),
        Ok(Err(e)) => not_ready(format!("database unreachable: {e}")),
        Err(_) => not_ready("database unreachable: no answer within 2s".into()),
    }
}
