//! The worker's metrics, rendered in the Prometheus text format. Labels are bounded: a
//! `routing_key` label only ever holds a routed key (anything else is counted as
//! `(unrouted)`), a `sink` label a configured sink.

use crate::breaker::{Breaker, BreakerState};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 1800.0, 3600.0,
];
/// Upper bounds of the claim batch size histogram.
const BATCH_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
];

/// The label value for routing keys that have no route.
pub const UNROUTED: &str = "(unrouted)";

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// PENDING events of one routingKey, as last sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingSample {
    pub routing_key: String,
    pub count: i64,
    pub oldest_age: Duration,
}

#[derive(Debug, Default, Clone)]
struct State {
    /// (counter, routing_key, sink) → count.
    counters: BTreeMap<(&'static str, String, String), u64>,
    latency: BTreeMap<String, Histogram>,
    sink_duration: BTreeMap<String, Histogram>,
    claim_batch: Option<Histogram>,
    pending: Vec<PendingSample>,
    pending_sampled: bool,
    /// Events this worker's reaper took back after their lease expired.
    leases_expired: u64,
    /// Claim statements run, found events or not.
    claims: u64,
    /// Reads of the retry-policy table.
    policy_reads: u64,
    /// Database notifications received (new events, policy edits).
    notifications: u64,
    /// Routed keys: the only values a `routing_key` label takes.
    routed: BTreeSet<String>,
    /// Each routed key's sink.
    routes: BTreeMap<String, String>,
}

/// One routed key's counts so far, as [`Metrics::snapshot`] reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeySnapshot {
    /// The key's sink.
    pub sink: String,
    /// Events delivered, given back for a retry, and failed for good.
    pub delivered: u64,
    pub retried: u64,
    pub failed: u64,
    /// Delivery latencies (occurredAt → delivered): upper bounds in seconds, and how many
    /// fell at or under each (cumulative, as Prometheus keeps them).
    pub latency_bounds: &'static [f64],
    pub latency_counts: Vec<u64>,
    /// All latencies observed, past the last bound too.
    pub latency_total: u64,
    /// PENDING events at the last sample, if sampled.
    pub pending: Option<i64>,
}

/// The metrics in a form a program can read: for the dashboard's history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Per routed key.
    pub keys: BTreeMap<String, KeySnapshot>,
    /// Each sink's circuit breaker: `closed`, `open` or `half-open`.
    pub breakers: BTreeMap<String, &'static str>,
}

/// What the worker counts. Cheap to update from many tasks; rendered on each scrape.
#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
    breakers: Mutex<Vec<(String, Arc<Breaker>)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// How one delivery attempt ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    Delivered,
    Retried,
    Failed,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The routed keys and sinks (bounding the labels) and each sink's breaker.
    pub(crate) fn register(&self, key: &str, sink: &str, breaker: &Arc<Breaker>) {
        let mut s = self.state();
        s.routed.insert(key.to_string());
        s.routes.insert(key.to_string(), sink.to_string());
        drop(s);
        let mut b = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        if !b.iter().any(|(name, _)| name == sink) {
            b.push((sink.to_string(), breaker.clone()));
        }
    }

    /// Counts one outcome; with the sink call's duration when the sink was called, and the
    /// delivery latency when it was delivered. One lock per delivery.
    pub(crate) fn observe(
        &self,
        what: Counted,
        key: &str,
        sink: &str,
        call: Option<Duration>,
        latency: Option<Duration>,
    ) {
        let name = match what {
            Counted::Delivered => "outbox_events_delivered_total",
            Counted::Retried => "outbox_events_retried_total",
            Counted::Failed => "outbox_events_failed_total",
        };
        let mut s = self.state();
        let key = if s.routed.contains(key) {
            key.to_string()
        } else {
            UNROUTED.to_string()
        };
        if let Some(took) = call {
            s.sink_duration
                .entry(sink.to_string())
                .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
                .observe(took.as_secs_f64());
        }
        if let Some(latency) = latency {
            s.latency
                .entry(key.clone())
                .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
                .observe(latency.as_secs_f64());
        }
        *s.counters.entry((name, key, sink.to_string())).or_default() += 1;
    }

    /// Counts events whose expired lease this worker's reaper took back.
    pub(crate) fn leases_expired(&self, n: u64) {
        self.state().leases_expired += n;
    }

    /// Counts one claim statement.
    pub(crate) fn claimed(&self) {
        self.state().claims += 1;
    }

    /// Counts one read of the policy table.
    pub(crate) fn policies_read(&self) {
        self.state().policy_reads += 1;
    }

    /// Counts one notification received.
    pub(crate) fn notified(&self) {
        self.state().notifications += 1;
    }

    pub(crate) fn claim_batch(&self, n: usize) {
        self.state()
            .claim_batch
            .get_or_insert_with(|| Histogram::new(BATCH_BUCKETS))
            .observe(n as f64);
    }

    /// The latest sample of the PENDING backlog. Keys without a route are summed into one
    /// `(unrouted)` sample (the oldest age of them all), so the labels stay bounded.
    pub(crate) fn set_pending(&self, sample: Vec<PendingSample>) {
        let mut s = self.state();
        let mut by_key: BTreeMap<String, PendingSample> = BTreeMap::new();
        for p in sample {
            let key = if s.routed.contains(&p.routing_key) {
                p.routing_key
            } else {
                UNROUTED.to_string()
            };
            let e = by_key.entry(key.clone()).or_insert(PendingSample {
                routing_key: key,
                count: 0,
                oldest_age: Duration::ZERO,
            });
            e.count += p.count;
            e.oldest_age = e.oldest_age.max(p.oldest_age);
        }
        s.pending = by_key.into_values().collect();
        s.pending_sampled = true;
    }

    /// Every routed key's counters, latencies and backlog, and every breaker's state.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.state().clone();
        let mut keys: BTreeMap<String, KeySnapshot> = s
            .routes
            .iter()
            .map(|(key, sink)| {
                let snap = KeySnapshot {
                    sink: sink.clone(),
                    latency_bounds: LATENCY_BUCKETS,
                    latency_counts: vec![0; LATENCY_BUCKETS.len()],
                    ..KeySnapshot::default()
                };
                (key.clone(), snap)
            })
            .collect();
        for ((name, key, _), n) in &s.counters {
            if let Some(k) = keys.get_mut(key) {
                match *name {
                    "outbox_events_delivered_total" => k.delivered += n,
                    "outbox_events_retried_total" => k.retried += n,
                    "outbox_events_failed_total" => k.failed += n,
                    _ => {}
                }
            }
        }
        for (key, h) in &s.latency {
            if let Some(k) = keys.get_mut(key) {
                k.latency_counts = h.counts.clone();
                k.latency_total = h.count;
            }
        }
        if s.pending_sampled {
            for k in keys.values_mut() {
                k.pending = Some(0);
            }
            for p in &s.pending {
                if let Some(k) = keys.get_mut(&p.routing_key) {
                    k.pending = Some(p.count);
                }
            }
        }
        let now = std::time::Instant::now();
        let breakers = self
            .breakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(sink, b)| {
                let state = match b.state_at(now) {
                    BreakerState::Closed => "closed",
                    BreakerState::Open => "open",
                    BreakerState::HalfOpen => "half-open",
                };
                (sink.clone(), state)
            })
            .collect();
        Snapshot { keys, breakers }
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let s = self.state().clone();
        let mut out = String::new();
        let help = |out: &mut String, name: &str, kind: &str, text: &str| {
            let _ = writeln!(out, "# HELP {name} {text}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        help(&mut out, "outbox_up", "gauge", "1 while the worker runs.");
        out.push_str("outbox_up 1\n");
        for (name, text) in [
            (
                "outbox_events_delivered_total",
                "Events delivered (SENT or deleted on success).",
            ),
            (
                "outbox_events_retried_total",
                "Failed attempts scheduled for another try.",
            ),
            ("outbox_events_failed_total", "Events that ended FAILED."),
        ] {
            help(&mut out, name, "counter", text);
            for ((n, key, sink), v) in &s.counters {
                if *n == name {
                    let _ = writeln!(
                        out,
                        "{name}{{routing_key=\"{}\",sink=\"{}\"}} {v}",
                        escape(key),
                        escape(sink)
                    );
                }
            }
        }
        help(
            &mut out,
            "outbox_leases_expired_total",
            "counter",
            "Events taken back by this worker after a lease ran out (a worker died or stalled); the interrupted attempt counts.",
        );
        let _ = writeln!(out, "outbox_leases_expired_total {}", s.leases_expired);
        for (name, help_text, value) in [
            (
                "outbox_claims_total",
                "Claim statements run, whether they found events or not.",
                s.claims,
            ),
            (
                "outbox_policy_reads_total",
                "Reads of the retry-policy table.",
                s.policy_reads,
            ),
            (
                "outbox_notifications_total",
                "Database notifications received (new events, policy edits); wake-ups are coalesced, so a flood of them costs few claims.",
                s.notifications,
            ),
        ] {
            help(&mut out, name, "counter", help_text);
            let _ = writeln!(out, "{name} {value}");
        }
        help(
            &mut out,
            "outbox_delivery_latency_seconds",
            "histogram",
            "From occurredAt to SENT.",
        );
        for (key, h) in &s.latency {
            h.render(
                &mut out,
                "outbox_delivery_latency_seconds",
                &format!("routing_key=\"{}\"", escape(key)),
            );
        }
        help(
            &mut out,
            "outbox_sink_request_duration_seconds",
            "histogram",
            "How long each sink call took.",
        );
        for (sink, h) in &s.sink_duration {
            h.render(
                &mut out,
                "outbox_sink_request_duration_seconds",
                &format!("sink=\"{}\"", escape(sink)),
            );
        }
        help(
            &mut out,
            "outbox_claim_batch_size",
            "histogram",
            "Events per claim round.",
        );
        if let Some(h) = &s.claim_batch {
            h.render(&mut out, "outbox_claim_batch_size", "");
        }
        if s.pending_sampled {
            help(
                &mut out,
                "outbox_pending_events",
                "gauge",
                "PENDING events per routingKey (sampled every few seconds).",
            );
            for p in &s.pending {
                let _ = writeln!(
                    out,
                    "outbox_pending_events{{routing_key=\"{}\"}} {}",
                    escape(&p.routing_key),
                    p.count
                );
            }
            help(
                &mut out,
                "outbox_oldest_pending_age_seconds",
                "gauge",
                "Age of the oldest PENDING event per routingKey (sampled).",
            );
            for p in &s.pending {
                let _ = writeln!(
                    out,
                    "outbox_oldest_pending_age_seconds{{routing_key=\"{}\"}} {}",
                    escape(&p.routing_key),
                    p.oldest_age.as_secs_f64()
                );
            }
        }
        help(
            &mut out,
            "outbox_circuit_breaker_state",
            "gauge",
            "Per sink: 0 closed, 1 open, 2 half-open.",
        );
        let now = std::time::Instant::now();
        for (sink, b) in self
            .breakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let v = match b.state_at(now) {
                BreakerState::Closed => 0,
                BreakerState::Open => 1,
                BreakerState::HalfOpen => 2,
            };
            let _ = writeln!(
                out,
                "outbox_circuit_breaker_state{{sink=\"{}\"}} {v}",
                escape(sink)
            );
        }
        out
    }
}

/// How often the PENDING backlog is counted for the gauges.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Counts the PENDING backlog every [`SAMPLE_EVERY`] (not on every scrape) until cancelled.
pub(crate) async fn sample_pending(
    store: Arc<dyn outbox_core::Store>,
    metrics: Arc<Metrics>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        match store.pending_summary().await {
            Ok(rows) => metrics.set_pending(
                rows.into_iter()
                    .map(|(routing_key, count, age)| PendingSample {
                        routing_key,
                        count,
                        oldest_age: Duration::try_from_secs_f64(age).unwrap_or_default(),
                    })
                    .collect(),
            ),
            Err(e) => tracing::debug!(error = %e, "Cannot sample the PENDING backlog"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_histograms_and_labels_render_in_the_text_format() {
        let m = Metrics::new();
        let b = Arc::new(Breaker::new(outbox_core::BreakerSettings::default()));
        m.register("audit", "api", &b);
        m.observe(
            Counted::Delivered,
            "audit",
            "api",
            Some(Duration::from_millis(2)),
            Some(Duration::from_millis(3)),
        );
        m.observe(Counted::Delivered, "audit", "api", None, None);
        m.observe(Counted::Failed, "stray \"key\"", "api", None, None);
        m.claim_batch(7);
        m.leases_expired(1);
        m.leases_expired(2);
        let pending = |key: &str, count, secs| PendingSample {
            routing_key: key.into(),
            count,
            oldest_age: Duration::from_secs(secs),
        };
        m.set_pending(vec![
            pending("audit", 4, 2),
            pending("typo.one", 1, 5),
            pending("typo.two", 2, 9),
        ]);
        let text = m.render();
        assert!(!text.contains("typo."), "{text}");
        for line in [
            "outbox_up 1",
            "outbox_events_delivered_total{routing_key=\"audit\",sink=\"api\"} 2",
            "outbox_events_failed_total{routing_key=\"(unrouted)\",sink=\"api\"} 1",
            "outbox_delivery_latency_seconds_bucket{routing_key=\"audit\",le=\"0.0025\"} 0",
            "outbox_delivery_latency_seconds_bucket{routing_key=\"audit\",le=\"0.005\"} 1",
            "outbox_delivery_latency_seconds_count{routing_key=\"audit\"} 1",
            "outbox_sink_request_duration_seconds_count{sink=\"api\"} 1",
            "outbox_claim_batch_size_bucket{le=\"10\"} 1",
            "outbox_claim_batch_size_bucket{le=\"5\"} 0",
            "outbox_claim_batch_size_sum 7",
            "outbox_pending_events{routing_key=\"audit\"} 4",
            "outbox_oldest_pending_age_seconds{routing_key=\"audit\"} 2",
            "outbox_pending_events{routing_key=\"(unrouted)\"} 3",
            "outbox_oldest_pending_age_seconds{routing_key=\"(unrouted)\"} 9",
            "outbox_circuit_breaker_state{sink=\"api\"} 0",
            "outbox_leases_expired_total 3",
            "# TYPE outbox_events_retried_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }
}
