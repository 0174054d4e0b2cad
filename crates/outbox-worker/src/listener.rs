//! Keeps a LISTEN connection open and turns notifications into wake-ups. When the
//! connection breaks the worker keeps polling and the listener reconnects with backoff.
//!
//! Of all the workers on one outbox, one listener leads: it alone answers new-event
//! notifications at once, so an insert costs one claim however many workers run. When its
//! claims come back full, or its worker has no room left, it calls the others for help;
//! they claim then, on their poll, and on their own timers. When the leader's connection
//! ends, its place is free and another worker's listener takes it within a poll interval.

use crate::backoff::Backoff;
use crate::policies::Policies;
use outbox_core::{Notification, Store, StoreError, Throttle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a notification stream must have lasted for its loss to count as a fresh
/// failure (the reconnect backoff starts over) rather than one more in a row, when it
/// carried no notification. A stream that carried one was working: its loss is fresh too.
const STABLE: Duration = Duration::from_secs(30);

/// How the claimer and the listener share the leading role.
pub(crate) struct Leadership {
    /// This worker's listener answers new-event notifications.
    pub(crate) leading: AtomicBool,
    /// The claimer has no room for more events right now.
    pub(crate) saturated: AtomicBool,
    /// At most one call for help every 20 ms.
    help: Throttle,
}

impl Default for Leadership {
    fn default() -> Leadership {
        Leadership {
            leading: AtomicBool::new(false),
            saturated: AtomicBool::new(false),
            help: Throttle::new(Duration::from_millis(20)),
        }
    }
}

impl Leadership {
    /// Asks the other workers to claim too, at most once per 20 ms (on a task of its own:
    /// the caller never waits for it).
    pub(crate) fn call_for_help(&self, store: &Arc<dyn Store>) {
        if self.help.allow().is_none() {
            return;
        }
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.call_for_help().await {
                tracing::debug!(error = %e, "Could not call the other workers for help");
            }
        });
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    arrivals: Arc<AtomicBool>,
    policies: Arc<Policies>,
    leadership: Arc<Leadership>,
    retry_lead: Duration,
    metrics: Option<Arc<crate::Metrics>>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::database();
    loop {
        let listening = tokio::select! {
            _ = cancel.cancelled() => return,
            r = store.listen() => r,
        };
        match listening {
            Ok(mut stream) => {
                if backoff.failures() > 0 {
                    tracing::info!("LISTEN connection restored");
                }
                let opened = std::time::Instant::now();
                let mut heard = false;
                let mut leads = stream.try_lead().await;
                leadership.leading.store(leads, Ordering::Relaxed);
                tracing::debug!(leads, "Listening for notifications");
                // Anything inserted while we were not listening is found by this claim.
                arrivals.store(true, Ordering::Relaxed);
                wake.notify_one();
                policies.changed.notify_one();
                let mut retry = tokio::time::interval(retry_lead.max(Duration::from_millis(10)));
                retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                retry.tick().await;
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        // A follower tries for the lead once a poll interval: a leader that
                        // died frees it with its connection.
                        _ = retry.tick(), if !leads => {
                            leads = stream.try_lead().await;
                            if leads {
                                tracing::debug!("This worker now answers new-event notifications");
                                leadership.leading.store(true, Ordering::Relaxed);
                                arrivals.store(true, Ordering::Relaxed);
                                wake.notify_one();
                            }
                        }
                        n = stream.next() => {
                            if n.is_some() {
                                heard = true;
                                if let Some(m) = &metrics {
                                    m.notified();
                                }
                            }
                            match n {
                                Some(Notification::Events) => {
                                    arrivals.store(true, Ordering::Relaxed);
                                    if leads {
                                        if leadership.saturated.load(Ordering::Relaxed) {
                                            leadership.call_for_help(&store);
                                        } else {
                                            wake.notify_one();
                                        }
                                    }
                                }
                                Some(Notification::Help) => {
                                    if !leads {
                                        arrivals.store(true, Ordering::Relaxed);
                                        wake.notify_one();
                                    }
                                }
                                Some(Notification::Policies) => policies.changed.notify_one(),
                                None => break,
                            }
                        }
                    }
                }
                // The lead went with the connection.
                leadership.leading.store(false, Ordering::Relaxed);
                // A stream that ends as soon as it opens must not make this loop spin: the
                // backoff starts over only after a stream that worked (it carried a
                // notification, or it lasted). A connection killed again and again while
                // events flow is reopened after the shortest delay each time.
                if heard || opened.elapsed() >= STABLE {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(retry_in = ?delay, "LISTEN connection lost; polling until it is back");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(StoreError::PollOnly) => {
                tracing::info!(
                    "This store has no notifications: new events are found by the poll (worker.poll_interval)"
                );
                return;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                if backoff.failures() <= 1 {
                    tracing::warn!(error = %e, retry_in = ?delay, "Cannot open the LISTEN connection; polling meanwhile");
                } else {
                    tracing::debug!(error = %e, retry_in = ?delay, "LISTEN connection still unavailable");
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
