//! Hostile or broken field values, through `outbox run`: an event's headers cannot reframe
//! or reroute an HTTP request, an id that HTTP cannot carry fails its event alone, and a
//! templated NATS subject cannot reach the server's system API or drop the shared
//! connection.

use outbox_testkit::*;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";
const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_headers_cannot_reframe_or_reroute_an_http_request() {
    let db = TestDb::with_policies(&[(KEY, 3, 50)]).await;
    let c = db.client().await;
    let server = TestServer::always(200).await;
    c.execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload", "headers")
           VALUES ('framed', 'E', 't', 'a', $1, '{"long": "enough to be cut short"}', $2)"#,
        &[
            &KEY,
            &serde_json::json!({
                "Content-Length": "2",
                "Host": "evil.example",
                "Transfer-Encoding": "chunked",
                "Connection": "close",
                "Proxy-Authorization": "Basic eA==",
                "X-Forwarded-For": "10.0.0.1",
                "Content-Type": "text/plain",
                "Expect": "100-continue",
                "X-Tenant": "kept",
            }),
        ],
    )
    .await
    .unwrap();
    // An id HTTP cannot carry in Idempotency-Key: the event fails, its neighbour goes on.
    c.execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey")
           VALUES (E'line\nbreak', 'E', 't', 'a', $1), ('neighbour', 'E', 't', 'a', $1)"#,
        &[&KEY],
    )
    .await
    .unwrap();
    let mut worker = WorkerProcess::start(&http_config(&db.url, &server.url("/"), &[KEY], ""));
    wait_status(&c, "framed", "SENT", LONG).await;
    wait_status(&c, "neighbour", "SENT", LONG).await;
    let bad = wait_status(&c, "line\nbreak", "FAILED", LONG).await;
    worker.stop().await;
    assert!(
        bad.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("the event's id cannot be sent as the HTTP header Idempotency-Key"),
        "{bad:?}"
    );
    let seen = &server.requests_for("framed")[0];
    assert_eq!(
        seen.body["payload"]["long"], "enough to be cut short",
        "the whole body arrived"
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("x-tenant"), Some("kept"));
    assert!(seen
        .header("host")
        .is_some_and(|h| h.starts_with("127.0.0.1")));
    for dropped in [
        "proxy-authorization",
        "x-forwarded-for",
        "transfer-encoding",
        "expect",
    ] {
        assert_eq!(seen.header(dropped), None, "{dropped}");
    }
    assert_eq!(server.count(), 2, "the bad id was never sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_templated_nats_subject_cannot_reach_the_system_api_or_drop_the_connection() {
    use async_nats::jetstream;
    let tag: u64 = rand::random();
    let (victim, ours) = (format!("VICTIM_{tag:x}"), format!("OURS_{tag:x}"));
    let prefix = format!("h{tag:x}");
    let js = jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await.unwrap());
    for (name, subject) in [
        (&victim, format!("v{tag:x}.>")),
        (&ours, format!("{prefix}.>")),
    ] {
        js.create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    js.publish(format!("v{tag:x}.kept"), "keep me".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let db = TestDb::with_policies(&[(KEY, 3, 50)]).await;
    let c = db.client().await;
    let rows = [
        ("purge", format!("$JS.API.STREAM.PURGE.{victim}")),
        ("huge", format!("{prefix}.{}", "x".repeat(5000))),
        ("wildcard", format!("{prefix}.*")),
        ("good-1", format!("{prefix}.a")),
        ("good-2", format!("{prefix}.b")),
    ];
    for (id, aggregate) in &rows {
        c.execute(
            r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey")
               VALUES ($1, 'E', 't', $2, $3)"#,
            &[id, aggregate, &KEY],
        )
        .await
        .unwrap();
    }
    let config = sink_config(
        &db.url,
        &[KEY],
        "",
        "type = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"{aggregateId}\"",
    );
    let mut worker = WorkerProcess::start(&config);
    for id in ["good-1", "good-2"] {
        wait_status(&c, id, "SENT", LONG).await;
    }
    let mut errors = Vec::new();
    for id in ["purge", "huge", "wildcard"] {
        let r = wait_status(&c, id, "FAILED", LONG).await;
        assert_eq!(r.retry_count, 0, "{id}: failed at once, no retries spent");
        errors.push(r.last_error.unwrap_or_default());
    }
    worker.stop().await;
    assert!(errors[0].contains("starts with '$'"), "{}", errors[0]);
    assert!(errors[1].contains("at most 1024"), "{}", errors[1]);
    assert!(errors[2].contains("not a NATS subject"), "{}", errors[2]);
    let mut v = js.get_stream(&victim).await.unwrap();
    assert_eq!(v.info().await.unwrap().state.messages, 1, "nothing purged");
    let mut o = js.get_stream(&ours).await.unwrap();
    assert_eq!(o.info().await.unwrap().state.messages, 2);
    let logs = worker.logs();
    assert!(
        !logs.contains("will retry"),
        "no innocent event retried:\n{logs}"
    );
    for name in [&victim, &ours] {
        js.delete_stream(name).await.unwrap();
    }
}
