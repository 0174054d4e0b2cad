//! Breaking things while events flow: workers killed with SIGKILL at random moments, and
//! every database connection of the workers killed with pg_terminate_backend. At the end
//! every event is SENT, ordered aggregates arrived in order, and duplicates are counted.

use outbox_testkit::*;
use std::collections::HashMap;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";
const ORDERED: &str = "ledger.entry-posted";
const LONG: Duration = Duration::from_secs(120);

/// A database with an unordered and an ordered policy.
async fn mixed_db() -> (TestDb, Client) {
    let db = TestDb::with_policies(&[(KEY, 20, 100), (ORDERED, 20, 100)]).await;
    let c = db.client().await;
    make_ordered(&c, ORDERED, false).await;
    (db, c)
}

/// Ordered events numbered `from..from + n` (ids `o-<number>`), over `aggregates`
/// aggregates, in insertion order.
async fn insert_ordered(c: &Client, from: i32, n: i32, aggregates: i32) {
    c.execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload")
           SELECT 'o-' || i, 'EntryPosted', 'ledger.entry', 'account-' || (i % $4), $2,
                  jsonb_build_object('n', i)
             FROM generate_series($1::int4, $1::int4 + $3::int4 - 1) AS i"#,
        &[&from, &ORDERED, &n, &aggregates],
    )
    .await
    .unwrap();
}

/// Checks what the server saw: every id at least once; for each aggregate, arrivals never go
/// back to an event earlier than one already delivered (a redelivery of the latest is
/// allowed). Returns the number of duplicate deliveries.
fn check_deliveries(server: &TestServer, expected: usize) -> usize {
    let requests = server.requests();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in &requests {
        *per_id.entry(r.id()).or_default() += 1;
    }
    assert_eq!(per_id.len(), expected, "every event reached the server");
    let mut latest: HashMap<String, i64> = HashMap::new();
    for r in requests.iter().filter(|r| r.body["routingKey"] == ORDERED) {
        let aggregate = r.body["aggregateId"].as_str().unwrap().to_string();
        let n = r.body["payload"]["n"].as_i64().unwrap();
        if let Some(prev) = latest.insert(aggregate.clone(), n) {
            assert!(prev <= n, "{aggregate}: event {n} arrived after {prev}");
        }
    }
    per_id.values().map(|n| n - 1).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_at_random_lose_nothing_and_keep_aggregates_in_order() {
    let (db, c) = mixed_db().await;
    let server = TestServer::start(|_, _| Reply::status(200).after(Duration::from_millis(5))).await;
    let config = http_config(
        &db.url,
        &server.url("/"),
        &[KEY, ORDERED],
        "concurrency = 8\nbatch_size = 20\nlease = \"2s\"",
    )
    .replace("timeout = \"5s\"", "timeout = \"1s\"");
    let mut workers: Vec<WorkerProcess> = (0..3).map(|_| WorkerProcess::start(&config)).collect();
    for w in &workers {
        w.wait_started().await;
    }
    insert_many(&c, "u", KEY, 1000).await;
    insert_ordered(&c, 0, 500, 25).await;

    let mut kills = 0;
    for round in 0..8 {
        tokio::time::sleep(Duration::from_millis(200 + rand_ms(600))).await;
        let victim = (round * 7 + rand_ms(3) as usize) % workers.len();
        workers[victim].signal("KILL");
        workers[victim].wait_exit(Duration::from_secs(10)).await;
        kills += 1;
        workers[victim] = WorkerProcess::start(&config);
        // Started before the next round: a SIGTERM that reaches a process before it has
        // set up its signal handling (the final stop, on a busy machine) ends it uncleanly.
        workers[victim].wait_started().await;
    }
    wait_for("all 1500 SENT", LONG, || async {
        count_status(&c, "SENT").await == 1500
    })
    .await;
    let duplicates = check_deliveries(&server, 1500);
    println!("{kills} SIGKILLs: 1500 events, {duplicates} delivered twice (at least once)");
    // A duplicate needs a delivery made but not yet recorded when a kill hit: at most the
    // events a worker holds (concurrency + 2 × batch_size = 48) per kill.
    assert!(duplicates <= kills * 48, "{duplicates} duplicates");
    for w in &mut workers {
        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_are_reopened_and_listen_resumes() {
    let (db, c) = mixed_db().await;
    let server = TestServer::start(|_, _| Reply::status(200).after(Duration::from_millis(2))).await;
    // A long poll interval: only NOTIFY (and the claim after reconnecting) can be fast.
    let config = http_config(
        &db.url,
        &server.url("/"),
        &[KEY, ORDERED],
        "concurrency = 8\nbatch_size = 20",
    )
    .replace("poll_interval = \"100ms\"", "poll_interval = \"60s\"");
    let mut workers = vec![WorkerProcess::start(&config), WorkerProcess::start(&config)];
    for w in &workers {
        w.wait_started().await;
    }
    let terminate = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    );
    let others = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    );
    let admin = db.client().await;
    for round in 0..6 {
        insert_many(&admin, &format!("u{round}"), KEY, 100).await;
        insert_ordered(&admin, round * 50, 50, 10).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Each round kills connections the workers have opened again since the last one.
        wait_for("the workers to reconnect", LONG, || async {
            admin
                .query_one(&others, &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
                > 0
        })
        .await;
        let killed: i64 = admin.query_one(&terminate, &[]).await.unwrap().get(0);
        assert!(killed > 0);
    }
    // `c` was terminated too (only `admin` is spared).
    drop(c);
    let c = db.client().await;
    wait_for("all 900 SENT", LONG, || async {
        count_status(&c, "SENT").await == 900
    })
    .await;
    check_deliveries(&server, 900);
    // LISTEN is back: a new event is delivered long before the 60 s poll.
    tokio::time::sleep(Duration::from_secs(1)).await;
    insert_event(&c, "after", KEY).await;
    wait_status(&c, "after", "SENT", Duration::from_secs(10)).await;
    for w in &mut workers {
        w.stop().await;
        let logs = w.logs();
        assert!(logs.contains("LISTEN connection lost"), "{logs}");
    }
}

fn rand_ms(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos % max.max(1)
}
