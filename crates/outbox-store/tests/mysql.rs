//! What the MySQL / MariaDB store promises beyond the conformance suite, on the local server:
//! an ordered event committed late is never overtaken by a later one of its aggregate.

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
