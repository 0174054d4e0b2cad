//! The outbox row as the engine sees it.

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::fmt;

/// Lifecycle of an outbox row. Stored as its upper-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Waiting to be delivered (possibly not before `nextRetryAt`).
    Pending,
    /// Claimed by a worker that holds a lease on it.
    Processing,
    /// Delivered; the sink confirmed it.
    Sent,
    /// Given up on: permanent failure, retries exhausted, or no route/policy.
    Failed,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Processing,
        Status::Sent,
        Status::Failed,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Processing => "PROCESSING",
            Status::Sent => "SENT",
            Status::Failed => "FAILED",
        }
    }

    /// Parses the stored spelling (case-insensitive).
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event's payload: the JSON text the database gives for the column, checked to be JSON
/// and forwarded exactly as that text — numbers beyond `f64` (30-digit integers, 20-digit
/// fractions) included. Nothing on the delivery path parses it into numbers and writes it
/// back. (What the database gives is its own form of the value: a `jsonb` column orders
/// keys, rewrites escapes and prints `1e-30` in full; a `json` column keeps the
/// producer's text.)
#[derive(Clone)]
pub struct Payload(Box<serde_json::value::RawValue>);

impl Payload {
    /// `text` as a payload, if it is one JSON value.
    pub fn from_json(text: String) -> Result<Payload, serde_json::Error> {
        serde_json::value::RawValue::from_string(text).map(Payload)
    }

    /// A payload holding `value` (for handlers and tests that build events in code).
    pub fn from_value(value: &Value) -> Payload {
        // A `Value` always serialises.
        Payload(serde_json::value::to_raw_value(value).unwrap_or_else(|_| {
            serde_json::value::RawValue::from_string("null".into()).expect("null is JSON")
        }))
    }

    /// The JSON text, as stored.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The payload parsed into a [`Value`], for handlers that look inside it. Numbers
    /// become `f64` or `i64`/`u64` here (forward [`Payload::get`] to keep them exact), and a
    /// payload `Value` cannot hold (a number beyond `f64`, nesting deeper than 128) is an
    /// error.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The payload as a raw JSON value, to embed in a document being serialised (written
    /// out verbatim by `serde_json`).
    pub fn raw(&self) -> &serde_json::value::RawValue {
        &self.0
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

/// The JSON text, as stored.
impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.get() == other.get()
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Payload {
        Payload::from_value(&value)
    }
}

impl serde::Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// One row of `"OutboxEvent"` as the engine needs it for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// Primary key; also the idempotency key of every delivery.
    pub id: String,
    /// Domain name of the event, e.g. `PasswordUserLoggedInEvent`.
    pub event_name: String,
    /// Type of the event, e.g. `auth.login.success`.
    pub event_type: String,
    /// The aggregate the event belongs to (ordering unit).
    pub aggregate_id: String,
    /// Selects the retry policy and the route (sink).
    pub routing_key: String,
    /// The event body, as the database stores it.
    pub payload: Payload,
    /// Metadata to pass on to the sink (e.g. `traceparent`), a JSON object or null.
    pub headers: Option<Value>,
    /// When the producer says the event happened.
    pub occurred_at: DateTime<Utc>,
    /// Retries done so far (attempts made = retry_count, the current one is retry_count + 1).
    pub retry_count: i32,
    /// Per-event override of the policy's maxRetries.
    pub max_retries: Option<i32>,
    /// Per-event override of the policy's retryInterval, in milliseconds.
    pub retry_interval: Option<i32>,
    /// Per-event override of the policy's maxInterval, in milliseconds.
    pub max_interval: Option<i32>,
}

/// An event this worker holds a lease on. The `(lease_owner, retry_count)` pair is the
/// fencing token: an ack only lands while the row still carries both.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedEvent {
    /// The row as claimed.
    pub event: OutboxEvent,
    /// The `lockedBy` value written by the claim.
    pub lease_owner: String,
}

impl ClaimedEvent {
    /// 1-based number of this delivery attempt.
    pub fn attempt(&self) -> u32 {
        u32::try_from(self.event.retry_count).unwrap_or(0) + 1
    }
}
