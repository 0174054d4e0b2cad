//! (15) MySQL / MariaDB: the relay draining a backlog next to the SQL floor on the same
//! database and table shape — `SELECT … FOR UPDATE SKIP LOCKED` of 100, the `UPDATE` that
//! leases them, then the `UPDATE` that marks them SENT, on 2 connections — in the same run,
//! on the local server (127.0.0.1:3306, root).

use crate::relay::{options, Counting};
use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;
use outbox_core::Migrator;
use outbox_sinks::blackhole::BlackholeSink;
use outbox_store::mysql::MysqlStore;
use outbox_worker::{OnSuccess, Worker};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "bench.mysql";
const SERVER: &str = "mysql://root@127.0.0.1:3306";

/// A fresh migrated database `name` holding `events` due events and their policy.
async fn fill(name: &str, events: u64) -> Result<String> {
    let mut c = mysql_async::Conn::from_url(SERVER)
        .await
        .context("MariaDB on 127.0.0.1:3306")?;
    c.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await?;
    c.query_drop(format!("CREATE DATABASE `{name}`")).await?;
    c.disconnect().await?;
    let url = format!("{SERVER}/{name}");
    MysqlStore::new(&url, 2)
        .map_err(anyhow::Error::msg)?
        .deploy()
        .await?;
    let mut c = mysql_async::Conn::from_url(url.as_str()).await?;
    c.query_drop("SET SESSION max_recursive_iterations = 10000000")
        .await?;
    c.exec_drop(
        "INSERT INTO `OutboxRetryPolicy` (`routingKey`, `maxRetries`, `retryInterval`, `maxInterval`) VALUES (?, 5, 1000, 60000)",
        (KEY,),
    )
    .await?;
    c.exec_drop(
        "INSERT INTO `OutboxEvent` (`id`, `eventName`, `eventType`, `aggregateId`, `routingKey`, `payload`, `nextRetryAt`)
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
         SELECT CONCAT('e-', i), 'BenchEvent', 'bench.happened', CONCAT('agg-', i % 1000), ?,
                JSON_OBJECT('i', i, 'note', 'a small payload of some sixty bytes'),
                UTC_TIMESTAMP(3) - INTERVAL 1 SECOND
           FROM n",
        (events, KEY),
    )
    .await?;
    c.disconnect().await?;
    Ok(url)
}

/// Rows per second of the floor: 2 connections, each claiming 100 then marking them SENT.
async fn floor(url: &str, events: u64) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..2 {
        let (url, done) = (url.to_string(), done.clone());
        tasks.push(tokio::spawn(async move {
            let owner = format!("floor-{n}");
            let mut c = mysql_async::Conn::from_url(url.as_str()).await?;
            c.query_drop("SET time_zone = '+00:00'").await?;
            c.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
            loop {
                let mut tx = c.start_transaction(Default::default()).await?;
                let ids: Vec<String> = tx
                    .query(
                        "SELECT `id` FROM `OutboxEvent` WHERE `status` = 'PENDING' AND `nextRetryAt` <= NOW(3)
                          ORDER BY `nextRetryAt` LIMIT 100 FOR UPDATE SKIP LOCKED",
                    )
                    .await?;
                if ids.is_empty() {
                    tx.commit().await?;
                    return anyhow::Ok(());
                }
                let list = serde_json::to_string(&ids)?;
                tx.exec_drop(
                    "UPDATE `OutboxEvent` AS e JOIN JSON_TABLE(?, '$[*]' COLUMNS (k VARCHAR(191) PATH '$')) AS j ON e.`id` = j.k
                        SET e.`status` = 'PROCESSING', e.`lockedBy` = ?, e.`lockedUntil` = NOW(3) + INTERVAL 30 SECOND",
                    (&list, &owner),
                )
                .await?;
                tx.commit().await?;
                let mut tx = c.start_transaction(Default::default()).await?;
                tx.exec_drop(
                    "UPDATE `OutboxEvent` AS e JOIN JSON_TABLE(?, '$[*]' COLUMNS (k VARCHAR(191) PATH '$')) AS j ON e.`id` = j.k
                        SET e.`status` = 'SENT', e.`processedAt` = NOW(3), e.`lockedBy` = NULL, e.`lockedUntil` = NULL
                      WHERE e.`lockedBy` = ?",
                    (&list, &owner),
                )
                .await?;
                done.fetch_add(tx.affected_rows(), Ordering::Relaxed);
                tx.commit().await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let done = done.load(Ordering::Relaxed);
    anyhow::ensure!(done == events, "the floor marked {done} of {events}");
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// Events per second of the relay draining the database with a null sink.
async fn relay(url: &str, events: u64) -> Result<f64> {
    let store = MysqlStore::new(url, 4).map_err(anyhow::Error::msg)?;
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
    let mut c = mysql_async::Conn::from_url(url).await?;
    loop {
        let left: Option<i64> = c
            .query_first("SELECT COUNT(*) FROM `OutboxEvent` WHERE `status` <> 'SENT'")
            .await?;
        if left == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    c.disconnect().await?;
    let _ = stop.send(());
    running.await?;
    Ok(events as f64 / elapsed.as_secs_f64())
}

/// (floor rows/s, relay events/s) on a scratch database of the local server.
pub async fn measure(events: u64) -> Result<(f64, f64)> {
    let name = format!("outbox_bench_{}", std::process::id());
    let url = fill(&name, events).await?;
    let floor = floor(&url, events).await?;
    let url = fill(&name, events).await?;
    let relay = relay(&url, events).await;
    let mut c = mysql_async::Conn::from_url(SERVER).await?;
    c.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await?;
    c.disconnect().await?;
    Ok((floor, relay?))
}
