//! The last hour of the relay's own figures, kept in memory: one point every
//! [`INTERVAL`] per routingKey (backlog, delivered/s, failed/s, latency p50/p95). Nothing is
//! written anywhere: a restart starts an empty history.

use outbox_core::Backend;
use outbox_worker::{Metrics, Snapshot};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Time between two points.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Points kept: one hour.
pub const POINTS: usize = 360;

/// One routingKey at one point; `None` where nothing was measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyPoint {
    pub backlog: Option<i64>,
    pub delivered: Option<f64>,
    pub failed: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
}

#[derive(Debug, Default)]
struct Ring {
    /// (epoch ms, per key).
    points: VecDeque<(i64, BTreeMap<String, KeyPoint>)>,
}

/// The history, shared between the sampler and the API.
#[derive(Debug, Default)]
pub struct History {
    ring: Mutex<Ring>,
}

/// `/api/history`: parallel arrays per key.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    pub interval_seconds: u64,
    pub times: Vec<i64>,
    pub keys: BTreeMap<String, KeySeries>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct KeySeries {
    pub backlog: Vec<Option<i64>>,
    pub delivered: Vec<Option<f64>>,
    pub failed: Vec<Option<f64>>,
    pub p50: Vec<Option<f64>>,
    pub p95: Vec<Option<f64>>,
}

impl History {
    pub fn new() -> Arc<History> {
        Arc::new(History::default())
    }

    /// Adds a point taken at `at` (epoch ms), dropping the oldest past [`POINTS`].
    pub fn push(&self, at: i64, keys: BTreeMap<String, KeyPoint>) {
        let mut r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        r.points.push_back((at, keys));
        while r.points.len() > POINTS {
            r.points.pop_front();
        }
    }

    /// Everything kept, as series; a key missing at a point has nulls there.
    pub fn series(&self) -> Series {
        let r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let names: std::collections::BTreeSet<&String> =
            r.points.iter().flat_map(|(_, k)| k.keys()).collect();
        let mut keys: BTreeMap<String, KeySeries> = BTreeMap::new();
        for name in names {
            let mut s = KeySeries::default();
            for (_, point) in &r.points {
                let p = point.get(name).cloned().unwrap_or_default();
                s.backlog.push(p.backlog);
                s.delivered.push(p.delivered);
                s.failed.push(p.failed);
                s.p50.push(p.p50);
                s.p95.push(p.p95);
            }
            keys.insert(name.clone(), s);
        }
        Series {
            interval_seconds: INTERVAL.as_secs(),
            times: r.points.iter().map(|(t, _)| *t).collect(),
            keys,
        }
    }
}

/// One cumulative latency histogram: the counts at or under each bound, and the total.
pub struct Cumulative<'a> {
    pub counts: &'a [u64],
    pub total: u64,
}

/// The `q` quantile of the latencies observed between two cumulative histograms (upper
/// bounds `bounds`), interpolated inside its bucket, or the last bound when it lies past
/// it; `None` when nothing was observed between.
pub fn quantile(bounds: &[f64], before: &Cumulative, now: &Cumulative, q: f64) -> Option<f64> {
    let counts: Vec<u64> = now
        .counts
        .iter()
        .enumerate()
        .map(|(i, n)| n.saturating_sub(before.counts.get(i).copied().unwrap_or(0)))
        .collect();
    let total = now.total.saturating_sub(before.total);
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower_bound = 0.0;
    let mut lower_count = 0u64;
    for (b, c) in bounds.iter().zip(&counts) {
        if *c as f64 >= rank {
            let inside = (*c - lower_count) as f64;
            let share = if inside > 0.0 {
                (rank - lower_count as f64) / inside
            } else {
                1.0
            };
            return Some(lower_bound + (b - lower_bound) * share.clamp(0.0, 1.0));
        }
        lower_bound = *b;
        lower_count = *c;
    }
    // Beyond the last bound: say the last bound.
    bounds.last().copied()
}

/// One point from two metric snapshots `secs` apart.
fn from_metrics(before: &Snapshot, now: &Snapshot, secs: f64) -> BTreeMap<String, KeyPoint> {
    now.keys
        .iter()
        .map(|(key, k)| {
            let b = before.keys.get(key);
            let rate = |now: u64, then: Option<u64>| {
                Some(now.saturating_sub(then.unwrap_or(0)) as f64 / secs)
            };
            let then = Cumulative {
                counts: b.map_or(&[][..], |b| &b.latency_counts),
                total: b.map_or(0, |b| b.latency_total),
            };
            let now = Cumulative {
                counts: &k.latency_counts,
                total: k.latency_total,
            };
            let point = KeyPoint {
                backlog: k.pending,
                delivered: rate(k.delivered, b.map(|b| b.delivered)),
                failed: rate(k.failed, b.map(|b| b.failed)),
                p50: quantile(k.latency_bounds, &then, &now, 0.5),
                p95: quantile(k.latency_bounds, &then, &now, 0.95),
            };
            (key.clone(), point)
        })
        .collect()
}

/// Without a worker in this process: backlog and failed/s from the store's counts (and
/// delivered/s from SENT counts while they are exact); no latencies.
fn from_counts(
    before: &BTreeMap<String, outbox_core::KeyStats>,
    now: &[outbox_core::KeyStats],
    sent_exact: bool,
    secs: f64,
) -> BTreeMap<String, KeyPoint> {
    now.iter()
        .map(|k| {
            let b = before.get(&k.routing_key);
            let rate = |now: i64, then: Option<i64>| then.map(|t| (now - t).max(0) as f64 / secs);
            let point = KeyPoint {
                backlog: Some(k.pending),
                delivered: if sent_exact {
                    rate(k.sent, b.map(|b| b.sent))
                } else {
                    None
                },
                failed: rate(k.failed, b.map(|b| b.failed)),
                p50: None,
                p95: None,
            };
            (k.routing_key.clone(), point)
        })
        .collect()
}

/// Samples every [`INTERVAL`] until the process ends: from `metrics` when a worker runs
/// here, else from the store's counts (bounded by `timeout`; a slow count skips a point).
pub async fn sample(
    history: Arc<History>,
    metrics: Option<Arc<Metrics>>,
    store: Arc<dyn Backend>,
    exact_counts_up_to: i64,
    timeout: Duration,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_metrics: Option<(Snapshot, std::time::Instant)> = None;
    let mut last_counts: BTreeMap<String, outbox_core::KeyStats> = BTreeMap::new();
    let mut last_exact = false;
    let mut last_at: Option<std::time::Instant> = None;
    loop {
        tick.tick().await;
        let at = chrono::Utc::now().timestamp_millis();
        let now = std::time::Instant::now();
        if let Some(m) = &metrics {
            let snap = m.snapshot();
            if let Some((before, then)) = &last_metrics {
                let secs = now.duration_since(*then).as_secs_f64().max(0.001);
                history.push(at, from_metrics(before, &snap, secs));
            }
            last_metrics = Some((snap, now));
            continue;
        }
        let counted = tokio::time::timeout(timeout, async {
            let exact = match store.estimated_rows().await? {
                Some(n) => n <= exact_counts_up_to,
                None => true,
            };
            Ok::<_, outbox_core::StoreError>((store.stats(exact).await?, exact))
        })
        .await;
        let Ok(Ok((stats, exact))) = counted else {
            continue;
        };
        if let Some(then) = last_at {
            let secs = now.duration_since(then).as_secs_f64().max(0.001);
            // A rate of SENT rows needs both counts exact (an estimate counts none).
            history.push(
                at,
                from_counts(&last_counts, &stats, exact && last_exact, secs),
            );
        }
        last_exact = exact;
        last_counts = stats
            .into_iter()
            .map(|k| (k.routing_key.clone(), k))
            .collect();
        last_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket_of_the_difference() {
        let bounds = [0.01, 0.1, 1.0];
        let at = |counts: &'static [u64], total| Cumulative { counts, total };
        // Before: 10 fast ones. Now: 10 more fast ones and 10 between 0.1 s and 1 s.
        let before = at(&[10, 10, 10], 10);
        let now = at(&[20, 20, 30], 30);
        let p50 = quantile(&bounds, &before, &now, 0.5).unwrap();
        assert!((p50 - 0.01).abs() < 1e-9, "{p50}");
        let p95 = quantile(&bounds, &before, &now, 0.95).unwrap();
        assert!(p95 > 0.1 && p95 < 1.0, "{p95}");
        assert_eq!(quantile(&bounds, &now, &now, 0.5), None);
        // Latencies past the last bound (a backlog drained after a long outage) count.
        let late = at(&[20, 20, 30], 50);
        assert_eq!(quantile(&bounds, &now, &late, 0.5), Some(1.0));
        let mixed = at(&[30, 30, 40], 50);
        assert_eq!(quantile(&bounds, &now, &mixed, 0.95), Some(1.0));
    }

    #[test]
    fn the_ring_keeps_one_hour_and_fills_gaps_with_nulls() {
        let h = History::default();
        for i in 0..(POINTS as i64 + 5) {
            let mut keys = BTreeMap::new();
            if i % 2 == 0 {
                keys.insert(
                    "a".to_string(),
                    KeyPoint {
                        backlog: Some(i),
                        ..KeyPoint::default()
                    },
                );
            }
            h.push(i, keys);
        }
        let s = h.series();
        assert_eq!(s.times.len(), POINTS);
        assert_eq!(s.times[0], 5);
        let a = &s.keys["a"];
        assert_eq!(a.backlog.len(), POINTS);
        assert_eq!(a.backlog[0], None);
        assert_eq!(a.backlog[1], Some(6));
    }
}
