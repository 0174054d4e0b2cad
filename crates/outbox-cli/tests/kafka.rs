//! The Kafka sink end to end: `outbox run` producing to tansu (a Kafka-compatible broker,
//! started by scripts/services on 127.0.0.1:19092), checked by a consumer of our own making
//! (rdkafka, reading partitions by assignment), each test with topics of its own.

use outbox_testkit::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const BROKERS: &str = "127.0.0.1:19092";
const KEY: &str = "audit.record-auth-log";
const ORDERED: &str = "ledger.entry";
const LONG: Duration = Duration::from_secs(60);

fn topic_name(what: &str) -> String {
    format!("outbox-{what}-{:x}", rand::random::<u64>())
}

fn admin(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("an admin client")
}

async fn create_topic(brokers: &str, name: &str, partitions: i32) {
    let results = admin(brokers)
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("tansu on 127.0.0.1:19092 (scripts/services starts it)");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
    }
}

async fn delete_topic(brokers: &str, name: &str) {
    let _ = admin(brokers)
        .delete_topics(&[name], &AdminOptions::new())
        .await;
}

/// Up to `want` messages of `topic` (all its `partitions`, from the start), read within
/// `limit`.
async fn consume(
    brokers: &str,
    topic: &str,
    partitions: i32,
    want: usize,
    limit: Duration,
) -> Vec<OwnedMessage> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set(
                "group.id",
                format!("outbox-test-{:x}", rand::random::<u64>()),
            )
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        // The topic's partitions as the broker has them now (one it made itself at the first
        // message may have more than the test asked for).
        let partitions = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .ok()
            .and_then(|m| m.topics().first().map(|t| t.partitions().len() as i32))
            .filter(|n| *n > 0)
            .unwrap_or(partitions);
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        while out.len() < want && started.elapsed() < limit {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                out.push(m.detach());
            }
        }
        out
    })
    .await
    .unwrap()
}

fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    let h = m.headers()?;
    (0..h.count())
        .map(|i| h.get(i))
        .find(|h| h.key == name)
        .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
}

fn kafka_config(db_url: &str, routes: &[&str], sink_extra: &str) -> String {
    let sink = format!("type = \"kafka\"\nbrokers = \"{BROKERS}\"\ntimeout = \"5s\"\n{sink_extra}");
    sink_config(db_url, routes, "", &sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_flow_reaches_kafka_with_its_key_headers_and_per_aggregate_order() {
    let topic = topic_name("seed");
    create_topic(BROKERS, &topic, 3).await;
    let db = TestDb::with_policies(&[(KEY, 3, 100), (ORDERED, 3, 100)]).await;
    let c = db.client().await;
    make_ordered(&c, ORDERED, false).await;
    let config = kafka_config(&db.url, &[KEY, ORDERED], &format!("topic = \"{topic}\""));
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;

    let payload = r#"{"ip": "10.0.0.1", "n": 12345678901234567890.5, "s": "ü"}"#;
    c.execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload", "headers")
           VALUES ('login-1', 'PasswordUserLoggedInEvent', 'auth.login.success', 'user-1', $1, $2::text::jsonb,
                   '{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "X-Outbox-Attempt": "99", "tenant": "t1"}')"#,
        &[&KEY, &payload],
    )
    .await
    .unwrap();
    // 60 ordered events over 4 aggregates, in insertion order.
    c.execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload")
           SELECT 'o-' || i, 'EntryPosted', 'ledger.entry', 'account-' || (i % 4), $1, jsonb_build_object('n', i)
             FROM generate_series(1, 60) AS i"#,
        &[&ORDERED],
    )
    .await
    .unwrap();
    wait_for("all 61 SENT", LONG, || async {
        count_status(&c, "SENT").await == 61
    })
    .await;
    worker.stop().await;

    let messages = consume(BROKERS, &topic, 3, 61, LONG).await;
    assert_eq!(messages.len(), 61);
    // Nothing more arrives: each event once.
    let again = consume(BROKERS, &topic, 3, 62, Duration::from_secs(3)).await;
    assert_eq!(again.len(), 61, "each event once");
    let login = messages
        .iter()
        .find(|m| header(m, "Idempotency-Key").as_deref() == Some("login-1"))
        .expect("the login event");
    assert_eq!(login.key(), Some(&b"user-1"[..]), "keyed by aggregateId");
    assert_eq!(
        header(login, "X-Outbox-Event-Id").as_deref(),
        Some("login-1")
    );
    assert_eq!(header(login, "X-Outbox-Routing-Key").as_deref(), Some(KEY));
    assert_eq!(
        header(login, "X-Outbox-Event-Type").as_deref(),
        Some("auth.login.success")
    );
    assert_eq!(
        header(login, "X-Outbox-Attempt").as_deref(),
        Some("1"),
        "the relay's value wins"
    );
    assert_eq!(
        header(login, "traceparent").as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(header(login, "tenant").as_deref(), Some("t1"));
    let value = String::from_utf8(login.payload().unwrap().to_vec()).unwrap();
    let stored: String = c
        .query_one(
            r#"SELECT "payload"::text FROM "OutboxEvent" WHERE "id" = 'login-1'"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        value.contains(&format!(r#""payload":{stored}"#)),
        "byte for byte: {value}"
    );

    // One aggregate, one partition, in insertion order.
    let mut by_aggregate: BTreeMap<String, Vec<(i32, i64, i64)>> = BTreeMap::new();
    for m in messages
        .iter()
        .filter(|m| header(m, "X-Outbox-Routing-Key").as_deref() == Some(ORDERED))
    {
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        let id = header(m, "X-Outbox-Event-Id").unwrap();
        let n: i64 = id.trim_start_matches("o-").parse().unwrap();
        by_aggregate
            .entry(key)
            .or_default()
            .push((m.partition(), m.offset(), n));
    }
    assert_eq!(by_aggregate.len(), 4);
    for (aggregate, mut seen) in by_aggregate {
        assert!(
            seen.iter().all(|s| s.0 == seen[0].0),
            "{aggregate} in one partition: {seen:?}"
        );
        seen.sort();
        let order: Vec<i64> = seen.iter().map(|s| s.2).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "{aggregate} in insertion order");
        assert_eq!(order.len(), 15);
    }
    delete_topic(BROKERS, &topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_kafka_refuses_fails_the_event_alone() {
    let topic = topic_name("refuse");
    create_topic(BROKERS, &topic, 1).await;
    let db = TestDb::with_policies(&[(KEY, 50, 100)]).await;
    let c = db.client().await;
    let config = kafka_config(
        &db.url,
        &[KEY],
        &format!("topic = \"{topic}{{eventName}}\""),
    );
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    let insert = |id: &'static str, name: &'static str, payload: String| {
        let c = &c;
        async move {
            c.execute(
                r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload")
                   VALUES ($1, $2, 't', 'a', $3, $4::text::jsonb)"#,
                &[&id, &name, &KEY, &payload],
            )
            .await
            .unwrap();
        }
    };
    let huge = format!(r#"{{"blob": "{}"}}"#, "x".repeat(2_000_000));
    insert("too-large", "", huge).await;
    insert("bad-topic", "/etc", "{}".into()).await;
    insert("fine", "", "{}".into()).await;

    let failed = wait_status(&c, "too-large", "FAILED", LONG).await;
    assert!(
        failed.last_error.as_deref().unwrap().contains("too large"),
        "{failed:?}"
    );
    let failed = wait_status(&c, "bad-topic", "FAILED", LONG).await;
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap()
            .contains("not a Kafka topic name"),
        "{failed:?}"
    );
    wait_status(&c, "fine", "SENT", LONG).await;
    worker.stop().await;
    // tansu creates a topic at its first message (auto.create.topics.enable), so a topic
    // that does not exist is not tried here; its outcome (retried, with a hint) is a unit
    // test of the sink.
    let fine = consume(BROKERS, &topic, 1, 1, LONG).await;
    assert_eq!(header(&fine[0], "Idempotency-Key").as_deref(), Some("fine"));
    delete_topic(BROKERS, &topic).await;
}

/// A tansu broker of the test's own on a free port (in memory: a restart empties it).
struct PrivateBroker {
    port: u16,
    child: std::process::Child,
}

impl PrivateBroker {
    fn start(port: Option<u16>) -> PrivateBroker {
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let url = format!("tcp://127.0.0.1:{port}");
        let child = std::process::Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tansu (scripts/python-tools installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "tansu did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateBroker { port, child }
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn sent_ids(c: &tokio_postgres::Client) -> std::collections::BTreeSet<String> {
    c.query(
        r#"SELECT "id" FROM "OutboxEvent" WHERE "status" = 'SENT'"#,
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let mut broker = PrivateBroker::start(None);
    let topic = topic_name("restart");
    create_topic(&broker.brokers(), &topic, 1).await;
    let db = TestDb::with_policies(&[(KEY, 50, 200)]).await;
    let c = db.client().await;
    let sink = format!(
        "type = \"kafka\"\nbrokers = \"{}\"\ntopic = \"{topic}\"\ntimeout = \"10s\"",
        broker.brokers()
    );
    let config = sink_config(&db.url, &[KEY], "concurrency = 4", &sink);
    let mut worker = WorkerProcess::start(&config);
    worker.wait_started().await;
    insert_many(&c, "r", KEY, 2000).await;
    wait_for("a third SENT", LONG, || async {
        count_status(&c, "SENT").await >= 600
    })
    .await;
    broker.kill();
    // Results of what the old broker acknowledged before it died are recorded by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked_before = sent_ids(&c).await;
    assert!(acked_before.len() < 2000, "the stream was cut mid-way");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let broker = PrivateBroker::start(Some(broker.port));
    let started = Instant::now();
    while count_status(&c, "SENT").await < 2000 {
        if started.elapsed() > LONG {
            let errors: Vec<String> = c
                .query(r#"SELECT DISTINCT "status"::text || ': ' || COALESCE("lastError", '') FROM "OutboxEvent" WHERE "status" <> 'SENT' LIMIT 5"#, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            panic!(
                "not all SENT after the restart: {errors:?}\n{}",
                worker.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.stop().await;
    assert_eq!(count_status(&c, "FAILED").await, 0);
    let retried: i64 = c
        .query_one(
            r#"SELECT count(*) FROM "OutboxEvent" WHERE "retryCount" > 0"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        retried > 0,
        "deliveries failed while the broker was down, and were retried"
    );
    // Every event not acknowledged by the old broker is in the new one (tansu keeps its
    // log in memory, so what the old one acknowledged went with it).
    let want = 2000 - acked_before.len();
    let after: std::collections::BTreeSet<String> =
        consume(&broker.brokers(), &topic, 1, want, LONG)
            .await
            .iter()
            .filter_map(|m| header(m, "Idempotency-Key"))
            .collect();
    let missing: Vec<String> = (1..=2000)
        .map(|i| format!("r-{i}"))
        .filter(|id| !acked_before.contains(id) && !after.contains(id))
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_brokers_and_the_routed_topics() {
    let topic = topic_name("doctor");
    let routed = format!("{topic}{KEY}");
    create_topic(BROKERS, &routed, 1).await;
    let db = TestDb::with_policies(&[(KEY, 3, 100)]).await;
    let dir = TempDir::new();
    // The route's topic exists; another route's does not yet.
    let config = kafka_config(
        &db.url,
        &[KEY, "billing.invoice"],
        &format!("topic = \"{topic}{{routingKey}}\""),
    );
    let cfg = dir.write("outbox.toml", &config);
    let out = outbox(&["--config", cfg.to_str().unwrap(), "doctor"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_contains_all(
        &report,
        &[
            "sink 'api' (kafka) reachable",
            &format!("topic '{topic}billing.invoice' (routingKey 'billing.invoice') does not exist on the brokers yet"),
        ],
    );
    assert!(!report.contains(&format!("topic '{routed}'")), "{report}");
    let down = kafka_config(&db.url, &[KEY], "").replace(BROKERS, "127.0.0.1:1");
    let cfg = dir.write("down.toml", &down);
    let out = outbox(&["--config", cfg.to_str().unwrap(), "doctor"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("sink 'api' (kafka) not reachable"),
        "{report}"
    );
    delete_topic(BROKERS, &routed).await;
}
