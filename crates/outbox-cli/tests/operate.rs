//! The operator commands against a real database with a known set of events: outputs are
//! checked, not just exit codes.

use outbox_testkit::*;
use serde_json::Value;
use std::time::Duration;

const AUDIT: &str = "audit.record-auth-log";
const BILLING: &str = "billing.charge";

/// A database with two policies and a known mix of events:
/// audit: p1 PENDING, f1 FAILED (HTTP 503), f2 FAILED (HTTP 400); billing: s1 SENT,
/// r1 PENDING after 2 failed attempts, f3 FAILED (timeout).
async fn known_db() -> (TestDb, Client) {
    let db = TestDb::with_policies(&[(AUDIT, 5, 50), (BILLING, 3, 50)]).await;
    let c = db.client().await;
    c.batch_execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "status", "retryCount", "lastError", "processedAt", "occurredAt", "nextRetryAt") VALUES
           ('p1', 'LoggedIn', 'auth', 'user-1', 'audit.record-auth-log', 'PENDING', 0, NULL, NULL, now(), now() + interval '1 hour'),
           ('f1', 'LoggedIn', 'auth', 'user-2', 'audit.record-auth-log', 'FAILED', 5, 'HTTP 503: upstream down', now() - interval '1 minute', now() - interval '2 minutes', now()),
           ('f2', 'LoggedIn', 'auth', 'user-3', 'audit.record-auth-log', 'FAILED', 0, 'permanent failure: HTTP 400', now(), now() - interval '3 days', now()),
           ('s1', 'Charged', 'billing', 'order-1', 'billing.charge', 'SENT', 0, NULL, now(), now(), now()),
           ('r1', 'Charged', 'billing', 'order-2', 'billing.charge', 'PENDING', 2, 'timeout', NULL, now(), now() + interval '1 hour'),
           ('f3', 'Charged', 'billing', 'order-3', 'billing.charge', 'FAILED', 3, 'retries exhausted: timeout', now(), now(), now())"#,
    )
    .await
    .unwrap();
    (db, c)
}

/// `outbox --database-url URL ARGS` with a config routing both keys to a blackhole (or to
/// `url` for the audit key); returns (exit code, stdout, stderr).
fn cli(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let dir = TempDir::new();
    let cfg = dir.write(
        "outbox.toml",
        &format!(
            "[database]\nurl = \"{}\"\n[routes]\n\"{AUDIT}\" = {{ sink = \"bh\" }}\n\"{BILLING}\" = {{ sink = \"bh\" }}\n[sinks.bh]\ntype = \"blackhole\"\n",
            db.url
        ),
    );
    let mut all = vec!["--config", cfg.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = outbox(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A worker routing both keys to `server`, started.
async fn start_worker(db: &TestDb, server: &TestServer) -> WorkerProcess {
    let worker = WorkerProcess::start(&http_config(
        &db.url,
        &server.url("/"),
        &[AUDIT, BILLING],
        "",
    ));
    worker.wait_started().await;
    worker
}

async fn blocked_count(c: &Client) -> i64 {
    c.query_one(r#"SELECT count(*) FROM "OutboxBlockedAggregate""#, &[])
        .await
        .unwrap()
        .get(0)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_counts_per_key_and_status_and_fits_80_columns() {
    let (db, _c) = known_db().await;
    let (code, out, err) = cli(&db, &["stats", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        doc["byStatus"],
        serde_json::json!({"PENDING": 2, "PROCESSING": 0, "SENT": 1, "FAILED": 3})
    );
    assert_eq!(doc["retrying"], 1);
    let billing = doc["byRoutingKey"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["routingKey"] == BILLING)
        .unwrap();
    assert_eq!(billing["sent"], 1);
    assert_eq!(billing["failed"], 1);
    assert_eq!(billing["pending"], 1);
    assert!(doc["oldestPendingSeconds"].as_f64().is_some());

    let (code, out, _) = cli(&db, &["stats"]);
    assert_eq!(code, 0);
    for line in out.lines() {
        assert!(line.chars().count() <= 80, "too wide: {line}");
    }
    let total = out.lines().find(|l| l.starts_with("total")).unwrap();
    let fields: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(&fields[1..6], ["2", "0", "1", "3", "1"], "{total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_list_filters_and_show_prints_every_column() {
    let (db, _c) = known_db().await;
    let list = |args: &[&str]| {
        let mut all = vec!["events", "list", "--format", "json"];
        all.extend_from_slice(args);
        let (code, out, err) = cli(&db, &all);
        assert_eq!(code, 0, "{err}");
        ids(&json_lines(&out))
    };
    let mut all = list(&[]);
    all.sort();
    assert_eq!(all, ["f1", "f2", "f3", "p1", "r1", "s1"]);
    let mut failed = list(&["--status", "FAILED"]);
    failed.sort();
    assert_eq!(failed, ["f1", "f2", "f3"]);
    assert_eq!(
        list(&["--routing-key", BILLING, "--status", "PENDING"]),
        ["r1"]
    );
    assert_eq!(list(&["--aggregate-id", "user-3"]), ["f2"]);
    let mut recent = list(&["--since", "1h"]);
    recent.sort();
    assert_eq!(
        recent,
        ["f1", "f3", "p1", "r1", "s1"],
        "f2 occurred 3 days ago"
    );
    assert_eq!(list(&["--limit", "2"]).len(), 2);

    let (code, out, _) = cli(&db, &["events", "show", "r1", "--format", "json"]);
    assert_eq!(code, 0);
    let e: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(e["status"], "PENDING");
    assert_eq!(e["retryCount"], 2);
    assert_eq!(e["attempts"], 2);
    assert_eq!(e["lastError"], "timeout");
    assert!(e["nextAttemptAt"].as_str().is_some());
    let (code, out, _) = cli(&db, &["events", "show", "f1"]);
    assert_eq!(code, 0);
    assert_contains_all(
        &out,
        &[
            "lastError: HTTP 503: upstream down",
            "attempts: 6",
            "routingKey: audit.record-auth-log",
            "aggregateId: user-2",
        ],
    );
    let (code, _, err) = cli(&db, &["events", "show", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no event with id 'nope'"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_dry_run_changes_nothing_and_a_replayed_event_is_delivered() {
    let (db, c) = known_db().await;
    let (code, out, _) = cli(&db, &["dlq", "list", "--format", "json"]);
    assert_eq!(code, 0);
    let dead = json_lines(&out);
    assert_eq!(ids(&dead), ["f3", "f2", "f1"], "newest failure first");
    let (_, out, _) = cli(&db, &["dlq", "list", "--error-contains", "upstream"]);
    assert!(out.contains("f1") && !out.contains("f2"), "{out}");

    let before = by_status(&c).await;
    let (code, out, _) = cli(
        &db,
        &["dlq", "replay", "--error-contains", "HTTP", "--dry-run"],
    );
    assert_eq!(code, 0);
    assert_contains_all(&out, &["2 FAILED event(s) match", "f1", "f2", "dry run"]);
    assert_eq!(by_status(&c).await, before, "a dry run changes nothing");

    let (code, _, err) = cli(&db, &["dlq", "replay"]);
    assert_eq!(code, 2, "replaying everything needs a selector: {err}");

    let (code, out, err) = cli(&db, &["dlq", "replay", "--id", "f1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Replayed 1 FAILED event(s)"), "{out}");
    let row = event(&c, "f1").await;
    assert_eq!((row.status.as_str(), row.retry_count), ("PENDING", 0));
    let audit = text_pairs(
        &c,
        r#"SELECT "action", "eventId" FROM "OutboxAudit" ORDER BY "id""#,
    )
    .await;
    assert_eq!(audit, [("replay".to_string(), "f1".to_string())]);

    // A worker picks the replayed event up.
    let server = TestServer::always(200).await;
    let mut worker = start_worker(&db, &server).await;
    wait_status(&c, "f1", "SENT", Duration::from_secs(30)).await;
    worker.stop().await;
    assert_eq!(event(&c, "f2").await.status, "FAILED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_purge_deletes_exactly_the_filtered_rows_and_asks_first() {
    let (db, c) = known_db().await;
    // No terminal to ask on, no --yes: refused.
    let (code, _, err) = cli(&db, &["dlq", "purge", "--routing-key", AUDIT]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(count_status(&c, "FAILED").await, 3);

    let (code, out, err) = cli(&db, &["dlq", "purge", "--routing-key", AUDIT, "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Deleted 2 FAILED event(s)"), "{out}");
    let left: Vec<String> = c
        .query(r#"SELECT "id" FROM "OutboxEvent" ORDER BY 1"#, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["f3", "p1", "r1", "s1"]);
    let audited: i64 = c
        .query_one(
            r#"SELECT count(*) FROM "OutboxAudit" WHERE "action" = 'purge'"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_pause_holds_events_and_resume_lets_them_go() {
    let (db, c) = known_db().await;
    let server = TestServer::always(200).await;
    let mut worker = start_worker(&db, &server).await;

    let (code, out, err) = cli(&db, &["policy", "pause", BILLING]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Paused 'billing.charge'"), "{out}");
    let (_, out, _) = cli(&db, &["policy", "list", "--format", "json"]);
    let policies = json_lines(&out);
    let billing = policies
        .iter()
        .find(|p| p["routingKey"] == BILLING)
        .unwrap();
    assert_eq!(billing["paused"], true);
    assert_eq!(billing["sink"], "bh");
    let (_, out, _) = cli(&db, &["policy", "list"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with(BILLING) && l.ends_with("PAUSED")),
        "{out}"
    );

    insert_event(&c, "while-paused", BILLING).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        event(&c, "while-paused").await.status,
        "PENDING",
        "{}",
        worker.logs()
    );
    let (code, _, _) = cli(&db, &["policy", "resume", BILLING]);
    assert_eq!(code, 0);
    wait_status(&c, "while-paused", "SENT", Duration::from_secs(30)).await;
    let (code, _, err) = cli(&db, &["policy", "pause", "no.such.key"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no OutboxRetryPolicy row for routingKey 'no.such.key'"),
        "{err}"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_aggregate_is_listed_and_released_by_unblock() {
    let (db, c) = known_db().await;
    c.batch_execute(
        r#"INSERT INTO "OutboxBlockedAggregate" ("aggregateId", "eventId", "routingKey", "reason")
           VALUES ('order-3', 'f3', 'billing.charge', 'retries exhausted: timeout')"#,
    )
    .await
    .unwrap();
    let (_, out, _) = cli(&db, &["dlq", "list"]);
    assert!(out.contains("order-3 by f3"), "{out}");
    let (_, out, _) = cli(&db, &["stats", "--format", "json"]);
    let doc: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(doc["blockedAggregates"][0]["aggregateId"], "order-3");
    let (code, out, _) = cli(
        &db,
        &[
            "dlq",
            "unblock",
            "--aggregate-id",
            "order-3",
            "--aggregate-id",
            "order-9",
        ],
    );
    assert_eq!(code, 0);
    assert_contains_all(
        &out,
        &[
            "Released aggregate order-3",
            "Aggregate order-9 was not blocked",
        ],
    );
    assert_eq!(blocked_count(&c).await, 0);
    // Replaying a blocking head releases its aggregate in the same statement.
    c.batch_execute(
        r#"INSERT INTO "OutboxBlockedAggregate" ("aggregateId", "eventId", "routingKey")
           VALUES ('order-3', 'f3', 'billing.charge')"#,
    )
    .await
    .unwrap();
    let (code, _, _) = cli(&db, &["dlq", "replay", "--id", "f3"]);
    assert_eq!(code, 0);
    assert_eq!(blocked_count(&c).await, 0);
}
