//! The sinks of the outbox relay. Each sink is a folder with the same template: `config.rs`
//! (its keys, validated without I/O, every problem reported) and `sink.rs` (the [`Sink`]
//! implementation with one function that classifies its errors).

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod blackhole;
#[cfg(feature = "http")]
pub mod http;
pub mod message;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(test)]
mod test_support;
#[cfg(feature = "tls")]
pub mod tls;

use outbox_core::conf::{Issue, Section};
use outbox_core::{Outcome, Sink};
use std::sync::Arc;
use std::time::Duration;

/// The `errno` values that say this process ran out of something of its own, with what
/// they mean: a connection that fails so never reached the destination.
const LOCAL_EXHAUSTION: [(i32, &str); 4] = [
    (24, "the relay is out of file descriptors (EMFILE)"),
    (23, "the system is out of file descriptors (ENFILE)"),
    (105, "the relay is out of socket buffers (ENOBUFS)"),
    (12, "the relay is out of memory (ENOMEM)"),
];

/// How long an event waits after the relay ran out of something of its own.
const NOT_ATTEMPTED_DELAY: Duration = Duration::from_secs(1);

/// What `e`, or one of its causes, says the relay ran out of (file descriptors, socket
/// buffers, memory), when that is why it failed: an I/O error with one of those `errno`
/// values, or a message that quotes one (`(os error 24)`), as libraries that keep only
/// the text do.
pub fn local_exhaustion(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(code) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
        {
            if let Some((_, what)) = LOCAL_EXHAUSTION.iter().find(|(c, _)| *c == code) {
                return Some(what);
            }
        }
        if let Some(what) = exhaustion_in_text(&err.to_string()) {
            return Some(what);
        }
        next = err.source();
    }
    None
}

fn exhaustion_in_text(text: &str) -> Option<&'static str> {
    LOCAL_EXHAUSTION
        .iter()
        .find(|(code, _)| text.contains(&format!("(os error {code})")))
        .map(|(_, what)| *what)
}

/// The outcome of a failure to reach a destination, described by `message`: retried, or —
/// when the relay itself ran out of something — not attempted, so the event is not charged.
pub(crate) fn unreachable(message: String) -> Outcome {
    match exhaustion_in_text(&message) {
        Some(what) => Outcome::NotAttempted {
            reason: format!("{what}: {message}"),
            after: NOT_ATTEMPTED_DELAY,
        },
        None => Outcome::retry(message),
    }
}

/// The sink types this build knows, for messages.
pub const SINK_TYPES: &[&str] = &[
    #[cfg(feature = "amqp")]
    "amqp",
    "blackhole",
    #[cfg(feature = "http")]
    "http",
    #[cfg(feature = "mqtt")]
    "mqtt",
    #[cfg(feature = "nats")]
    "nats",
    #[cfg(feature = "redis")]
    "redis",
];

/// A validated `[sinks.NAME]` section.
#[derive(Debug, Clone)]
pub enum SinkConfig {
    /// `type = "blackhole"`.
    Blackhole,
    /// `type = "http"`.
    #[cfg(feature = "http")]
    Http(http::HttpSinkConfig),
    /// `type = "amqp"` or `"rabbitmq"`.
    #[cfg(feature = "amqp")]
    Amqp(amqp::AmqpSinkConfig),
    /// `type = "mqtt"` (MQTT 5).
    #[cfg(feature = "mqtt")]
    Mqtt(mqtt::MqttSinkConfig),
    /// `type = "nats"` (JetStream).
    #[cfg(feature = "nats")]
    Nats(nats::NatsSinkConfig),
    /// `type = "redis"` (Streams).
    #[cfg(feature = "redis")]
    Redis(redis::RedisSinkConfig),
}

impl SinkConfig {
    /// Reads `[sinks.NAME]` (at `path`), adding every problem found to `issues`.
    pub fn from_table(path: &str, table: &toml::Table, issues: &mut Vec<Issue>) -> Option<Self> {
        let kind = match table.get("type") {
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => {
                issues.push(Issue {
                    key: format!("{path}.type"),
                    message: format!("expected a string, one of: {}", SINK_TYPES.join(", ")),
                });
                return None;
            }
            None => {
                issues.push(Issue {
                    key: format!("{path}.type"),
                    message: format!(
                        "missing; add `type = \"http\"` (sink types: {})",
                        SINK_TYPES.join(", ")
                    ),
                });
                return None;
            }
        };
        match kind.as_str() {
            "blackhole" => {
                Section::new(path, table, &["type"], issues);
                Some(SinkConfig::Blackhole)
            }
            #[cfg(feature = "http")]
            "http" => http::HttpSinkConfig::from_table(path, table, issues).map(SinkConfig::Http),
            #[cfg(feature = "amqp")]
            "amqp" | "rabbitmq" => {
                amqp::AmqpSinkConfig::from_table(path, table, issues).map(SinkConfig::Amqp)
            }
            #[cfg(feature = "mqtt")]
            "mqtt" => mqtt::MqttSinkConfig::from_table(path, table, issues).map(SinkConfig::Mqtt),
            #[cfg(feature = "nats")]
            "nats" => nats::NatsSinkConfig::from_table(path, table, issues).map(SinkConfig::Nats),
            #[cfg(feature = "redis")]
            "redis" => {
                redis::RedisSinkConfig::from_table(path, table, issues).map(SinkConfig::Redis)
            }
            other => {
                let broker = ["kafka"];
                let note = if broker.contains(&other) {
                    " (broker sinks are not in this version yet)"
                } else {
                    ""
                };
                issues.push(Issue {
                    key: format!("{path}.type"),
                    message: format!(
                        "unknown sink type '{other}'{note}; use one of: {}",
                        SINK_TYPES.join(", ")
                    ),
                });
                None
            }
        }
    }

    /// The sink's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Blackhole => "blackhole",
            #[cfg(feature = "http")]
            SinkConfig::Http(_) => "http",
            #[cfg(feature = "nats")]
            SinkConfig::Nats(_) => "nats",
            #[cfg(feature = "amqp")]
            SinkConfig::Amqp(_) => "amqp",
            #[cfg(feature = "redis")]
            SinkConfig::Redis(_) => "redis",
            #[cfg(feature = "mqtt")]
            SinkConfig::Mqtt(_) => "mqtt",
        }
    }

    /// Whether [`outbox_core::Sink::health`] says something about the destination: a broker
    /// connection can be opened without sending anything; an HTTP request would deliver.
    pub fn has_health_check(&self) -> bool {
        !matches!(self.kind(), "blackhole" | "http")
    }

    /// What is worth a warning in this sink's settings (credentials sent in clear text).
    pub fn warnings(&self) -> Vec<String> {
        match self {
            #[cfg(feature = "http")]
            SinkConfig::Http(c) => c.cleartext_warning().into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// How long one delivery may take at most, where the sink bounds it.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            SinkConfig::Blackhole => None,
            #[cfg(feature = "http")]
            SinkConfig::Http(c) => Some(c.timeout),
            #[cfg(feature = "nats")]
            SinkConfig::Nats(c) => Some(c.timeout),
            #[cfg(feature = "amqp")]
            SinkConfig::Amqp(c) => Some(c.timeout),
            #[cfg(feature = "redis")]
            SinkConfig::Redis(c) => Some(c.timeout),
            #[cfg(feature = "mqtt")]
            SinkConfig::Mqtt(c) => Some(c.timeout),
        }
    }

    /// Reads a `[sinks.NAME]` section given as TOML text (its keys) and builds the sink:
    /// for tests, benchmarks and programs that configure one sink by hand. Every problem
    /// is in the error, one per line.
    pub fn build_from_toml(name: &str, text: &str) -> Result<Arc<dyn Sink>, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut issues = Vec::new();
        let config = SinkConfig::from_table(&format!("sinks.{name}"), &table, &mut issues)
            .ok_or_else(|| {
                issues
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        config.build()
    }

    /// Builds the sink (no I/O happens until the first delivery).
    pub fn build(&self) -> Result<Arc<dyn Sink>, String> {
        match self {
            SinkConfig::Blackhole => Ok(Arc::new(blackhole::BlackholeSink)),
            #[cfg(feature = "http")]
            SinkConfig::Http(c) => Ok(Arc::new(http::HttpSink::new(c)?)),
            #[cfg(feature = "nats")]
            SinkConfig::Nats(c) => Ok(Arc::new(nats::NatsSink::new(c)?)),
            #[cfg(feature = "amqp")]
            SinkConfig::Amqp(c) => Ok(Arc::new(amqp::AmqpSink::new(c)?)),
            #[cfg(feature = "redis")]
            SinkConfig::Redis(c) => Ok(Arc::new(redis::RedisSink::new(c)?)),
            #[cfg(feature = "mqtt")]
            SinkConfig::Mqtt(c) => Ok(Arc::new(mqtt::MqttSink::new(c)?)),
        }
    }
}
