//! Events and sinks for the sinks' own tests.

use outbox_core::{ClaimedEvent, OutboxEvent, Sink};
use std::sync::Arc;

/// The W3C trace context every [`claimed_event`] carries in its headers.
pub const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// A first attempt (retryCount 0) of event `id`: a `PasswordUserLoggedInEvent` of `user-1`
/// on `audit.record-auth-log`, payload `{"ip": "127.0.0.1"}`, headers `{"traceparent": …}`,
/// occurred at 2026-11-27T01:02:03.456Z.
pub fn claimed_event(id: &str) -> ClaimedEvent {
    ClaimedEvent {
        event: OutboxEvent {
            id: id.into(),
            event_name: "PasswordUserLoggedInEvent".into(),
            event_type: "auth.login.success".into(),
            aggregate_id: "user-1".into(),
            routing_key: "audit.record-auth-log".into(),
            payload: serde_json::json!({"ip": "127.0.0.1"}).into(),
            headers: Some(serde_json::json!({ "traceparent": TRACEPARENT })),
            occurred_at: "2026-11-27T01:02:03.456Z".parse().expect("a timestamp"),
            retry_count: 0,
            max_retries: None,
            retry_interval: None,
            max_interval: None,
        },
        lease_owner: "test".into(),
    }
}

/// The sink a `[sinks.NAME]` section describes (`toml` is its keys); panics with the
/// problems when the section is invalid.
pub fn build_sink(toml: &str) -> Arc<dyn Sink> {
    outbox_sinks::SinkConfig::build_from_toml("test", toml)
        .unwrap_or_else(|e| panic!("invalid sink: {e}"))
}
