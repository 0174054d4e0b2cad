//! The Redis sink against the local Redis (127.0.0.1:6379): each test uses keys of its own
//! and deletes them.
#![cfg(feature = "redis")]

use outbox_core::{ClaimedEvent, OutboxEvent, Outcome, Sink};
use outbox_sinks::redis::{RedisSink, RedisSinkConfig};
use std::collections::HashMap;

const URL: &str = "redis://127.0.0.1:6379";

fn claimed(id: &str) -> ClaimedEvent {
    ClaimedEvent {
        event: OutboxEvent {
            id: id.into(),
            event_name: "PasswordUserLoggedInEvent".into(),
            event_type: "auth.login.success".into(),
            aggregate_id: "user-1".into(),
            routing_key: "audit.record-auth-log".into(),
            payload: serde_json::json!({"ip": "127.0.0.1"}),
            headers: Some(
                serde_json::json!({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}),
            ),
            occurred_at: "2026-11-27T01:02:03.456Z".parse().unwrap(),
            retry_count: 1,
            max_retries: None,
            retry_interval: None,
            max_interval: None,
        },
        lease_owner: "test".into(),
    }
}

fn sink_at(url: &str, extra: &str) -> RedisSink {
    let text = format!("type = \"redis\"\nurl = \"{url}\"\n{extra}");
    let table: toml::Table = toml::from_str(&text).unwrap();
    let mut issues = Vec::new();
    let config = RedisSinkConfig::from_table("sinks.r", &table, &mut issues)
        .unwrap_or_else(|| panic!("{issues:?}"));
    RedisSink::new(&config).unwrap()
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
    assert_eq!(sink.deliver(&claimed("evt-1")).await, Outcome::Delivered);
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
    assert_eq!(
        headers["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
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
    match wrong.deliver(&claimed("w-1")).await {
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
    match replicated.deliver(&claimed("r-1")).await {
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
    match down.deliver(&claimed("d-1")).await {
        Outcome::Retry { reason, .. } => {
            assert!(reason.contains("cannot connect to"), "{reason}");
            assert!(!reason.contains("s3cret"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
