//! The SQLite store's migrations: the same history table and checksums as on PostgreSQL.
//! Deploy runs in one `BEGIN IMMEDIATE` transaction (SQLite's DDL is transactional and the
//! write lock lets one process at a time in, so processes starting at once apply each
//! migration once). Drift compares `sqlite_schema` with what the applied migrations build
//! in a scratch in-memory database.

use super::layout::NOW_MS;
use super::{classify, open, SqliteStore};
use crate::migration::{states, HistoryRow, Migration, HISTORY_TABLE};
use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use outbox_core::{Drift, MigrationReport, Migrator, ProblemKind, SchemaStatus, StoreError};
use rusqlite::{params, Connection, TransactionBehavior};
use std::collections::BTreeMap;
use std::path::Path;

/// Every migration of the SQLite store, in order. Files are never edited once released.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "outbox_tables",
    sql: include_str!("../../migrations/sqlite/0001_outbox_tables.sql"),
}];

/// The tables as SQL: every migration, in order (`outbox schema print` on SQLite).
pub fn sql() -> String {
    crate::migration::script(
        "-- outbox schema for SQLite: the tables, indexes and triggers the worker's migrations create.",
        MIGRATIONS,
    )
}

fn history_ddl() -> String {
    format!(
        r#"CREATE TABLE IF NOT EXISTS "{HISTORY_TABLE}" (
    "version"     INTEGER NOT NULL PRIMARY KEY,
    "name"        TEXT    NOT NULL,
    "checksum"    TEXT    NOT NULL,
    "appliedAt"   INTEGER NOT NULL DEFAULT ({NOW_MS}),
    "executionMs" INTEGER NOT NULL,
    "success"     BOOLEAN NOT NULL DEFAULT true
)"#
    )
}

fn has_history(c: &Connection) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        params![HISTORY_TABLE],
        |r| r.get(0),
    )
}

fn read_history(c: &Connection) -> rusqlite::Result<Vec<HistoryRow>> {
    if !has_history(c)? {
        return Ok(Vec::new());
    }
    let mut stmt = c.prepare(&format!(
        r#"SELECT "version", "name", "checksum", "appliedAt", "success" FROM "{HISTORY_TABLE}" ORDER BY "version""#
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok(HistoryRow {
            version: r.get(0)?,
            name: r.get(1)?,
            checksum: r.get(2)?,
            applied_at: Utc
                .timestamp_millis_opt(r.get(3)?)
                .single()
                .unwrap_or_default(),
            success: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// The tables, indexes and triggers of a database: (type, name) → (table, SQL with its
/// whitespace collapsed). SQLite's own objects and the history table are left out.
fn objects(c: &Connection) -> rusqlite::Result<BTreeMap<(String, String), (String, String)>> {
    let mut stmt = c.prepare(
        "SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_schema
          WHERE name NOT LIKE 'sqlite_%' AND name <> ?1",
    )?;
    let rows = stmt.query_map(params![HISTORY_TABLE], |r| {
        let sql: String = r.get(3)?;
        Ok((
            (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            (
                r.get::<_, String>(2)?,
                sql.split_whitespace().collect::<Vec<_>>().join(" "),
            ),
        ))
    })?;
    rows.collect()
}

/// What `versions` of the migrations build, in a scratch in-memory database.
fn expected(versions: &[i64]) -> rusqlite::Result<BTreeMap<(String, String), (String, String)>> {
    let scratch = Connection::open_in_memory()?;
    for m in MIGRATIONS.iter().filter(|m| versions.contains(&m.version)) {
        scratch.execute_batch(m.sql)?;
    }
    objects(&scratch)
}

/// The live objects against what the applied migrations build.
fn drift(c: &Connection, applied: &[i64]) -> rusqlite::Result<Vec<Drift>> {
    let want = expected(applied)?;
    let have = objects(c)?;
    let tables: Vec<&String> = want
        .keys()
        .filter(|(t, _)| t == "table")
        .map(|(_, n)| n)
        .collect();
    let mut out = Vec::new();
    for ((kind, name), (_, sql)) in &want {
        let object = format!("{kind} \"{name}\"");
        match have.get(&(kind.clone(), name.clone())) {
            None => out.push(Drift {
                object,
                problem: "is missing".into(),
                fix: format!("{sql};"),
            }),
            Some((_, live)) if live != sql => out.push(Drift {
                object,
                problem: format!("differs from the migrations: it is `{live}`"),
                fix: if kind == "table" {
                    format!("rebuild the table as `{sql}` (in development: outbox migrate reset --force)")
                } else {
                    format!("DROP {} \"{name}\"; {sql};", kind.to_uppercase())
                },
            }),
            Some(_) => {}
        }
    }
    for ((kind, name), (table, _)) in &have {
        if kind != "table"
            && tables.contains(&table)
            && !want.contains_key(&(kind.clone(), name.clone()))
        {
            out.push(Drift {
                object: format!("{kind} \"{name}\""),
                problem: format!("on \"{table}\" is not created by the migrations"),
                fix: format!("DROP {} \"{name}\";", kind.to_uppercase()),
            });
        }
    }
    Ok(out)
}

/// In one `BEGIN IMMEDIATE` transaction: runs `first`, then applies every pending
/// migration. Returns the ones applied.
fn apply(
    c: &mut Connection,
    first: &[String],
    path: &Path,
) -> Result<Vec<MigrationReport>, StoreError> {
    let sql = |e: rusqlite::Error| classify(e, path);
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    for stmt in first {
        tx.execute_batch(stmt).map_err(sql)?;
    }
    tx.execute_batch(&history_ddl()).map_err(sql)?;
    let history = read_history(&tx).map_err(sql)?;
    let status = SchemaStatus {
        schema: "main".into(),
        history: format!("\"{HISTORY_TABLE}\""),
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
        let started = std::time::Instant::now();
        tx.execute_batch(m.sql).map_err(|e| match sql(e) {
            StoreError::Query(e) => {
                StoreError::Query(format!("migration {:04}_{} failed: {e}", m.version, m.name))
            }
            other => other,
        })?;
        tx.execute(
            &format!(
                r#"INSERT INTO "{HISTORY_TABLE}" ("version", "name", "checksum", "executionMs") VALUES (?1, ?2, ?3, ?4)"#
            ),
            params![
                m.version,
                m.name,
                m.checksum(),
                started.elapsed().as_millis() as i64
            ],
        )
        .map_err(sql)?;
        applied.push(MigrationReport {
            version: m.version,
            name: m.name.to_string(),
            state: outbox_core::MigrationState::Applied { at: Utc::now() },
        });
    }
    tx.commit().map_err(sql)?;
    Ok(applied)
}

impl SqliteStore {
    /// Runs `f` on a connection of its own that may create the file (migrations).
    async fn own<T, F>(&self, create: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Path) -> Result<T, StoreError> + Send + 'static,
    {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || f(&mut open(&path, create)?, &path))
            .await
            .map_err(|e| StoreError::Unavailable(format!("the SQLite call did not finish: {e}")))?
    }

    fn reset_statements(c: &Connection) -> rusqlite::Result<Vec<String>> {
        let all: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        let live = objects(c)?;
        let mut plan: Vec<String> = expected(&all)?
            .keys()
            .filter(|(kind, _)| kind == "table")
            .filter(|k| live.contains_key(*k))
            .map(|(_, name)| format!("DROP TABLE \"{name}\""))
            .collect();
        if has_history(c)? {
            plan.push(format!("DROP TABLE \"{HISTORY_TABLE}\""));
        }
        Ok(plan)
    }
}

#[async_trait]
impl Migrator for SqliteStore {
    async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        self.call(false, |c| {
            let migrations = states(MIGRATIONS, &read_history(c)?);
            let unsure = migrations.iter().any(|m| {
                matches!(
                    m.state,
                    outbox_core::MigrationState::Modified { .. }
                        | outbox_core::MigrationState::Dirty
                )
            });
            let applied: Vec<i64> = migrations
                .iter()
                .filter(|m| matches!(m.state, outbox_core::MigrationState::Applied { .. }))
                .map(|m| m.version)
                .collect();
            let drift = if unsure {
                Vec::new()
            } else {
                drift(c, &applied)?
            };
            Ok(SchemaStatus {
                schema: "main".into(),
                history: format!("\"{HISTORY_TABLE}\""),
                migrations,
                drift,
            })
        })
        .await
    }

    async fn deploy(&self) -> Result<Vec<MigrationReport>, StoreError> {
        self.own(true, |c, path| apply(c, &[], path)).await
    }

    async fn reset_plan(&self) -> Result<Vec<String>, StoreError> {
        self.own(false, |c, path| {
            SqliteStore::reset_statements(c).map_err(|e| classify(e, path))
        })
        .await
    }

    async fn reset(&self) -> Result<(Vec<String>, Vec<MigrationReport>), StoreError> {
        self.own(true, |c, path| {
            let plan = SqliteStore::reset_statements(c).map_err(|e| classify(e, path))?;
            let applied = apply(c, &plan, path)?;
            Ok((plan, applied))
        })
        .await
    }

    async fn adopt(
        &mut self,
        overrides: &outbox_core::Overrides,
    ) -> Result<outbox_core::Adoption, StoreError> {
        self.adopt_tables(overrides).await
    }
}
