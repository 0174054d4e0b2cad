//! The NATS sink against the local NATS server with JetStream (127.0.0.1:4222): each test
//! makes its own stream and deletes it.
#![cfg(feature = "nats")]

use async_nats::jetstream;
use outbox_core::{Outcome, Sink};
use outbox_testkit::{build_sink, claimed_event, LocalServer, TRACEPARENT};
use std::sync::Arc;
use std::time::Duration;

const URL: &str = "nats://127.0.0.1:4222";

fn sink(extra: &str) -> Arc<dyn Sink> {
    build_sink(&format!("type = \"nats\"\nurl = \"{URL}\"\n{extra}"))
}

/// A stream of its own capturing `<prefix>.>`, deleted on drop.
struct TestStream {
    js: jetstream::Context,
    name: String,
    prefix: String,
}

impl TestStream {
    async fn new() -> TestStream {
        let tag: u64 = rand::random();
        let name = format!("OUTBOX_TEST_{tag:x}");
        let prefix = format!("t{tag:x}");
        let client = async_nats::connect(URL)
            .await
            .expect("NATS on 127.0.0.1:4222");
        let js = jetstream::new(client);
        js.create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.>")],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();
        TestStream { js, name, prefix }
    }

    async fn messages(&self) -> u64 {
        let mut s = self.js.get_stream(&self.name).await.unwrap();
        s.info().await.unwrap().state.messages
    }

    async fn message(&self, seq: u64) -> jetstream::message::StreamMessage {
        let s = self.js.get_stream(&self.name).await.unwrap();
        s.get_raw_message(seq).await.unwrap()
    }

    async fn delete(self) {
        self.js.delete_stream(&self.name).await.unwrap();
    }
}

#[tokio::test]
async fn an_event_is_stored_once_with_its_metadata_and_the_envelope() {
    let stream = TestStream::new().await;
    let sink = sink(&format!("subject = \"{}.{{routingKey}}\"", stream.prefix));
    let mut event = claimed_event("evt-1");
    event.event.retry_count = 2;
    assert_eq!(sink.deliver(&event).await, Outcome::Delivered);
    // A redelivery (say, after a crash before the result was recorded) is stored once.
    assert_eq!(sink.deliver(&event).await, Outcome::Delivered);
    assert_eq!(stream.messages().await, 1);

    let m = stream.message(1).await;
    assert_eq!(
        m.subject.as_str(),
        format!("{}.audit.record-auth-log", stream.prefix)
    );
    let h = |name: &str| m.headers.get(name).map(|v| v.as_str().to_string());
    let msg_id = m.headers.get(async_nats::header::NATS_MESSAGE_ID);
    assert_eq!(msg_id.map(|v| v.as_str()), Some("evt-1"));
    assert_eq!(h("Idempotency-Key").as_deref(), Some("evt-1"));
    assert_eq!(
        h("X-Outbox-Routing-Key").as_deref(),
        Some("audit.record-auth-log")
    );
    assert_eq!(h("X-Outbox-Attempt").as_deref(), Some("3"));
    assert_eq!(h("Content-Type").as_deref(), Some("application/json"));
    assert_eq!(h("traceparent").as_deref(), Some(TRACEPARENT));
    let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "id": "evt-1",
            "eventName": "PasswordUserLoggedInEvent",
            "eventType": "auth.login.success",
            "aggregateId": "user-1",
            "routingKey": "audit.record-auth-log",
            "occurredAt": "2026-11-27T01:02:03.456Z",
            "payload": {"ip": "127.0.0.1"},
        })
    );
    stream.delete().await;
}

#[tokio::test]
async fn cloudevents_and_payload_formats() {
    let stream = TestStream::new().await;
    let ce = sink(&format!(
        "subject = \"{}.ce\"\nformat = \"cloudevents\"\nsource = \"/reserve\"",
        stream.prefix
    ));
    let raw = sink(&format!(
        "subject = \"{}.raw\"\nformat = \"payload\"",
        stream.prefix
    ));
    assert_eq!(ce.deliver(&claimed_event("c-1")).await, Outcome::Delivered);
    assert_eq!(raw.deliver(&claimed_event("p-1")).await, Outcome::Delivered);
    let m = stream.message(1).await;
    let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["source"], "/reserve");
    assert_eq!(body["data"], serde_json::json!({"ip": "127.0.0.1"}));
    assert_eq!(
        m.headers.get("Content-Type").map(|v| v.as_str()),
        Some("application/cloudevents+json")
    );
    let m = stream.message(2).await;
    let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(body, serde_json::json!({"ip": "127.0.0.1"}));
    stream.delete().await;
}

#[tokio::test]
async fn no_stream_an_unreachable_server_and_a_bad_subject_are_classified() {
    let tag: u64 = rand::random();
    // Nothing stores this subject: retried, with the command that fixes it.
    let nowhere = sink(&format!("subject = \"nostream{tag:x}.{{routingKey}}\""));
    match nowhere.deliver(&claimed_event("n-1")).await {
        Outcome::Retry { reason, .. } => {
            assert!(
                reason.contains("no JetStream stream stores subject"),
                "{reason}"
            );
            assert!(reason.contains("nats stream add"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // A server that is not there: retried, and the password in the URL is not shown.
    let down = build_sink(
        "type = \"nats\"\nurl = \"nats://user:s3cret@127.0.0.1:1\"\ntimeout = \"500ms\"",
    );
    match down.deliver(&claimed_event("d-1")).await {
        Outcome::Retry { reason, .. } => {
            assert!(reason.contains("cannot connect to NATS"), "{reason}");
            assert!(!reason.contains("s3cret"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // A subject the event's values make invalid: permanent.
    let spaced = sink("subject = \"x.{eventName}\"");
    let mut event = claimed_event("s-1");
    event.event.event_name = "Logged In".into();
    assert!(matches!(
        spaced.deliver(&event).await,
        Outcome::Reject { .. }
    ));
}

/// A NATS server of this test's own, with a user and password and a 4 KiB max_payload.
fn private_nats() -> LocalServer {
    let mut server = LocalServer::prepare("nats");
    let conf = server.file("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{ user: outbox, password: \"s3@cret\" }}\nmax_payload: 4096\njetstream {{ store_dir: \"{}\" }}\n",
            server.file("js")
        ),
    )
    .unwrap();
    let port = server.port.to_string();
    server.spawn(
        "nats-server",
        &["-a", "127.0.0.1", "-p", &port, "-c", &conf],
    );
    server
}

#[tokio::test]
async fn url_credentials_are_used_and_the_size_limit_counts_the_headers() {
    let server = private_nats();
    // The password has an `@`, percent-encoded in the URL.
    let url = format!("nats://outbox:s3%40cret@127.0.0.1:{}", server.port);
    // Wait until it accepts us, then make the stream.
    let mut client = None;
    for _ in 0..100 {
        let options =
            async_nats::ConnectOptions::with_user_and_password("outbox".into(), "s3@cret".into());
        let addr = format!("127.0.0.1:{}", server.port);
        if let Ok(c) = options.connect(addr).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let js = jetstream::new(client.expect("the private nats-server comes up"));
    js.create_stream(jetstream::stream::Config {
        name: "AUTHED".into(),
        subjects: vec!["authed.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();

    let sink = build_sink(&format!(
        "type = \"nats\"\nurl = \"{url}\"\nsubject = \"authed.{{routingKey}}\""
    ));
    assert_eq!(
        sink.deliver(&claimed_event("a-1")).await,
        Outcome::Delivered
    );

    // The body alone fits in 4096 bytes; with its headers it does not: failed at once.
    let mut big = claimed_event("a-2");
    big.event.payload = serde_json::json!({ "blob": "x".repeat(3700) }).into();
    match sink.deliver(&big).await {
        Outcome::Reject { reason } => assert!(reason.contains("max_payload of 4096"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sink.deliver(&claimed_event("a-3")).await,
        Outcome::Delivered
    );

    // A wrong password is refused, retried, and not shown.
    let wrong = build_sink(&format!(
        "type = \"nats\"\nurl = \"nats://outbox:wrong-pw@127.0.0.1:{}\"\ntimeout = \"2s\"",
        server.port
    ));
    match wrong.deliver(&claimed_event("a-4")).await {
        Outcome::Retry { reason, .. } => {
            assert!(reason.contains("cannot connect to NATS"), "{reason}");
            assert!(!reason.contains("wrong-pw"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_line_break_in_the_id_or_routing_key_fails_the_event() {
    let sink = sink("subject = \"fixed.subject\"");
    let mut event = claimed_event("x");
    event.event.routing_key = "x\r\nNats-Expected-Last-Sequence: 1".into();
    match sink.deliver(&event).await {
        Outcome::Reject { reason } => assert!(reason.contains("line break"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn producer_headers_cannot_forge_the_message_id_or_break_lines() {
    let stream = TestStream::new().await;
    let sink = sink(&format!("subject = \"{}.h\"", stream.prefix));
    let mut event = claimed_event("h-1");
    event.event.headers = Some(serde_json::json!({
        "traceparent": TRACEPARENT,
        "note": "line one\r\nNats-Msg-Id: forged",
        "Nats-Expected-Stream": "ELSEWHERE",
        "idempotency-key": "forged",
    }));
    assert_eq!(sink.deliver(&event).await, Outcome::Delivered);
    // A second event the forged id would have made a duplicate is stored too.
    let mut other = claimed_event("forged");
    other.event.headers = None;
    assert_eq!(sink.deliver(&other).await, Outcome::Delivered);
    assert_eq!(stream.messages().await, 2);
    let m = stream.message(1).await;
    let msg_id = m.headers.get(async_nats::header::NATS_MESSAGE_ID);
    assert_eq!(msg_id.map(|v| v.as_str()), Some("h-1"));
    assert!(m.headers.get("note").is_none());
    assert!(m.headers.get("Nats-Expected-Stream").is_none());
    assert!(m.headers.get("idempotency-key").is_none());
    assert_eq!(
        m.headers.get("Idempotency-Key").map(|v| v.as_str()),
        Some("h-1")
    );
    assert_eq!(
        m.headers.get("traceparent").map(|v| v.as_str()),
        Some(TRACEPARENT)
    );
    stream.delete().await;
}
