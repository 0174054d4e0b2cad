//! What every sink sends for an event, whatever the transport: the body (the envelope, the
//! payload alone, or a CloudEvents document), the metadata that goes with it, and the
//! destination names built from templates such as `outbox.{routingKey}`.

use chrono::SecondsFormat;
use outbox_core::conf::Section;
use outbox_core::ClaimedEvent;
use serde_json::value::RawValue;
use serde_json::Value;

/// What the body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `{"id","eventName","eventType","aggregateId","routingKey","occurredAt","payload"}`.
    Envelope,
    /// The payload alone.
    Payload,
    /// A CloudEvents 1.0 structured-mode JSON document.
    CloudEvents,
}

/// How a sink encodes bodies: the `format` and `source` keys every sink has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Body format.
    pub format: BodyFormat,
    /// CloudEvents `source` attribute.
    pub source: String,
}

impl Encoding {
    /// Reads `format` (default `envelope`) and `source` (default `outbox`).
    pub fn read(s: &mut Section<'_>) -> Encoding {
        let format = match s
            .choice(
                "format",
                &["envelope", "payload", "cloudevents"],
                "envelope",
            )
            .as_str()
        {
            "payload" => BodyFormat::Payload,
            "cloudevents" => BodyFormat::CloudEvents,
            _ => BodyFormat::Envelope,
        };
        let source = s.string("source").unwrap_or_else(|| "outbox".to_string());
        Encoding { format, source }
    }

    /// The body for `claimed` as bytes, with its content type. The payload is written as
    /// stored, byte for byte; the other fields are escaped as JSON strings.
    pub fn bytes(&self, claimed: &ClaimedEvent) -> Result<(Vec<u8>, &'static str), String> {
        let e = &claimed.event;
        let occurred = e.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let encoded = match self.format {
            BodyFormat::Payload => {
                return Ok((e.payload.get().as_bytes().to_vec(), "application/json"))
            }
            BodyFormat::Envelope => serde_json::to_vec(&Envelope {
                id: &e.id,
                event_name: &e.event_name,
                event_type: &e.event_type,
                aggregate_id: &e.aggregate_id,
                routing_key: &e.routing_key,
                occurred_at: &occurred,
                payload: e.payload.raw(),
            })
            .map(|b| (b, "application/json")),
            BodyFormat::CloudEvents => serde_json::to_vec(&CloudEvent {
                specversion: "1.0",
                id: &e.id,
                source: &self.source,
                kind: &e.event_type,
                subject: &e.aggregate_id,
                time: &occurred,
                datacontenttype: "application/json",
                outboxeventname: &e.event_name,
                outboxroutingkey: &e.routing_key,
                data: e.payload.raw(),
            })
            .map(|b| (b, "application/cloudevents+json")),
        };
        encoded.map_err(|e| format!("cannot encode the body: {e}"))
    }
}

/// The envelope body, in the contract's key order.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    id: &'a str,
    event_name: &'a str,
    event_type: &'a str,
    aggregate_id: &'a str,
    routing_key: &'a str,
    occurred_at: &'a str,
    payload: &'a RawValue,
}

/// A CloudEvents 1.0 structured-mode document.
#[derive(serde::Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    subject: &'a str,
    time: &'a str,
    datacontenttype: &'static str,
    outboxeventname: &'a str,
    outboxroutingkey: &'a str,
    data: &'a RawValue,
}

/// The names of [`outbox_headers`].
const OUTBOX_HEADERS: [&str; 4] = [
    "Idempotency-Key",
    "X-Outbox-Event-Id",
    "X-Outbox-Routing-Key",
    "X-Outbox-Attempt",
];

/// Header names a producer may not set in an HTTP request, whatever its event says: the
/// hop-by-hop headers, the ones that frame the body or say where the request goes (a
/// `Content-Length: 2` would make the destination read two bytes of the body and answer
/// 200), and the content type the relay sets itself. Compared case-insensitively;
/// `Proxy-*` and `X-Forwarded-*` by prefix.
pub const HTTP_RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "content-encoding",
    "content-type",
    "forwarded",
    "via",
];

/// Whether a producer may set header `name` on an HTTP request (see
/// [`HTTP_RESERVED_HEADERS`]).
pub fn http_header_allowed(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !(HTTP_RESERVED_HEADERS.contains(&lower.as_str())
        || lower.starts_with("proxy-")
        || lower.starts_with("x-forwarded-"))
}

/// The event's own `headers` object as (name, text) pairs: strings as they are, other values
/// as JSON, nulls left out, and so is any name of [`outbox_headers`] in any case — the
/// relay's own values are the only ones sent, whatever the transport does with repeats.
pub fn event_headers(claimed: &ClaimedEvent) -> Vec<(String, String)> {
    let Some(Value::Object(map)) = &claimed.event.headers else {
        return Vec::new();
    };
    map.iter()
        .filter(|(name, _)| !OUTBOX_HEADERS.iter().any(|o| o.eq_ignore_ascii_case(name)))
        .filter_map(|(name, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Null => return None,
                other => other.to_string(),
            };
            Some((name.clone(), text))
        })
        .collect()
}

/// The relay's own metadata for a delivery: `Idempotency-Key` and `X-Outbox-Event-Id` (the
/// event id), `X-Outbox-Routing-Key`, `X-Outbox-Attempt` (1-based).
pub fn outbox_headers(claimed: &ClaimedEvent) -> [(&'static str, String); 4] {
    let e = &claimed.event;
    let [key, id, routing, attempt] = OUTBOX_HEADERS;
    [
        (key, e.id.clone()),
        (id, e.id.clone()),
        (routing, e.routing_key.clone()),
        (attempt, claimed.attempt().to_string()),
    ]
}

/// A destination name with placeholders, e.g. `outbox.{routingKey}`: `{routingKey}`,
/// `{eventType}`, `{eventName}` and `{aggregateId}` are replaced by the event's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    RoutingKey,
    EventType,
    EventName,
    AggregateId,
}

impl Template {
    /// The placeholders a template may use.
    pub const PLACEHOLDERS: &'static [&'static str] =
        &["routingKey", "eventType", "eventName", "aggregateId"];

    /// Parses `text`; an unknown or unclosed placeholder is an error naming it.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err(format!("'{{' without a closing '}}' in '{text}'"));
            };
            parts.push(match &after[..close] {
                "routingKey" => Part::RoutingKey,
                "eventType" => Part::EventType,
                "eventName" => Part::EventName,
                "aggregateId" => Part::AggregateId,
                other => {
                    return Err(format!(
                        "unknown placeholder '{{{other}}}'; use {}",
                        Template::PLACEHOLDERS
                            .iter()
                            .map(|p| format!("{{{p}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Reads a template key, `default` when absent; problems become issues.
    pub fn read(s: &mut Section<'_>, key: &str, default: &str) -> Template {
        let text = s.string(key).unwrap_or_else(|| default.to_string());
        match Template::parse(&text) {
            Ok(t) if !t.parts.is_empty() => t,
            Ok(_) => {
                s.issue(key, format!("is empty; e.g. `{key} = \"{default}\"`"));
                Template { parts: Vec::new() }
            }
            Err(e) => {
                s.issue(key, e);
                Template { parts: Vec::new() }
            }
        }
    }

    /// The template with the event's values filled in.
    pub fn render(&self, claimed: &ClaimedEvent) -> String {
        let e = &claimed.event;
        let mut out = String::new();
        for p in &self.parts {
            out.push_str(match p {
                Part::Text(t) => t,
                Part::RoutingKey => &e.routing_key,
                Part::EventType => &e.event_type,
                Part::EventName => &e.event_name,
                Part::AggregateId => &e.aggregate_id,
            });
        }
        out
    }

    /// The name for events of `routing_key`, when that is all the template depends on.
    pub fn for_routing_key(&self, routing_key: &str) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::RoutingKey => out.push_str(routing_key),
                _ => return None,
            }
        }
        Some(out)
    }

    /// Whether the template has no placeholder (the same name for every event).
    pub fn is_fixed(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The text before the first placeholder: the namespace the operator chose.
    fn prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Text(t)) => t,
            _ => "",
        }
    }

    /// The event's destination name of `kind`, checked so that no event field can take it
    /// out of the namespace the operator configured: a field may not bring in a control
    /// character, and the name must be one `kind` accepts for a publish (no wildcard, no
    /// empty NATS token, within the length the broker takes) and may not start a system
    /// namespace (`$`, in NATS and MQTT) unless the template itself starts there. The
    /// error says why, for the event's lastError; the event fails alone.
    pub fn destination(&self, claimed: &ClaimedEvent, kind: Destination) -> Result<String, String> {
        let e = &claimed.event;
        for p in &self.parts {
            let (field, value) = match p {
                Part::Text(_) => continue,
                Part::RoutingKey => ("routingKey", &e.routing_key),
                Part::EventType => ("eventType", &e.event_type),
                Part::EventName => ("eventName", &e.event_name),
                Part::AggregateId => ("aggregateId", &e.aggregate_id),
            };
            if value.chars().any(char::is_control) {
                return Err(format!(
                    "the event's {field} contains a control character, which a {} cannot carry",
                    kind.noun()
                ));
            }
        }
        let name = self.render(claimed);
        kind.check(&name, self.prefix())?;
        Ok(name)
    }

    /// Checks the template's own text for `kind` (placeholders standing for a plain word),
    /// so a name no event could ever use is a configuration error.
    pub fn check_config(&self, s: &mut Section<'_>, key: &str, kind: Destination) {
        let mut sample = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => sample.push_str(t),
                _ => sample.push('x'),
            }
        }
        if self.parts.is_empty() {
            return;
        }
        if let Err(e) = kind.check(&sample, self.prefix()) {
            s.issue(key, e);
        }
    }
}

/// The kinds of destination name a template makes, each with the rules its broker has for
/// a name to publish to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// A NATS subject: dot-separated tokens, no whitespace, no wildcard.
    NatsSubject,
    /// An MQTT topic name: no wildcard, no NUL.
    MqttTopic,
    /// A Redis key.
    RedisKey,
    /// An AMQP routing key (a short string: 255 bytes).
    AmqpRoutingKey,
    /// A Kafka topic: letters, digits, `.`, `_` and `-`, at most 249 of them.
    KafkaTopic,
}

impl Destination {
    fn noun(self) -> &'static str {
        match self {
            Destination::NatsSubject => "NATS subject",
            Destination::MqttTopic => "MQTT topic",
            Destination::RedisKey => "Redis key",
            Destination::AmqpRoutingKey => "AMQP routing key",
            Destination::KafkaTopic => "Kafka topic",
        }
    }

    /// The longest name taken. NATS reads a subject in a control line the server caps (4 KiB
    /// by default, dropping the whole connection when it is over); 1 KiB leaves room for
    /// the rest of the line. AMQP's short string holds 255 bytes.
    pub fn max_len(self) -> usize {
        match self {
            Destination::AmqpRoutingKey => 255,
            Destination::KafkaTopic => 249,
            _ => 1024,
        }
    }

    /// Whether `name` is one to publish to; `prefix` is the template's own leading text.
    fn check(self, name: &str, prefix: &str) -> Result<(), String> {
        let noun = self.noun();
        if name.is_empty() {
            return Err(format!("the {noun} is empty"));
        }
        if name.len() > self.max_len() {
            return Err(format!(
                "the {noun} is {} bytes; at most {} are allowed",
                name.len(),
                self.max_len()
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(format!("the {noun} contains a control character"));
        }
        let system = matches!(self, Destination::NatsSubject | Destination::MqttTopic);
        if system && name.starts_with('$') && !prefix.starts_with('$') {
            return Err(format!(
                "the {noun} '{}' starts with '$', a broker's system namespace, and the configured name does not",
                shorten(name)
            ));
        }
        match self {
            Destination::NatsSubject => {
                let bad = name.split('.').find(|t| {
                    t.is_empty() || *t == "*" || *t == ">" || t.contains(char::is_whitespace)
                });
                if bad.is_some() {
                    return Err(format!(
                        "'{}' is not a NATS subject to publish to (dot-separated tokens, no empty token, spaces or wildcards)",
                        shorten(name)
                    ));
                }
            }
            Destination::MqttTopic => {
                if name.contains(['+', '#']) {
                    return Err(format!(
                        "'{}' is not an MQTT topic to publish to (it has a wildcard, + or #)",
                        shorten(name)
                    ));
                }
            }
            Destination::KafkaTopic => {
                let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
                if !name.chars().all(legal) || name == "." || name == ".." {
                    return Err(format!(
                        "'{}' is not a Kafka topic name (letters, digits, '.', '_' and '-' only; not '.' or '..')",
                        shorten(name)
                    ));
                }
            }
            Destination::RedisKey | Destination::AmqpRoutingKey => {}
        }
        Ok(())
    }
}

/// At most 120 characters of a name, for messages.
fn shorten(name: &str) -> String {
    match name.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &name[..i]),
        None => name.to_string(),
    }
}
