//! OpenTelemetry linking of delivery spans (the `otel` feature).
//!
//! The worker only creates `tracing` spans. When the host installs a
//! `tracing-opentelemetry` layer, each `delivery` span becomes an OpenTelemetry span: its
//! parent is the trace context the producer left in the event's `headers` (`traceparent`,
//! `tracestate`), and the sink receives the delivery span's own context in their place, so
//! the destination's spans hang under the delivery. Without such a layer nothing changes:
//! the event's headers go out as they were written.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde_json::{Map, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The event's `headers` object read as a propagation carrier.
struct Headers<'a>(&'a Value);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.as_str()
    }

    fn keys(&self) -> Vec<&str> {
        match self.0.as_object() {
            Some(map) => map.keys().map(String::as_str).collect(),
            None => Vec::new(),
        }
    }
}

/// The event's `headers` object, written to.
struct HeadersMut<'a>(&'a mut Map<String, Value>);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), Value::String(value));
    }
}

/// Makes `span` a child of the trace context in `headers`, then puts the span's own context
/// in `headers` in its place, for the sink to pass on. Does nothing when no OpenTelemetry
/// layer records the span.
pub(crate) fn link(span: &tracing::Span, headers: &mut Option<Value>) {
    let propagator = TraceContextPropagator::new();
    if let Some(h) = headers.as_ref() {
        let parent = propagator.extract(&Headers(h));
        if parent.span().span_context().is_valid() && span.set_parent(parent).is_err() {
            return; // no OpenTelemetry layer: leave the headers alone
        }
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    let mut map = match headers.take() {
        Some(Value::Object(map)) => map,
        None => Map::new(),
        Some(other) => {
            // Not an object: the sink passes nothing on from it anyway.
            *headers = Some(other);
            return;
        }
    };
    map.remove("tracestate");
    propagator.inject_context(&cx, &mut HeadersMut(&mut map));
    *headers = Some(Value::Object(map));
}

/// Marks the delivery's span as failed, with the error as its status message.
pub(crate) fn failed(span: &tracing::Span, error: &str) {
    span.set_status(opentelemetry::trace::Status::error(error.to_string()));
}
