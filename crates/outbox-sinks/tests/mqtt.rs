//! The MQTT sink against the local Mosquitto (127.0.0.1:1883): each test publishes under a
//! topic prefix of its own, read back by a subscriber of the test's.
#![cfg(feature = "mqtt")]

use outbox_core::{Outcome, Sink};
use outbox_testkit::{build_sink, claimed_event, LocalServer, TRACEPARENT};
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

fn sink(url: &str, extra: &str) -> Arc<dyn Sink> {
    build_sink(&format!("type = \"mqtt\"\nurl = \"{url}\"\n{extra}"))
}

/// A subscriber to `filter`, handing over what it receives.
async fn subscribe(filter: &str) -> (AsyncClient, mpsc::UnboundedReceiver<Publish>) {
    let id = format!("outbox-test-sub-{:x}", rand::random::<u64>());
    let (client, mut events) = AsyncClient::new(MqttOptions::new(id, "127.0.0.1", 1883), 64);
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    client
        .subscribe(filter.to_string(), QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(s) = subscribed_tx.take() {
                        let _ = s.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send(p);
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("Mosquitto on 127.0.0.1:1883 (scripts/services starts it)")
        .unwrap();
    (client, rx)
}

#[tokio::test]
async fn an_event_is_published_with_qos_1_and_its_metadata() {
    let prefix = format!("outbox-test-{:x}", rand::random::<u64>());
    let (_sub, mut received) = subscribe(&format!("{prefix}/#")).await;
    let sink = sink(
        "mqtt://127.0.0.1:1883",
        &format!("topic = \"{prefix}/{{routingKey}}\""),
    );
    assert_eq!(
        sink.deliver(&claimed_event("evt-1")).await,
        Outcome::Delivered
    );
    assert_eq!(
        sink.deliver(&claimed_event("evt-2")).await,
        Outcome::Delivered
    );
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            tokio::time::timeout(Duration::from_secs(10), received.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let p = &got[0];
    assert_eq!(
        String::from_utf8_lossy(&p.topic),
        format!("{prefix}/audit.record-auth-log")
    );
    let props = p.properties.clone().unwrap();
    assert_eq!(props.content_type.as_deref(), Some("application/json"));
    let prop = |name: &str| {
        props
            .user_properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(prop("Idempotency-Key").as_deref(), Some("evt-1"));
    assert_eq!(prop("X-Outbox-Attempt").as_deref(), Some("1"));
    assert_eq!(prop("traceparent").as_deref(), Some(TRACEPARENT));
    let body: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(body["id"], "evt-1");
    assert_eq!(body["payload"], serde_json::json!({"ip": "127.0.0.1"}));
}

/// Delivers `n` events (`<prefix>-0`…) at once through `sink`, asserts each was
/// delivered, and returns the first `n` messages the subscriber got.
async fn deliver_at_once(
    sink: &Arc<dyn Sink>,
    prefix: &str,
    n: usize,
    received: &mut mpsc::UnboundedReceiver<Publish>,
) -> Vec<Publish> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (sink, id) = (sink.clone(), format!("{prefix}-{i}"));
        tasks.spawn(async move { sink.deliver(&claimed_event(&id)).await });
    }
    while let Some(outcome) = tasks.join_next().await {
        assert_eq!(outcome.unwrap(), Outcome::Delivered);
    }
    let mut got = Vec::new();
    while got.len() < n {
        let p = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("every message arrives")
            .unwrap();
        got.push(p);
    }
    got
}

/// The distinct event ids in the envelopes of `messages`.
fn ids(messages: &[Publish]) -> std::collections::HashSet<String> {
    messages
        .iter()
        .map(|p| {
            let body: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
            body["id"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn many_concurrent_publishes_each_get_their_own_puback() {
    let prefix = format!("outbox-test-{:x}", rand::random::<u64>());
    let (_sub, mut received) = subscribe(&format!("{prefix}/#")).await;
    let sink = sink(
        "mqtt://127.0.0.1:1883",
        &format!("topic = \"{prefix}/events\""),
    );
    let got = deliver_at_once(&sink, "c", 300, &mut received).await;
    assert_eq!(ids(&got).len(), 300);
}

#[tokio::test]
async fn a_broker_that_is_not_there_and_a_bad_topic_are_classified() {
    let down = sink("mqtt://user:s3cret@127.0.0.1:1", "timeout = \"1s\"");
    match down.deliver(&claimed_event("d-1")).await {
        Outcome::Retry { reason, .. } => {
            assert!(
                reason.contains("cannot connect to mqtt://user:***@127.0.0.1:1"),
                "{reason}"
            );
            assert!(!reason.contains("s3cret"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let wild = sink("mqtt://127.0.0.1:1883", "topic = \"x/{eventName}\"");
    let mut event = claimed_event("w-1");
    event.event.event_name = "a/#".into();
    assert!(matches!(wild.deliver(&event).await, Outcome::Reject { .. }));
}

/// A Mosquitto of this test's own, taking packets of at most 2048 bytes.
fn small_broker() -> LocalServer {
    let mut server = LocalServer::prepare("mqtt");
    let conf = server.file("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {} 127.0.0.1\nallow_anonymous true\nmax_packet_size 2048\n",
            server.port
        ),
    )
    .unwrap();
    server.spawn("mosquitto", &["-c", &conf]);
    server
}

#[tokio::test]
async fn a_message_over_the_brokers_packet_limit_fails_alone() {
    let broker = small_broker();
    let sink = sink(
        &format!("mqtt://127.0.0.1:{}", broker.port),
        "topic = \"small/{routingKey}\"\ntimeout = \"2s\"",
    );
    // The broker may take a moment to listen.
    let mut first = Outcome::retry("not tried");
    for _ in 0..50 {
        first = sink.deliver(&claimed_event("s-1")).await;
        if first == Outcome::Delivered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first, Outcome::Delivered);
    let mut big = claimed_event("s-2");
    big.event.payload = serde_json::json!({ "blob": "x".repeat(4000) }).into();
    match sink.deliver(&big).await {
        Outcome::Reject { reason } => {
            assert!(
                reason.contains("more than the broker's maximum of 2048"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    // The session is still good for the next one.
    assert_eq!(
        sink.deliver(&claimed_event("s-3")).await,
        Outcome::Delivered
    );
}

#[tokio::test]
async fn mqtt_3_1_1_publishes_the_body_and_matches_each_puback() {
    let prefix = format!("outbox-test-{:x}", rand::random::<u64>());
    let (_sub, mut received) = subscribe(&format!("{prefix}/#")).await;
    let sink = sink(
        "mqtt://127.0.0.1:1883",
        &format!("protocol = \"3.1.1\"\ntopic = \"{prefix}/{{routingKey}}\""),
    );
    let got = deliver_at_once(&sink, "v3", 100, &mut received).await;
    assert_eq!(ids(&got).len(), 100);
    // MQTT 3.1.1 has no properties: the envelope in the body carries the id.
    for p in &got {
        let user_properties = p
            .properties
            .clone()
            .map(|p| p.user_properties)
            .unwrap_or_default();
        assert!(user_properties.is_empty());
    }
}
