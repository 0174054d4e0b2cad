//! Read-only questions for operators (`outbox doctor`): who we are connected to, and
//! what the queue looks like.

use super::{classify, PgStore};
use outbox_core::StoreError;
use std::time::Duration;

/// A summary of the event table.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSummary {
    /// FAILED events.
    pub failed: i64,
    /// Age of the oldest PENDING event (by occurredAt).
    pub oldest_pending: Option<Duration>,
    /// PENDING events per routingKey.
    pub pending_by_key: Vec<(String, i64)>,
    /// PROCESSING events whose lease expired more than [`STALE_LEASE`] ago: no worker is
    /// taking them back.
    pub stale_leases: i64,
    /// How long ago the oldest of those expired.
    pub stale_leases_oldest: Option<Duration>,
}

/// A lease expired this long ago is one no running worker's reaper took back (a reaper
/// looks at least every 15 s).
pub const STALE_LEASE: Duration = Duration::from_secs(60);

impl PgStore {
    /// `PostgreSQL 15.19, database "x" as user "y"`.
    pub async fn server_info(&self) -> Result<String, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), current_database(), current_user,
                        (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl)",
                &[],
            )
            .await
            .map_err(classify)?;
        let tls = match row.get::<_, Option<String>>(3) {
            Some(version) => format!("over {version} ({})", self.tls_params.describe()),
            None if self.tls_params.mode == super::tls::Mode::Disable => {
                "without TLS (sslmode=disable)".to_string()
            }
            None => "without TLS (the server offers none)".to_string(),
        };
        Ok(format!(
            "PostgreSQL {}, database \"{}\" as user \"{}\", {tls}",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ))
    }

    /// Whether the server runs autovacuum (a queue table bloats without it).
    pub async fn autovacuum_enabled(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let on: String = client
            .query_one("SELECT current_setting('autovacuum')", &[])
            .await
            .map_err(classify)?
            .get(0);
        Ok(on == "on")
    }

    /// Counts for the doctor.
    pub async fn queue_summary(&self) -> Result<QueueSummary, StoreError> {
        let (totals, by_key) = self.layout.summary_statements();
        let client = self.client().await?;
        let row = client.query_one(&totals, &[]).await.map_err(classify)?;
        let secs: Option<f64> = row.get(1);
        let rows = client.query(&by_key, &[]).await.map_err(classify)?;
        let stale = client
            .query_one(
                &self.layout.stale_leases_statement(),
                &[&STALE_LEASE.as_secs_f64()],
            )
            .await
            .map_err(classify)?;
        let stale_secs: Option<f64> = stale.get(1);
        Ok(QueueSummary {
            stale_leases: stale.get(0),
            stale_leases_oldest: stale_secs
                .filter(|s| s.is_finite())
                .and_then(|s| Duration::try_from_secs_f64(s.max(0.0)).ok()),
            failed: row.get(0),
            oldest_pending: secs.and_then(|s| Duration::try_from_secs_f64(s.max(0.0)).ok()),
            pending_by_key: rows
                .iter()
                .map(|r| (super::ops::text_or_null(r, 0), r.get(1)))
                .collect(),
        })
    }
}

impl PgStore {
    /// Runs `sql`, a script of statements, in one transaction with the outbox schema first
    /// on the search path: for `outbox demo`, which runs the SQL an application would.
    pub async fn run_script(&self, sql: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        let script = format!(
            "BEGIN; SET LOCAL search_path TO {}, public; {sql}; COMMIT;",
            super::quote_ident(&self.schema)
        );
        let result = client.batch_execute(&script).await.map_err(classify);
        if result.is_err() {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        result
    }

    /// Drops the outbox schema and everything in it: for `outbox demo`'s scratch schema.
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                super::quote_ident(&self.schema)
            ))
            .await
            .map_err(classify)
    }
}
