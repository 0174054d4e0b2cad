//! The HTTP sink: builds the request for one event and classifies the response.

use super::config::HttpSinkConfig;
use crate::message::{event_headers, http_header_allowed, outbox_headers, Encoding};
use async_trait::async_trait;
use outbox_core::{ClaimedEvent, Outcome, Sink};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Method, StatusCode, Url};
use std::time::{Duration, SystemTime};

/// Most bytes of an error response kept for `lastError`.
const ERROR_BODY_LIMIT: usize = 300;
/// Most bytes of any response read (the rest is dropped with the connection).
const DRAIN_LIMIT: usize = 64 * 1024;

/// Sends each event as one HTTP request over a pooled keep-alive client.
#[derive(Debug, Clone)]
pub struct HttpSink {
    client: Client,
    url: Url,
    method: Method,
    headers: HeaderMap,
    encoding: Encoding,
    timeout: Duration,
    signing: Option<super::signing::Signing>,
}

impl HttpSink {
    /// Builds the client from a validated config.
    pub fn new(config: &HttpSinkConfig) -> Result<HttpSink, String> {
        let url = Url::parse(&config.url).map_err(|e| format!("url: {e}"))?;
        let method =
            Method::from_bytes(config.method.as_bytes()).map_err(|e| format!("method: {e}"))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("headers.{name}: {e}"))?;
            let v = HeaderValue::from_str(value).map_err(|e| format!("headers.{name}: {e}"))?;
            headers.insert(n, v);
        }
        let client = Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("outbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(HttpSink {
            client,
            url,
            method,
            headers,
            encoding: config.encoding.clone(),
            timeout: config.timeout,
            signing: config.signing.clone(),
        })
    }

    /// The request's headers, or why the event cannot be sent (its id or routingKey is not
    /// a header value: the request would go without its idempotency key).
    fn headers_for(
        &self,
        claimed: &ClaimedEvent,
        content_type: &'static str,
    ) -> Result<HeaderMap, String> {
        let mut h = HeaderMap::new();
        // The event's own metadata first, then the configured headers, then ours: a
        // producer cannot override Authorization, nor anyone the idempotency key. Headers
        // that frame the body or route the request are never taken from an event, and a
        // name or value HTTP cannot carry is left out.
        for (name, text) in event_headers(claimed) {
            if !http_header_allowed(&name) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&text),
            ) {
                h.insert(n, v);
            }
        }
        for (n, v) in &self.headers {
            h.insert(n.clone(), v.clone());
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        for (name, value) in outbox_headers(claimed) {
            let v = HeaderValue::from_str(&value).map_err(|_| {
                format!(
                    "the event's {} cannot be sent as the HTTP header {name} (it holds a line break or another control character)",
                    if name == "X-Outbox-Routing-Key" { "routingKey" } else { "id" }
                )
            })?;
            if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                h.insert(n, v);
            }
        }
        Ok(h)
    }
}

/// Reads up to `limit` bytes of the body, so the connection can go back to the pool.
async fn read_some(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut seen = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        if buf.len() < limit {
            let take = (limit - buf.len()).min(chunk.len());
            buf.extend_from_slice(&chunk[..take]);
        }
        seen += chunk.len();
        if seen >= DRAIN_LIMIT {
            break;
        }
    }
    buf
}

/// `Retry-After`: delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The one place an HTTP status becomes an [`Outcome`]: 2xx delivered; 408, 425, 429 and
/// 5xx retried (honouring `Retry-After`); anything else permanent.
pub fn classify_status(status: StatusCode, retry_after: Option<Duration>, body: &str) -> Outcome {
    let detail = if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    };
    match status.as_u16() {
        200..=299 => Outcome::Delivered,
        408 | 425 | 429 | 500..=599 => Outcome::Retry {
            reason: detail,
            after: retry_after,
        },
        300..=399 => Outcome::reject(format!(
            "{detail} (redirects are not followed; point the sink url at the final address)"
        )),
        _ => Outcome::reject(detail),
    }
}

/// What went wrong under a transport error, cause by cause, without the URL reqwest puts
/// in its own message (it may carry a token in its query): "tcp connect error: Connection
/// refused (os error 111)", "invalid peer certificate: UnknownIssuer", "dns error: …".
fn causes(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = std::error::Error::source(e);
    while let Some(err) = next {
        let text = outbox_core::conf::redact_secrets(&err.to_string());
        // Wrappers repeat their cause's text; keep each piece once.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.retain(|p| !text.contains(p.as_str()));
            parts.push(text);
        }
        next = err.source();
    }
    if parts.is_empty() {
        "no cause given".to_string()
    } else {
        parts.join(": ")
    }
}

/// Transport errors: timeouts and connection failures are retried; a request that could
/// not even be built is permanent.
fn classify_error(e: &reqwest::Error, timeout: Duration) -> Outcome {
    // reqwest's own message carries the URL, whose query may hold a token: only the
    // causes are told.
    if e.is_builder() {
        return Outcome::reject(format!("cannot build the request: {}", causes(e)));
    }
    if e.is_timeout() {
        return Outcome::retry(format!(
            "timed out after {}",
            outbox_core::conf::format_duration(timeout)
        ));
    }
    if let Some(what) = crate::local_exhaustion(e) {
        return Outcome::NotAttempted {
            reason: what.to_string(),
            after: crate::NOT_ATTEMPTED_DELAY,
        };
    }
    if e.is_connect() {
        return Outcome::retry(format!("connection failed: {}", causes(e)));
    }
    Outcome::retry(format!("request failed: {}", causes(e)))
}

#[async_trait]
impl Sink for HttpSink {
    async fn deliver(&self, claimed: &ClaimedEvent) -> Outcome {
        let (bytes, content_type) = match self.encoding.bytes(claimed) {
            Ok(b) => b,
            Err(e) => return Outcome::reject(e),
        };
        let mut headers = match self.headers_for(claimed, content_type) {
            Ok(h) => h,
            Err(e) => return Outcome::reject(e),
        };
        if let Some(signing) = &self.signing {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            // The id is a header value already (checked above); the signature is base64.
            for (name, value) in signing.headers(&claimed.event.id, now, &bytes) {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(HeaderName::from_static(name), v);
                }
            }
        }
        let request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(headers)
            .body(bytes);
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return classify_error(&e, self.timeout),
        };
        let status = response.status();
        let after = retry_after(response.headers());
        let limit = if status.is_success() {
            0
        } else {
            ERROR_BODY_LIMIT
        };
        let body = read_some(response, limit).await;
        let text = String::from_utf8_lossy(&body);
        classify_status(status, after, text.trim())
    }

    async fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_in_one_place() {
        assert_eq!(
            classify_status(StatusCode::OK, None, ""),
            Outcome::Delivered
        );
        assert_eq!(
            classify_status(StatusCode::NO_CONTENT, None, ""),
            Outcome::Delivered
        );
        for code in [408u16, 425, 429, 500, 502, 503, 504] {
            let s = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(classify_status(s, None, ""), Outcome::Retry { .. }),
                "{code}"
            );
        }
        for code in [400u16, 401, 403, 404, 409, 410, 422, 301] {
            let s = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(classify_status(s, None, ""), Outcome::Reject { .. }),
                "{code}"
            );
        }
        let o = classify_status(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(3)),
            "slow down",
        );
        assert_eq!(
            o,
            Outcome::Retry {
                reason: "HTTP 429 Too Many Requests: slow down".into(),
                after: Some(Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}
