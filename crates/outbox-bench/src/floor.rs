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
