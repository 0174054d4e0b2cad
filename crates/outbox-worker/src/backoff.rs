//! Capped exponential backoff for every loop that can fail (rule of thumb 1).

use std::time::Duration;

/// Doubles from `base` up to `cap`, with up to 20% random reduction so replicas that lost
/// the database together do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// For reconnecting to the database.
    pub(crate) fn database() -> Backoff {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// The delay before the next try; grows with each call until `reset`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        let full = self.base.saturating_mul(factor).min(self.cap);
        let cut: f64 = rand::random::<f64>() * 0.2;
        full.mul_f64(1.0 - cut)
    }

    /// Failures since the last success.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_stays_at_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d[0] <= Duration::from_millis(100) && d[0] >= Duration::from_millis(80));
        assert!(d[1] >= Duration::from_millis(160));
        for x in &d[4..] {
            assert!(*x <= Duration::from_secs(1) && *x >= Duration::from_millis(800));
        }
        assert_eq!(b.failures(), 8);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
