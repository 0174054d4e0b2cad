//! The NATS sink: one JetStream publish per event, delivered when the stream acknowledges.

use super::config::NatsSinkConfig;
use crate::message::{event_headers, outbox_headers, Destination, Encoding, Template};
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::context::{ContextBuilder, PublishErrorKind};
use async_nats::jetstream::Context;
use async_nats::{HeaderMap, ServerAddr};
use async_trait::async_trait;
use outbox_core::conf::{format_duration, percent_decode, redact_secrets};
use outbox_core::{ClaimedEvent, Outcome, Sink};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Publishes to JetStream over one connection, opened at the first delivery and kept (the
/// client reconnects by itself when the server goes away).
pub struct NatsSink {
    servers: Vec<ServerAddr>,
    /// The URLs, passwords masked, for messages.
    shown: String,
    /// Credentials: the `token` key, else the first URL's `user:password@` (a user alone is
    /// a token, as in the NATS CLI).
    auth: Auth,
    /// TLS: a `tls://` server, or a `ca_file`.
    tls: bool,
    /// The CAs to trust instead of the public roots.
    ca_file: Option<std::path::PathBuf>,
    subject: Template,
    timeout: Duration,
    encoding: Encoding,
    js: OnceCell<Context>,
}

#[derive(Clone, PartialEq, Eq)]
enum Auth {
    None,
    Token(String),
    UserPassword(String, String),
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// Builds the sink from a validated config (no I/O).
    pub fn new(config: &NatsSinkConfig) -> Result<NatsSink, String> {
        let servers = config
            .url
            .split(',')
            .map(|u| {
                u.trim()
                    .parse::<ServerAddr>()
                    .map_err(|e| format!("url: '{}': {e}", redact_secrets(u.trim())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let auth = match (&config.token, servers.first()) {
            (Some(token), _) => Auth::Token(token.clone()),
            // The URL's userinfo is percent-encoded (`p%40ss` for `p@ss`).
            (None, Some(first)) => match (first.username(), first.password()) {
                (Some(user), Some(password)) => {
                    Auth::UserPassword(percent_decode(user), percent_decode(password))
                }
                (Some(token), None) => Auth::Token(percent_decode(token)),
                _ => Auth::None,
            },
            (None, None) => Auth::None,
        };
        let tls = config.ca_file.is_some()
            || config
                .url
                .split(',')
                .any(|u| u.trim().starts_with("tls://"));
        Ok(NatsSink {
            servers,
            shown: redact_secrets(&config.url),
            auth,
            tls,
            ca_file: config.ca_file.clone(),
            subject: config.subject.clone(),
            timeout: config.timeout,
            encoding: config.encoding.clone(),
            js: OnceCell::new(),
        })
    }

    async fn context(&self) -> Result<&Context, String> {
        self.js
            .get_or_try_init(|| async {
                let mut options = async_nats::ConnectOptions::new()
                    .name(concat!("outbox/", env!("CARGO_PKG_VERSION")))
                    .connection_timeout(self.timeout)
                    .max_reconnects(None);
                if self.tls {
                    let config = crate::tls::client_config(self.ca_file.as_deref())?;
                    options = options.tls_client_config(config).require_tls(true);
                }
                match self.auth.clone() {
                    Auth::None => {}
                    Auth::Token(token) => options = options.token(token),
                    Auth::UserPassword(user, password) => {
                        options = options.user_and_password(user, password)
                    }
                }
                let client = options.connect(self.servers.clone()).await.map_err(|e| {
                    format!(
                        "cannot connect to NATS at {}: {}",
                        self.shown,
                        redact_secrets(&e.to_string())
                    )
                })?;
                Ok(ContextBuilder::new().timeout(self.timeout).build(client))
            })
            .await
    }

    fn headers(&self, claimed: &ClaimedEvent, content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        // NATS writes headers as `name: value` lines, unescaped: a name or value that could
        // break a line is left out, and so are the server's own `Nats-*` headers (a producer
        // must not set the message id, a rollup or an expected sequence).
        for (name, value) in event_headers(claimed) {
            let bad_name = name.is_empty()
                || name
                    .get(..5)
                    .is_some_and(|p| p.eq_ignore_ascii_case("nats-"))
                || name.bytes().any(|b| b <= b' ' || b == b':' || b == 127);
            let bad_value = value.bytes().any(|b| b == b'\r' || b == b'\n');
            if !bad_name && !bad_value {
                h.insert(name.as_str(), value.as_str());
            }
        }
        h.insert("Content-Type", content_type);
        for (name, value) in outbox_headers(claimed) {
            h.insert(name, value.as_str());
        }
        // JetStream stores a message id once within the stream's duplicate window.
        h.insert(NATS_MESSAGE_ID, claimed.event.id.as_str());
        h
    }
}

/// The size of `headers` on the wire: `NATS/1.0\r\n`, a `name: value\r\n` line per value,
/// and a closing `\r\n`.
fn header_bytes(headers: &HeaderMap) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(name, values)| {
            let name: &str = name.as_ref();
            values
                .iter()
                .map(|v| name.len() + 2 + v.as_str().len() + 2)
                .sum::<usize>()
        })
        .sum();
    10 + lines + 2
}

/// Whether `subject` can be published to: non-empty tokens separated by dots, no
/// whitespace, no wildcards.
/// The one place a publish result becomes an [`Outcome`]. Every failure is retried: a
/// missing stream or an unreachable server is fixed by an operator, not by the event.
fn classify(
    result: Result<
        async_nats::jetstream::publish::PublishAck,
        async_nats::jetstream::context::PublishError,
    >,
    subject: &str,
    timeout: Duration,
) -> Outcome {
    match result {
        Ok(_ack) => Outcome::Delivered,
        Err(e) => Outcome::retry(match e.kind() {
            PublishErrorKind::StreamNotFound => format!(
                "no JetStream stream stores subject '{subject}'; create one, e.g. `nats stream add OUTBOX --subjects '{subject}'`"
            ),
            PublishErrorKind::TimedOut => format!(
                "JetStream did not acknowledge within {}",
                format_duration(timeout)
            ),
            _ => format!("JetStream publish failed: {}", redact_secrets(&e.to_string())),
        }),
    }
}

#[async_trait]
impl Sink for NatsSink {
    async fn deliver(&self, claimed: &ClaimedEvent) -> Outcome {
        // The id and the routing key go out in header lines, unescaped.
        let e = &claimed.event;
        if [&e.id, &e.routing_key]
            .iter()
            .any(|v| v.contains(['\r', '\n']))
        {
            return Outcome::reject(
                "the event id or routingKey contains a line break, which a NATS header cannot carry"
                    .to_string(),
            );
        }
        let subject = match self.subject.destination(claimed, Destination::NatsSubject) {
            Ok(s) => s,
            Err(e) => return Outcome::reject(e),
        };
        let (body, content_type) = match self.encoding.bytes(claimed) {
            Ok(b) => b,
            Err(e) => return Outcome::reject(e),
        };
        let js = match self.context().await {
            Ok(js) => js,
            Err(e) => return crate::unreachable(e),
        };
        let headers = self.headers(claimed, content_type);
        // The server's limit covers the headers and the body.
        let size = body.len() + header_bytes(&headers);
        let max = js.client().server_info().max_payload;
        if max > 0 && size > max {
            return Outcome::reject(format!(
                "the message is {size} bytes with its headers, more than the server's max_payload of {max}"
            ));
        }
        let result = match js
            .publish_with_headers(subject.clone(), headers, body.into())
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        classify(result, &subject, self.timeout)
    }

    async fn health(&self) -> Result<(), String> {
        let js = self.context().await?;
        let unavailable = |e: &dyn std::fmt::Display| {
            format!("JetStream is not available at {}: {e}", self.shown)
        };
        let reply = js
            .client()
            .request("$JS.API.INFO", Default::default())
            .await
            .map_err(|e| unavailable(&e))?;
        let info: serde_json::Value =
            serde_json::from_slice(&reply.payload).map_err(|e| unavailable(&e))?;
        match info.get("error") {
            Some(error) => Err(unavailable(&error["description"])),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_retried_with_a_hint() {
        use async_nats::jetstream::context::PublishError;
        let o = classify(
            Err(PublishError::new(PublishErrorKind::StreamNotFound)),
            "outbox.a",
            Duration::from_secs(5),
        );
        match o {
            Outcome::Retry { reason, .. } => {
                assert!(reason.contains("nats stream add"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        let o = classify(
            Err(PublishError::new(PublishErrorKind::TimedOut)),
            "outbox.a",
            Duration::from_secs(5),
        );
        assert!(
            matches!(o, Outcome::Retry { ref reason, .. } if reason.contains("within 5s")),
            "{o:?}"
        );
    }
}
