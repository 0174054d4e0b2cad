//! The sinks of the outbox relay. Each sink is a folder with the same template: `config.rs`
//! (its keys, validated without I/O, every problem reported; its [`SinkType`] and
//! [`SinkSettings`]) and `sink.rs` (the [`Sink`] implementation with one function that
//! classifies its errors). Adding a sink is its folder plus one line in [`TYPES`]: the keys a
//! sink accepts are the keys its reader asks for, and any other is reported as unknown.

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod blackhole;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
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

/// One kind of sink: the `type` values that select it and how its section is read. A sink is
/// one folder plus one line in [`TYPES`].
pub trait SinkType: Sync {
    /// The `type` values that select it; the first is its name.
    fn names(&self) -> &'static [&'static str];

    /// Reads the section (its `type` already read): every key the sink accepts is read
    /// here, whether set or not, and each problem recorded; `None` when it cannot be built.
    fn read(&self, s: &mut Section<'_>) -> Option<Arc<dyn SinkSettings>>;
}

/// A validated `[sinks.NAME]` section of one kind.
pub trait SinkSettings: std::fmt::Debug + Send + Sync {
    /// How long one delivery may take at most, where the sink bounds it.
    fn timeout(&self) -> Option<Duration>;

    /// Whether [`outbox_core::Sink::health`] says something about the destination: a
    /// broker connection can be opened without sending anything; an HTTP request would
    /// deliver.
    fn health_checked(&self) -> bool {
        true
    }

    /// What is worth a warning in these settings (credentials sent in clear text).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// Builds the sink (no I/O happens until the first delivery).
    fn build(&self) -> Result<Arc<dyn Sink>, String>;

    /// The settings themselves, for callers that know the kind.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// Every sink of this build.
const TYPES: &[&dyn SinkType] = &[
    #[cfg(feature = "amqp")]
    &amqp::Type,
    &blackhole::Type,
    #[cfg(feature = "http")]
    &http::Type,
    #[cfg(feature = "kafka")]
    &kafka::Type,
    #[cfg(feature = "mqtt")]
    &mqtt::Type,
    #[cfg(feature = "nats")]
    &nats::Type,
    #[cfg(feature = "redis")]
    &redis::Type,
];

/// The sink types this build knows, for messages.
pub fn sink_types() -> Vec<&'static str> {
    TYPES.iter().map(|t| t.names()[0]).collect()
}

/// Reads the section `[path]` with `read`, then reports its keys that `read` did not ask
/// for; `None` when anything in it is wrong.
pub(crate) fn read_section<T>(
    path: &str,
    table: &toml::Table,
    issues: &mut Vec<Issue>,
    read: impl FnOnce(&mut Section<'_>) -> Option<T>,
) -> Option<T> {
    let before = issues.len();
    let mut s = Section::open(path, table, issues);
    let _ = s.value("type");
    let out = read(&mut s);
    s.finish();
    if issues.len() > before {
        return None;
    }
    out
}

/// A validated `[sinks.NAME]` section.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    kind: &'static str,
    settings: Arc<dyn SinkSettings>,
}

impl SinkConfig {
    /// Reads `[sinks.NAME]` (at `path`), adding every problem found to `issues`.
    pub fn from_table(path: &str, table: &toml::Table, issues: &mut Vec<Issue>) -> Option<Self> {
        let types = sink_types().join(", ");
        let kind = match table.get("type") {
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => {
                issues.push(Issue {
                    key: format!("{path}.type"),
                    message: format!("expected a string, one of: {types}"),
                });
                return None;
            }
            None => {
                issues.push(Issue {
                    key: format!("{path}.type"),
                    message: format!("missing; add `type = \"http\"` (sink types: {types})"),
                });
                return None;
            }
        };
        let Some(found) = TYPES.iter().find(|t| t.names().contains(&kind.as_str())) else {
            issues.push(Issue {
                key: format!("{path}.type"),
                message: format!("unknown sink type '{kind}'; use one of: {types}"),
            });
            return None;
        };
        read_section(path, table, issues, |s| found.read(s)).map(|settings| SinkConfig {
            kind: found.names()[0],
            settings,
        })
    }

    /// The sink's `type` (its canonical name).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The settings of a sink of a known kind, e.g. `settings::<http::HttpSinkConfig>()`.
    pub fn settings<T: 'static>(&self) -> Option<&T> {
        self.settings.as_any().downcast_ref()
    }

    /// Whether [`outbox_core::Sink::health`] says something about the destination.
    pub fn has_health_check(&self) -> bool {
        self.settings.health_checked()
    }

    /// What is worth a warning in this sink's settings (credentials sent in clear text).
    pub fn warnings(&self) -> Vec<String> {
        self.settings.warnings()
    }

    /// How long one delivery may take at most, where the sink bounds it.
    pub fn timeout(&self) -> Option<Duration> {
        self.settings.timeout()
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
        self.settings.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Option<SinkConfig>, Vec<String>) {
        let table: toml::Table = toml::from_str(text).unwrap();
        let mut issues = Vec::new();
        let c = SinkConfig::from_table("sinks.s", &table, &mut issues);
        (c, issues.iter().map(|i| i.to_string()).collect())
    }

    #[test]
    fn a_key_no_reader_asks_for_is_unknown_and_the_keys_read_are_listed() {
        let (c, issues) = read("type = \"blackhole\"\ncolour = \"red\"");
        assert!(c.is_none());
        assert_eq!(
            issues,
            ["sinks.s.colour: unknown key; the keys of [sinks.s] are: type"]
        );
        #[cfg(feature = "http")]
        {
            let (c, issues) = read("type = \"http\"\nurl = \"http://127.0.0.1:1/\"\nretries = 3");
            assert!(c.is_none());
            assert_eq!(issues.len(), 1, "{issues:?}");
            assert!(
                issues[0].starts_with(
                    "sinks.s.retries: unknown key; the keys of [sinks.s] are: type, url, method, timeout, headers, format, source"
                ),
                "{issues:?}"
            );
            let (c, issues) = read("type = \"http\"\nurl = \"http://127.0.0.1:1/\"");
            assert!(issues.is_empty(), "{issues:?}");
            let c = c.unwrap();
            assert_eq!(c.kind(), "http");
            assert!(!c.has_health_check());
            assert!(c.settings::<http::HttpSinkConfig>().is_some());
        }
    }

    #[test]
    fn every_sink_type_is_selected_by_each_of_its_names() {
        for t in TYPES {
            for name in t.names() {
                let (_, issues) = read(&format!("type = \"{name}\""));
                assert!(
                    issues.iter().all(|i| !i.contains("unknown sink type")),
                    "{name}: {issues:?}"
                );
            }
        }
        let (_, issues) = read("type = \"sqs\"");
        assert!(issues[0].contains("unknown sink type 'sqs'"), "{issues:?}");
    }
}
