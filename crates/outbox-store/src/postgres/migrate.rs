//! Embedded, checksummed migrations with their own history table (`"_outbox_migrations"`),
//! never Prisma's. Deploy takes a transaction-scoped advisory lock, so replicas starting at
//! once apply each migration exactly once and no lock outlives an error.

use super::{classify, quote_ident, PgStore};
use crate::migration::{states, HistoryRow};
pub use crate::migration::{Migration, HISTORY_TABLE};
use async_trait::async_trait;
use chrono::Utc;
pub use outbox_core::operate::{
    MigrationReport, MigrationState, Problem, ProblemKind, SchemaStatus,
};
use outbox_core::{Migrator, StoreError};
use sha2::{Digest, Sha256};

/// Every migration, in order. Files are never edited once released.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "outbox_tables",
        sql: include_str!("../../migrations/postgres/0001_outbox_tables.sql"),
    },
    Migration {
        version: 2,
        name: "outbox_autovacuum",
        sql: include_str!("../../migrations/postgres/0002_outbox_autovacuum.sql"),
    },
    Migration {
        version: 3,
        name: "outbox_ordering",
        sql: include_str!("../../migrations/postgres/0003_outbox_ordering.sql"),
    },
    Migration {
        version: 4,
        name: "outbox_audit",
        sql: include_str!("../../migrations/postgres/0004_outbox_audit.sql"),
    },
    Migration {
        version: 5,
        name: "outbox_finite_values",
        sql: include_str!("../../migrations/postgres/0005_outbox_finite_values.sql"),
    },
];

fn advisory_key(schema: &str) -> i64 {
    let digest = Sha256::digest(format!("outbox-migrate:{schema}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

fn history_ddl(schema: &str) -> String {
    format!(
        r#"CREATE TABLE IF NOT EXISTS {}.{} (
    "version"     bigint      PRIMARY KEY,
    "name"        text        NOT NULL,
    "checksum"    text        NOT NULL,
    "appliedAt"   timestamptz NOT NULL DEFAULT now(),
    "executionMs" bigint      NOT NULL,
    "success"     boolean     NOT NULL DEFAULT true
)"#,
        quote_ident(schema),
        quote_ident(HISTORY_TABLE)
    )
}

async fn read_history<C: tokio_postgres::GenericClient>(
    client: &C,
    schema: &str,
) -> Result<Vec<HistoryRow>, StoreError> {
    let rows = client
        .query(
            &format!(
                r#"SELECT "version", "name", "checksum", "appliedAt", "success" FROM {}.{} ORDER BY "version""#,
                quote_ident(schema),
                quote_ident(HISTORY_TABLE)
            ),
            &[],
        )
        .await
        .map_err(|e| {
            StoreError::Query(format!(
                "cannot read {}.{} (is it another tool's table?): {}",
                quote_ident(schema),
                quote_ident(HISTORY_TABLE),
                classify(e)
            ))
        })?;
    let shape = |e: tokio_postgres::Error| {
        StoreError::Query(format!("{HISTORY_TABLE} has an unexpected shape: {e}"))
    };
    rows.iter()
        .map(|r| {
            Ok(HistoryRow {
                version: r.try_get(0).map_err(shape)?,
                name: r.try_get(1).map_err(shape)?,
                checksum: r.try_get(2).map_err(shape)?,
                applied_at: r.try_get(3).map_err(shape)?,
                success: r.try_get(4).map_err(shape)?,
            })
        })
        .collect()
}

impl PgStore {
    /// The history table, qualified, as SQL names it.
    fn history_table(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(HISTORY_TABLE)
        )
    }

    /// Compares the history table with the embedded migrations.
    pub async fn migration_status(&self) -> Result<Vec<MigrationReport>, StoreError> {
        let client = self.client().await?;
        let exists: bool = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&self.history_table()],
            )
            .await
            .map_err(classify)?
            .get(0);
        let history = if exists {
            read_history(&**client, &self.schema).await?
        } else {
            Vec::new()
        };
        Ok(states(MIGRATIONS, &history))
    }

    /// In one transaction under the migration lock: runs `first`, then applies every
    /// pending migration.
    async fn locked(&self, first: &[String]) -> Result<Vec<MigrationReport>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        tx.batch_execute("SET LOCAL client_min_messages = warning")
            .await
            .map_err(classify)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&advisory_key(&self.schema)],
        )
        .await
        .map_err(classify)?;
        for stmt in first {
            tx.batch_execute(stmt).await.map_err(classify)?;
        }
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}; {}",
            quote_ident(&self.schema),
            history_ddl(&self.schema)
        ))
        .await
        .map_err(classify)?;
        let history = read_history(&*tx, &self.schema).await?;
        let status = SchemaStatus {
            schema: self.schema.clone(),
            history: self.history_table(),
            migrations: states(MIGRATIONS, &history),
            drift: Vec::new(),
        };
        if let Some(p) = status
            .problems()
            .into_iter()
            .find(|p| p.kind != ProblemKind::Pending)
        {
            return Err(StoreError::Query(format!("{}; fix: {}", p.what, p.fix)));
        }
        tx.batch_execute(&format!(
            "SET LOCAL search_path TO {}",
            quote_ident(&self.schema)
        ))
        .await
        .map_err(classify)?;
        let mut applied = Vec::new();
        for m in MIGRATIONS {
            if history.iter().any(|h| h.version == m.version) {
                continue;
            }
            let started = std::time::Instant::now();
            tx.batch_execute(m.sql).await.map_err(|e| {
                let inner = classify(e);
                StoreError::Query(format!(
                    "migration {} ({}) failed and nothing was applied: {inner}",
                    m.version, m.name
                ))
            })?;
            let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            tx.execute(
                &format!(
                    r#"INSERT INTO {}.{} ("version", "name", "checksum", "executionMs") VALUES ($1, $2, $3, $4)"#,
                    quote_ident(&self.schema),
                    quote_ident(HISTORY_TABLE)
                ),
                &[&m.version, &m.name, &m.checksum(), &ms],
            )
            .await
            .map_err(classify)?;
            applied.push(MigrationReport {
                version: m.version,
                name: m.name.to_string(),
                state: MigrationState::Applied { at: Utc::now() },
            });
        }
        tx.commit().await.map_err(classify)?;
        Ok(applied)
    }
}

#[async_trait]
impl Migrator for PgStore {
    /// The migration history compared with this build, and the live schema compared with
    /// what the applied migrations produce. Drift is not computed while an applied
    /// migration is modified (the reference would be unknown).
    async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let migrations = self.migration_status().await?;
        let modified = migrations.iter().any(|m| {
            matches!(
                m.state,
                MigrationState::Modified { .. } | MigrationState::Dirty
            )
        });
        let applied: Vec<i64> = migrations
            .iter()
            .filter(|m| matches!(m.state, MigrationState::Applied { .. }))
            .map(|m| m.version)
            .collect();
        let drift = if modified {
            Vec::new()
        } else {
            self.drift(&applied).await?
        };
        Ok(SchemaStatus {
            schema: self.schema.clone(),
            history: self.history_table(),
            migrations,
            drift,
        })
    }

    /// Applies every pending migration in one transaction under an advisory lock.
    /// Returns the versions applied (empty when already up to date). Refuses to run over a
    /// modified or unknown migration.
    async fn deploy(&self) -> Result<Vec<MigrationReport>, StoreError> {
        self.locked(&[]).await
    }

    /// The objects `migrate reset` drops: the migrated tables and functions that exist, and
    /// the history table.
    async fn reset_plan(&self) -> Result<Vec<String>, StoreError> {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        let expected = self.expected_catalog(&versions).await?;
        let live = self.live_catalog().await?;
        let s = quote_ident(&self.schema);
        let mut plan = Vec::new();
        for t in expected
            .tables
            .keys()
            .chain(std::iter::once(&HISTORY_TABLE.to_string()))
        {
            if live.tables.contains_key(t) {
                plan.push(format!("DROP TABLE {s}.{} CASCADE", quote_ident(t)));
            }
        }
        for f in expected.functions.keys() {
            if live.functions.contains_key(f) {
                plan.push(format!("DROP FUNCTION {s}.{}() CASCADE", quote_ident(f)));
            }
        }
        Ok(plan)
    }

    /// Drops what [`Migrator::reset_plan`] lists and applies every migration again, in one
    /// transaction. Returns the statements run and the migrations applied.
    async fn reset(&self) -> Result<(Vec<String>, Vec<MigrationReport>), StoreError> {
        let plan = self.reset_plan().await?;
        let applied = self.locked(&plan).await?;
        Ok((plan, applied))
    }

    async fn adopt(
        &mut self,
        overrides: &outbox_core::Overrides,
    ) -> Result<outbox_core::Adoption, StoreError> {
        self.adopt_app_tables(overrides).await.map(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_strictly_increasing_and_checksums_ignore_crlf() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        let lf = Migration {
            version: 1,
            name: "x",
            sql: "SELECT 1;\nSELECT 2;\n",
        };
        let crlf = Migration {
            version: 1,
            name: "x",
            sql: "SELECT 1;\r\nSELECT 2;\r\n",
        };
        assert_eq!(lf.checksum(), crlf.checksum());
        assert_eq!(lf.checksum().len(), 64);
    }

    #[test]
    fn lock_keys_differ_per_schema() {
        assert_ne!(advisory_key("public"), advisory_key("outbox"));
        assert_eq!(advisory_key("public"), advisory_key("public"));
    }
}
