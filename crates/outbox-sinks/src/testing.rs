//! Events for unit tests.

use outbox_core::{ClaimedEvent, OutboxEvent};

/// A claimed first attempt of event `id` on `audit.record-auth-log`.
pub(crate) fn claimed(id: &str) -> ClaimedEvent {
    ClaimedEvent {
        event: OutboxEvent {
            id: id.into(),
            event_name: "PasswordUserLoggedInEvent".into(),
            event_type: "auth.login.success".into(),
            aggregate_id: "user-1".into(),
            routing_key: "audit.record-auth-log".into(),
            payload: serde_json::json!({"ip": "127.0.0.1"}),
            headers: None,
            occurred_at: chrono::Utc::now(),
            retry_count: 0,
            max_retries: None,
            retry_interval: None,
            max_interval: None,
        },
        lease_owner: "test".into(),
    }
}
