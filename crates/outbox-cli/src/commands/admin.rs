//! The admin listener (`[admin] listen`): `/metrics` (Prometheus text), `/healthz` (the
//! process is alive) and `/readyz` (database reachable, schema check passed, not stopping),
//! and the dashboard with `[admin] dashboard = true`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use outbox_core::Store;
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
    store: Arc<dyn Store>,
}

/// The dashboard's router, set once the store is ready (on app-owned tables, after their
/// columns were resolved); until then the dashboard answers 503.
pub type DashboardSlot = Arc<std::sync::OnceLock<axum::Router>>;

/// Most connections the admin listener serves at once; one more is closed as it arrives.
/// Idle or slow clients can hold no more file descriptors than this.
pub const MAX_CONNECTIONS: usize = 128;
/// A client must send its request headers within this time, or its connection is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest any one connection is kept, requests and keep-alive pauses included.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Binds `addr` now (a failure is fatal for the caller) and serves until the process ends.
pub async fn start(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    store: Arc<dyn Store>,
    dashboard: Option<DashboardSlot>,
) -> Result<SocketAddr, std::io::Error> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let state = AdminState {
        metrics,
        readiness,
        store,
    };
    let mut app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics_page))
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz))
        .with_state(state);
    if let Some(slot) = dashboard {
        app = app.fallback(move |request: axum::extract::Request| async move {
            match slot.get() {
                Some(router) => {
                    use tower::ServiceExt;
                    match router.clone().oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    }
                }
                None => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(
                        json!({"error": "the dashboard starts once the schema check has passed"}),
                    ),
                )
                    .into_response(),
            }
        });
    }
    tokio::spawn(serve(listener, app));
    Ok(bound)
}

/// The accept loop: at most [`MAX_CONNECTIONS`] at once, each with a header timeout and a
/// lifetime, so clients that connect and say nothing cannot use up the process's file
/// descriptors (which deliveries need). Each request knows its client's address (the
/// dashboard audits actions by it).
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refused: u64 = 0;
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait a little rather than spin.
                tracing::warn!(error = %e, "Admin listener cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    open = MAX_CONNECTIONS,
                    refused,
                    "Admin listener at its connection limit; closing new connections"
                );
            }
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(outbox_web::with_client(
            app.clone(),
            client,
        ));
        tokio::spawn(async move {
            let _slot = slot;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
    }
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
    let ping = s.store.ping();
    // Whoever can reach the listener learns only that the database is unreachable; what
    // the driver said (host names, users, server messages) goes to the log.
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(())) => (StatusCode::OK, axum::Json(json!({"ready": true}))).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "/readyz: database unreachable");
            not_ready("database unreachable (the worker's log says why)".into())
        }
        Err(_) => not_ready("database unreachable: no answer within 2s".into()),
    }
}
