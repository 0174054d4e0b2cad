//! Returns events whose lease ran out (their worker died or stalled) to PENDING. The
//! interrupted delivery counts as an attempt, so an event that keeps killing workers ends
//! FAILED instead of looping forever.

use crate::backoff::Backoff;
use crate::dispatcher::failed_attempt;
use crate::policies::Policies;
use outbox_core::{ClaimedEvent, Completion, CompletionAction, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const REAP_BATCH: usize = 500;

/// How often to look for expired leases: a quarter of the lease, within 250ms..15s.
pub(crate) fn interval_for(lease: Duration) -> Duration {
    (lease / 4).clamp(Duration::from_millis(250), Duration::from_secs(15))
}

/// The completion for one expired lease.
pub(crate) fn decide(c: &ClaimedEvent, policies: &Policies, jitter_sample: f64) -> Completion {
    let e = &c.event;
    let what = format!(
        "lease expired: worker '{}' did not finish attempt {} in time",
        c.lease_owner,
        c.attempt()
    );
    match policies.get(&e.routing_key) {
        Some(p) => failed_attempt(c, &p, what, None, jitter_sample),
        // No policy: the next claim fails it with the right message.
        None => Completion {
            id: e.id.clone(),
            lease_owner: c.lease_owner.clone(),
            retry_count: e.retry_count,
            action: CompletionAction::Retry {
                retry_count: e.retry_count.saturating_add(1),
                delay: Duration::ZERO,
                error: what,
            },
        },
    }
}

pub(crate) async fn run(
    store: Arc<dyn Store>,
    policies: Arc<Policies>,
    lease: Duration,
    metrics: Option<Arc<crate::Metrics>>,
    cancel: CancellationToken,
) {
    let every = interval_for(lease);
    let mut backoff = Backoff::database();
    let mut wait = every;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match reap_once(&*store, &policies).await {
            Ok(n) => {
                backoff.reset();
                wait = every;
                if let (Some(m), true) = (&metrics, n > 0) {
                    m.leases_expired(n);
                }
            }
            Err(e) => {
                // Said at WARN: while the reaper fails, the leases of crashed workers are
                // not taken back. The backoff keeps the lines few.
                wait = backoff.next_delay().max(every);
                tracing::warn!(error = %e, retry_in = ?wait, "Lease reaper could not run; expired leases are not taken back meanwhile");
            }
        }
    }
}

async fn reap_once(store: &dyn Store, policies: &Policies) -> Result<u64, outbox_core::StoreError> {
    let mut total = 0;
    loop {
        let expired = store.expired_leases(REAP_BATCH).await?;
        if expired.is_empty() {
            return Ok(total);
        }
        let completions: Vec<Completion> = expired
            .events
            .iter()
            .map(|x| decide(x, policies, rand::random::<f64>()))
            .collect();
        let mut changed = store.complete(&completions).await?;
        // A row that cannot be read would fail again on every claim: it ends FAILED here
        // (holding its aggregate back where its policy says a failed head does).
        let mut unreadable = expired.unreadable;
        for r in &unreadable {
            tracing::error!(id = %r.id, error = %r.problem, "Event FAILED: the row of an expired lease cannot be read");
        }
        policies.mark_blocking(&mut unreadable);
        changed += store.fail_unreadable(&unreadable).await?;
        total += changed;
        tracing::warn!(events = changed, "Took back events whose lease expired");
        if expired.events.len() + unreadable.len() < REAP_BATCH || changed == 0 {
            return Ok(total);
        }
    }
}
