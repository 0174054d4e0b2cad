//! The admin listener and the logs: /metrics counts what happened, /healthz and /readyz
//! answer (and /readyz follows the database), JSON logs parse, and no secret — a password in
//! a URL, an Authorization header — shows in any output.

use outbox_testkit::*;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";
const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_what_happened_and_health_answers() {
    let db = TestDb::with_policies(&[(KEY, 1, 50)]).await;
    let c = db.client().await;
    // bad-*: 400 (FAILED at once); flaky: 503 once, then 200 (one retry); the rest 200.
    let server = TestServer::start(|seen, earlier| {
        let id = seen.id();
        if id.starts_with("bad") {
            Reply::status(400)
        } else if id == "flaky" && earlier == 0 {
            Reply::status(503)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let config = with_admin(&http_config(&db.url, &server.url("/"), &[KEY], ""));
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    let addr = admin_addr(&worker).await;

    let (status, body) = http_get(&addr, "/healthz").await.unwrap();
    assert_eq!((status, body.contains("alive")), (200, true), "{body}");
    let (status, body) = http_get(&addr, "/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");

    let (_, before) = http_get(&addr, "/metrics").await.unwrap();
    let delivered = format!("outbox_events_delivered_total{{routing_key=\"{KEY}\",sink=\"api\"}}");
    let failed = format!("outbox_events_failed_total{{routing_key=\"{KEY}\",sink=\"api\"}}");
    let retried = format!("outbox_events_retried_total{{routing_key=\"{KEY}\",sink=\"api\"}}");
    assert_eq!(sample(&before, &delivered), 0.0);
    assert!(before.contains("outbox_up 1"), "{before}");

    insert_many(&c, "ok", KEY, 5).await;
    insert_event(&c, "bad-1", KEY).await;
    insert_event(&c, "bad-2", KEY).await;
    insert_event(&c, "flaky", KEY).await;
    wait_for("6 SENT and 2 FAILED", LONG, || async {
        count_status(&c, "SENT").await == 6 && count_status(&c, "FAILED").await == 2
    })
    .await;
    let (status, text) = http_get(&addr, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(sample(&text, &delivered), 6.0, "{text}");
    assert_eq!(sample(&text, &failed), 2.0, "{text}");
    assert_eq!(sample(&text, &retried), 1.0, "{text}");
    let latency = format!("outbox_delivery_latency_seconds_count{{routing_key=\"{KEY}\"}}");
    assert_eq!(sample(&text, &latency), 6.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "outbox_sink_request_duration_seconds_count{sink=\"api\"}"
        ),
        9.0,
        "{text}"
    );
    assert!(
        sample(&text, "outbox_claim_batch_size_count") >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "outbox_circuit_breaker_state{sink=\"api\"}"),
        0.0,
        "{text}"
    );
    // The backlog gauges come from a sample taken every 10 s.
    wait_for("the PENDING sample", LONG, || async {
        let (_, t) = http_get(&addr, "/metrics").await.unwrap();
        t.contains("# TYPE outbox_pending_events gauge")
    })
    .await;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("outbox_"), "unprefixed: {line}");
    }

    worker.signal("TERM");
    worker.wait_exit(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_database() {
    let cluster = PrivateCluster::start();
    let db = TestDb::on(&cluster.url("postgres"), &cluster.base()).await;
    db.migrate().await;
    let c = db.client().await;
    insert_policy(&c, KEY, 5, 100, 1000).await;
    let server = TestServer::always(200).await;
    let config = with_admin(&http_config(&db.url, &server.url("/"), &[KEY], ""));
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    let addr = admin_addr(&worker).await;
    wait_for("ready", LONG, || async {
        http_get(&addr, "/readyz").await.map(|r| r.0) == Some(200)
    })
    .await;

    cluster.stop();
    let mut reason = String::new();
    wait_for("/readyz 503 while the database is down", LONG, || {
        let addr = addr.clone();
        async move { matches!(http_get(&addr, "/readyz").await, Some((503, _))) }
    })
    .await;
    if let Some((_, body)) = http_get(&addr, "/readyz").await {
        reason = body;
    }
    // Nothing of what the driver said (addresses, users, server messages) is shown to
    // whoever can reach the listener.
    let reason: serde_json::Value = serde_json::from_str(&reason).unwrap();
    let reason = reason["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason == "database unreachable (the worker's log says why)"
            || reason == "database unreachable: no answer within 2s",
        "{reason}"
    );
    let (status, _) = http_get(&addr, "/healthz").await.unwrap();
    assert_eq!(status, 200, "alive all along");

    cluster.restart();
    wait_for("/readyz 200 again", LONG, || async {
        http_get(&addr, "/readyz").await.map(|r| r.0) == Some(200)
    })
    .await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_auth_headers_never_show_in_any_output() {
    const SECRET: &str = "s3cretpw";
    let db = TestDb::with_policies(&[(KEY, 2, 50)]).await;
    // Trust authentication ignores the password, so the worker connects with it in the URL.
    let url = db.url.replace("postgres@", &format!("postgres:{SECRET}@"));
    let config = format!(
        r#"[database]
url = "{url}"

[worker]
poll_interval = "100ms"

[routes]
"{KEY}" = {{ sink = "api" }}
"nats.key" = {{ sink = "nats" }}
"redis.key" = {{ sink = "redis" }}

[sinks.api]
type = "http"
url = "http://user:{SECRET}@127.0.0.1:1/events?api_key={SECRET}"
timeout = "1s"
headers = {{ Authorization = "Bearer {SECRET}" }}

[sinks.nats]
type = "nats"
url = "nats://relay:{SECRET}@127.0.0.1:4222"
timeout = "1s"

[sinks.redis]
type = "redis"
url = "redis://:{SECRET}@127.0.0.1:6379"
timeout = "1s"
"#
    );
    let c = db.client().await;
    for key in ["nats.key", "redis.key"] {
        insert_policy(&c, key, 0, 50, 50).await;
    }
    // Everything, whatever it says: trace for every target, in text and in JSON.
    let mut logs = String::new();
    for format in ["json", "text"] {
        let mut worker = WorkerProcess::start_with(
            &config,
            &["--log-format", format],
            &[("OUTBOX_LOG", "trace")],
        );
        worker.wait_started().await;
        for key in [KEY, "nats.key", "redis.key"] {
            insert_event(&c, &format!("{format}-{key}"), key).await;
        }
        for key in [KEY, "nats.key", "redis.key"] {
            wait_status(&c, &format!("{format}-{key}"), "FAILED", LONG).await;
        }
        worker.stop().await;
        if format == "json" {
            for line in worker.logs().lines().filter(|l| !l.trim().is_empty()) {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            }
        }
        logs.push_str(&worker.logs());
    }
    assert!(logs.contains("🚀 OutboxWorker started."), "{logs}");
    let mut outputs = vec![("worker logs".to_string(), logs)];
    for row in text_pairs(
        &c,
        r#"SELECT "id", COALESCE("lastError", '') FROM "OutboxEvent""#,
    )
    .await
    {
        outputs.push((format!("lastError of {}", row.0), row.1));
    }
    let dir = TempDir::new();
    let cfg = dir.write("outbox.toml", &config);
    for args in [
        vec!["doctor"],
        vec!["stats"],
        vec!["dlq", "list", "--format", "json"],
        vec!["events", "show", "json-audit.record-auth-log"],
        vec!["policy", "list"],
        vec!["migrate", "status"],
    ] {
        let mut all = vec!["--config", cfg.to_str().unwrap()];
        all.extend(args.iter().copied());
        let out = outbox(&all);
        outputs.push((
            args.join(" "),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    // A URL the database rejects: the error names it, without the password.
    let bad = config.replace(
        &url,
        &format!("postgres://postgres:{SECRET}@127.0.0.1:1/nope"),
    );
    let cfg = dir.write("bad.toml", &bad);
    let out = outbox(&["--config", cfg.to_str().unwrap(), "stats"]);
    outputs.push((
        "stats on an unreachable database".into(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ));
    // A password with a space and a comma, which a URL parser refuses.
    let out = outbox(&[
        "--database-url",
        &format!("postgres://postgres:a {SECRET},b@127.0.0.1:1/nope"),
        "stats",
    ]);
    outputs.push((
        "a URL that does not parse".into(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ));
    // libpq key=value with spaces around '=' and in upper case.
    for url in [
        format!("host=127.0.0.1 port=1 user=postgres password = {SECRET} dbname=x"),
        format!("host=127.0.0.1 port=1 user=postgres PASSWORD={SECRET} dbname=x"),
    ] {
        let out = outbox(&["--database-url", &url, "stats"]);
        outputs.push((
            format!("stats on {}", url.replace(SECRET, "<secret>")),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    for (what, text) in &outputs {
        assert!(!text.contains(SECRET), "{what} shows the secret:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_logs_under_the_trace_of_its_event() {
    let db = TestDb::with_policies(&[(KEY, 3, 50)]).await;
    let server = TestServer::start(|_, earlier| {
        if earlier == 0 {
            Reply::status(503)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let config = http_config(&db.url, &server.url("/"), &[KEY], "");
    let mut worker = WorkerProcess::start_with(&config, &["--log-format", "json"], &[]);
    worker.wait_started().await;
    let c = db.client().await;
    c.batch_execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "headers")
           VALUES ('traced', 'LoggedIn', 'auth', 'user-1', 'audit.record-auth-log',
                   '{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}')"#,
    )
    .await
    .unwrap();
    wait_status(&c, "traced", "SENT", LONG).await;
    worker.stop().await;
    let retry = worker
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "Delivery failed; will retry")
        .expect("the retry is logged");
    assert_eq!(retry["span"]["name"], "delivery", "{retry}");
    assert_eq!(
        retry["span"]["trace_id"], "0af7651916cd43dd8448eb211c80319c",
        "{retry}"
    );
    assert_eq!(
        retry["span"]["parent_span_id"], "b7ad6b7169203331",
        "{retry}"
    );
    // And the destination received the trace context.
    let seen = server.requests_for("traced");
    assert_eq!(
        seen[1].header("traceparent"),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
}

/// How many file descriptors process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Sets the limit on open files of process `pid` (soft and hard), as a host with a low
/// limit would.
fn limit_fds(pid: u32, n: usize) {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={n}:{n}"))
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_admin_clients_cannot_use_up_the_file_descriptors_deliveries_need() {
    let db = TestDb::with_policies(&[(KEY, 2, 50)]).await;
    let c = db.client().await;
    let server = TestServer::always(200).await;
    let config = with_admin(&http_config(
        &db.url,
        &server.url("/"),
        &[KEY],
        "concurrency = 16",
    ));
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    let addr = admin_addr(&worker).await;
    limit_fds(worker.pid(), 250);
    // 400 clients connect and send nothing.
    let mut idle = Vec::new();
    for _ in 0..400 {
        if let Ok(s) = tokio::net::TcpStream::connect(&addr).await {
            idle.push(s);
        }
    }
    insert_many(&c, "e", KEY, 200).await;
    wait_for("200 SENT", LONG, || async {
        count_status(&c, "SENT").await == 200
    })
    .await;
    let charged = charged_attempts(&c).await;
    assert_eq!(charged, 0, "no event was charged for the idle clients");
    // The idle clients hold at most the listener's 128 descriptors: the worker was never
    // short of them (without the cap, 400 clients took all 250 and deliveries could not
    // even be attempted).
    let held = open_fds(worker.pid());
    assert!(held <= 128 + 100, "{held} descriptors open");
    assert!(
        !worker.logs().contains("Delivery not attempted"),
        "{}",
        worker.logs()
    );
    // Idle clients are dropped after the header timeout; /healthz answers again.
    wait_for("/healthz answering", LONG, || async {
        http_get(&addr, "/healthz").await.map(|r| r.0) == Some(200)
    })
    .await;
    drop(idle);
    worker.stop().await;
    assert!(
        worker
            .logs()
            .contains("Admin listener at its connection limit"),
        "{}",
        worker.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_charges_no_event_an_attempt() {
    let db = TestDb::with_policies(&[(KEY, 1, 50)]).await;
    let c = db.client().await;
    // Slow answers keep every connection busy, so each concurrent delivery needs its own.
    let server =
        TestServer::start(|_, _| Reply::status(200).after(Duration::from_millis(200))).await;
    let mut worker = WorkerProcess::start(&http_config(
        &db.url,
        &server.url("/"),
        &[KEY],
        "concurrency = 16",
    ));
    worker.wait_started().await;
    // Room for a few connections more than the worker holds now.
    limit_fds(worker.pid(), open_fds(worker.pid()) + 4);
    insert_many(&c, "e", KEY, 40).await;
    wait_for("40 SENT", LONG, || async {
        count_status(&c, "SENT").await == 40
    })
    .await;
    worker.stop().await;
    let failed = count_status(&c, "FAILED").await;
    let charged = charged_attempts(&c).await;
    let logs = worker.logs();
    assert_eq!((failed, charged), (0, 0), "{logs}");
    assert!(
        logs.contains("Delivery not attempted; the event goes back uncharged"),
        "the limit was reached: {logs}"
    );
    assert!(logs.contains("out of file descriptors (EMFILE)"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_notifications_costs_few_claims_and_policy_reads() {
    let db = TestDb::with_policies(&[(KEY, 2, 50)]).await;
    let c = db.client().await;
    let server = TestServer::always(200).await;
    let config = with_admin(&http_config(&db.url, &server.url("/"), &[KEY], ""));
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    let addr = admin_addr(&worker).await;
    let before = http_get(&addr, "/metrics").await.unwrap().1;
    // Any role may NOTIFY: 30,000 notifications, each in a transaction of its own (the
    // server folds repeats within one transaction), half of them on the policy channel.
    let one = "BEGIN; NOTIFY outbox_event, 'public'; COMMIT; BEGIN; NOTIFY outbox_policy, 'public'; COMMIT;";
    let batch = one.repeat(500);
    for _ in 0..30 {
        c.batch_execute(&batch).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = http_get(&addr, "/metrics").await.unwrap().1;
    let delta = |name: &str| sample(&after, name) - sample(&before, name);
    let (notified, claims, reads) = (
        delta("outbox_notifications_total"),
        delta("outbox_claims_total"),
        delta("outbox_policy_reads_total"),
    );
    assert!(notified >= 1000.0, "{notified} notifications arrived");
    // Measured here: 16 claims and 2 reads; without coalescing, 107 and 178 (and
    // thousands of each where notifications arrive faster).
    assert!(
        claims <= 50.0,
        "{claims} claims for {notified} notifications"
    );
    assert!(
        reads <= 20.0,
        "{reads} policy reads for {notified} notifications"
    );
    // Real events still go straight through.
    insert_event(&c, "after-the-flood", KEY).await;
    wait_status(&c, "after-the-flood", "SENT", Duration::from_secs(5)).await;
    worker.stop().await;
}
