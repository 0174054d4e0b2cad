//! The Redis sink: one `XADD` per event (with `WAIT` when replicas are asked for).

use super::config::RedisSinkConfig;
use crate::message::{event_headers, Destination, Encoding, Template};
use async_trait::async_trait;
use chrono::SecondsFormat;
use outbox_core::conf::{format_duration, redact_secrets};
use outbox_core::{ClaimedEvent, Outcome, Sink};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Appends to streams over one multiplexed connection, opened at the first delivery; the
/// connection manager reconnects by itself.
pub struct RedisSink {
    client: redis::Client,
    /// The URL with its password masked, for messages.
    shown: String,
    stream: Template,
    maxlen: Option<u64>,
    replicas: u32,
    timeout: Duration,
    encoding: Encoding,
    conn: OnceCell<ConnectionManager>,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl RedisSink {
    /// Builds the sink from a validated config (no I/O).
    pub fn new(config: &RedisSinkConfig) -> Result<RedisSink, String> {
        let shown = redact_secrets(&config.url);
        let bad_url = |e: redis::RedisError| format!("url: '{shown}': {e}");
        let client = if config.url.starts_with("rediss://") {
            crate::tls::install_default_provider();
            match &config.ca_file {
                Some(ca) => redis::Client::build_with_tls(
                    config.url.as_str(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(crate::tls::ca_bytes(ca)?),
                    },
                )
                .map_err(bad_url)?,
                None => redis::Client::open(config.url.as_str()).map_err(bad_url)?,
            }
        } else {
            redis::Client::open(config.url.as_str()).map_err(bad_url)?
        };
        Ok(RedisSink {
            client,
            shown,
            stream: config.stream.clone(),
            maxlen: config.maxlen,
            replicas: config.replicas,
            timeout: config.timeout,
            encoding: config.encoding.clone(),
            conn: OnceCell::new(),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        self.conn
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(|e| {
                        format!(
                            "cannot connect to {}: {}",
                            self.shown,
                            redact_secrets(&e.to_string())
                        )
                    })
            })
            .await
            .cloned()
    }

    /// `XADD <stream> [MAXLEN ~ n] * field value ...` for the event.
    fn xadd(&self, stream: &str, claimed: &ClaimedEvent) -> Result<redis::Cmd, String> {
        let e = &claimed.event;
        let (body, content_type) = self.encoding.bytes(claimed)?;
        let headers: serde_json::Map<String, serde_json::Value> = event_headers(claimed)
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream);
        if let Some(n) = self.maxlen {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*")
            .arg("id")
            .arg(&e.id)
            .arg("routingKey")
            .arg(&e.routing_key)
            .arg("eventName")
            .arg(&e.event_name)
            .arg("eventType")
            .arg(&e.event_type)
            .arg("aggregateId")
            .arg(&e.aggregate_id)
            .arg("occurredAt")
            .arg(e.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true))
            .arg("attempt")
            .arg(claimed.attempt())
            .arg("contentType")
            .arg(content_type)
            .arg("headers")
            .arg(serde_json::Value::Object(headers).to_string())
            .arg("body")
            .arg(body);
        Ok(cmd)
    }
}

/// The one place a Redis error becomes an [`Outcome`]. Every failure is retried: a server
/// that is down, out of memory, read-only or holding another type under the key is fixed by
/// an operator, not by the event.
fn classify(e: &redis::RedisError, stream: &str, timeout: Duration) -> Outcome {
    let text = redact_secrets(&e.to_string());
    if e.is_timeout() {
        return Outcome::retry(format!(
            "Redis did not answer within {}",
            format_duration(timeout)
        ));
    }
    if e.code() == Some("WRONGTYPE") {
        return Outcome::retry(format!(
            "key '{stream}' holds something other than a stream ({text}); rename it or change `stream`"
        ));
    }
    Outcome::retry(format!("XADD to '{stream}' failed: {text}"))
}

#[async_trait]
impl Sink for RedisSink {
    async fn deliver(&self, claimed: &ClaimedEvent) -> Outcome {
        let stream = match self.stream.destination(claimed, Destination::RedisKey) {
            Ok(s) => s,
            Err(e) => return Outcome::reject(e),
        };
        let cmd = match self.xadd(&stream, claimed) {
            Ok(c) => c,
            Err(e) => return Outcome::reject(e),
        };
        let mut conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => return crate::unreachable(e),
        };
        if let Err(e) = cmd.query_async::<String>(&mut conn).await {
            return classify(&e, &stream, self.timeout);
        }
        if self.replicas > 0 {
            // WAIT must answer before the connection's own response timeout.
            let wait = self.timeout.mul_f64(0.75);
            let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            let acked = redis::cmd("WAIT")
                .arg(self.replicas)
                .arg(wait_ms)
                .query_async::<u32>(&mut conn)
                .await;
            match acked {
                Ok(n) if n >= self.replicas => {}
                Ok(n) => {
                    return Outcome::retry(format!(
                        "only {n} of {} replicas had the entry within {}",
                        self.replicas,
                        format_duration(wait)
                    ))
                }
                Err(e) => return classify(&e, &stream, self.timeout),
            }
        }
        Outcome::Delivered
    }

    async fn health(&self) -> Result<(), String> {
        let mut conn = self.connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| format!("{} does not answer PING: {e}", self.shown))
    }
}
