//! Keys of an `[sinks.NAME]` section with `type = "redis"`.

use crate::message::{Destination, Encoding, Template};
use outbox_core::conf::{Issue, Section};
use std::time::Duration;

/// A validated Redis Streams sink.
#[derive(Debug, Clone)]
pub struct RedisSinkConfig {
    /// `redis://[user:password@]host:6379[/db]`, or `rediss://` for TLS.
    pub url: String,
    /// With `rediss://`: a PEM file of the CAs to trust instead of the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// The stream key each event is appended to (placeholders allowed).
    pub stream: Template,
    /// Trim each stream to about this many entries (`MAXLEN ~`); unbounded when absent.
    pub maxlen: Option<u64>,
    /// Replicas that must have the entry before it counts (`WAIT`); 0 = the primary's reply.
    pub replicas: u32,
    /// How long to wait for the connection, the reply and the replicas.
    pub timeout: Duration,
    /// Body format and CloudEvents source.
    pub encoding: Encoding,
}

impl RedisSinkConfig {
    /// Reads and validates the section `[path]`, reporting every problem (its unknown
    /// keys too).
    pub fn from_table(path: &str, table: &toml::Table, issues: &mut Vec<Issue>) -> Option<Self> {
        crate::read_section(path, table, issues, Self::read)
    }

    /// Reads every key of the section (`type` is the caller's), reporting every problem.
    pub fn read(s: &mut Section<'_>) -> Option<Self> {
        let before = s.issue_count();
        let url = s.required_string("url", "\"redis://127.0.0.1:6379\"");
        if let Some(u) = &url {
            let shown = outbox_core::conf::redact_secrets(u);
            match u.split_once("://").map(|(scheme, _)| scheme) {
                Some("redis" | "rediss") => {
                    if let Err(e) = redis::Client::open(u.as_str()) {
                        s.issue("url", format!("'{shown}' is not a Redis URL ({e})"));
                    }
                }
                _ => s.issue(
                    "url",
                    format!("'{shown}' is not a Redis URL; use redis://host:6379 (or rediss:// for TLS)"),
                ),
            }
        }
        let ca_file = crate::tls::read_ca_file(s);
        if ca_file.is_some() && url.as_deref().is_some_and(|u| !u.starts_with("rediss://")) {
            s.issue("ca_file", "is for TLS: use a rediss:// url");
        }
        let stream = Template::read(s, "stream", "{routingKey}");
        stream.check_config(s, "stream", Destination::RedisKey);
        let maxlen = s
            .value("maxlen")
            .map(|_| s.int("maxlen", 1, i64::MAX, 1) as u64);
        let replicas = s.int("replicas", 0, 100, 0) as u32;
        let timeout = s.duration("timeout", Duration::from_millis(1), Duration::from_secs(5));
        let encoding = Encoding::read(s);
        if s.issue_count() > before {
            return None;
        }
        Some(RedisSinkConfig {
            url: url?,
            ca_file,
            stream,
            maxlen,
            replicas,
            timeout,
            encoding,
        })
    }
}

/// `type = "redis"`.
pub struct Type;

impl crate::SinkType for Type {
    fn names(&self) -> &'static [&'static str] {
        &["redis"]
    }

    fn read(&self, s: &mut Section<'_>) -> Option<std::sync::Arc<dyn crate::SinkSettings>> {
        RedisSinkConfig::read(s).map(|c| std::sync::Arc::new(c) as _)
    }
}

impl crate::SinkSettings for RedisSinkConfig {
    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn build(&self) -> Result<std::sync::Arc<dyn outbox_core::Sink>, String> {
        Ok(std::sync::Arc::new(super::RedisSink::new(self)?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Option<RedisSinkConfig>, Vec<String>) {
        crate::test_support::read(RedisSinkConfig::from_table, text)
    }

    #[test]
    fn defaults_apply_and_problems_are_all_listed() {
        let (c, issues) = read("type = \"redis\"\nurl = \"redis://127.0.0.1:6379\"");
        assert!(issues.is_empty(), "{issues:?}");
        let c = c.unwrap();
        assert_eq!((c.maxlen, c.replicas), (None, 0));

        let (c, issues) = read(
            "type = \"redis\"\nurl = \"http://u:pw@x:6380\"\nstream = \"{x}\"\nmaxlen = 0\nreplicas = -1\ngroup = \"g\"",
        );
        assert!(c.is_none());
        crate::test_support::assert_names(
            &issues,
            &["url", "stream", "maxlen", "replicas", "group"],
        );
        let joined = issues.join("\n");
        assert!(!joined.contains(":pw@"), "{joined}");
    }
}
