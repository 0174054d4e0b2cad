//! A circuit breaker per sink: a dead destination is not hammered, and the events waiting for
//! it are not charged attempts while it is open. Closed → (N retryable failures in a row) →
//! open for a cooldown → half-open: one delivery goes through as a probe → closed on success,
//! open again (cooldown doubled, capped) on failure.

use outbox_core::{BreakerSettings, Outcome};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, cooldown: Duration },
    HalfOpen { probing: bool, cooldown: Duration },
}

/// What a breaker is doing, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// Whether one delivery may call the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Call it.
    Go,
    /// Call it: this delivery is the probe of a half-open breaker.
    Probe,
    /// Do not: put the event back, due after this long, without charging an attempt.
    Hold(Duration),
}

#[derive(Debug)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings) -> Breaker {
        Breaker {
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open and still cooling down, or waiting for its probe: claims leave this sink's
    /// routingKeys alone (claiming them would only put them back).
    pub(crate) fn is_open(&self, now: Instant) -> bool {
        match *self.state() {
            State::Open { until, .. } => until > now,
            State::HalfOpen { probing, .. } => probing,
            State::Closed { .. } => false,
        }
    }

    pub(crate) fn state_at(&self, now: Instant) -> BreakerState {
        match *self.state() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until, .. } if until > now => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    pub(crate) fn admit(&self, now: Instant) -> Admit {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Admit::Go,
            State::Open { until, .. } if until > now => Admit::Hold(until - now),
            State::Open { cooldown, .. } => {
                *state = State::HalfOpen {
                    probing: true,
                    cooldown,
                };
                Admit::Probe
            }
            State::HalfOpen { probing: true, .. } => Admit::Hold(Duration::from_secs(1)),
            State::HalfOpen { cooldown, .. } => {
                *state = State::HalfOpen {
                    probing: true,
                    cooldown,
                };
                Admit::Probe
            }
        }
    }

    /// Records how a delivery went. Returns the cooldown when this result opened the breaker.
    pub(crate) fn record(&self, outcome: &Outcome, probe: bool, now: Instant) -> Option<Duration> {
        if self.settings.failures == 0 {
            return None;
        }
        let mut state = self.state();
        if matches!(outcome, Outcome::NotAttempted { .. }) {
            // Nothing reached the destination: no news of it. A probe that was not made
            // leaves the breaker half-open for the next one.
            if let (State::HalfOpen { cooldown, .. }, true) = (*state, probe) {
                *state = State::HalfOpen {
                    probing: false,
                    cooldown,
                };
            }
            return None;
        }
        // Only a retryable failure says the destination is unwell; a rejection is an answer.
        let failed = matches!(outcome, Outcome::Retry { .. });
        match (*state, failed) {
            (State::HalfOpen { cooldown, .. }, true) if probe => {
                let cooldown = (cooldown * 2).min(self.settings.max_cooldown);
                *state = State::Open {
                    until: now + cooldown,
                    cooldown,
                };
                Some(cooldown)
            }
            (State::HalfOpen { .. }, false) if probe => {
                *state = State::Closed { failures: 0 };
                None
            }
            (State::Closed { failures }, true) => {
                let failures = failures + 1;
                if failures >= self.settings.failures {
                    let cooldown = self.settings.cooldown;
                    *state = State::Open {
                        until: now + cooldown,
                        cooldown,
                    };
                    Some(cooldown)
                } else {
                    *state = State::Closed { failures };
                    None
                }
            }
            (State::Closed { .. }, false) => {
                *state = State::Closed { failures: 0 };
                None
            }
            // Deliveries that started before the breaker opened, finishing now.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failures: 3,
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(12),
        }
    }

    #[test]
    fn opens_after_failures_in_a_row_and_probes_after_the_cooldown() {
        let b = Breaker::new(settings());
        let t = Instant::now();
        let fail = Outcome::retry("HTTP 503");
        assert_eq!(b.record(&fail, false, t), None);
        assert_eq!(
            b.record(&Outcome::Delivered, false, t),
            None,
            "a success resets"
        );
        assert_eq!(b.record(&fail, false, t), None);
        assert_eq!(b.record(&Outcome::reject("HTTP 400"), false, t), None);
        assert_eq!(b.record(&fail, false, t), None);
        assert_eq!(b.record(&fail, false, t), None);
        assert_eq!(
            b.record(&fail, false, t),
            Some(Duration::from_secs(5)),
            "third in a row"
        );
        assert!(b.is_open(t + Duration::from_secs(4)));
        assert_eq!(
            b.admit(t + Duration::from_secs(1)),
            Admit::Hold(Duration::from_secs(4))
        );
        // After the cooldown: one probe, the rest held.
        let later = t + Duration::from_secs(5);
        assert!(!b.is_open(later));
        assert_eq!(b.admit(later), Admit::Probe);
        assert!(b.is_open(later), "claims wait for the probe");
        assert_eq!(b.admit(later), Admit::Hold(Duration::from_secs(1)));
        // A failed probe: open twice as long, capped.
        assert_eq!(b.record(&fail, true, later), Some(Duration::from_secs(10)));
        let later = later + Duration::from_secs(10);
        assert_eq!(b.admit(later), Admit::Probe);
        assert_eq!(b.record(&fail, true, later), Some(Duration::from_secs(12)));
        let later = later + Duration::from_secs(12);
        assert_eq!(b.admit(later), Admit::Probe);
        // A good probe closes it.
        assert_eq!(b.record(&Outcome::Delivered, true, later), None);
        assert_eq!(b.admit(later), Admit::Go);
    }

    #[test]
    fn a_breaker_with_zero_failures_never_opens() {
        let b = Breaker::new(BreakerSettings::off());
        let t = Instant::now();
        for _ in 0..100 {
            assert_eq!(b.record(&Outcome::retry("down"), false, t), None);
        }
        assert_eq!(b.admit(t), Admit::Go);
    }
}
