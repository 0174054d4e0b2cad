//! The worker on MySQL / MariaDB, end to end through the binary, on the local MariaDB
//! (scripts/services starts it): the seed's flow, a SIGKILLed worker's event taken over after
//! its lease, three workers delivering 3,000 events each once, a server restart (a private
//! throwaway server) survived, and an app's own snake_case tables relayed as they are.

use mysql_async::prelude::Queryable;
use outbox_testkit::*;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";
const LONG: Duration = Duration::from_secs(60);

async fn insert(db: &MysqlDb, id: &str, key: &str, payload: &str) {
    db.exec_params(
        "INSERT INTO `OutboxEvent` (`id`, `eventName`, `eventType`, `aggregateId`, `routingKey`, `payload`)
         VALUES (?, 'PasswordUserLoggedInEvent', 'auth.login.success', 'user-1', ?, ?)",
        mysql_async::Params::Positional(vec![id.into(), key.into(), payload.into()]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_flow_runs_on_mariadb() {
    let db = MysqlDb::with_policies(&[(KEY, 2, 100)]).await;
    let server = TestServer::start(|seen, earlier| match seen.id().as_str() {
        "retry-me" if earlier == 0 => Reply::status(503),
        "reject-me" => Reply::status(400),
        _ => Reply::status(200),
    })
    .await;
    let config = http_config(&db.url, &server.url("/audit"), &[KEY], "");
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    let exact = r#"{"a": 1e-30, "b": 0.14285714285714285714, "c": 123456789012345678901234567890, "s": "ü\n\u0001 😀", "a": 2}"#;
    insert(&db, "test-1", KEY, exact).await;
    insert(&db, "retry-me", KEY, "{}").await;
    insert(&db, "reject-me", KEY, "{}").await;
    insert(&db, "no-route", "unknown.key", "{}").await;

    assert_eq!(db.wait_row("test-1", "SENT", LONG).await.1, 0);
    let retried = db.wait_row("retry-me", "SENT", LONG).await;
    assert_eq!(retried.1, 1, "one retry");
    assert!(
        retried.2.as_deref().unwrap().starts_with("HTTP 503"),
        "{retried:?}"
    );
    let rejected = db.wait_row("reject-me", "FAILED", LONG).await;
    assert!(
        rejected
            .2
            .as_deref()
            .unwrap()
            .starts_with("permanent failure: HTTP 400"),
        "{rejected:?}"
    );
    let unrouted = db.wait_row("no-route", "FAILED", LONG).await;
    assert!(
        unrouted
            .2
            .as_deref()
            .unwrap()
            .contains("no OutboxRetryPolicy row"),
        "{unrouted:?}"
    );
    let first = &server.requests_for("test-1")[0];
    assert_eq!(first.header("idempotency-key"), Some("test-1"));
    let body = String::from_utf8(first.raw.clone()).unwrap();
    assert!(
        body.contains(&format!(r#""payload":{exact}"#)),
        "byte for byte: {body}"
    );
    worker.stop().await;

    let out = outbox(&["--database-url", &db.url, "stats", "--format", "json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["byStatus"]["SENT"], 2, "{stats}");
    assert_eq!(stats["byStatus"]["FAILED"], 2, "{stats}");
    let out = outbox(&[
        "--database-url",
        &db.url,
        "dlq",
        "replay",
        "--id",
        "reject-me",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.row("reject-me").await.unwrap().0, "PENDING");
    let audited: Option<i64> = db
        .conn()
        .await
        .query_first("SELECT COUNT(*) FROM `OutboxAudit` WHERE `action` = 'replay' AND `eventId` = 'reject-me'")
        .await
        .unwrap();
    assert_eq!(audited, Some(1));
    let out = outbox(&["--database-url", &db.url, "migrate", "status"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_event_is_delivered_after_its_lease_runs_out() {
    let db = MysqlDb::with_policies(&[(KEY, 5, 100)]).await;
    let server = TestServer::start(|_, earlier| {
        if earlier == 0 {
            Reply::status(200).after(Duration::from_secs(60))
        } else {
            Reply::status(200)
        }
    })
    .await;
    let config = http_config(&db.url, &server.url("/audit"), &[KEY], "lease = \"2s\"\n")
        .replace("timeout = \"5s\"", "timeout = \"1s\"");
    let mut first = WorkerProcess::start(&config);
    first.wait_started().await;
    insert(&db, "kill-me", KEY, "{}").await;
    wait_for("the first attempt", LONG, || async {
        server.requests_for("kill-me").len() == 1
    })
    .await;
    first.signal("KILL");
    first.wait_exit(LONG).await;
    assert_eq!(db.row("kill-me").await.unwrap().0, "PROCESSING");

    let mut second = WorkerProcess::start(&config);
    second.wait_started().await;
    let (_, retries, error) = db.wait_row("kill-me", "SENT", LONG).await;
    assert_eq!(retries, 1, "the interrupted attempt counts");
    assert!(error.unwrap_or_default().contains("lease expired"));
    assert_eq!(server.requests_for("kill-me").len(), 2);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_deliver_3000_events_each_once() {
    let db = MysqlDb::with_policies(&[(KEY, 5, 100)]).await;
    let server = TestServer::always(200).await;
    let config = http_config(&db.url, &server.url("/audit"), &[KEY], "batch_size = 50");
    let mut workers: Vec<WorkerProcess> = (0..3).map(|_| WorkerProcess::start(&config)).collect();
    for w in &workers {
        w.wait_started().await;
    }
    db.exec(&format!(
        "INSERT INTO `OutboxEvent` (`id`, `eventName`, `eventType`, `aggregateId`, `routingKey`, `payload`)
         SELECT CONCAT('e-', a.i + 10 * b.i + 100 * c.i + 1000 * d.i), 'N', 't', CONCAT('agg-', a.i), '{KEY}', '{{}}'
           FROM (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) a,
                (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) b,
                (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) c,
                (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2) d"
    ))
    .await;
    wait_for("all 3000 SENT", LONG, || async {
        db.count("SENT").await == 3000
    })
    .await;
    for w in &mut workers {
        w.stop().await;
    }
    // Each event reached the receiver once: no two workers delivered the same claim, and
    // no attempt timed out (the receiver answers at once).
    let requests = server.requests();
    let mut ids: Vec<&str> = requests
        .iter()
        .filter_map(|r| r.header("idempotency-key"))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3000, "every event reached the receiver");
    assert_eq!(requests.len(), 3000, "each event once");
    let busy = workers
        .iter()
        .filter(|w| w.logs().contains("Processing"))
        .count();
    assert!(busy >= 2, "the work was shared");
}

/// A MariaDB server of the test's own (a scratch data folder, a free port).
struct PrivateServer {
    dir: TempDir,
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateServer {
    fn start() -> PrivateServer {
        let dir = TempDir::new();
        let data = dir.0.join("data");
        let out = std::process::Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("mariadb-install-db");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = PrivateServer {
            dir,
            port,
            child: None,
        };
        s.run();
        s
    }

    fn run(&mut self) {
        let d = &self.dir.0;
        let child = std::process::Command::new("mariadbd")
            .args([
                "--no-defaults",
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
            ])
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", d.join("s.sock").display()))
            .arg(format!("--pid-file={}", d.join("p.pid").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mariadbd");
        self.child = Some(child);
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "mariadbd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_survives_a_server_restart_and_finishes() {
    let mut server_db = PrivateServer::start();
    let admin = format!("mysql://root@127.0.0.1:{}", server_db.port);
    let mut c = mysql_async::Conn::from_url(admin.as_str()).await.unwrap();
    c.query_drop("CREATE DATABASE outbox").await.unwrap();
    c.disconnect().await.unwrap();
    let url = format!("{admin}/outbox");
    let out = outbox(&["--database-url", &url, "migrate", "deploy"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exec = |sql: String| {
        let url = url.clone();
        async move {
            let mut c = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
            c.query_drop(sql).await.unwrap();
            c.disconnect().await.unwrap();
        }
    };
    let count = |status: &'static str| {
        let url = url.clone();
        async move {
            match mysql_async::Conn::from_url(url.as_str()).await {
                Ok(mut c) => {
                    let n: Option<i64> = c
                        .exec_first(
                            "SELECT COUNT(*) FROM `OutboxEvent` WHERE `status` = ?",
                            (status,),
                        )
                        .await
                        .unwrap_or(None);
                    let _ = c.disconnect().await;
                    n.unwrap_or(-1)
                }
                Err(_) => -1,
            }
        }
    };
    exec(format!("INSERT INTO `OutboxRetryPolicy` (`routingKey`, `maxRetries`, `retryInterval`, `maxInterval`) VALUES ('{KEY}', 50, 100, 1000)")).await;
    let http = TestServer::start(|_, _| Reply::status(200).after(Duration::from_millis(5))).await;
    let config = http_config(&url, &http.url("/audit"), &[KEY], "concurrency = 4");
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    let batch = |from: i32| {
        format!(
            "INSERT INTO `OutboxEvent` (`id`, `eventName`, `eventType`, `aggregateId`, `routingKey`)
             SELECT CONCAT('r-', {from} + a.i + 10 * b.i), 'N', 't', 'a', '{KEY}'
               FROM (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) a,
                    (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) b"
        )
    };
    exec(batch(0)).await;
    wait_for("some SENT", LONG, || async { count("SENT").await >= 10 }).await;
    server_db.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    server_db.run();
    exec(batch(100)).await;
    wait_for("all 200 SENT", LONG, || async {
        count("SENT").await == 200
    })
    .await;
    worker.stop().await;
    assert_eq!(count("FAILED").await, 0);
    let mut ids: Vec<String> = http
        .requests()
        .iter()
        .filter_map(|r| r.header("idempotency-key").map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "every event reached the destination");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_s_own_snake_case_tables_are_relayed_as_they_are() {
    let db = MysqlDb::new().await;
    // An app's own tables: snake_case names, a TIMESTAMP column, the server's default
    // collation, no lastError and no seq column, only the four required policy columns.
    db.exec(
        r#"CREATE TABLE outbox_events (
               id VARCHAR(64) PRIMARY KEY, event_name VARCHAR(100) NOT NULL, event_type VARCHAR(100) NOT NULL,
               aggregate_id VARCHAR(64) NOT NULL, routing_key VARCHAR(100) NOT NULL, payload LONGTEXT NOT NULL,
               status VARCHAR(16) NOT NULL DEFAULT 'PENDING',
               occurred_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
               retry_count INT NOT NULL DEFAULT 0,
               next_retry_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
               locked_by VARCHAR(100) NULL, locked_until DATETIME(3) NULL, processed_at DATETIME(3) NULL,
               KEY outbox_events_claim (status, next_retry_at)
           ) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_general_ci;
           CREATE TABLE outbox_retry_policy (routing_key VARCHAR(100) PRIMARY KEY, max_retries INT NOT NULL,
               retry_interval INT NOT NULL, max_interval INT NOT NULL);
           INSERT INTO outbox_retry_policy VALUES ('audit.record-auth-log', 0, 100, 1000);
           INSERT INTO outbox_events (id, event_name, event_type, aggregate_id, routing_key, payload)
               VALUES ('old', 'n', 't', 'a', 'audit.record-auth-log', '{"before": true}');"#,
    )
    .await;
    let server = TestServer::start(|seen, _| match seen.id().as_str() {
        "reject-me" => Reply::status(400),
        _ => Reply::status(200),
    })
    .await;
    let config = app_config(&db.url, &server.url("/audit"), &[KEY], "");
    let dir = TempDir::new();
    let cfg = dir.write("outbox.toml", &config);
    let out = outbox(&["--config", cfg.to_str().unwrap(), "doctor"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_contains_all(
        &report,
        &[
            "OutboxEvent.eventName→event_name (snake_case)",
            "column lastError is missing from `outbox_events`",
            "ALTER TABLE `outbox_events` ADD COLUMN `last_error` TEXT NULL;",
            "no index serves the lease reaper",
        ],
    );
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    db.exec(
        r#"INSERT INTO outbox_events (id, event_name, event_type, aggregate_id, routing_key, payload)
               VALUES ('new', 'n', 't', 'a', 'audit.record-auth-log', '{}'),
                      ('reject-me', 'n', 't', 'b', 'audit.record-auth-log', '{}');"#,
    )
    .await;
    let state = |id: &'static str| {
        let db = &db;
        async move {
            let row: Option<(String, Option<String>)> = db
                .conn()
                .await
                .exec_first(
                    "SELECT status, CAST(processed_at AS CHAR) FROM outbox_events WHERE id = ?",
                    (id,),
                )
                .await
                .unwrap();
            row.unwrap()
        }
    };
    for (id, want) in [("old", "SENT"), ("new", "SENT"), ("reject-me", "FAILED")] {
        wait_for(&format!("{id} to be {want}"), LONG, || async {
            state(id).await.0 == want
        })
        .await;
        assert!(state(id).await.1.is_some(), "{id}: processed_at written");
    }
    worker.stop().await;
    assert_eq!(server.requests_for("old").len(), 1);
    // The operator commands go through the same names.
    operator_commands_on_app_tables(&cfg, "reject-me", KEY);
    assert_eq!(state("reject-me").await.0, "PENDING");
}
