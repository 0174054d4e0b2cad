//! Keys of an `[sinks.NAME]` section with `type = "kafka"`.

use crate::message::{Destination, Encoding, Template};
use outbox_core::conf::{Issue, Section};
use std::collections::BTreeMap;
use std::time::Duration;

/// librdkafka properties the sink sets itself: the delivery guarantee and what other keys
/// of the section say.
const OWN_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "set `brokers`"),
    ("metadata.broker.list", "set `brokers`"),
    (
        "acks",
        "the sink always waits for all in-sync replicas (acks=all)",
    ),
    (
        "request.required.acks",
        "the sink always waits for all in-sync replicas (acks=all)",
    ),
    (
        "enable.idempotence",
        "the sink is always idempotent, so retries neither duplicate nor reorder",
    ),
    ("message.timeout.ms", "set `timeout`"),
    ("delivery.timeout.ms", "set `timeout`"),
    (
        "transactional.id",
        "the sink does not use Kafka transactions",
    ),
];

/// Whether property `name` holds a secret (never printed).
pub(crate) fn secret_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password")
        || n.contains("secret")
        || n.ends_with(".key.pem")
        || n == "sasl.oauthbearer.config"
}

/// How a CloudEvent is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudEventsMode {
    /// The whole event as the message value (`application/cloudevents+json`).
    Structured,
    /// The payload as the value, the attributes as `ce_` headers.
    Binary,
}

/// A validated Kafka sink.
#[derive(Clone)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// The topic each event is produced to (placeholders allowed).
    pub topic: Template,
    /// The message key (placeholders allowed; `{aggregateId}` keeps an aggregate in one
    /// partition, in order).
    pub key: Template,
    /// How long a produce may take until its delivery report (librdkafka's
    /// `message.timeout.ms`).
    pub timeout: Duration,
    /// Body format and CloudEvents source.
    pub encoding: Encoding,
    /// With `format = "cloudevents"`: structured or binary mode.
    pub cloudevents: CloudEventsMode,
    /// Extra librdkafka properties (TLS, SASL, tuning).
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if secret_property(k) {
                        "***"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("KafkaSinkConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .field("encoding", &self.encoding)
            .field("cloudevents", &self.cloudevents)
            .field("properties", &shown)
            .finish()
    }
}

impl KafkaSinkConfig {
    /// Reads and validates the section `[path]`, reporting every problem (its unknown
    /// keys too).
    pub fn from_table(path: &str, table: &toml::Table, issues: &mut Vec<Issue>) -> Option<Self> {
        crate::read_section(path, table, issues, Self::read)
    }

    /// Reads every key of the section (`type` is the caller's), reporting every problem.
    pub fn read(s: &mut Section<'_>) -> Option<Self> {
        let before = s.issue_count();
        let brokers = s.required_string("brokers", "\"127.0.0.1:9092\"");
        if let Some(b) = &brokers {
            for one in b.split(',').map(str::trim) {
                let ok = one
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !ok {
                    s.issue(
                        "brokers",
                        format!(
                            "'{one}' is not host:port; write e.g. \"kafka-1:9092,kafka-2:9092\""
                        ),
                    );
                }
            }
        }
        let topic = Template::read(s, "topic", "{routingKey}");
        topic.check_config(s, "topic", Destination::KafkaTopic);
        let key = Template::read(s, "key", "{aggregateId}");
        let timeout = s.duration_within(
            "timeout",
            Duration::from_millis(1),
            Duration::from_secs(3600),
            Duration::from_secs(10),
        );
        let encoding = Encoding::read(s);
        let cloudevents = match s
            .choice("cloudevents", &["structured", "binary"], "structured")
            .as_str()
        {
            "binary" => CloudEventsMode::Binary,
            _ => CloudEventsMode::Structured,
        };
        if s.value("cloudevents").is_some()
            && encoding.format != crate::message::BodyFormat::CloudEvents
        {
            s.issue("cloudevents", "applies to format = \"cloudevents\"");
        }
        let properties = s.string_map("properties");
        for name in properties.keys() {
            if let Some((_, why)) = OWN_PROPERTIES
                .iter()
                .find(|(p, _)| p.eq_ignore_ascii_case(name))
            {
                s.issue(
                    &format!("properties.\"{name}\""),
                    format!("is the sink's own: {why}"),
                );
            }
        }
        if s.issue_count() > before {
            return None;
        }
        Some(KafkaSinkConfig {
            brokers: brokers?,
            topic,
            key,
            timeout,
            encoding,
            cloudevents,
            properties,
        })
    }
}

/// `type = "kafka"`.
pub struct Type;

impl crate::SinkType for Type {
    fn names(&self) -> &'static [&'static str] {
        &["kafka"]
    }

    fn read(&self, s: &mut Section<'_>) -> Option<std::sync::Arc<dyn crate::SinkSettings>> {
        KafkaSinkConfig::read(s).map(|c| std::sync::Arc::new(c) as _)
    }
}

impl crate::SinkSettings for KafkaSinkConfig {
    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn build(&self) -> Result<std::sync::Arc<dyn outbox_core::Sink>, String> {
        Ok(std::sync::Arc::new(super::KafkaSink::new(self)?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::read as read_with;

    fn read(text: &str) -> (Option<KafkaSinkConfig>, Vec<String>) {
        read_with(KafkaSinkConfig::from_table, text)
    }

    #[test]
    fn defaults_and_every_problem() {
        let (c, issues) = read("type = \"kafka\"\nbrokers = \"127.0.0.1:19092\"");
        assert!(issues.is_empty(), "{issues:?}");
        let c = c.unwrap();
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.cloudevents, CloudEventsMode::Structured);
        let (c, issues) = read(
            r#"type = "kafka"
brokers = "nohost,h:99999"
topic = "bad topic {routingKey}"
cloudevents = "binary"
properties = { acks = "1", "sasl.password" = "hunter2", "linger.ms" = "20" }"#,
        );
        assert!(c.is_none());
        let joined = issues.join("\n");
        for want in [
            "sinks.s.brokers: 'nohost' is not host:port",
            "sinks.s.brokers: 'h:99999' is not host:port",
            "sinks.s.topic:",
            "sinks.s.cloudevents: applies to format = \"cloudevents\"",
            "sinks.s.properties.\"acks\": is the sink's own",
        ] {
            assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
        }
        assert!(!joined.contains("hunter2"), "{joined}");
    }

    #[test]
    fn secrets_in_properties_are_never_shown() {
        let (c, _) = read(
            "type = \"kafka\"\nbrokers = \"b:9092\"\nproperties = { \"sasl.password\" = \"hunter2\", \"ssl.key.password\" = \"x1\" }",
        );
        let shown = format!("{:?}", c.unwrap());
        assert!(
            !shown.contains("hunter2") && !shown.contains("x1"),
            "{shown}"
        );
    }
}
