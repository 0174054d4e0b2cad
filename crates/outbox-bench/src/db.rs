//! The benchmark's own database: created per run, filled with generate_series, dropped at
//! the end.

use anyhow::{Context, Result};
use outbox_core::Migrator;
use tokio_postgres::{Client, NoTls};

/// Connects and drives the connection on a task.
pub async fn connect(url: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A database for this run.
pub struct BenchDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

/// The routingKey all benchmark events use.
pub const KEY: &str = "bench";

impl BenchDb {
    pub async fn create(admin_url: &str) -> Result<BenchDb> {
        let name = format!("outbox_bench_{}", std::process::id());
        let admin = connect(admin_url).await?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let base = match admin_url.rfind('/') {
            Some(i)
                if admin_url[..i].contains("://") && i > admin_url.find("://").unwrap_or(0) + 2 =>
            {
                &admin_url[..i]
            }
            _ => admin_url,
        };
        let url = format!("{base}/{name}");
        let store = outbox_store::PgStore::new(&outbox_store::PgStoreOptions::new(url.clone()))?;
        store.deploy().await?;
        let c = connect(&url).await?;
        c.execute(
            r#"INSERT INTO "OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval") VALUES ($1, 5, 1000, 60000)"#,
            &[&KEY],
        )
        .await?;
        Ok(BenchDb {
            name,
            url,
            admin_url: admin_url.to_string(),
        })
    }

    /// Empties the event table and inserts `n` due events (payload ~60 bytes, 1000 aggregates).
    pub async fn fill(&self, n: u64) -> Result<()> {
        self.fill_spread(n, 1000).await
    }

    /// Empties the event table and inserts `n` due events spread over `aggregates`
    /// aggregates, each aggregate's events in insertion order.
    pub async fn fill_spread(&self, n: u64, aggregates: u64) -> Result<()> {
        let aggregates = i64::try_from(aggregates.max(1))?;
        let c = connect(&self.url).await?;
        c.batch_execute(r#"TRUNCATE "OutboxEvent""#).await?;
        let chunk = 200_000u64;
        let mut done = 0;
        while done < n {
            let m = chunk.min(n - done) as i64;
            c.execute(
                r#"INSERT INTO "OutboxEvent" ("eventName", "eventType", "aggregateId", "routingKey", "payload")
                   SELECT 'BenchEvent', 'bench.happened', 'agg-' || (i % $3::int8), $1,
                          jsonb_build_object('i', i, 'note', 'a small payload of some sixty bytes')
                     FROM generate_series(1, $2::int8) AS i"#,
                &[&KEY, &m, &aggregates],
            )
            .await?;
            done += m as u64;
        }
        c.batch_execute(r#"VACUUM ANALYZE "OutboxEvent""#).await?;
        Ok(())
    }

    /// Empties the table, inserts `sent` delivered rows and analyses the table, then adds
    /// `pending` due events — analysed again only when `fresh`: the statistics then say
    /// PENDING rows are rare, as they are for a relay that keeps up until a backlog forms.
    pub async fn fill_after_history(&self, sent: u64, pending: u64, fresh: bool) -> Result<()> {
        let c = connect(&self.url).await?;
        // No autovacuum ANALYZE in the middle of the measurement (the PENDING rows alone
        // pass its threshold); reset once the drain is over (`reset_autovacuum`).
        c.batch_execute(
            r#"TRUNCATE "OutboxEvent"; ALTER TABLE "OutboxEvent" SET (autovacuum_enabled = off)"#,
        )
        .await?;
        c.execute(
            r#"INSERT INTO "OutboxEvent" ("eventName", "eventType", "aggregateId", "routingKey", "payload", "status", "processedAt")
               SELECT 'BenchEvent', 'bench.happened', 'agg-' || (i % 1000), $1,
                      jsonb_build_object('i', i, 'note', 'a small payload of some sixty bytes'), 'SENT', now()
                 FROM generate_series(1, $2::int8) AS i"#,
            &[&KEY, &i64::try_from(sent)?],
        )
        .await?;
        c.batch_execute(r#"VACUUM ANALYZE "OutboxEvent""#).await?;
        c.execute(
            r#"INSERT INTO "OutboxEvent" ("eventName", "eventType", "aggregateId", "routingKey", "payload")
               SELECT 'BenchEvent', 'bench.happened', 'agg-' || (i % 1000), $1,
                      jsonb_build_object('i', i, 'note', 'a small payload of some sixty bytes')
                 FROM generate_series(1, $2::int8) AS i"#,
            &[&KEY, &i64::try_from(pending)?],
        )
        .await?;
        if fresh {
            c.batch_execute(r#"ANALYZE "OutboxEvent""#).await?;
        }
        Ok(())
    }

    /// Empties the event table (after the table-size measurement, whose history is large).
    pub async fn truncate(&self) -> Result<()> {
        connect(&self.url)
            .await?
            .batch_execute(r#"TRUNCATE "OutboxEvent""#)
            .await?;
        Ok(())
    }

    /// Gives the event table back to autovacuum (after [`BenchDb::fill_after_history`]).
    pub async fn reset_autovacuum(&self) -> Result<()> {
        connect(&self.url)
            .await?
            .batch_execute(r#"ALTER TABLE "OutboxEvent" RESET (autovacuum_enabled)"#)
            .await?;
        Ok(())
    }

    /// Makes the benchmark's policy ordered (per-aggregate FIFO) or not.
    pub async fn set_ordered(&self, ordered: bool) -> Result<()> {
        connect(&self.url)
            .await?
            .execute(
                r#"UPDATE "OutboxRetryPolicy" SET "ordered" = $2 WHERE "routingKey" = $1"#,
                &[&KEY, &ordered],
            )
            .await?;
        Ok(())
    }

    /// Rows not yet finished.
    pub async fn unfinished(&self, c: &Client) -> Result<i64> {
        Ok(c.query_one(
            r#"SELECT count(*) FROM "OutboxEvent" WHERE "status" IN ('PENDING', 'PROCESSING')"#,
            &[],
        )
        .await?
        .get(0))
    }

    pub async fn drop_db(&self) -> Result<()> {
        let admin = connect(&self.admin_url).await?;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await?;
        Ok(())
    }
}
