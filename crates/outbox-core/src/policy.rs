//! Retry policies and the pure backoff math. Time and randomness are passed in, so every
//! rule here is tested without sleeping.

use crate::event::OutboxEvent;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The longest `Retry-After` a sink may impose. Longer values are cut to this, so a
/// misbehaving server cannot park an event for a year.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// One row of `"OutboxRetryPolicy"`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The routingKey this row governs.
    pub routing_key: String,
    /// Retries after the first attempt (5 means 6 attempts).
    pub max_retries: i32,
    /// Delay before the first retry, in milliseconds.
    pub retry_interval_ms: i64,
    /// Upper bound of any computed delay, in milliseconds.
    pub max_interval_ms: i64,
    /// Growth factor of the delay per retry.
    pub backoff_multiplier: f64,
    /// Fraction (0..1) of each delay that is randomised.
    pub jitter: f64,
    /// Per-aggregate FIFO delivery.
    pub ordered: bool,
    /// For ordered policies: when an aggregate's head event ends FAILED, keep the
    /// aggregate's later events waiting (instead of letting the next one go ahead) until an
    /// operator replays or discards the failed one.
    pub block_on_failure: bool,
    /// A paused policy leaves its events PENDING.
    pub paused: bool,
}

impl RetryPolicy {
    /// What makes this row unusable, naming the column: a negative count or interval, a
    /// backoffMultiplier that is not a finite number of at least 1, a jitter outside 0..1.
    /// A policy with such a value would collapse or explode every delay, so the worker does
    /// not use it (its events wait) and `outbox doctor` names it.
    pub fn problem(&self) -> Option<String> {
        if self.max_retries < 0 {
            return Some(format!("maxRetries is {}; use 0 or more", self.max_retries));
        }
        // Milliseconds as the worker's own schema stores them (an integer): at most ~24.8
        // days, so every nextRetryAt stays a time the database can store.
        let ms_range = 0..=i64::from(i32::MAX);
        if !ms_range.contains(&self.retry_interval_ms) {
            return Some(format!(
                "retryInterval is {}; use 0 to {} milliseconds",
                self.retry_interval_ms,
                i32::MAX
            ));
        }
        if !ms_range.contains(&self.max_interval_ms) {
            return Some(format!(
                "maxInterval is {}; use 0 to {} milliseconds",
                self.max_interval_ms,
                i32::MAX
            ));
        }
        if !(self.backoff_multiplier.is_finite() && self.backoff_multiplier >= 1.0) {
            return Some(format!(
                "backoffMultiplier is {}; use a number of at least 1",
                self.backoff_multiplier
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Some(format!(
                "jitter is {}; use a fraction from 0 to 1",
                self.jitter
            ));
        }
        None
    }

    /// Whether a FAILED event of this policy holds its aggregate back.
    pub fn blocks_on_failure(&self) -> bool {
        self.ordered && self.block_on_failure
    }

    /// The settings that apply to `event`: its own overrides where set, else this policy's.
    pub fn settings_for(&self, event: &OutboxEvent) -> RetrySettings {
        RetrySettings {
            max_retries: event.max_retries.unwrap_or(self.max_retries),
            retry_interval_ms: event
                .retry_interval
                .map(i64::from)
                .unwrap_or(self.retry_interval_ms),
            max_interval_ms: event
                .max_interval
                .map(i64::from)
                .unwrap_or(self.max_interval_ms),
            backoff_multiplier: self.backoff_multiplier,
            jitter: self.jitter,
        }
    }
}

/// The effective retry settings of one event (policy merged with the event's overrides).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySettings {
    /// Retries allowed after the first attempt.
    pub max_retries: i32,
    /// First delay, milliseconds.
    pub retry_interval_ms: i64,
    /// Cap on the delay, milliseconds.
    pub max_interval_ms: i64,
    /// Growth factor.
    pub backoff_multiplier: f64,
    /// Randomised fraction of the delay, 0..1.
    pub jitter: f64,
}

/// What to do with an event after a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Back to PENDING with this retryCount, not before `delay` from now.
    Retry {
        /// The new retryCount (old + 1).
        retry_count: i32,
        /// How long to wait, measured from the moment the failure is recorded.
        delay: Duration,
    },
    /// Retries exhausted: FAILED.
    Fail,
}

impl RetrySettings {
    /// Delay before retry number `retry` (1-based):
    /// `min(retryInterval × multiplier^(retry−1), maxInterval)`, then jitter removes up to
    /// `jitter × delay`, scaled by `jitter_sample` in `[0, 1)`.
    pub fn delay(&self, retry: i32, jitter_sample: f64) -> Duration {
        let interval = self.retry_interval_ms.max(0) as f64;
        let cap = self.max_interval_ms.max(0) as f64;
        let exponent = retry.saturating_sub(1).max(0);
        // A multiplier that is not a number never shortens a delay: it counts as "grows
        // without bound", so the delay is the cap (f64::max would turn NaN into 0).
        let multiplier = if self.backoff_multiplier.is_nan() {
            f64::INFINITY
        } else {
            self.backoff_multiplier.max(0.0)
        };
        let growth = multiplier.powi(exponent);
        let mut ms = (interval * growth).min(cap);
        if !ms.is_finite() {
            ms = cap;
        }
        // Likewise a jitter that is not a number randomises nothing.
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        if jitter > 0.0 {
            ms -= ms * jitter * jitter_sample.clamp(0.0, 1.0);
        }
        Duration::from_micros((ms * 1000.0).round().max(0.0) as u64)
    }

    /// Decision after a retryable failure of an event whose retryCount is `retry_count`.
    /// `retry_after` (from the sink) wins when it is longer than the computed delay.
    pub fn decide(
        &self,
        retry_count: i32,
        retry_after: Option<Duration>,
        jitter_sample: f64,
    ) -> Decision {
        if retry_count >= self.max_retries {
            return Decision::Fail;
        }
        let next = retry_count.saturating_add(1);
        let mut delay = self.delay(next, jitter_sample);
        if let Some(after) = retry_after {
            delay = delay.max(after.min(MAX_RETRY_AFTER));
        }
        Decision::Retry {
            retry_count: next,
            delay,
        }
    }

    /// `nextRetryAt` for retry number `retry` when the failure is recorded at `now`.
    pub fn next_retry_at(
        &self,
        retry: i32,
        now: DateTime<Utc>,
        jitter_sample: f64,
    ) -> DateTime<Utc> {
        let delay = self.delay(retry, jitter_sample);
        now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn settings(
        max_retries: i32,
        interval: i64,
        cap: i64,
        mult: f64,
        jitter: f64,
    ) -> RetrySettings {
        RetrySettings {
            max_retries,
            retry_interval_ms: interval,
            max_interval_ms: cap,
            backoff_multiplier: mult,
            jitter,
        }
    }

    fn event() -> OutboxEvent {
        OutboxEvent {
            id: "e".into(),
            event_name: "n".into(),
            event_type: "t".into(),
            aggregate_id: "a".into(),
            routing_key: "k".into(),
            payload: serde_json::json!({}).into(),
            headers: None,
            occurred_at: Utc.timestamp_opt(0, 0).unwrap(),
            retry_count: 0,
            max_retries: None,
            retry_interval: None,
            max_interval: None,
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            routing_key: "k".into(),
            max_retries: 5,
            retry_interval_ms: 5000,
            max_interval_ms: 60_000,
            backoff_multiplier: 2.0,
            jitter: 0.0,
            ordered: false,
            block_on_failure: false,
            paused: false,
        }
    }

    #[test]
    fn delays_grow_exponentially_and_stop_at_the_cap() {
        let s = settings(10, 5000, 60_000, 2.0, 0.0);
        let got: Vec<u128> = (1..=6).map(|n| s.delay(n, 0.0).as_millis()).collect();
        assert_eq!(got, vec![5000, 10_000, 20_000, 40_000, 60_000, 60_000]);
    }

    #[test]
    fn multiplier_one_gives_a_constant_delay() {
        let s = settings(3, 250, 10_000, 1.0, 0.0);
        for n in 1..=3 {
            assert_eq!(s.delay(n, 0.9).as_millis(), 250);
        }
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        let s = settings(i32::MAX, 1000, 30_000, 10.0, 0.0);
        assert_eq!(s.delay(i32::MAX, 0.0).as_millis(), 30_000);
        assert_eq!(s.delay(5000, 0.0).as_millis(), 30_000);
    }

    #[test]
    fn jitter_removes_at_most_its_fraction() {
        let s = settings(3, 1000, 60_000, 2.0, 0.5);
        assert_eq!(s.delay(1, 0.0).as_millis(), 1000);
        assert_eq!(s.delay(1, 0.5).as_millis(), 750);
        assert_eq!(s.delay(2, 0.999_999).as_millis(), 1000);
    }

    #[test]
    fn max_retries_five_means_six_attempts() {
        let s = settings(5, 100, 1000, 2.0, 0.0);
        let mut rc = 0;
        let mut attempts = 1;
        while let Decision::Retry { retry_count, .. } = s.decide(rc, None, 0.0) {
            rc = retry_count;
            attempts += 1;
        }
        assert_eq!(attempts, 6);
        assert_eq!(rc, 5);
    }

    #[test]
    fn zero_retries_fails_on_the_first_failure() {
        assert_eq!(
            settings(0, 100, 100, 2.0, 0.0).decide(0, None, 0.0),
            Decision::Fail
        );
    }

    #[test]
    fn retry_after_wins_only_when_longer() {
        let s = settings(3, 1000, 60_000, 2.0, 0.0);
        let longer = s.decide(0, Some(Duration::from_secs(7)), 0.0);
        assert_eq!(
            longer,
            Decision::Retry {
                retry_count: 1,
                delay: Duration::from_secs(7)
            }
        );
        let shorter = s.decide(0, Some(Duration::from_millis(10)), 0.0);
        assert_eq!(
            shorter,
            Decision::Retry {
                retry_count: 1,
                delay: Duration::from_secs(1)
            }
        );
        let absurd = s.decide(0, Some(Duration::from_secs(10 * 365 * 86_400)), 0.0);
        assert_eq!(
            absurd,
            Decision::Retry {
                retry_count: 1,
                delay: MAX_RETRY_AFTER
            }
        );
    }

    #[test]
    fn next_retry_at_is_now_plus_the_delay() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let s = settings(5, 5000, 60_000, 2.0, 0.0);
        assert_eq!(
            s.next_retry_at(1, now, 0.0),
            now + chrono::Duration::seconds(5)
        );
        assert_eq!(
            s.next_retry_at(3, now, 0.0),
            now + chrono::Duration::seconds(20)
        );
        assert_eq!(
            s.next_retry_at(9, now, 0.0),
            now + chrono::Duration::seconds(60)
        );
    }

    #[test]
    fn event_overrides_take_precedence_over_the_policy() {
        let p = policy();
        let mut e = event();
        assert_eq!(p.settings_for(&e).max_retries, 5);
        e.max_retries = Some(1);
        e.retry_interval = Some(200);
        e.max_interval = Some(300);
        let s = p.settings_for(&e);
        assert_eq!(
            (s.max_retries, s.retry_interval_ms, s.max_interval_ms),
            (1, 200, 300)
        );
        assert_eq!(s.delay(2, 0.0).as_millis(), 300);
        // Multiplier and jitter always come from the policy.
        assert_eq!(s.backoff_multiplier, 2.0);
    }

    #[test]
    fn the_seed_example_backs_off_from_five_seconds() {
        // The seed's INSERT sets maxRetries=5, retryInterval=5000 on the event itself.
        let mut e = event();
        e.max_retries = Some(5);
        e.retry_interval = Some(5000);
        let s = policy().settings_for(&e);
        let delays: Vec<u64> = (0..5)
            .map(|rc| match s.decide(rc, None, 0.0) {
                Decision::Retry { delay, .. } => delay.as_secs(),
                Decision::Fail => panic!("retry {rc} should be allowed"),
            })
            .collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 60]);
        assert_eq!(s.decide(5, None, 0.0), Decision::Fail);
    }

    #[test]
    fn a_multiplier_or_jitter_that_is_not_a_number_never_collapses_the_delay() {
        let nan = settings(5, 1000, 60_000, f64::NAN, 0.0);
        assert_eq!(nan.delay(1, 0.5).as_millis(), 1000);
        assert_eq!(nan.delay(2, 0.5).as_millis(), 60_000);
        let nan_jitter = settings(5, 1000, 60_000, 2.0, f64::NAN);
        assert_eq!(nan_jitter.delay(2, 0.9).as_millis(), 2000);
    }

    #[test]
    fn unusable_policy_values_are_named() {
        assert_eq!(policy().problem(), None);
        let with = |f: &dyn Fn(&mut RetryPolicy)| {
            let mut p = policy();
            f(&mut p);
            p.problem().unwrap_or_default()
        };
        assert!(with(&|p| p.backoff_multiplier = f64::NAN).starts_with("backoffMultiplier is NaN"));
        assert!(with(&|p| p.backoff_multiplier = f64::INFINITY).contains("backoffMultiplier"));
        assert!(with(&|p| p.backoff_multiplier = 0.5).contains("at least 1"));
        assert!(with(&|p| p.jitter = f64::NAN).starts_with("jitter is NaN"));
        assert!(with(&|p| p.jitter = 1.5).starts_with("jitter"));
        assert!(with(&|p| p.max_retries = -1).starts_with("maxRetries"));
        assert!(with(&|p| p.retry_interval_ms = -5).starts_with("retryInterval"));
        assert!(with(&|p| p.max_interval_ms = -5).starts_with("maxInterval"));
        assert!(with(&|p| p.max_interval_ms = 1 << 40).starts_with("maxInterval"));
    }
}
