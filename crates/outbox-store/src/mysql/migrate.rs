//! The MySQL / MariaDB store's migrations: the same history table and checksums as the
//! other stores. DDL commits on its own in MySQL, so a deploy is not all or nothing: deploys
//! take a named lock (one process at a time), each migration is recorded as started before it
//! runs and as done after, and one that stopped half way stays `dirty` for an operator to
//! look at. Drift compares `information_schema` with what the applied migrations build in a
//! scratch database.

use super::{catalog, classify, MysqlStore};
use crate::migration::{states, HistoryRow, Migration, HISTORY_TABLE};
use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use outbox_core::{
    Adoption, Drift, MigrationReport, MigrationState, Migrator, Overrides, ProblemKind,
    SchemaStatus, StoreError,
};
use std::collections::BTreeMap;

/// Every migration of the MySQL store, in order. Files are never edited once released.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "outbox_tables",
    sql: include_str!("../../migrations/mysql/0001_outbox_tables.sql"),
}];

/// The tables as SQL: every migration, in order (`outbox schema print` on MySQL).
pub fn sql() -> String {
    crate::migration::script(
        "-- outbox schema for MySQL 8.0+ / MariaDB 10.6+: the tables the worker's migrations create.",
        MIGRATIONS,
    )
}

fn history_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS `{HISTORY_TABLE}` (
            `version`     BIGINT       NOT NULL PRIMARY KEY,
            `name`        VARCHAR(255) NOT NULL,
            `checksum`    CHAR(64)     NOT NULL,
            `appliedAt`   DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
            `executionMs` BIGINT       NOT NULL DEFAULT 0,
            `success`     BOOLEAN      NOT NULL DEFAULT FALSE
        ) ENGINE = InnoDB"
    )
}

async fn has_table(c: &mut Conn, db: &str, table: &str) -> Result<bool, StoreError> {
    let n: Option<i64> = c
        .exec_first(catalog::HAS_TABLE, (db, table))
        .await
        .map_err(classify)?;
    Ok(n.unwrap_or(0) > 0)
}

async fn read_history(c: &mut Conn, db: &str) -> Result<Vec<HistoryRow>, StoreError> {
    if !has_table(c, db, HISTORY_TABLE).await? {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, String, String, i64, bool)> = c
        .query(format!(
            "SELECT `version`, `name`, `checksum`, CAST(UNIX_TIMESTAMP(`appliedAt`) * 1000 AS SIGNED), `success`
               FROM `{HISTORY_TABLE}` ORDER BY `version`"
        ))
        .await
        .map_err(classify)?;
    Ok(rows
        .into_iter()
        .map(|(version, name, checksum, at, success)| HistoryRow {
            version,
            name,
            checksum,
            applied_at: Utc.timestamp_millis_opt(at).single().unwrap_or_default(),
            success,
        })
        .collect())
}

/// The columns, indexes and checks of the outbox tables in database `db`: (kind, name) →
/// (table, description). The history table is left out.
async fn objects(
    c: &mut Conn,
    db: &str,
) -> Result<BTreeMap<(String, String), (String, String)>, StoreError> {
    let mut out = BTreeMap::new();
    let columns: Vec<Row> = c
        .exec(catalog::DRIFT_COLUMNS, (db, HISTORY_TABLE))
        .await
        .map_err(classify)?;
    for r in &columns {
        let s = |i| super::row::shown(r, i);
        let nullable = if s(3) == "YES" { "NULL" } else { "NOT NULL" };
        out.insert(
            ("column".to_string(), format!("{}.{}", s(0), s(1))),
            (
                s(0),
                format!("{} {nullable} DEFAULT {} {}", s(2), s(4), s(5))
                    .trim()
                    .to_string(),
            ),
        );
    }
    let indexes: Vec<Row> = c
        .exec(catalog::DRIFT_INDEXES, (db, HISTORY_TABLE))
        .await
        .map_err(classify)?;
    for r in &indexes {
        let s = |i| super::row::shown(r, i);
        let unique = if s(2) == "0" { "UNIQUE " } else { "" };
        out.insert(
            ("index".to_string(), format!("{}.{}", s(0), s(1))),
            (s(0), format!("{unique}({})", s(3))),
        );
    }
    let checks: Vec<Row> = c
        .exec(catalog::DRIFT_CHECKS, (db, HISTORY_TABLE))
        .await
        .map_err(classify)?;
    let triggers: Vec<Row> = c
        .exec(catalog::DRIFT_TRIGGERS, (db,))
        .await
        .map_err(classify)?;
    for r in &triggers {
        let s = |i| super::row::shown(r, i);
        let body = s(4).split_whitespace().collect::<Vec<_>>().join(" ");
        out.insert(
            ("trigger".to_string(), format!("{}.{}", s(0), s(1))),
            (s(0), format!("{} {} {body}", s(2), s(3))),
        );
    }
    for r in &checks {
        let s = |i| super::row::shown(r, i);
        // MariaDB lists a column's JSON check under the column's name: keep named ones.
        out.insert(
            ("check".to_string(), format!("{}.{}", s(0), s(1))),
            (s(0), String::new()),
        );
    }
    Ok(out)
}

impl MysqlStore {
    /// What `versions` of the migrations build, in a scratch database made and dropped here.
    async fn expected(
        &self,
        c: &mut Conn,
        versions: &[i64],
    ) -> Result<BTreeMap<(String, String), (String, String)>, StoreError> {
        let scratch = format!("_outbox_expected_{:x}", rand_suffix());
        c.query_drop(format!("CREATE DATABASE `{scratch}`"))
            .await
            .map_err(classify)?;
        let built = async {
            c.query_drop(format!("USE `{scratch}`"))
                .await
                .map_err(classify)?;
            for m in MIGRATIONS.iter().filter(|m| versions.contains(&m.version)) {
                c.query_drop(m.sql).await.map_err(classify)?;
            }
            objects(c, &scratch).await
        }
        .await;
        let _ = c.query_drop(format!("DROP DATABASE `{scratch}`")).await;
        let _ = c.query_drop(format!("USE `{}`", self.database())).await;
        built
    }

    async fn drift(&self, c: &mut Conn, applied: &[i64]) -> Result<Vec<Drift>, StoreError> {
        let want = self.expected(c, applied).await?;
        let have = objects(c, self.database()).await?;
        let tables: Vec<&String> = want.values().map(|(t, _)| t).collect();
        let mut out = Vec::new();
        for ((kind, name), (_, description)) in &want {
            let object = format!("{kind} `{name}`");
            match have.get(&(kind.clone(), name.clone())) {
                None => out.push(Drift {
                    object,
                    problem: "is missing".into(),
                    fix: format!("recreate it as the migrations do: {description} (see `outbox schema print`)"),
                }),
                Some((_, live)) if live != description => out.push(Drift {
                    object,
                    problem: format!("differs from the migrations: it is `{live}`, not `{description}`"),
                    fix: "make it as `outbox schema print` shows (in development: outbox migrate reset --force)".into(),
                }),
                Some(_) => {}
            }
        }
        for ((kind, name), (table, _)) in &have {
            if tables.contains(&table) && !want.contains_key(&(kind.clone(), name.clone())) {
                out.push(Drift {
                    object: format!("{kind} `{name}`"),
                    problem: format!("on `{table}` is not created by the migrations"),
                    fix: "drop it, or leave the tables to the migrations".into(),
                });
            }
        }
        Ok(out)
    }

    /// Under the deploy lock: runs `first`, then applies every pending migration.
    async fn apply(&self, first: &[String]) -> Result<Vec<MigrationReport>, StoreError> {
        let mut c = self.conn().await?;
        let lock = format!("outbox_migrate:{}", self.database());
        let got: Option<Option<i64>> = c
            .exec_first("SELECT GET_LOCK(?, 60)", (&lock,))
            .await
            .map_err(classify)?;
        if got.flatten() != Some(1) {
            return Err(StoreError::Unavailable(
                "another process is migrating this database (waited 60 s for its lock)".into(),
            ));
        }
        let result = self.apply_locked(&mut c, first).await;
        let _ = c.exec_drop("SELECT RELEASE_LOCK(?)", (&lock,)).await;
        result
    }

    async fn apply_locked(
        &self,
        c: &mut Conn,
        first: &[String],
    ) -> Result<Vec<MigrationReport>, StoreError> {
        for stmt in first {
            c.query_drop(stmt).await.map_err(classify)?;
        }
        c.query_drop(history_ddl()).await.map_err(classify)?;
        let history = read_history(c, self.database()).await?;
        let status = SchemaStatus {
            schema: self.database().to_string(),
            history: format!("`{HISTORY_TABLE}`"),
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
        let mut applied = Vec::new();
        for m in MIGRATIONS {
            if history.iter().any(|h| h.version == m.version) {
                continue;
            }
            // Recorded as started first: DDL commits by itself, so a migration that stops
            // half way is left `dirty`, not silently pending.
            c.exec_drop(
                format!("INSERT INTO `{HISTORY_TABLE}` (`version`, `name`, `checksum`, `success`) VALUES (?, ?, ?, FALSE)"),
                (m.version, m.name, m.checksum()),
            )
            .await
            .map_err(classify)?;
            let started = std::time::Instant::now();
            c.query_drop(m.sql).await.map_err(|e| match classify(e) {
                StoreError::Query(e) => StoreError::Query(format!(
                    "migration {:04}_{} failed: {e}; it is recorded as dirty: fix the database, then delete its row from `{HISTORY_TABLE}`",
                    m.version, m.name
                )),
                other => other,
            })?;
            c.exec_drop(
                format!("UPDATE `{HISTORY_TABLE}` SET `success` = TRUE, `executionMs` = ?, `appliedAt` = NOW(3) WHERE `version` = ?"),
                (started.elapsed().as_millis() as i64, m.version),
            )
            .await
            .map_err(classify)?;
            applied.push(MigrationReport {
                version: m.version,
                name: m.name.to_string(),
                state: MigrationState::Applied { at: Utc::now() },
            });
        }
        Ok(applied)
    }
}

fn rand_suffix() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ u64::from(std::process::id()) << 32
}

/// The tables the migrations create, for `migrate reset`.
const TABLES: &[&str] = &[
    "OutboxAudit",
    "OutboxBlockedAggregate",
    "OutboxRetryPolicy",
    "OutboxEvent",
    "OutboxOrderLock",
];

#[async_trait]
impl Migrator for MysqlStore {
    async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let mut c = self.conn().await?;
        let version: Option<String> = c.query_first("SELECT VERSION()").await.map_err(classify)?;
        super::check_version(&version.unwrap_or_default())?;
        let migrations = states(MIGRATIONS, &read_history(&mut c, self.database()).await?);
        let unsure = migrations.iter().any(|m| {
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
        let drift = if unsure {
            Vec::new()
        } else {
            self.drift(&mut c, &applied).await?
        };
        Ok(SchemaStatus {
            schema: self.database().to_string(),
            history: format!("`{HISTORY_TABLE}`"),
            migrations,
            drift,
        })
    }

    async fn deploy(&self) -> Result<Vec<MigrationReport>, StoreError> {
        self.server_info().await?;
        self.apply(&[]).await
    }

    async fn reset_plan(&self) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn().await?;
        let mut plan = Vec::new();
        for t in TABLES.iter().chain([&HISTORY_TABLE]) {
            if has_table(&mut c, self.database(), t).await? {
                plan.push(format!("DROP TABLE `{t}`"));
            }
        }
        Ok(plan)
    }

    async fn reset(&self) -> Result<(Vec<String>, Vec<MigrationReport>), StoreError> {
        let plan = self.reset_plan().await?;
        let applied = self.apply(&plan).await?;
        Ok((plan, applied))
    }

    async fn adopt(&mut self, overrides: &Overrides) -> Result<Adoption, StoreError> {
        self.adopt_tables(overrides).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn servers_without_skip_locked_are_refused() {
        use super::super::check_version;
        assert!(check_version("10.11.19-MariaDB-0+deb12u1").is_ok());
        assert!(check_version("10.6.0-MariaDB").is_ok());
        assert!(check_version("8.0.36").is_ok());
        assert!(check_version("8.4.2").is_ok());
        let e = check_version("10.5.22-MariaDB").unwrap_err().to_string();
        assert!(e.contains("MariaDB 10.5.22 is too old"), "{e}");
        assert!(check_version("5.7.44-log").is_err());
        assert!(check_version("8.0.3").is_err());
    }
}
