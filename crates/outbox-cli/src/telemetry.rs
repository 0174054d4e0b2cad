//! OpenTelemetry export of the worker's delivery spans over OTLP/HTTP (the `otel` feature).
//!
//! Configured the standard way, by environment: export is on when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, unless
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. The exporter itself reads the
//! protocol (`http/protobuf`, the default, or `http/json`), headers, timeout and sampler
//! variables; `OTEL_SERVICE_NAME` names the service (default `outbox`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::Layer;

/// Flushes and stops the exporter when the command is over.
pub(crate) struct Telemetry {
    provider: SdkTracerProvider,
    /// Where spans go and how, for the start-up log line.
    pub(crate) summary: String,
}

impl Telemetry {
    pub(crate) fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!("OpenTelemetry: could not flush the last spans: {e}");
        }
    }
}

/// The layer that turns the worker's spans into exported OpenTelemetry spans, or `None`
/// when the environment does not ask for export. HTTP requests run on `runtime`.
pub(crate) fn layer<S>(
    runtime: tokio::runtime::Handle,
) -> Result<Option<(impl Layer<S>, Telemetry)>, String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if !crate::otel_requested() {
        return Ok(None);
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("OpenTelemetry: cannot build the HTTP client: {e}"))?;
    let protocol = protocol()?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_http_client(OnRuntime { http, runtime })
        .build()
        .map_err(|e| {
            format!(
                "OpenTelemetry: {e} (set OTEL_EXPORTER_OTLP_ENDPOINT to the collector's \
                 OTLP/HTTP address, e.g. http://127.0.0.1:4318)"
            )
        })?;
    let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) {
        resource = resource.with_service_name("outbox");
    }
    let provider = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("outbox");
    // Only the worker's own spans (one per delivery) and the events inside them.
    let spans = Targets::new()
        .with_target("outbox_worker", LevelFilter::INFO)
        .with_default(LevelFilter::OFF);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(spans);
    let summary = format!(
        "OpenTelemetry: exporting delivery spans to {} ({})",
        outbox_core::conf::redact_secrets(&traces_endpoint()),
        match protocol {
            Protocol::HttpJson => "http/json",
            _ => "http/protobuf",
        }
    );
    Ok(Some((layer, Telemetry { provider, summary })))
}

/// The OTLP encoding from `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else
/// `OTEL_EXPORTER_OTLP_PROTOCOL`, else protobuf (the OpenTelemetry default for HTTP).
fn protocol() -> Result<Protocol, String> {
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        let Ok(value) = std::env::var(var) else {
            continue;
        };
        return match value.trim() {
            "http/protobuf" => Ok(Protocol::HttpBinary),
            "http/json" => Ok(Protocol::HttpJson),
            "" => continue,
            other => Err(format!(
                "OpenTelemetry: {var}={other:?} is not an encoding this build exports with: \
                 use http/protobuf or http/json (gRPC is not built in; an OpenTelemetry \
                 Collector takes OTLP/HTTP on port 4318)"
            )),
        };
    }
    Ok(Protocol::HttpBinary)
}

/// The traces URL the exporter posts to, as it resolves it from the environment.
fn traces_endpoint() -> String {
    match std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => format!(
            "{}/v1/traces",
            std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .unwrap_or_default()
                .trim_end_matches('/')
        ),
    }
}

/// The exporter's HTTP client. The exporter calls it from its own thread, outside any async
/// runtime, so each request is spawned onto the command's runtime and awaited from there.
#[derive(Debug)]
struct OnRuntime {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let task = self.runtime.spawn(async move {
            let response = http.execute(reqwest::Request::try_from(request)?).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            let mut out = Response::builder().status(status).body(body)?;
            *out.headers_mut() = headers;
            Ok::<_, HttpError>(out)
        });
        task.await?
    }
}
