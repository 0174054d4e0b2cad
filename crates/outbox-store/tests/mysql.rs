//! What the MySQL / MariaDB store promises beyond the conformance suite, on the local server:
//! an ordered event committed late is never overtaken by a later one of its aggregate, and
//! the change watcher works on an app's table without `seq`.

use mysql_async::prelude::Queryable;
use outbox_core::{Migrator, Store};
use outbox_store::mysql::MysqlStore;
use outbox_testkit::MysqlDb;
use std::time::{Duration, Instant};

const KEY: &str = "ledger.entry";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_late_is_not_overtaken_by_a_later_one() {
    let db = MysqlDb::new().await;
    let store = MysqlStore::new(&db.url, 4).unwrap();
    store.deploy().await.unwrap();
    db.exec(&format!(
        "INSERT INTO `OutboxRetryPolicy` (`routingKey`, `maxRetries`, `retryInterval`, `maxInterval`, `ordered`) VALUES ('{KEY}', 3, 100, 1000, TRUE)"
    ))
    .await;
    let insert = |id: &str| {
        format!(
            "INSERT INTO `OutboxEvent` (`id`, `eventName`, `eventType`, `aggregateId`, `routingKey`, `nextRetryAt`)
             VALUES ('{id}', 'Posted', 'ledger.posted', 'account-1', '{KEY}', UTC_TIMESTAMP(3) - INTERVAL 1 SECOND)"
        )
    };
    // A producer inserts the first event and has not committed; another inserts and commits
    // the second.
    let mut slow = db.conn().await;
    slow.query_drop("BEGIN").await.unwrap();
    slow.query_drop(insert("first")).await.unwrap();
    db.exec(&insert("second")).await;

    let claim = {
        let store = MysqlStore::new(&db.url, 2).unwrap();
        tokio::spawn(async move {
            let started = Instant::now();
            let leased = store
                .claim_ordered("w", 10, Duration::from_secs(30), &[KEY.into()], &[])
                .await
                .unwrap();
            (leased, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    slow.query_drop("COMMIT").await.unwrap();
    let (leased, waited) = claim.await.unwrap();
    let ids: Vec<&str> = leased.events.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(ids, ["first"], "the head, committed late, goes first");
    assert!(
        waited >= Duration::from_millis(400),
        "the claim waited for the producer: {waited:?}"
    );
    // Unordered claims never wait for producers.
    db.exec("INSERT INTO `OutboxRetryPolicy` (`routingKey`, `maxRetries`, `retryInterval`, `maxInterval`) VALUES ('free', 3, 100, 1000)").await;
    let mut open = db.conn().await;
    open.query_drop("BEGIN").await.unwrap();
    open.query_drop(
        "INSERT INTO `OutboxEvent` (`id`, `eventName`, `eventType`, `aggregateId`, `routingKey`) VALUES ('pending', 'n', 't', 'a', 'free')",
    )
    .await
    .unwrap();
    db.exec("INSERT INTO `OutboxEvent` (`id`, `eventName`, `eventType`, `aggregateId`, `routingKey`, `nextRetryAt`) VALUES ('now', 'n', 't', 'b', 'free', UTC_TIMESTAMP(3) - INTERVAL 1 SECOND)").await;
    let started = Instant::now();
    // (The engine leaves the ordered keys out of its unordered claims.)
    let got = store
        .claim("w", 10, Duration::from_secs(30), &[KEY.into()])
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(got.events.len(), 1);
    assert_eq!(got.events[0].event.id, "now");
    open.query_drop("ROLLBACK").await.unwrap();
}

/// The change watcher on an app's table without `seq`: empty, then with several rows, it
/// keeps telling the worker about new due events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_watcher_works_on_an_app_table_without_seq() {
    let db = MysqlDb::new().await;
    db.exec(
        "CREATE TABLE outbox_event (id VARCHAR(64) PRIMARY KEY, event_name VARCHAR(100) NOT NULL,
             event_type VARCHAR(100) NOT NULL, aggregate_id VARCHAR(64) NOT NULL,
             routing_key VARCHAR(100) NOT NULL, payload LONGTEXT NOT NULL,
             status VARCHAR(16) NOT NULL DEFAULT 'PENDING',
             occurred_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
             retry_count INT NOT NULL DEFAULT 0,
             next_retry_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
             locked_by VARCHAR(100) NULL, locked_until DATETIME(3) NULL);
         CREATE TABLE outbox_retry_policy (routing_key VARCHAR(100) PRIMARY KEY,
             max_retries INT NOT NULL, retry_interval INT NOT NULL, max_interval INT NOT NULL);",
    )
    .await;
    let mut store = MysqlStore::new(&db.url, 4).unwrap();
    let adoption = store.adopt(&Default::default()).await.unwrap();
    assert!(adoption.usable, "{:?}", adoption.errors);
    let mut events = store.listen().await.unwrap();
    for round in 0..2 {
        db.exec(&format!(
            "INSERT INTO outbox_event (id, event_name, event_type, aggregate_id, routing_key, payload)
             VALUES ('a-{round}', 'n', 't', 'a', 'k', '{{}}'), ('b-{round}', 'n', 't', 'b', 'k', '{{}}')"
        ))
        .await;
        let told = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("the watcher tells of new events");
        assert_eq!(told, Some(outbox_core::Notification::Events));
        // Taken: nothing is due any more, so the next insert is news again.
        db.exec("UPDATE outbox_event SET status = 'SENT'").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        while tokio::time::timeout(Duration::from_millis(100), events.next())
            .await
            .is_ok()
        {}
    }
}

/// An app's id longer than the worker's own (VARCHAR(191)) is leased, and its result
/// recorded, like any other: the key lists are as long as the column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_id_of_an_app_table_is_leased_and_finished() {
    let db = MysqlDb::new().await;
    db.exec(
        "CREATE TABLE outbox_event (id VARCHAR(400) PRIMARY KEY, event_name VARCHAR(100) NOT NULL,
             event_type VARCHAR(100) NOT NULL, aggregate_id VARCHAR(64) NOT NULL,
             routing_key VARCHAR(100) NOT NULL, payload LONGTEXT NOT NULL,
             status VARCHAR(16) NOT NULL DEFAULT 'PENDING',
             occurred_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
             retry_count INT NOT NULL DEFAULT 0,
             next_retry_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
             locked_by VARCHAR(100) NULL, locked_until DATETIME(3) NULL, processed_at DATETIME(3) NULL);
         CREATE TABLE outbox_retry_policy (routing_key VARCHAR(100) PRIMARY KEY,
             max_retries INT NOT NULL, retry_interval INT NOT NULL, max_interval INT NOT NULL);",
    )
    .await;
    let long = "x".repeat(300);
    db.exec(&format!(
        "INSERT INTO outbox_event (id, event_name, event_type, aggregate_id, routing_key, payload, next_retry_at)
         VALUES ('{long}', 'n', 't', 'a', 'k', '{{}}', UTC_TIMESTAMP(3) - INTERVAL 1 SECOND),
                ('short', 'n', 't', 'b', 'k', '{{}}', UTC_TIMESTAMP(3) - INTERVAL 1 SECOND)"
    ))
    .await;
    let mut store = MysqlStore::new(&db.url, 4).unwrap();
    assert!(store.adopt(&Default::default()).await.unwrap().usable);
    let leased = store
        .claim("w", 10, Duration::from_secs(30), &[])
        .await
        .unwrap();
    assert_eq!(leased.events.len(), 2);
    let status = |id: String| {
        let db = &db;
        async move {
            let s: Option<String> = db
                .conn()
                .await
                .exec_first("SELECT status FROM outbox_event WHERE id = ?", (id,))
                .await
                .unwrap();
            s.unwrap()
        }
    };
    assert_eq!(
        status(long.clone()).await,
        "PROCESSING",
        "the long id is leased"
    );
    let done: Vec<outbox_core::Completion> = leased
        .events
        .iter()
        .map(|c| outbox_core::Completion {
            id: c.event.id.clone(),
            lease_owner: c.lease_owner.clone(),
            retry_count: c.event.retry_count,
            action: outbox_core::CompletionAction::Sent,
        })
        .collect();
    assert_eq!(store.complete(&done).await.unwrap(), 2);
    assert_eq!(status(long).await, "SENT");
    assert_eq!(status("short".into()).await, "SENT");
}

/// The relay's reads of `information_schema` open the outbox's own database only: a read
/// that scans every database is slow on a shared server and waits behind DDL anywhere on it
/// (three workers starting beside other schema changes once took more than 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_reads_open_one_database_only() {
    let db = MysqlDb::new().await;
    let name = db.url.rsplit('/').next().unwrap().to_string();
    let mut c = db.conn().await;
    for (sql, params) in outbox_store::mysql::catalog::ALL {
        let args: Vec<mysql_async::Value> = (0..*params).map(|_| name.as_str().into()).collect();
        let plan: Vec<mysql_async::Row> = c
            .exec(format!("EXPLAIN {sql}"), args)
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
        let extra: Vec<String> = plan
            .iter()
            .filter_map(|r| r.get_opt::<String, _>("Extra").and_then(Result::ok))
            .collect();
        assert!(
            !extra.iter().any(|e| e.contains("Scanned all databases")),
            "{sql} scans every database: {extra:?}"
        );
    }
}
