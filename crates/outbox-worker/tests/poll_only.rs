//! A store without notifications (the `Store::listen` default): the worker asks once, then
//! finds events by its poll alone — no reconnect loop. And a store whose notification
//! stream ends as soon as it opens does not make the listener spin either.

use outbox_core::{
    Completion, Leased, Migrator, Notification, NotificationStream, PolicyRows, Status, Store,
    StoreError, Unreadable,
};
use outbox_store::sqlite::{SqliteOptions, SqliteStore};
use outbox_testkit::*;
use outbox_worker::{async_trait, ClaimedEvent, Outcome, Sink, Worker, WorkerOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The SQLite store with its notifications taken away (or, with `ending`, replaced by a
/// stream that ends at once), counting how often it is asked.
struct Quiet {
    inner: SqliteStore,
    claims: AtomicUsize,
    ending: bool,
    listens: AtomicUsize,
}

/// A notification stream that is over as soon as it is opened.
struct Ended;

#[async_trait]
impl NotificationStream for Ended {
    async fn next(&mut self) -> Option<Notification> {
        None
    }
}

#[async_trait]
impl Store for Quiet {
    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        paused: &[String],
    ) -> Result<Leased, StoreError> {
        self.claims.fetch_add(1, Ordering::Relaxed);
        self.inner.claim(owner, limit, lease, paused).await
    }
    async fn claim_ordered(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        ordered: &[String],
        paused: &[String],
    ) -> Result<Leased, StoreError> {
        self.inner
            .claim_ordered(owner, limit, lease, ordered, paused)
            .await
    }
    async fn complete(&self, completions: &[Completion]) -> Result<u64, StoreError> {
        self.inner.complete(completions).await
    }
    async fn fail_unreadable(&self, rows: &[Unreadable]) -> Result<u64, StoreError> {
        self.inner.fail_unreadable(rows).await
    }
    async fn expired_leases(&self, limit: usize) -> Result<Leased, StoreError> {
        self.inner.expired_leases(limit).await
    }
    async fn policies(&self) -> Result<PolicyRows, StoreError> {
        self.inner.policies().await
    }
    async fn next_due(&self, paused: &[String]) -> Result<Option<Duration>, StoreError> {
        self.inner.next_due(paused).await
    }
    async fn purge(
        &self,
        status: Status,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.inner.purge(status, older_than, limit).await
    }
    async fn pending_summary(&self) -> Result<Vec<(String, i64, f64)>, StoreError> {
        self.inner.pending_summary().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn listen(&self) -> Result<Box<dyn NotificationStream>, StoreError> {
        self.listens.fetch_add(1, Ordering::Relaxed);
        if self.ending {
            Ok(Box::new(Ended))
        } else {
            Err(StoreError::PollOnly)
        }
    }
}

struct Counting(AtomicUsize);

#[async_trait]
impl Sink for Counting {
    async fn deliver(&self, _: &ClaimedEvent) -> Outcome {
        self.0.fetch_add(1, Ordering::SeqCst);
        Outcome::Delivered
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_notifications_is_polled() {
    polled(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_stream_that_keeps_ending_is_reopened_with_backoff() {
    polled(true).await;
}

async fn polled(ending: bool) {
    let dir = TempDir::new();
    let inner = SqliteStore::new(&SqliteOptions {
        path: dir.0.join("poll.db"),
    });
    inner.deploy().await.unwrap();
    inner
        .run_script(
            r#"INSERT INTO "OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval") VALUES ('k', 1, 10, 100)"#,
        )
        .await
        .unwrap();
    let store = Arc::new(Quiet {
        inner,
        claims: AtomicUsize::new(0),
        ending,
        listens: AtomicUsize::new(0),
    });
    let sink = Arc::new(Counting(AtomicUsize::new(0)));
    let options = WorkerOptions {
        poll_interval: Duration::from_millis(200),
        ..WorkerOptions::default()
    };
    let worker = Worker::new(store.clone(), options).route("k", "count", sink.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    store
        .inner
        .run_script(
            r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey") VALUES ('p1', 'n', 't', 'a', 'k')"#,
        )
        .await
        .unwrap();
    wait_for("the polled event", Duration::from_secs(10), || async {
        sink.0.load(Ordering::SeqCst) == 1
    })
    .await;
    // Idle for 2 s: the poll claims about 5 times a second at most, never in a loop.
    let before = store.claims.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = store.claims.load(Ordering::Relaxed) - before;
    assert!(idle <= 15, "{idle} claims in 2 s of quiet");
    // Asked once (no notifications), or a handful of times with backoff, in the ~2.5 s.
    let listens = store.listens.load(Ordering::Relaxed);
    if ending {
        assert!((2..=8).contains(&listens), "{listens} listens");
    } else {
        assert_eq!(listens, 1);
    }
    let _ = stop.send(());
    running.await.unwrap();
}
