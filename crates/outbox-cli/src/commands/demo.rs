//! `outbox demo`: the whole story on a throwaway database, with nothing to set up: a SQLite
//! file of its own; with `--postgres` a private PostgreSQL cluster started with this
//! machine's `initdb`/`pg_ctl` (or, with `--database-url`, a schema of its own on your
//! server); with `--mysql URL` a database of its own on that MySQL/MariaDB server. It serves
//! a small "Audit API",
//! and runs the real commands — `migrate deploy`, `run`, `stats`, `dlq list`, `dlq replay` —
//! printing each command line before its output, so every step can be repeated by hand.
//! Everything it made is removed at the end.

use crate::{Failure, EXIT_CONFIG, EXIT_FAILURE};
use axum::extract::State;
use axum::http::StatusCode;
use outbox_store::mysql::MysqlStore;
use outbox_store::sqlite::{SqliteOptions, SqliteStore};
use outbox_store::{KeyStats, LocalCluster, Operator, PgStore, PgStoreOptions};
use serde_json::Value;
use std::io::BufRead;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const AUDIT: &str = "audit.record-auth-log";
const BILLING: &str = "billing.charge";

/// The demo's destination: accepts login events, but rejects one without a `userId` (until
/// it is "fixed") and is briefly unavailable for `user-2`'s first request.
#[derive(Default)]
struct AuditApi {
    accepts_incomplete: AtomicBool,
    seen: Mutex<Vec<String>>,
}

async fn receive(State(api): State<Arc<AuditApi>>, body: axum::body::Bytes) -> StatusCode {
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = event["id"].as_str().unwrap_or("?").to_string();
    let aggregate = event["aggregateId"].as_str().unwrap_or("?");
    let earlier = {
        let mut seen = api.seen.lock().unwrap_or_else(|p| p.into_inner());
        let n = seen.iter().filter(|s| **s == id).count();
        seen.push(id.clone());
        n
    };
    let (status, note) = if aggregate == "user-2" && earlier == 0 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "busy, try again later".to_string(),
        )
    } else if event["payload"]["userId"].is_null() && !api.accepts_incomplete.load(Ordering::SeqCst)
    {
        (StatusCode::BAD_REQUEST, "userId is required".to_string())
    } else {
        let user = event["payload"]["userId"]
            .as_str()
            .unwrap_or("an unknown user");
        (StatusCode::OK, format!("stored the login of {user}"))
    };
    say(&format!(
        "  audit api │ {id} ({aggregate}) → {} {note}",
        status.as_u16()
    ));
    status
}

/// The demo's output, one writer at a time: a command's output is shown whole before the
/// worker's and the Audit API's lines that came while it ran (a replayed event is not seen
/// delivered before the replay says it was put back).
static CONSOLE: Mutex<()> = Mutex::new(());

/// One line of the live output (the worker's log, the Audit API).
fn say(line: &str) {
    let _console = CONSOLE.lock().unwrap_or_else(|p| p.into_inner());
    println!("{line}");
}

/// Where the demo's data lives, and how to clean it up.
struct Place {
    url: String,
    /// The PostgreSQL schema, or the MySQL database (`None` on SQLite).
    schema: Option<String>,
    /// On a MySQL/MariaDB server (`schema` is the demo's database there).
    mysql: bool,
    /// The private cluster, when the demo started one (dropped = stopped and deleted).
    cluster: Option<LocalCluster>,
    /// The directory of the demo's files.
    dir: PathBuf,
}

fn fail(message: impl Into<String>) -> Failure {
    Failure::new(EXIT_FAILURE, message.into())
}

fn title(n: u32, text: &str) {
    println!();
    println!("── {n}. {text}");
}

fn indent(text: &str) {
    for line in text.lines() {
        println!("  {line}");
    }
}

/// `outbox --config <config> ARGS`, printed, run, its output shown.
fn outbox(config: &Path, url: &str, args: &[&str]) -> Result<String, Failure> {
    let _console = CONSOLE.lock().unwrap_or_else(|p| p.into_inner());
    println!("$ outbox --config outbox.toml {}", args.join(" "));
    let out = command(config, url, args)
        .output()
        .map_err(|e| fail(format!("cannot run outbox: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    indent(&stdout);
    indent(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(fail(format!(
            "`outbox {}` exited with {}",
            args.join(" "),
            out.status
        )));
    }
    Ok(stdout)
}

/// This program with `--config <config> ARGS`: the database URL in `$DATABASE_URL` (never
/// in a file: it may hold a password), without the environment's overrides of config keys,
/// and ended by the kernel if the demo itself dies, however it dies.
fn command(config: &Path, url: &str, args: &[&str]) -> Command {
    let mut c = this_program();
    c.arg("--config").arg(config).args(args);
    c.env("DATABASE_URL", url).env_remove("OUTBOX_CONFIG");
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().to_string();
        if name.starts_with("OUTBOX_") && name.contains("__") {
            c.env_remove(name);
        }
    }
    c.env("OUTBOX_LOG", "info").env("OUTBOX_LOG_FORMAT", "text");
    die_with_parent(&mut c);
    c
}

fn this_program() -> Command {
    Command::new(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("outbox")))
}

/// Has the kernel send the child SIGTERM when this process ends (on Linux; elsewhere the
/// clean-up process still stops what the demo started).
fn die_with_parent(c: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec only async-signal-safe calls: prctl and getppid.
        unsafe {
            c.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The demo died before prctl took effect: do not outlive it.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the demo is gone"));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = c;
}

/// What the clean-up process removes once the demo has ended, however it ended (a normal
/// exit, a signal, SIGKILL): it waits for the demo's end of a pipe to close.
struct Janitor {
    /// Held open while the demo runs; closed by the kernel when the demo ends.
    _pipe: std::process::ChildStdin,
}

impl Janitor {
    /// Starts `outbox demo-cleanup` for `place`. The database URL travels in its
    /// environment, never on disk or in its arguments.
    fn start(place: &Place) -> Result<Janitor, Failure> {
        let mut c = this_program();
        c.arg("demo-cleanup").arg("--dir").arg(&place.dir);
        if place.cluster.is_some() {
            c.arg("--cluster");
        } else if let Some(schema) = &place.schema {
            c.arg("--schema").arg(schema);
            c.env("DATABASE_URL", &place.url);
        }
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only async-signal-safe calls: setsid and signal.
            // Ignored signals stay ignored across exec, so a Ctrl-C that reaches the demo's
            // process group cannot end the clean-up before it has begun.
            unsafe {
                c.pre_exec(|| {
                    libc::setsid();
                    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                        libc::signal(sig, libc::SIG_IGN);
                    }
                    Ok(())
                });
            }
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot start the demo's clean-up: {e}")))?;
        let pipe = child
            .stdin
            .take()
            .ok_or_else(|| fail("cannot start the demo's clean-up: no pipe"))?;
        // Not waited for: it outlives us on purpose.
        std::mem::forget(child);
        Ok(Janitor { _pipe: pipe })
    }
}

/// `outbox demo-cleanup`: waits (ignoring SIGINT, SIGTERM and SIGHUP, which reach the
/// whole process group) until the demo that started it has ended, then stops the demo's
/// cluster and deletes its directory, or drops its schema on the server in `$DATABASE_URL`.
/// Whatever the demo already removed is skipped.
pub async fn cleanup(dir: PathBuf, schema: Option<String>, cluster: bool) -> Result<u8, Failure> {
    // SAFETY: setting a signal's disposition to "ignore" has no other effect.
    unsafe {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    // EOF (or an error) on stdin: the demo has ended.
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await;
    if cluster {
        if dir.exists() {
            LocalCluster::remove_dir(&dir);
        }
    } else {
        let url = std::env::var("DATABASE_URL");
        let on_mysql = url
            .as_deref()
            .is_ok_and(|u| super::StoreKind::of(u) == Some(super::StoreKind::Mysql));
        if let (true, Some(_), Ok(url)) = (on_mysql, &schema, &url) {
            // The URL names the demo's own database.
            if let Ok(store) = MysqlStore::new(url, 2) {
                let _ = tokio::time::timeout(Duration::from_secs(30), store.drop_database()).await;
            }
        } else if let (Some(schema), Ok(url)) = (schema, url) {
            let mut options = PgStoreOptions::new(url);
            options.schema = schema;
            options.pool_size = 1;
            if let Ok(store) = PgStore::new(&options) {
                let _ = tokio::time::timeout(Duration::from_secs(30), store.drop_schema()).await;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(0)
}

/// `outbox run` in the background, its log lines shown as they come.
struct Worker {
    child: Child,
    logs: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn start(config: &Path, url: &str) -> Result<Worker, Failure> {
        println!("$ outbox --config outbox.toml run");
        let mut child = command(config, url, &["run"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot start the worker: {e}")))?;
        let logs = child.stderr.take().map(|stderr| {
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    // The timestamp is noise here.
                    let shown = line.split_once("Z ").map(|(_, rest)| rest).unwrap_or(&line);
                    say(&format!("     worker │ {}", shown.trim_start()));
                }
            })
        });
        Ok(Worker { child, logs })
    }

    /// SIGTERM, then waits for the exit (30 s at most) and the last log lines.
    fn stop(&mut self) {
        // Directly, not through a `kill` program the PATH may not have.
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill only sends a signal to our own child process.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(logs) = self.logs.take() {
            let _ = logs.join();
        }
    }
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// The demo's database: the application's SQL runs on it, and its counts are watched.
enum DemoStore {
    Postgres(Box<PgStore>),
    Sqlite(SqliteStore),
    Mysql(MysqlStore),
}

impl DemoStore {
    fn open(place: &Place) -> Result<DemoStore, Failure> {
        if place.mysql {
            return MysqlStore::new(&place.url, 2)
                .map(DemoStore::Mysql)
                .map_err(fail);
        }
        match &place.schema {
            Some(schema) => {
                let mut options = PgStoreOptions::new(place.url.clone());
                options.schema = schema.clone();
                PgStore::new(&options)
                    .map(|s| DemoStore::Postgres(Box::new(s)))
                    .map_err(|e| fail(e.to_string()))
            }
            None => SqliteOptions::from_url(&place.url, None)
                .map(|o| DemoStore::Sqlite(SqliteStore::new(&o)))
                .map_err(fail),
        }
    }

    fn operator(&self) -> &dyn Operator {
        match self {
            DemoStore::Postgres(s) => &**s,
            DemoStore::Sqlite(s) => s,
            DemoStore::Mysql(s) => s,
        }
    }

    async fn run_script(&self, sql: &str) -> Result<(), Failure> {
        match self {
            DemoStore::Postgres(s) => s.run_script(sql).await,
            DemoStore::Sqlite(s) => s.run_script(sql).await,
            DemoStore::Mysql(s) => s.run_script(sql).await,
        }
        .map_err(|e| fail(e.to_string()))
    }
}

/// Waits until `check` holds on the per-key counts (SENT, FAILED) or 30 s pass.
async fn wait_until(
    store: &DemoStore,
    what: &str,
    check: impl Fn(&[KeyStats]) -> bool,
) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = store
            .operator()
            .stats(true)
            .await
            .map_err(|e| fail(format!("cannot read the outbox: {e}")))?;
        if check(&stats) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(fail(format!("gave up waiting for {what}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count(stats: &[KeyStats], key: &str) -> (i64, i64) {
    stats
        .iter()
        .find(|s| s.routing_key == key)
        .map(|s| (s.sent, s.failed))
        .unwrap_or((0, 0))
}

/// A fresh directory only we can enter, under a name nobody can guess.
fn private_dir(prefix: &str) -> Result<PathBuf, Failure> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{:016x}", rand::random::<u64>()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Where the demo runs: a SQLite file (the default), a private PostgreSQL cluster
/// (`postgres`), a schema of its own on the PostgreSQL server at `database_url`, or a
/// database of its own on the MySQL/MariaDB server at `mysql`.
async fn prepare(
    database_url: Option<String>,
    postgres: bool,
    mysql: Option<String>,
) -> Result<Place, Failure> {
    if let Some(server) = mysql {
        let name = format!(
            "outbox_demo_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let url = MysqlStore::create_database(&server, &name)
            .await
            .map_err(|e| fail(format!("cannot make the demo's database: {e}")))?;
        let dir = match private_dir(&name) {
            Ok(dir) => dir,
            Err(e) => {
                if let Ok(store) = MysqlStore::new(&url, 2) {
                    let _ = store.drop_database().await;
                }
                return Err(e);
            }
        };
        println!(
            "Using {} in a database of its own, `{name}`, dropped at the end.",
            outbox_store::postgres::redact_url(&server)
        );
        return Ok(Place {
            url,
            schema: Some(name),
            mysql: true,
            cluster: None,
            dir,
        });
    }
    match database_url {
        None if !postgres => {
            let dir = private_dir(&format!("outbox_demo_{}", std::process::id()))?;
            let url = format!("sqlite://{}", dir.join("demo.db").display());
            println!(
                "Using a SQLite database in {} (deleted at the end): nothing else to install.",
                dir.display()
            );
            Ok(Place {
                url,
                schema: None,
                mysql: false,
                cluster: None,
                dir,
            })
        }
        Some(url) => {
            // Its own name, unlike any other run's, even one with the same pid in another
            // container: the clean-up drops it by name.
            let schema = format!(
                "outbox_demo_{}_{:08x}",
                std::process::id(),
                rand::random::<u32>()
            );
            let dir = private_dir(&schema)?;
            println!(
                "Using {} in a schema of its own, \"{schema}\", dropped at the end.",
                outbox_store::postgres::redact_url(&url)
            );
            Ok(Place {
                url,
                schema: Some(schema),
                mysql: false,
                cluster: None,
                dir,
            })
        }
        None => {
            let mut cluster = LocalCluster::create("outbox-demo").map_err(|e| {
                fail(format!(
                    "outbox demo needs PostgreSQL: {e}. Install PostgreSQL's server, or run the demo against a server of yours with --database-url postgres://USER@HOST/DB (it works in a schema of its own and drops it)"
                ))
            })?;
            // Its users are trusted: no TCP, only the socket in a directory only we (and the
            // server) can enter.
            cluster.set_settings("-c listen_addresses=''");
            cluster
                .start()
                .map_err(|e| fail(format!("cannot start the demo's PostgreSQL: {e}")))?;
            println!(
                "Started a private PostgreSQL {} on a Unix socket in {} (deleted at the end).",
                cluster.version().unwrap_or_default(),
                cluster.dir().display()
            );
            Ok(Place {
                url: cluster.socket_url("postgres"),
                schema: Some("public".into()),
                mysql: false,
                dir: cluster.dir().to_path_buf(),
                cluster: Some(cluster),
            })
        }
    }
}

pub async fn demo(
    database_url: Option<String>,
    postgres: bool,
    mysql: Option<String>,
) -> Result<u8, Failure> {
    if let Some(url) = &mysql {
        if super::StoreKind::of(url) != Some(super::StoreKind::Mysql) {
            return Err(Failure::new(
                EXIT_CONFIG,
                "outbox demo --mysql takes a MySQL/MariaDB server's URL, e.g. mysql://root@127.0.0.1:3306 (the demo makes a database of its own there and drops it)",
            ));
        }
        if postgres || database_url.is_some() {
            return Err(Failure::new(
                EXIT_CONFIG,
                "outbox demo: --mysql runs on MySQL/MariaDB; leave out --postgres and --database-url",
            ));
        }
    }
    if let Some(url) = &database_url {
        if super::StoreKind::of(url) != Some(super::StoreKind::Postgres) {
            return Err(Failure::new(
                EXIT_CONFIG,
                "outbox demo --database-url takes a PostgreSQL server's URL (the demo works in a schema of its own there); without it the demo makes its own SQLite database",
            ));
        }
    }
    println!("outbox demo: the transactional outbox, end to end, on a throwaway database.");
    // Ctrl-C, SIGTERM and SIGHUP (a closed terminal) from here on end the demo through the
    // clean-up below; SIGKILL, which cannot be caught, through the clean-up process.
    use tokio::signal::unix::{signal, SignalKind};
    let mut signals = Vec::new();
    for kind in [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ] {
        signals.push(signal(kind).map_err(|e| fail(format!("cannot handle signals: {e}")))?);
    }
    let [interrupt, terminate, hangup] = &mut signals[..] else {
        unreachable!("three signals")
    };
    let place = tokio::select! {
        p = prepare(database_url, postgres, mysql) => p?,
        _ = interrupt.recv() => return Err(fail("interrupted")),
        _ = terminate.recv() => return Err(fail("terminated")),
        _ = hangup.recv() => return Err(fail("hung up")),
    };
    let janitor = Janitor::start(&place);
    if let Err(e) = &janitor {
        eprintln!(
            "{}; the demo cleans up only if it ends normally or by a signal",
            e.message
        );
    }
    let mut worker: Option<Worker> = None;
    let result = tokio::select! {
        r = walk(&place, &mut worker) => r,
        _ = interrupt.recv() => Err(fail("interrupted")),
        _ = terminate.recv() => Err(fail("terminated")),
        _ = hangup.recv() => Err(fail("hung up")),
    };
    if let Some(w) = worker.as_mut() {
        w.stop();
    }
    // Clean up whatever happened.
    if place.mysql {
        if let Ok(store) = MysqlStore::new(&place.url, 2) {
            let _ = store.drop_database().await;
        }
        let _ = std::fs::remove_dir_all(&place.dir);
    } else if place.cluster.is_none() {
        if let Some(schema) = &place.schema {
            let mut options = PgStoreOptions::new(place.url.clone());
            options.schema = schema.clone();
            if let Ok(store) = PgStore::new(&options) {
                let _ = store.drop_schema().await;
            }
        }
        let _ = std::fs::remove_dir_all(&place.dir);
    }
    drop(place);
    drop(janitor);
    result?;
    println!();
    println!("Done; everything the demo made is gone. To run the worker for real:");
    println!(
        "  1. write outbox.toml: database.url, a [routes] entry and a [sinks.NAME] per destination"
    );
    println!("  2. outbox --config outbox.toml migrate deploy   (or schema_owner = \"app\" if your app owns the tables)");
    println!(
        "  3. one \"OutboxRetryPolicy\" row per routingKey, then: outbox --config outbox.toml run"
    );
    Ok(0)
}

async fn walk(place: &Place, worker: &mut Option<Worker>) -> Result<(), Failure> {
    // The destination.
    let api = Arc::new(AuditApi::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| fail(format!("cannot listen on 127.0.0.1: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| fail(format!("cannot listen on 127.0.0.1: {e}")))?;
    let app = axum::Router::new()
        .route("/audit/auth-logs", axum::routing::post(receive))
        .with_state(api.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    title(
        1,
        "The configuration: where events come from, and where each routingKey goes",
    );
    let database = match &place.schema {
        Some(_) if place.mysql => {
            "# url: from $DATABASE_URL, which the demo sets for each command (it is never written down)\n".to_string()
        }
        Some(schema) => format!(
            "# url: from $DATABASE_URL, which the demo sets for each command (it is never written down)\nschema = \"{schema}\"\n"
        ),
        None => format!("url = \"{}\"\n", place.url),
    };
    let config_text = format!(
        r#"[database]
{database}
[worker]
poll_interval = "250ms"

[routes]
"{AUDIT}" = {{ sink = "audit-api" }}

[sinks.audit-api]
type = "http"
url = "http://{addr}/audit/auth-logs"
timeout = "2s"
"#,
    );
    let config = place.dir.join("outbox.toml");
    write_private(&config, &config_text)
        .map_err(|e| fail(format!("cannot write {}: {e}", config.display())))?;
    println!("outbox.toml ({}):", config.display());
    indent(&config_text);
    if place.schema.is_some() {
        println!(
            "DATABASE_URL={}",
            outbox_store::postgres::redact_url(&place.url)
        );
    }
    println!("(the Audit API at http://{addr} is part of the demo: it is busy for user-2's first request, and rejects events without a userId)");

    title(2, "The tables, from the worker's migrations");
    let url = place.url.as_str();
    outbox(&config, url, &["migrate", "deploy"])?;

    let store = DemoStore::open(place)?;

    title(
        3,
        "A retry policy per routingKey: master data your application ships as SQL",
    );
    // Names in the store's own quotes (MySQL's backticks).
    let quoted = |sql: String| -> String {
        match sql.split_once("VALUES") {
            Some((head, tail)) if place.mysql => format!("{}VALUES{tail}", head.replace('"', "`")),
            _ => sql,
        }
    };
    let policies = quoted(format!(
        r#"INSERT INTO "OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval", "description")
VALUES ('{AUDIT}', 3, 500, 5000, 'login audit trail')"#
    ));
    indent(&policies);
    store.run_script(&policies).await?;

    title(4, "The worker");
    *worker = Some(Worker::start(&config, url)?);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    title(
        5,
        "Your application writes events in the same transaction as its own data",
    );
    let events = quoted(format!(
        r#"BEGIN;
-- ... the application's own changes (a login recorded, say) ...
INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload")
VALUES ('evt-1', 'PasswordUserLoggedInEvent', 'auth.login.success', 'user-1', '{AUDIT}', '{{"userId": "user-1", "ip": "203.0.113.7"}}'),
       ('evt-2', 'PasswordUserLoggedInEvent', 'auth.login.success', 'user-2', '{AUDIT}', '{{"userId": "user-2", "ip": "198.51.100.4"}}'),
       ('evt-3', 'PasswordUserLoggedInEvent', 'auth.login.success', 'user-3', '{AUDIT}', '{{"ip": "192.0.2.55"}}'),
       ('evt-4', 'InvoiceCharged', 'billing.charge', 'invoice-9', '{BILLING}', '{{"amount": 1200}}');
COMMIT"#
    ));
    indent(&events);
    store
        .run_script(
            events
                .trim_start_matches("BEGIN;")
                .trim_end_matches("COMMIT"),
        )
        .await?;
    println!("Expect: evt-1 delivered; evt-2 retried once (503), then delivered; evt-3 FAILED at once (400 is permanent); evt-4 FAILED at once (no policy, no route).");
    wait_until(&store, "the first deliveries", |s| {
        count(s, AUDIT) == (2, 1) && count(s, BILLING) == (0, 1)
    })
    .await?;

    title(6, "What the outbox looks like now");
    outbox(&config, url, &["stats"])?;
    outbox(&config, url, &["dlq", "list"])?;

    title(7, "The Audit API is fixed; put the failed audit event back");
    api.accepts_incomplete.store(true, Ordering::SeqCst);
    outbox(&config, url, &["dlq", "replay", "--routing-key", AUDIT])?;
    wait_until(&store, "the replayed event", |s| count(s, AUDIT) == (3, 0)).await?;
    outbox(&config, url, &["stats"])?;
    println!("(evt-4 stays FAILED: billing.charge has no policy row and no route. Give it both, then `outbox dlq replay --id evt-4`.)");

    title(
        8,
        "Stop the worker (SIGTERM): it finishes what it holds and exits",
    );
    if let Some(mut w) = worker.take() {
        w.stop();
    }
    Ok(())
}
