//! Retention by the worker and `outbox purge` by hand.

use outbox_testkit::*;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_only_old_rows_of_the_given_status_in_batches() {
    let db = TestDb::with_policies(&[(KEY, 0, 10)]).await;
    let c = db.client().await;
    insert_many(&c, "old-sent", KEY, 250).await;
    insert_many(&c, "new-sent", KEY, 20).await;
    insert_many(&c, "old-failed", KEY, 30).await;
    c.batch_execute(
        r#"UPDATE "OutboxEvent" SET "status" = 'SENT', "processedAt" = now() - interval '2 days' WHERE "id" LIKE 'old-sent-%';
           UPDATE "OutboxEvent" SET "status" = 'SENT', "processedAt" = now() WHERE "id" LIKE 'new-sent-%';
           UPDATE "OutboxEvent" SET "status" = 'FAILED', "processedAt" = now() - interval '2 days' WHERE "id" LIKE 'old-failed-%';"#,
    )
    .await
    .unwrap();
    let out = outbox(&[
        "--database-url",
        &db.url,
        "purge",
        "--status",
        "SENT",
        "--older-than",
        "1d",
        "--batch-size",
        "100",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Deleted 250 SENT row(s) older than 1d"),
        "{text}"
    );
    let counts = by_status(&c).await;
    assert_eq!(counts.get("SENT"), Some(&20));
    assert_eq!(counts.get("FAILED"), Some(&30));

    let out = outbox(&[
        "--database-url",
        &db.url,
        "purge",
        "--status",
        "FAILED",
        "--older-than",
        "soon",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--older-than: 'soon'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_deletes_sent_rows_past_their_retention_and_keeps_failed_ones() {
    let db = TestDb::with_policies(&[(KEY, 0, 10)]).await;
    let server = TestServer::start(|s, _| {
        if s.id().starts_with("bad") {
            Reply::status(400)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let mut config = http_config(&db.url, &server.url("/"), &[KEY], "");
    config.push_str("\n[retention]\nsent = \"1s\"\ninterval = \"1s\"\nbatch_size = 7\n");
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    let c = db.client().await;
    insert_many(&c, "ok", KEY, 40).await;
    insert_many(&c, "bad", KEY, 3).await;
    wait_for(
        "SENT rows purged, FAILED kept",
        Duration::from_secs(30),
        || async {
            let counts = by_status(&c).await;
            !counts.contains_key("SENT") && counts.get("FAILED") == Some(&3)
        },
    )
    .await;
    assert_eq!(server.count(), 43);
    worker.stop().await;
    assert!(
        worker.logs().contains("Retention deleted old rows"),
        "{}",
        worker.logs()
    );
}
