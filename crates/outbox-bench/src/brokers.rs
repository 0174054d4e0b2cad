//! (9) The relay draining a backlog into each broker on this machine, next to the null sink:
//! NATS JetStream, RabbitMQ, Redis Streams, MQTT and Kafka (tansu, in memory), each with a
//! destination of its own (removed afterwards where the broker allows). A broker that is not
//! running is reported and skipped.

use crate::db::BenchDb;
use crate::relay;
use anyhow::{Context, Result};
use outbox_worker::OnSuccess;
use std::time::Duration;

/// What one broker measured: events/s, or why it could not be measured.
pub struct Measured {
    pub broker: &'static str,
    pub what: String,
    pub rate: Result<f64>,
}

async fn drain_into(db: &BenchDb, events: u64, sink: &str) -> Result<f64> {
    let sink = relay::sink_from_toml(sink)?;
    relay::drain(db, events, sink, relay::options(OnSuccess::Mark)).await
}

async fn nats(db: &BenchDb, events: u64, tag: &str) -> Result<f64> {
    use async_nats::jetstream;
    let client = async_nats::connect("nats://127.0.0.1:4222")
        .await
        .context("NATS on 127.0.0.1:4222")?;
    let js = jetstream::new(client);
    let name = format!("OUTBOX_BENCH_{tag}");
    js.create_stream(jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("bench{tag}.>")],
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("create stream: {e}"))?;
    let rate = drain_into(
        db,
        events,
        &format!("type = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"bench{tag}.{{routingKey}}\""),
    )
    .await;
    let _ = js.delete_stream(&name).await;
    rate
}

async fn amqp(db: &BenchDb, events: u64, tag: &str) -> Result<f64> {
    use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
    let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .context("RabbitMQ on 127.0.0.1:5672")?;
    let ch = conn.create_channel().await?;
    let queue = format!("outbox-bench-{tag}");
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions::durable(),
        Default::default(),
    )
    .await?;
    let rate = drain_into(
        db,
        events,
        &format!("type = \"amqp\"\nurl = \"{url}\"\nrouting_key = \"{queue}\""),
    )
    .await;
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    rate
}

async fn redis(db: &BenchDb, events: u64, tag: &str) -> Result<f64> {
    let mut conn = redis::Client::open("redis://127.0.0.1:6379")?
        .get_multiplexed_async_connection()
        .await
        .context("Redis on 127.0.0.1:6379")?;
    let key = format!("outbox-bench-{tag}");
    let rate = drain_into(
        db,
        events,
        &format!("type = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nstream = \"{key}\""),
    )
    .await;
    let _ = redis::cmd("DEL")
        .arg(&key)
        .query_async::<i64>(&mut conn)
        .await;
    rate
}

async fn mqtt(db: &BenchDb, events: u64, tag: &str) -> Result<f64> {
    // Nobody subscribes: the broker still acknowledges each publish ("no matching
    // subscribers"), which is what the sink waits for.
    tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect("127.0.0.1:1883"),
    )
    .await
    .context("Mosquitto on 127.0.0.1:1883")?
    .context("Mosquitto on 127.0.0.1:1883")?;
    drain_into(
        db,
        events,
        &format!("type = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\ntopic = \"outbox-bench-{tag}/{{routingKey}}\""),
    )
    .await
}

async fn kafka(db: &BenchDb, events: u64, tag: &str) -> Result<f64> {
    // tansu makes the topic at its first message.
    tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect("127.0.0.1:19092"),
    )
    .await
    .context("tansu (Kafka) on 127.0.0.1:19092")?
    .context("tansu (Kafka) on 127.0.0.1:19092")?;
    drain_into(
        db,
        events,
        &format!("type = \"kafka\"\nbrokers = \"127.0.0.1:19092\"\ntopic = \"outbox-bench-{tag}\""),
    )
    .await
}

/// Drains `events` into each broker in turn.
pub async fn run(db: &BenchDb, events: u64) -> Vec<Measured> {
    let tag = format!("{:x}", std::process::id());
    vec![
        Measured {
            broker: "NATS JetStream",
            what: "publish + stream ack, file storage".into(),
            rate: nats(db, events, &tag).await,
        },
        Measured {
            broker: "RabbitMQ",
            what: "persistent, mandatory, publisher confirm, durable queue".into(),
            rate: amqp(db, events, &tag).await,
        },
        Measured {
            broker: "Redis Streams",
            what: "XADD reply".into(),
            rate: redis(db, events, &tag).await,
        },
        Measured {
            broker: "MQTT 5 (Mosquitto)",
            what: "QoS 1 PUBACK".into(),
            rate: mqtt(db, events, &tag).await,
        },
        Measured {
            broker: "Kafka (tansu, in memory)",
            what: "acks=all, idempotent, delivery report".into(),
            rate: kafka(db, events, &tag).await,
        },
    ]
}
