//! One bad row never stops the relay: rows the driver cannot read, NULLs in app-owned
//! tables, payloads a cast would reject and broken policy rows, mixed into a thousand good
//! events. Every good event is SENT; each bad one ends FAILED with a lastError naming its
//! column (or, under a broken policy row, waits uncharged); nothing stays PROCESSING.

use outbox_testkit::*;
use std::collections::HashMap;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";
const LONG: Duration = Duration::from_secs(60);

/// `(id, status, lastError)` of every event whose id starts with `bad-`.
async fn bad_rows(c: &Client) -> HashMap<String, (String, String)> {
    c.query(
        r#"SELECT id::text, status::text, COALESCE("lastError", '') FROM "OutboxEvent"
            WHERE id::text LIKE 'bad-%'"#,
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2))))
    .collect()
}

/// Asserts that each of `expected` (id, status, text in lastError) holds.
fn assert_rows(rows: &HashMap<String, (String, String)>, expected: &[(&str, &str, &str)]) {
    for (id, status, error) in expected {
        let (got_status, got_error) = rows
            .get(*id)
            .unwrap_or_else(|| panic!("no row {id} in {rows:#?}"));
        assert_eq!(got_status, status, "{id}: {got_error}");
        assert!(
            got_error.contains(error),
            "{id}: lastError {got_error:?} lacks {error:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_rows_on_worker_owned_tables_fail_alone_and_the_thousand_others_are_sent() {
    const ORDERED: &str = "ordered.key";
    let db = TestDb::with_policies(&[(KEY, 3, 50), (ORDERED, 3, 50)]).await;
    let c = db.client().await;
    make_ordered(&c, ORDERED, true).await;
    let server = TestServer::always(200).await;
    insert_many(&c, "good", KEY, 500).await;
    // An unreadable head of a blocking ordered policy holds its aggregate back.
    c.batch_execute(&format!(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "occurredAt")
             VALUES ('bad-ordered-head', 'E', 't', 'agg-o', '{ORDERED}', '294000-01-01 00:00:00+00');
           INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey")
             VALUES ('bad-waits-behind', 'E', 't', 'agg-o', '{ORDERED}')"#
    ))
    .await
    .unwrap();
    // Values the database stores and the driver cannot read, each in a row of its own.
    c.batch_execute(&format!(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload", "occurredAt") VALUES
             ('bad-year', 'E', 't', 'a', '{KEY}', '{{}}', '294000-01-01 00:00:00+00'),
             ('bad-deep', 'E', 't', 'a', '{KEY}', ('{{"x":' || repeat('[', 300) || repeat(']', 300) || '}}')::jsonb, now()),
             ('bad-huge-number', 'E', 't', 'a', '{KEY}', '{{"n": 1e400}}', now())"#
    ))
    .await
    .unwrap();
    insert_many(&c, "more", KEY, 500).await;

    let config = http_config(
        &db.url,
        &server.url("/"),
        &[KEY, ORDERED],
        "batch_size = 50",
    );
    let mut worker = WorkerProcess::start(&config);
    // The good ones, and the two payloads f64 could not hold: forwarded as stored.
    wait_for("the good events SENT", LONG, || async {
        count_status(&c, "SENT").await == 1002
    })
    .await;
    wait_for("the bad rows FAILED", LONG, || async {
        count_status(&c, "FAILED").await == 2
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    worker.stop().await;
    assert_rows(
        &bad_rows(&c).await,
        &[
            (
                "bad-year",
                "FAILED",
                "unreadable row: column occurredAt: value too large to decode",
            ),
            ("bad-deep", "SENT", ""),
            ("bad-huge-number", "SENT", ""),
            ("bad-ordered-head", "FAILED", "column occurredAt"),
            ("bad-waits-behind", "PENDING", ""),
        ],
    );
    let blocked = blocked_aggregates(&c).await;
    assert_eq!(
        blocked,
        [("agg-o".to_string(), "bad-ordered-head".to_string())]
    );
    assert_eq!(count_status(&c, "PROCESSING").await, 0);
    assert_eq!(server.count(), 1002, "no unreadable row reached the sink");
    let deep = String::from_utf8_lossy(&server.requests_for("bad-deep")[0].raw).into_owned();
    assert!(
        // jsonb's own text form: a space after each colon.
        deep.contains(&format!(
            "\"payload\":{{\"x\": {}{}}}",
            "[".repeat(300),
            "]".repeat(300)
        )),
        "{deep}"
    );
    let huge = String::from_utf8_lossy(&server.requests_for("bad-huge-number")[0].raw).into_owned();
    assert!(
        huge.contains(&format!("\"payload\":{{\"n\": 1{}}}", "0".repeat(400))),
        "jsonb keeps 1e400 exact, and so does the relay: {huge}"
    );
    let logs = worker.logs();
    assert!(
        logs.contains("Event FAILED: the row cannot be read"),
        "{logs}"
    );
    assert!(!logs.contains("Cannot claim events"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_0005_repairs_infinite_values_and_then_refuses_them() {
    let db = TestDb::with_policies(&[(KEY, 3, 50)]).await;
    let c = db.client().await;
    // As before migration 0005: neither constraint, and one bad value of each kind.
    c.batch_execute(&format!(
        r#"ALTER TABLE "OutboxEvent" DROP CONSTRAINT "OutboxEvent_occurredAt_check";
           ALTER TABLE "OutboxRetryPolicy" DROP CONSTRAINT "OutboxRetryPolicy_backoffMultiplier_finite_check";
           DELETE FROM "_outbox_migrations" WHERE "version" = 5;
           INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "occurredAt")
                VALUES ('bad-inf', 'E', 't', 'a', '{KEY}', 'infinity'),
                       ('bad-sent-inf', 'E', 't', 'a', '{KEY}', '-infinity'),
                       ('ok', 'E', 't', 'a', '{KEY}', now());
           UPDATE "OutboxEvent" SET "status" = 'SENT' WHERE "id" = 'bad-sent-inf';
           UPDATE "OutboxRetryPolicy" SET "backoffMultiplier" = 'NaN', "ordered" = true, "blockOnFailure" = true;"#
    ))
    .await
    .unwrap();
    let out = outbox(&["--database-url", &db.url, "migrate", "deploy"]);
    assert!(out.status.success(), "{out:?}");
    assert_rows(
        &bad_rows(&c).await,
        &[
            ("bad-inf", "FAILED", "occurredAt was infinity, which no sink can carry; migration 0005 set it to createdAt and failed the event"),
            ("bad-sent-inf", "SENT", "occurredAt was -infinity"),
        ],
    );
    assert_eq!(event(&c, "ok").await.status, "PENDING");
    // The failed head of a blocking ordered policy holds its aggregate back.
    let blocked = blocked_aggregates(&c).await;
    assert_eq!(blocked, [("a".to_string(), "bad-inf".to_string())]);
    let m: f64 = c
        .query_one(
            r#"SELECT "backoffMultiplier" FROM "OutboxRetryPolicy""#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(m, 2.0);
    // From now on the database refuses them.
    let e = c
        .batch_execute(&format!(
            r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "occurredAt")
                VALUES ('x', 'E', 't', 'a', '{KEY}', 'infinity')"#
        ))
        .await
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("OutboxEvent_occurredAt_check"),
        "{e:?}"
    );
    let e = c
        .batch_execute(r#"UPDATE "OutboxRetryPolicy" SET "backoffMultiplier" = 'NaN'"#)
        .await
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("OutboxRetryPolicy_backoffMultiplier_finite_check"),
        "{e:?}"
    );
    let status = outbox(&["--database-url", &db.url, "migrate", "status"]);
    assert!(status.status.success(), "{status:?}");
}

/// An app-owned pair of tables as a lax application might have made them: most columns
/// allow NULL, the payload is `json` (not `jsonb`), maxRetries is a bigint, and the policy
/// table has a multiplier column without any check.
const LAX_TABLES: &str = r#"
CREATE TABLE "OutboxEvent" (
  id text PRIMARY KEY, "eventName" text, "eventType" text NOT NULL, "aggregateId" text NOT NULL,
  "routingKey" text, payload json NOT NULL DEFAULT '{}', headers json,
  status text NOT NULL DEFAULT 'PENDING', "occurredAt" timestamptz(3) NOT NULL DEFAULT now(),
  "retryCount" int DEFAULT 0, "maxRetries" bigint, "retryInterval" int, "maxInterval" int,
  "nextRetryAt" timestamptz(3) NOT NULL DEFAULT now(), "lockedBy" text, "lockedUntil" timestamptz(3),
  "lastError" text, "processedAt" timestamptz(3));
CREATE INDEX ON "OutboxEvent" ("nextRetryAt") WHERE status = 'PENDING';
CREATE INDEX ON "OutboxEvent" ("lockedUntil") WHERE status = 'PROCESSING';
CREATE TABLE "OutboxRetryPolicy" ("routingKey" text PRIMARY KEY, "maxRetries" int,
  "retryInterval" int, "maxInterval" int, "backoffMultiplier" double precision);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_rows_on_app_owned_tables_fail_alone_and_broken_policies_hold_only_their_events() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(LAX_TABLES).await.unwrap();
    c.batch_execute(&outbox_store::postgres::print::notify_triggers_sql())
        .await
        .unwrap();
    c.batch_execute(&format!(
        r#"INSERT INTO "OutboxRetryPolicy" VALUES
             ('{KEY}', 3, 50, 1000, 2),
             ('null.policy', NULL, 50, 1000, 2),
             ('nan.policy', 3, 50, 1000, 'NaN')"#
    ))
    .await
    .unwrap();
    let good = |prefix: &str| {
        format!(
            r#"INSERT INTO "OutboxEvent" (id, "eventName", "eventType", "aggregateId", "routingKey", payload)
               SELECT '{prefix}-' || i, 'E', 't', 'agg-' || i, '{KEY}', json_build_object('i', i)
                 FROM generate_series(1, 500) AS i"#
        )
    };
    c.batch_execute(&good("good")).await.unwrap();
    c.batch_execute(&format!(
        r#"INSERT INTO "OutboxEvent" (id, "eventName", "eventType", "aggregateId", "routingKey", payload, "occurredAt", "retryCount", "maxRetries") VALUES
             ('bad-null-name', NULL, 't', 'a', '{KEY}', '{{}}', now(), 0, NULL),
             ('bad-null-key', 'E', 't', 'a', NULL, '{{}}', now(), 0, NULL),
             ('bad-infinity', 'E', 't', 'a', '{KEY}', '{{}}', 'infinity', 0, NULL),
             ('bad-minus-infinity', 'E', 't', 'a', '{KEY}', '{{}}', '-infinity', 0, NULL),
             ('bad-surrogate', 'E', 't', 'a', '{KEY}', '{{"a": "\ud800"}}', now(), 0, NULL),
             ('bad-max-retries', 'E', 't', 'a', '{KEY}', '{{}}', now(), 0, 5000000000),
             ('bad-nul-payload', 'E', 't', 'a', '{KEY}', '{{"a": "x\u0000y"}}', now(), 0, NULL),
             ('bad-null-retry-count', 'E', 't', 'a', '{KEY}', '{{}}', now(), NULL, NULL),
             ('bad-held-null', 'E', 't', 'a', 'null.policy', '{{}}', now(), 0, NULL),
             ('bad-held-nan', 'E', 't', 'a', 'nan.policy', '{{}}', now(), 0, NULL)"#
    ))
    .await
    .unwrap();
    c.batch_execute(&good("more")).await.unwrap();

    let server = TestServer::always(200).await;
    let config = app_config(
        &db.url,
        &server.url("/"),
        &[KEY, "null.policy", "nan.policy", "late.policy"],
        "",
    )
    .replace("[worker]\n", "[worker]\nbatch_size = 50\n");
    let mut worker = WorkerProcess::start(&config);
    wait_for("the good events SENT", LONG, || async {
        count_status(&c, "SENT").await == 1003
    })
    .await;
    wait_for("the bad rows FAILED", LONG, || async {
        count_status(&c, "FAILED").await == 5
    })
    .await;
    // A broken row that arrives with its first event (the worker has never seen the key):
    // the event waits too, it is not failed for want of a policy.
    c.batch_execute(
        r#"BEGIN;
           INSERT INTO "OutboxRetryPolicy" VALUES ('late.policy', 3, NULL, 1000, 2);
           INSERT INTO "OutboxEvent" (id, "eventName", "eventType", "aggregateId", "routingKey")
                VALUES ('bad-held-late', 'E', 't', 'a', 'late.policy');
           COMMIT;"#,
    )
    .await
    .unwrap();
    // The broken policies' events wait: give the worker time to (wrongly) touch them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let logs = worker.logs();
    worker.stop().await;
    assert_rows(
        &bad_rows(&c).await,
        &[
            ("bad-null-name", "FAILED", "column eventName: is NULL"),
            ("bad-null-key", "FAILED", "column routingKey: is NULL"),
            (
                "bad-infinity",
                "FAILED",
                "column occurredAt: value too large to decode",
            ),
            (
                "bad-minus-infinity",
                "FAILED",
                "column occurredAt: value too large to decode",
            ),
            // What the json column holds is forwarded as it is, lone surrogate and all.
            ("bad-surrogate", "SENT", ""),
            (
                "bad-max-retries",
                "FAILED",
                "column maxRetries: 5000000000 is out of range",
            ),
            // What jsonb rejects, JSON allows: delivered, not failed.
            ("bad-nul-payload", "SENT", ""),
            ("bad-null-retry-count", "SENT", ""),
            ("bad-held-null", "PENDING", ""),
            ("bad-held-nan", "PENDING", ""),
            ("bad-held-late", "PENDING", ""),
        ],
    );
    let nul = server.requests_for("bad-nul-payload");
    assert_eq!(nul.len(), 1);
    assert!(
        String::from_utf8_lossy(&nul[0].raw).contains(r#""payload":{"a": "x\u0000y"}"#),
        "{:?}",
        String::from_utf8_lossy(&nul[0].raw)
    );
    let surrogate = server.requests_for("bad-surrogate");
    assert!(
        String::from_utf8_lossy(&surrogate[0].raw).contains(r#""payload":{"a": "\ud800"}"#),
        "{:?}",
        String::from_utf8_lossy(&surrogate[0].raw)
    );
    for held in ["bad-held-null", "bad-held-nan", "bad-held-late"] {
        let r = event(&c, held).await;
        assert_eq!(
            (r.retry_count, r.locked_by),
            (0, None),
            "{held}: not charged"
        );
    }
    assert_eq!(count_status(&c, "PROCESSING").await, 0);
    assert_contains_all(
        &logs,
        &[
            "OutboxRetryPolicy row cannot be used; its events wait",
            "maxRetries is NULL; set it",
            "backoffMultiplier is NaN; use a number of at least 1",
        ],
    );
    let warnings = logs.matches("OutboxRetryPolicy row cannot be used").count();
    assert_eq!(warnings, 3, "said once per row, not per refresh: {logs}");

    // doctor names each broken row and the columns that allow NULL.
    let dir = TempDir::new();
    let cfg = dir.write("outbox.toml", &config);
    let out = outbox(&["--config", cfg.to_str().unwrap(), "doctor"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(24), "{report}");
    assert_contains_all(
        &report,
        &[
            "✘ the OutboxRetryPolicy row of 'null.policy' cannot be used: maxRetries is NULL",
            "✘ the OutboxRetryPolicy row of 'nan.policy' cannot be used: backoffMultiplier is NaN",
            r#"⚠ schema "public": column "OutboxEvent"."eventName" allows NULL: a row with a NULL there is claimed and ends FAILED as unreadable"#,
            r#"⚠ schema "public": column "OutboxEvent"."retryCount" allows NULL: a NULL is read (and stored by the claim) as 0"#,
        ],
    );
    // And the operator commands list the odd rows instead of failing.
    for args in [
        &["events", "list", "--limit", "2000"][..],
        &["stats"],
        &["dlq", "list"],
        &["policy", "list"],
    ] {
        let mut full = vec!["--config", cfg.to_str().unwrap()];
        full.extend_from_slice(args);
        let out = outbox(&full);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }

    // Fixing the row lets its events go.
    c.batch_execute(
        r#"UPDATE "OutboxRetryPolicy" SET "maxRetries" = 3 WHERE "routingKey" = 'null.policy'"#,
    )
    .await
    .unwrap();
    let mut worker = WorkerProcess::start(&config);
    wait_status(&c, "bad-held-null", "SENT", LONG).await;
    worker.stop().await;
    assert_eq!(event(&c, "bad-held-nan").await.status, "PENDING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_on_an_unreadable_row_is_failed_by_the_reaper_and_the_rest_taken_back() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(LAX_TABLES).await.unwrap();
    c.batch_execute(&format!(
        r#"INSERT INTO "OutboxRetryPolicy" VALUES ('{KEY}', 3, 50, 1000, 2);
           INSERT INTO "OutboxEvent" (id, "eventName", "eventType", "aggregateId", "routingKey", status, "lockedBy", "lockedUntil") VALUES
             ('bad-dead-worker', NULL, 't', 'a', '{KEY}', 'PROCESSING', 'dead#1', now() - interval '2 minutes'),
             ('taken-back', 'E', 't', 'a', '{KEY}', 'PROCESSING', 'dead#1', now() - interval '2 minutes')"#
    ))
    .await
    .unwrap();
    let server = TestServer::always(200).await;
    let config = app_config(&db.url, &server.url("/"), &[KEY], "")
        .replace("[worker]\n", "[worker]\nlease = \"6s\"\n");
    // With no worker running, doctor says that nobody takes these leases back.
    let dir = TempDir::new();
    let cfg = dir.write("outbox.toml", &config);
    let out = outbox(&["--config", cfg.to_str().unwrap(), "doctor"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(
            "⚠ 2 PROCESSING event(s) hold leases that expired over 60s ago (the oldest 2m ago)"
        ),
        "{report}"
    );
    let mut worker = WorkerProcess::start(&config);
    wait_status(&c, "taken-back", "SENT", LONG).await;
    let r = wait_status(&c, "bad-dead-worker", "FAILED", LONG).await;
    assert!(
        r.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("column eventName: is NULL"),
        "{r:?}"
    );
    worker.stop().await;
    assert!(
        worker
            .logs()
            .contains("the row of an expired lease cannot be read"),
        "{}",
        worker.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_table_that_cannot_be_read_holds_events_back_with_a_growing_delay() {
    let db = TestDb::with_policies(&[(KEY, 3, 50)]).await;
    let c = db.client().await;
    let server = TestServer::always(200).await;
    let config = http_config(&db.url, &server.url("/"), &[KEY, "new.key"], "");
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    // The worker knows KEY's policy; a new key's policy must be read, and the table is gone.
    c.batch_execute(
        r#"ALTER TABLE "OutboxRetryPolicy" RENAME TO "OutboxRetryPolicyAway";
           INSERT INTO "OutboxRetryPolicyAway" ("routingKey", "maxRetries", "retryInterval", "maxInterval")
                VALUES ('new.key', 3, 50, 1000)"#,
    )
    .await
    .unwrap();
    insert_event(&c, "waits", "new.key").await;
    insert_event(&c, "known", KEY).await;
    wait_status(&c, "known", "SENT", LONG).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let logs = worker.logs();
    let give_backs = logs
        .matches("Cannot read OutboxRetryPolicy; giving the event back")
        .count();
    // Due now, it was claimed and given back ~700 times a second; with the growing delay
    // (0.5 s, 1 s, 2 s, ...) a handful of times in 4 s.
    assert!(
        (1..=8).contains(&give_backs),
        "{give_backs} give-backs:\n{logs}"
    );
    let r = event(&c, "waits").await;
    assert_eq!((r.status.as_str(), r.retry_count), ("PENDING", 0));
    assert!(
        r.last_error
            .as_deref()
            .unwrap_or_default()
            .starts_with("not attempted: cannot read OutboxRetryPolicy"),
        "{r:?}"
    );
    c.batch_execute(r#"ALTER TABLE "OutboxRetryPolicyAway" RENAME TO "OutboxRetryPolicy""#)
        .await
        .unwrap();
    wait_status(&c, "waits", "SENT", LONG).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_claim_is_logged_with_what_likely_slowed_it() {
    let db = TestDb::with_policies(&[(KEY, 3, 50)]).await;
    let c = db.client().await;
    // Every claim takes at least 150 ms: a trigger on the status change.
    c.batch_execute(
        r#"CREATE FUNCTION slow_claim() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_sleep(0.15); RETURN NEW; END; $$;
           CREATE TRIGGER slow_claim BEFORE UPDATE ON "OutboxEvent"
             FOR EACH STATEMENT EXECUTE FUNCTION slow_claim();"#,
    )
    .await
    .unwrap();
    let server = TestServer::always(200).await;
    let config = http_config(&db.url, &server.url("/"), &[KEY], "");
    let mut worker = WorkerProcess::start_with_args(&config, &["run", "--skip-schema-check"]);
    insert_event(&c, "slow", KEY).await;
    wait_status(&c, "slow", "SENT", LONG).await;
    worker.stop().await;
    let logs = worker.logs();
    assert!(logs.contains("A claim was slow"), "{logs}");
    assert!(logs.contains("causes="), "{logs}");
}
