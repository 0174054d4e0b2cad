//! The AMQP sink: one publish per event on a channel in confirm mode, delivered on the
//! broker's ack.

use super::config::AmqpSinkConfig;
use crate::message::{event_headers, outbox_headers, Destination, Encoding, Template};
use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use outbox_core::conf::{format_duration, redact_secrets};
use outbox_core::{ClaimedEvent, Outcome, Sink};
use std::time::Duration;
use tokio::sync::Mutex;

/// Publishes over one connection and one confirm-mode channel, opened at the first delivery
/// and opened again after the broker closes them.
pub struct AmqpSink {
    url: String,
    /// The URL with its password masked, for messages.
    shown: String,
    exchange: String,
    routing_key: Template,
    timeout: Duration,
    persistent: bool,
    mandatory: bool,
    encoding: Encoding,
    link: Mutex<Option<(Connection, Channel)>>,
}

impl std::fmt::Debug for AmqpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSink")
            .field("url", &self.shown)
            .field("exchange", &self.exchange)
            .finish_non_exhaustive()
    }
}

/// Why a publish did not go through, before classification.
enum Failure {
    /// Connecting or opening the channel failed.
    Connect(String),
    /// The broker did not confirm in time.
    Timeout,
    /// The channel or connection failed during the publish.
    Broker(lapin::Error),
}

impl AmqpSink {
    /// Builds the sink from a validated config (no I/O).
    pub fn new(config: &AmqpSinkConfig) -> Result<AmqpSink, String> {
        Ok(AmqpSink {
            url: config.url.clone(),
            shown: redact_secrets(&config.url),
            exchange: config.exchange.clone(),
            routing_key: config.routing_key.clone(),
            timeout: config.timeout,
            persistent: config.persistent,
            mandatory: config.mandatory,
            encoding: config.encoding.clone(),
            link: Mutex::new(None),
        })
    }

    /// The open channel, connecting (or opening a new channel) first when needed.
    async fn channel(&self) -> Result<Channel, Failure> {
        let mut link = self.link.lock().await;
        if let Some((conn, channel)) = link.as_mut() {
            if channel.status().connected() {
                return Ok(channel.clone());
            }
            if conn.status().connected() {
                // The broker closed the channel (e.g. a publish to a missing exchange).
                *channel = confirming(conn).await.map_err(|e| {
                    Failure::Connect(format!("cannot open a channel on {}: {e}", self.shown))
                })?;
                return Ok(channel.clone());
            }
        }
        *link = None;
        let properties = ConnectionProperties::default()
            .with_connection_name(concat!("outbox/", env!("CARGO_PKG_VERSION")).into());
        let connect = async {
            let conn = Connection::connect(&self.url, properties).await?;
            let channel = confirming(&conn).await?;
            Ok::<_, lapin::Error>((conn, channel))
        };
        let (conn, channel) = match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                return Err(Failure::Connect(format!(
                    "cannot connect to {}: {}",
                    self.shown,
                    redact_secrets(&e.to_string())
                )))
            }
            Err(_) => {
                return Err(Failure::Connect(format!(
                    "cannot connect to {} within {}",
                    self.shown,
                    format_duration(self.timeout)
                )))
            }
        };
        *link = Some((conn, channel.clone()));
        Ok(channel)
    }

    fn properties(&self, claimed: &ClaimedEvent, content_type: &str) -> BasicProperties {
        let e = &claimed.event;
        let mut headers = FieldTable::default();
        let mut put = |name: &str, value: &str| {
            headers.insert(
                ShortString::from(name),
                AMQPValue::LongString(value.as_bytes().to_vec().into()),
            );
        };
        for (name, value) in event_headers(claimed) {
            if name.len() <= 255 {
                put(&name, &value);
            }
        }
        for (name, value) in outbox_headers(claimed) {
            put(name, &value);
        }
        // Short strings hold at most 255 bytes: the id is checked before publishing, a
        // longer eventType is left out (it is in the body).
        let mut p = BasicProperties::default()
            .with_content_type(content_type.into())
            .with_message_id(e.id.as_str().into())
            .with_app_id("outbox".into())
            .with_timestamp(u64::try_from(e.occurred_at.timestamp()).unwrap_or(0))
            .with_headers(headers);
        if e.event_type.len() <= 255 {
            p = p.with_type(e.event_type.as_str().into());
        }
        if self.persistent {
            p = p.with_delivery_mode(2);
        }
        p
    }

    async fn publish(
        &self,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<Confirmation, Failure> {
        let channel = self.channel().await?;
        let options = BasicPublishOptions {
            mandatory: self.mandatory,
            ..BasicPublishOptions::default()
        };
        let publish = async {
            channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    routing_key.into(),
                    options,
                    body,
                    props,
                )
                .await?
                .await
        };
        match tokio::time::timeout(self.timeout, publish).await {
            Ok(Ok(confirmation)) => Ok(confirmation),
            Ok(Err(e)) => Err(Failure::Broker(e)),
            Err(_) => Err(Failure::Timeout),
        }
    }
}

async fn confirming(conn: &Connection) -> lapin::Result<Channel> {
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// The one place a publish result becomes an [`Outcome`]. Every failure is retried: an
/// unreachable broker, a missing exchange or a message no queue takes is fixed by an
/// operator, not by the event.
fn classify(
    result: Result<Confirmation, Failure>,
    exchange: &str,
    routing_key: &str,
    timeout: Duration,
) -> Outcome {
    let shown_exchange = if exchange.is_empty() {
        "the default exchange".to_string()
    } else {
        format!("exchange '{exchange}'")
    };
    match result {
        Ok(Confirmation::Ack(None)) => Outcome::Delivered,
        Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned))) => Outcome::retry(format!(
            "{shown_exchange} routed the message to no queue (routing key '{routing_key}', {} {}); bind a queue to it",
            returned.reply_code, returned.reply_text
        )),
        Ok(Confirmation::Nack(None)) => Outcome::retry(format!(
            "the broker refused the message (nack) on {shown_exchange}"
        )),
        Ok(Confirmation::NotRequested) => {
            Outcome::retry("the channel is not in confirm mode".to_string())
        }
        Err(Failure::Connect(message)) => crate::unreachable(message),
        Err(Failure::Timeout) => Outcome::retry(format!(
            "the broker did not confirm within {}",
            format_duration(timeout)
        )),
        Err(Failure::Broker(e)) => {
            let text = redact_secrets(&e.to_string());
            if text.contains("NOT_FOUND") || text.contains("no exchange") {
                Outcome::retry(format!(
                    "{shown_exchange} does not exist ({text}); declare it, e.g. `rabbitmqadmin declare exchange name={exchange} type=topic durable=true`"
                ))
            } else {
                Outcome::retry(format!("publish failed: {text}"))
            }
        }
    }
}

#[async_trait]
impl Sink for AmqpSink {
    async fn deliver(&self, claimed: &ClaimedEvent) -> Outcome {
        let routing_key = match self
            .routing_key
            .destination(claimed, Destination::AmqpRoutingKey)
        {
            Ok(k) => k,
            Err(e) => return Outcome::reject(e),
        };
        if claimed.event.id.len() > 255 {
            return Outcome::reject(format!(
                "the event id is {} bytes; an AMQP message id holds 255",
                claimed.event.id.len()
            ));
        }
        let (body, content_type) = match self.encoding.bytes(claimed) {
            Ok(b) => b,
            Err(e) => return Outcome::reject(e),
        };
        let props = self.properties(claimed, content_type);
        let result = self.publish(&routing_key, &body, props).await;
        classify(result, &self.exchange, &routing_key, self.timeout)
    }

    async fn health(&self) -> Result<(), String> {
        match self.channel().await {
            Ok(_) => Ok(()),
            Err(Failure::Connect(message)) => Err(message),
            Err(_) => Err(format!("cannot reach {}", self.shown)),
        }
    }
}
