//! The Redis sink against the local Redis (127.0.0.1:6379): each test uses keys of its own
//! and deletes them.
#![cfg(feature = "redis")]

use outbox_core::{Outcome, Sink};
use outbox_testkit::{build_sink, claimed_event, TRACEPARENT};
use std::collections::HashMap;
use std::sync::Arc;

const URL: &str = "redis://127.0.0.1:6379";

fn sink_at(url: &str, extra: &str) -> Arc<dyn Sink> {
    build_sink(&format!("type = \"redis\"\nurl = \"{url}\"\n{extra}"))
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis on 127.0.0.1:6379 (scripts/services starts it)")
}

fn tag() -> String {
    format!("outbox-test-{:x}", rand::random::<u64>())
}

async fn del(conn: &mut redis::aio::MultiplexedConnection, key: &str) {
    redis::cmd("DEL")
        .arg(key)
        .query_async::<i64>(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_event_is_appended_with_its_fields() {
    let mut conn = redis().await;
    let prefix = tag();
    let sink = sink_at(
        URL,
        &format!("stream = \"{prefix}:{{routingKey}}\"\nmaxlen = 1000"),
    );
    let mut event = claimed_event("evt-1");
    event.event.retry_count = 1;
    assert_eq!(sink.deliver(&event).await, Outcome::Delivered);
    let key = format!("{prefix}:audit.record-auth-log");
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    let f = &entries[0].1;
    assert_eq!(f["id"], "evt-1");
    assert_eq!(f["routingKey"], "audit.record-auth-log");
    assert_eq!(f["eventType"], "auth.login.success");
    assert_eq!(f["aggregateId"], "user-1");
    assert_eq!(f["occurredAt"], "2026-11-27T01:02:03.456Z");
    assert_eq!(f["attempt"], "2");
    assert_eq!(f["contentType"], "application/json");
    let headers: serde_json::Value = serde_json::from_str(&f["headers"]).unwrap();
    assert_eq!(headers["traceparent"], TRACEPARENT);
    let body: serde_json::Value = serde_json::from_str(&f["body"]).unwrap();
    assert_eq!(body["id"], "evt-1");
    assert_eq!(body["payload"], serde_json::json!({"ip": "127.0.0.1"}));
    del(&mut conn, &key).await;
}

#[tokio::test]
async fn a_wrong_key_type_missing_replicas_and_a_dead_server_are_retried() {
    let mut conn = redis().await;
    let key = tag();
    redis::cmd("SET")
        .arg(&key)
        .arg("not a stream")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let wrong = sink_at(URL, &format!("stream = \"{key}\""));
    match wrong.deliver(&claimed_event("w-1")).await {
        Outcome::Retry { reason, .. } => {
            assert!(
                reason.contains("holds something other than a stream"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    del(&mut conn, &key).await;

    // This server has no replicas: WAIT 1 sees none within the timeout.
    let stream = tag();
    let replicated = sink_at(
        URL,
        &format!("stream = \"{stream}\"\nreplicas = 1\ntimeout = \"1s\""),
    );
    match replicated.deliver(&claimed_event("r-1")).await {
        Outcome::Retry { reason, .. } => {
            assert!(reason.contains("only 0 of 1 replicas"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    del(&mut conn, &stream).await;

    let down = sink_at(
        "redis://:s3cret@127.0.0.1:1",
        "stream = \"x\"\ntimeout = \"500ms\"",
    );
    match down.deliver(&claimed_event("d-1")).await {
        Outcome::Retry { reason, .. } => {
            assert!(reason.contains("cannot connect to"), "{reason}");
            assert!(!reason.contains("s3cret"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
