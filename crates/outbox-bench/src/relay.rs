//! (2) and (3): the real engine draining a backlog, into a sink that accepts at once or into
//! an HTTP server on loopback that answers 200 at once.

use crate::db::{connect, BenchDb, KEY};
use anyhow::Result;
use outbox_core::{async_trait, ClaimedEvent, Outcome, Sink};
use outbox_sinks::blackhole::BlackholeSink;
use outbox_store::{PgStore, PgStoreOptions};
use outbox_worker::{OnSuccess, Worker, WorkerOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Counts deliveries and wakes a waiter at a target.
pub struct Counting {
    inner: Arc<dyn Sink>,
    pub count: AtomicU64,
    target: AtomicU64,
    pub reached: Notify,
}

impl Counting {
    /// Wakes `reached` when `n` events have been delivered.
    pub fn target_at(&self, n: u64) {
        self.target.store(n, Ordering::Relaxed);
    }

    pub fn new(inner: Arc<dyn Sink>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            count: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            reached: Notify::new(),
        })
    }
}

#[async_trait]
impl Sink for Counting {
    async fn deliver(&self, event: &ClaimedEvent) -> Outcome {
        let o = self.inner.deliver(event).await;
        if o == Outcome::Delivered {
            let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
            if n == self.target.load(Ordering::Relaxed) {
                self.reached.notify_one();
            }
        }
        o
    }
}

/// A store on `url` with a pool big enough for the engine.
static SSLMODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The `sslmode` of every relay connection (`--relay-sslmode`).
pub fn set_sslmode(mode: &str) {
    let _ = SSLMODE.set(mode.to_string());
}

/// The `sslmode` the relay connects with.
pub fn sslmode() -> &'static str {
    SSLMODE.get().map(String::as_str).unwrap_or("disable")
}

/// The relay's store for database `url` (a URL without query parameters).
pub fn store(url: &str) -> Result<PgStore> {
    let url = format!("{url}?sslmode={}", sslmode());
    Ok(PgStore::new(&PgStoreOptions::new(url))?)
}

static TUNING: std::sync::OnceLock<(Option<usize>, Option<usize>)> = std::sync::OnceLock::new();

/// Overrides of the worker defaults from the command line.
pub fn tune(concurrency: Option<usize>, batch_size: Option<usize>) {
    let _ = TUNING.set((concurrency, batch_size));
}

/// The engine's options for the benchmark: the defaults, plus what is asked.
pub fn options(on_success: OnSuccess) -> WorkerOptions {
    let d = WorkerOptions::default();
    let (concurrency, batch_size) = TUNING.get().copied().unwrap_or_default();
    WorkerOptions {
        on_success,
        worker_id: Some("bench".into()),
        concurrency: concurrency.unwrap_or(d.concurrency),
        batch_size: batch_size.unwrap_or(d.batch_size),
        ..d
    }
}

/// Events per second draining `events` into `sink`: from start until every row is finished.
pub async fn drain(
    db: &BenchDb,
    events: u64,
    sink: Arc<dyn Sink>,
    options: WorkerOptions,
) -> Result<f64> {
    db.fill(events).await?;
    drain_filled(db, events, sink, options, 1).await
}

/// Like [`drain`], with the events spread over `aggregates` aggregates and `workers`
/// workers (each with a store and connections of its own, as separate processes would).
pub async fn drain_spread(
    db: &BenchDb,
    events: u64,
    aggregates: u64,
    workers: usize,
    options: WorkerOptions,
) -> Result<f64> {
    db.fill_spread(events, aggregates).await?;
    drain_filled(db, events, Arc::new(BlackholeSink), options, workers).await
}

/// Events per second draining the `pending` events of [`BenchDb::fill_after_history`].
pub async fn drain_after_history(
    db: &BenchDb,
    sent: u64,
    pending: u64,
    fresh: bool,
    options: WorkerOptions,
) -> Result<f64> {
    db.fill_after_history(sent, pending, fresh).await?;
    let rate = drain_filled(db, pending, Arc::new(BlackholeSink), options, 1).await;
    db.reset_autovacuum().await?;
    rate
}

async fn drain_filled(
    db: &BenchDb,
    events: u64,
    sink: Arc<dyn Sink>,
    options: WorkerOptions,
    workers: usize,
) -> Result<f64> {
    let counting = Counting::new(sink);
    counting.target.store(events, Ordering::Relaxed);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let cpu_before = cpu::sample();
    let started = Instant::now();
    let mut running = Vec::new();
    let claims = Arc::new(ClaimStats::default());
    for w in 0..workers.max(1) {
        let seen = claims.clone();
        let options = WorkerOptions {
            worker_id: Some(format!("bench-{w}")),
            claim_observer: Some(outbox_worker::ClaimObserver(Arc::new(move |n, took| {
                seen.record(n, took)
            }))),
            ..options.clone()
        };
        let worker =
            Worker::new(Arc::new(store(&db.url)?), options).route(KEY, "bench", counting.clone());
        let mut stopped = stopped.clone();
        running.push(tokio::spawn(worker.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    let reached = counting.reached.notified();
    if counting.count.load(Ordering::Relaxed) < events {
        reached.await;
    }
    // Delivered; now until the last result is recorded.
    let c = connect(&db.url).await?;
    while db.unfinished(&c).await? > 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let cpu_used = cpu::sample().since(&cpu_before);
    let _ = stop.send(true);
    for r in running {
        r.await?;
    }
    if std::env::var_os("OUTBOX_BENCH_CLAIMS").is_some() {
        eprintln!("    {}", claims.summary(events));
        let per = 100_000.0 / events.max(1) as f64;
        eprintln!(
            "    CPU seconds per 100k events: relay {:.2}, the rest of the machine (PostgreSQL above all) {:.2}",
            cpu_used.ours * per,
            cpu_used.others * per
        );
    }
    Ok(events as f64 / elapsed.as_secs_f64())
}

/// Claim rounds as the engine reports them: how many, how full, how long.
#[derive(Default)]
pub struct ClaimStats {
    rounds: AtomicU64,
    empty: AtomicU64,
    events: AtomicU64,
    micros: AtomicU64,
}

impl ClaimStats {
    fn record(&self, n: usize, took: Duration) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            self.empty.fetch_add(1, Ordering::Relaxed);
        }
        self.events.fetch_add(n as u64, Ordering::Relaxed);
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// One line: rounds, empty ones, events per round, time per round, rounds per event.
    pub fn summary(&self, delivered: u64) -> String {
        let rounds = self.rounds.load(Ordering::Relaxed).max(1);
        format!(
            "claim rounds: {rounds} ({} empty), {:.1} events and {:.2} ms each, {:.3} per delivered event",
            self.empty.load(Ordering::Relaxed),
            self.events.load(Ordering::Relaxed) as f64 / rounds as f64,
            self.micros.load(Ordering::Relaxed) as f64 / rounds as f64 / 1000.0,
            rounds as f64 / delivered.max(1) as f64
        )
    }
}

/// A loopback HTTP server answering 200 at once; returns its URL.
pub async fn http_server() -> Result<String> {
    let app = axum::Router::new().fallback(|| async { "" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/events"))
}

/// The HTTP sink pointed at `url`.
pub fn http_sink(url: &str) -> Result<Arc<dyn Sink>> {
    sink_from_toml(&format!(
        "type = \"http\"\nurl = \"{url}\"\ntimeout = \"5s\""
    ))
}

/// The sink a `[sinks.NAME]` section's keys describe.
pub fn sink_from_toml(text: &str) -> Result<Arc<dyn Sink>> {
    outbox_sinks::SinkConfig::build_from_toml("bench", text).map_err(|e| anyhow::anyhow!(e))
}

/// CPU time of this process and of everything else on the machine, from /proc.
mod cpu {
    /// A reading: seconds of CPU used so far.
    pub struct Sample {
        ours: f64,
        all: f64,
    }

    /// What was used between two readings.
    pub struct Used {
        pub ours: f64,
        pub others: f64,
    }

    fn ticks_per_second() -> f64 {
        // SAFETY: sysconf only reads a system setting.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            t as f64
        } else {
            100.0
        }
    }

    pub fn sample() -> Sample {
        let hz = ticks_per_second();
        let ours = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                // Fields after the command name (which may hold spaces) in parentheses.
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                let utime: f64 = f.get(11)?.parse().ok()?;
                let stime: f64 = f.get(12)?.parse().ok()?;
                Some((utime + stime) / hz)
            })
            .unwrap_or(0.0);
        let all = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let line = s.lines().next()?;
                let f: Vec<f64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|x| x.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal guest guest_nice: busy is
                // user, nice, system, irq and softirq (guest time is inside user already;
                // steal is time this machine did not get).
                let busy: f64 = [0, 1, 2, 5, 6].iter().filter_map(|i| f.get(*i)).sum();
                Some(busy / hz)
            })
            .unwrap_or(0.0);
        Sample { ours, all }
    }

    impl Sample {
        pub fn since(&self, before: &Sample) -> Used {
            let ours = self.ours - before.ours;
            Used {
                ours,
                others: (self.all - before.all - ours).max(0.0),
            }
        }
    }
}
