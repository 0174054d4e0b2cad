//! Broker sinks end to end: `outbox run` publishing to the local brokers, each test with a
//! stream / queue of its own that it removes.

use outbox_testkit::*;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";
const LONG: Duration = Duration::from_secs(60);

mod nats {
    use super::*;
    use async_nats::jetstream;

    const URL: &str = "nats://127.0.0.1:4222";

    async fn jetstream() -> jetstream::Context {
        let client = async_nats::connect(URL)
            .await
            .expect("NATS with JetStream on 127.0.0.1:4222 (scripts/services starts it)");
        jetstream::new(client)
    }

    async fn create_stream(js: &jetstream::Context, name: &str, subjects: &str) {
        js.create_stream(jetstream::stream::Config {
            name: name.to_string(),
            subjects: vec![subjects.to_string()],
            ..Default::default()
        })
        .await
        .unwrap();
    }

    async fn stored(js: &jetstream::Context, name: &str) -> u64 {
        let mut s = js.get_stream(name).await.unwrap();
        s.info().await.unwrap().state.messages
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_wait_for_their_stream_then_each_is_stored_once() {
        let tag: u64 = rand::random();
        let (name, prefix) = (format!("OUTBOX_E2E_{tag:x}"), format!("e{tag:x}"));
        let js = jetstream().await;
        let db = TestDb::with_policies(&[(KEY, 20, 100)]).await;
        let c = db.client().await;
        let sink = format!(
            "type = \"nats\"\nurl = \"{URL}\"\nsubject = \"{prefix}.{{routingKey}}\"\ntimeout = \"2s\""
        );
        let config = sink_config(&db.url, &[KEY], "", &sink);
        let mut worker = WorkerProcess::start(&config);
        worker.wait_started().await;

        // No stream stores the subject yet: the first attempts are retried, saying why.
        insert_many(&c, "early", KEY, 5).await;
        let row = wait_for_error(&c, "early-1").await;
        assert!(
            row.contains("no JetStream stream stores subject") && row.contains("nats stream add"),
            "{row}"
        );
        create_stream(&js, &name, &format!("{prefix}.>")).await;
        insert_many(&c, "late", KEY, 300).await;
        wait_for("305 events SENT", LONG, || async {
            count_status(&c, "SENT").await == 305
        })
        .await;
        worker.stop().await;
        assert_eq!(stored(&js, &name).await, 305);
        js.delete_stream(&name).await.unwrap();
    }

    /// Waits until the event has a `lastError` and returns it.
    async fn wait_for_error(c: &Client, id: &str) -> String {
        wait_for("a lastError", LONG, || async {
            event(c, id).await.last_error.is_some()
        })
        .await;
        event(c, id).await.last_error.unwrap_or_default()
    }
}

mod amqp {
    use super::*;
    use lapin::options::{BasicGetOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    use lapin::{Connection, ConnectionProperties};
    use std::collections::HashSet;

    fn rabbitmqctl(args: &[&str]) {
        let out = std::process::Command::new("rabbitmqctl")
            .arg("-q")
            .args(args)
            .output()
            .expect("rabbitmqctl");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A virtual host of its own (so its connections can be cut without touching other
    /// tests'), deleted with everything in it on drop.
    struct Vhost(String);

    impl Vhost {
        fn new() -> Vhost {
            let name = format!("outbox-e2e-{:x}", rand::random::<u64>());
            rabbitmqctl(&["add_vhost", &name]);
            rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
            Vhost(name)
        }

        fn url(&self) -> String {
            format!("amqp://guest:guest@127.0.0.1:5672/{}", self.0)
        }
    }

    impl Drop for Vhost {
        fn drop(&mut self) {
            rabbitmqctl(&["delete_vhost", &self.0]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_event_reaches_the_queue_across_a_dropped_connection() {
        let vhost = Vhost::new();
        let conn = Connection::connect(&vhost.url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ on 127.0.0.1:5672 (scripts/services starts it)");
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(
            "audit".into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap();

        let db = TestDb::with_policies(&[(KEY, 20, 100)]).await;
        let c = db.client().await;
        let sink = format!(
            "type = \"rabbitmq\"\nurl = \"{}\"\nrouting_key = \"audit\"\ntimeout = \"2s\"",
            vhost.url()
        );
        let config = sink_config(&db.url, &[KEY], "", &sink);
        let mut worker = WorkerProcess::start(&config);
        worker.wait_started().await;
        insert_many(&c, "first", KEY, 200).await;
        wait_for("200 SENT", LONG, || async {
            count_status(&c, "SENT").await == 200
        })
        .await;
        // The broker drops the worker's connection (and ours); the sink connects again.
        rabbitmqctl(&["close_all_connections", "-p", &vhost.0, "test"]);
        insert_many(&c, "second", KEY, 200).await;
        wait_for("400 SENT", LONG, || async {
            count_status(&c, "SENT").await == 400
        })
        .await;
        worker.stop().await;

        let conn = Connection::connect(&vhost.url(), ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let mut ids = HashSet::new();
        while let Some(m) = ch
            .basic_get("audit".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let id = m.delivery.properties.message_id().clone().unwrap();
            ids.insert(id.as_str().to_string());
        }
        assert_eq!(ids.len(), 400, "every event is in the queue");
        drop(conn);
    }
}

mod redis_streams {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_event_is_appended_to_the_stream_of_its_routing_key() {
        let prefix = format!("outbox-e2e-{:x}", rand::random::<u64>());
        let other = "billing.charge";
        let db = TestDb::with_policies(&[(KEY, 5, 100), (other, 5, 100)]).await;
        let c = db.client().await;
        let sink = format!(
            "type = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nstream = \"{prefix}:{{routingKey}}\"\nmaxlen = 100000"
        );
        let config = sink_config(&db.url, &[KEY, other], "", &sink);
        let mut worker = WorkerProcess::start(&config);
        worker.wait_started().await;
        insert_many(&c, "a", KEY, 300).await;
        insert_many(&c, "b", other, 100).await;
        wait_for("400 SENT", LONG, || async {
            count_status(&c, "SENT").await == 400
        })
        .await;
        worker.stop().await;

        let mut conn = redis::Client::open("redis://127.0.0.1:6379")
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("Redis on 127.0.0.1:6379 (scripts/services starts it)");
        for (key, n) in [(KEY, 300), (other, 100)] {
            let stream = format!("{prefix}:{key}");
            let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
                .arg(&stream)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .unwrap();
            let ids: HashSet<&str> = entries.iter().map(|(_, f)| f["id"].as_str()).collect();
            assert_eq!(ids.len(), n, "{stream}");
            assert!(entries.iter().all(|(_, f)| f["routingKey"] == key));
            redis::cmd("DEL")
                .arg(&stream)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap();
        }
    }
}

mod mqtt {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_event_reaches_a_subscriber() {
        let prefix = format!("outbox-e2e-{:x}", rand::random::<u64>());
        let id = format!("{prefix}-sub");
        let (sub, mut events) = AsyncClient::new(MqttOptions::new(id, "127.0.0.1", 1883), 64);
        sub.subscribe(format!("{prefix}/#"), QoS::AtLeastOnce)
            .await
            .unwrap();
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let subscribed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (seen, subscribed) = (seen.clone(), subscribed.clone());
            tokio::spawn(async move {
                while let Ok(event) = events.poll().await {
                    match event {
                        Event::Incoming(Packet::SubAck(_)) => {
                            subscribed.store(true, std::sync::atomic::Ordering::SeqCst)
                        }
                        Event::Incoming(Packet::Publish(p)) => {
                            let body: serde_json::Value =
                                serde_json::from_slice(&p.payload).unwrap();
                            seen.lock()
                                .unwrap()
                                .insert(body["id"].as_str().unwrap().to_string());
                        }
                        _ => {}
                    }
                }
            });
        }
        wait_for(
            "the subscription (Mosquitto on 127.0.0.1:1883)",
            LONG,
            || async { subscribed.load(std::sync::atomic::Ordering::SeqCst) },
        )
        .await;

        let db = TestDb::with_policies(&[(KEY, 5, 100)]).await;
        let c = db.client().await;
        let sink = format!(
            "type = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\ntopic = \"{prefix}/{{routingKey}}\""
        );
        let config = sink_config(&db.url, &[KEY], "", &sink);
        let mut worker = WorkerProcess::start(&config);
        worker.wait_started().await;
        insert_many(&c, "m", KEY, 300).await;
        wait_for("300 SENT", LONG, || async {
            count_status(&c, "SENT").await == 300
        })
        .await;
        worker.stop().await;
        wait_for("300 received", LONG, || async {
            seen.lock().unwrap().len() == 300
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_says_which_broker_sinks_it_can_reach() {
    let other = "billing.charge";
    let db = TestDb::with_policies(&[(KEY, 5, 100), (other, 5, 100)]).await;
    let config = format!(
        r#"[database]
url = "{}"

[routes]
"{KEY}" = {{ sink = "bus" }}
"{other}" = {{ sink = "cache" }}

[sinks.bus]
type = "nats"
url = "nats://127.0.0.1:4222"

[sinks.cache]
type = "redis"
url = "redis://:s3cret@127.0.0.1:1"
timeout = "500ms"

[sinks.unused]
type = "amqp"
url = "amqp://127.0.0.1:1/%2f"
"#,
        db.url
    );
    let dir = TempDir::new();
    let path = dir.write("outbox.toml", &config);
    let out = outbox(&["--config", path.to_str().unwrap(), "doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "warnings only:\n{text}");
    assert!(text.contains("✔ sink 'bus' (nats) reachable"), "{text}");
    assert!(
        text.contains(
            "⚠ sink 'cache' (redis) not reachable: cannot connect to redis://:***@127.0.0.1:1"
        ),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    assert!(
        !text.contains("'unused'"),
        "a sink no route uses is not checked:\n{text}"
    );
}
