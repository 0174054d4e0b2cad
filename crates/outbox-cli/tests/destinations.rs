//! Destinations that fail for real: one that is down for a while (the circuit breaker stops
//! hammering it and its events are not charged attempts meanwhile), and one that accepts
//! requests and never answers (the sink timeout frees the slots; other routes keep flowing).

use outbox_testkit::*;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";
const LONG: Duration = Duration::from_secs(60);

async fn retry_counts(c: &Client) -> (i64, i64) {
    let r = c
        .query_one(
            r#"SELECT COALESCE(sum("retryCount"), 0)::int8, count(*) FILTER (WHERE "status" = 'FAILED')
                 FROM "OutboxEvent""#,
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_destination_opens_the_breaker_and_its_events_go_through_once_it_is_back() {
    // Without the breaker, 5 s of downtime would spend every retry: 8 attempts span 200 ms ×
    // (1 + 2 + 4 + …) capped at 400 ms, about 2.6 s.
    let db = TestDb::new().await;
    db.migrate().await;
    let c = db.client().await;
    insert_policy(&c, KEY, 7, 200, 400).await;
    let mut server = TestServer::always(200).await;
    let mut config = http_config(&db.url, &server.url("/"), &[KEY], "concurrency = 4");
    config
        .push_str("circuit_breaker = { failures = 3, cooldown = \"1s\", max_cooldown = \"2s\" }\n");
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;

    server.stop().await;
    insert_many(&c, "down", KEY, 30).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (charged, failed) = retry_counts(&c).await;
    assert_eq!(
        failed, 0,
        "no event used up its retries while the breaker was open"
    );
    // Charged: the failures that opened it (3), those in flight then (≤ 4), and one probe per
    // cooldown (1 s, then 2 s each: at most 4 in 5 s).
    assert!(
        charged <= 3 + 4 + 4,
        "{charged} attempts charged in 5 s of downtime"
    );
    assert_eq!(count_status(&c, "PENDING").await, 30);

    server.restart().await;
    wait_for("all 30 SENT once the destination is back", LONG, || async {
        count_status(&c, "SENT").await == 30
    })
    .await;
    let logs = worker.logs();
    assert!(logs.contains("Circuit breaker open"), "{logs}");
    assert!(logs.contains("Circuit breaker closed"), "{logs}");
    let ids: std::collections::HashSet<String> = server.requests().iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), 30);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_destination_times_out_frees_its_slots_and_other_routes_keep_flowing() {
    const SLOW: &str = "report.generate";
    let db = TestDb::with_policies(&[(KEY, 5, 50), (SLOW, 100, 100)]).await;
    let c = db.client().await;
    // Accepts every request and never answers.
    let hanging =
        TestServer::start(|_, _| Reply::status(200).after(Duration::from_secs(3600))).await;
    let good = TestServer::always(200).await;
    let config = format!(
        r#"[database]
url = "{}"

[worker]
poll_interval = "100ms"
concurrency = 4

[routes]
"{KEY}" = {{ sink = "api" }}
"{SLOW}" = {{ sink = "reports" }}

[sinks.api]
type = "http"
url = "{}"
timeout = "5s"

[sinks.reports]
type = "http"
url = "{}"
timeout = "500ms"
circuit_breaker = false
"#,
        db.url,
        good.url("/"),
        hanging.url("/")
    );
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;

    // The hanging route first: it could take every slot.
    insert_many(&c, "slow", SLOW, 8).await;
    insert_many(&c, "fast", KEY, 200).await;
    wait_for("the 200 fast events SENT", LONG, || async {
        c.query_one(
            r#"SELECT count(*) FROM "OutboxEvent" WHERE "routingKey" = $1 AND "status" = 'SENT'"#,
            &[&KEY],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
            == 200
    })
    .await;
    // And again, after many timeouts: no slot was lost.
    insert_many(&c, "later", KEY, 100).await;
    wait_for("100 more SENT", LONG, || async {
        count_status(&c, "SENT").await == 300
    })
    .await;
    let slow = c
        .query(
            r#"SELECT "retryCount", "lastError" FROM "OutboxEvent" WHERE "routingKey" = $1"#,
            &[&SLOW],
        )
        .await
        .unwrap();
    for r in &slow {
        let retries: i32 = r.get(0);
        let error: Option<String> = r.get(1);
        if retries > 0 {
            let error = error.unwrap_or_default();
            assert!(
                error.contains("timed out") || error.contains("timeout"),
                "{error}"
            );
        }
    }
    assert!(
        slow.iter().map(|r| r.get::<_, i32>(0)).sum::<i32>() >= 8,
        "every hanging delivery timed out and was retried"
    );
    assert!(hanging.count() >= 8);
    worker.stop().await;
}
