//! Keys of an `[sinks.NAME]` section with `type = "http"`.

use crate::message::Encoding;
use outbox_core::conf::{Issue, Section};
use std::collections::BTreeMap;
use std::time::Duration;

/// A validated HTTP sink.
#[derive(Debug, Clone)]
pub struct HttpSinkConfig {
    /// Where to send: an `http://` or `https://` URL.
    pub url: String,
    /// HTTP method; POST unless set.
    pub method: String,
    /// Whole-request timeout (connect, send, response).
    pub timeout: Duration,
    /// Extra request headers (values may use `${VAR}`).
    pub headers: BTreeMap<String, String>,
    /// Body format and CloudEvents source.
    pub encoding: Encoding,
    /// Standard Webhooks signatures, when `signing` is set.
    pub signing: Option<super::signing::Signing>,
}

const METHODS: &[&str] = &["POST", "PUT", "PATCH"];

impl HttpSinkConfig {
    /// A warning when credentials would cross the network in clear text: an `http://` URL
    /// to a host other than this one, with an Authorization header, a password in the URL
    /// or a query parameter named like a secret.
    pub fn cleartext_warning(&self) -> Option<String> {
        let url = reqwest::Url::parse(&self.url).ok()?;
        if url.scheme() != "http" {
            return None;
        }
        let host = url.host_str().unwrap_or_default();
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            return None;
        }
        let header = self.headers.keys().find(|h| {
            h.eq_ignore_ascii_case("authorization") || h.eq_ignore_ascii_case("proxy-authorization")
        });
        let what = if let Some(h) = header {
            format!("the {h} header")
        } else if url.password().is_some() {
            "the password in the URL".to_string()
        } else if outbox_core::conf::redact_secrets(&self.url) != self.url {
            "a secret in the URL".to_string()
        } else {
            return None;
        };
        Some(format!(
            "sends {what} in clear text over http:// to {}; use https://",
            url.host_str().unwrap_or_default()
        ))
    }

    /// Reads and validates the section `[path]`, reporting every problem (its unknown
    /// keys too).
    pub fn from_table(path: &str, table: &toml::Table, issues: &mut Vec<Issue>) -> Option<Self> {
        crate::read_section(path, table, issues, Self::read)
    }

    /// Reads every key of the section (`type` is the caller's), reporting every problem.
    pub fn read(s: &mut Section<'_>) -> Option<Self> {
        let before = s.issue_count();
        let url = s.required_string("url", "\"http://127.0.0.1:8081/events\"");
        if let Some(u) = &url {
            match reqwest::Url::parse(u) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                Ok(parsed) => {
                    let msg = format!(
                        "scheme '{}' is not supported; use http:// or https://",
                        parsed.scheme()
                    );
                    s.issue("url", msg);
                }
                Err(e) => s.issue(
                    "url",
                    format!(
                        "'{}' is not a URL ({e})",
                        outbox_core::conf::redact_secrets(u)
                    ),
                ),
            }
        }
        let method = s.string("method").map(|m| m.to_ascii_uppercase());
        let method = match method {
            None => "POST".to_string(),
            Some(m) if METHODS.contains(&m.as_str()) => m,
            Some(m) => {
                s.issue(
                    "method",
                    format!("'{m}' is not supported; use one of: {}", METHODS.join(", ")),
                );
                "POST".to_string()
            }
        };
        let timeout = s.duration("timeout", Duration::from_millis(1), Duration::from_secs(5));
        let headers = s.string_map("headers");
        for (name, value) in &headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                s.issue(
                    &format!("headers.{name}"),
                    "is not a valid HTTP header name",
                );
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                s.issue(
                    &format!("headers.{name}"),
                    "has characters not allowed in an HTTP header value",
                );
            }
        }
        let encoding = Encoding::read(s);
        let signing = super::signing::Signing::read(s);
        if s.issue_count() > before {
            return None;
        }
        Some(HttpSinkConfig {
            url: url?,
            method,
            timeout,
            headers,
            encoding,
            signing,
        })
    }
}

/// `type = "http"`.
pub struct Type;

impl crate::SinkType for Type {
    fn names(&self) -> &'static [&'static str] {
        &["http"]
    }

    fn read(&self, s: &mut Section<'_>) -> Option<std::sync::Arc<dyn crate::SinkSettings>> {
        HttpSinkConfig::read(s).map(|c| std::sync::Arc::new(c) as _)
    }
}

impl crate::SinkSettings for HttpSinkConfig {
    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn health_checked(&self) -> bool {
        false
    }

    fn warnings(&self) -> Vec<String> {
        self.cleartext_warning().into_iter().collect()
    }

    fn build(&self) -> Result<std::sync::Arc<dyn outbox_core::Sink>, String> {
        Ok(std::sync::Arc::new(super::HttpSink::new(self)?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Option<HttpSinkConfig>, Vec<String>) {
        crate::test_support::read(HttpSinkConfig::from_table, text)
    }

    #[test]
    fn defaults_apply() {
        let (c, issues) = read("type = \"http\"\nurl = \"http://127.0.0.1:1/x\"");
        assert!(issues.is_empty(), "{issues:?}");
        let c = c.unwrap();
        assert_eq!(c.method, "POST");
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.encoding.format, crate::message::BodyFormat::Envelope);
    }

    #[test]
    fn all_problems_are_listed() {
        let (c, issues) = read(
            "type = \"http\"\nurl = \"ftp://x\"\nmethod = \"GET\"\ntimeout = \"5\"\nformat = \"xml\"\nretries = 3\nheaders = { \"Bad Name\" = \"v\" }",
        );
        assert!(c.is_none());
        crate::test_support::assert_names(
            &issues,
            &[
                "url",
                "method",
                "timeout",
                "format",
                "retries",
                "headers.Bad Name",
            ],
        );
    }

    #[test]
    fn a_missing_url_says_how_to_add_it() {
        let (_, issues) = read("type = \"http\"");
        assert_eq!(issues.len(), 1);
        assert!(
            issues[0].contains("sinks.s.url: missing; add `url ="),
            "{}",
            issues[0]
        );
    }

    #[test]
    fn credentials_in_clear_text_to_another_host_are_a_warning() {
        let warn = |url: &str, headers: &str| {
            let (c, issues) = read(&format!("type = \"http\"\nurl = \"{url}\"\n{headers}"));
            assert!(issues.is_empty(), "{issues:?}");
            c.unwrap().cleartext_warning()
        };
        let auth = "headers = { Authorization = \"Bearer t\" }";
        let w = warn("http://api.example.com/x", auth).unwrap();
        assert!(
            w.contains("the Authorization header in clear text over http:// to api.example.com"),
            "{w}"
        );
        assert!(warn("http://u:p@10.0.0.5/x", "")
            .unwrap()
            .contains("password in the URL"));
        assert!(warn("http://h/x?api_key=k", "")
            .unwrap()
            .contains("a secret in the URL"));
        for quiet in [
            warn("https://api.example.com/x", auth),
            warn("http://127.0.0.1:8081/x", auth),
            warn("http://localhost/x", auth),
            warn("http://[::1]/x", auth),
            warn("http://api.example.com/x", ""),
        ] {
            assert_eq!(quiet, None);
        }
    }
}
