//! The claim loop: claims as many due events as there are free holding slots, hands each
//! to the dispatcher, and sleeps until a NOTIFY, the next due retry, or the poll interval.
//! It also owns start-up and the orderly stop.

use crate::acker::Ack;
use crate::backoff::Backoff;

use crate::dispatcher::{self, Admission, InFlight};
use crate::metrics::Counted;
use crate::policies::Policies;
use crate::{acker, listener, reaper, Counters, Route, RunSummary, WorkerOptions};
use outbox_core::{ClaimedEvent, Completion, CompletionAction, Store, StoreError, Unreadable};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Shortest idle sleep, so a row that is due but momentarily locked cannot make us spin.
const MIN_IDLE: Duration = Duration::from_millis(5);
/// Wake-ups in a row that may find nothing before a quiet gap opens: two events whose
/// notifications both arrive before one claim takes them leave one empty wake-up behind,
/// which must not delay the next event.
const FREE_EMPTY_WAKES: u32 = 3;
/// The quiet gap after more wake-ups that found nothing doubles from this...
const WAKE_GAP_BASE: Duration = Duration::from_millis(1);
/// ...up to this: the most a real event waits behind a flood of empty notifications.
const MAX_WAKE_GAP: Duration = Duration::from_millis(100);

/// What one claim round got.
#[derive(Default)]
struct Round {
    claimed: Vec<ClaimedEvent>,
    /// Leased rows that could not be read: recorded FAILED, never delivered.
    unreadable: Vec<Unreadable>,
    /// A claim came back full: more is waiting.
    full: bool,
    /// A claim failed (what was claimed before it is still dispatched).
    error: Option<StoreError>,
    /// The lease token of the heads' claim.
    head_token: Option<String>,
    /// How many the unordered claim found, when it ran.
    unordered: Option<usize>,
}

/// The policy facts a claim round needs.
struct ClaimKeys {
    paused: Vec<String>,
    ordered: Vec<String>,
    /// Keys the unordered claim leaves alone: paused ones, and ordered ones (claimed head
    /// by head).
    skipped: Vec<String>,
}

struct Claimer {
    store: Arc<dyn Store>,
    routes: HashMap<String, Route>,
    options: WorkerOptions,
    owner: String,
    policies: Arc<Policies>,
    /// Events this worker holds (PROCESSING, delivering or awaiting their write):
    /// `concurrency + 2 × batch_size`, so the next batch is claimed while the last one's
    /// results are written.
    slots: Arc<Semaphore>,
    /// Deliveries running at once: `concurrency`.
    deliveries_allowed: Arc<Semaphore>,
    /// How many slots there are in all.
    slot_count: usize,
    wake: Arc<Notify>,
    /// Set when something unordered may have become claimable: new events (NOTIFY, or the
    /// listener reconnecting), or results that put events back to PENDING.
    arrivals: Arc<AtomicBool>,
    acks: UnboundedSender<Ack>,
    counters: Arc<Counters>,
    deliveries: JoinSet<()>,
    /// Whether this worker answers new-event notifications (see `listener`).
    leadership: Arc<listener::Leadership>,
}

pub(crate) async fn run<F>(
    store: Arc<dyn Store>,
    routes: HashMap<String, Route>,
    options: WorkerOptions,
    owner: String,
    shutdown: F,
) -> RunSummary
where
    F: Future<Output = ()> + Send,
{
    let cancel = CancellationToken::new();
    let stopping = CancellationToken::new();
    let policies = Arc::new(Policies::new(store.clone(), options.metrics.clone()));
    let wake = Arc::new(Notify::new());
    let arrivals = Arc::new(AtomicBool::new(true));
    let counters = Arc::new(Counters {
        metrics: options.metrics.clone(),
        ..Counters::default()
    });
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();

    match policies.refresh().await {
        Ok(()) => warn_about_mismatches(&routes, &policies),
        Err(e) => {
            tracing::warn!(error = %e, "Could not read OutboxRetryPolicy at start; will keep trying")
        }
    }

    let mut background = JoinSet::new();
    let leadership = Arc::new(listener::Leadership::default());
    background.spawn(listener::run(
        store.clone(),
        wake.clone(),
        arrivals.clone(),
        policies.clone(),
        leadership.clone(),
        // A follower takes a dead leader's place within a second, whatever the poll.
        options.poll_interval.min(Duration::from_secs(1)),
        options.metrics.clone(),
        cancel.clone(),
    ));
    background.spawn(
        policies
            .clone()
            .refresh_loop(options.policy_refresh, cancel.clone()),
    );
    background.spawn(crate::retention::run(
        store.clone(),
        options.retention.clone(),
        cancel.clone(),
    ));
    if let Some(m) = &options.metrics {
        background.spawn(crate::metrics::sample_pending(
            store.clone(),
            m.clone(),
            cancel.clone(),
        ));
    }
    background.spawn(reaper::run(
        store.clone(),
        policies.clone(),
        options.lease,
        options.metrics.clone(),
        cancel.clone(),
    ));
    let acker = tokio::spawn(acker::run(
        store.clone(),
        ack_rx,
        wake.clone(),
        arrivals.clone(),
        stopping.clone(),
        options.shutdown_timeout.max(Duration::from_secs(5)),
    ));

    let slot_count = options.concurrency.max(1) + 2 * options.batch_size.max(1);
    let mut claimer = Claimer {
        slots: Arc::new(Semaphore::new(slot_count)),
        slot_count,
        deliveries_allowed: Arc::new(Semaphore::new(options.concurrency.max(1))),
        store,
        routes,
        owner,
        policies,
        wake,
        arrivals,
        acks: ack_tx,
        counters: counters.clone(),
        deliveries: JoinSet::new(),
        leadership,
        options,
    };
    tracing::info!(worker_id = %claimer.owner, "🚀 OutboxWorker started.");

    // The loop is never dropped mid-claim (rows could be left PROCESSING); it notices the
    // cancellation at its own safe points.
    let trigger = async {
        shutdown.await;
        cancel.cancel();
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = claimer.claim_loop(cancel.clone()) => {}
        _ = trigger => {}
    }
    cancel.cancel();
    stopping.cancel();
    // Finished deliveries not yet reaped are not in flight.
    while claimer.deliveries.try_join_next().is_some() {}
    tracing::info!(
        in_flight = claimer.deliveries.len(),
        "Stopping: no new claims; waiting for in-flight deliveries"
    );
    claimer.drain().await;
    let Claimer { acks, .. } = claimer;
    drop(acks);
    if acker.await.is_err() {
        tracing::error!("The result writer stopped abnormally");
    }
    while background.join_next().await.is_some() {}
    let summary = counters.summary();
    tracing::info!(
        delivered = summary.delivered,
        retried = summary.retried,
        failed = summary.failed,
        "OutboxWorker stopped."
    );
    summary
}

fn warn_about_mismatches(routes: &HashMap<String, Route>, policies: &Policies) {
    let mut keys: Vec<&String> = routes.keys().collect();
    keys.sort();
    for key in keys {
        if policies.get(key).is_none() && policies.broken(key).is_none() {
            tracing::warn!(routing_key = %key, "Route has no OutboxRetryPolicy row; its events will end FAILED until one is added");
        }
    }
    for key in policies.keys() {
        if !routes.contains_key(&key) {
            tracing::warn!(routing_key = %key, "OutboxRetryPolicy row has no route in the config; its events will end FAILED");
        }
    }
}

impl Claimer {
    async fn claim_loop(&mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::database();
        let mut unreachable = false;
        let mut claims: u64 = 0;
        let mut rounds: u64 = 0;
        // Whether the last unordered claim found nothing, and when it ran: while ordered
        // heads keep the loop busy, an unordered claim that can find nothing (no new events,
        // no due retry) is skipped for up to a poll interval — it would scan the pending
        // rows for nothing.
        let mut unordered_idle = false;
        let mut unordered_at = Instant::now();
        // Idle rounds in a row where something was due yet nothing could be claimed (rows
        // locked by someone else): the wait grows so such a row cannot make us spin.
        let mut stuck: u32 = 0;
        // When the earliest PENDING event is due, as of the last look (None: nothing known).
        let mut known_due: Option<Instant> = None;
        // Whether the last wait ended by a wake-up, and how many wake-ups in a row found
        // nothing to claim.
        let mut woken = false;
        let mut empty_wakes: u32 = 0;
        loop {
            while self.deliveries.try_join_next().is_some() {}
            if cancel.is_cancelled() {
                return;
            }
            // Claim only what can start at once (free delivery permits), within the cap on
            // events held while their results are written: events never queue inside the
            // worker while their lease runs, yet the next batch is claimed while the last
            // one's results are still being written.
            let free = self
                .slots
                .available_permits()
                .min(self.deliveries_allowed.available_permits());
            self.leadership
                .saturated
                .store(free == 0, Ordering::Relaxed);
            if free == 0 {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.slots.acquire(), if self.slots.available_permits() == 0 => {}
                    _ = self.deliveries_allowed.acquire(), if self.deliveries_allowed.available_permits() == 0 => {}
                }
                continue;
            }
            // Slots held only by results being written come back a batch at a time: rather
            // than claim the remainder (a claim costs nearly as much for 30 events as for
            // 100), wait for a full batch's worth. Not when deliveries are what is short
            // (a slow sink): then every free slot is claimed at once.
            let batch = self.options.batch_size.max(1);
            if free < batch
                && self.slots.available_permits() < self.deliveries_allowed.available_permits()
            {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    permits = self.slots.acquire_many(batch.min(self.slot_count) as u32) => drop(permits),
                }
                continue;
            }
            let keys = self.claim_keys();
            let claimed_at = Instant::now();
            rounds += 1;
            let arrived = self.arrivals.swap(false, Ordering::Relaxed);
            let skip_unordered = !keys.ordered.is_empty()
                && unordered_idle
                && !arrived
                && known_due.is_none_or(|d| d > Instant::now())
                && unordered_at.elapsed() < self.options.poll_interval;
            let round = self
                .claim_round(
                    &keys,
                    free,
                    &mut claims,
                    !rounds.is_multiple_of(4),
                    skip_unordered,
                )
                .await;
            match round.unordered {
                Some(n) => {
                    unordered_idle = n == 0;
                    unordered_at = Instant::now();
                }
                // Not run: keep what arrived for the next round.
                None if arrived => self.arrivals.store(true, Ordering::Relaxed),
                None => {}
            }
            let Round {
                claimed,
                unreadable,
                full,
                error,
                head_token,
                ..
            } = round;
            self.fail_unreadable(unreadable).await;
            if let Some(observe) = &self.options.claim_observer {
                (observe.0)(claimed.len(), claimed_at.elapsed());
            }
            if let (Some(m), false) = (&self.options.metrics, claimed.is_empty()) {
                m.claim_batch(claimed.len());
            }
            if let Some(e) = &error {
                // Whether the database could not be reached (rather than a statement failing),
                // so the recovery is described truthfully.
                unreachable = e.is_unavailable();
                if claimed.is_empty() {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, "Cannot claim events");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
                tracing::warn!(error = %e, "Cannot claim events");
            } else {
                if backoff.failures() > 0 {
                    if unreachable {
                        tracing::info!("Database reachable again; claiming");
                    } else {
                        tracing::info!("Claims succeed again");
                    }
                }
                backoff.reset();
            }
            if cancel.is_cancelled() {
                // Claimed as the stop arrived: give them back unstarted.
                for c in &claimed {
                    self.ack(dispatcher::release(c, None), None);
                }
                return;
            }
            let got_any = !claimed.is_empty();
            if got_any {
                tracing::info!("📦 [OutboxWorker] Processing {} events...", claimed.len());
                let mut rest = claimed.into_iter();
                for c in rest.by_ref() {
                    let as_head = head_token.as_deref() == Some(c.lease_owner.as_str());
                    self.dispatch(c, claimed_at, as_head).await;
                    if cancel.is_cancelled() {
                        break;
                    }
                }
                for c in rest {
                    self.ack(dispatcher::release(&c, None), None);
                }
                // Let the deliveries just started run before counting free slots again: a
                // sink that answers at once gives its permit back now, and the next claim
                // is a full batch rather than the few permits left this instant.
                tokio::task::yield_now().await;
            }
            if full {
                // More is waiting than one claim takes: the leading worker calls the others.
                if self.leadership.leading.load(Ordering::Relaxed) {
                    self.leadership.call_for_help(&self.store);
                }
                stuck = 0;
                continue;
            }
            // After a claim that found events, the schedule learnt from the last look still
            // holds (new events NOTIFY, new retries wake us through the result writer), so
            // the look-up is skipped: one query less between an insert and its delivery.
            let now = Instant::now();
            let mut wait = match known_due {
                Some(due) if got_any && due > now => (due - now).min(self.options.poll_interval),
                None if got_any => self.options.poll_interval,
                _ => {
                    let (wait, due) = self.idle_wait(&keys.skipped).await;
                    known_due = due;
                    wait
                }
            };
            if got_any || wait > MIN_IDLE {
                stuck = 0;
            } else {
                stuck = stuck.saturating_add(1);
                wait = MIN_IDLE
                    .saturating_mul(2u32.saturating_pow(stuck.min(16)))
                    .min(self.options.poll_interval);
            }
            // Wake-ups that found nothing, beyond a few in a row (any role may NOTIFY), widen
            // a quiet gap before the next one is heard; notifications meanwhile coalesce into
            // one wake-up. A claim that finds events closes the gap again.
            if woken && !got_any {
                empty_wakes = empty_wakes.saturating_add(1);
            } else if got_any {
                empty_wakes = 0;
            }
            if empty_wakes > FREE_EMPTY_WAKES {
                let gap = WAKE_GAP_BASE
                    .saturating_mul(
                        2u32.saturating_pow((empty_wakes - FREE_EMPTY_WAKES).min(8) - 1),
                    )
                    .min(MAX_WAKE_GAP)
                    .min(wait);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(gap) => {}
                }
                wait -= gap;
            }
            woken = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => true,
                _ = tokio::time::sleep(wait) => false,
            };
        }
    }

    /// Keys the next claims leave alone or take head by head: paused policies, and sinks
    /// whose circuit breaker is open (their events stay PENDING, not charged).
    fn claim_keys(&self) -> ClaimKeys {
        let mut paused = self.policies.paused();
        let now = Instant::now();
        paused.extend(
            self.routes
                .iter()
                .filter(|(_, r)| r.breaker.is_open(now))
                .map(|(k, _)| k.clone()),
        );
        let ordered = self.policies.ordered();
        let skipped = paused.iter().chain(&ordered).cloned().collect();
        ClaimKeys {
            paused,
            ordered,
            skipped,
        }
    }

    /// One round of claims for up to `free` events: heads of ordered aggregates first, then
    /// the rest with the room left — except every fourth round, when the rest goes first,
    /// so a steady ordered backlog cannot starve unordered keys. `skip_unordered`: leave
    /// the unordered claim out of this round.
    async fn claim_round(
        &self,
        keys: &ClaimKeys,
        free: usize,
        claims: &mut u64,
        ordered_first: bool,
        skip_unordered: bool,
    ) -> Round {
        let mut round = Round::default();
        let lease = self.options.lease;
        let mut room = free;
        let order: [bool; 2] = if ordered_first {
            [true, false]
        } else {
            [false, true]
        };
        for heads in order {
            if room == 0 || (heads && keys.ordered.is_empty()) || (!heads && skip_unordered) {
                continue;
            }
            // A lease token per claim: the fence of an ack is this token plus retryCount, so
            // an event given back and claimed again by this same worker is a new lease.
            *claims += 1;
            let token = format!("{}#{claims}", self.owner);
            let limit = self.options.batch_size.min(room);
            if let Some(m) = &self.options.metrics {
                m.claimed();
            }
            let result = if heads {
                self.store
                    .claim_ordered(&token, limit, lease, &keys.ordered, &keys.paused)
                    .await
            } else {
                self.store.claim(&token, limit, lease, &keys.skipped).await
            };
            match result {
                Ok(c) => {
                    round.full |= c.len() == limit;
                    room -= c.len().min(room);
                    if heads {
                        round.head_token = Some(token);
                    } else {
                        round.unordered = Some(c.len());
                    }
                    round.claimed.extend(c.events);
                    round.unreadable.extend(c.unreadable);
                }
                Err(e) => {
                    round.error = Some(e);
                    return round;
                }
            }
        }
        round
    }

    /// How long to sleep (until the next due event, at most the poll interval), and when
    /// that event is due.
    async fn idle_wait(&self, paused: &[String]) -> (Duration, Option<Instant>) {
        let poll = self.options.poll_interval;
        match self.store.next_due(paused).await {
            Ok(Some(due)) => (
                (due + Duration::from_millis(2)).clamp(MIN_IDLE, poll),
                Some(Instant::now() + due),
            ),
            Ok(None) | Err(_) => (poll, None),
        }
    }

    fn ack(&self, completion: Completion, slot: Option<OwnedSemaphorePermit>) {
        // The acker outlives the claimer; a closed channel means the process is ending.
        // These results (failed before delivery, given back, held by a breaker) are rare:
        // let each wake the claimer, whether or not its event is an ordered head.
        let _ = self.acks.send(Ack {
            completion,
            slot,
            wake: true,
        });
    }

    /// Starts the delivery of `claimed` (`as_head`: it came from the claim of ordered
    /// heads).
    async fn dispatch(&mut self, claimed: ClaimedEvent, claimed_at: Instant, as_head: bool) {
        // Every claimed event holds a slot until its result is written (see `Ack`); we
        // claimed at most the free slots, so one is available.
        let (Ok(slot), Ok(running)) = (
            self.slots.clone().try_acquire_owned(),
            self.deliveries_allowed.clone().try_acquire_owned(),
        ) else {
            self.ack(dispatcher::release(&claimed, None), None);
            return;
        };
        let key = claimed.event.routing_key.clone();
        let policy = match self.policies.get_fresh(&key, claimed_at).await {
            Ok(p) => p,
            Err(e) => {
                // Unknown whether a policy exists: give the event back rather than fail it,
                // not due at once (it would be claimed again straight away, in a loop while
                // the table cannot be read) but after a delay that grows with the failures.
                let delay = self.policies.read_failure_delay();
                tracing::warn!(error = %e, routing_key = %key, retry_in = ?delay, "Cannot read OutboxRetryPolicy; giving the event back");
                let note = format!("not attempted: cannot read OutboxRetryPolicy: {e}");
                self.ack(dispatcher::postpone(&claimed, delay, note), Some(slot));
                return;
            }
        };
        // A broken policy row (known before the claim, or just read) holds the event back,
        // uncharged, until the row is fixed (later claims leave the key alone). An ordered
        // policy learnt late (new, or just switched) gives back what the unordered claim
        // took; the next round claims it head by head.
        let known = dispatcher::Known {
            broken: policy
                .is_none()
                .then(|| self.policies.broken(&key))
                .flatten(),
            policy,
            route: self.routes.get(&key).cloned(),
            as_head,
            broken_delay: self.options.poll_interval.max(Duration::from_secs(1)),
        };
        let (policy, route, probe) = match dispatcher::admit(&claimed, known) {
            Admission::Deliver {
                policy,
                route,
                probe,
            } => (policy, route, probe),
            Admission::Settle(completion) => {
                if let CompletionAction::Fail { error, .. } = &completion.action {
                    tracing::error!(id = %claimed.event.id, routing_key = %key, error = %error, "Event FAILED");
                    let sink = self
                        .routes
                        .get(&key)
                        .map_or("(none)", |r| r.sink_name.as_str());
                    self.counters
                        .record(Counted::Failed, &key, sink, None, None);
                }
                self.ack(completion, Some(slot));
                return;
            }
        };
        if probe {
            tracing::info!(sink = %route.sink_name, id = %claimed.event.id, "Circuit breaker half-open: probing with one delivery");
        }
        let flight = InFlight::new(claimed, self.acks.clone(), slot, policy.ordered);
        let rules = dispatcher::Rules {
            on_success: self.options.on_success,
            budget: crate::delivery_budget(self.options.lease),
            claimed_at,
            probe,
        };
        let counters = self.counters.clone();
        self.deliveries.spawn(dispatcher::deliver(
            flight, route, policy, rules, running, counters,
        ));
    }

    /// Records leased rows that could not be read as FAILED (each with the column that
    /// failed), so they neither block their batch nor come back. If the write fails, their
    /// leases run out and the reaper reads (and fails) them again.
    async fn fail_unreadable(&self, mut rows: Vec<Unreadable>) {
        if rows.is_empty() {
            return;
        }
        self.policies.mark_blocking(&mut rows);
        for r in &rows {
            let key = r.routing_key.as_deref().unwrap_or(crate::metrics::UNROUTED);
            let sink = self
                .routes
                .get(key)
                .map_or("(none)", |r| r.sink_name.as_str());
            tracing::error!(id = %r.id, routing_key = %key, error = %r.problem, "Event FAILED: the row cannot be read");
            self.counters.record(Counted::Failed, key, sink, None, None);
        }
        if let Err(e) = self.store.fail_unreadable(&rows).await {
            tracing::warn!(error = %e, events = rows.len(), "Cannot record unreadable rows as FAILED; their leases will run out and the reaper will try again");
        }
    }

    /// Waits for in-flight deliveries up to the shutdown timeout, then aborts the rest
    /// (their events are given back by the `InFlight` guard).
    async fn drain(&mut self) {
        let timeout = self.options.shutdown_timeout;
        let finished = tokio::time::timeout(timeout, async {
            while self.deliveries.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                still_running = self.deliveries.len(),
                "Shutdown timeout reached; giving unfinished deliveries back to the queue"
            );
            self.deliveries.abort_all();
            while self.deliveries.join_next().await.is_some() {}
        }
    }
}
