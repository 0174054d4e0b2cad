//! The retry-policy cache: loaded at start, refreshed on a timer, on NOTIFY, and (rate
//! limited) when an event names a routingKey the cache does not know yet.

use crate::backoff::Backoff;
use outbox_core::{RetryPolicy, Store, StoreError, Unreadable};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// At most this many reads of the policy table...
const READ_BURST: usize = 5;
/// ...in this window: a flood of notifications costs ten reads a second.
const READ_BURST_WINDOW: Duration = Duration::from_millis(500);

pub(crate) struct Policies {
    store: Arc<dyn Store>,
    metrics: Option<Arc<crate::Metrics>>,
    map: RwLock<HashMap<String, RetryPolicy>>,
    /// Rows that cannot be used: routingKey → (what is wrong, its `ordered` flag). Their
    /// events are left alone (PENDING, uncharged) until the row is fixed.
    broken: RwLock<HashMap<String, (String, bool)>>,
    /// Problems of broken rows without a routingKey already logged (said once each).
    keyless_logged: Mutex<std::collections::HashSet<String>>,
    /// Failed reads in a row, for the delay of events given back meanwhile.
    failed_reads: Mutex<Backoff>,
    /// When the newest successful read began: the cache reflects the table as of then.
    read_at: Mutex<Option<Instant>>,
    /// Poked by the listener when the policy table changed.
    pub(crate) changed: Notify,
}

impl Policies {
    pub(crate) fn new(store: Arc<dyn Store>, metrics: Option<Arc<crate::Metrics>>) -> Policies {
        Policies {
            store,
            metrics,
            map: RwLock::new(HashMap::new()),
            broken: RwLock::new(HashMap::new()),
            keyless_logged: Mutex::new(Default::default()),
            failed_reads: Mutex::new(Backoff::new(
                Duration::from_millis(500),
                Duration::from_secs(30),
            )),
            read_at: Mutex::new(None),
            changed: Notify::new(),
        }
    }

    pub(crate) async fn refresh(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        if let Some(m) = &self.metrics {
            m.policies_read();
        }
        let rows = match self.store.policies().await {
            Ok(rows) => {
                self.failed_reads.lock().expect("policy lock").reset();
                rows
            }
            Err(e) => {
                self.failed_reads.lock().expect("policy lock").next_delay();
                return Err(e);
            }
        };
        let fresh: HashMap<String, RetryPolicy> = rows
            .policies
            .into_iter()
            .map(|p| (p.routing_key.clone(), p))
            .collect();
        let mut broken = HashMap::new();
        for b in rows.broken {
            match b.routing_key {
                Some(key) => {
                    broken.insert(key, (b.problem, b.ordered));
                }
                // Not any routingKey's row: nothing waits on it; `outbox doctor` names it.
                None => {
                    if self
                        .keyless_logged
                        .lock()
                        .expect("policy lock")
                        .insert(b.problem.clone())
                    {
                        tracing::warn!(problem = %b.problem, "An OutboxRetryPolicy row cannot be used; skipped (run `outbox doctor`)");
                    }
                }
            }
        }
        let mut read_at = self.read_at.lock().expect("policy lock");
        // A slower, older read must not replace a newer one.
        if read_at.is_none_or(|t| t <= started) {
            *self.map.write().expect("policy lock") = fresh;
            let mut known = self.broken.write().expect("policy lock");
            // Said once per change, not at every refresh.
            for (key, (problem, _)) in &broken {
                if known.get(key).map(|(p, _)| p) != Some(problem) {
                    tracing::warn!(routing_key = %key, problem = %problem, "OutboxRetryPolicy row cannot be used; its events wait (PENDING, not charged) until it is fixed");
                }
            }
            for key in known.keys() {
                if !broken.contains_key(key) {
                    tracing::info!(routing_key = %key, "OutboxRetryPolicy row usable again");
                }
            }
            *known = broken;
            *read_at = Some(started);
        }
        Ok(())
    }

    /// How long to hold back an event whose policy could not be read: grows with the
    /// failed reads in a row (0.5 s up to 30 s), so a table that cannot be read is never
    /// hammered by events given back due now.
    pub(crate) fn read_failure_delay(&self) -> Duration {
        let b = self.failed_reads.lock().expect("policy lock");
        let mut probe = b.clone();
        probe.next_delay()
    }

    /// Marks the unreadable rows whose policy holds an aggregate back behind a FAILED head
    /// (ordered, `blockOnFailure`): they end FAILED like any head would.
    pub(crate) fn mark_blocking(&self, rows: &mut [Unreadable]) {
        for r in rows {
            r.block_aggregate = r
                .routing_key
                .as_deref()
                .and_then(|k| self.get(k))
                .is_some_and(|p| p.blocks_on_failure());
        }
    }

    /// What is wrong with `routing_key`'s policy row, when it cannot be used.
    pub(crate) fn broken(&self, routing_key: &str) -> Option<String> {
        self.broken
            .read()
            .expect("policy lock")
            .get(routing_key)
            .map(|(problem, _)| problem.clone())
    }

    pub(crate) fn get(&self, routing_key: &str) -> Option<RetryPolicy> {
        self.map
            .read()
            .expect("policy lock")
            .get(routing_key)
            .cloned()
    }

    /// The policy for an event claimed at `claimed_at`. An unknown key is only trusted to
    /// have no policy once a read that began after the claim has completed (the row may
    /// have been inserted together with the event); a failed read is an error, never "no
    /// policy".
    pub(crate) async fn get_fresh(
        &self,
        routing_key: &str,
        claimed_at: Instant,
    ) -> Result<Option<RetryPolicy>, StoreError> {
        if let Some(p) = self.get(routing_key) {
            return Ok(Some(p));
        }
        let current = self
            .read_at
            .lock()
            .expect("policy lock")
            .is_some_and(|t| t >= claimed_at);
        if !current {
            self.refresh().await?;
        }
        Ok(self.get(routing_key))
    }

    /// Keys whose events are left PENDING: paused policies, and rows that cannot be used.
    pub(crate) fn paused(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .map
            .read()
            .expect("policy lock")
            .values()
            .filter(|p| p.paused)
            .map(|p| p.routing_key.clone())
            .collect();
        keys.extend(self.broken.read().expect("policy lock").keys().cloned());
        keys
    }

    /// Routing keys of ordered policies (paused or not, usable or not: their held events
    /// still hold their aggregates' later events back).
    pub(crate) fn ordered(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .map
            .read()
            .expect("policy lock")
            .values()
            .filter(|p| p.ordered)
            .map(|p| p.routing_key.clone())
            .collect();
        keys.extend(
            self.broken
                .read()
                .expect("policy lock")
                .iter()
                .filter(|(_, (_, ordered))| *ordered)
                .map(|(k, _)| k.clone()),
        );
        keys
    }

    pub(crate) fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self
            .map
            .read()
            .expect("policy lock")
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    }

    /// Keeps the cache fresh until `cancel`.
    pub(crate) async fn refresh_loop(self: Arc<Self>, every: Duration, cancel: CancellationToken) {
        let mut backoff = Backoff::database();
        let mut recent: std::collections::VecDeque<Instant> = Default::default();
        loop {
            let wait = if backoff.failures() > 0 {
                backoff.next_delay().min(every)
            } else {
                every
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.changed.notified() => {}
            }
            match self.refresh().await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    tracing::warn!(error = %e, "Could not refresh OutboxRetryPolicy; keeping the policies read before");
                    backoff.next_delay();
                }
            }
            // Any role may NOTIFY, and a flood of notifications must not become a flood of
            // reads: a few reads in a row follow edits at once, then at most one per
            // READ_BURST_WINDOW / READ_BURST; notifications meanwhile are read together.
            recent.push_back(Instant::now());
            while recent.len() > READ_BURST {
                recent.pop_front();
            }
            if recent.len() == READ_BURST {
                let rest = READ_BURST_WINDOW.saturating_sub(recent[0].elapsed());
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(rest) => {}
                }
            }
        }
    }
}
