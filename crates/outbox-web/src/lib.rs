//! The operators' dashboard: a page compiled into the binary and the JSON API it reads
//! (`API.md`), over a store's [`Operator`] trait and, when a worker runs in the same
//! process, its [`Metrics`]. Served on the admin listener (`[admin] dashboard = true`) and
//! by `outbox dashboard`. Actions go through the same trait methods as the CLI's commands,
//! so they write the same audit rows.

mod api;
pub mod history;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use outbox_core::Backend;
use outbox_worker::Metrics;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use history::History;

/// How the dashboard behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Required as `Authorization: Bearer …` on every API call when set. Without one, only
    /// clients on loopback are served.
    pub token: Option<String>,
    /// Whether replay, purge, unblock and pause/resume are offered.
    pub actions: bool,
    /// Past this many rows (by the database's estimate) SENT counts are estimated, not
    /// counted.
    pub exact_counts_up_to: i64,
    /// The longest any one read may take; the store also cuts its statements there.
    pub statement_timeout: Duration,
    /// routingKey → sink, from the configuration's routes.
    pub routes: BTreeMap<String, String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: None,
            actions: false,
            exact_counts_up_to: 1_000_000,
            statement_timeout: Duration::from_secs(5),
            routes: BTreeMap::new(),
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct Dashboard {
    pub(crate) store: Arc<dyn Backend>,
    pub(crate) metrics: Option<Arc<Metrics>>,
    pub(crate) history: Arc<History>,
    pub(crate) options: Arc<Options>,
}

impl Dashboard {
    /// A dashboard over `store`, with the metrics of the worker running in this process
    /// if any. Starts sampling the history (on the current tokio runtime).
    pub fn new(store: Arc<dyn Backend>, metrics: Option<Arc<Metrics>>, options: Options) -> Self {
        let history = History::new();
        tokio::spawn(history::sample(
            history.clone(),
            metrics.clone(),
            store.clone(),
            options.exact_counts_up_to,
            options.statement_timeout,
        ));
        Dashboard {
            store,
            metrics,
            history,
            options: Arc::new(options),
        }
    }

    /// The page, its assets and `/api/…`. The client's address must be in the request's
    /// extensions as `ConnectInfo<SocketAddr>` (see [`with_client`]).
    pub fn router(self) -> axum::Router {
        use axum::routing::{get, post};
        let api = axum::Router::new()
            .route("/api/overview", get(api::overview))
            .route("/api/history", get(api::history))
            .route("/api/events", get(api::events))
            .route("/api/events/{id}", get(api::event))
            .route("/api/count", get(api::count))
            .route("/api/actions/replay", post(api::replay))
            .route("/api/actions/purge", post(api::purge))
            .route("/api/actions/unblock", post(api::unblock))
            .route("/api/actions/pause", post(api::pause))
            .route("/api/actions/resume", post(api::resume))
            .layer(axum::middleware::from_fn_with_state(self.clone(), guard))
            .with_state(self);
        axum::Router::new()
            .route("/", get(|| asset(INDEX_HTML, "text/html; charset=utf-8")))
            .route(
                "/assets/app.js",
                get(|| asset(APP_JS, "text/javascript; charset=utf-8")),
            )
            .route(
                "/assets/app.css",
                get(|| asset(APP_CSS, "text/css; charset=utf-8")),
            )
            .merge(api)
    }
}

/// Puts `client` into every request of one connection, for [`Dashboard::router`].
pub fn with_client(router: axum::Router, client: SocketAddr) -> axum::Router {
    router.layer(axum::Extension(ConnectInfo(client)))
}

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// The page may load only what the binary serves: no inline script, nothing from
/// elsewhere, never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

async fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

pub(crate) fn refuse(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
}

/// Who may call the API: the token when one is set, else loopback clients only. Actions
/// also need `[admin] actions`, a JSON body and the `X-Outbox-Action` header, which a
/// cross-site form cannot send.
async fn guard(State(d): State<Dashboard>, request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let headers = request.headers();
    match &d.options.token {
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "a token is required: Authorization: Bearer <[admin] token>",
                );
            }
        }
        None if !client.is_some_and(|c| c.ip().is_loopback()) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "this dashboard has no token and serves loopback clients only",
            );
        }
        // A page of another site whose name was made to point at 127.0.0.1 (DNS rebinding)
        // sends its own name: without a token, only loopback names are served.
        None if !names_loopback(headers, header::HOST, false)
            || !names_loopback(headers, header::ORIGIN, true) =>
        {
            return refuse(
                StatusCode::FORBIDDEN,
                "this dashboard has no token: open it as localhost, 127.0.0.1 or [::1]",
            );
        }
        None => {}
    }
    if request.method() == axum::http::Method::POST {
        if !d.options.actions {
            return refuse(
                StatusCode::FORBIDDEN,
                "actions are off: set [admin] actions = true",
            );
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let marked = headers.get("x-outbox-action") == Some(&HeaderValue::from_static("1"));
        if !json || !marked {
            return refuse(
                StatusCode::FORBIDDEN,
                "an action needs Content-Type: application/json and X-Outbox-Action: 1",
            );
        }
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether the `name` header (Host, or Origin with its scheme) names this machine's loopback:
/// `localhost`, `127.x.x.x` or `[::1]`, with any port. An absent Origin is fine when
/// `optional`.
fn names_loopback(
    headers: &axum::http::HeaderMap,
    name: header::HeaderName,
    optional: bool,
) -> bool {
    let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
        return optional;
    };
    let authority = value.split_once("://").map_or(value, |(_, rest)| rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(h, _)| h),
        None => authority.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The actor an action is audited as: the dashboard and the client's address.
pub(crate) fn actor(client: Option<SocketAddr>) -> String {
    match client {
        Some(c) => format!("dashboard:{}", c.ip()),
        None => "dashboard".to_string(),
    }
}
