//! `type = "mqtt"`: publishes each event with QoS 1 over MQTT 5 and counts it delivered on
//! the broker's PUBACK.

mod config;
mod sink;

pub use config::MqttSinkConfig;
pub use sink::MqttSink;
