//! What every sink sends: destination templates filled in from the event.

use outbox_sinks::message::Template;
use outbox_testkit::claimed_event;

#[test]
fn templates_fill_in_the_event_and_name_unknown_placeholders() {
    let t = Template::parse("outbox.{routingKey}.{eventType}").unwrap();
    assert_eq!(
        t.render(&claimed_event("e-1")),
        "outbox.audit.record-auth-log.auth.login.success"
    );
    assert!(!t.is_fixed());
    assert!(Template::parse("events").unwrap().is_fixed());
    let e = Template::parse("x.{routing_key}").unwrap_err();
    assert!(e.contains("unknown placeholder '{routing_key}'"), "{e}");
    assert!(e.contains("{routingKey}"), "{e}");
    assert!(Template::parse("x.{routingKey")
        .unwrap_err()
        .contains("without a closing"));
}

#[test]
fn a_producer_cannot_set_the_relays_own_headers() {
    use outbox_sinks::message::{event_headers, outbox_headers};
    let mut event = claimed_event("real-id");
    event.event.headers = Some(serde_json::json!({
        "traceparent": "t",
        "IDEMPOTENCY-KEY": "forged",
        "x-outbox-attempt": "99",
        "tenant": 7,
        "gone": null,
    }));
    let mut got = event_headers(&event);
    got.sort();
    assert_eq!(
        got,
        [
            ("tenant".to_string(), "7".to_string()),
            ("traceparent".to_string(), "t".to_string())
        ]
    );
    assert_eq!(
        outbox_headers(&event)[0],
        ("Idempotency-Key", "real-id".into())
    );
}

/// `claimed_event` with its aggregateId set to `aggregate`.
fn with_aggregate(aggregate: &str) -> outbox_core::ClaimedEvent {
    let mut e = claimed_event("e-1");
    e.event.aggregate_id = aggregate.to_string();
    e
}

#[test]
fn a_templated_destination_never_leaves_the_configured_namespace() {
    use outbox_sinks::message::Destination::{self, *};
    let check = |template: &str, aggregate: &str, kind: Destination| {
        Template::parse(template)
            .unwrap()
            .destination(&with_aggregate(aggregate), kind)
    };
    // Plain values go through.
    assert_eq!(
        check("orders.{aggregateId}", "user-1", NatsSubject).unwrap(),
        "orders.user-1"
    );
    assert_eq!(
        check("{aggregateId}", "orders/user-1", MqttTopic).unwrap(),
        "orders/user-1"
    );
    // A system subject or topic reached through a field: refused; chosen by the operator: kept.
    let e = check("{aggregateId}", "$JS.API.STREAM.PURGE.ORDERS", NatsSubject).unwrap_err();
    assert!(
        e.contains("starts with '$', a broker's system namespace"),
        "{e}"
    );
    assert!(check("{aggregateId}", "$SYS/broker/x", MqttTopic).is_err());
    assert_eq!(
        check("$events.{aggregateId}", "a", NatsSubject).unwrap(),
        "$events.a"
    );
    // Wildcards, empty tokens, whitespace.
    for bad in ["*", ">", "a..b", "", "a b", "a.", "x.>"] {
        assert!(
            check("orders.{aggregateId}", bad, NatsSubject).is_err(),
            "{bad:?}"
        );
    }
    for bad in ["+", "#", "a/+/b", "a/#"] {
        assert!(
            check("orders/{aggregateId}", bad, MqttTopic).is_err(),
            "{bad:?}"
        );
    }
    // Control characters in any field, for every kind.
    for kind in [NatsSubject, MqttTopic, RedisKey, AmqpRoutingKey] {
        for bad in ["a\nb", "a\0b", "a\rb", "a\u{7f}"] {
            let e = check("x.{aggregateId}", bad, kind).unwrap_err();
            assert!(
                e.contains("aggregateId contains a control character"),
                "{e}"
            );
        }
    }
    // Length: a 5 KB subject would make the server drop the shared connection.
    let long = "a".repeat(5000);
    let e = check("orders.{aggregateId}", &long, NatsSubject).unwrap_err();
    assert!(e.contains("5007 bytes; at most 1024"), "{e}");
    assert!(check("{aggregateId}", &"k".repeat(256), AmqpRoutingKey)
        .unwrap_err()
        .contains("at most 255"));
    assert!(check("{aggregateId}", &"k".repeat(255), AmqpRoutingKey).is_ok());
    // Redis keys and AMQP routing keys take any printable text.
    assert!(check("events:{aggregateId}", "$a.*>#+", RedisKey).is_ok());
    assert!(check("{aggregateId}", "a.*.#", AmqpRoutingKey).is_ok());
}

#[test]
fn an_invalid_destination_in_the_config_itself_is_a_config_error() {
    for (text, key) in [
        (
            "type = \"nats\"\nurl = \"nats://h\"\nsubject = \"a.*\"",
            "subject",
        ),
        (
            "type = \"mqtt\"\nurl = \"mqtt://h\"\ntopic = \"a/#\"",
            "topic",
        ),
        (
            "type = \"nats\"\nurl = \"nats://h\"\nsubject = \"a..{routingKey}\"",
            "subject",
        ),
    ] {
        let e = match outbox_sinks::SinkConfig::build_from_toml("s", text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e,
        };
        assert!(e.contains(&format!("sinks.s.{key}")), "{e}");
    }
}

#[test]
fn framing_and_routing_headers_are_never_taken_from_an_event() {
    use outbox_sinks::message::http_header_allowed;
    for reserved in [
        "Host",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "TE",
        "Upgrade",
        "Proxy-Authorization",
        "proxy-anything",
        "X-Forwarded-For",
        "Forwarded",
        "Content-Type",
        "Content-Encoding",
        "Expect",
    ] {
        assert!(!http_header_allowed(reserved), "{reserved}");
    }
    for allowed in [
        "traceparent",
        "X-Tenant",
        "Authorization",
        "x-outbox-custom",
    ] {
        assert!(http_header_allowed(allowed), "{allowed}");
    }
}
