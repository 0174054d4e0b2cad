//! Ordered policies: one event at a time per aggregate, in insertion order, across workers;
//! a retrying head holds its aggregate back; a FAILED head releases or blocks it; an event
//! committed late is not overtaken.

use outbox_testkit::*;
use outbox_worker::{
    async_trait, ClaimedEvent, Outcome, PgStore, PgStoreOptions, RunSummary, Sink, Worker,
    WorkerOptions,
};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::GenericClient;

const LONG: Duration = Duration::from_secs(30);

/// Records deliveries per aggregate, counts overlapping deliveries of one aggregate, and
/// plays scripted outcomes per event id.
#[derive(Default)]
struct Recorder {
    /// (aggregateId, payload "n", event id) of every successful delivery, in order.
    log: Mutex<Vec<(String, i64, String)>>,
    in_flight: Mutex<HashMap<String, usize>>,
    overlaps: AtomicUsize,
    script: Mutex<HashMap<String, VecDeque<Outcome>>>,
}

impl Recorder {
    fn script(&self, id: &str, outcomes: Vec<Outcome>) {
        self.script
            .lock()
            .unwrap()
            .insert(id.to_string(), outcomes.into());
    }

    /// The payload numbers delivered for `aggregate`, in delivery order.
    fn sequence(&self, aggregate: &str) -> Vec<i64> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, _, _)| a == aggregate)
            .map(|(_, n, _)| *n)
            .collect()
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .position(|(_, _, i)| i == id)
    }

    fn delivered(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

#[async_trait]
impl Sink for Recorder {
    async fn deliver(&self, claimed: &ClaimedEvent) -> Outcome {
        let e = &claimed.event;
        {
            let mut f = self.in_flight.lock().unwrap();
            let n = f.entry(e.aggregate_id.clone()).or_default();
            *n += 1;
            if *n > 1 {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
        }
        // Long enough for other deliveries (and the other worker's claims) to interleave.
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 4)).await;
        let scripted = self
            .script
            .lock()
            .unwrap()
            .get_mut(&e.id)
            .and_then(VecDeque::pop_front);
        let outcome = scripted.unwrap_or(Outcome::Delivered);
        if matches!(outcome, Outcome::Delivered) {
            let n = e.payload.to_value().unwrap_or_default()["n"]
                .as_i64()
                .unwrap_or(-1);
            self.log
                .lock()
                .unwrap()
                .push((e.aggregate_id.clone(), n, e.id.clone()));
        }
        *self
            .in_flight
            .lock()
            .unwrap()
            .get_mut(&e.aggregate_id)
            .unwrap() -= 1;
        outcome
    }
}

struct Running {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<RunSummary>,
}

impl Running {
    async fn stop(self) -> RunSummary {
        let _ = self.stop.send(());
        self.handle.await.unwrap()
    }
}

/// A worker in this process routing every key in `keys` to `sink`.
fn start(db: &TestDb, name: &str, keys: &[&str], sink: Arc<Recorder>) -> Running {
    let store = PgStore::new(&PgStoreOptions::new(db.url.clone())).unwrap();
    let mut worker = Worker::new(
        Arc::new(store),
        WorkerOptions {
            poll_interval: Duration::from_millis(100),
            worker_id: Some(name.into()),
            // Small claims come back full: the worker answering notifications calls the
            // others for help, so several workers claim side by side.
            batch_size: 10,
            ..WorkerOptions::default()
        },
    );
    for key in keys {
        worker = worker.route(*key, "recorder", sink.clone());
    }
    let (stop, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(worker.run(async {
        let _ = rx.await;
    }));
    Running { stop, handle }
}

/// Inserts event `id` of `aggregate` with payload `{"n": n}`.
async fn insert(c: &impl GenericClient, id: &str, key: &str, aggregate: &str, n: i64) {
    c.execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload")
           VALUES ($1, 'TestEvent', 'test.happened', $3, $2, jsonb_build_object('n', $4::int8))"#,
        &[&id, &key, &aggregate, &n],
    )
    .await
    .unwrap();
}

async fn wait_delivered(sink: &Recorder, n: usize) {
    wait_for(&format!("{n} deliveries"), LONG, || async {
        sink.delivered() >= n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_deliver_each_aggregate_one_at_a_time_in_insertion_order() {
    let db = TestDb::with_policies(&[("ord", 3, 50), ("free", 3, 50)]).await;
    let mut c = db.client().await;
    make_ordered(&c, "ord", false).await;
    let sink = Arc::new(Recorder::default());
    let a = start(&db, "worker-a", &["ord", "free"], sink.clone());
    let b = start(&db, "worker-b", &["ord", "free"], sink.clone());

    // 30 aggregates × 8 events, interleaved across aggregates and transactions, with
    // occurredAt running backwards so that only the insertion order can explain the result.
    const AGGREGATES: i64 = 30;
    const EACH: i64 = 8;
    for n in 0..EACH {
        let tx = c.transaction().await.unwrap();
        for a in 0..AGGREGATES {
            insert(&tx, &format!("o-{a}-{n}"), "ord", &format!("agg-{a}"), n).await;
            tx.execute(
                r#"UPDATE "OutboxEvent" SET "occurredAt" = now() - make_interval(secs => $2) WHERE "id" = $1"#,
                &[&format!("o-{a}-{n}"), &(n as f64)],
            )
            .await
            .unwrap();
            insert(
                &tx,
                &format!("f-{a}-{n}"),
                "free",
                &format!("agg-{a}"),
                100 + n,
            )
            .await;
        }
        tx.commit().await.unwrap();
    }
    let total = (2 * AGGREGATES * EACH) as usize;
    wait_delivered(&sink, total).await;
    let (sa, sb) = (a.stop().await, b.stop().await);

    for a in 0..AGGREGATES {
        let ordered: Vec<i64> = sink
            .sequence(&format!("agg-{a}"))
            .into_iter()
            .filter(|n| *n < 100)
            .collect();
        assert_eq!(ordered, (0..EACH).collect::<Vec<_>>(), "aggregate agg-{a}");
    }
    assert_eq!(sink.delivered(), total, "each event delivered once");
    assert_eq!(sa.delivered + sb.delivered, total as u64);
    assert!(
        sa.delivered > 0 && sb.delivered > 0,
        "both workers took part: {} and {}",
        sa.delivered,
        sb.delivered
    );
    assert_eq!(count_status(&c, "SENT").await, total as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_deliveries_of_one_aggregate_never_overlap() {
    let db = TestDb::with_policies(&[("ord", 3, 50)]).await;
    let c = db.client().await;
    make_ordered(&c, "ord", false).await;
    for n in 0..10 {
        for a in 0..20 {
            insert(&c, &format!("o-{a}-{n}"), "ord", &format!("agg-{a}"), n).await;
        }
    }
    let sink = Arc::new(Recorder::default());
    let a = start(&db, "worker-a", &["ord"], sink.clone());
    let b = start(&db, "worker-b", &["ord"], sink.clone());
    wait_delivered(&sink, 200).await;
    a.stop().await;
    b.stop().await;
    assert_eq!(sink.overlaps.load(Ordering::SeqCst), 0);
    for a in 0..20 {
        assert_eq!(
            sink.sequence(&format!("agg-{a}")),
            (0..10).collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_head_holds_its_aggregate_back_while_others_proceed() {
    let db = TestDb::with_policies(&[("ord", 3, 300)]).await;
    let c = db.client().await;
    make_ordered(&c, "ord", false).await;
    let sink = Arc::new(Recorder::default());
    sink.script(
        "a-0",
        vec![Outcome::retry("HTTP 503"), Outcome::retry("HTTP 503")],
    );
    insert(&c, "a-0", "ord", "A", 0).await;
    insert(&c, "a-1", "ord", "A", 1).await;
    insert(&c, "b-0", "ord", "B", 0).await;
    insert(&c, "b-1", "ord", "B", 1).await;
    let w = start(&db, "worker", &["ord"], sink.clone());
    wait_delivered(&sink, 4).await;
    w.stop().await;

    assert_eq!(sink.sequence("A"), vec![0, 1]);
    assert_eq!(sink.sequence("B"), vec![0, 1]);
    assert!(
        sink.position("b-1") < sink.position("a-0"),
        "B is not held back by A's retries"
    );
    assert_eq!(event(&c, "a-0").await.retry_count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_head_releases_its_aggregate_unless_the_policy_blocks_it() {
    let db = TestDb::with_policies(&[("release", 0, 50), ("block", 0, 50)]).await;
    let c = db.client().await;
    make_ordered(&c, "release", false).await;
    make_ordered(&c, "block", true).await;
    let sink = Arc::new(Recorder::default());
    for id in ["r-0", "k-0", "j-0"] {
        sink.script(id, vec![Outcome::reject("HTTP 400")]);
    }
    insert(&c, "r-0", "release", "R", 0).await;
    insert(&c, "r-1", "release", "R", 1).await;
    insert(&c, "k-0", "block", "K", 0).await;
    insert(&c, "k-1", "block", "K", 1).await;
    insert(&c, "j-0", "block", "J", 0).await;
    insert(&c, "j-1", "block", "J", 1).await;
    let w = start(&db, "worker", &["release", "block"], sink.clone());

    // Release (the default): the next event goes ahead.
    wait_status(&c, "r-1", "SENT", LONG).await;
    assert_eq!(event(&c, "r-0").await.status, "FAILED");

    // Block: the aggregate is held, and says by what.
    wait_status(&c, "k-0", "FAILED", LONG).await;
    wait_status(&c, "j-0", "FAILED", LONG).await;
    let blocked = blocked_aggregates(&c).await;
    assert_eq!(
        blocked,
        vec![("J".into(), "j-0".into()), ("K".into(), "k-0".into())]
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(event(&c, "k-1").await.status, "PENDING");
    // Deleting the failed event (a purge, say) does not release the aggregate.
    c.execute(r#"DELETE FROM "OutboxEvent" WHERE "id" = 'k-0'"#, &[])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(event(&c, "k-1").await.status, "PENDING");
    // Discarding the head: the operator removes the block.
    c.execute(
        r#"DELETE FROM "OutboxBlockedAggregate" WHERE "aggregateId" = 'K'"#,
        &[],
    )
    .await
    .unwrap();
    wait_status(&c, "k-1", "SENT", LONG).await;
    // Replaying the head: back to PENDING and unblocked in one transaction; it goes first.
    c.batch_execute(
        r#"BEGIN;
           UPDATE "OutboxEvent" SET "status" = 'PENDING', "retryCount" = 0, "nextRetryAt" = now(),
                  "processedAt" = NULL WHERE "id" = 'j-0';
           DELETE FROM "OutboxBlockedAggregate" WHERE "aggregateId" = 'J';
           COMMIT;"#,
    )
    .await
    .unwrap();
    wait_status(&c, "j-1", "SENT", LONG).await;
    w.stop().await;
    assert_eq!(sink.sequence("J"), vec![0, 1]);
    assert_eq!(sink.sequence("R"), vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_late_is_not_overtaken_by_a_later_one() {
    let db = TestDb::with_policies(&[("ord", 3, 50), ("free", 3, 50)]).await;
    let c = db.client().await;
    make_ordered(&c, "ord", false).await;
    let sink = Arc::new(Recorder::default());
    let w = start(&db, "worker", &["ord", "free"], sink.clone());

    // An aggregate that shares no lock bucket with L.
    let other: String = c
        .query_one(
            "SELECT a FROM unnest(ARRAY['M', 'N', 'O', 'P']) AS a WHERE hashtext(a) & 255 <> hashtext('L') & 255 LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    // A producer takes its place in the order first but commits last.
    let mut slow = db.client().await;
    let tx = slow.transaction().await.unwrap();
    insert(&tx, "late-0", "ord", "L", 0).await;
    insert(&c, "late-1", "ord", "L", 1).await;
    insert(&c, "free-1", "free", "L", 99).await;
    insert(&c, "other-0", "ord", &other, 0).await;
    // Unordered events, and ordered ones of other aggregates, keep flowing meanwhile.
    wait_status(&c, "free-1", "SENT", LONG).await;
    wait_status(&c, "other-0", "SENT", LONG).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        event(&c, "late-1").await.status,
        "PENDING",
        "waits while an earlier event may still commit"
    );
    tx.commit().await.unwrap();
    wait_status(&c, "late-1", "SENT", LONG).await;
    w.stop().await;
    assert_eq!(sink.sequence("L"), vec![99, 0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_policy_created_with_its_first_events_orders_them() {
    // No policy yet: the worker learns of it with the events themselves.
    let db = TestDb::with_policies(&[]).await;
    let sink = Arc::new(Recorder::default());
    let a = start(&db, "worker-a", &["late"], sink.clone());
    let b = start(&db, "worker-b", &["late"], sink.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    tx.batch_execute(
        r#"INSERT INTO "OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval", "ordered")
           VALUES ('late', 3, 50, 1000, true)"#,
    )
    .await
    .unwrap();
    for n in 0..20 {
        insert(&tx, &format!("l-{n}"), "late", "L", n).await;
    }
    tx.commit().await.unwrap();
    wait_delivered(&sink, 20).await;
    a.stop().await;
    b.stop().await;
    assert_eq!(sink.sequence("L"), (0..20).collect::<Vec<_>>());
    assert_eq!(sink.overlaps.load(Ordering::SeqCst), 0);
}
