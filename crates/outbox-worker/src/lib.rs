//! The relay engine. Data flows one way:
//!
//! ```text
//! store ──claim──▶ claimer ──▶ dispatcher ──▶ sink ──outcome──▶ acker ──complete──▶ store
//!                     ▲                                                     │
//!                     └──── listener (NOTIFY), poll timer, reaper, policies ┘
//! ```
//!
//! Embed it with your own handlers:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use outbox_worker::{Migrator, Worker, WorkerOptions, PgStore, PgStoreOptions};
//! # async fn demo(my_sink: Arc<dyn outbox_worker::Sink>) -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::new(&PgStoreOptions::new("postgres://postgres@127.0.0.1/app"))?;
//! store.deploy().await?;
//! let worker = Worker::new(Arc::new(store), WorkerOptions::default())
//!     .route("audit.record-auth-log", "audit", my_sink);
//! worker.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

mod acker;
mod backoff;
mod breaker;
mod claimer;
mod dispatcher;
mod listener;
mod metrics;
#[cfg(feature = "otel")]
mod otel;
mod policies;
mod reaper;
mod retention;

pub use retention::Retention;

pub use outbox_core::{
    async_trait, BreakerSettings, ClaimedEvent, Migrator, OutboxEvent, Outcome, RetryPolicy, Sink,
    Store,
};

use breaker::Breaker;
use metrics::Counted;
pub use metrics::{KeySnapshot, Metrics, Snapshot};
#[cfg(feature = "postgres")]
pub use outbox_store::{PgStore, PgStoreOptions};

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long one delivery may run: 90% of the lease, counted from the claim, so no other
/// worker can take the event over while its delivery still runs.
pub fn delivery_budget(lease: Duration) -> Duration {
    lease.mul_f64(0.9)
}

/// What happens to a delivered row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSuccess {
    /// Status SENT with processedAt (the default).
    Mark,
    /// The row is deleted.
    Delete,
}

/// Engine settings (the `[worker]` section).
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Most events claimed by one statement.
    pub batch_size: usize,
    /// Most deliveries in flight at once.
    pub concurrency: usize,
    /// Longest sleep between claims when no notification arrives.
    pub poll_interval: Duration,
    /// How long a claim is held before another worker may take the event.
    pub lease: Duration,
    /// How long a stop waits for in-flight deliveries.
    pub shutdown_timeout: Duration,
    /// What to do with delivered rows.
    pub on_success: OnSuccess,
    /// How often the retry policies are re-read (edits also arrive by NOTIFY).
    pub policy_refresh: Duration,
    /// The `lockedBy` prefix; a unique one is made when `None`.
    pub worker_id: Option<String>,
    /// Deleting old finished rows.
    pub retention: Retention,
    /// Called after every claim with the number of events and how long the statement took.
    pub claim_observer: Option<ClaimObserver>,
    /// Circuit-breaker settings per sink name; sinks not listed get the defaults.
    pub breakers: HashMap<String, BreakerSettings>,
    /// Where to count deliveries, latencies and the backlog (`None`: not exported).
    pub metrics: Option<Arc<Metrics>>,
}

/// A callback told about every claim (count, duration): for benchmarks and metrics.
#[derive(Clone)]
pub struct ClaimObserver(pub Arc<dyn Fn(usize, Duration) + Send + Sync>);

impl std::fmt::Debug for ClaimObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClaimObserver")
    }
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            batch_size: 100,
            concurrency: 128,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            on_success: OnSuccess::Mark,
            policy_refresh: Duration::from_secs(30),
            worker_id: None,
            retention: Retention::default(),
            claim_observer: None,
            breakers: HashMap::new(),
            metrics: None,
        }
    }
}

/// A routingKey's destination.
#[derive(Clone)]
pub struct Route {
    /// The sink's name, for logs.
    pub sink_name: String,
    /// The sink.
    pub sink: Arc<dyn Sink>,
    /// The sink's circuit breaker (shared by every route to the sink).
    pub(crate) breaker: Arc<Breaker>,
}

/// Counts of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Events that became SENT (or were deleted on success).
    pub delivered: u64,
    /// Failures scheduled for another attempt.
    pub retried: u64,
    /// Events that became FAILED.
    pub failed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    metrics: Option<Arc<Metrics>>,
}

impl Counters {
    /// Counts an outcome for the run summary and, when exported, the metrics (with the sink
    /// call's duration, and the delivery latency of a delivered event).
    pub(crate) fn record(
        &self,
        what: Counted,
        routing_key: &str,
        sink: &str,
        call: Option<Duration>,
        latency: Option<Duration>,
    ) {
        let n = match what {
            Counted::Delivered => &self.delivered,
            Counted::Retried => &self.retried,
            Counted::Failed => &self.failed,
        };
        n.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.observe(what, routing_key, sink, call, latency);
        }
    }

    fn summary(&self) -> RunSummary {
        RunSummary {
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// The worker: a store, routes, and options. Cheap to build; `run` does the work.
pub struct Worker {
    store: Arc<dyn Store>,
    routes: HashMap<String, Route>,
    breakers: HashMap<String, Arc<Breaker>>,
    options: WorkerOptions,
}

impl Worker {
    /// A worker over `store` with no routes yet.
    pub fn new(store: Arc<dyn Store>, options: WorkerOptions) -> Worker {
        Worker {
            store,
            routes: HashMap::new(),
            breakers: HashMap::new(),
            options,
        }
    }

    /// Binds `routing_key` to `sink` (named `sink_name` in logs).
    pub fn route(
        mut self,
        routing_key: impl Into<String>,
        sink_name: impl Into<String>,
        sink: Arc<dyn Sink>,
    ) -> Worker {
        let sink_name = sink_name.into();
        let settings = self
            .options
            .breakers
            .get(&sink_name)
            .copied()
            .unwrap_or_default();
        let breaker = self
            .breakers
            .entry(sink_name.clone())
            .or_insert_with(|| Arc::new(Breaker::new(settings)))
            .clone();
        let routing_key = routing_key.into();
        if let Some(m) = &self.options.metrics {
            m.register(&routing_key, &sink_name, &breaker);
        }
        self.routes.insert(
            routing_key,
            Route {
                sink_name,
                sink,
                breaker,
            },
        );
        self
    }

    /// The lease owner id this worker will write into `lockedBy`.
    pub fn worker_id(&self) -> String {
        self.options
            .worker_id
            .clone()
            .unwrap_or_else(default_worker_id)
    }

    /// Runs until `shutdown` resolves, then stops claiming, lets in-flight deliveries
    /// finish within `shutdown_timeout`, gives back the rest and returns. Database outages
    /// are logged and retried with backoff; they never end the run.
    pub async fn run<F>(self, shutdown: F) -> RunSummary
    where
        F: Future<Output = ()> + Send,
    {
        let id = self.worker_id();
        claimer::run(self.store, self.routes, self.options, id, shutdown).await
    }
}

/// `host-pid-random`: unique per process start, readable in `lockedBy`.
fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".to_string());
    let suffix: u32 = rand::random();
    format!("{host}-{}-{:06x}", std::process::id(), suffix & 0xff_ffff)
}
