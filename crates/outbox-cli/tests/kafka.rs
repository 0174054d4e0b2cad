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
