//! The worker end to end: real PostgreSQL, a real HTTP server, the real binary.

use outbox_testkit as common;

use common::*;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";
const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_insert_is_delivered_with_the_envelope_and_idempotency_key() {
    let db = TestDb::with_policies(&[(KEY, 5, 5000)]).await;
    let server = TestServer::always(200).await;
    let dir = TempDir::new();
    let env_file = dir.write(
        ".env.local",
        "# the team's local settings\nAUDIT_TOKEN=s3cret\n",
    );
    let mut config = http_config(&db.url, &server.url("/audit/auth-logs"), &[KEY], "");
    config.push_str("headers = { Authorization = \"Bearer ${AUDIT_TOKEN}\" }\n");
    let mut worker =
        WorkerProcess::start_with(&config, &["--env-file", env_file.to_str().unwrap()], &[]);
    worker.wait_started().await;

    let c = db.client().await;
    // The seed's INSERT, with the identifiers quoted as PostgreSQL needs for camelCase.
    c.batch_execute(
        r#"insert into "OutboxEvent" (
             id, "eventName", "eventType", "aggregateId", "routingKey",
             payload, status, "occurredAt", "retryCount", "maxRetries", "retryInterval",
             headers
           ) values (
             'test-1', 'PasswordUserLoggedInEvent', 'auth.login.success', 'user-1',
             'audit.record-auth-log', '{"ip": "10.0.0.1"}', 'PENDING', now(), 0, 5, 5000,
             '{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}'
           )"#,
    )
    .await
    .unwrap();
    let row = wait_status(&c, "test-1", "SENT", LONG).await;
    assert_eq!(row.retry_count, 0);
    assert_eq!(row.locked_by, None);

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/audit/auth-logs");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("idempotency-key"), Some("test-1"));
    assert_eq!(r.header("x-outbox-event-id"), Some("test-1"));
    assert_eq!(r.header("x-outbox-routing-key"), Some(KEY));
    assert_eq!(r.header("x-outbox-attempt"), Some("1"));
    assert_eq!(r.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(
        r.header("traceparent"),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    let body = r.body.as_object().expect("JSON object body");
    let mut keys: Vec<&str> = body.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "aggregateId",
            "eventName",
            "eventType",
            "id",
            "occurredAt",
            "payload",
            "routingKey"
        ]
    );
    assert_eq!(body["id"], "test-1");
    assert_eq!(body["eventName"], "PasswordUserLoggedInEvent");
    assert_eq!(body["eventType"], "auth.login.success");
    assert_eq!(body["aggregateId"], "user-1");
    assert_eq!(body["routingKey"], KEY);
    assert_eq!(body["payload"], serde_json::json!({"ip": "10.0.0.1"}));
    let occurred = body["occurredAt"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(occurred).expect("occurredAt is RFC 3339");

    worker.stop().await;
    let logs = worker.logs();
    assert!(logs.contains("🚀 OutboxWorker started."), "{logs}");
    assert!(
        logs.contains("📦 [OutboxWorker] Processing 1 events..."),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_routing_key_fails_at_once() {
    let server = TestServer::always(200).await;
    // A route exists, but "OutboxRetryPolicy" has no row for it.
    let (_db, mut worker, c) = start_relay(&[], &server, &["no.policy"], "").await;
    insert_event(&c, "e1", "no.policy").await;
    let row = wait_status(&c, "e1", "FAILED", LONG).await;
    assert_eq!(
        row.last_error.as_deref(),
        Some("no OutboxRetryPolicy row for routingKey 'no.policy'")
    );
    assert_eq!(row.retry_count, 0, "no retries spent");
    assert_eq!(server.count(), 0, "no handler was called");
    worker.stop().await;
    assert!(
        worker.logs().contains("Route has no OutboxRetryPolicy row"),
        "start-up warning: {}",
        worker.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_without_a_route_fails_at_once() {
    let server = TestServer::always(200).await;
    let (_db, mut worker, c) = start_relay(
        &[(KEY, 5, 100), ("orphan.key", 5, 100)],
        &server,
        &[KEY],
        "",
    )
    .await;
    insert_event(&c, "e1", "orphan.key").await;
    let row = wait_status(&c, "e1", "FAILED", LONG).await;
    assert_eq!(
        row.last_error.as_deref(),
        Some("no route configured for routingKey 'orphan.key'")
    );
    assert_eq!(row.retry_count, 0);
    assert_eq!(server.count(), 0);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_back_off_exponentially() {
    // retryInterval 400ms, multiplier 2: the retries wait at least 400ms, then 800ms.
    let server = TestServer::start(|_, earlier| {
        if earlier < 2 {
            Reply::status(503)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let (_db, mut worker, c) = start_relay(&[(KEY, 5, 400)], &server, &[KEY], "").await;
    insert_event(&c, "e1", KEY).await;
    let row = wait_status(&c, "e1", "SENT", LONG).await;
    assert_eq!(row.retry_count, 2);
    assert!(
        row.last_error.unwrap().starts_with("HTTP 503"),
        "the last failure is kept"
    );
    let reqs = server.requests_for("e1");
    assert_eq!(reqs.len(), 3);
    let attempts: Vec<&str> = reqs
        .iter()
        .map(|r| r.header("x-outbox-attempt").unwrap())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    let gap1 = reqs[1].at - reqs[0].at;
    let gap2 = reqs[2].at - reqs[1].at;
    println!("attempt gaps: {gap1:?}, {gap2:?} (formula: 400ms, 800ms)");
    assert!(
        gap1 >= Duration::from_millis(400),
        "first retry too early: {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(800),
        "second retry too early: {gap2:?}"
    );
    // Generous upper bounds: the worker wakes for the due retry, not at some later poll.
    assert!(
        gap1 < Duration::from_millis(400 + 2500),
        "first retry too late: {gap1:?}"
    );
    assert!(
        gap2 < Duration::from_millis(800 + 2500),
        "second retry too late: {gap2:?}"
    );
    assert!(gap2 > gap1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_end_failed_after_max_retries_plus_one_attempts() {
    let server = TestServer::always(503).await;
    let (_db, mut worker, c) = start_relay(&[(KEY, 2, 50)], &server, &[KEY], "").await;
    insert_event(&c, "e1", KEY).await;
    let row = wait_status(&c, "e1", "FAILED", LONG).await;
    assert_eq!(row.retry_count, 2);
    let err = row.last_error.unwrap();
    assert!(
        err.starts_with("retries exhausted after 3 attempts (maxRetries=2): HTTP 503"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.requests_for("e1").len(), 3, "exactly three attempts");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_max_retries_overrides_the_policy() {
    let server = TestServer::always(500).await;
    let (_db, mut worker, c) = start_relay(&[(KEY, 0, 50)], &server, &[KEY], "").await;
    c.batch_execute(&format!(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "maxRetries", "retryInterval")
           VALUES ('more', 'E', 't', 'a', '{KEY}', 3, 20), ('policy', 'E', 't', 'a', '{KEY}', NULL, NULL)"#
    ))
    .await
    .unwrap();
    let more = wait_status(&c, "more", "FAILED", LONG).await;
    let policy = wait_status(&c, "policy", "FAILED", LONG).await;
    assert_eq!(more.retry_count, 3);
    assert_eq!(policy.retry_count, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.requests_for("more").len(), 4);
    assert_eq!(server.requests_for("policy").len(), 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_fails_after_one_attempt() {
    let server = TestServer::always(400).await;
    let (_db, mut worker, c) = start_relay(&[(KEY, 5, 50)], &server, &[KEY], "").await;
    insert_event(&c, "e1", KEY).await;
    let row = wait_status(&c, "e1", "FAILED", LONG).await;
    assert_eq!(row.retry_count, 0);
    assert_eq!(
        row.last_error.as_deref(),
        Some("permanent failure: HTTP 400 Bad Request: reply body")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.requests_for("e1").len(), 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_when_longer_than_the_backoff() {
    let server = TestServer::start(|_, earlier| {
        if earlier == 0 {
            Reply::status(429).header("Retry-After", "2")
        } else {
            Reply::status(200)
        }
    })
    .await;
    let (_db, mut worker, c) = start_relay(&[(KEY, 3, 50)], &server, &[KEY], "").await;
    insert_event(&c, "e1", KEY).await;
    wait_status(&c, "e1", "SENT", LONG).await;
    let reqs = server.requests_for("e1");
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].at - reqs[0].at;
    println!("Retry-After: 2 -> gap {gap:?}");
    assert!(
        gap >= Duration::from_secs(2),
        "retried before Retry-After: {gap:?}"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_policy_holds_events_and_an_edited_policy_takes_effect_while_running() {
    let server = TestServer::always(503).await;
    // A long periodic refresh: the edits must arrive through the policy table's NOTIFY.
    let (_db, mut worker, c) =
        start_relay(&[(KEY, 0, 20)], &server, &[KEY], "policy_refresh = \"1h\"").await;

    insert_event(&c, "before", KEY).await;
    let row = wait_status(&c, "before", "FAILED", LONG).await;
    assert_eq!(row.retry_count, 0, "maxRetries=0: one attempt");

    c.execute(r#"UPDATE "OutboxRetryPolicy" SET "maxRetries" = 2, "paused" = true WHERE "routingKey" = $1"#, &[&KEY])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    insert_event(&c, "after", KEY).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        event(&c, "after").await.status,
        "PENDING",
        "a paused policy leaves events PENDING"
    );
    assert_eq!(server.requests_for("after").len(), 0);

    c.execute(
        r#"UPDATE "OutboxRetryPolicy" SET "paused" = false WHERE "routingKey" = $1"#,
        &[&KEY],
    )
    .await
    .unwrap();
    let row = wait_status(&c, "after", "FAILED", LONG).await;
    assert_eq!(row.retry_count, 2, "the edited maxRetries applies");
    assert_eq!(server.requests_for("after").len(), 3);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formats_methods_and_headers_follow_the_sink_config() {
    let db = TestDb::with_policies(&[("k.payload", 0, 10), ("k.ce", 0, 10)]).await;
    let server = TestServer::always(204).await;
    let config = format!(
        r#"[database]
url = "{}"
[worker]
poll_interval = "100ms"
[routes]
"k.payload" = {{ sink = "plain" }}
"k.ce" = {{ sink = "ce" }}
[sinks.plain]
type = "http"
url = "{}"
method = "PUT"
format = "payload"
headers = {{ X-Team = "audit" }}
[sinks.ce]
type = "http"
url = "{}"
format = "cloudevents"
source = "/reserve-manage"
"#,
        db.url,
        server.url("/plain"),
        server.url("/ce")
    );
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    let c = db.client().await;
    insert_event(&c, "p1", "k.payload").await;
    insert_event(&c, "c1", "k.ce").await;
    wait_status(&c, "p1", "SENT", LONG).await;
    wait_status(&c, "c1", "SENT", LONG).await;

    let p = &server.requests_for("p1")[0];
    assert_eq!((p.method.as_str(), p.path.as_str()), ("PUT", "/plain"));
    assert_eq!(p.body, serde_json::json!({"n": 1}));
    assert_eq!(p.header("x-team"), Some("audit"));

    let ce = &server.requests_for("c1")[0];
    assert_eq!(ce.method, "POST");
    assert_eq!(
        ce.header("content-type"),
        Some("application/cloudevents+json")
    );
    assert_eq!(ce.body["specversion"], "1.0");
    assert_eq!(ce.body["id"], "c1");
    assert_eq!(ce.body["source"], "/reserve-manage");
    assert_eq!(ce.body["type"], "test.happened");
    assert_eq!(ce.body["subject"], "agg-1");
    assert_eq!(ce.body["data"], serde_json::json!({"n": 1}));
    assert!(ce.body["time"].as_str().is_some());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_are_reused() {
    let server = TestServer::always(200).await;
    let (_db, mut worker, c) =
        start_relay(&[(KEY, 0, 10)], &server, &[KEY], "concurrency = 1").await;
    for i in 0..20 {
        insert_event(&c, &format!("e{i}"), KEY).await;
        wait_status(&c, &format!("e{i}"), "SENT", LONG).await;
    }
    let peers: std::collections::HashSet<_> = server.requests().iter().map(|r| r.peer).collect();
    assert_eq!(server.count(), 20);
    assert!(
        peers.len() <= 2,
        "20 sequential deliveries used {} connections",
        peers.len()
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_success_delete_removes_delivered_rows() {
    let server = TestServer::always(200).await;
    let (_db, mut worker, c) =
        start_relay(&[(KEY, 0, 10)], &server, &[KEY], "on_success = \"delete\"").await;
    insert_many(&c, "d", KEY, 50).await;
    wait_for("all rows deleted", LONG, || async {
        by_status(&c).await.is_empty()
    })
    .await;
    assert_eq!(server.count(), 50);
    worker.stop().await;
}
