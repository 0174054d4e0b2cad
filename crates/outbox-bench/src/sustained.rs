//! (6) A steady insert rate for minutes with retention purging SENT rows, and for a window in
//! the middle a session idle in a transaction that holds an xid (pinning the xmin horizon so
//! vacuum cannot reclaim dead tuples). Per minute: offered and delivered rate, claim latency,
//! backlog and dead tuples.

use crate::db::{connect, BenchDb, KEY};
use crate::latency::{percentiles, Percentiles};
use crate::relay::{options, store, Counting};
use anyhow::Result;
use outbox_sinks::blackhole::BlackholeSink;
use outbox_worker::{ClaimObserver, OnSuccess, Retention, Worker};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One minute of the run.
pub struct Minute {
    pub index: u64,
    pub pinned: bool,
    pub inserted: u64,
    pub delivered: u64,
    pub claim: Percentiles,
    /// Claim statements run in the minute, empty ones included.
    pub claims: u64,
    pub backlog: i64,
    pub dead_tuples: i64,
    /// Tuples that died in the minute (`n_tup_upd + n_tup_del` of the table's statistics).
    pub new_dead: i64,
}

/// What holds the xmin horizon back during the pin.
#[derive(Clone, Copy)]
pub enum Holder {
    /// A session idle in a transaction that holds an xid.
    Xid,
    /// A REPEATABLE READ transaction that counts the table every 30 s on its one snapshot.
    Reader,
}

impl Holder {
    pub fn describe(self) -> &'static str {
        match self {
            Holder::Xid => "a session idle in a transaction holding an xid",
            Holder::Reader => "a REPEATABLE READ reader counting the table every 30 s",
        }
    }
}

pub async fn run(
    db: &BenchDb,
    rate: u64,
    total: Duration,
    (pin_from, pin_for, holder): (Duration, Duration, Holder),
    workers: usize,
) -> Result<Vec<Minute>> {
    db.fill(0).await?;
    let claims: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    let sink = Counting::new(Arc::new(BlackholeSink));
    let mut opts = options(OnSuccess::Mark);
    opts.retention = Retention {
        sent: Some(Duration::from_secs(10)),
        failed: None,
        interval: Duration::from_secs(5),
        batch_size: 1000,
    };
    let rec = claims.clone();
    let statements = Arc::new(AtomicU64::new(0));
    let counted = statements.clone();
    opts.claim_observer = Some(ClaimObserver(Arc::new(move |n, took| {
        counted.fetch_add(1, Ordering::Relaxed);
        if n > 0 {
            rec.lock().expect("claims").push((Instant::now(), took));
        }
    })));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut running = Vec::new();
    for _ in 0..workers.max(1) {
        let worker = Worker::new(Arc::new(store(&db.url)?), opts.clone()).route(
            KEY,
            "blackhole",
            sink.clone(),
        );
        let mut stopped = stopped.clone();
        running.push(tokio::spawn(worker.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }

    // The producer: every 10 ms, one multi-row INSERT of rate/100 events.
    let inserted = Arc::new(AtomicU64::new(0));
    let producing = {
        let url = db.url.clone();
        let inserted = inserted.clone();
        tokio::spawn(async move {
            let c = connect(&url).await?;
            let per_tick = (rate / 100).max(1) as i64;
            let stmt = c
                .prepare(
                    r#"INSERT INTO "OutboxEvent" ("eventName", "eventType", "aggregateId", "routingKey", "payload")
                       SELECT 'BenchEvent', 'bench.happened', 'agg-' || (i % 1000), $1, jsonb_build_object('i', i)
                         FROM generate_series(1, $2::int8) AS i"#,
                )
                .await?;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let start = Instant::now();
            while start.elapsed() < total {
                tick.tick().await;
                c.execute(&stmt, &[&KEY, &per_tick]).await?;
                inserted.fetch_add(per_tick as u64, Ordering::Relaxed);
            }
            anyhow::Ok(())
        })
    };

    // Production clusters run autovacuum; where this server has it off, vacuum the table
    // every 10 s in its place, so the run measures the relay rather than a server that
    // never reclaims anything.
    let probe = connect(&db.url).await?;
    let autovacuum: String = probe.query_one("SHOW autovacuum", &[]).await?.get(0);
    let vacuuming = if autovacuum == "off" {
        eprintln!("  sustained: autovacuum is off on this server; vacuuming \"OutboxEvent\" every 10 s in its place");
        let url = db.url.clone();
        Some(tokio::spawn(async move {
            let c = connect(&url).await?;
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                c.batch_execute(r#"VACUUM "OutboxEvent""#).await?;
            }
            #[allow(unreachable_code)]
            anyhow::Ok(())
        }))
    } else {
        None
    };
    let pinner = connect(&db.url).await?;
    let started = Instant::now();
    let mut minutes = Vec::new();
    let (mut last_ins, mut last_del, mut last_stmts, mut last_dead) = (0, 0, 0, 0);
    let mut last_read = Instant::now();
    let mut pinned = false;
    let mut index = 0;
    while started.elapsed() < total {
        let minute_end = started + Duration::from_secs(60 * (index + 1));
        let mut pinned_this_minute = pinned;
        while Instant::now() < minute_end && started.elapsed() < total {
            let t = started.elapsed();
            if !pinned && t >= pin_from && t < pin_from + pin_for {
                pinner
                    .batch_execute(match holder {
                        Holder::Xid => "BEGIN; SELECT txid_current();",
                        Holder::Reader => {
                            r#"BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM "OutboxEvent";"#
                        }
                    })
                    .await?;
                last_read = Instant::now();
                pinned = true;
                eprintln!("  sustained: xmin pinned at {}s", t.as_secs());
            } else if pinned && t >= pin_from + pin_for {
                pinner.batch_execute("COMMIT").await?;
                pinned = false;
                eprintln!("  sustained: xmin released at {}s", t.as_secs());
            }
            if pinned
                && matches!(holder, Holder::Reader)
                && last_read.elapsed() >= Duration::from_secs(30)
            {
                pinner
                    .batch_execute(r#"SELECT count(*) FROM "OutboxEvent""#)
                    .await?;
                last_read = Instant::now();
            }
            pinned_this_minute |= pinned;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let ins = inserted.load(Ordering::Relaxed);
        let del = sink.count.load(Ordering::Relaxed);
        let window_start = minute_end - Duration::from_secs(60);
        let lat: Vec<Duration> = claims
            .lock()
            .expect("claims")
            .iter()
            .filter(|(at, _)| *at >= window_start && *at < minute_end)
            .map(|(_, d)| *d)
            .collect();
        let backlog: i64 = probe
            .query_one(
                r#"SELECT count(*) FROM "OutboxEvent" WHERE "status" = 'PENDING'"#,
                &[],
            )
            .await?
            .get(0);
        let stats = probe
            .query_one(
                "SELECT n_dead_tup, n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relname = 'OutboxEvent'",
                &[],
            )
            .await?;
        let (dead, died): (i64, i64) = (stats.get(0), stats.get(1));
        let stmts = statements.load(Ordering::Relaxed);
        let m = Minute {
            index: index + 1,
            pinned: pinned_this_minute,
            inserted: ins - last_ins,
            delivered: del - last_del,
            claim: percentiles(lat),
            claims: stmts - last_stmts,
            backlog,
            dead_tuples: dead,
            new_dead: died - last_dead,
        };
        eprintln!(
            "  sustained minute {}: offered {}/s delivered {}/s claim p50 {:?} p99 {:?} backlog {} dead {}{}",
            m.index,
            m.inserted / 60,
            m.delivered / 60,
            m.claim.p50,
            m.claim.p99,
            m.backlog,
            m.dead_tuples,
            if m.pinned { " (xmin pinned)" } else { "" }
        );
        minutes.push(m);
        last_ins = ins;
        last_del = del;
        last_stmts = stmts;
        last_dead = died;
        index += 1;
    }
    if pinned {
        pinner.batch_execute("COMMIT").await?;
    }
    producing.await??;
    if let Some(v) = vacuuming {
        v.abort();
    }
    let _ = stop.send(true);
    for r in running {
        r.await?;
    }
    Ok(minutes)
}
