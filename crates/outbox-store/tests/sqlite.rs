//! What only SQLite lets through: any column may hold any type. A BLOB where text belongs
//! makes its own row unreadable; it never fails a claim, a listing, the statistics, the
//! backlog sample or a replay for the other events.

use outbox_core::{EventFilter, Migrator, Operator, Status, Store};
use outbox_store::sqlite::{SqliteOptions, SqliteStore};
use outbox_testkit::TempDir;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_in_a_text_column_spoils_its_own_row_only() {
    let dir = TempDir::new();
    let path = dir.0.join("hostile.db");
    let store = SqliteStore::new(&SqliteOptions { path: path.clone() });
    store.deploy().await.unwrap();
    store
        .run_script(
            r#"INSERT INTO "OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval") VALUES ('k', 0, 10, 100);
               INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey") VALUES ('good', 'n', 't', 'a', 'k');
               INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "lastError") VALUES ('bad', X'00FF', 't', 'b', X'6B00FF', X'01');"#,
        )
        .await
        .unwrap();
    let all = EventFilter::default();
    assert_eq!(store.list_events(&all, 10).await.unwrap().len(), 2);
    assert_eq!(store.count_events(&all).await.unwrap(), 2);
    assert_eq!(store.matching_ids(&all, None, 10).await.unwrap().len(), 2);
    let stats = store.stats(true).await.unwrap();
    assert!(
        stats
            .iter()
            .any(|k| k.routing_key == "(a blob)" && k.pending == 1),
        "{stats:?}"
    );
    let summary = store.pending_summary().await.unwrap();
    assert_eq!(summary.iter().map(|s| s.1).sum::<i64>(), 2);

    let got = store
        .claim("w", 10, Duration::from_secs(30), &[])
        .await
        .unwrap();
    assert_eq!(got.events.len(), 1);
    assert_eq!(got.events[0].event.id, "good");
    assert_eq!(got.unreadable.len(), 1);
    assert!(
        got.unreadable[0].problem.contains("column eventName"),
        "{:?}",
        got.unreadable
    );
    assert_eq!(store.fail_unreadable(&got.unreadable).await.unwrap(), 1);

    let failed = EventFilter {
        status: Some(Status::Failed),
        ..EventFilter::default()
    };
    let listed = store.list_events(&failed, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["routingKey"], "(a blob)");
    assert_eq!(
        store.replay_failed(&failed, 100, "tester").await.unwrap(),
        ["bad"]
    );
}
