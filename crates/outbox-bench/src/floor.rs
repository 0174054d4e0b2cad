//! (1) The SQL floor: the least SQL any lease-based relay must issue — claim a batch with
//! FOR UPDATE SKIP LOCKED into PROCESSING with a lease, then mark it SENT — in the simplest
//! loop, with no dispatch at all.

use crate::db::{connect, BenchDb};
use anyhow::Result;
use std::time::Instant;

const CLAIM: &str = r#"UPDATE "OutboxEvent" SET "status" = 'PROCESSING', "lockedBy" = $1,
       "lockedUntil" = now() + interval '30 seconds'
 WHERE "id" = ANY(ARRAY(SELECT "id" FROM "OutboxEvent"
        WHERE "status" = 'PENDING' AND "nextRetryAt" <= now()
        ORDER BY "nextRetryAt" LIMIT $2 FOR UPDATE SKIP LOCKED))
RETURNING "id""#;
const MARK: &str = r#"UPDATE "OutboxEvent" SET "status" = 'SENT', "processedAt" = now(),
       "lockedBy" = NULL, "lockedUntil" = NULL
 WHERE "id" = ANY($1)"#;

/// Rows per second with `conns` connections claiming `batch` at a time.
pub async fn run(db: &BenchDb, events: u64, conns: usize, batch: i64) -> Result<f64> {
    db.fill(events).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..conns {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let c = connect(&url).await?;
            let claim = c.prepare(CLAIM).await?;
            let mark = c.prepare(MARK).await?;
            let owner = format!("floor-{w}");
            loop {
                let rows = c.query(&claim, &[&owner, &batch]).await?;
                if rows.is_empty() {
                    return anyhow::Ok(());
                }
                let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                c.execute(&mark, &[&ids]).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// The claim and the mark as one pgbench script: the claim reads what a relay reads (id,
/// routingKey, payload, retryCount; the rows stay on the server, only their ids come back)
/// and commits without waiting for its WAL flush, as the relay's claim does; it hands the
/// ids to the mark, which is fenced by the lease owner like the relay's.
const PGBENCH_SCRIPT: &str = r#"BEGIN;
SET LOCAL synchronous_commit = off;
WITH c AS (UPDATE "OutboxEvent" SET "status" = 'PROCESSING', "lockedBy" = 'floor', "lockedUntil" = now() + interval '30 seconds' WHERE "id" = ANY(ARRAY(SELECT "id" FROM "OutboxEvent" WHERE "status" = 'PENDING' AND "nextRetryAt" <= now() ORDER BY "nextRetryAt" LIMIT 100 FOR UPDATE SKIP LOCKED)) RETURNING "id", "routingKey", "payload", "retryCount") SELECT COALESCE(array_agg("id"), '{}') AS ids, count(*) AS n FROM c \gset
COMMIT;
UPDATE "OutboxEvent" SET "status" = 'SENT', "processedAt" = now(), "lockedBy" = NULL, "lockedUntil" = NULL WHERE "id" = ANY(:ids) AND "lockedBy" = 'floor'
"#;

/// The same floor driven by `pgbench -M prepared -c CONNS -j CONNS` (the client that gets
/// the most out of the server): rows marked SENT per second, or why it could not run.
pub async fn pgbench(db: &BenchDb, events: u64, conns: usize) -> Result<f64> {
    db.fill(events).await?;
    let dir = std::env::temp_dir().join(format!("outbox-bench-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("floor.sql");
    std::fs::write(&script, PGBENCH_SCRIPT)?;
    let bin = pgbench_bin().ok_or_else(|| anyhow::anyhow!("pgbench not found"))?;
    // Enough transactions per client to drain the table, a few more for the SKIP LOCKED
    // claims that come back short.
    let per_client = events / 100 / conns as u64 + 20;
    let started = Instant::now();
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["-n", "-M", "prepared", "-f"])
        .arg(&script)
        .args(["-c", &conns.to_string(), "-j", &conns.to_string()])
        .args(["-t", &per_client.to_string()])
        .arg(&db.url);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        anyhow::bail!(
            "pgbench failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let c = connect(&db.url).await?;
    let sent: i64 = c
        .query_one(
            r#"SELECT count(*) FROM "OutboxEvent" WHERE "status" = 'SENT'"#,
            &[],
        )
        .await?
        .get(0);
    Ok(sent as f64 / took.as_secs_f64())
}

/// `pgbench` on $PATH, else the server's own bin directory.
fn pgbench_bin() -> Option<std::path::PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        if let Some(p) = std::env::split_paths(&paths)
            .map(|p| p.join("pgbench"))
            .find(|p| p.is_file())
        {
            return Some(p);
        }
    }
    let out = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()?;
    let p = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("pgbench");
    p.is_file().then_some(p)
}
