//! The engine embedded as a library, with handlers written in code (as the example does).

use outbox_testkit::*;
use outbox_worker::{
    async_trait, ClaimedEvent, OnSuccess, Outcome, PgStore, PgStoreOptions, Sink, Worker,
    WorkerOptions,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Panics on the first attempt, then succeeds.
struct Flaky {
    calls: AtomicUsize,
}

#[async_trait]
impl Sink for Flaky {
    async fn deliver(&self, claimed: &ClaimedEvent) -> Outcome {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("handler bug on {}", claimed.event.id);
        }
        Outcome::Delivered
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

fn options() -> WorkerOptions {
    WorkerOptions {
        poll_interval: Duration::from_millis(100),
        worker_id: Some("embedded-test".into()),
        ..WorkerOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_in_code_receives_events_and_a_panic_is_a_retry() {
    let db = TestDb::with_policies(&[("flaky", 3, 50), ("count", 0, 10)]).await;
    let store = PgStore::new(&PgStoreOptions::new(db.url.clone())).unwrap();
    let flaky = Arc::new(Flaky {
        calls: AtomicUsize::new(0),
    });
    let counting = Arc::new(Counting(AtomicUsize::new(0)));
    let worker = Worker::new(Arc::new(store), options())
        .route("flaky", "flaky-handler", flaky.clone())
        .route("count", "counter", counting.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stop_rx.await;
    }));

    let c = db.client().await;
    insert_event(&c, "f1", "flaky").await;
    insert_many(&c, "c", "count", 25).await;
    let row = wait_status(&c, "f1", "SENT", Duration::from_secs(30)).await;
    assert_eq!(row.retry_count, 1);
    assert_eq!(
        row.last_error.as_deref(),
        Some("sink 'flaky-handler' panicked")
    );
    wait_for("25 counted", Duration::from_secs(30), || async {
        count_status(&c, "SENT").await == 26
    })
    .await;
    assert_eq!(counting.0.load(Ordering::SeqCst), 25);

    stop_tx.send(()).unwrap();
    let summary = running.await.unwrap();
    assert_eq!(summary.delivered, 26);
    assert_eq!(summary.retried, 1);
    assert_eq!(summary.failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_on_success_and_no_rows_left_processing_after_stop() {
    let db = TestDb::with_policies(&[("count", 0, 10)]).await;
    let store = PgStore::new(&PgStoreOptions::new(db.url.clone())).unwrap();
    let counting = Arc::new(Counting(AtomicUsize::new(0)));
    let worker = Worker::new(
        Arc::new(store),
        WorkerOptions {
            on_success: OnSuccess::Delete,
            ..options()
        },
    )
    .route("count", "counter", counting.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stop_rx.await;
    }));
    let c = db.client().await;
    insert_many(&c, "d", "count", 100).await;
    wait_for("all deleted", Duration::from_secs(30), || async {
        by_status(&c).await.is_empty()
    })
    .await;
    stop_tx.send(()).unwrap();
    assert_eq!(running.await.unwrap().delivered, 100);
    assert_eq!(counting.0.load(Ordering::SeqCst), 100);
}

/// Never answers.
struct Hangs;

#[async_trait]
impl Sink for Hangs {
    async fn deliver(&self, _: &ClaimedEvent) -> Outcome {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_hangs_is_cut_off_inside_the_lease() {
    let db = TestDb::with_policies(&[("hang", 0, 10)]).await;
    let store = PgStore::new(&PgStoreOptions::new(db.url.clone())).unwrap();
    let options = WorkerOptions {
        lease: Duration::from_secs(1),
        ..options()
    };
    let worker = Worker::new(Arc::new(store), options).route("hang", "hangs", Arc::new(Hangs));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stop_rx.await;
    }));
    let c = db.client().await;
    insert_event(&c, "h1", "hang").await;
    let row = wait_status(&c, "h1", "FAILED", Duration::from_secs(30)).await;
    let err = row.last_error.unwrap();
    assert!(
        err.contains("sink 'hangs' did not finish within 900ms of the claim (90% of the lease)"),
        "{err}"
    );
    assert_eq!(
        row.retry_count, 0,
        "cut off by the worker itself, not reaped"
    );
    stop_tx.send(()).unwrap();
    assert_eq!(running.await.unwrap().failed, 1);
}
