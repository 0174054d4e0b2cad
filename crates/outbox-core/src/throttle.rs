//! At most one of something per interval — a log line, a call for help, a diagnosis —
//! counting the ones left out. Lock-free, so it can sit on the delivery path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lets one call through per `every`; the others are counted and refused.
#[derive(Debug)]
pub struct Throttle {
    every_ms: u64,
    /// Milliseconds since `start` when a call last went through (`u64::MAX`: never).
    last: AtomicU64,
    /// Calls refused since.
    skipped: AtomicU64,
    start: OnceLock<Instant>,
}

impl Throttle {
    /// A throttle letting one call through per `every` (the first at once).
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every_ms: every.as_millis() as u64,
            last: AtomicU64::new(u64::MAX),
            skipped: AtomicU64::new(0),
            start: OnceLock::new(),
        }
    }

    /// `Some(calls refused since the last one through)` when this call may go through.
    pub fn allow(&self) -> Option<u64> {
        let now = self.start.get_or_init(Instant::now).elapsed().as_millis() as u64;
        self.allow_at(now)
    }

    /// [`Throttle::allow`] at `now` milliseconds.
    fn allow_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Relaxed);
        if last != u64::MAX && now.saturating_sub(last) < self.every_ms {
            self.skipped.fetch_add(1, Relaxed);
            return None;
        }
        if self
            .last
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_err()
        {
            self.skipped.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.skipped.swap(0, Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_per_interval_and_the_others_counted() {
        let t = Throttle::new(Duration::from_secs(1));
        assert_eq!(t.allow_at(0), Some(0));
        assert_eq!(t.allow_at(500), None);
        assert_eq!(t.allow_at(999), None);
        assert_eq!(t.allow_at(1000), Some(2));
        assert_eq!(t.allow_at(1200), None);
        assert_eq!(t.allow_at(5000), Some(1));
    }
}
