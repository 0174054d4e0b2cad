//! The retry-policy cache: loaded at start, refreshed on a timer, on NOTIFY, and (rate
//! limited) when an event names a routingKey the cache does not know yet.

use crate::backoff::Backoff;
use outbox_core::{RetryPolicy, Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub(crate) struct Policies {
    store: Arc<dyn Store>,
    map: RwLock<HashMap<String, RetryPolicy>>,
    /// When the newest successful read began: the cache reflects the table as of then.
    read_at: Mutex<Option<Instant>>,
    /// Poked by the listener when the policy table changed.
    pub(crate) changed: Notify,
}

impl Policies {
    pub(crate) fn new(store: Arc<dyn Store>) -> Policies {
        Policies {
            store,
            map: RwLock::new(HashMap::new()),
            read_at: Mutex::new(None),
            changed: Notify::new(),
        }
    }

    pub(crate) async fn refresh(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let rows = self.store.policies().await?;
        let fresh: HashMap<String, RetryPolicy> = rows
            .into_iter()
            .map(|p| (p.routing_key.clone(), p))
            .collect();
        let mut read_at = self.read_at.lock().expect("policy lock");
        // A slower, older read must not replace a newer one.
        if read_at.is_none_or(|t| t <= started) {
            *self.map.write().expect("policy lock") = fresh;
            *read_at = Some(started);
        }
        Ok(())
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

    pub(crate) fn paused(&self) -> Vec<String> {
        self.map
            .read()
            .expect("policy lock")
            .values()
            .filter(|p| p.paused)
            .map(|p| p.routing_key.clone())
            .collect()
    }

    /// Routing keys of ordered policies (paused or not: a paused one's events still hold
    /// their aggregates' later events back).
    pub(crate) fn ordered(&self) -> Vec<String> {
        self.map
            .read()
            .expect("policy lock")
            .values()
            .filter(|p| p.ordered)
            .map(|p| p.routing_key.clone())
            .collect()
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
        }
    }
}
