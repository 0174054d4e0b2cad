//! Keys of an `[sinks.NAME]` section with `type = "mqtt"`.

use crate::message::{Destination, Encoding, Template};
use outbox_core::conf::{Issue, Section};
use std::time::Duration;

/// A validated MQTT sink.
#[derive(Debug, Clone)]
pub struct MqttSinkConfig {
    /// Broker host.
    pub host: String,
    /// Broker port (1883 unless the URL says).
    pub port: u16,
    /// From the URL's `user:password@`, if any.
    pub credentials: Option<Credentials>,
    /// The protocol version (`protocol = "5"` or `"3.1.1"`).
    pub version: super::Version,
    /// `mqtts://`: TLS, trusting `ca_file`'s CAs or the public roots.
    pub tls: bool,
    /// A PEM file of the CAs to trust instead of the public roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// The topic each event is published to (placeholders allowed).
    pub topic: Template,
    /// MQTT client id; a random `outbox-…` one per connection when absent.
    pub client_id: Option<String>,
    /// Publish with the retain flag.
    pub retain: bool,
    /// Largest message body sent; bigger events fail at once.
    pub max_size: usize,
    /// How long to wait for the connection and for each PUBACK.
    pub timeout: Duration,
    /// Body format and CloudEvents source.
    pub encoding: Encoding,
    /// The URL with its password masked, for messages.
    pub shown: String,
}

/// A user name and password.
type Credentials = (String, String);

/// A broker's address from its URL.
struct Address {
    host: String,
    port: u16,
    credentials: Option<Credentials>,
    tls: bool,
}

/// `mqtt[s]://[user:password@]host[:port]`.
fn parse_url(url: &str) -> Result<Address, String> {
    let (rest, tls) = match url.split_once("://") {
        Some(("mqtt" | "tcp", rest)) => (rest, false),
        Some(("mqtts" | "ssl", rest)) => (rest, true),
        _ => return Err("use mqtt://host:1883 (or mqtts://host:8883 for TLS)".into()),
    };
    let rest = rest.trim_end_matches('/');
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let credentials = userinfo.map(|u| match u.split_once(':') {
        Some((user, password)) => (user.to_string(), password.to_string()),
        None => (u.to_string(), String::new()),
    });
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse::<u16>()
                .map_err(|_| format!("port '{p}' is not a number"))?,
        ),
        None => (hostport.to_string(), if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() || host.contains('/') {
        return Err("use mqtt://host:1883 (or mqtts://host:8883 for TLS)".into());
    }
    Ok(Address {
        host,
        port,
        credentials,
        tls,
    })
}

impl MqttSinkConfig {
    /// Reads and validates the section `[path]`, reporting every problem (its unknown
    /// keys too).
    pub fn from_table(path: &str, table: &toml::Table, issues: &mut Vec<Issue>) -> Option<Self> {
        crate::read_section(path, table, issues, Self::read)
    }

    /// Reads every key of the section (`type` is the caller's), reporting every problem.
    pub fn read(s: &mut Section<'_>) -> Option<Self> {
        let before = s.issue_count();
        let url = s.required_string("url", "\"mqtt://127.0.0.1:1883\"");
        let shown = url
            .as_deref()
            .map(outbox_core::conf::redact_secrets)
            .unwrap_or_default();
        let parsed = url.as_deref().and_then(|u| match parse_url(u) {
            Ok(p) => Some(p),
            Err(e) => {
                s.issue("url", format!("'{shown}': {e}"));
                None
            }
        });
        let ca_file = crate::tls::read_ca_file(s);
        if ca_file.is_some() && parsed.as_ref().is_some_and(|a| !a.tls) {
            s.issue("ca_file", "is for TLS: use an mqtts:// url");
        }
        // `protocol = 5` (a number) is taken too.
        let version = match s.value("protocol") {
            Some(toml::Value::Integer(5)) => super::Version::V5,
            _ => match s.choice("protocol", &["5", "3.1.1"], "5").as_str() {
                "3.1.1" => super::Version::V311,
                _ => super::Version::V5,
            },
        };
        let topic = Template::read(s, "topic", "{routingKey}");
        topic.check_config(s, "topic", Destination::MqttTopic);
        let client_id = s.string("client_id");
        let retain = s.boolean("retain", false);
        let max_size = s.int("max_size", 1, 256 * 1024 * 1024, 256 * 1024) as usize;
        let timeout = s.duration("timeout", Duration::from_millis(1), Duration::from_secs(5));
        let encoding = Encoding::read(s);
        if version == super::Version::V311 && encoding.format == crate::message::BodyFormat::Payload
        {
            s.issue(
                "format",
                "MQTT 3.1.1 has no properties, so with \"payload\" the event id would travel nowhere; use \"envelope\" or \"cloudevents\", or protocol = \"5\"",
            );
        }
        if s.issue_count() > before {
            return None;
        }
        let Address {
            host,
            port,
            credentials,
            tls,
        } = parsed?;
        Some(MqttSinkConfig {
            host,
            port,
            credentials,
            version,
            tls,
            ca_file,
            topic,
            client_id,
            retain,
            max_size,
            timeout,
            encoding,
            shown,
        })
    }
}

/// `type = "mqtt"`.
pub struct Type;

impl crate::SinkType for Type {
    fn names(&self) -> &'static [&'static str] {
        &["mqtt"]
    }

    fn read(&self, s: &mut Section<'_>) -> Option<std::sync::Arc<dyn crate::SinkSettings>> {
        MqttSinkConfig::read(s).map(|c| std::sync::Arc::new(c) as _)
    }
}

impl crate::SinkSettings for MqttSinkConfig {
    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn build(&self) -> Result<std::sync::Arc<dyn outbox_core::Sink>, String> {
        Ok(std::sync::Arc::new(super::MqttSink::new(self)?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Option<MqttSinkConfig>, Vec<String>) {
        crate::test_support::read(MqttSinkConfig::from_table, text)
    }

    #[test]
    fn urls_defaults_and_problems() {
        let (c, issues) = read("type = \"mqtt\"\nurl = \"mqtt://u:p@broker\"");
        assert!(issues.is_empty(), "{issues:?}");
        let c = c.unwrap();
        assert_eq!((c.host.as_str(), c.port), ("broker", 1883));
        assert_eq!(c.credentials, Some(("u".into(), "p".into())));
        assert_eq!(c.shown, "mqtt://u:***@broker");
        assert_eq!(c.max_size, 256 * 1024);

        let (c, issues) = read(
            "type = \"mqtt\"\nurl = \"http://u:pw@b:8883\"\ntopic = \"a/{x}\"\nqos = 2\nretain = 1",
        );
        assert!(c.is_none());
        crate::test_support::assert_names(&issues, &["url", "topic", "qos", "retain"]);
        let joined = issues.join("\n");
        assert!(!joined.contains(":pw@"), "{joined}");
        assert!(read("type = \"mqtt\"\nurl = \"mqtt://b:x\"").1[0].contains("port 'x'"));
        let v = |p: &str| {
            read(&format!(
                "type = \"mqtt\"\nurl = \"mqtt://b\"\nprotocol = {p}"
            ))
        };
        assert_eq!(
            v("\"3.1.1\"").0.unwrap().version,
            crate::mqtt::Version::V311
        );
        assert_eq!(v("5").0.unwrap().version, crate::mqtt::Version::V5);
        assert!(v("\"4\"").1[0].contains("sinks.s.protocol"));
        let payload_v3 =
            read("type = \"mqtt\"\nurl = \"mqtt://b\"\nprotocol = \"3.1.1\"\nformat = \"payload\"");
        assert!(
            payload_v3.1[0].contains("sinks.s.format"),
            "{:?}",
            payload_v3.1
        );
    }
}
