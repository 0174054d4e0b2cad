//! outbox-bench: the relay measured next to its baselines, in one run, on one machine.
//! Absolute numbers drift between runs on shared machines; the ratios are what count.
//!
//! ```sh
//! cargo run --release -p outbox-bench -- --events 200000
//! ```

mod brokers;
mod db;
mod floor;
mod graphile;
mod latency;
mod memory;
mod mysql;
mod relay;
mod sqlite;
mod sustained;

use anyhow::Result;
use clap::Parser;
use outbox_core::conf::{format_duration, parse_duration};
use outbox_sinks::blackhole::BlackholeSink;
use outbox_worker::{OnSuccess, Worker, WorkerOptions};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "outbox-bench",
    about = "Benchmarks the outbox relay against its baselines in one run."
)]
struct Args {
    /// A database URL the benchmark can create and drop databases with.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    /// Backlog size for the throughput measurements (1–3).
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Backlog size for the memory measurement (5).
    #[arg(long, default_value_t = 1_000_000)]
    memory_events: u64,
    /// Latency run (4): inserts per second, and seconds.
    #[arg(long, default_value_t = 200)]
    latency_rate: u32,
    #[arg(long, default_value_t = 15)]
    latency_seconds: u64,
    /// Sustained run (6): length ("0s" skips it), and the pinned-xmin window.
    #[arg(long, default_value = "10m")]
    sustained: String,
    #[arg(long, default_value = "3m")]
    pin: String,
    /// Offered rate of the sustained run, events/s (default: half of measurement 2).
    #[arg(long)]
    sustained_rate: Option<u64>,
    /// When the pin starts in the sustained run (default: 30% into it).
    #[arg(long)]
    pin_from: Option<String>,
    /// What holds the xmin back during the pin: `xid` (a session idle in a transaction that
    /// holds an xid) or `reader` (a REPEATABLE READ transaction that counts the table's rows
    /// every 30 s on one snapshot).
    #[arg(long, default_value = "xid")]
    pin_by: String,
    /// Workers side by side in the sustained run, each with its own connections.
    #[arg(long, default_value_t = 1)]
    sustained_workers: usize,
    /// Ordered-claim measurement: backlog, and how many aggregates it is spread over.
    #[arg(long, default_value_t = 100_000)]
    ordered_events: u64,
    #[arg(long, default_value_t = 10_000)]
    aggregates: u64,
    /// Measurements to run (comma-separated:
    /// floor,pgfloor,relay,graphile,http,brokers,latency,wakeups,memory,ordered,scale,stale,history,sqlite,
    /// mysql,sustained).
    #[arg(
        long,
        default_value = "floor,relay,graphile,http,brokers,latency,wakeups,memory,ordered,scale,stale,sqlite,mysql,sustained"
    )]
    only: String,
    /// SENT rows beside the backlog in the table-size measurement (13).
    #[arg(long, default_value_t = 10_000_000)]
    history_rows: u64,
    /// No-op jobs for the Graphile Worker baseline (11) (default: --events).
    #[arg(long)]
    graphile_jobs: Option<u64>,
    /// Backlog size for each broker sink (9), at most --events.
    #[arg(long, default_value_t = 50_000)]
    broker_events: u64,
    /// worker.concurrency for the relay runs (default: the worker's default).
    #[arg(long)]
    concurrency: Option<usize>,
    /// worker.batch_size for the relay runs (default: the worker's default).
    #[arg(long)]
    batch_size: Option<usize>,
    /// `sslmode` of the relay's connections. The floor's are plain TCP, so the default
    /// compares like with like; `require` measures what TLS costs.
    #[arg(long, default_value = "disable")]
    relay_sslmode: String,
    /// Internal: run as the worker process of the memory measurement.
    #[arg(long, hide = true)]
    worker_child: Option<String>,
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn worker_child(url: &str) -> Result<()> {
    let worker = Worker::new(Arc::new(relay::store(url)?), WorkerOptions::default()).route(
        db::KEY,
        "blackhole",
        Arc::new(BlackholeSink),
    );
    worker
        .run(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            term.recv().await;
        })
        .await;
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    relay::set_sslmode(&args.relay_sslmode);
    if let Some(url) = &args.worker_child {
        return worker_child(url).await;
    }
    let want = |m: &str| args.only.split(',').any(|x| x.trim() == m);
    relay::tune(args.concurrency, args.batch_size);
    let sustained =
        parse_duration(&args.sustained).map_err(|e| anyhow::anyhow!("--sustained: {e}"))?;
    let pin = parse_duration(&args.pin).map_err(|e| anyhow::anyhow!("--pin: {e}"))?;

    let db = db::BenchDb::create(&args.database_url).await?;
    let pg: String = db::connect(&db.url)
        .await?
        .query_one("SHOW server_version", &[])
        .await?
        .get(0);
    println!("# outbox-bench");
    println!();
    println!(
        "machine: {}; PostgreSQL {pg}; backlog {} events; relay sslmode={}",
        machine(),
        args.events,
        relay::sslmode()
    );
    println!();
    let result = run(&args, &db, sustained, pin, want).await;
    db.drop_db().await?;
    result
}

async fn run(
    args: &Args,
    db: &db::BenchDb,
    sustained_len: Duration,
    pin: Duration,
    want: impl Fn(&str) -> bool,
) -> Result<()> {
    let n = args.events;
    let mut floor = 0.0_f64;
    let mut null_rate = 0.0_f64;
    println!("| measurement | result | ratio |");
    println!("|---|---|---|");
    if want("pgfloor") && !want("floor") {
        // Only the baseline the targets are measured against.
        match floor::pgbench(db, n, 2).await {
            Ok(rate) => {
                floor = rate;
                println!("| (1) SQL floor by `pgbench -M prepared -c 2 -j 2`, batch 100 | {rate:.0} rows/s | the baseline |");
            }
            Err(e) => println!("| (1) SQL floor by pgbench | skipped: {e:#} | |"),
        }
    }
    if want("floor") {
        eprintln!("(1) SQL floor ...");
        let one = floor::run(db, n, 1, 100).await?;
        let two = floor::run(db, n, 2, 100).await?;
        println!("| (1) SQL floor, batch 100, 1 connection | {one:.0} rows/s | |");
        println!("| (1) SQL floor, batch 100, 2 connections | {two:.0} rows/s | |");
        // The baseline is the pgbench floor; without pgbench, the faster of the two above.
        match floor::pgbench(db, n, 2).await {
            Ok(rate) => {
                floor = rate;
                println!("| (1) SQL floor by `pgbench -M prepared -c 2 -j 2`, batch 100 | {rate:.0} rows/s | the baseline of the ratios below |");
            }
            Err(e) => {
                floor = one.max(two);
                println!("| (1) SQL floor by pgbench | skipped: {e:#} | the faster floor above is the baseline |");
            }
        }
    }
    if want("relay") {
        eprintln!("(2) relay, null sink ...");
        let mark = relay::drain(
            db,
            n,
            Arc::new(BlackholeSink),
            relay::options(OnSuccess::Mark),
        )
        .await?;
        let delete = relay::drain(
            db,
            n,
            Arc::new(BlackholeSink),
            relay::options(OnSuccess::Delete),
        )
        .await?;
        null_rate = mark;
        println!(
            "| (2) relay, null sink, on_success = mark | {mark:.0} events/s | {} of (1) |",
            ratio(mark, floor)
        );
        println!(
            "| (2) relay, null sink, on_success = delete | {delete:.0} events/s | {} of (1) |",
            ratio(delete, floor)
        );
    }
    if want("graphile") {
        // As many jobs as the relay's backlog, so the two are timed on the same amount.
        let jobs = args.graphile_jobs.unwrap_or(n);
        eprintln!("(11) Graphile Worker {} ...", graphile::VERSION);
        match graphile::run(db, jobs).await {
            Ok(rate) => println!(
                "| (11) Graphile Worker {}, tuned (24 concurrent jobs, pool 25, local queue 500), {jobs} no-op jobs | {rate:.0} jobs/s | {} |",
                graphile::VERSION,
                if null_rate > 0.0 {
                    format!("relay (2) is {} of it", ratio(null_rate, rate))
                } else {
                    String::new()
                }
            ),
            Err(e) => println!("| (11) Graphile Worker | skipped: {e:#} | |"),
        }
    }
    if want("http") {
        eprintln!("(3) relay, HTTP sink ...");
        let url = relay::http_server().await?;
        let rate = relay::drain(
            db,
            n,
            relay::http_sink(&url)?,
            relay::options(OnSuccess::Mark),
        )
        .await?;
        println!("| (3) relay, HTTP sink (loopback server, 200 at once) | {rate:.0} events/s | {} of (2) |", ratio(rate, null_rate));
    }
    if want("brokers") {
        eprintln!("(9) relay into each broker ...");
        let events = n.min(args.broker_events);
        for m in brokers::run(db, events).await {
            match m.rate {
                Ok(rate) => println!(
                    "| (9) relay, {} sink ({}), {events} events | {rate:.0} events/s | {} of (2) |",
                    m.broker,
                    m.what,
                    ratio(rate, null_rate)
                ),
                Err(e) => println!("| (9) relay, {} sink | not measured: {e:#} | |", m.broker),
            }
        }
    }
    if want("latency") {
        eprintln!("(4) latency ...");
        let raw = latency::raw_notify(db, args.latency_rate, args.latency_seconds).await?;
        let ours = latency::relay(db, args.latency_rate, args.latency_seconds).await?;
        println!(
            "| (4) raw INSERT+NOTIFY → LISTEN, {}/s | p50 {} · p99 {} · max {} (n={}) | |",
            args.latency_rate,
            ms(raw.p50),
            ms(raw.p99),
            ms(raw.max),
            raw.n
        );
        println!(
            "| (4) relay INSERT+commit → sink receipt, {}/s | p50 {} · p99 {} · max {} (n={}) | p50 {} · p99 {} of raw |",
            args.latency_rate,
            ms(ours.p50),
            ms(ours.p99),
            ms(ours.max),
            ours.n,
            ratio(ours.p50.as_secs_f64(), raw.p50.as_secs_f64()),
            ratio(ours.p99.as_secs_f64(), raw.p99.as_secs_f64())
        );
    }
    if want("wakeups") {
        for workers in [1, 4] {
            eprintln!("(12) {workers} worker(s) at {}/s ...", args.latency_rate);
            let (lat, per_event) =
                latency::relay_workers(db, args.latency_rate, args.latency_seconds, workers)
                    .await?;
            println!(
                "| (12) {workers} worker(s), INSERT+commit → sink receipt, {}/s | p50 {} · p99 {} (n={}) | {per_event:.2} claim statements per delivered event |",
                args.latency_rate,
                ms(lat.p50),
                ms(lat.p99),
                lat.n
            );
        }
    }
    if want("memory") {
        eprintln!("(5) memory ({} events) ...", args.memory_events);
        let (idle, peak, rate) = memory::run(db, args.memory_events).await?;
        println!("| (5) worker peak RSS, empty table | {idle:.1} MiB | |");
        println!(
            "| (5) worker peak RSS, draining {} events ({rate:.0} events/s) | {peak:.1} MiB | {} of empty |",
            args.memory_events,
            ratio(peak, idle)
        );
    }
    if want("ordered") {
        let (n, aggs) = (args.ordered_events, args.aggregates);
        eprintln!("(7) ordered claims ({n} events over {aggs} aggregates) ...");
        let options = relay::options(OnSuccess::Mark);
        db.set_ordered(false).await?;
        let unordered = relay::drain_spread(db, n, aggs, 1, options.clone()).await?;
        db.set_ordered(true).await?;
        let ordered = relay::drain_spread(db, n, aggs, 1, options).await?;
        db.set_ordered(false).await?;
        println!("| (7) relay, null sink, {n} events over {aggs} aggregates, unordered policy | {unordered:.0} events/s | |");
        println!(
            "| (7) the same, ordered policy (one event per aggregate at a time) | {ordered:.0} events/s | {} of unordered |",
            ratio(ordered, unordered)
        );
    }
    if want("stale") {
        let (sent, pending) = (700_000, 200_000);
        eprintln!("(10) planner statistics: {pending} PENDING after {sent} SENT ...");
        let options = relay::options(OnSuccess::Mark);
        let stale = relay::drain_after_history(db, sent, pending, false, options.clone()).await?;
        let fresh = relay::drain_after_history(db, sent, pending, true, options).await?;
        println!("| (10) relay, null sink, {pending} PENDING among {sent} SENT, statistics from before the backlog | {stale:.0} events/s | {} of fresh statistics |", ratio(stale, fresh));
        println!("| (10) the same after ANALYZE | {fresh:.0} events/s | |");
    }
    if want("history") {
        let (sent, pending) = (args.history_rows, args.events.min(100_000));
        eprintln!("(13) table size: {pending} PENDING, alone and beside {sent} SENT rows ...");
        let options = relay::options(OnSuccess::Mark);
        let alone = relay::drain_after_history(db, 0, pending, true, options.clone()).await?;
        let beside = relay::drain_after_history(db, sent, pending, true, options).await?;
        db.truncate().await?;
        println!("| (13) relay, null sink, {pending} PENDING in an otherwise empty table | {alone:.0} events/s | |");
        println!(
            "| (13) the same beside {sent} SENT rows | {beside:.0} events/s | {} of the empty table |",
            ratio(beside, alone)
        );
    }
    if want("sqlite") {
        let n = args.events.min(100_000);
        eprintln!("(14) SQLite: {n} events, the floor then the relay ...");
        let dir = std::env::temp_dir().join(format!("outbox-bench-sqlite-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let measured = sqlite::measure(&dir, n).await;
        let _ = std::fs::remove_dir_all(&dir);
        let (floor, relay) = measured?;
        println!("| (14) SQLite SQL floor, batch 100, one connection | {floor:.0} rows/s | the baseline |");
        println!(
            "| (14) relay on SQLite, null sink, on_success = mark | {relay:.0} events/s | {} of the SQLite floor |",
            ratio(relay, floor)
        );
    }
    if want("mysql") {
        let n = args.events.min(100_000);
        eprintln!("(15) MySQL/MariaDB: {n} events, the floor then the relay ...");
        let (floor, relay) = mysql::measure(n).await?;
        println!("| (15) MySQL/MariaDB SQL floor, batch 100, 2 connections | {floor:.0} rows/s | the baseline |");
        println!(
            "| (15) relay on MySQL/MariaDB, null sink, on_success = mark | {relay:.0} events/s | {} of the MySQL floor |",
            ratio(relay, floor)
        );
    }
    if want("scale") {
        eprintln!("(8) workers side by side ...");
        let options = relay::options(OnSuccess::Mark);
        let mut one = 0.0;
        for workers in [1, 2, 4] {
            let rate = relay::drain_spread(db, n, 1000, workers, options.clone()).await?;
            if workers == 1 {
                one = rate;
            }
            println!(
                "| (8) {workers} worker(s), null sink, each with its own connections | {rate:.0} events/s | {} of 1 worker |",
                ratio(rate, one)
            );
        }
    }
    if want("sustained") && !sustained_len.is_zero() {
        let rate = args.sustained_rate.unwrap_or(if null_rate > 0.0 {
            (null_rate / 2.0) as u64
        } else {
            2000
        });
        let pin_from = match &args.pin_from {
            Some(p) => parse_duration(p).map_err(|e| anyhow::anyhow!("--pin-from: {e}"))?,
            None => sustained_len.mul_f64(0.3),
        };
        let holder = match args.pin_by.as_str() {
            "xid" => sustained::Holder::Xid,
            "reader" => sustained::Holder::Reader,
            other => anyhow::bail!("--pin-by: `{other}` is neither `xid` nor `reader`"),
        };
        eprintln!(
            "(6) sustained {} at {rate}/s, xmin pinned from {} for {} ...",
            format_duration(sustained_len),
            format_duration(pin_from),
            format_duration(pin)
        );
        let minutes = sustained::run(
            db,
            rate,
            sustained_len,
            (pin_from, pin, holder),
            args.sustained_workers,
        )
        .await?;
        println!();
        let autovacuum: String = db::connect(&db.url)
            .await?
            .query_one("SHOW autovacuum", &[])
            .await?
            .get(0);
        let vacuum_note = if autovacuum == "off" {
            "; this server has autovacuum off, so the benchmark ran VACUUM on the table every 10 s in its place"
        } else {
            ""
        };
        println!("(6) sustained at {rate} events/s offered to {} worker(s), retention deleting SENT rows after 10s; xmin pinned by {} from minute {:.1} for {}{vacuum_note}:", args.sustained_workers.max(1), holder.describe(), pin_from.as_secs_f64() / 60.0, format_duration(pin));
        println!();
        println!("| minute | offered/s | delivered/s | claim p50 | claim p99 | claims per event | PENDING at end | dead tuples | new dead tuples per event | xmin pinned |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for m in &minutes {
            println!(
                "| {} | {} | {} | {} | {} | {:.2} | {} | {} | {:.2} | {} |",
                m.index,
                m.inserted / 60,
                m.delivered / 60,
                ms(m.claim.p50),
                ms(m.claim.p99),
                m.claims as f64 / m.delivered.max(1) as f64,
                m.backlog,
                m.dead_tuples,
                m.new_dead as f64 / m.delivered.max(1) as f64,
                if m.pinned { "yes" } else { "" }
            );
        }
        if let (Some(first), Some(last)) = (minutes.first(), minutes.last()) {
            println!();
            println!(
                "last minute vs first: throughput {}, claim p99 {}",
                ratio(last.delivered as f64, first.delivered as f64),
                ratio(last.claim.p99.as_secs_f64(), first.claim.p99.as_secs_f64())
            );
        }
    }
    Ok(())
}
