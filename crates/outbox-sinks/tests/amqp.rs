//! The AMQP sink against the local RabbitMQ (127.0.0.1:5672, guest/guest): each test declares
//! its own queue / exchange and deletes them.
#![cfg(feature = "amqp")]

use lapin::options::{
    BasicGetOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use outbox_core::{Outcome, Sink};
use outbox_testkit::{build_sink, claimed_event, TRACEPARENT};
use std::sync::Arc;

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn sink(extra: &str) -> Arc<dyn Sink> {
    build_sink(&format!("type = \"amqp\"\nurl = \"{URL}\"\n{extra}"))
}

async fn broker() -> (Connection, Channel) {
    let conn = Connection::connect(URL, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 (scripts/services starts it)");
    let channel = conn.create_channel().await.unwrap();
    (conn, channel)
}

fn tag() -> String {
    format!("outbox-test-{:x}", rand::random::<u64>())
}

async fn declare_queue(ch: &Channel, name: &str) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .unwrap();
}

fn header(props: &lapin::BasicProperties, name: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        other => Some(format!("{other:?}")),
    }
}

#[tokio::test]
async fn an_event_is_confirmed_persistent_and_carries_its_metadata() {
    let (_conn, ch) = broker().await;
    let queue = tag();
    declare_queue(&ch, &queue).await;
    // The default exchange routes by queue name.
    let sink = sink(&format!("routing_key = \"{queue}\""));
    assert_eq!(
        sink.deliver(&claimed_event("evt-1")).await,
        Outcome::Delivered
    );

    let got = ch
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the message is in the queue");
    let p = &got.delivery.properties;
    assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some("evt-1"));
    assert_eq!(*p.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(header(p, "Idempotency-Key").as_deref(), Some("evt-1"));
    assert_eq!(header(p, "X-Outbox-Attempt").as_deref(), Some("1"));
    assert_eq!(
        header(p, "X-Outbox-Routing-Key").as_deref(),
        Some("audit.record-auth-log")
    );
    assert_eq!(header(p, "traceparent").as_deref(), Some(TRACEPARENT));
    let body: serde_json::Value = serde_json::from_slice(&got.delivery.data).unwrap();
    assert_eq!(body["id"], "evt-1");
    assert_eq!(body["occurredAt"], "2026-11-27T01:02:03.456Z");
    assert_eq!(body["payload"], serde_json::json!({"ip": "127.0.0.1"}));
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn unroutable_messages_and_missing_exchanges_are_retried_until_fixed() {
    let (_conn, ch) = broker().await;
    let (exchange, queue) = (tag(), tag());
    let sink = sink(&format!(
        "exchange = \"{exchange}\"\nrouting_key = \"outbox.{{routingKey}}\""
    ));
    // The exchange does not exist: the broker closes the channel; retried, saying so.
    match sink.deliver(&claimed_event("x-1")).await {
        Outcome::Retry { reason, .. } => assert!(reason.contains("does not exist"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // It exists but no queue is bound: the mandatory message comes back; retried.
    ch.exchange_declare(
        exchange.as_str().into(),
        ExchangeKind::Topic,
        lapin::options::ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    match sink.deliver(&claimed_event("x-2")).await {
        Outcome::Retry { reason, .. } => {
            assert!(
                reason.contains("routed the message to no queue"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Bound: delivered, on a channel the sink opened again by itself.
    declare_queue(&ch, &queue).await;
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "outbox.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        sink.deliver(&claimed_event("x-3")).await,
        Outcome::Delivered
    );
    let got = ch
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.delivery.routing_key.as_str(),
        "outbox.audit.record-auth-log"
    );
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_broker_is_retried_without_showing_the_password() {
    let down = build_sink(
        "type = \"amqp\"\nurl = \"amqp://guest:s3cret@127.0.0.1:1/%2f\"\ntimeout = \"1s\"",
    );
    match down.deliver(&claimed_event("d-1")).await {
        Outcome::Retry { reason, .. } => {
            assert!(
                reason.contains("cannot connect to amqp://guest:***@127.0.0.1:1"),
                "{reason}"
            );
            assert!(!reason.contains("s3cret"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn ids_too_long_for_amqp_fail_and_long_event_types_are_left_out() {
    let (_conn, ch) = broker().await;
    let queue = tag();
    declare_queue(&ch, &queue).await;
    let sink = sink(&format!("routing_key = \"{queue}\""));
    let long_id = claimed_event(&"i".repeat(300));
    match sink.deliver(&long_id).await {
        Outcome::Reject { reason } => assert!(reason.contains("event id is 300 bytes"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let mut long_type = claimed_event("t-1");
    long_type.event.event_type = "t".repeat(300);
    assert_eq!(sink.deliver(&long_type).await, Outcome::Delivered);
    let got = ch
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the message is in the queue");
    assert_eq!(*got.delivery.properties.kind(), None);
    let body: serde_json::Value = serde_json::from_slice(&got.delivery.data).unwrap();
    assert_eq!(body["eventType"].as_str().map(str::len), Some(300));
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}
