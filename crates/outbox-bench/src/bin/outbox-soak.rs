//! outbox-soak: every fault the fault tests make, in a loop, for a given time, with many
//! events; then a pass/fail summary with counts of lost, duplicated and out-of-order events.
//!
//! ```sh
//! scripts/soak --duration 20m --events 1000000
//! ```
//!
//! It starts a private PostgreSQL cluster (initdb + pg_ctl as the postgres user, on a free
//! port; it can restart that one freely), three `outbox run` processes (the release binary
//! next to this one, or $OUTBOX_BIN) and a recording HTTP destination. A producer inserts the
//! events over the run (a fifth of them on an ordered policy, over 200 aggregates) while
//! the fault loop, every few seconds, does one of: SIGKILL a worker (and start a new one),
//! pg_terminate_backend every worker connection, restart PostgreSQL, stop the destination,
//! make it hang, make it answer 503.

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use clap::Parser;
use outbox_core::conf::parse_duration;
use outbox_testkit::{http_config, PrivateCluster, TestDb, WorkerProcess};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "soak.unordered";
const ORDERED: &str = "soak.ordered";
const AGGREGATES: u64 = 1000;

#[derive(Parser, Debug)]
#[command(
    name = "outbox-soak",
    about = "Runs the relay under faults and counts what went wrong."
)]
struct Args {
    /// How long faults are injected (events keep being inserted over this time).
    #[arg(long, default_value = "20m")]
    duration: String,
    /// Events inserted in all.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Seconds between faults (each lasts a few seconds).
    #[arg(long, default_value_t = 8)]
    fault_every: u64,
}

/// How the destination behaves right now.
const UP: u8 = 0;
const HANG: u8 = 1;
const FAIL: u8 = 2;

/// What the destination saw.
struct Seen {
    /// Deliveries per event number.
    counts: Mutex<Vec<u8>>,
    /// Per ordered aggregate: the latest event number delivered.
    latest: Mutex<HashMap<u64, u64>>,
    out_of_order: AtomicU64,
    requests: AtomicU64,
    mode: AtomicU8,
}

async fn receive(State(seen): State<Arc<Seen>>, body: axum::body::Bytes) -> StatusCode {
    seen.requests.fetch_add(1, Ordering::Relaxed);
    match seen.mode.load(Ordering::Relaxed) {
        HANG => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::OK;
        }
        FAIL => return StatusCode::SERVICE_UNAVAILABLE,
        _ => {}
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let Some(n) = v["payload"]["n"].as_u64() else {
        return StatusCode::BAD_REQUEST;
    };
    {
        let mut counts = seen.counts.lock().unwrap();
        if let Some(c) = counts.get_mut(n as usize) {
            *c = c.saturating_add(1);
        }
    }
    if v["routingKey"] == ORDERED {
        let aggregate = n % AGGREGATES;
        let mut latest = seen.latest.lock().unwrap();
        let prev = latest.entry(aggregate).or_insert(n);
        // A redelivery of the latest one is at-least-once; anything earlier is out of order.
        if n < *prev {
            seen.out_of_order.fetch_add(1, Ordering::Relaxed);
        } else {
            *prev = n;
        }
    }
    StatusCode::OK
}

/// The destination: can be stopped and started on the same port.
struct Destination {
    addr: std::net::SocketAddr,
    seen: Arc<Seen>,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Destination {
    async fn start(seen: Arc<Seen>) -> Result<Destination> {
        let mut d = Destination {
            addr: "127.0.0.1:0".parse()?,
            seen,
            running: None,
        };
        d.up().await?;
        Ok(d)
    }

    async fn up(&mut self) -> Result<()> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(self.addr)?;
        let listener = socket.listen(1024)?;
        self.addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(self.seen.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        self.running = Some((stop, task));
        Ok(())
    }

    async fn down(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

fn pick(n: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    (nanos / 1000) % n.max(1)
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connect {url}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(c)
}

/// Inserts events `from..to` (event n: ordered when n % 5 == 0, aggregate n % 1000).
async fn insert(url: &str, from: u64, to: u64) -> Result<()> {
    let c = connect(url).await?;
    c.execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload")
           SELECT 's' || n, 'SoakEvent', 'soak.happened',
                  CASE WHEN n % 5 = 0 THEN 'agg-' || (n % $4) ELSE 'free-' || n END,
                  CASE WHEN n % 5 = 0 THEN $3 ELSE $5 END,
                  jsonb_build_object('n', n)
             FROM generate_series($1::int8, $2::int8 - 1) AS n"#,
        &[&(from as i64), &(to as i64), &ORDERED, &(AGGREGATES as i64), &KEY],
    )
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let duration =
        parse_duration(&args.duration).map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
    let total = args.events;

    eprintln!("soak: starting a private PostgreSQL cluster ...");
    let cluster = PrivateCluster::start();
    let db = TestDb::on(&cluster.url("postgres"), &cluster.base()).await;
    db.migrate().await;
    let c = connect(&db.url).await?;
    c.batch_execute(&format!(
        r#"INSERT INTO "OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval", "ordered")
           VALUES ('{KEY}', 1000, 100, 2000, false), ('{ORDERED}', 1000, 100, 2000, true)"#
    ))
    .await?;

    let seen = Arc::new(Seen {
        counts: Mutex::new(vec![0; total as usize]),
        latest: Mutex::new(HashMap::new()),
        out_of_order: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        mode: AtomicU8::new(UP),
    });
    let mut dest = Destination::start(seen.clone()).await?;
    let config = http_config(
        &db.url,
        &format!("http://{}/events", dest.addr),
        &[KEY, ORDERED],
        "lease = \"10s\"\nshutdown_timeout = \"6s\"",
    )
    .replace("timeout = \"5s\"", "timeout = \"2s\"\ncircuit_breaker = { failures = 20, cooldown = \"1s\", max_cooldown = \"5s\" }");
    let mut workers: Vec<WorkerProcess> = (0..3).map(|_| WorkerProcess::start(&config)).collect();
    for w in &workers {
        w.wait_started().await;
    }

    // The producer: spreads the inserts over 80% of the run.
    let inserted = Arc::new(AtomicU64::new(0));
    let producer = {
        let url = db.url.clone();
        let inserted = inserted.clone();
        let spread = duration.mul_f64(0.8);
        tokio::spawn(async move {
            let started = Instant::now();
            let chunk = 500u64;
            let mut next = 0u64;
            while next < total {
                let due = spread.mul_f64(next as f64 / total as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                let to = (next + chunk).min(total);
                // The database may be restarting: try again until the rows are in.
                while insert(&url, next, to).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                next = to;
                inserted.store(next, Ordering::Relaxed);
            }
        })
    };

    let started = Instant::now();
    let mut faults: HashMap<&'static str, u32> = HashMap::new();
    let mut last_report = Instant::now();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(args.fault_every)).await;
        let fault = [
            "kill",
            "terminate",
            "restart-db",
            "dest-down",
            "dest-hang",
            "dest-503",
        ][pick(6) as usize];
        *faults.entry(fault).or_default() += 1;
        match fault {
            "kill" => {
                let i = pick(workers.len() as u64) as usize;
                workers[i].signal("KILL");
                let _ = workers[i].wait_exit(Duration::from_secs(10)).await;
                workers[i] = WorkerProcess::start(&config);
            }
            "terminate" => {
                if let Ok(admin) = connect(&cluster.url("postgres")).await {
                    let _ = admin
                        .execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> 'psql'",
                            &[&db.name],
                        )
                        .await;
                }
            }
            "restart-db" => {
                cluster.stop();
                tokio::time::sleep(Duration::from_secs(2)).await;
                cluster.restart();
            }
            "dest-down" => {
                dest.down().await;
                tokio::time::sleep(Duration::from_secs(4)).await;
                dest.up().await?;
            }
            "dest-hang" | "dest-503" => {
                let mode = if fault == "dest-hang" { HANG } else { FAIL };
                seen.mode.store(mode, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(4)).await;
                seen.mode.store(UP, Ordering::Relaxed);
            }
            _ => unreachable!(),
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            eprintln!(
                "soak: {:>4.0} s, inserted {}, requests {}, faults {faults:?}",
                started.elapsed().as_secs_f64(),
                inserted.load(Ordering::Relaxed),
                seen.requests.load(Ordering::Relaxed)
            );
        }
    }
    seen.mode.store(UP, Ordering::Relaxed);
    eprintln!("soak: faults over; waiting for the producer and the backlog ...");
    producer.await?;

    // Drain: everything SENT, or give up after 10 minutes without progress.
    let c = connect(&db.url).await?;
    let mut last = (0i64, Instant::now());
    loop {
        let unfinished: i64 = c
            .query_one(
                r#"SELECT count(*) FROM "OutboxEvent" WHERE "status" <> 'SENT'"#,
                &[],
            )
            .await?
            .get(0);
        if unfinished == 0 {
            break;
        }
        if unfinished != last.0 {
            last = (unfinished, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(600) {
            eprintln!("soak: {unfinished} events still not SENT after 10 minutes without progress");
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut by_status: Vec<(String, i64)> =
        outbox_testkit::by_status(&c).await.into_iter().collect();
    by_status.sort();
    for w in &mut workers {
        w.signal("TERM");
        let _ = w.wait_exit(Duration::from_secs(30)).await;
    }
    dest.down().await;

    let counts = seen.counts.lock().unwrap().clone();
    let lost = counts.iter().filter(|c| **c == 0).count();
    let duplicated: u64 = counts.iter().map(|c| u64::from(c.saturating_sub(1))).sum();
    let out_of_order = seen.out_of_order.load(Ordering::Relaxed);
    let not_sent: i64 = by_status
        .iter()
        .filter(|(s, _)| s != "SENT")
        .map(|(_, n)| n)
        .sum();
    let mut fault_list: Vec<_> = faults.into_iter().collect();
    fault_list.sort();
    println!("# outbox soak");
    println!();
    println!(
        "ran {} with faults every {} s, then drained; {} events ({} ordered over {} aggregates), 3 workers",
        args.duration,
        args.fault_every,
        total,
        total / 5,
        AGGREGATES / 5
    );
    println!("faults: {fault_list:?}");
    println!("rows by status: {by_status:?}");
    println!(
        "requests received: {}",
        seen.requests.load(Ordering::Relaxed)
    );
    println!("lost (never delivered): {lost}");
    println!("not SENT at the end: {not_sent}");
    println!("duplicated deliveries: {duplicated}");
    println!("out of order (ordered aggregates): {out_of_order}");
    let pass = lost == 0 && not_sent == 0 && out_of_order == 0;
    println!("result: {}", if pass { "PASS" } else { "FAIL" });
    drop(db);
    drop(cluster);
    if !pass {
        bail!("soak failed");
    }
    Ok(())
}
