//! `type = "nats"`: publishes each event to NATS JetStream and counts it delivered once the
//! stream has acknowledged storing it. The event id goes in `Nats-Msg-Id`, so a redelivery
//! within the stream's duplicate window is stored once.

mod config;
mod sink;

pub use config::{NatsSinkConfig, Type};
pub use sink::NatsSink;
