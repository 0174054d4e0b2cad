//! Several workers on one outbox: one answers new-event notifications, so an insert costs
//! one claim however many run; the others join when it calls for help, and one of them
//! takes its place when it dies.

use outbox_testkit::*;
use std::time::{Duration, Instant};

const KEY: &str = "audit.record-auth-log";
const LONG: Duration = Duration::from_secs(60);

/// Claim statements a worker has run, from its /metrics.
async fn claims(worker: &WorkerProcess) -> f64 {
    let addr = admin_addr(worker).await;
    let (_, text) = http_get(&addr, "/metrics").await.unwrap();
    sample(&text, "outbox_claims_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_spend_about_one_claim_per_event_at_a_steady_rate() {
    let db = TestDb::with_policies(&[(KEY, 3, 50)]).await;
    let c = db.client().await;
    let server = TestServer::always(200).await;
    let config = with_admin(&http_config(&db.url, &server.url("/"), &[KEY], ""));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let w = WorkerProcess::start(&config);
        w.wait_started().await;
        workers.push(w);
    }
    let mut before = 0.0;
    for w in &workers {
        before += claims(w).await;
    }
    // 150 inserts, one every 10 ms.
    for i in 0..150 {
        insert_event(&c, &format!("e-{i}"), KEY).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_for("150 SENT", LONG, || async {
        count_status(&c, "SENT").await == 150
    })
    .await;
    let mut after = 0.0;
    for w in &workers {
        after += claims(w).await;
    }
    let spent = after - before;
    // Every worker woken by every insert spent ~3 claims per event; the followers' polls
    // (100 ms) add a few dozen in this test's ~2 s.
    assert!(
        spent <= 150.0 * 1.2 + 60.0,
        "{spent} claims for 150 events by 3 workers"
    );
    for w in &mut workers {
        w.stop().await;
    }
    assert_eq!(server.count(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leading_worker_dies_another_answers_notifications() {
    let db = TestDb::with_policies(&[(KEY, 3, 50)]).await;
    let c = db.client().await;
    let server = TestServer::always(200).await;
    // A long poll: an event reached only by polling would wait up to 10 s.
    let config = http_config(&db.url, &server.url("/"), &[KEY], "")
        .replace("poll_interval = \"100ms\"", "poll_interval = \"10s\"");
    let mut first = WorkerProcess::start(&config);
    first.wait_started().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = WorkerProcess::start(&config);
    second.wait_started().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The first leads: an insert is delivered at once.
    insert_event(&c, "before", KEY).await;
    wait_status(&c, "before", "SENT", Duration::from_secs(2)).await;
    first.signal("KILL");
    first.wait_exit(LONG).await;
    // The second tries for the lead every second and gets it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..5 {
        let id = format!("after-{i}");
        let inserted = Instant::now();
        insert_event(&c, &id, KEY).await;
        wait_status(&c, &id, "SENT", Duration::from_secs(20)).await;
        assert!(
            inserted.elapsed() < Duration::from_secs(5),
            "{id} took {:?}: nobody answered the notification",
            inserted.elapsed()
        );
    }
    second.stop().await;
}
