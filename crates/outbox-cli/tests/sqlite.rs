//! The worker on SQLite, end to end through the binary: the seed's flow (delivery, retry,
//! a permanent failure, no route), a SIGKILLed worker's event taken over after its lease,
//! two workers on one file, and the errors of a file that cannot be used.

use outbox_testkit::*;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";
const LONG: Duration = Duration::from_secs(30);

/// A migrated SQLite database in a scratch folder, with one policy per `(key, maxRetries)`
/// (retries 100 ms apart).
fn database(dir: &TempDir, policies: &[(&str, i32)]) -> (PathBuf, String) {
    let path = dir.0.join("app.db");
    let url = format!("sqlite://{}", path.display());
    let out = outbox(&["--database-url", &url, "migrate", "deploy"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = open(&path);
    for (key, max_retries) in policies {
        c.execute(
            r#"INSERT INTO "OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval") VALUES (?1, ?2, 100, 1000)"#,
            rusqlite::params![key, max_retries],
        )
        .unwrap();
    }
    (path, url)
}

fn open(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

fn insert(c: &Connection, id: &str, key: &str, payload: &str) {
    c.execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload") VALUES (?1, 'PasswordUserLoggedInEvent', 'auth.login.success', 'user-1', ?2, ?3)"#,
        rusqlite::params![id, key, payload],
    )
    .unwrap();
}

/// (status, retryCount, lastError) of one event.
fn row(c: &Connection, id: &str) -> (String, i64, Option<String>) {
    c.query_row(
        r#"SELECT "status", "retryCount", "lastError" FROM "OutboxEvent" WHERE "id" = ?1"#,
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

async fn wait_row(c: &Connection, id: &str, status: &str) -> (String, i64, Option<String>) {
    wait_for(&format!("{id} to be {status}"), LONG, || async {
        row(c, id).0 == status
    })
    .await;
    row(c, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_flow_runs_on_sqlite() {
    let dir = TempDir::new();
    let (path, url) = database(&dir, &[(KEY, 2)]);
    // 503 on the first attempt of `retry-me`, 400 for `reject-me`, 200 otherwise.
    let server = TestServer::start(|seen, earlier| match seen.id().as_str() {
        "retry-me" if earlier == 0 => Reply::status(503),
        "reject-me" => Reply::status(400),
        _ => Reply::status(200),
    })
    .await;
    let config = http_config(&url, &server.url("/audit"), &[KEY], "");
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;

    let c = open(&path);
    let exact = r#"{"a": 1e-30, "b": 0.14285714285714285714, "c": 123456789012345678901234567890, "s": "ü\n\u0001"}"#;
    insert(&c, "test-1", KEY, exact);
    insert(&c, "retry-me", KEY, "{}");
    insert(&c, "reject-me", KEY, "{}");
    insert(&c, "no-route", "unknown.key", "{}");

    assert_eq!(wait_row(&c, "test-1", "SENT").await.1, 0);
    let retried = wait_row(&c, "retry-me", "SENT").await;
    assert_eq!(retried.1, 1, "one retry");
    assert!(
        retried.2.as_deref().unwrap().starts_with("HTTP 503"),
        "{retried:?}"
    );
    let rejected = wait_row(&c, "reject-me", "FAILED").await;
    assert!(
        rejected
            .2
            .as_deref()
            .unwrap()
            .starts_with("permanent failure: HTTP 400"),
        "{rejected:?}"
    );
    let unrouted = wait_row(&c, "no-route", "FAILED").await;
    assert_eq!(
        unrouted.2.as_deref(),
        Some(
            "no OutboxRetryPolicy row for routingKey 'unknown.key' and no route configured for it"
        )
    );

    let first = &server.requests_for("test-1")[0];
    assert_eq!(first.header("idempotency-key"), Some("test-1"));
    assert_eq!(first.header("x-outbox-attempt"), Some("1"));
    let body = String::from_utf8(first.raw.clone()).unwrap();
    assert!(
        body.contains(&format!(r#""payload":{exact}"#)),
        "the payload goes byte for byte: {body}"
    );
    assert_eq!(server.requests_for("retry-me").len(), 2);
    worker.stop().await;

    // The operator commands read the same file.
    let out = outbox(&["--database-url", &url, "stats", "--format", "json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["byStatus"]["SENT"], 2, "{stats}");
    assert_eq!(stats["byStatus"]["FAILED"], 2, "{stats}");
    let out = outbox(&["--database-url", &url, "dlq", "replay", "--id", "reject-me"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(row(&c, "reject-me").0, "PENDING");
    let audited: i64 = c
        .query_row(
            r#"SELECT count(*) FROM "OutboxAudit" WHERE "action" = 'replay' AND "eventId" = 'reject-me'"#,
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_event_is_delivered_after_its_lease_runs_out() {
    let dir = TempDir::new();
    let (path, url) = database(&dir, &[(KEY, 5)]);
    // The first attempt hangs (the worker is killed meanwhile); later ones succeed.
    let server = TestServer::start(|_, earlier| {
        if earlier == 0 {
            Reply::status(200).after(Duration::from_secs(60))
        } else {
            Reply::status(200)
        }
    })
    .await;
    let config = http_config(&url, &server.url("/audit"), &[KEY], "lease = \"2s\"\n")
        .replace("timeout = \"5s\"", "timeout = \"1s\"");
    let mut first = WorkerProcess::start(&config);
    first.wait_started().await;
    let c = open(&path);
    insert(&c, "kill-me", KEY, "{}");
    wait_for("the first attempt", LONG, || async {
        server.requests_for("kill-me").len() == 1
    })
    .await;
    first.signal("KILL");
    first.wait_exit(LONG).await;
    assert_eq!(row(&c, "kill-me").0, "PROCESSING");

    let mut second = WorkerProcess::start(&config);
    second.wait_started().await;
    let (_, retries, error) = wait_row(&c, "kill-me", "SENT").await;
    assert_eq!(retries, 1, "the interrupted attempt counts");
    assert!(error.unwrap_or_default().contains("lease expired"));
    assert_eq!(server.requests_for("kill-me").len(), 2);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_file_deliver_each_event_once() {
    let dir = TempDir::new();
    let (path, url) = database(&dir, &[(KEY, 5)]);
    let server = TestServer::always(200).await;
    let config = http_config(&url, &server.url("/audit"), &[KEY], "");
    let mut a = WorkerProcess::start(&config);
    let mut b = WorkerProcess::start(&config);
    a.wait_started().await;
    b.wait_started().await;
    let mut c = open(&path);
    let n = 400;
    for chunk in 0..4 {
        let tx = c.transaction().unwrap();
        for i in 0..n / 4 {
            insert(&tx, &format!("e-{chunk}-{i}"), KEY, "{}");
        }
        tx.commit().unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for("every event SENT", Duration::from_secs(60), || async {
        c.query_row(
            r#"SELECT count(*) FROM "OutboxEvent" WHERE "status" = 'SENT'"#,
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            == n
    })
    .await;
    let requests = server.requests();
    assert_eq!(requests.len(), n as usize, "one delivery per event");
    let mut ids: Vec<String> = requests.iter().map(|r| r.id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n as usize);
    a.stop().await;
    b.stop().await;
}

#[test]
fn a_file_that_cannot_be_used_is_one_clear_line() {
    let dir = TempDir::new();
    let missing = format!("sqlite://{}/nope.db", dir.0.display());
    let junk = dir.write("junk.db", &"this is not a database ".repeat(100));
    let junk = format!("sqlite://{}", junk.display());
    let no_folder = format!("sqlite://{}/no/such/folder/app.db", dir.0.display());
    for (url, command, code, says) in [
        (
            &missing,
            "status",
            1,
            "does not exist; create it with `outbox migrate deploy`",
        ),
        (&junk, "status", 1, "is not a SQLite database"),
        (&no_folder, "deploy", 1, "the folder of the SQLite database"),
    ] {
        let out = outbox(&["--database-url", url, "migrate", command]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{url}: {err}");
        assert!(err.contains(says), "{url}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A URL that names no file is a config error.
    let out = outbox(&["--database-url", "sqlite:", "migrate", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("names no file"));
}

#[test]
fn doctor_checks_a_sqlite_outbox() {
    let dir = TempDir::new();
    let (path, url) = database(&dir, &[(KEY, 2), ("orphan.key", 1)]);
    insert(&open(&path), "stuck", "unrouted.key", "{}");
    let config = http_config(&url, "http://127.0.0.1:9/x", &[KEY], "");
    let cfg = dir.write("outbox.toml", &config);
    let out = outbox(&["--config", cfg.to_str().unwrap(), "doctor"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(22), "{text}");
    assert_contains_all(
        &text,
        &[
            &format!("✔ database reachable: SQLite database {}", path.display()),
            "migrations applied, no drift",
            "✘ policy 'orphan.key' has no route in the config",
            "✘ 1 PENDING event(s) with routingKey 'unrouted.key' have no policy and no route",
        ],
    );
    assert!(!text.contains("vacuum"), "{text}");
    open(&path)
        .execute_batch(r#"DROP INDEX "OutboxEvent_pending_idx""#)
        .unwrap();
    let out = outbox(&["--config", cfg.to_str().unwrap(), "doctor"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(21), "{text}");
    assert!(text.contains("OutboxEvent_pending_idx"), "{text}");
    let out = outbox(&["--config", cfg.to_str().unwrap(), "migrate", "status"]);
    assert_eq!(out.status.code(), Some(14), "drift");
}

#[test]
fn schema_print_gives_sqlite_s_tables_for_a_sqlite_config() {
    let dir = TempDir::new();
    let cfg = dir.write(
        "outbox.toml",
        "[database]\nurl = \"sqlite:app.db\"\n[routes]\n\"a.b\" = { sink = \"x\" }\n[sinks.x]\ntype = \"blackhole\"\n",
    );
    let out = outbox(&["--config", cfg.to_str().unwrap(), "schema", "print"]);
    assert_eq!(out.status.code(), Some(0));
    let sql = String::from_utf8(out.stdout).unwrap();
    assert!(sql.contains(r#"CREATE TABLE "OutboxEvent""#), "{sql}");
    // It is SQLite's dialect: it runs as it is.
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch(&sql).unwrap();
    c.execute(
        r#"INSERT INTO "OutboxEvent" ("eventName", "eventType", "aggregateId", "routingKey") VALUES ('n', 't', 'a', 'a.b')"#,
        [],
    )
    .unwrap();
    let out = outbox(&[
        "--config",
        cfg.to_str().unwrap(),
        "schema",
        "print",
        "--format",
        "prisma",
    ]);
    // The Prisma models for an app that owns its SQLite tables (no PostgreSQL attributes).
    assert_eq!(out.status.code(), Some(0));
    let prisma = String::from_utf8_lossy(&out.stdout);
    assert!(prisma.contains("model OutboxEvent {"), "{prisma}");
    assert!(prisma.contains("timestamp_format"), "{prisma}");
    assert!(!prisma.contains("@db."), "{prisma}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_another_program_locks_is_waited_for_and_then_reported() {
    let dir = TempDir::new();
    let (path, url) = database(&dir, &[(KEY, 2)]);
    // Another program takes the file for itself (exclusive locking mode, a write
    // transaction open): even readers must wait.
    let holder = open(&path);
    holder
        .execute_batch(
            r#"PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE "OutboxSignal" SET "version" = "version" + 1;"#,
        )
        .unwrap();
    let started = std::time::Instant::now();
    let out = outbox(&["--database-url", &url, "stats"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is busy"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "the busy timeout is waited out first"
    );

    // A worker started meanwhile waits for the file, and relays once it is free.
    let server = TestServer::always(200).await;
    let mut worker = WorkerProcess::start(&http_config(&url, &server.url("/a"), &[KEY], ""));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(worker.wait_exit_now().is_none(), "{}", worker.logs());
    holder
        .execute_batch("COMMIT; PRAGMA locking_mode = NORMAL;")
        .unwrap();
    // Leaving exclusive mode takes effect at the next access.
    holder
        .query_row(r#"SELECT count(*) FROM "OutboxEvent""#, [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    drop(holder);
    worker.wait_started().await;
    let c = open(&path);
    insert(&c, "after-the-lock", KEY, "{}");
    wait_row(&c, "after-the-lock", "SENT").await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_answers_for_a_sqlite_outbox() {
    let dir = TempDir::new();
    let (path, url) = database(&dir, &[(KEY, 2)]);
    let server = TestServer::always(200).await;
    let config = with_admin(&http_config(&url, &server.url("/a"), &[KEY], ""));
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    let addr = admin_addr(&worker).await;
    let (status, body) = http_get(&addr, "/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let c = open(&path);
    for i in 0..3 {
        insert(&c, &format!("m-{i}"), KEY, "{}");
    }
    wait_row(&c, "m-2", "SENT").await;
    let delivered = format!("outbox_events_delivered_total{{routing_key=\"{KEY}\",sink=\"api\"}}");
    wait_for("3 delivered in /metrics", LONG, || async {
        let text = http_get(&addr, "/metrics")
            .await
            .map(|r| r.1)
            .unwrap_or_default();
        sample(&text, &delivered) == 3.0
    })
    .await;
    // The backlog gauge is sampled from the store (shown once a sample succeeded).
    let text = http_get(&addr, "/metrics").await.unwrap().1;
    assert!(
        text.contains("# TYPE outbox_pending_events gauge"),
        "{text}"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_s_own_snake_case_tables_are_relayed_as_they_are() {
    let dir = TempDir::new();
    let path = dir.0.join("app.db");
    let c = open(&path);
    // An app's own tables: snake_case names, SQLite's CURRENT_TIMESTAMP text defaults, no
    // lastError column, only the four required policy columns.
    c.execute_batch(
        r#"CREATE TABLE outbox_events (
               id TEXT PRIMARY KEY, event_name TEXT NOT NULL, event_type TEXT NOT NULL,
               aggregate_id TEXT NOT NULL, routing_key TEXT NOT NULL, payload TEXT NOT NULL,
               status TEXT NOT NULL DEFAULT 'PENDING',
               occurred_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
               retry_count INTEGER NOT NULL DEFAULT 0,
               next_retry_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
               locked_by TEXT, locked_until TIMESTAMP, processed_at TIMESTAMP);
           CREATE INDEX outbox_events_claim ON outbox_events (status, next_retry_at);
           CREATE TABLE outbox_retry_policy (routing_key TEXT PRIMARY KEY, max_retries INT NOT NULL,
               retry_interval INT NOT NULL, max_interval INT NOT NULL);
           INSERT INTO outbox_retry_policy VALUES ('audit.record-auth-log', 0, 100, 1000);
           INSERT INTO outbox_events (id, event_name, event_type, aggregate_id, routing_key, payload)
               VALUES ('old', 'n', 't', 'a', 'audit.record-auth-log', '{"before": true}');"#,
    )
    .unwrap();
    let url = format!("sqlite:{}", path.display());
    let server = TestServer::start(|seen, _| match seen.id().as_str() {
        "reject-me" => Reply::status(400),
        _ => Reply::status(200),
    })
    .await;
    let config = app_config(&url, &server.url("/audit"), &[KEY], "");
    let cfg = dir.write("outbox.toml", &config);
    let out = outbox(&["--config", cfg.to_str().unwrap(), "doctor"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_contains_all(
        &report,
        &[
            "OutboxEvent.eventName→event_name (snake_case)",
            "column lastError is missing from \"outbox_events\"",
            "ALTER TABLE \"outbox_events\" ADD COLUMN \"last_error\" TEXT;",
            "no index serves the lease reaper",
        ],
    );
    // Timestamps are text here (the newest event's): the worker writes ISO-8601 text too.
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    c.execute_batch(
        r#"INSERT INTO outbox_events (id, event_name, event_type, aggregate_id, routing_key, payload)
               VALUES ('new', 'n', 't', 'a', 'audit.record-auth-log', '{}'),
                      ('reject-me', 'n', 't', 'b', 'audit.record-auth-log', '{}');"#,
    )
    .unwrap();
    let state = |id: &str| -> (String, String) {
        c.query_row(
            "SELECT status, COALESCE(processed_at, '') FROM outbox_events WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    for (id, want) in [("old", "SENT"), ("new", "SENT"), ("reject-me", "FAILED")] {
        wait_for(&format!("{id} to be {want}"), LONG, || async {
            state(id).0 == want
        })
        .await;
        assert!(state(id).1.ends_with("+00:00"), "{:?}", state(id));
    }
    worker.stop().await;
    assert_eq!(server.requests_for("old").len(), 1);
    assert!(worker.logs().contains("Column mapped"), "{}", worker.logs());
    // The operator commands go through the same names.
    operator_commands_on_app_tables(&cfg, "reject-me", KEY);
    assert_eq!(state("reject-me").0, "PENDING");
}
