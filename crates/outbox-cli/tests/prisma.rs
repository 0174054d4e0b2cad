//! The Prisma round trip with Prisma's real tools: the printed model → Prisma's own DDL →
//! a fresh database → `outbox doctor` (app mode) clean → Prisma Client writes a business row
//! and an OutboxEvent in one transaction → the worker delivers it.
//!
//! Needs Node and `npm ci` in interop/prisma, so it is ignored by default; `scripts/test`
//! installs the packages and runs it (`cargo nextest run --run-ignored all`).

use outbox_testkit::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/prisma")
}

fn roundtrip(db_url: &str, args: &[&str]) -> String {
    let out = Command::new(interop_dir().join("roundtrip.sh"))
        .args(args)
        .env("DATABASE_URL", db_url)
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
    let cfg = dir.write("outbox.toml", &config);
    let out = outbox(&["--config", cfg.to_str().unwrap(), "doctor"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        doctor_problems(&report).is_empty(),
        "the printed model is accepted with no warnings:\n{report}"
    );

    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
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
