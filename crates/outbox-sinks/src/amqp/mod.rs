//! `type = "amqp"` (alias `"rabbitmq"`): publishes each event to an AMQP 0-9-1 exchange
//! (RabbitMQ) as a persistent, mandatory message and counts it delivered on the broker's
//! publisher confirm.

mod config;
mod sink;

pub use config::{AmqpSinkConfig, Type};
pub use sink::AmqpSink;
