//! Where an event goes: the [`Sink`] trait and the [`Outcome`] of one delivery.

use crate::event::ClaimedEvent;
use async_trait::async_trait;
use std::time::Duration;

/// The result of one delivery attempt. Each sink classifies its own errors into these.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The destination confirmed the event durably; it becomes SENT.
    Delivered,
    /// A transient failure: retried per the policy.
    Retry {
        /// Human-readable cause, stored in `lastError`.
        reason: String,
        /// A delay the destination asked for (e.g. HTTP `Retry-After`).
        after: Option<Duration>,
    },
    /// A permanent failure: FAILED at once, no retries spent.
    Reject {
        /// Human-readable cause, stored in `lastError`.
        reason: String,
    },
    /// The relay itself could not make the attempt (it ran out of file descriptors or
    /// memory): nothing reached the destination, so the event goes back to PENDING without
    /// being charged an attempt, due after `after`.
    NotAttempted {
        /// Human-readable cause, stored in `lastError`.
        reason: String,
        /// How long to wait before the next try.
        after: Duration,
    },
}

impl Outcome {
    /// A retryable failure without a requested delay.
    pub fn retry(reason: impl Into<String>) -> Outcome {
        Outcome::Retry {
            reason: reason.into(),
            after: None,
        }
    }

    /// A permanent failure.
    pub fn reject(reason: impl Into<String>) -> Outcome {
        Outcome::Reject {
            reason: reason.into(),
        }
    }
}

/// A destination for events: an HTTP API, a broker, or a handler compiled into the host app.
///
/// `deliver` must return only after the destination has durably accepted the event (HTTP
/// 2xx, broker confirm). It must not panic; if it does, the engine records a retryable
/// failure. It is called concurrently for different events.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Delivers one event.
    async fn deliver(&self, event: &ClaimedEvent) -> Outcome;

    /// Whether the destination is reachable. Defaults to healthy.
    async fn health(&self) -> Result<(), String> {
        Ok(())
    }

    /// What the sink can tell before any delivery about where events of these routing keys
    /// go (e.g. a Kafka topic that does not exist), one line each. Defaults to nothing.
    async fn check_routes(&self, _routing_keys: &[String]) -> Vec<String> {
        Vec::new()
    }
}
