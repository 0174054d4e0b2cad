//! The command line: exit codes and one-line errors for every user mistake, no panics.

use outbox_testkit::*;
use std::process::Command;
use std::time::Duration;

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
}

#[test]
fn a_bad_config_exits_2_naming_the_file_every_key_and_the_fix() {
    let dir = TempDir::new();
    let path = dir.write(
        "outbox.toml",
        "[database]\nurl = \"postgres://x\"\n[worker]\nbatch_size = -1\nlease = \"30\"\n[routes]\n\"a.b\" = { sink = \"nowhere\" }\n",
    );
    let out = outbox(&["--config", path.to_str().unwrap(), "run"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_no_panic(&err);
    assert!(
        err.contains(path.to_str().unwrap()),
        "names the file: {err}"
    );
    assert!(err.contains("3 problems"), "{err}");
    assert!(
        err.contains("worker.batch_size: -1 is out of range; use 1 to 10000"),
        "{err}"
    );
    assert!(
        err.contains("worker.lease: '30' has no unit; write e.g. \"30ms\" or \"30s\""),
        "{err}"
    );
    assert!(err.contains("routes.\"a.b\".sink: sink 'nowhere' is not defined; no sinks are defined; add a [sinks.NAME] section"), "{err}");
}

#[test]
fn a_url_of_no_known_form_or_naming_no_database_is_a_config_error() {
    let dir = TempDir::new();
    let empty = dir.write("empty.toml", "");
    for (url, says) in [
        (
            "mysql://root:hunter2@127.0.0.1:3306",
            "names no database; write mysql://user:pass@host:3306/dbname",
        ),
        (
            "redis://:hunter2@127.0.0.1/0",
            "is not a database URL; use postgres://",
        ),
    ] {
        let out = outbox(&[
            "--config",
            empty.to_str().unwrap(),
            "--database-url",
            url,
            "migrate",
            "status",
        ]);
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert_no_panic(&err);
        assert!(err.contains(says), "{url}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn a_missing_config_file_a_missing_url_and_no_routes_are_config_errors() {
    let out = outbox(&["--config", "/nonexistent/outbox.toml", "migrate", "status"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("config file /nonexistent/outbox.toml does not exist"),
        "{err}"
    );

    let dir = TempDir::new();
    let empty = dir.write("empty.toml", "");
    let out = outbox(&["--config", empty.to_str().unwrap(), "migrate", "status"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("database.url: missing; set database.url in the config file, $DATABASE_URL, or --database-url"), "{err}");

    let out = outbox(&[
        "--config",
        empty.to_str().unwrap(),
        "--database-url",
        "postgres://127.0.0.1/x",
        "run",
    ]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("routes: no routes configured"), "{err}");
    assert_no_panic(&err);

    let out = outbox(&["--env-file", "/nonexistent/.env", "migrate", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out)
        .1
        .contains("cannot read env file /nonexistent/.env"));

    let out = outbox(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_status_exit_codes_follow_the_state_and_run_refuses_pending_migrations() {
    let db = TestDb::new().await;
    let url = db.url.as_str();
    let out = outbox(&["--database-url", url, "migrate", "status"]);
    let (so, _) = text(&out);
    assert_eq!(out.status.code(), Some(10), "pending: {so}");
    assert!(
        so.contains("0001 outbox_tables") && so.contains("pending"),
        "{so}"
    );

    let dir = TempDir::new();
    let cfg = dir.write(
        "outbox.toml",
        "[routes]\n\"k\" = { sink = \"bh\" }\n[sinks.bh]\ntype = \"blackhole\"\n",
    );
    let out = outbox(&[
        "--config",
        cfg.to_str().unwrap(),
        "--database-url",
        url,
        "run",
    ]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains(&format!(
            "error: schema \"public\" is not ready: migration 0001_outbox_tables is pending (+{} more); run `outbox migrate deploy`, or start with --skip-schema-check",
            outbox_store::postgres::migrate::MIGRATIONS.len() - 1
        )),
        "{err}"
    );

    // Several replicas deploying at once.
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(bin())
                .args(["--database-url", url, "migrate", "deploy"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let c = c.wait_with_output().unwrap();
        assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    }
    let out = outbox(&["--database-url", url, "migrate", "status"]);
    let (so, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{so}");
    assert!(so.contains("Up to date, no drift."), "{so}");

    let c = db.client().await;
    c.batch_execute(r#"UPDATE "_outbox_migrations" SET "checksum" = 'x'"#)
        .await
        .unwrap();
    let out = outbox(&["--database-url", url, "migrate", "status"]);
    assert_eq!(out.status.code(), Some(11), "{}", text(&out).0);
    c.batch_execute(r#"DELETE FROM "_outbox_migrations"; INSERT INTO "_outbox_migrations" VALUES (1, 'outbox_tables', 'x', now(), 1), (7, 'newer', 'y', now(), 1)"#)
        .await
        .unwrap();
    let out = outbox(&["--database-url", url, "migrate", "status"]);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out).0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_waits_for_an_unreachable_database_and_stops_cleanly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "[database]\nurl = \"postgres://postgres@127.0.0.1:{port}/none\"\n[routes]\n\"k\" = {{ sink = \"bh\" }}\n[sinks.bh]\ntype = \"blackhole\"\n"
    );
    let mut w = WorkerProcess::start(&config);
    wait_for("the wait message", Duration::from_secs(20), || async {
        w.logs().contains("Database not reachable; waiting for it")
    })
    .await;
    w.stop().await;
    assert_no_panic(&w.logs());
}
