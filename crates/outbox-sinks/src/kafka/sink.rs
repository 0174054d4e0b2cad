//! The Kafka sink: one produce per event on an idempotent producer with `acks=all`; the
//! event is delivered when its delivery report says so.

use super::config::{secret_property, CloudEventsMode, KafkaSinkConfig};
use crate::message::{event_headers, outbox_headers, BodyFormat, Destination, Encoding, Template};
use async_trait::async_trait;
use chrono::SecondsFormat;
use outbox_core::conf::format_duration;
use outbox_core::{ClaimedEvent, Outcome, Sink};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Produces to Kafka through one producer, made at the first delivery and kept (librdkafka
/// reconnects to brokers by itself).
pub struct KafkaSink {
    brokers: String,
    topic: Template,
    key: Template,
    timeout: Duration,
    encoding: Encoding,
    cloudevents: CloudEventsMode,
    properties: BTreeMap<String, String>,
    /// The producer and its generation: one that stopped delivering (a delivery timed out,
    /// or librdkafka reported a fatal error) is replaced at the next delivery.
    producer: Mutex<Option<(Arc<Handle>, u64)>>,
    generations: AtomicU64,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Builds the sink from a validated config (no I/O: the producer is made at the first
    /// delivery).
    pub fn new(config: &KafkaSinkConfig) -> Result<KafkaSink, String> {
        let sink = KafkaSink {
            brokers: config.brokers.clone(),
            topic: config.topic.clone(),
            key: config.key.clone(),
            timeout: config.timeout,
            encoding: config.encoding.clone(),
            cloudevents: config.cloudevents,
            properties: config.properties.clone(),
            producer: Mutex::new(None),
            generations: AtomicU64::new(0),
        };
        // Unknown or invalid properties are found now, not at the first event.
        sink.client_config()
            .create::<rdkafka::producer::BaseProducer>()
            .map_err(|e| format!("properties: {}", redact(&e.to_string(), &sink.properties)))?;
        Ok(sink)
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("max.in.flight.requests.per.connection", "5")
            .set(
                "message.timeout.ms",
                self.timeout.as_millis().max(1).to_string(),
            )
            .set("client.id", concat!("outbox/", env!("CARGO_PKG_VERSION")));
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    fn producer(&self) -> Result<(Arc<Handle>, u64), String> {
        let mut slot = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, g)) = slot.as_ref() {
            return Ok((p.clone(), *g));
        }
        let p: FutureProducer = self.client_config().create().map_err(|e| {
            format!(
                "cannot make the Kafka producer: {}",
                redact(&e.to_string(), &self.properties)
            )
        })?;
        let g = self.generations.fetch_add(1, Ordering::Relaxed);
        let p = Arc::new(Handle(Some(p)));
        *slot = Some((p.clone(), g));
        Ok((p, g))
    }

    /// Drops producer `generation` (if still the current one): the next delivery makes a
    /// new one. Deliveries still waiting on the old one finish on it.
    fn renew(&self, generation: u64) {
        let mut slot = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|(_, g)| *g == generation) {
            tracing::info!(brokers = %self.brokers, "Kafka deliveries timed out; a new producer is made for the next one");
            *slot = None;
        }
    }

    /// The message headers: the event's own, then the relay's (which win).
    fn headers(&self, claimed: &ClaimedEvent, content_type: &str) -> OwnedHeaders {
        let e = &claimed.event;
        let mut own: Vec<(String, String)> = vec![
            ("content-type".into(), content_type.into()),
            ("X-Outbox-Event-Type".into(), e.event_type.clone()),
        ];
        own.extend(
            outbox_headers(claimed)
                .into_iter()
                .map(|(n, v)| (n.to_string(), v)),
        );
        if self.encoding.format == BodyFormat::CloudEvents
            && self.cloudevents == CloudEventsMode::Binary
        {
            let time = e.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true);
            for (n, v) in [
                ("ce_specversion", "1.0"),
                ("ce_id", e.id.as_str()),
                ("ce_source", self.encoding.source.as_str()),
                ("ce_type", e.event_type.as_str()),
                ("ce_subject", e.aggregate_id.as_str()),
                ("ce_time", time.as_str()),
                ("ce_outboxeventname", e.event_name.as_str()),
                ("ce_outboxroutingkey", e.routing_key.as_str()),
            ] {
                own.push((n.into(), v.into()));
            }
        }
        let mut h = OwnedHeaders::new();
        for (name, value) in event_headers(claimed) {
            if !own.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                h = h.insert(Header {
                    key: &name,
                    value: Some(value.as_bytes()),
                });
            }
        }
        for (name, value) in &own {
            h = h.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        h
    }

    /// The value and its content type.
    fn value(&self, claimed: &ClaimedEvent) -> Result<(Vec<u8>, &'static str), String> {
        if self.encoding.format == BodyFormat::CloudEvents
            && self.cloudevents == CloudEventsMode::Binary
        {
            return Ok((
                claimed.event.payload.get().as_bytes().to_vec(),
                "application/json",
            ));
        }
        self.encoding.bytes(claimed)
    }
}

/// A producer shared by the deliveries that use it. Its last handle is destroyed on a
/// blocking thread: dropping a librdkafka producer purges and flushes its queue (up to
/// 500 ms) and joins its threads, which must never hold up a thread of the async runtime
/// (a stalled runtime thread can stall the claim loop with it).
struct Handle(Option<FutureProducer>);

impl std::ops::Deref for Handle {
    type Target = FutureProducer;
    fn deref(&self) -> &FutureProducer {
        self.0
            .as_ref()
            .expect("the producer is there until the handle is dropped")
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let Some(p) = self.0.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(move || drop(p));
            }
            Err(_) => drop(p),
        }
    }
}

/// `text` with the values of secret properties masked.
fn redact(text: &str, properties: &BTreeMap<String, String>) -> String {
    let mut out = outbox_core::conf::redact_secrets(text);
    for (k, v) in properties {
        if secret_property(k) && !v.is_empty() {
            out = out.replace(v.as_str(), "***");
        }
    }
    out
}

/// The one place a produce result becomes an [`Outcome`]. What an operator fixes on the
/// brokers (a missing topic, too few replicas, brokers down) is retried with a hint; what
/// the event itself makes impossible (too large, a topic name Kafka refuses, no right to
/// write) fails it.
fn classify(error: &KafkaError, topic: &str, size: usize, timeout: Duration) -> Outcome {
    let Some(code) = error.rdkafka_error_code() else {
        return Outcome::retry(format!("Kafka produce failed: {error}"));
    };
    use RDKafkaErrorCode as C;
    match code {
        C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge => Outcome::reject(format!(
            "the message is too large for Kafka ({size} bytes with its key and headers): raise the topic's max.message.bytes (and the producer's message.max.bytes), or send less"
        )),
        C::InvalidTopic => Outcome::reject(format!("'{topic}' is not a valid Kafka topic name")),
        C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed | C::TransactionalIdAuthorizationFailed => {
            Outcome::reject(format!("not authorized to write to topic '{topic}': {code}"))
        }
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition => Outcome::retry(format!(
            "topic '{topic}' does not exist on the brokers; create it (e.g. `kafka-topics.sh --create --topic {topic}`) or enable auto.create.topics.enable"
        )),
        C::NotEnoughReplicas | C::NotEnoughReplicasAfterAppend => Outcome::retry(format!(
            "topic '{topic}' has fewer in-sync replicas than its min.insync.replicas: {code}; bring brokers back"
        )),
        C::MessageTimedOut => Outcome::retry(format!(
            "no delivery report within {} (brokers down or unreachable?)",
            format_duration(timeout)
        )),
        C::QueueFull => Outcome::NotAttempted {
            reason: "the Kafka producer's local queue is full".into(),
            after: crate::NOT_ATTEMPTED_DELAY,
        },
        other => Outcome::retry(format!("Kafka produce failed: {other}")),
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn deliver(&self, claimed: &ClaimedEvent) -> Outcome {
        let topic = match self.topic.destination(claimed, Destination::KafkaTopic) {
            Ok(t) => t,
            Err(e) => return Outcome::reject(e),
        };
        let key = self.key.render(claimed);
        let (value, content_type) = match self.value(claimed) {
            Ok(v) => v,
            Err(e) => return Outcome::reject(e),
        };
        let (producer, generation) = match self.producer() {
            Ok(p) => p,
            Err(e) => return Outcome::reject(e),
        };
        let headers = self.headers(claimed, content_type);
        let size = value.len() + key.len();
        let record = FutureRecord::to(&topic)
            .key(key.as_bytes())
            .payload(&value)
            .headers(headers);
        match producer.send(record, Timeout::After(self.timeout)).await {
            Ok(_) => Outcome::Delivered,
            Err((e, _)) => {
                if matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::Fatal)
                ) || producer.client().fatal_error().is_some()
                {
                    self.renew(generation);
                }
                classify(&e, &topic, size, self.timeout)
            }
        }
    }

    async fn health(&self) -> Result<(), String> {
        let (producer, _) = self.producer()?;
        let timeout = self.timeout;
        let brokers = self.brokers.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Timeout::After(timeout))
                .map(|_| ())
                .map_err(|e| format!("cannot reach the Kafka brokers {brokers}: {e}"))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn check_routes(&self, routing_keys: &[String]) -> Vec<String> {
        let Ok((producer, _)) = self.producer() else {
            return Vec::new();
        };
        let topics: Vec<(String, String)> = routing_keys
            .iter()
            .filter_map(|k| self.topic.for_routing_key(k).map(|t| (k.clone(), t)))
            .collect();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || {
            let Ok(meta) = producer.client().fetch_metadata(None, Timeout::After(timeout)) else {
                return Vec::new();
            };
            topics
                .into_iter()
                .filter(|(_, t)| !meta.topics().iter().any(|m| m.name() == t && m.error().is_none()))
                .map(|(k, t)| format!("topic '{t}' (routingKey '{k}') does not exist on the brokers yet: brokers with auto.create.topics.enable make it at the first event, others retry the events until it is created"))
                .collect()
        })
        .await
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_event_makes_impossible_fails_and_the_rest_is_retried() {
        let t = Duration::from_secs(10);
        let e = |c| KafkaError::MessageProduction(c);
        assert!(matches!(
            classify(&e(RDKafkaErrorCode::MessageSizeTooLarge), "t", 5, t),
            Outcome::Reject { .. }
        ));
        assert!(matches!(
            classify(&e(RDKafkaErrorCode::InvalidTopic), "t", 5, t),
            Outcome::Reject { .. }
        ));
        assert!(matches!(
            classify(&e(RDKafkaErrorCode::TopicAuthorizationFailed), "t", 5, t),
            Outcome::Reject { .. }
        ));
        match classify(
            &e(RDKafkaErrorCode::UnknownTopicOrPartition),
            "orders",
            5,
            t,
        ) {
            Outcome::Retry { reason, .. } => assert!(reason.contains("create it"), "{reason}"),
            other => panic!("{other:?}"),
        }
        match classify(&e(RDKafkaErrorCode::MessageTimedOut), "t", 5, t) {
            Outcome::Retry { reason, .. } => assert!(reason.contains("within 10s"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(&e(RDKafkaErrorCode::QueueFull), "t", 5, t),
            Outcome::NotAttempted { .. }
        ));
    }

    use rdkafka::message::Headers;

    fn sink(extra: &str) -> KafkaSink {
        let table: toml::Table = toml::from_str(&format!(
            "type = \"kafka\"\nbrokers = \"127.0.0.1:1\"\n{extra}"
        ))
        .unwrap();
        let mut issues = Vec::new();
        let c = KafkaSinkConfig::from_table("sinks.k", &table, &mut issues).unwrap();
        KafkaSink::new(&c).unwrap()
    }

    fn header(h: &OwnedHeaders, name: &str) -> Option<String> {
        (0..h.count())
            .map(|i| h.get(i))
            .find(|x| x.key == name)
            .and_then(|x| x.value.map(|v| String::from_utf8_lossy(v).into_owned()))
    }

    #[test]
    fn cloudevents_binary_mode_carries_the_attributes_as_ce_headers() {
        let mut claimed = outbox_testkit::claimed_event("e-1");
        claimed.event.headers = Some(serde_json::json!({ "ce_id": "forged", "tenant": "t1" }));
        let s = sink("format = \"cloudevents\"\ncloudevents = \"binary\"\nsource = \"billing\"");
        let (value, content_type) = s.value(&claimed).unwrap();
        assert_eq!(
            value,
            claimed.event.payload.get().as_bytes(),
            "the payload alone"
        );
        let h = s.headers(&claimed, content_type);
        assert_eq!(
            header(&h, "ce_id").as_deref(),
            Some("e-1"),
            "the relay's attribute wins"
        );
        assert_eq!(header(&h, "ce_source").as_deref(), Some("billing"));
        assert_eq!(
            header(&h, "ce_type").as_deref(),
            Some(claimed.event.event_type.as_str())
        );
        assert_eq!(header(&h, "ce_specversion").as_deref(), Some("1.0"));
        assert_eq!(
            header(&h, "content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(header(&h, "tenant").as_deref(), Some("t1"));
        assert_eq!(
            (0..h.count()).filter(|i| h.get(*i).key == "ce_id").count(),
            1
        );
        // Structured mode: the CloudEvent is the value, no ce_ headers.
        let s = sink("format = \"cloudevents\"");
        let (value, content_type) = s.value(&claimed).unwrap();
        assert_eq!(content_type, "application/cloudevents+json");
        assert!(String::from_utf8(value)
            .unwrap()
            .contains("\"specversion\":\"1.0\""));
        assert!(header(&s.headers(&claimed, content_type), "ce_type").is_none());
    }

    #[test]
    fn an_unknown_property_is_an_error_and_secrets_are_masked() {
        let table: toml::Table = toml::from_str(
            "type = \"kafka\"\nbrokers = \"127.0.0.1:1\"\nproperties = { \"no.such.property\" = \"1\", \"sasl.password\" = \"hunter2\" }",
        )
        .unwrap();
        let mut issues = Vec::new();
        let c = KafkaSinkConfig::from_table("sinks.k", &table, &mut issues).unwrap();
        let e = KafkaSink::new(&c).unwrap_err();
        assert!(e.contains("no.such.property"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
