//! Keeps a LISTEN connection open and turns notifications into wake-ups. When the
//! connection breaks the worker keeps polling and the listener reconnects with backoff.

use crate::backoff::Backoff;
use crate::policies::Policies;
use outbox_core::{Notification, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub(crate) async fn run(
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    arrivals: Arc<AtomicBool>,
    policies: Arc<Policies>,
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
                backoff.reset();
                // Anything inserted while we were not listening is found by this claim.
                arrivals.store(true, Ordering::Relaxed);
                wake.notify_one();
                policies.changed.notify_one();
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        n = stream.next() => {
                            if let (Some(m), Some(_)) = (&metrics, &n) {
                                m.notified();
                            }
                            match n {
                            Some(Notification::Events) => {
                                arrivals.store(true, Ordering::Relaxed);
                                wake.notify_one();
                            }
                            Some(Notification::Policies) => policies.changed.notify_one(),
                            None => break,
                        }}
                    }
                }
                tracing::warn!("LISTEN connection lost; polling until it is back");
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
