//! (4) INSERT sent → (commit →) sink receipt at a steady rate, next to the raw LISTEN/NOTIFY round
//! trip (insert + NOTIFY trigger → notification received) measured the same way.

use crate::db::{connect, BenchDb, KEY};
use crate::relay::{options, store};
use anyhow::Result;
use futures_util::future::poll_fn;
use outbox_core::{async_trait, ClaimedEvent, Outcome, Sink};
use outbox_worker::{OnSuccess, Worker};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::{AsyncMessage, NoTls};

/// p50, p99, max.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub n: usize,
}

pub fn percentiles(mut v: Vec<Duration>) -> Percentiles {
    v.sort();
    let at = |q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    Percentiles {
        p50: at(0.5),
        p99: at(0.99),
        max: v.last().copied().unwrap_or_default(),
        n: v.len(),
    }
}

/// Receipt times by id.
#[derive(Default)]
struct Recorder(Mutex<HashMap<String, Instant>>);

#[async_trait]
impl Sink for Recorder {
    async fn deliver(&self, e: &ClaimedEvent) -> Outcome {
        self.0
            .lock()
            .expect("recorder")
            .insert(e.event.id.clone(), Instant::now());
        Outcome::Delivered
    }
}

/// Inserts one row per transaction with `insert(i)` at `rate`/s for `secs`; returns, by
/// index, the instant each INSERT was sent (its commit is part of the measured trip).
async fn paced<F, Fut>(rate: u32, secs: u64, mut insert: F) -> Result<Vec<Instant>>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let total = rate as u64 * secs;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut committed = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until(start + gap * i as u32).await;
        committed.push(Instant::now());
        insert(i).await?;
    }
    Ok(committed)
}

/// The raw NOTIFY round trip.
pub async fn raw_notify(db: &BenchDb, rate: u32, secs: u64) -> Result<Percentiles> {
    let setup = connect(&db.url).await?;
    setup
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS bench_raw (id bigint PRIMARY KEY);
             TRUNCATE bench_raw;
             CREATE OR REPLACE FUNCTION bench_raw_notify() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_notify('bench_raw', NEW.id::text); RETURN NULL; END; $$;
             DROP TRIGGER IF EXISTS bench_raw_notify ON bench_raw;
             CREATE TRIGGER bench_raw_notify AFTER INSERT ON bench_raw FOR EACH ROW EXECUTE FUNCTION bench_raw_notify();",
        )
        .await?;
    let (listener, mut conn) = tokio_postgres::connect(&db.url, NoTls).await?;
    let received: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let rec = received.clone();
    tokio::spawn(async move {
        while let Some(Ok(m)) = poll_fn(|cx| conn.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = m {
                if let Ok(id) = n.payload().parse::<u64>() {
                    rec.lock().expect("raw").insert(id, Instant::now());
                }
            }
        }
    });
    listener.batch_execute("LISTEN bench_raw").await?;
    let producer = connect(&db.url).await?;
    let stmt = producer
        .prepare("INSERT INTO bench_raw (id) VALUES ($1)")
        .await?;
    let committed = paced(rate, secs, |i| {
        let (p, s) = (&producer, &stmt);
        async move {
            p.execute(s, &[&(i as i64)]).await?;
            Ok(())
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = received.lock().expect("raw");
    let lat = committed
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            got.get(&(i as u64))
                .map(|r| r.saturating_duration_since(*c))
        })
        .collect();
    drop(listener);
    Ok(percentiles(lat))
}

/// The relay's insert-commit → sink receipt, with the worker idle otherwise.
pub async fn relay(db: &BenchDb, rate: u32, secs: u64) -> Result<Percentiles> {
    Ok(relay_workers(db, rate, secs, 1).await?.0)
}

/// [`relay`] with `workers` workers side by side (each with its own store, as separate
/// processes would have): the latency, and the claim statements run per delivered event.
pub async fn relay_workers(
    db: &BenchDb,
    rate: u32,
    secs: u64,
    workers: usize,
) -> Result<(Percentiles, f64)> {
    db.fill(0).await?;
    let recorder = Arc::new(Recorder::default());
    let claims = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut running = Vec::new();
    for w in 0..workers.max(1) {
        let counted = claims.clone();
        let mut opts = options(OnSuccess::Mark);
        opts.worker_id = Some(format!("bench-{w}"));
        opts.claim_observer = Some(outbox_worker::ClaimObserver(Arc::new(move |_, _| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })));
        let worker =
            Worker::new(Arc::new(store(&db.url)?), opts).route(KEY, "recorder", recorder.clone());
        let mut stopped = stopped.clone();
        running.push(tokio::spawn(worker.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let producer = connect(&db.url).await?;
    let stmt = producer
        .prepare(
            r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload")
               VALUES ($1, 'BenchEvent', 'bench.happened', 'agg-1', $2, '{"i": 1}')"#,
        )
        .await?;
    let committed = paced(rate, secs, |i| {
        let (p, s) = (&producer, &stmt);
        async move {
            p.execute(s, &[&format!("lat-{i}"), &KEY]).await?;
            Ok(())
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(true);
    for r in running {
        r.await?;
    }
    let got = recorder.0.lock().expect("recorder");
    let per_event =
        claims.load(std::sync::atomic::Ordering::Relaxed) as f64 / got.len().max(1) as f64;
    let lat = committed
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            got.get(&format!("lat-{i}"))
                .map(|r| r.saturating_duration_since(*c))
        })
        .collect();
    Ok((percentiles(lat), per_event))
}
