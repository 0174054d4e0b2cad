//! `type = "blackhole"`: accepts every event at once and discards it. For retiring a
//! routingKey on purpose, dry runs and benchmarks. It has no keys besides `type`.

use async_trait::async_trait;
use outbox_core::conf::Section;
use outbox_core::{ClaimedEvent, Outcome, Sink};
use std::sync::Arc;
use std::time::Duration;

/// `type = "blackhole"`.
pub struct Type;

impl crate::SinkType for Type {
    fn names(&self) -> &'static [&'static str] {
        &["blackhole"]
    }

    fn read(&self, _: &mut Section<'_>) -> Option<Arc<dyn crate::SinkSettings>> {
        Some(Arc::new(BlackholeSink))
    }
}

impl crate::SinkSettings for BlackholeSink {
    fn timeout(&self) -> Option<Duration> {
        None
    }

    fn health_checked(&self) -> bool {
        false
    }

    fn build(&self) -> Result<Arc<dyn Sink>, String> {
        Ok(Arc::new(BlackholeSink))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Accepts and drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlackholeSink;

#[async_trait]
impl Sink for BlackholeSink {
    async fn deliver(&self, _event: &ClaimedEvent) -> Outcome {
        Outcome::Delivered
    }
}
