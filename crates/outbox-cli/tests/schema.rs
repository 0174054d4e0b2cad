//! Schema ownership: drift, dirty and reset on worker-owned tables; app-owned tables in
//! three namings; schema print; doctor.

use outbox_testkit::*;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";
const LONG: Duration = Duration::from_secs(30);

fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = outbox(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config for app-owned tables whose one route goes to `server`.
fn app_config(db_url: &str, server: &TestServer, database_extra: &str) -> String {
    outbox_testkit::app_config(db_url, &server.url("/audit"), &[KEY], database_extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_status_names_drift_and_dirty_migrations_with_their_exit_codes() {
    let db = TestDb::new().await;
    db.migrate().await;
    let url = db.url.as_str();
    let (code, out, _) = run_cli(&["--database-url", url, "migrate", "status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Up to date, no drift."), "{out}");

    let c = db.client().await;
    c.batch_execute(r#"ALTER TABLE "OutboxEvent" ADD COLUMN "note" text; DROP INDEX "OutboxEvent_processing_idx";"#)
        .await
        .unwrap();
    let (code, out, _) = run_cli(&["--database-url", url, "migrate", "status"]);
    assert_eq!(code, 14, "{out}");
    assert!(
        out.contains(
            r#"✘ drift: column "OutboxEvent"."note" is not in the migrations (added by hand?)"#
        ),
        "{out}"
    );
    assert!(
        out.contains(r#"    fix: ALTER TABLE "OutboxEvent" DROP COLUMN "note";"#),
        "{out}"
    );
    assert!(
        out.contains(r#"✘ drift: index "OutboxEvent_processing_idx" on "OutboxEvent" is missing"#),
        "{out}"
    );

    let (code, json, _) = run_cli(&[
        "--database-url",
        url,
        "migrate",
        "status",
        "--format",
        "json",
    ]);
    assert_eq!(code, 14);
    let v: serde_json::Value = serde_json::from_str(&json).expect("one JSON document");
    assert_eq!(v["clean"], false);
    assert_eq!(v["exitCode"], 14);
    assert_eq!(v["problems"].as_array().unwrap().len(), 2);
    assert_eq!(v["problems"][0]["kind"], "drift");
    assert_eq!(v["migrations"][0]["state"], "applied");

    // The worker refuses to start on drift, unless told to.
    let dir = TempDir::new();
    let cfg = dir.write(
        "outbox.toml",
        "[routes]\n\"k\" = { sink = \"bh\" }\n[sinks.bh]\ntype = \"blackhole\"\n",
    );
    let (code, _, err) = run_cli(&[
        "--config",
        cfg.to_str().unwrap(),
        "--database-url",
        url,
        "run",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("is not ready: drift: column \"OutboxEvent\".\"note\" is not in the migrations (added by hand?) (+1 more); run `outbox migrate status`"), "{err}");
    let mut w2 = WorkerProcess::start_with_args(
        &format!("[database]\nurl = \"{url}\"\n[routes]\n\"k\" = {{ sink = \"bh\" }}\n[sinks.bh]\ntype = \"blackhole\"\n"),
        &["run", "--skip-schema-check"],
    );
    w2.wait_started().await;
    w2.stop().await;

    // A migration that started and never finished.
    c.batch_execute(r#"UPDATE "_outbox_migrations" SET "success" = false"#)
        .await
        .unwrap();
    let (code, out, _) = run_cli(&["--database-url", url, "migrate", "status"]);
    assert_eq!(code, 13, "{out}");
    assert!(
        out.contains("✘ migration 0001_outbox_tables started and did not finish (dirty)"),
        "{out}"
    );
    let (code, _, err) = run_cli(&["--database-url", url, "migrate", "deploy"]);
    assert_eq!(code, 1);
    assert!(err.contains("started and did not finish (dirty)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_prints_its_plan_without_force_rebuilds_with_it_and_refuses_in_production() {
    let db = TestDb::with_policies(&[(KEY, 1, 10)]).await;
    let c = db.client().await;
    insert_event(&c, "keep-me", KEY).await;
    c.batch_execute(r#"DROP INDEX "OutboxEvent_pending_idx""#)
        .await
        .unwrap();
    let url = db.url.as_str();

    let (code, out, _) = run_cli(&["--database-url", url, "migrate", "reset"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(r#"DROP TABLE "public"."OutboxEvent" CASCADE;"#),
        "{out}"
    );
    assert!(
        out.contains("Nothing was changed; add --force to do it."),
        "{out}"
    );
    assert_eq!(count_status(&c, "PENDING").await, 1, "nothing dropped");

    let dir = TempDir::new();
    let prod = dir.write(
        "prod.toml",
        &format!("[database]\nurl = \"{url}\"\nenvironment = \"production\"\n"),
    );
    let (code, _, err) = run_cli(&[
        "--config",
        prod.to_str().unwrap(),
        "migrate",
        "reset",
        "--force",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("database.environment is \"production\""),
        "{err}"
    );
    assert_eq!(count_status(&c, "PENDING").await, 1, "nothing dropped");

    let (code, out, _) = run_cli(&["--database-url", url, "migrate", "reset", "--force"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Applied 0001 outbox_tables"), "{out}");
    assert!(by_status(&c).await.is_empty(), "rows are gone");
    let (code, out, _) = run_cli(&["--database-url", url, "migrate", "status"]);
    assert_eq!(code, 0, "clean after reset: {out}");
}

/// Delivers the seed's event through a worker on `config`, with one 503 first (so the
/// retry path writes the app's columns too); returns the request the API received.
async fn relay_seed_event(
    config: &str,
    insert: &str,
    server: &TestServer,
    c: &tokio_postgres::Client,
    status_sql: &str,
) -> Seen {
    let mut worker = WorkerProcess::start(config);
    worker.wait_started().await;
    c.batch_execute(insert).await.unwrap();
    wait_for("the seed event SENT", LONG, || async {
        c.query_one(status_sql, &[])
            .await
            .map(|r| r.get::<_, String>(0) == "SENT")
            .unwrap_or(false)
    })
    .await;
    worker.stop().await;
    let logs = worker.logs();
    let unexpected: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(" WARN ") && !l.contains("Delivery failed; will retry"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "no schema warnings expected: {unexpected:?}"
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "one 503, then success");
    reqs[1].clone()
}

fn one_503_then_ok() -> impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static {
    |_, earlier| {
        if earlier == 0 {
            Reply::status(503)
        } else {
            Reply::status(200)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prisma_style_camel_case_table_with_an_enum_status_and_timestamp3_relays_the_seed_event()
{
    let db = TestDb::new().await;
    let c = db.client().await;
    // What `prisma migrate` makes of the seed's model: enum status, TIMESTAMP(3), NOT NULL
    // retry columns with defaults, and the four-column policy table.
    c.batch_execute(
        r#"CREATE TYPE "OutboxStatus" AS ENUM ('PENDING', 'PROCESSING', 'SENT', 'FAILED');
           CREATE TABLE "OutboxEvent" (
             "id" TEXT NOT NULL, "eventName" TEXT NOT NULL, "eventType" TEXT NOT NULL,
             "aggregateId" TEXT NOT NULL, "routingKey" TEXT NOT NULL, "payload" JSONB NOT NULL,
             "status" "OutboxStatus" NOT NULL DEFAULT 'PENDING',
             "occurredAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
             "retryCount" INTEGER NOT NULL DEFAULT 0,
             "maxRetries" INTEGER, "retryInterval" INTEGER, "maxInterval" INTEGER,
             "nextRetryAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
             "lockedBy" TEXT, "lockedUntil" TIMESTAMP(3), "lastError" TEXT, "processedAt" TIMESTAMP(3),
             "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
             CONSTRAINT "OutboxEvent_pkey" PRIMARY KEY ("id"));
           CREATE INDEX "OutboxEvent_status_nextRetryAt_idx" ON "OutboxEvent"("status", "nextRetryAt");
           CREATE INDEX "OutboxEvent_status_lockedUntil_idx" ON "OutboxEvent"("status", "lockedUntil");
           CREATE TABLE "OutboxRetryPolicy" (
             "routingKey" TEXT NOT NULL, "maxRetries" INTEGER NOT NULL,
             "retryInterval" INTEGER NOT NULL, "maxInterval" INTEGER NOT NULL,
             CONSTRAINT "OutboxRetryPolicy_pkey" PRIMARY KEY ("routingKey"));
           INSERT INTO "OutboxRetryPolicy" VALUES ('audit.record-auth-log', 5, 100, 1000);"#,
    )
    .await
    .unwrap();
    // The tables predate ordered delivery: the NOTIFY triggers only.
    let extra = outbox_store::postgres::print::notify_triggers_sql();
    c.batch_execute(&extra).await.unwrap();
    let server = TestServer::start(one_503_then_ok()).await;
    let config = app_config(&db.url, &server, "");
    let insert = r#"insert into "OutboxEvent" (
          id, "eventName", "eventType", "aggregateId", "routingKey",
          payload, status, "occurredAt", "retryCount", "maxRetries", "retryInterval"
        ) values ('test-1', 'PasswordUserLoggedInEvent', 'auth.login.success', 'user-1',
          'audit.record-auth-log', '{}', 'PENDING', now(), 0, 5, 5000)"#;
    // retryInterval 5000 on the event would make the test wait 5 s: use the policy's.
    let insert = insert.replace(", 0, 5, 5000)", ", 0, 5, 100)");
    let seen = relay_seed_event(
        &config,
        &insert,
        &server,
        &c,
        r#"SELECT status::text FROM "OutboxEvent" WHERE id = 'test-1'"#,
    )
    .await;
    assert_eq!(seen.body["eventName"], "PasswordUserLoggedInEvent");
    assert_eq!(seen.header("x-outbox-attempt"), Some("2"));
    let r = c
        .query_one(
            r#"SELECT "retryCount", "lastError", "lockedBy" IS NULL,
                      abs(EXTRACT(EPOCH FROM ("processedAt" - (now() AT TIME ZONE 'UTC')))) < 60
                 FROM "OutboxEvent" WHERE id = 'test-1'"#,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i32>(0), 1);
    assert!(r.get::<_, String>(1).starts_with("HTTP 503"));
    assert!(r.get::<_, bool>(2));
    assert!(
        r.get::<_, bool>(3),
        "processedAt is stored as UTC wall time"
    );
    let (code, out) = doctor(&config);
    assert_eq!(code, 0, "{out}");
    assert!(
        doctor_problems(&out).is_empty(),
        "no warnings for a Prisma-style table: {out}"
    );
}

/// `outbox doctor` on a config with this text: (exit code, report).
fn doctor(config: &str) -> (i32, String) {
    let (_dir, file) = write_config(config);
    let (code, out, _) = run_cli(&["--config", &file, "doctor"]);
    (code, out)
}

/// Writes `text` as a config file; the directory lives as long as the returned guard.
fn write_config(text: &str) -> (TempDir, String) {
    let dir = TempDir::new();
    let path = dir
        .write("outbox.toml", text)
        .to_string_lossy()
        .into_owned();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowercase_table_takes_the_seed_s_unquoted_insert_verbatim() {
    let db = TestDb::new().await;
    let c = db.client().await;
    // Unquoted identifiers fold to lower case: this is the table on which the seed's INSERT
    // works as written.
    c.batch_execute(
        r#"CREATE TYPE outboxstatus AS ENUM ('PENDING', 'PROCESSING', 'SENT', 'FAILED');
           CREATE TABLE "OutboxEvent" (
             id text PRIMARY KEY, eventName text NOT NULL, eventType text NOT NULL,
             aggregateId text NOT NULL, routingKey text NOT NULL, payload jsonb NOT NULL DEFAULT '{}',
             status outboxstatus NOT NULL DEFAULT 'PENDING', occurredAt timestamp(3) NOT NULL DEFAULT now(),
             retryCount int NOT NULL DEFAULT 0, maxRetries int, retryInterval int, maxInterval int,
             nextRetryAt timestamp(3) NOT NULL DEFAULT now(), lockedBy text, lockedUntil timestamp(3),
             lastError text, processedAt timestamp(3));
           CREATE INDEX ON "OutboxEvent" (nextRetryAt) WHERE status = 'PENDING';
           CREATE INDEX ON "OutboxEvent" (lockedUntil) WHERE status = 'PROCESSING';
           CREATE TABLE "OutboxRetryPolicy" (routingKey text PRIMARY KEY, maxRetries int NOT NULL,
             retryInterval int NOT NULL, maxInterval int NOT NULL);
           INSERT INTO "OutboxRetryPolicy" VALUES ('audit.record-auth-log', 5, 100, 1000);"#,
    )
    .await
    .unwrap();
    c.batch_execute(&outbox_store::postgres::print::notify_triggers_sql())
        .await
        .unwrap();
    let server = TestServer::start(one_503_then_ok()).await;
    let config = app_config(&db.url, &server, "");
    // The seed's INSERT, verbatim but for retryInterval (5000 → 100, to keep the test short).
    let seed = "insert into \"OutboxEvent\" (\n  id, eventName, eventType, aggregateId, routingKey,\n  payload, status, occurredAt, retryCount, maxRetries, retryInterval\n) values (\n  'test-1',\n  'PasswordUserLoggedInEvent',\n  'auth.login.success',\n  'user-1',\n  'audit.record-auth-log',\n  '{}',\n  'PENDING',\n  now(),\n  0,\n  5,\n  100\n);";
    let seen = relay_seed_event(
        &config,
        seed,
        &server,
        &c,
        r#"SELECT status::text FROM "OutboxEvent" WHERE id = 'test-1'"#,
    )
    .await;
    assert_eq!(seen.body["aggregateId"], "user-1");
    assert_eq!(seen.header("idempotency-key"), Some("test-1"));
    let (code, out) = doctor(&config);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("eventName→eventname (case-insensitive)"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snake_case_table_with_uuid_ids_and_a_config_override_relays() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(
        r#"CREATE TYPE outbox_status AS ENUM ('PENDING', 'PROCESSING', 'SENT', 'FAILED');
           CREATE TABLE outbox_events (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(), evt_name text NOT NULL, event_type text NOT NULL,
             aggregate_id text NOT NULL, routing_key text NOT NULL, payload jsonb NOT NULL DEFAULT '{}',
             headers jsonb, status outbox_status NOT NULL DEFAULT 'PENDING',
             occurred_at timestamp(3) NOT NULL DEFAULT now(), retry_count int NOT NULL DEFAULT 0,
             max_retries int NOT NULL DEFAULT 3,
             next_retry_at timestamp(3), locked_by text, locked_until timestamp(3),
             last_error text, processed_at timestamp(3));
           CREATE INDEX ON outbox_events (status, next_retry_at);
           CREATE INDEX ON outbox_events (status, locked_until);
           CREATE TABLE outbox_retry_policy (routing_key text PRIMARY KEY, max_retries int NOT NULL,
             retry_interval int NOT NULL, max_interval int NOT NULL, paused boolean NOT NULL DEFAULT false);
           INSERT INTO outbox_retry_policy VALUES ('audit.record-auth-log', 5, 100, 1000, false);"#,
    )
    .await
    .unwrap();
    let server = TestServer::start(one_503_then_ok()).await;
    let config = app_config(&db.url, &server, "columns = { eventName = \"evt_name\" }");
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    c.batch_execute(
        r#"INSERT INTO outbox_events (id, evt_name, event_type, aggregate_id, routing_key, payload, headers)
           VALUES ('6f1c2d3e-0000-4000-8000-000000000001', 'PasswordUserLoggedInEvent', 'auth.login.success',
                   'user-1', 'audit.record-auth-log', '{"ip": "x"}', '{"traceparent": "t-1"}')"#,
    )
    .await
    .unwrap();
    wait_for("SENT", LONG, || async {
        c.query_one("SELECT status::text FROM outbox_events", &[])
            .await
            .map(|r| r.get::<_, String>(0) == "SENT")
            .unwrap_or(false)
    })
    .await;
    worker.stop().await;
    let logs = worker.logs();
    // No NOTIFY trigger here: a warning, and delivery by polling.
    assert!(logs.contains("no NOTIFY trigger"), "{logs}");
    assert!(
        logs.contains(
            "every event carries its own maxRetries, which always overrides the policy's"
        ),
        "{logs}"
    );
    let seen = server.requests()[1].clone();
    assert_eq!(seen.body["id"], "6f1c2d3e-0000-4000-8000-000000000001");
    assert_eq!(seen.body["eventName"], "PasswordUserLoggedInEvent");
    assert_eq!(seen.header("traceparent"), Some("t-1"));
    let r = c
        .query_one("SELECT retry_count, last_error FROM outbox_events", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, i32>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_mode_names_what_is_missing_with_sql_and_prisma_lines_and_does_not_start() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(
        r#"CREATE TYPE "OutboxStatus" AS ENUM ('PENDING', 'SENT', 'FAILED');
           CREATE TABLE "OutboxEvent" ("id" TEXT PRIMARY KEY, "eventName" TEXT NOT NULL, "eventType" TEXT NOT NULL,
             "aggregateId" TEXT NOT NULL, "routingKey" TEXT NOT NULL, "payload" TEXT NOT NULL,
             "status" "OutboxStatus" NOT NULL DEFAULT 'PENDING', "occurredAt" TIMESTAMP(3) NOT NULL,
             "retryCount" INTEGER NOT NULL DEFAULT 0, "nextRetryAt" TIMESTAMP(3) NOT NULL);
           CREATE TABLE "OutboxRetryPolicy" ("routingKey" TEXT PRIMARY KEY, "maxRetries" INTEGER NOT NULL,
             "retryInterval" INTEGER NOT NULL, "maxInterval" INTEGER NOT NULL);"#,
    )
    .await
    .unwrap();
    let server = TestServer::always(200).await;
    let (_config_dir, config) = write_config(&app_config(&db.url, &server, ""));
    let (code, out, _) = run_cli(&["--config", &config, "doctor"]);
    assert_eq!(code, 21, "{out}");
    assert_contains_all(
        &out,
        &[
            r#"✘ schema "public": column lockedBy is missing from "OutboxEvent""#,
            r#"    SQL:    ALTER TABLE "OutboxEvent" ADD COLUMN "lockedBy" text;"#,
            r#"    Prisma: lockedBy String?"#,
            r#"    SQL:    ALTER TABLE "OutboxEvent" ADD COLUMN "lockedUntil" timestamp(3);"#,
            r#"    Prisma: lockedUntil DateTime?"#,
            r#"✘ schema "public": column "OutboxEvent"."payload" has type text; payload needs json or jsonb"#,
            r#"✘ schema "public": enum "OutboxStatus" of the status column lacks PROCESSING"#,
            r#"    SQL:    ALTER TYPE "OutboxStatus" ADD VALUE 'PROCESSING';"#,
            r#"⚠ schema "public": column lastError is missing from "OutboxEvent" (recommended"#,
            r#"⚠ schema "public": no index serves the claim"#,
            r#"⚠ schema "public": no NOTIFY trigger on "OutboxEvent""#,
        ],
    );
    let (code, _, err) = run_cli(&["--config", &config, "run"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the app-owned tables in schema \"public\" cannot be used: "),
        "{err}"
    );
    assert!(
        err.contains("run `outbox doctor` for the SQL and Prisma lines that fix it"),
        "{err}"
    );
    // App mode never runs DDL.
    let (code, _, err) = run_cli(&["--config", &config, "migrate", "deploy"]);
    assert_eq!(code, 2);
    assert!(err.contains("the worker runs no DDL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_print_sql_makes_tables_the_app_mode_worker_accepts_without_warnings() {
    let db = TestDb::new().await;
    let (code, sql, _) = run_cli(&["schema", "print", "--format", "sql"]);
    assert_eq!(code, 0);
    let c = db.client().await;
    c.batch_execute(&sql).await.unwrap();
    insert_policy(&c, KEY, 1, 10, 10).await;
    let server = TestServer::always(200).await;
    let (code, out) = doctor(&app_config(&db.url, &server, ""));
    assert_eq!(code, 0, "{out}");
    assert!(doctor_problems(&out).is_empty(), "{out}");
    assert!(out.contains("All checks passed."), "{out}");
    // No history table: the app owns these tables.
    let history: bool = c
        .query_one("SELECT to_regclass('_outbox_migrations') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!history);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_healthy_setup_and_names_each_broken_part() {
    let db = TestDb::with_policies(&[(KEY, 5, 100), ("orphan.policy", 5, 100)]).await;
    let c = db.client().await;
    let server = TestServer::always(200).await;
    let (code, out) = doctor(&http_config(
        &db.url,
        &server.url("/"),
        &[KEY, "orphan.policy"],
        "",
    ));
    assert_eq!(code, 0, "{out}");
    assert_contains_all(
        &out,
        &[
            "✔ database reachable: PostgreSQL",
            "✔ schema \"public\" (worker-owned): migrations applied, no drift",
            "✔ routes and policies match (2 routingKeys)",
            "✔ every PENDING event is routable (0 PENDING)",
            "✔ no FAILED events",
            "✔ no PENDING events",
            "All checks passed.",
        ],
    );

    insert_event(&c, "stuck", "nobody.knows").await;
    c.batch_execute(r#"UPDATE "OutboxEvent" SET "occurredAt" = now() - interval '3 minutes'; INSERT INTO "OutboxEvent" ("eventName", "eventType", "aggregateId", "routingKey", "status") VALUES ('E', 't', 'a', 'x', 'FAILED')"#)
        .await
        .unwrap();
    let (code, out) = doctor(&http_config(
        &db.url,
        &server.url("/"),
        &[KEY, "route.without.policy"],
        "",
    ));
    assert_eq!(code, 22, "{out}");
    assert_contains_all(
        &out,
        &[
        "✘ route 'route.without.policy' has no OutboxRetryPolicy row: its events will end FAILED",
        r#"    fix: INSERT INTO "public"."OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval") VALUES ('route.without.policy', 5, 5000, 60000);"#,
        "✘ policy 'orphan.policy' has no route in the config: its events will end FAILED",
        "✘ 1 PENDING event(s) with routingKey 'nobody.knows' have no policy and no route",
        "⚠ 1 FAILED event(s)",
        "✔ oldest PENDING event is 3m old",
        "3 check(s) failed.",
        ],
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, out, _) = run_cli(&[
        "--database-url",
        &format!("postgres://postgres@127.0.0.1:{port}/x"),
        "doctor",
    ]);
    assert_eq!(code, 20, "{out}");
    assert!(out.contains("✘ database not reachable"), "{out}");
}
