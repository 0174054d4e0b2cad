//! `outbox demo`: the walk-through runs to the end on a SQLite file of its own (the default,
//! with no PostgreSQL anywhere on the PATH), on its own private PostgreSQL, in a schema of
//! its own on a given server, or in a database of its own on a MySQL/MariaDB server, shows
//! each step, and leaves nothing behind.

use outbox_testkit::*;
use std::time::Duration;

fn run_demo(args: &[&str]) -> String {
    let out = outbox(args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// What every walk-through shows, in order.
fn assert_the_story(text: &str) {
    // (MySQL quotes names with backticks.)
    let text = text.replace('`', "\"");
    let text = text.as_str();
    let steps = [
        "$ outbox --config outbox.toml migrate deploy",
        "migration(s) applied",
        "$ outbox --config outbox.toml run",
        "🚀 OutboxWorker started.",
        "INSERT INTO \"OutboxEvent\"",
        "📦 [OutboxWorker] Processing",
        "$ outbox --config outbox.toml stats",
        "$ outbox --config outbox.toml dlq list",
        "evt-3",
        "$ outbox --config outbox.toml dlq replay --routing-key audit.record-auth-log",
        "Replayed 1 FAILED event(s)",
        "evt-3 (user-3) → 200",
        "OutboxWorker stopped. delivered=3 retried=1 failed=2",
        "Done; everything the demo made is gone.",
    ];
    let mut rest = text;
    for step in steps {
        match rest.find(step) {
            Some(i) => rest = &rest[i + step.len()..],
            None => panic!("missing, or out of order: {step}\n{text}"),
        }
    }
    for line in [
        "evt-2 (user-2) → 503",
        "evt-3 (user-3) → 400 userId is required",
        "no OutboxRetryPolicy row for routingKey 'billing.charge'",
        "audit.record-auth-log           0      0         3       0",
    ] {
        assert!(text.contains(line), "missing: {line}\n{text}");
    }
}

#[test]
fn the_demo_runs_on_sqlite_with_nothing_else_installed_and_deletes_its_file() {
    let empty = TempDir::new();
    let out = std::process::Command::new(bin())
        .arg("demo")
        .env("PATH", &empty.0)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "exit {:?}\n{text}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_the_story(&text);
    assert!(
        text.contains("1 migration(s) applied to the SQLite database"),
        "{text}"
    );
    assert!(!text.contains("PostgreSQL"), "{text}");
    let dir = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("Using a SQLite database in ")?
                .strip_suffix(" (deleted at the end): nothing else to install.")
        })
        .unwrap_or_else(|| panic!("the demo's directory is named\n{text}"));
    assert!(!std::path::Path::new(dir).exists(), "{dir} is left behind");
}

#[test]
fn the_demo_refuses_a_database_url_that_is_not_postgresql() {
    let out = outbox(&["--database-url", "sqlite:/tmp/x.db", "demo"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("takes a PostgreSQL server's URL"), "{err}");
    assert!(!std::path::Path::new("/tmp/x.db").exists());
}

#[test]
fn the_demo_runs_on_a_private_cluster_and_deletes_it() {
    let text = run_demo(&["demo", "--postgres"]);
    assert_the_story(&text);
    let dir = text
        .lines()
        .find_map(|l| {
            l.split(" in ")
                .nth(1)?
                .strip_suffix(" (deleted at the end).")
        })
        .unwrap_or_else(|| panic!("the cluster's directory is named\n{text}"));
    assert!(!std::path::Path::new(dir).exists(), "{dir} is left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_in_a_schema_of_its_own_on_a_given_server_and_drops_it() {
    let db = TestDb::new().await;
    let text = run_demo(&["--database-url", &db.url, "demo"]);
    assert_the_story(&text);
    assert!(
        text.contains("in a schema of its own, \"outbox_demo_"),
        "{text}"
    );
    let c = db.client().await;
    assert_eq!(demo_schemas(&c).await, 0, "the demo's schema is dropped");
}

/// Whether the local MariaDB holds database `name`.
async fn mysql_has_database(name: &str) -> bool {
    use mysql_async::prelude::Queryable;
    let mut c = mysql_async::Conn::from_url(conformance::MYSQL_URL)
        .await
        .unwrap();
    let n: Option<i64> = c
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (name,),
        )
        .await
        .unwrap();
    let _ = c.disconnect().await;
    n.unwrap_or(0) > 0
}

/// The database the demo said it made on MySQL.
fn demo_database(text: &str) -> String {
    let at = text
        .find("in a database of its own, `")
        .unwrap_or_else(|| panic!("the database is named\n{text}"));
    let rest = &text[at + "in a database of its own, `".len()..];
    rest[..rest.find('`').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_in_a_database_of_its_own_on_mariadb_and_drops_it() {
    let text = run_demo(&["demo", "--mysql", conformance::MYSQL_URL]);
    assert_the_story(&text);
    assert!(text.contains("INSERT INTO `OutboxEvent` (`id`"), "{text}");
    let name = demo_database(&text);
    assert!(name.starts_with("outbox_demo_"), "{name}");
    assert!(!mysql_has_database(&name).await, "{name} is dropped");
    // A URL of another kind is refused, naming what it takes.
    let out = outbox(&["demo", "--mysql", "postgres://x@127.0.0.1/db"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MySQL/MariaDB server's URL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_mysql_demo_drops_its_database() {
    let mut demo = RunningDemo::start(&["demo", "--mysql", conformance::MYSQL_URL]);
    demo.wait_for_step("── 5.").await;
    let name = demo_database(&demo.text());
    assert!(mysql_has_database(&name).await);
    let dir = demo.dir();
    demo.signal("KILL");
    demo.wait_exit().await;
    wait_gone(&dir).await;
    wait_for(
        "the demo's database dropped",
        Duration::from_secs(60),
        || async { !mysql_has_database(&name).await },
    )
    .await;
}

/// How many demo schemas the database holds.
async fn demo_schemas(c: &Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'outbox_demo%'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// `outbox demo ARGS` running in the background, its output in a file.
struct RunningDemo {
    child: std::process::Child,
    out: std::path::PathBuf,
    _dir: TempDir,
}

impl RunningDemo {
    fn start(args: &[&str]) -> RunningDemo {
        let dir = TempDir::new();
        let out = dir.0.join("demo.out");
        let file = std::fs::File::create(&out).unwrap();
        let child = std::process::Command::new(bin())
            .args(args)
            .env_remove("DATABASE_URL")
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        RunningDemo {
            child,
            out,
            _dir: dir,
        }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until the output shows `step`.
    async fn wait_for_step(&self, step: &str) {
        wait_for(step, Duration::from_secs(60), || async {
            self.text().contains(step)
        })
        .await;
    }

    /// The directory holding the demo's config (and cluster).
    fn dir(&self) -> std::path::PathBuf {
        let text = self.text();
        let config = text
            .lines()
            .find_map(|l| l.strip_prefix("outbox.toml (")?.strip_suffix("):"))
            .unwrap_or_else(|| panic!("the config file is named\n{text}"));
        std::path::Path::new(config).parent().unwrap().to_path_buf()
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    async fn wait_exit(&mut self) -> Option<i32> {
        let limit = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(std::time::Instant::now() < limit, "{}", self.text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Processes whose command line mentions `text`, other than this test's own.
fn processes_mentioning(text: &str) -> Vec<String> {
    let out = std::process::Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(text) && !l.contains("ps -eo"))
        .map(str::to_string)
        .collect()
}

/// Waits until nothing of the demo in `dir` is left: no directory, no process (the
/// cluster's server, the worker) naming it.
async fn wait_gone(dir: &std::path::Path) {
    let shown = dir.display().to_string();
    wait_for(
        "everything the demo made to be gone",
        Duration::from_secs(60),
        || async { !dir.exists() && processes_mentioning(&shown).is_empty() },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sighup_end_the_demo_and_leave_nothing_behind() {
    for sig in ["TERM", "HUP"] {
        let mut demo = RunningDemo::start(&["demo"]);
        demo.wait_for_step("── 5.").await;
        let dir = demo.dir();
        assert!(dir.exists());
        demo.signal(sig);
        let code = demo.wait_exit().await;
        assert_eq!(code, Some(1), "SIG{sig}: {}", demo.text());
        wait_gone(&dir).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_demo_leaves_no_cluster_worker_or_directory_behind() {
    let mut demo = RunningDemo::start(&["demo", "--postgres"]);
    demo.wait_for_step("── 5.").await;
    let dir = demo.dir();
    let running = processes_mentioning(&dir.display().to_string());
    // The cluster's server and the worker run, besides the clean-up process.
    assert!(
        running
            .iter()
            .any(|p| p.contains("postgres") && p.contains("/data")),
        "{running:?}"
    );
    assert!(
        running.iter().any(|p| p.contains("outbox.toml run")),
        "{running:?}"
    );
    demo.signal("KILL");
    demo.wait_exit().await;
    wait_gone(&dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_given_server_the_password_is_never_written_and_a_killed_demo_drops_its_schema() {
    const SECRET: &str = "demo-s3cret";
    let db = TestDb::new().await;
    // Trust authentication ignores the password; the demo must still keep it off disk.
    let url = db.url.replace("postgres@", &format!("postgres:{SECRET}@"));
    let mut demo = RunningDemo::start(&["--database-url", &url, "demo"]);
    demo.wait_for_step("── 5.").await;
    let dir = demo.dir();
    let config = dir.join("outbox.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(!text.contains(SECRET), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!demo.text().contains(SECRET), "{}", demo.text());
    demo.signal("KILL");
    demo.wait_exit().await;
    wait_gone(&dir).await;
    let c = db.client().await;
    wait_for(
        "the demo's schema dropped",
        Duration::from_secs(60),
        || async { demo_schemas(&c).await == 0 },
    )
    .await;
}
