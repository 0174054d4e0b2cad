//! Keys of an `[sinks.NAME]` section with `type = "nats"`.

use crate::message::{Destination, Encoding, Template};
use outbox_core::conf::{Issue, Section};
use std::time::Duration;

/// A validated NATS JetStream sink.
#[derive(Debug, Clone)]
pub struct NatsSinkConfig {
    /// Server URL(s), comma-separated: `nats://host:4222`; credentials may sit in the URL.
    pub url: String,
    /// The subject each event is published to (placeholders allowed).
    pub subject: Template,
    /// How long to wait for the connection and for the stream's acknowledgement.
    pub timeout: Duration,
    /// A token for token authentication.
    pub token: Option<String>,
    /// A PEM file of the CAs to trust instead of the public roots (TLS).
    pub ca_file: Option<std::path::PathBuf>,
    /// Body format and CloudEvents source.
    pub encoding: Encoding,
}

impl NatsSinkConfig {
    /// Reads and validates the section `[path]`, reporting every problem (its unknown
    /// keys too).
    pub fn from_table(path: &str, table: &toml::Table, issues: &mut Vec<Issue>) -> Option<Self> {
        crate::read_section(path, table, issues, Self::read)
    }

    /// Reads every key of the section (`type` is the caller's), reporting every problem.
    pub fn read(s: &mut Section<'_>) -> Option<Self> {
        let before = s.issue_count();
        let url = s.required_string("url", "\"nats://127.0.0.1:4222\"");
        if let Some(u) = &url {
            for one in u.split(',') {
                let one = one.trim();
                let scheme = one.split_once("://").map(|(s, _)| s);
                if !matches!(scheme, Some("nats" | "tls")) {
                    let shown = outbox_core::conf::redact_secrets(one);
                    s.issue(
                        "url",
                        format!("'{shown}' is not a NATS URL; use nats://host:4222 (or tls://)"),
                    );
                }
            }
        }
        let subject = Template::read(s, "subject", "{routingKey}");
        subject.check_config(s, "subject", Destination::NatsSubject);
        let timeout = s.duration("timeout", Duration::from_millis(1), Duration::from_secs(5));
        let token = s.string("token");
        let ca_file = crate::tls::read_ca_file(s);
        let encoding = Encoding::read(s);
        if s.issue_count() > before {
            return None;
        }
        Some(NatsSinkConfig {
            url: url?,
            subject,
            timeout,
            token,
            ca_file,
            encoding,
        })
    }
}

/// `type = "nats"`.
pub struct Type;

impl crate::SinkType for Type {
    fn names(&self) -> &'static [&'static str] {
        &["nats"]
    }

    fn read(&self, s: &mut Section<'_>) -> Option<std::sync::Arc<dyn crate::SinkSettings>> {
        NatsSinkConfig::read(s).map(|c| std::sync::Arc::new(c) as _)
    }
}

impl crate::SinkSettings for NatsSinkConfig {
    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn build(&self) -> Result<std::sync::Arc<dyn outbox_core::Sink>, String> {
        Ok(std::sync::Arc::new(super::NatsSink::new(self)?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Option<NatsSinkConfig>, Vec<String>) {
        crate::test_support::read(NatsSinkConfig::from_table, text)
    }

    #[test]
    fn defaults_apply_and_problems_are_all_listed() {
        let (c, issues) = read("type = \"nats\"\nurl = \"nats://127.0.0.1:4222\"");
        assert!(issues.is_empty(), "{issues:?}");
        let c = c.unwrap();
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert!(!c.subject.is_fixed());

        let (c, issues) = read(
            "type = \"nats\"\nurl = \"http://x\"\nsubject = \"a.{nope}\"\ntimeout = \"soon\"\nstream = \"S\"",
        );
        assert!(c.is_none());
        crate::test_support::assert_names(&issues, &["url", "subject", "timeout", "stream"]);
    }
}
