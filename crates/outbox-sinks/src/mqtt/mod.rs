//! `type = "mqtt"`: publishes each event with QoS 1 over MQTT 5 (or 3.1.1) and counts it
//! delivered on the broker's PUBACK.

mod config;
mod protocol;
mod sink;

pub use protocol::Version;

pub use config::{MqttSinkConfig, Type};
pub use sink::MqttSink;
