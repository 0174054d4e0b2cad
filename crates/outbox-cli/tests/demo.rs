//! `outbox demo`: the walk-through runs to the end on its own private PostgreSQL, or in a
//! schema of its own on a given server, shows each step, and leaves nothing behind.

use outbox_testkit::*;

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
    let steps = [
        "$ outbox --config outbox.toml migrate deploy",
        "5 migration(s) applied",
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
fn the_demo_runs_on_a_private_cluster_and_deletes_it() {
    let text = run_demo(&["demo"]);
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
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'outbox_demo%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the demo's schema is dropped");
}
