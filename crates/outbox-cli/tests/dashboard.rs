//! The dashboard as an operator uses it: `outbox run` with `[admin] dashboard = true` (and
//! `outbox dashboard` alone), driven in headless Chromium by `tests/browser/dashboard.mjs`
//! (Playwright), on PostgreSQL, SQLite and MariaDB. The page must show the right counts, list
//! a FAILED event and narrow the list by routingKey, replay it (after a confirmation) so a
//! real receiver gets it, pause and resume a route, refuse a client without the token, and
//! show a payload exactly as stored. The overview under load is saved as a screenshot
//! (`target/dashboard-overview.png`, used by the README).

use outbox_testkit::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const FAILING: &str = "audit.record";
const OTHER: &str = "billing.charge";
const TOKEN: &str = "dashboard-test-token-0123456789";
const LONG: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs one step of the browser script; panics with what it printed when it fails.
async fn browser(step: &str, base: &str, args: &[&str], env: &[(&str, String)]) {
    let mut cmd = std::process::Command::new("node");
    cmd.arg(repo().join("tests/browser/dashboard.mjs"))
        .arg(step)
        .arg(base)
        .args(args)
        .env(
            "OUTBOX_BROWSER_MODULES",
            repo().join("tests/browser/node_modules"),
        )
        .env("OUTBOX_TOKEN", TOKEN);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("node"))
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser step {step} failed:\n{text}");
}

/// A receiver that refuses `bad` (HTTP 400, permanent) until healed, and takes the rest.
struct Receiver {
    server: TestServer,
    healed: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(bad: &'static str, delay: Duration) -> Receiver {
        let healed = Arc::new(AtomicBool::new(false));
        let h = healed.clone();
        let server = TestServer::start(move |seen, _| {
            if seen.id() == bad && !h.load(Ordering::SeqCst) {
                Reply::status(400)
            } else {
                Reply::status(200).after(delay)
            }
        })
        .await;
        Receiver { server, healed }
    }
}

/// `[admin]` with the dashboard, its token and actions on `port`.
fn admin_section(port: u16) -> String {
    admin_section_on("127.0.0.1", port)
}

fn admin_section_on(host: &str, port: u16) -> String {
    format!(
        "\n[admin]\nlisten = \"{host}:{port}\"\ndashboard = true\ntoken = \"{TOKEN}\"\nactions = true\n"
    )
}

/// This machine's address on its network (not loopback): where a client on another host
/// would reach it.
fn outside_address() -> std::net::IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // A UDP connect only picks the route; nothing is sent.
    probe.connect("10.255.255.255:9").unwrap();
    let ip = probe.local_addr().unwrap().ip();
    assert!(
        !ip.is_loopback() && !ip.is_unspecified(),
        "no network address: {ip}"
    );
    ip
}

/// The SQL every store here accepts: double-quoted names become backticks on MySQL.
enum Db {
    Pg(TestDb, tokio_postgres::Client),
    Sqlite(TempDir, String),
    Mysql(MysqlDb),
}

impl Db {
    async fn postgres() -> Db {
        let db = TestDb::with_policies(&[]).await;
        let c = db.client().await;
        Db::Pg(db, c)
    }

    fn sqlite() -> Db {
        let dir = TempDir::new();
        let url = format!("sqlite://{}", dir.0.join("app.db").display());
        Db::Sqlite(dir, url)
    }

    async fn mysql() -> Db {
        Db::Mysql(MysqlDb::new().await)
    }

    fn url(&self) -> String {
        match self {
            Db::Pg(db, _) => db.url.clone(),
            Db::Sqlite(_, url) => url.clone(),
            Db::Mysql(db) => db.url.clone(),
        }
    }

    async fn exec(&self, sql: &str) {
        match self {
            Db::Pg(_, c) => {
                c.batch_execute(sql).await.unwrap();
            }
            Db::Sqlite(dir, _) => {
                let c = rusqlite::Connection::open(dir.0.join("app.db")).unwrap();
                c.busy_timeout(Duration::from_secs(10)).unwrap();
                c.execute_batch(sql).unwrap();
            }
            Db::Mysql(db) => db.exec(&sql.replace('"', "`")).await,
        }
    }

    async fn text(&self, sql: &str) -> Option<String> {
        match self {
            Db::Pg(_, c) => c
                .query_opt(sql, &[])
                .await
                .unwrap()
                .map(|r| r.get::<_, String>(0)),
            Db::Sqlite(dir, _) => {
                let c = rusqlite::Connection::open(dir.0.join("app.db")).unwrap();
                c.busy_timeout(Duration::from_secs(10)).unwrap();
                c.query_row(sql, [], |r| r.get::<_, String>(0)).ok()
            }
            Db::Mysql(db) => {
                use mysql_async::prelude::Queryable;
                let mut c = db.conn().await;
                c.query_first::<String, _>(sql.replace('"', "`"))
                    .await
                    .unwrap()
            }
        }
    }

    async fn status(&self, id: &str) -> String {
        self.text(&format!(
            r#"SELECT "status" FROM "OutboxEvent" WHERE "id" = '{id}'"#
        ))
        .await
        .unwrap_or_default()
    }

    async fn wait_status(&self, id: &str, status: &str) {
        wait_for(&format!("{id} to be {status}"), LONG, || async {
            self.status(id).await == status
        })
        .await;
    }

    /// Migrates with the binary and adds the two policies (no retries for FAILING).
    async fn prepare(&self) {
        let out = outbox(&["--database-url", &self.url(), "migrate", "deploy"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.exec(&format!(
            r#"INSERT INTO "OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval") VALUES ('{FAILING}', 0, 100, 1000), ('{OTHER}', 3, 100, 1000)"#
        ))
        .await;
    }

    async fn insert(&self, id: &str, key: &str, payload: &str) {
        self.exec(&format!(
            r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload") VALUES ('{id}', 'Happened', 'thing.happened', 'agg-{id}', '{key}', '{payload}')"#
        ))
        .await;
    }
}

/// A worker with the dashboard on `db`: returns it and the dashboard's address.
async fn worker_with_dashboard(db: &Db, receiver: &Receiver) -> (WorkerProcess, String) {
    worker_with_dashboard_on(db, receiver, "127.0.0.1", "127.0.0.1").await
}

/// [`worker_with_dashboard`] listening on `host`, reached at `reach`.
async fn worker_with_dashboard_on(
    db: &Db,
    receiver: &Receiver,
    host: &str,
    reach: &str,
) -> (WorkerProcess, String) {
    let port = free_port();
    let config = http_config(
        &db.url(),
        &receiver.server.url("/hook"),
        &[FAILING, OTHER],
        "",
    ) + &admin_section_on(host, port);
    let worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    let base = format!("http://{reach}:{port}/");
    wait_for("the dashboard to answer", LONG, || async {
        reqwest_status(&format!("{base}api/overview"), Some(TOKEN)).await == Some(200)
    })
    .await;
    (worker, base)
}

/// `outbox dashboard` on `url` (with `admin_extra` lines in `[admin]`), answering: the
/// process and the dashboard's address.
async fn standalone(url: &str, admin_extra: &str) -> (WorkerProcess, String) {
    let port = free_port();
    let config = format!(
        "[database]\nurl = \"{url}\"\n{}{admin_extra}",
        admin_section(port)
    );
    let listen = format!("127.0.0.1:{port}");
    let dash = WorkerProcess::start_with_args(&config, &["dashboard", "--listen", &listen]);
    let base = format!("http://127.0.0.1:{port}/");
    wait_for("the dashboard to answer", LONG, || async {
        reqwest_status(&format!("{base}api/overview"), Some(TOKEN)).await == Some(200)
    })
    .await;
    (dash, base)
}

/// The status of a GET, with the token when given.
async fn reqwest_status(url: &str, token: Option<&str>) -> Option<u16> {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.ok().map(|r| r.status().as_u16())
}

/// The same flow on every store: counts, the FAILED event listed and filtered, replayed by
/// the page to the receiver, a route paused and resumed.
async fn operator_flow(db: Db) {
    db.prepare().await;
    let receiver = Receiver::start("bad-1", Duration::ZERO).await;
    let (mut worker, base) = worker_with_dashboard(&db, &receiver).await;
    for i in 0..3 {
        db.insert(&format!("ok-{i}"), FAILING, "{}").await;
    }
    db.insert("bad-1", FAILING, "{}").await;
    db.insert("other-1", OTHER, "{}").await;
    db.wait_status("bad-1", "FAILED").await;
    db.wait_status("other-1", "SENT").await;
    db.wait_status("ok-2", "SENT").await;

    browser("overview", &base, &[FAILING, "0", "1"], &[]).await;
    browser("failed-listed", &base, &["bad-1", FAILING, OTHER], &[]).await;

    receiver.healed.store(true, Ordering::SeqCst);
    browser("replay", &base, &["bad-1"], &[]).await;
    db.wait_status("bad-1", "SENT").await;
    assert_eq!(receiver.server.requests_for("bad-1").len(), 2);
    let actor = db
        .text(r#"SELECT "actor" FROM "OutboxAudit" WHERE "action" = 'replay' AND "eventId" = 'bad-1'"#)
        .await;
    assert_eq!(actor.as_deref(), Some("dashboard:127.0.0.1"));

    // Paused from the page: a new event of the key waits; resumed, it goes.
    browser("pause", &base, &[OTHER], &[]).await;
    db.insert("other-2", OTHER, "{}").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(db.status("other-2").await, "PENDING");
    browser("resume", &base, &[OTHER], &[]).await;
    db.wait_status("other-2", "SENT").await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_replays_filters_and_pauses_on_postgres() {
    operator_flow(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_replays_filters_and_pauses_on_sqlite() {
    operator_flow(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_replays_filters_and_pauses_on_mariadb() {
    operator_flow(Db::mysql().await).await;
}

/// Off loopback (listening on every address, reached at this machine's network address),
/// without the token the API answers 401 and the page asks for it; actions also need the
/// action header; with the token typed in, the page shows the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_token_is_refused_off_loopback() {
    let db = Db::postgres().await;
    db.prepare().await;
    let receiver = Receiver::start("none", Duration::ZERO).await;
    let outside = outside_address().to_string();
    let (mut worker, base) = worker_with_dashboard_on(&db, &receiver, "0.0.0.0", &outside).await;
    assert_eq!(
        reqwest_status(&format!("{base}api/overview"), None).await,
        Some(401)
    );
    assert_eq!(
        reqwest_status(
            &format!("{base}api/overview"),
            Some("wrong-token-0123456789")
        )
        .await,
        Some(401)
    );
    // A cross-site form can post JSON-looking text, never the action header.
    let forged = reqwest::Client::new()
        .post(format!("{base}api/actions/pause"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body(format!(r#"{{"routingKey": "{OTHER}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(
        db.text(&format!(
            r#"SELECT CASE WHEN "paused" THEN 'paused' ELSE 'running' END FROM "OutboxRetryPolicy" WHERE "routingKey" = '{OTHER}'"#
        ))
        .await
        .as_deref(),
        Some("running")
    );
    browser("refused", &base, &[], &[]).await;
    worker.stop().await;
}

/// `outbox dashboard` alone (no worker): counts (SENT estimated past `exact_counts_up_to`),
/// and a payload shown exactly as the database gives it (no number through a double).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_dashboard_shows_payloads_as_stored() {
    let db = Db::postgres().await;
    db.prepare().await;
    let payload = r#"{"big": 123456789012345678901234567890, "tiny": 1e-30, "frac": 0.14285714285714285714, "text": "ünïcødé \"quoted\""}"#;
    db.insert("p-1", OTHER, payload).await;
    db.insert("p-2", OTHER, "{}").await;
    // Past `exact_counts_up_to` rows (by the planner's estimate) SENT is estimated; the
    // other counts stay exact.
    let (mut dash, base) = standalone(&db.url(), "exact_counts_up_to = 0\n").await;
    let text = reqwest::Client::new()
        .get(format!("{base}api/overview"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let overview: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(overview["approximate"], true, "{overview}");
    assert!(overview["totals"]["sent"].is_i64(), "{overview}");
    let key = overview["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["routingKey"] == OTHER)
        .unwrap();
    assert_eq!(key["pending"], 2, "{overview}");
    assert!(key["sent"].is_i64(), "a planner's estimate: {overview}");
    browser("overview", &base, &[OTHER, "2", "0"], &[]).await;
    browser(
        "payload",
        &base,
        &[
            "p-1",
            "123456789012345678901234567890",
            // jsonb writes 1e-30 out in full: the database's own normalisation.
            "0.000000000000000000000000000001",
            "0.14285714285714285714",
            "ünïcødé",
        ],
        &[],
    )
    .await;
    dash.stop().await;
}

/// The overview while a backlog drains, saved for the README.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screenshot_of_the_overview_under_load() {
    let db = Db::postgres().await;
    db.prepare().await;
    // A receiver taking 250 ms per request: 128 deliveries at once drain ~500 events/s, so
    // the backlog is still there when the picture is taken.
    let receiver = Receiver::start("bad-1", Duration::from_millis(250)).await;
    let (mut worker, base) = worker_with_dashboard(&db, &receiver).await;
    db.insert("bad-1", FAILING, "{}").await;
    for batch in 0..4 {
        db.exec(&format!(
            r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload")
               SELECT 'load-{batch}-' || i, 'Charged', 'billing.charged', 'acct-' || (i % 50), '{OTHER}', '{{}}' FROM generate_series(1, 5000) AS i"#
        ))
        .await;
        // History points come every 10 s: a few of them, with the backlog changing.
        tokio::time::sleep(Duration::from_secs(7)).await;
    }
    let shot = repo().join("target/dashboard-overview.png");
    let _ = std::fs::create_dir_all(repo().join("target"));
    browser(
        "overview",
        &base,
        &[FAILING, "0", "1"],
        &[("OUTBOX_SCREENSHOT", shot.display().to_string())],
    )
    .await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    worker.stop().await;
}

/// A read the database cannot answer in time (the table locked by a migration, say) is cut
/// at `[admin] statement_timeout`: the page gets a 503 that says so, never a hung request,
/// and answers again once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_read_is_cut_at_the_statement_timeout() {
    let db = TestDb::with_policies(&[]).await;
    let (mut dash, base) = standalone(&db.url, "statement_timeout = \"1s\"\n").await;
    let locker = db.client().await;
    locker
        .batch_execute(r#"BEGIN; LOCK TABLE "OutboxEvent" IN ACCESS EXCLUSIVE MODE"#)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let answer = reqwest::Client::new()
        .get(format!("{base}api/overview"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = answer.text().await.unwrap();
    assert!(text.contains("statement timeout"), "{text}");
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        reqwest_status(&format!("{base}api/overview"), Some(TOKEN)).await,
        Some(200)
    );
    dash.stop().await;
}
