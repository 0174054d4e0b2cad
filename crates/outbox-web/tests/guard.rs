//! Who the dashboard's API serves, on a scratch SQLite outbox: without a token only
//! loopback clients; with one, only requests carrying it; actions only when enabled, with a
//! JSON body and the `X-Outbox-Action` header. The page itself is served with a policy that
//! lets it load nothing from elsewhere.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use outbox_core::{Backend, Migrator};
use outbox_store::sqlite::{SqliteOptions, SqliteStore};
use outbox_testkit::TempDir;
use outbox_web::{with_client, Dashboard, Options};
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;

async fn store(dir: &TempDir) -> Arc<dyn Backend> {
    let url = format!("sqlite://{}", dir.0.join("o.db").display());
    let store = SqliteStore::new(&SqliteOptions::from_url(&url, None).unwrap());
    store.deploy().await.unwrap();
    Arc::new(store)
}

async fn call(router: &axum::Router, client: &str, request: Request<Body>) -> StatusCode {
    let client: SocketAddr = client.parse().unwrap();
    with_client(router.clone(), client)
        .oneshot(request)
        .await
        .unwrap()
        .status()
}

fn get(path: &str, token: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path).header("host", "127.0.0.1:9090");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::empty()).unwrap()
}

fn pause(token: &str, content_type: &str, marked: bool) -> Request<Body> {
    let mut r = Request::post("/api/actions/pause")
        .header("host", "127.0.0.1:9090")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type);
    if marked {
        r = r.header("x-outbox-action", "1");
    }
    r.body(Body::from(r#"{"routingKey": "k"}"#)).unwrap()
}

#[tokio::test]
async fn without_a_token_only_loopback_clients_are_served() {
    let dir = TempDir::new();
    let router = Dashboard::new(store(&dir).await, None, Options::default()).router();
    assert_eq!(
        call(&router, "127.0.0.1:5000", get("/api/overview", None)).await,
        StatusCode::OK
    );
    assert_eq!(
        call(&router, "[::1]:5000", get("/api/overview", None)).await,
        StatusCode::OK
    );
    assert_eq!(
        call(&router, "10.1.2.3:5000", get("/api/overview", None)).await,
        StatusCode::UNAUTHORIZED
    );
    // A page of another site resolved to 127.0.0.1 (DNS rebinding) names its own host.
    let rebound = Request::get("/api/overview")
        .header("host", "evil.example:9090")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        call(&router, "127.0.0.1:5000", rebound).await,
        StatusCode::FORBIDDEN
    );
    let foreign = Request::get("/api/overview")
        .header("host", "localhost:9090")
        .header("origin", "http://evil.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        call(&router, "127.0.0.1:5000", foreign).await,
        StatusCode::FORBIDDEN
    );
    let ipv6 = Request::get("/api/overview")
        .header("host", "[::1]:9090")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&router, "[::1]:5000", ipv6).await, StatusCode::OK);
    // Read-only: an action is refused even from loopback.
    assert_eq!(
        call(
            &router,
            "127.0.0.1:5000",
            pause("x", "application/json", true)
        )
        .await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn with_a_token_every_call_needs_it_and_actions_need_the_header() {
    let dir = TempDir::new();
    let token = "a-long-enough-token-123";
    let options = Options {
        token: Some(token.into()),
        actions: true,
        ..Options::default()
    };
    let router = Dashboard::new(store(&dir).await, None, options).router();
    for client in ["127.0.0.1:5000", "10.1.2.3:5000"] {
        assert_eq!(
            call(&router, client, get("/api/overview", None)).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(
                &router,
                client,
                get("/api/overview", Some("a-long-enough-token-124"))
            )
            .await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&router, client, get("/api/overview", Some(token))).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        call(&router, "10.1.2.3:5000", pause(token, "text/plain", true)).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &router,
            "10.1.2.3:5000",
            pause(token, "application/json", false)
        )
        .await,
        StatusCode::FORBIDDEN
    );
    // Everything right: the key has no policy here, so there is nothing to pause.
    assert_eq!(
        call(
            &router,
            "10.1.2.3:5000",
            pause(token, "application/json", true)
        )
        .await,
        StatusCode::NOT_FOUND
    );
    // The page needs no token (it holds no data) and may load nothing from elsewhere.
    let page = with_client(router.clone(), "10.1.2.3:5000".parse().unwrap())
        .oneshot(get("/", None))
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
}

#[tokio::test]
async fn a_bad_filter_is_a_400_that_says_why() {
    let dir = TempDir::new();
    let router = Dashboard::new(store(&dir).await, None, Options::default()).router();
    let r = with_client(router.clone(), "127.0.0.1:1".parse().unwrap())
        .oneshot(get("/api/events?status=LOST", None))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("none of PENDING"));
    let status = |path: &'static str| {
        let router = router.clone();
        async move {
            with_client(router, "127.0.0.1:1".parse().unwrap())
                .oneshot(get(path, None))
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        status("/api/events?from=yesterday").await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status("/api/events?from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00%2B01:00").await,
        StatusCode::OK
    );
}
