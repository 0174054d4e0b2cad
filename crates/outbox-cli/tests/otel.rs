//! OpenTelemetry export (the `otel` feature): each delivery is exported as a span under the
//! trace its event names, the destination receives that span's context, and the exporter
//! speaks OTLP/HTTP in both encodings to a collector (here a test server).
#![cfg(feature = "otel")]

use outbox_testkit::*;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";
const LONG: Duration = Duration::from_secs(30);
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

/// One exported span, as the collector decoded it.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    kind: i32,
    status_code: i32,
    status_message: String,
    attributes: Vec<(String, String)>,
    events: Vec<String>,
    service: String,
}

impl Span {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The spans of every OTLP/JSON request the collector received.
fn json_spans(collector: &TestServer) -> Vec<Span> {
    let text = |v: &Value| -> String {
        v.get("stringValue")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    let attributes = |v: &Value| -> Vec<(String, String)> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|a| (a["key"].as_str().unwrap().to_string(), text(&a["value"])))
            .collect()
    };
    let mut out = Vec::new();
    for request in collector.requests() {
        assert_eq!(request.path, "/v1/traces");
        assert_eq!(request.header("content-type"), Some("application/json"));
        for rs in request.body["resourceSpans"].as_array().unwrap() {
            let resource = attributes(&rs["resource"]["attributes"]);
            let service = resource
                .iter()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            for ss in rs["scopeSpans"].as_array().unwrap() {
                for s in ss["spans"].as_array().unwrap() {
                    out.push(Span {
                        name: s["name"].as_str().unwrap().to_string(),
                        trace_id: s["traceId"].as_str().unwrap().to_string(),
                        span_id: s["spanId"].as_str().unwrap().to_string(),
                        parent_span_id: s["parentSpanId"].as_str().unwrap_or("").to_string(),
                        kind: s["kind"].as_i64().unwrap() as i32,
                        status_code: s["status"]["code"].as_i64().unwrap_or(0) as i32,
                        status_message: s["status"]["message"].as_str().unwrap_or("").into(),
                        attributes: attributes(&s["attributes"]),
                        events: s["events"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|e| e["name"].as_str().unwrap().to_string())
                            .collect(),
                        service: service.clone(),
                    });
                }
            }
        }
    }
    out
}

/// The spans of every OTLP/protobuf request the collector received.
fn protobuf_spans(collector: &TestServer) -> Vec<Span> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use prost::Message;
    let text = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    };
    let mut out = Vec::new();
    for request in collector.requests() {
        assert_eq!(request.path, "/v1/traces");
        assert_eq!(
            request.header("content-type"),
            Some("application/x-protobuf")
        );
        let decoded = ExportTraceServiceRequest::decode(request.raw.as_slice()).unwrap();
        for rs in decoded.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .map(|a| text(&a.value))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(Span {
                        name: s.name,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                        kind: s.kind,
                        status_code: s.status.as_ref().map(|st| st.code).unwrap_or(0),
                        status_message: s.status.map(|st| st.message).unwrap_or_default(),
                        attributes: s
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), text(&a.value)))
                            .collect(),
                        events: s.events.into_iter().map(|e| e.name).collect(),
                        service: service.clone(),
                    });
                }
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// (trace id, span id, flags) of a `traceparent` value.
fn traceparent(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!((parts.len(), parts[0]), (4, "00"), "{value}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

async fn insert_traced(c: &Client, id: &str, headers: Option<&str>) {
    c.execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "headers")
           VALUES ($1, 'LoggedIn', 'auth', 'user-1', $2, $3::text::jsonb)"#,
        &[&id, &KEY, &headers],
    )
    .await
    .unwrap();
}

/// A worker exporting to `collector` with `env` on top, delivering to `destination`.
fn exporting_worker(
    db: &TestDb,
    destination: &TestServer,
    collector: &TestServer,
    env: &[(&str, &str)],
) -> WorkerProcess {
    let config = http_config(&db.url, &destination.url("/"), &[KEY], "");
    let endpoint = collector.url("");
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    vars.extend_from_slice(env);
    WorkerProcess::start_with(&config, &[], &vars)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_exported_as_spans_under_the_trace_of_their_event() {
    let db = TestDb::with_policies(&[(KEY, 3, 50)]).await;
    let c = db.client().await;
    // `traced` fails once (503), then goes through; the others go through at once.
    let destination = TestServer::start(|seen, earlier| {
        if seen.id() == "traced" && earlier == 0 {
            Reply::status(503)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let collector = TestServer::always(200).await;
    let mut worker = exporting_worker(
        &db,
        &destination,
        &collector,
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_SERVICE_NAME", "relay-under-test"),
        ],
    );
    worker.wait_started().await;
    let sampled =
        format!(r#"{{"traceparent": "00-{TRACE}-{PARENT}-01", "tracestate": "vendor=x"}}"#);
    let unsampled = r#"{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}"#;
    insert_traced(&c, "traced", Some(&sampled)).await;
    insert_traced(&c, "rooted", None).await;
    insert_traced(&c, "unsampled", Some(unsampled)).await;
    for id in ["traced", "rooted", "unsampled"] {
        wait_status(&c, id, "SENT", LONG).await;
    }
    // Stopping flushes what the exporter still holds.
    worker.stop().await;
    let spans = json_spans(&collector);
    let logs = worker.logs();
    let announced = format!(
        "OpenTelemetry: exporting delivery spans to {} (http/json)",
        collector.url("/v1/traces")
    );
    assert!(logs.contains(&announced), "{logs}");

    // `traced`: two attempts, two spans, both children of the producer's span.
    let attempts: Vec<&Span> = spans.iter().filter(|s| s.trace_id == TRACE).collect();
    assert_eq!(attempts.len(), 2, "{spans:#?}\n{logs}");
    for s in &attempts {
        assert_eq!(s.name, "delivery");
        assert_eq!(s.parent_span_id, PARENT, "{s:?}");
        assert_eq!(s.kind, 4, "a producer span: {s:?}");
        assert_eq!(s.service, "relay-under-test");
        assert_eq!(s.attribute("id"), Some("traced"));
        assert_eq!(s.attribute("routing_key"), Some(KEY));
        assert_eq!(s.attribute("sink"), Some("api"));
    }
    let outcomes: HashSet<(Option<&str>, i32)> = attempts
        .iter()
        .map(|s| (s.attribute("outcome"), s.status_code))
        .collect();
    // Status codes: 0 unset, 2 error.
    assert_eq!(
        outcomes,
        HashSet::from([(Some("retry"), 2), (Some("sent"), 0)]),
        "{attempts:#?}"
    );
    // The failed attempt carries its warning as a span event.
    let retry = attempts
        .iter()
        .find(|s| s.attribute("outcome") == Some("retry"))
        .unwrap();
    assert_eq!(retry.events, ["Delivery failed; will retry"], "{retry:?}");
    assert!(retry.status_message.contains("503"), "{retry:?}");
    // The destination saw each attempt's own span as the parent, with the trace state.
    let sent: HashSet<(String, String, String)> = destination
        .requests_for("traced")
        .iter()
        .map(|r| {
            assert_eq!(r.header("tracestate"), Some("vendor=x"));
            traceparent(r.header("traceparent").unwrap())
        })
        .collect();
    let exported: HashSet<(String, String, String)> = attempts
        .iter()
        .map(|s| (s.trace_id.clone(), s.span_id.clone(), "01".to_string()))
        .collect();
    assert_eq!(sent, exported);

    // `rooted`: no trace context, so the delivery starts a trace and passes it on.
    let seen = destination.requests_for("rooted");
    let (trace, span, flags) = traceparent(seen[0].header("traceparent").unwrap());
    let root = spans
        .iter()
        .find(|s| s.attribute("id") == Some("rooted"))
        .expect("the rooted delivery is exported");
    assert_eq!((&root.trace_id, &root.span_id), (&trace, &span));
    assert_eq!(root.parent_span_id, "");
    assert_eq!(flags, "01");

    // `unsampled`: the producer chose not to sample; nothing is exported, but the trace
    // goes on to the destination, unsampled, under the delivery's span id.
    assert!(
        spans.iter().all(|s| s.attribute("id") != Some("unsampled")),
        "{spans:#?}"
    );
    let seen = destination.requests_for("unsampled");
    let (trace, span, flags) = traceparent(seen[0].header("traceparent").unwrap());
    assert_eq!(
        (trace.as_str(), flags.as_str()),
        ("4bf92f3577b34da6a3ce929d0e0e4736", "00")
    );
    assert_ne!(span, "00f067aa0ba902b7");
    assert_eq!(spans.len(), 3, "{spans:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_encoding_is_protobuf_and_spans_are_flushed_at_shutdown() {
    let db = TestDb::with_policies(&[(KEY, 3, 50)]).await;
    let c = db.client().await;
    let destination = TestServer::always(200).await;
    let collector = TestServer::always(200).await;
    // A batch delay far longer than the test: only the flush at shutdown can send them.
    let mut worker = exporting_worker(
        &db,
        &destination,
        &collector,
        &[("OTEL_BSP_SCHEDULE_DELAY", "600000")],
    );
    worker.wait_started().await;
    let headers = format!(r#"{{"traceparent": "00-{TRACE}-{PARENT}-01"}}"#);
    for i in 0..20 {
        insert_traced(&c, &format!("e{i}"), Some(&headers)).await;
    }
    wait_for("20 events SENT", LONG, || async {
        count_status(&c, "SENT").await == 20
    })
    .await;
    assert_eq!(collector.count(), 0, "nothing is exported before the flush");
    worker.stop().await;
    let spans = protobuf_spans(&collector);
    assert_eq!(spans.len(), 20, "{spans:#?}");
    let ids: HashSet<&str> = spans.iter().filter_map(|s| s.attribute("id")).collect();
    assert_eq!(ids.len(), 20);
    for s in &spans {
        assert_eq!(
            (s.trace_id.as_str(), s.parent_span_id.as_str()),
            (TRACE, PARENT)
        );
        assert_eq!(s.service, "outbox");
        assert_eq!(s.name, "delivery");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_protocol_this_build_cannot_speak_is_a_config_error() {
    let config = http_config(
        "postgres://postgres@127.0.0.1:1/none",
        "http://127.0.0.1:1/",
        &[KEY],
        "",
    );
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ];
    let mut worker = WorkerProcess::start_with(&config, &[], &env);
    let code = worker.wait_exit(LONG).await;
    let logs = worker.logs();
    assert_eq!(code, Some(2), "{logs}");
    assert!(logs.starts_with("error: OpenTelemetry:"), "{logs}");
    assert!(
        logs.contains("OTEL_EXPORTER_OTLP_PROTOCOL=\"grpc\""),
        "{logs}"
    );
    assert!(logs.contains("use http/protobuf or http/json"), "{logs}");
}
