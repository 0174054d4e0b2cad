//! Keys of an `[sinks.NAME]` section with `type = "amqp"`.

use crate::message::{Destination, Encoding, Template};
use outbox_core::conf::{Issue, Section};
use std::time::Duration;

/// A validated AMQP sink.
#[derive(Debug, Clone)]
pub struct AmqpSinkConfig {
    /// `amqp://user:password@host:5672/vhost` (or `amqps://`).
    pub url: String,
    /// The exchange to publish to; `""` is the default exchange (routing key = queue name).
    pub exchange: String,
    /// The routing key of each message (placeholders allowed).
    pub routing_key: Template,
    /// How long to wait for the connection and for the publisher confirm.
    pub timeout: Duration,
    /// Persistent messages (delivery mode 2), written to disk by durable queues.
    pub persistent: bool,
    /// A message no queue receives is returned and retried instead of being dropped.
    pub mandatory: bool,
    /// Body format and CloudEvents source.
    pub encoding: Encoding,
}

impl AmqpSinkConfig {
    /// Reads and validates the section `[path]`, reporting every problem (its unknown
    /// keys too).
    pub fn from_table(path: &str, table: &toml::Table, issues: &mut Vec<Issue>) -> Option<Self> {
        crate::read_section(path, table, issues, Self::read)
    }

    /// Reads every key of the section (`type` is the caller's), reporting every problem.
    pub fn read(s: &mut Section<'_>) -> Option<Self> {
        let before = s.issue_count();
        let url = s.required_string("url", "\"amqp://guest:guest@127.0.0.1:5672/%2f\"");
        if let Some(u) = &url {
            if let Err(e) = u.parse::<lapin::uri::AMQPUri>() {
                let shown = outbox_core::conf::redact_secrets(u);
                s.issue(
                    "url",
                    format!("'{shown}' is not an AMQP URL ({e}); e.g. amqp://user:password@host:5672/%2f"),
                );
            }
        }
        let exchange = s.string("exchange").unwrap_or_default();
        if exchange.len() > 255 {
            s.issue("exchange", "is longer than 255 bytes");
        }
        let routing_key = Template::read(s, "routing_key", "{routingKey}");
        routing_key.check_config(s, "routing_key", Destination::AmqpRoutingKey);
        let timeout = s.duration("timeout", Duration::from_millis(1), Duration::from_secs(5));
        let persistent = s.boolean("persistent", true);
        let mandatory = s.boolean("mandatory", true);
        let encoding = Encoding::read(s);
        if s.issue_count() > before {
            return None;
        }
        Some(AmqpSinkConfig {
            url: url?,
            exchange,
            routing_key,
            timeout,
            persistent,
            mandatory,
            encoding,
        })
    }
}

/// `type = "amqp"`.
pub struct Type;

impl crate::SinkType for Type {
    fn names(&self) -> &'static [&'static str] {
        &["amqp", "rabbitmq"]
    }

    fn read(&self, s: &mut Section<'_>) -> Option<std::sync::Arc<dyn crate::SinkSettings>> {
        AmqpSinkConfig::read(s).map(|c| std::sync::Arc::new(c) as _)
    }
}

impl crate::SinkSettings for AmqpSinkConfig {
    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn build(&self) -> Result<std::sync::Arc<dyn outbox_core::Sink>, String> {
        Ok(std::sync::Arc::new(super::AmqpSink::new(self)?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Option<AmqpSinkConfig>, Vec<String>) {
        crate::test_support::read(AmqpSinkConfig::from_table, text)
    }

    #[test]
    fn defaults_apply_and_problems_are_all_listed() {
        let (c, issues) = read("type = \"amqp\"\nurl = \"amqp://127.0.0.1:5672/%2f\"");
        assert!(issues.is_empty(), "{issues:?}");
        let c = c.unwrap();
        assert_eq!(c.exchange, "");
        assert!(c.persistent && c.mandatory);
        assert_eq!(c.timeout, Duration::from_secs(5));

        let (c, issues) = read(
            "type = \"amqp\"\nurl = \"http://u:pw@x\"\nrouting_key = \"{nope}\"\npersistent = \"yes\"\nqueue = \"q\"",
        );
        assert!(c.is_none());
        crate::test_support::assert_names(&issues, &["url", "routing_key", "persistent", "queue"]);
        let joined = issues.join("\n");
        assert!(!joined.contains(":pw@"), "{joined}");
    }
}
