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
