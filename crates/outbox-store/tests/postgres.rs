//! The PostgreSQL store against a real server: claims, fenced acks, reaping, migrations.

use outbox_core::{Completion, CompletionAction, Migrator, Notification, Store};
use outbox_store::{MigrationState, PgStore, PgStoreOptions, ProblemKind};
use outbox_testkit::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const KEY: &str = "k";

async fn store_for(db: &TestDb, schema: &str) -> PgStore {
    let mut o = PgStoreOptions::new(db.url.clone());
    o.schema = schema.to_string();
    PgStore::new(&o).unwrap()
}

fn done(c: &outbox_core::ClaimedEvent, action: CompletionAction) -> Completion {
    Completion {
        id: c.event.id.clone(),
        lease_owner: c.lease_owner.clone(),
        retry_count: c.event.retry_count,
        action,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_worker_s_late_ack_does_not_overwrite_the_reclaiming_worker_s_result() {
    let db = TestDb::with_policies(&[(KEY, 5, 10)]).await;
    let store = store_for(&db, "public").await;
    let c = db.client().await;
    insert_event(&c, "e1", KEY).await;

    let a = store
        .claim("worker-a", 10, Duration::from_millis(200), &[])
        .await
        .unwrap()
        .events;
    assert_eq!(a.len(), 1);
    let stale = a[0].clone();
    tokio::time::sleep(Duration::from_millis(400)).await;

    // The reaper returns the expired lease to PENDING, counting the attempt.
    let expired = store.expired_leases(10).await.unwrap().events;
    assert_eq!(expired.len(), 1);
    let reaped = done(
        &expired[0],
        CompletionAction::Retry {
            retry_count: 1,
            delay: Duration::ZERO,
            error: "lease expired".into(),
        },
    );
    assert_eq!(store.complete(&[reaped]).await.unwrap(), 1);

    let b = store
        .claim("worker-b", 10, Duration::from_secs(30), &[])
        .await
        .unwrap()
        .events;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].event.retry_count, 1);
    assert_eq!(b[0].attempt(), 2);

    // A's late result while B holds the lease: ignored.
    let late = done(
        &stale,
        CompletionAction::Fail {
            error: "late".into(),
            block_aggregate: false,
        },
    );
    assert_eq!(
        store.complete(std::slice::from_ref(&late)).await.unwrap(),
        0
    );
    assert_eq!(event(&c, "e1").await.status, "PROCESSING");
    // B's result lands.
    assert_eq!(
        store
            .complete(&[done(&b[0], CompletionAction::Sent)])
            .await
            .unwrap(),
        1
    );
    // A's result after B finished: still ignored.
    assert_eq!(store.complete(&[late]).await.unwrap(), 0);
    let row = event(&c, "e1").await;
    assert_eq!(row.status, "SENT");
    assert_eq!(row.retry_count, 1);
    assert_eq!(row.locked_by, None);

    // Even the same owner cannot ack an older attempt of an event it claimed again.
    insert_event(&c, "e2", KEY).await;
    let first = store
        .claim("worker-a", 10, Duration::from_millis(100), &[])
        .await
        .unwrap()
        .events;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let exp = store.expired_leases(10).await.unwrap().events;
    store
        .complete(&[done(
            &exp[0],
            CompletionAction::Retry {
                retry_count: 1,
                delay: Duration::ZERO,
                error: "x".into(),
            },
        )])
        .await
        .unwrap();
    let second = store
        .claim("worker-a", 10, Duration::from_secs(30), &[])
        .await
        .unwrap()
        .events;
    assert_eq!(
        store
            .complete(&[done(&first[0], CompletionAction::Sent)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .complete(&[done(&second[0], CompletionAction::Sent)])
            .await
            .unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_never_hand_out_an_event_twice() {
    let db = TestDb::with_policies(&[(KEY, 5, 10)]).await;
    let store = Arc::new(store_for(&db, "public").await);
    let c = db.client().await;
    insert_many(&c, "e", KEY, 600).await;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim(&format!("w{w}"), 25, Duration::from_secs(30), &[])
                    .await
                    .unwrap()
                    .events;
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|c| c.event.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 600);
    assert_eq!(unique.len(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_skip_paused_keys_and_events_not_yet_due_and_retries_use_the_database_clock() {
    let db = TestDb::with_policies(&[(KEY, 5, 10), ("paused", 5, 10)]).await;
    let store = store_for(&db, "public").await;
    let c = db.client().await;
    insert_event(&c, "due", KEY).await;
    insert_event(&c, "held", "paused").await;
    c.batch_execute(r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "nextRetryAt")
                       VALUES ('later', 'E', 't', 'a', 'k', now() + interval '1 hour')"#)
        .await
        .unwrap();
    let got = store
        .claim("w", 10, Duration::from_secs(30), &["paused".to_string()])
        .await
        .unwrap()
        .events;
    assert_eq!(
        got.iter().map(|c| c.event.id.as_str()).collect::<Vec<_>>(),
        ["due"]
    );
    assert_eq!(got[0].event.payload.get(), r#"{"n": 1}"#);

    let next = store
        .next_due(&["paused".to_string()])
        .await
        .unwrap()
        .unwrap();
    assert!(
        next > Duration::from_secs(3500) && next <= Duration::from_secs(3600),
        "{next:?}"
    );
    assert_eq!(store.next_due(&[]).await.unwrap(), Some(Duration::ZERO));

    let retry = done(
        &got[0],
        CompletionAction::Retry {
            retry_count: 1,
            delay: Duration::from_secs(90),
            error: "HTTP 503".into(),
        },
    );
    assert_eq!(store.complete(&[retry]).await.unwrap(), 1);
    let r = c
        .query_one(
            r#"SELECT "status", "retryCount", "lastError", EXTRACT(EPOCH FROM ("nextRetryAt" - clock_timestamp()))::float8 FROM "OutboxEvent" WHERE "id" = 'due'"#,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "PENDING");
    assert_eq!(r.get::<_, i32>(1), 1);
    assert_eq!(r.get::<_, String>(2), "HTTP 503");
    let secs: f64 = r.get(3);
    assert!(
        (88.0..=90.5).contains(&secs),
        "nextRetryAt is 90s after the write: {secs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_deploying_at_once_apply_each_migration_once() {
    let db = TestDb::new().await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let store = PgStore::new(&PgStoreOptions::new(url)).unwrap();
            store.deploy().await.map(|v| v.len())
        }));
    }
    let mut applied = 0;
    for t in tasks {
        applied += t.await.unwrap().expect("every replica's deploy succeeds");
    }
    assert_eq!(
        applied,
        outbox_store::MIGRATIONS.len(),
        "each migration applied by exactly one replica"
    );
    let c = db.client().await;
    let n: i64 = c
        .query_one(r#"SELECT count(*) FROM "_outbox_migrations""#, &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, outbox_store::MIGRATIONS.len());
    // Prisma's history table is never touched.
    let prisma: bool = c
        .query_one("SELECT to_regclass('_prisma_migrations') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!prisma);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_pending_modified_and_unknown_migrations() {
    let db = TestDb::new().await;
    let store = store_for(&db, "public").await;
    let st = store.migration_status().await.unwrap();
    assert!(st.iter().all(|r| r.state == MigrationState::Pending));
    store.deploy().await.unwrap();
    assert!(store
        .migration_status()
        .await
        .unwrap()
        .iter()
        .all(|r| matches!(r.state, MigrationState::Applied { .. })));
    assert!(
        store.deploy().await.unwrap().is_empty(),
        "deploy is idempotent"
    );

    let c = db.client().await;
    c.batch_execute(r#"UPDATE "_outbox_migrations" SET "checksum" = 'edited' WHERE "version" = 1;
                       INSERT INTO "_outbox_migrations" VALUES (999, 'from_the_future', 'x', now(), 1);"#)
        .await
        .unwrap();
    let st = store.migration_status().await.unwrap();
    assert!(
        matches!(st[0].state, MigrationState::Modified { .. }),
        "{st:?}"
    );
    let last = st.last().unwrap();
    assert_eq!(
        (last.version, last.state.clone()),
        (999, MigrationState::Unknown)
    );
    let err = store.deploy().await.unwrap_err().to_string();
    assert!(
        err.contains("was applied with a different script") || err.contains("does not know it"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_default_schema_holds_the_tables_and_its_notifications_are_its_own() {
    let db = TestDb::new().await;
    let relay = store_for(&db, "relay").await;
    let public = store_for(&db, "public").await;
    relay.deploy().await.unwrap();
    public.deploy().await.unwrap();
    let st = relay.schema_status().await.unwrap();
    assert!(
        st.problems().is_empty(),
        "no drift in a non-default schema: {:?}",
        st.problems()
    );
    let c = db.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'relay' AND table_name IN ('OutboxEvent', 'OutboxRetryPolicy', '_outbox_migrations')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);

    let mut listener = relay.listen().await.unwrap();
    c.batch_execute(r#"INSERT INTO "public"."OutboxEvent" ("eventName", "eventType", "aggregateId", "routingKey") VALUES ('E', 't', 'a', 'k')"#)
        .await
        .unwrap();
    c.batch_execute(r#"INSERT INTO "relay"."OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval") VALUES ('k', 1, 1, 1)"#)
        .await
        .unwrap();
    c.batch_execute(r#"INSERT INTO "relay"."OutboxEvent" ("eventName", "eventType", "aggregateId", "routingKey") VALUES ('E', 't', 'a', 'k')"#)
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), listener.next())
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), listener.next())
        .await
        .unwrap();
    assert_eq!(
        (first, second),
        (Some(Notification::Policies), Some(Notification::Events))
    );
    let claimed = relay
        .claim("w", 10, Duration::from_secs(5), &[])
        .await
        .unwrap()
        .events;
    assert_eq!(claimed.len(), 1);
    assert_eq!(relay.policies().await.unwrap().policies.len(), 1);
    assert_eq!(public.policies().await.unwrap().policies.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_hand_made_drift_is_detected_and_named() {
    let db = TestDb::new().await;
    let store = store_for(&db, "public").await;
    store.deploy().await.unwrap();
    let clean = store.schema_status().await.unwrap();
    assert!(clean.problems().is_empty(), "{:?}", clean.problems());
    assert_eq!(clean.worst(), None);

    let c = db.client().await;
    c.batch_execute(
        r#"ALTER TABLE "OutboxEvent" ADD COLUMN "tenant" text;
           ALTER TABLE "OutboxEvent" ALTER COLUMN "lastError" TYPE varchar(200);
           ALTER TABLE "OutboxEvent" ALTER COLUMN "headers" SET NOT NULL;
           ALTER TABLE "OutboxEvent" ALTER COLUMN "retryCount" SET DEFAULT 1;
           DROP INDEX "OutboxEvent_pending_idx";
           CREATE INDEX "by_hand" ON "OutboxEvent" ("aggregateId");
           ALTER TABLE "OutboxEvent" DROP CONSTRAINT "OutboxEvent_retryCount_check";
           DROP TRIGGER "OutboxEvent_notify" ON "OutboxEvent";
           ALTER TABLE "OutboxRetryPolicy" DROP COLUMN "description";
           CREATE OR REPLACE FUNCTION "outbox_notify_policy"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END; $$;"#,
    )
    .await
    .unwrap();
    let st = store.schema_status().await.unwrap();
    let problems = st.problems();
    let text: Vec<String> = problems
        .iter()
        .map(|p| format!("{} => {}", p.what, p.fix))
        .collect();
    let joined = text.join("\n");
    assert_contains_all(
        &joined,
        &[
            r#"column "OutboxEvent"."tenant" is not in the migrations (added by hand?) => ALTER TABLE "OutboxEvent" DROP COLUMN "tenant";"#,
            r#"column "OutboxEvent"."lastError" has type character varying(200), the migrations give text => ALTER TABLE "OutboxEvent" ALTER COLUMN "lastError" TYPE text;"#,
            r#"column "OutboxEvent"."headers" is NOT NULL, the migrations allow NULL => ALTER TABLE "OutboxEvent" ALTER COLUMN "headers" DROP NOT NULL;"#,
            r#"column "OutboxEvent"."retryCount" has default 1, the migrations give 0 => ALTER TABLE "OutboxEvent" ALTER COLUMN "retryCount" SET DEFAULT 0;"#,
            r#"index "OutboxEvent_pending_idx" on "OutboxEvent" is missing => CREATE INDEX "OutboxEvent_pending_idx" ON "OutboxEvent" USING btree ("nextRetryAt") WHERE (status = 'PENDING'::text);"#,
            r#"index "by_hand" on "OutboxEvent" is not in the migrations (added by hand?) => DROP INDEX "by_hand";"#,
            r#"constraint "OutboxEvent_retryCount_check" on "OutboxEvent" is missing => ALTER TABLE "OutboxEvent" ADD CONSTRAINT "OutboxEvent_retryCount_check" CHECK (("retryCount" >= 0));"#,
            r#"trigger "OutboxEvent_notify" on "OutboxEvent" is missing => CREATE TRIGGER "OutboxEvent_notify" AFTER INSERT ON "OutboxEvent" FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify_event();"#,
            r#"column "OutboxRetryPolicy"."description" is missing => ALTER TABLE "OutboxRetryPolicy" ADD COLUMN "description" text;"#,
            r#"function "outbox_notify_policy"() differs from the migrations"#,
        ],
    );
    assert!(problems.iter().all(|p| p.kind == ProblemKind::Drift));
    assert_eq!(st.worst(), Some(ProblemKind::Drift));

    // Every fix, applied, restores a clean schema.
    for p in &problems {
        c.batch_execute(&p.fix)
            .await
            .unwrap_or_else(|e| panic!("fix failed: {}: {e}", p.fix));
    }
    let after = store.schema_status().await.unwrap();
    assert!(after.problems().is_empty(), "{:?}", after.problems());

    // A dropped table.
    c.batch_execute(r#"DROP TABLE "OutboxRetryPolicy""#)
        .await
        .unwrap();
    let st = store.schema_status().await.unwrap();
    assert!(
        st.problems()
            .iter()
            .any(|p| p.what == r#"drift: table "OutboxRetryPolicy" is missing"#),
        "{:?}",
        st.problems()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_left_behind_the_claim_cursor_is_picked_up_in_full_batches() {
    let db = TestDb::with_policies(&[(KEY, 5, 10), ("held", 5, 10)]).await;
    let store = store_for(&db, "public").await;
    let c = db.client().await;
    // A paused policy's backlog, due long ago.
    insert_many(&c, "held", "held", 300).await;
    c.batch_execute(r#"UPDATE "OutboxEvent" SET "nextRetryAt" = now() - interval '1 hour'"#)
        .await
        .unwrap();
    // Meanwhile other traffic moves the cursor up to now.
    let paused = vec!["held".to_string()];
    for round in 0..3 {
        insert_many(&c, &format!("live{round}"), KEY, 50).await;
        let got = store
            .claim("w", 100, Duration::from_secs(30), &paused)
            .await
            .unwrap()
            .events;
        assert_eq!(got.len(), 50);
    }
    // Un-paused: once a full claim has seen the old rows, the cursor goes back and the
    // following claims take the rest at full batch size.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut held = 0;
    for _ in 0..4 {
        let got = store
            .claim("w", 100, Duration::from_secs(30), &[])
            .await
            .unwrap()
            .events;
        held += got.iter().filter(|e| e.event.routing_key == "held").count();
    }
    assert_eq!(held, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_holding_a_snapshot_is_named_with_its_pid() {
    let db = TestDb::with_policies(&[(KEY, 5, 10)]).await;
    let store = store_for(&db, "public").await;
    let idle = db.client().await;
    idle.batch_execute(
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM \"OutboxEvent\"",
    )
    .await
    .unwrap();
    let pid: i32 = idle
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let holders = store.xmin_holders(Duration::from_secs(1)).await.unwrap();
    let ours = holders
        .iter()
        .find(|h| h.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} not in {holders:?}"));
    assert_eq!(ours.state, "idle in transaction");
    assert!(ours.open_for >= Duration::from_secs(1));
    assert!(ours.to_string().contains(&format!("pid {pid}")));
    idle.batch_execute("COMMIT").await.unwrap();
    // A producer left idle in transaction after an insert, at READ COMMITTED: it holds
    // vacuum back by its transaction id, without a snapshot.
    idle.batch_execute(
        r#"BEGIN; INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey")
           VALUES ('left-open', 'E', 't', 'a', 'k')"#,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let holders = store.xmin_holders(Duration::from_secs(1)).await.unwrap();
    assert!(
        holders
            .iter()
            .any(|h| h.pid == pid && h.state == "idle in transaction"),
        "{holders:?}"
    );
    idle.batch_execute("ROLLBACK").await.unwrap();
    let health = store.table_health().await.unwrap();
    assert!(health.is_some());
}

// The promises of the `Store` trait added for bad rows and several workers, written against
// `&dyn Store` so that every backend can be held to them.

/// An unreadable row comes back on its own, its batch-mates as events; `fail_unreadable`
/// records it FAILED under the claim's lease token only.
async fn unreadable_rows_are_leased_alone_and_failed_under_their_lease(
    store: &dyn Store,
    c: &Client,
) {
    let first = store
        .claim("w#1", 10, Duration::from_secs(30), &[])
        .await
        .unwrap();
    let mut ids: Vec<&str> = first.events.iter().map(|e| e.event.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["good-1", "good-2"]);
    assert_eq!(first.unreadable.len(), 1, "{:?}", first.unreadable);
    let bad = &first.unreadable[0];
    assert_eq!((bad.id.as_str(), bad.lease_owner.as_str()), ("bad", "w#1"));
    assert_eq!(bad.routing_key.as_deref(), Some(KEY));
    assert!(
        bad.problem.starts_with("column occurredAt: "),
        "{}",
        bad.problem
    );
    // Under another lease token: nothing changes.
    let mut stale = bad.clone();
    stale.lease_owner = "w#0".into();
    assert_eq!(store.fail_unreadable(&[stale]).await.unwrap(), 0);
    assert_eq!(event(c, "bad").await.status, "PROCESSING");
    assert_eq!(
        store
            .fail_unreadable(std::slice::from_ref(bad))
            .await
            .unwrap(),
        1
    );
    let row = event(c, "bad").await;
    assert_eq!((row.status.as_str(), row.locked_by), ("FAILED", None));
    assert_eq!(row.last_error, Some(bad.last_error()));
    // A FAILED row is never failed again.
    assert_eq!(
        store
            .fail_unreadable(std::slice::from_ref(bad))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_cannot_be_read_does_not_fail_its_claim() {
    let db = TestDb::with_policies(&[(KEY, 5, 10)]).await;
    let store = store_for(&db, "public").await;
    let c = db.client().await;
    insert_event(&c, "good-1", KEY).await;
    insert_event(&c, "good-2", KEY).await;
    c.batch_execute(&format!(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "occurredAt")
           VALUES ('bad', 'E', 't', 'a', '{KEY}', '294000-01-01 00:00:00+00')"#
    ))
    .await
    .unwrap();
    unreadable_rows_are_leased_alone_and_failed_under_their_lease(&store, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_row_that_cannot_be_used_is_named_and_the_others_are_read() {
    let db = TestDb::with_policies(&[(KEY, 5, 10)]).await;
    let store = store_for(&db, "public").await;
    let c = db.client().await;
    // Values migration 0005 refuses; an older or app-made table may hold them.
    c.batch_execute(
        r#"ALTER TABLE "OutboxRetryPolicy" DROP CONSTRAINT "OutboxRetryPolicy_backoffMultiplier_finite_check";
           INSERT INTO "OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval", "backoffMultiplier", "ordered")
                VALUES ('nan.key', 3, 10, 100, 'NaN', true)"#,
    )
    .await
    .unwrap();
    let rows = (&store as &dyn Store).policies().await.unwrap();
    assert_eq!(
        rows.policies
            .iter()
            .map(|p| p.routing_key.as_str())
            .collect::<Vec<_>>(),
        [KEY]
    );
    assert_eq!(rows.broken.len(), 1);
    let b = &rows.broken[0];
    assert_eq!(b.routing_key.as_deref(), Some("nan.key"));
    assert!(
        b.problem.starts_with("backoffMultiplier is NaN"),
        "{}",
        b.problem
    );
    assert!(b.ordered, "the broken row's ordered flag is still read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listener_leads_until_its_connection_ends_and_the_others_hear_its_calls_for_help() {
    let db = TestDb::with_policies(&[(KEY, 5, 10)]).await;
    let (a, b) = (
        store_for(&db, "public").await,
        store_for(&db, "public").await,
    );
    let (a, b): (&dyn Store, &dyn Store) = (&a, &b);
    let mut first = a.listen().await.unwrap();
    let mut second = b.listen().await.unwrap();
    assert!(first.try_lead().await, "the first listener leads");
    assert!(!second.try_lead().await, "one leader at a time");
    // A call for help reaches the other listener.
    a.call_for_help().await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), second.next())
        .await
        .unwrap();
    assert_eq!(heard, Some(Notification::Help));
    // The lead goes with the connection.
    drop(first);
    let mut led = false;
    for _ in 0..100 {
        if second.try_lead().await {
            led = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        led,
        "the second listener takes the lead once the first is gone"
    );
}
