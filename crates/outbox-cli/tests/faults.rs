//! Stops, crashes, several workers, and a database restart: nothing is lost, nothing is
//! left PROCESSING, every event is delivered.

use outbox_testkit::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const KEY: &str = "audit.record-auth-log";
const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_deliveries_finish_and_loses_nothing() {
    let db = TestDb::with_policies(&[(KEY, 5, 50)]).await;
    let server =
        TestServer::start(|_, _| Reply::status(200).after(Duration::from_millis(1500))).await;
    let config = http_config(
        &db.url,
        &server.url("/"),
        &[KEY],
        "concurrency = 4\nshutdown_timeout = \"20s\"",
    );
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    let c = db.client().await;
    insert_many(&c, "e", KEY, 10).await;
    wait_for("deliveries in flight", LONG, || async {
        server.count() >= 4
    })
    .await;

    worker.stop().await;
    let counts = by_status(&c).await;
    assert_eq!(
        counts.get("PROCESSING"),
        None,
        "nothing left PROCESSING: {counts:?}"
    );
    let sent = counts.get("SENT").copied().unwrap_or(0);
    let pending = counts.get("PENDING").copied().unwrap_or(0);
    assert_eq!(sent + pending, 10, "{counts:?}");
    assert!(sent >= 4, "the in-flight deliveries finished: {counts:?}");
    let received: std::collections::HashSet<String> =
        server.requests().iter().map(|r| r.id()).collect();
    assert_eq!(
        received.len() as i64,
        sent,
        "exactly the delivered events are SENT"
    );
    assert!(
        worker.logs().contains("Received stop signal"),
        "{}",
        worker.logs()
    );

    // A new worker delivers the rest.
    let mut next = WorkerProcess::start(&config);
    wait_for("all ten SENT", LONG, || async {
        count_status(&c, "SENT").await == 10
    })
    .await;
    next.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_outlasting_the_shutdown_timeout_are_given_back() {
    let db = TestDb::with_policies(&[(KEY, 5, 50)]).await;
    let server = TestServer::start(|_, _| Reply::status(200).after(Duration::from_secs(4))).await;
    let config = http_config(
        &db.url,
        &server.url("/"),
        &[KEY],
        "concurrency = 2\nshutdown_timeout = \"300ms\"",
    );
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    let c = db.client().await;
    insert_many(&c, "slow", KEY, 2).await;
    wait_for("both deliveries in flight", LONG, || async {
        server.count() == 2
    })
    .await;
    let started = Instant::now();
    worker.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped after the timeout, not the delivery"
    );
    for id in ["slow-1", "slow-2"] {
        let row = event(&c, id).await;
        assert_eq!(row.status, "PENDING", "{row:?}");
        assert_eq!(row.locked_by, None);
        assert_eq!(row.retry_count, 0, "a clean stop does not spend a retry");
        assert!(row
            .last_error
            .unwrap()
            .contains("interrupted by worker shutdown"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_events_are_delivered_by_another_after_the_lease() {
    let db = TestDb::with_policies(&[(KEY, 5, 50)]).await;
    let server =
        TestServer::start(|_, _| Reply::status(200).after(Duration::from_millis(700))).await;
    let config = http_config(
        &db.url,
        &server.url("/"),
        &[KEY],
        "concurrency = 5\nbatch_size = 5\nlease = \"2s\"",
    )
    .replace("timeout = \"5s\"", "timeout = \"1500ms\"");
    let mut doomed = WorkerProcess::start(&config);
    doomed.wait_started().await;
    let c = db.client().await;
    insert_many(&c, "k", KEY, 20).await;
    wait_for("a batch in flight", LONG, || async { server.count() >= 3 }).await;
    doomed.signal("KILL");
    assert_eq!(doomed.wait_exit(LONG).await, None, "killed by a signal");
    let held: Vec<String> = c
        .query(
            r#"SELECT "id" FROM "OutboxEvent" WHERE "status" = 'PROCESSING'"#,
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!held.is_empty(), "the killed worker held leases");

    let mut rescuer = WorkerProcess::start(&with_admin(&config));
    wait_for("all twenty SENT", LONG, || async {
        count_status(&c, "SENT").await == 20
    })
    .await;
    let (_, metrics) = http_get(&admin_addr(&rescuer).await, "/metrics")
        .await
        .unwrap();
    assert_eq!(
        sample(&metrics, "outbox_leases_expired_total"),
        held.len() as f64,
        "the rescuer counts the leases it took back:\n{metrics}"
    );
    for id in &held {
        let row = event(&c, id).await;
        assert!(
            row.retry_count >= 1,
            "the interrupted delivery counts as an attempt: {row:?}"
        );
        assert!(
            row.last_error
                .as_deref()
                .unwrap_or("")
                .contains("lease expired"),
            "{row:?}"
        );
    }
    let ids: std::collections::HashSet<String> = server.requests().iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), 20, "every event reached the server");
    rescuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_deliver_mixed_traffic_exactly_once_and_ordered_aggregates_in_order() {
    const ORDERED: &str = "ledger.entry-posted";
    let db = TestDb::with_policies(&[(KEY, 5, 50), (ORDERED, 5, 50)]).await;
    let c = db.client().await;
    make_ordered(&c, ORDERED, false).await;
    let server = TestServer::always(200).await;
    let config = http_config(
        &db.url,
        &server.url("/"),
        &[KEY, ORDERED],
        "concurrency = 16\nbatch_size = 50",
    );
    let mut workers: Vec<WorkerProcess> = (0..3).map(|_| WorkerProcess::start(&config)).collect();
    for w in &workers {
        w.wait_started().await;
    }
    let started = Instant::now();
    for chunk in 0..6 {
        insert_many(&c, &format!("b{chunk}"), KEY, 500).await;
        // 250 ordered events per chunk over 50 aggregates, numbered in insertion order.
        c.execute(
            r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload")
               SELECT 'o' || $1::int4 || '-' || i, 'EntryPosted', 'ledger.entry', 'account-' || (i % 50), $2,
                      jsonb_build_object('n', $1::int4 * 1000 + i)
                 FROM generate_series(1, 250) AS i"#,
            &[&chunk, &ORDERED],
        )
        .await
        .unwrap();
    }
    wait_for("4500 SENT", Duration::from_secs(180), || async {
        count_status(&c, "SENT").await == 4500
    })
    .await;
    let elapsed = started.elapsed();
    println!(
        "4500 events (1500 ordered) through 3 workers (debug build, HTTP sink) in {elapsed:?}"
    );
    let requests = server.requests();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in &requests {
        *per_id.entry(r.id()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 4500);
    let dupes: Vec<_> = per_id.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dupes.is_empty(), "delivered more than once: {dupes:?}");
    // Each aggregate's events reached the server in insertion order.
    let mut last: HashMap<String, i64> = HashMap::new();
    for r in requests.iter().filter(|r| r.body["routingKey"] == ORDERED) {
        let aggregate = r.body["aggregateId"].as_str().unwrap().to_string();
        let n = r.body["payload"]["n"].as_i64().unwrap();
        if let Some(prev) = last.insert(aggregate.clone(), n) {
            assert!(prev < n, "{aggregate}: {n} arrived after {prev}");
        }
    }
    assert_eq!(last.len(), 50);
    let mut busy = 0;
    for w in &mut workers {
        w.stop().await;
        if w.logs().contains("📦 [OutboxWorker] Processing") {
            busy += 1;
        }
    }
    assert!(
        busy >= 2,
        "the work was shared ({busy} of 3 workers claimed events)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_survives_a_database_restart_and_finishes() {
    let cluster = PrivateCluster::start();
    let db = TestDb::on(&cluster.url("postgres"), &cluster.base()).await;
    db.migrate().await;
    let c = db.client().await;
    insert_policy(&c, KEY, 5, 100, 1000).await;
    let server =
        TestServer::start(|_, _| Reply::status(200).after(Duration::from_millis(100))).await;
    let config = http_config(&db.url, &server.url("/"), &[KEY], "concurrency = 2");
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    insert_many(&c, "before", KEY, 40).await;
    wait_for("some deliveries", LONG, || async { server.count() >= 5 }).await;

    cluster.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        worker.wait_exit_now().is_none(),
        "the worker is still running while the database is down"
    );
    cluster.restart();

    let c = db.client().await;
    insert_many(&c, "after", KEY, 10).await;
    wait_for("all fifty SENT after the restart", LONG, || async {
        count_status(&c, "SENT").await == 50
    })
    .await;
    let logs = worker.logs();
    assert!(
        logs.contains("Cannot claim events") || logs.contains("Could not record delivery results"),
        "{logs}"
    );
    assert!(logs.contains("Database reachable again"), "{logs}");
    worker.stop().await;
}
