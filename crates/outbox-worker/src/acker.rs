//! Writes completions in batches: whatever has arrived since the last write goes in one
//! fenced statement. A failed write is retried with backoff; completions are never
//! dropped while the worker runs.

use crate::backoff::Backoff;
use outbox_core::{Completion, CompletionAction, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::Notify;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

/// A completion on its way to the database, with the delivery slot its event holds: the
/// slot is freed only once the result is written, so a worker never holds more than
/// `concurrency` events in PROCESSING, however slow the writes get.
pub(crate) struct Ack {
    pub(crate) completion: Completion,
    pub(crate) slot: Option<OwnedSemaphorePermit>,
    /// Once written, the claimer should look again — at once, and when the event's retry is
    /// due: an ordered aggregate's head has finished (its next event may go) or been put
    /// back, which the claimer's idle look-up (leaving ordered keys out) would not notice.
    pub(crate) wake: bool,
}

/// Most completions written by one statement.
const MAX_BATCH: usize = 1000;

/// Runs until every sender is dropped. `stopping` is cancelled when the worker stops;
/// from then on a write that keeps failing is abandoned after `give_up_after` (the leases
/// expire and the events are delivered again).
pub(crate) async fn run(
    store: Arc<dyn Store>,
    mut rx: UnboundedReceiver<Ack>,
    wake: Arc<Notify>,
    arrivals: Arc<AtomicBool>,
    stopping: CancellationToken,
    give_up_after: Duration,
) {
    let mut batch: Vec<Completion> = Vec::new();
    let mut slots: Vec<OwnedSemaphorePermit> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut wake_now = false;
        // When the earliest retry among the results that wake the claimer is due.
        let mut wake_later: Option<Duration> = None;
        while let Some(ack) = next.take() {
            if ack.wake {
                wake_now = true;
                if let CompletionAction::Retry { delay, .. } = &ack.completion.action {
                    wake_later = Some(wake_later.map_or(*delay, |d| d.min(*delay)));
                }
            }
            batch.push(ack.completion);
            slots.extend(ack.slot);
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        write(&*store, &batch, &stopping, give_up_after).await;
        // Retries and releases make events due again, and a finished ordered head lets its
        // aggregate's next event go: let the claimer look.
        let requeued = batch.iter().any(|c| {
            matches!(
                c.action,
                CompletionAction::Retry { .. } | CompletionAction::Release { .. }
            )
        });
        if requeued {
            arrivals.store(true, Ordering::Relaxed);
        }
        if wake_now || requeued {
            wake.notify_one();
        }
        // The claimer's idle look-up leaves ordered keys out (their due rows may all be
        // waiting behind their heads), so wake it when this retry is due.
        if let Some(delay) = wake_later {
            let wake = wake.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay + Duration::from_millis(2)).await;
                wake.notify_one();
            });
        }
        batch.clear();
        slots.clear();
    }
}

async fn write(
    store: &dyn Store,
    batch: &[Completion],
    stopping: &CancellationToken,
    give_up_after: Duration,
) {
    let mut backoff = Backoff::database();
    let mut split = false;
    let mut stop_seen: Option<Instant> = None;
    loop {
        match store.complete(batch).await {
            Ok(changed) => {
                let stale = batch.len() as u64 - changed.min(batch.len() as u64);
                if stale > 0 {
                    tracing::warn!(stale, "Acks ignored: another worker took over these events after their lease expired");
                }
                if backoff.failures() > 0 {
                    tracing::info!(
                        completions = batch.len(),
                        "Database reachable again; results recorded"
                    );
                }
                return;
            }
            Err(e) if !e.is_unavailable() && !split => {
                // A result the database rejects must not block the others: write them one
                // by one, and let the lease of a rejected one expire.
                split = true;
                tracing::warn!(error = %e, completions = batch.len(), "A result batch was rejected; writing results one by one");
                for c in batch {
                    if let Err(e) = store.complete(std::slice::from_ref(c)).await {
                        if e.is_unavailable() {
                            // Connectivity went away meanwhile: retry the whole batch.
                            split = false;
                            break;
                        }
                        tracing::error!(error = %e, id = %c.id, "Cannot record this event's result; it will be delivered again after its lease expires");
                    }
                }
                if split {
                    return;
                }
            }
            Err(e) => {
                if stopping.is_cancelled() {
                    let since = *stop_seen.get_or_insert_with(Instant::now);
                    if since.elapsed() >= give_up_after {
                        tracing::error!(error = %e, completions = batch.len(), "Could not record results before stopping; these events will be delivered again after their lease expires");
                        return;
                    }
                }
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, completions = batch.len(), retry_in = ?delay, "Could not record delivery results; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}
