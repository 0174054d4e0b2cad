//! (14) SQLite: the relay draining a backlog from a database file, next to the SQL floor on
//! the same file shape — the same claim and mark, batches of 100, one connection, each
//! statement its own `BEGIN IMMEDIATE` transaction.

use crate::relay::{options, Counting};
use anyhow::Result;
use outbox_core::Migrator;
use outbox_sinks::blackhole::BlackholeSink;
use outbox_store::sqlite::{SqliteOptions, SqliteStore};
use outbox_worker::{OnSuccess, Worker};
use rusqlite::{params, Connection, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "bench.sqlite";

/// A fresh migrated database file holding `events` due events and their policy.
async fn fill(path: &Path, events: u64) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    SqliteStore::new(&SqliteOptions {
        path: path.to_path_buf(),
    })
    .deploy()
    .await?;
    let mut c = Connection::open(path)?;
    let tx = c.transaction()?;
    tx.execute(
        r#"INSERT INTO "OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval") VALUES (?1, 5, 1000, 60000)"#,
        params![KEY],
    )?;
    tx.execute(
        r#"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2)
INSERT INTO "OutboxEvent" ("eventName", "eventType", "aggregateId", "routingKey", "payload")
SELECT 'BenchEvent', 'bench.happened', 'agg-' || (i % 1000), ?1,
       json_object('i', i, 'note', 'a small payload of some sixty bytes')
  FROM n"#,
        params![KEY, events as i64],
    )?;
    tx.commit()?;
    Ok(())
}

/// Rows per second of the floor: claim 100 (PROCESSING with a lease), then mark them SENT.
fn floor(path: &Path, events: u64) -> Result<f64> {
    let mut c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(5))?;
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    let now = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";
    let claim = format!(
        r#"UPDATE "OutboxEvent" SET "status" = 'PROCESSING', "lockedBy" = 'floor', "lockedUntil" = {now} + 30000
 WHERE rowid IN (SELECT rowid FROM "OutboxEvent" WHERE "status" = 'PENDING' AND "nextRetryAt" <= {now}
                  ORDER BY "nextRetryAt" LIMIT 100)
RETURNING "id""#
    );
    let mark = format!(
        r#"UPDATE "OutboxEvent" SET "status" = 'SENT', "processedAt" = {now}, "lockedBy" = NULL, "lockedUntil" = NULL
 WHERE "id" IN (SELECT value FROM json_each(?1)) AND "lockedBy" = 'floor'"#
    );
    let started = Instant::now();
    let mut done = 0u64;
    loop {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ids: Vec<String> = {
            let mut stmt = tx.prepare_cached(&claim)?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        tx.commit()?;
        if ids.is_empty() {
            break;
        }
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        done += tx
            .prepare_cached(&mark)?
            .execute(params![serde_json::to_string(&ids)?])? as u64;
        tx.commit()?;
    }
    anyhow::ensure!(done == events, "the floor marked {done} of {events}");
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// Events per second of the relay draining the file with a null sink.
async fn relay(path: &Path, events: u64) -> Result<f64> {
    let store = SqliteStore::new(&SqliteOptions {
        path: path.to_path_buf(),
    });
    let counting = Counting::new(Arc::new(BlackholeSink));
    counting.target_at(events);
    let worker = Worker::new(Arc::new(store), options(OnSuccess::Mark)).route(
        KEY,
        "bench",
        counting.clone(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    let reached = counting.reached.notified();
    if counting.count.load(Ordering::Relaxed) < events {
        reached.await;
    }
    // Delivered; now until the last result is recorded.
    let c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(5))?;
    loop {
        let left: i64 = c.query_row(
            r#"SELECT count(*) FROM "OutboxEvent" WHERE "status" <> 'SENT'"#,
            [],
            |r| r.get(0),
        )?;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    running.await?;
    Ok(events as f64 / elapsed.as_secs_f64())
}

/// (floor rows/s, relay events/s) on a scratch file in `dir`.
pub async fn measure(dir: &Path, events: u64) -> Result<(f64, f64)> {
    let path: PathBuf = dir.join("bench.db");
    fill(&path, events).await?;
    let floor = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || floor(&path, events)).await??
    };
    fill(&path, events).await?;
    let relay = relay(&path, events).await?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok((floor, relay))
}
