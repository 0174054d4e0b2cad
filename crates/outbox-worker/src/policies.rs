//! The retry-policy cache: loaded at start, refreshed on a timer, on NOTIFY, and (rate
//! limited) when an event names a routingKey the cache does not know yet.

use crate::backoff::Backoff;
use outbox_core::{RetryPolicy, Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Shortest gap between two refreshes caused by unknown routingKeys.
const MISS_REFRESH_GAP: Duration = Duration::from_millis(500);

pub(crate) struct Policies {
    store: Arc<dyn Store>,
    map: RwLock<HashMap<String, RetryPolicy>>,
    last_refresh: Mutex<Option<Instant>>,
    /// Poked by the listener when the policy table changed.
    pub(crate) changed: Notify,
}

impl Policies {
    pub(crate) fn new(store: Arc<dyn Store>) -> Policies {
        Policies {
            store,
            map: RwLock::new(HashMap::new()),
            last_refresh: Mutex::new(None),
            changed: Notify::new(),
        }
    }

    pub(crate) async fn refresh(&self) -> Result<(), StoreError> {
        *self.last_refresh.lock().expect("policy lock") = Some(Instant::now());
        let rows = self.store.policies().await?;
        let fresh: HashMap<String, RetryPolicy> = rows
            .into_iter()
            .map(|p| (p.routing_key.clone(), p))
            .collect();
        *self.map.write().expect("policy lock") = fresh;
        Ok(())
    }

    pub(crate) fn get(&self, routing_key: &str) -> Option<RetryPolicy> {
        self.map
            .read()
            .expect("policy lock")
            .get(routing_key)
            .cloned()
    }

    /// The policy for `routing_key`, re-reading the table first if the key is unknown and
    /// the last refresh is not too recent (a policy row may have just been inserted).
    pub(crate) async fn get_fresh(&self, routing_key: &str) -> Option<RetryPolicy> {
        if let Some(p) = self.get(routing_key) {
            return Some(p);
        }
        let stale = self
            .last_refresh
            .lock()
            .expect("policy lock")
            .is_none_or(|t| t.elapsed() >= MISS_REFRESH_GAP);
        if stale {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "Could not re-read OutboxRetryPolicy");
            }
        }
        self.get(routing_key)
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
