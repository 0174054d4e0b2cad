//! The Prisma round trip with Prisma's real tools: the printed model → Prisma's own DDL →
//! a fresh database → `outbox doctor` (app mode) clean → Prisma Client writes a business row
//! and an OutboxEvent in one transaction → the worker delivers it.
//!
//! The same on SQLite: Prisma's DDL for the printed SQLite models, a Prisma 7 client with the
//! libsql driver adapter writing ISO-8601 timestamps, the worker adopting the tables, and
//! Prisma Client reading back what the worker wrote.
//!
//! Needs Node and `npm ci` in interop/prisma, so they are ignored by default; `scripts/test`
//! installs the packages and runs them (`cargo nextest run --run-ignored all`).

use outbox_testkit::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/prisma")
}

fn roundtrip(db_url: &str, args: &[&str]) -> String {
    roundtrip_with(("DATABASE_URL", db_url), args)
}

fn roundtrip_with(env: (&str, &str), args: &[&str]) -> String {
    let out = Command::new(interop_dir().join("roundtrip.sh"))
        .args(args)
        .env(env.0, env.1)
        .output()
        .expect("run interop/prisma/roundtrip.sh");
    assert!(
        out.status.success(),
        "roundtrip.sh {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `outbox doctor` on `config` (written into `dir`) passes with no warning — the printed
/// model, as `what`, is accepted — and then a worker runs on it.
async fn doctor_clean_then_run(dir: &TempDir, config: &str, what: &str) -> WorkerProcess {
    let cfg = dir.write("outbox.toml", config);
    let out = outbox(&["--config", cfg.to_str().unwrap(), "doctor"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        doctor_problems(&report).is_empty(),
        "{what} is accepted with no warnings:\n{report}"
    );
    let worker = WorkerProcess::start(config);
    worker.wait_started().await;
    worker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and `npm ci` in interop/prisma; scripts/test runs it"]
async fn prisma_model_round_trip_and_a_prisma_client_transaction_is_relayed() {
    assert!(
        interop_dir().join("node_modules/prisma6").is_dir(),
        "run `npm ci` in interop/prisma first (scripts/test does)"
    );
    let db = TestDb::new().await;
    let bin = bin();
    roundtrip(&db.url, &["prepare", bin.to_str().unwrap()]);

    let c = db.client().await;
    // Prisma made the tables: an enum status, timestamptz(3) columns, its own history-free DDL.
    let status_type: String = c
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = '\"OutboxEvent\"'::regclass AND attname = 'status'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status_type, "\"OutboxStatus\"");
    insert_policy(&c, KEY, 3, 100, 1000).await;

    let server = TestServer::always(200).await;
    let config = app_config(&db.url, &server.url("/audit"), &[KEY], "");
    let dir = TempDir::new();
    let mut worker = doctor_clean_then_run(&dir, &config, "the printed model").await;
    let id = roundtrip(&db.url, &["write"]).trim().to_string();
    assert!(!id.is_empty());
    let row = wait_status(&c, &id, "SENT", Duration::from_secs(30)).await;
    assert_eq!(row.retry_count, 0);
    worker.stop().await;

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("idempotency-key"), Some(id.as_str()));
    assert_eq!(
        reqs[0].body["payload"],
        serde_json::json!({"ip": "10.0.0.1"})
    );
    let auth_logs: i64 = c
        .query_one(r#"SELECT count(*) FROM "AuthLog""#, &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        auth_logs, 1,
        "the business row was written in the same transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and `npm ci` in interop/prisma; scripts/test runs it"]
async fn a_prisma_app_on_sqlite_is_relayed_and_reads_back_what_the_worker_wrote() {
    assert!(
        interop_dir()
            .join("node_modules/@prisma/adapter-libsql")
            .is_dir(),
        "run `npm ci` in interop/prisma first (scripts/test does)"
    );
    let dir = TempDir::new();
    let path = dir.0.join("app.db");
    let file = path.to_str().unwrap();
    let bin = bin();
    roundtrip_with(
        ("SQLITE_FILE", file),
        &["prepare-sqlite", bin.to_str().unwrap()],
    );

    let c = rusqlite::Connection::open(&path).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    // Prisma made the tables: DATETIME columns, JSONB payload, no checks, no migration history.
    let ddl: String = c
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'OutboxEvent'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        ddl.contains(r#""occurredAt" DATETIME"#) && ddl.contains(r#""payload" JSONB"#),
        "{ddl}"
    );
    assert!(!ddl.contains("CHECK"), "{ddl}");
    c.execute(
        r#"INSERT INTO "OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval") VALUES (?1, 3, 100, 1000)"#,
        [KEY],
    )
    .unwrap();

    let server = TestServer::always(200).await;
    let url = format!("sqlite:{file}");
    let config = app_config(
        &url,
        &server.url("/audit"),
        &[KEY],
        "timestamp_format = \"iso8601\"",
    );
    let mut worker = doctor_clean_then_run(&dir, &config, "the printed SQLite model").await;
    let id = roundtrip_with(("SQLITE_FILE", file), &["write-sqlite"])
        .trim()
        .to_string();
    assert!(!id.is_empty());
    let status = || -> String {
        c.query_row(
            r#"SELECT "status" FROM "OutboxEvent" WHERE "id" = ?1"#,
            [&id],
            |r| r.get(0),
        )
        .unwrap()
    };
    wait_for(
        "the Prisma-written event to be SENT",
        Duration::from_secs(30),
        || async { status() == "SENT" },
    )
    .await;
    worker.stop().await;

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("idempotency-key"), Some(id.as_str()));
    assert_eq!(
        reqs[0].body["payload"],
        serde_json::json!({"ip": "10.0.0.1"})
    );
    let (auth_logs, stamp_kind, stamp): (i64, String, String) = c
        .query_row(
            r#"SELECT (SELECT count(*) FROM "AuthLog"), typeof("processedAt"), "processedAt" FROM "OutboxEvent" WHERE "id" = ?1"#,
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        auth_logs, 1,
        "the business row was written in the same transaction"
    );
    // The worker wrote its timestamp in the app's form, and Prisma Client reads it back.
    assert_eq!(stamp_kind, "text", "{stamp}");
    assert!(stamp.ends_with("+00:00"), "{stamp}");
    let back: serde_json::Value = serde_json::from_str(&roundtrip_with(
        ("SQLITE_FILE", file),
        &["read-sqlite", &id],
    ))
    .unwrap();
    assert_eq!(back["status"], "SENT", "{back}");
    assert_eq!(back["lockedBy"], serde_json::Value::Null, "{back}");
    let processed = back["processedAt"].as_str().unwrap_or_default();
    let processed =
        chrono::DateTime::parse_from_rfc3339(processed).unwrap_or_else(|e| panic!("{back}: {e}"));
    let occurred =
        chrono::DateTime::parse_from_rfc3339(back["occurredAt"].as_str().unwrap()).unwrap();
    assert!(processed >= occurred, "{back}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and `npm ci` in interop/prisma; scripts/test runs it"]
async fn a_prisma_app_on_mariadb_is_relayed_and_reads_back_what_the_worker_wrote() {
    assert!(
        interop_dir()
            .join("node_modules/@prisma/adapter-mariadb")
            .is_dir(),
        "run `npm ci` in interop/prisma first (scripts/test does)"
    );
    let db = MysqlDb::new().await;
    let bin = bin();
    roundtrip(&db.url, &["prepare-mysql", bin.to_str().unwrap()]);
    // Prisma's tables: an ENUM status, DATETIME(3), its collation, no migration history.
    let (status_type, collation): (String, String) = {
        use mysql_async::prelude::Queryable;
        db.conn()
            .await
            .exec_first(
                "SELECT COLUMN_TYPE, COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'OutboxEvent' AND COLUMN_NAME = 'status'",
                (&db.name,),
            )
            .await
            .unwrap()
            .unwrap()
    };
    assert!(status_type.starts_with("enum("), "{status_type}");
    assert_eq!(collation, "utf8mb4_unicode_ci");
    db.exec_params(
        "INSERT INTO `OutboxRetryPolicy` (`routingKey`, `maxRetries`, `retryInterval`, `maxInterval`, `updatedAt`) VALUES (?, 3, 100, 1000, NOW(3))",
        mysql_async::Params::Positional(vec![KEY.into()]),
    )
    .await;

    let server = TestServer::always(200).await;
    let config = app_config(&db.url, &server.url("/audit"), &[KEY], "");
    let dir = TempDir::new();
    let mut worker = doctor_clean_then_run(&dir, &config, "the printed MySQL model").await;
    let id = roundtrip(&db.url, &["write-mysql"]).trim().to_string();
    assert!(!id.is_empty());
    db.wait_row(&id, "SENT", Duration::from_secs(30)).await;
    worker.stop().await;

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("idempotency-key"), Some(id.as_str()));
    assert_eq!(
        reqs[0].body["payload"],
        serde_json::json!({"ip": "10.0.0.1"})
    );
    let auth_logs: Option<i64> = {
        use mysql_async::prelude::Queryable;
        db.conn()
            .await
            .query_first("SELECT COUNT(*) FROM `AuthLog`")
            .await
            .unwrap()
    };
    assert_eq!(
        auth_logs,
        Some(1),
        "the business row was written in the same transaction"
    );
    // Prisma Client reads back what the worker wrote (UTC DATETIME(3)).
    let back: serde_json::Value =
        serde_json::from_str(&roundtrip(&db.url, &["read-mysql", &id])).unwrap();
    assert_eq!(back["status"], "SENT", "{back}");
    assert_eq!(back["lockedBy"], serde_json::Value::Null, "{back}");
    let processed = back["processedAt"].as_str().unwrap_or_default();
    let processed =
        chrono::DateTime::parse_from_rfc3339(processed).unwrap_or_else(|e| panic!("{back}: {e}"));
    let occurred =
        chrono::DateTime::parse_from_rfc3339(back["occurredAt"].as_str().unwrap()).unwrap();
    assert!(processed >= occurred, "{back}");
    assert!(
        (chrono::Utc::now() - processed.with_timezone(&chrono::Utc)).num_seconds() < 120,
        "processedAt is UTC: {back}"
    );
}
