//! `type = "blackhole"`: accepts every event at once and discards it. For retiring a
//! routingKey on purpose, dry runs and benchmarks. It has no keys besides `type`.

use async_trait::async_trait;
use outbox_core::{ClaimedEvent, Outcome, Sink};

/// Accepts and drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlackholeSink;

#[async_trait]
impl Sink for BlackholeSink {
    async fn deliver(&self, _event: &ClaimedEvent) -> Outcome {
        Outcome::Delivered
    }
}
