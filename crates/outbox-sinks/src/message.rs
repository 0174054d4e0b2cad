//! What every sink sends for an event, whatever the transport: the body (the envelope, the
//! payload alone, or a CloudEvents document), the metadata that goes with it, and the
//! destination names built from templates such as `outbox.{routingKey}`.

use chrono::SecondsFormat;
use outbox_core::conf::Section;
use outbox_core::ClaimedEvent;
use serde_json::{json, Value};

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
    /// The keys this reads.
    pub const KEYS: &'static [&'static str] = &["format", "source"];

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

    /// The body for `claimed` as JSON, with its content type.
    pub fn body(&self, claimed: &ClaimedEvent) -> (Value, &'static str) {
        let e = &claimed.event;
        let occurred = e.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true);
        match self.format {
            BodyFormat::Envelope => (
                json!({
                    "id": e.id,
                    "eventName": e.event_name,
                    "eventType": e.event_type,
                    "aggregateId": e.aggregate_id,
                    "routingKey": e.routing_key,
                    "occurredAt": occurred,
                    "payload": e.payload,
                }),
                "application/json",
            ),
            BodyFormat::Payload => (e.payload.clone(), "application/json"),
            BodyFormat::CloudEvents => (
                json!({
                    "specversion": "1.0",
                    "id": e.id,
                    "source": self.source,
                    "type": e.event_type,
                    "subject": e.aggregate_id,
                    "time": occurred,
                    "datacontenttype": "application/json",
                    "outboxeventname": e.event_name,
                    "outboxroutingkey": e.routing_key,
                    "data": e.payload,
                }),
                "application/cloudevents+json",
            ),
        }
    }

    /// The body as bytes, with its content type.
    pub fn bytes(&self, claimed: &ClaimedEvent) -> Result<(Vec<u8>, &'static str), String> {
        let (body, content_type) = self.body(claimed);
        serde_json::to_vec(&body)
            .map(|b| (b, content_type))
            .map_err(|e| format!("cannot encode the body: {e}"))
    }
}

/// The names of [`outbox_headers`].
const OUTBOX_HEADERS: [&str; 4] = [
    "Idempotency-Key",
    "X-Outbox-Event-Id",
    "X-Outbox-Routing-Key",
    "X-Outbox-Attempt",
];

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

    /// Whether the template has no placeholder (the same name for every event).
    pub fn is_fixed(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }
}
