//! `type = "kafka"`: one produce per event through librdkafka (`acks=all`, idempotent), an
//! event SENT only on its delivery report.

mod config;
mod sink;

pub use config::{KafkaSinkConfig, Type};
pub use sink::KafkaSink;
