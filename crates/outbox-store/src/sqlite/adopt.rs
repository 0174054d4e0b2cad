//! App-owned tables on SQLite: the outbox tables and columns found in `sqlite_schema` and
//! `pragma_table_info` under the same name resolution as on PostgreSQL, checked, and turned
//! into the [`Layout`] every statement is rendered for. Whatever blocks the worker or makes
//! it worse is reported with the SQL and the Prisma model line that fix it.

use super::layout::{Layout, Stamps};
use super::SqliteStore;
use crate::adopt::{
    find_column, find_table, resolve_columns, table_or_finding, FixStyle, EVENT_TABLE, POLICY_TABLE,
};
use outbox_core::{Adoption, Finding, Overrides, StoreError};
use rusqlite::Connection;
use std::collections::BTreeMap;

/// One column as `pragma_table_info` gives it.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    name: String,
    /// The declared type, as written (SQLite keeps any text).
    decl: String,
    not_null: bool,
}

/// One index: its columns and whether it is partial on a status value.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    columns: Vec<String>,
    unique: bool,
    /// The index's `WHERE` clause (partial indexes), as written.
    partial: String,
}

/// One table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    columns: Vec<Column>,
    indexes: Vec<Index>,
    /// The table has no rowid, which claims select by.
    without_rowid: bool,
    /// The storage class of `occurredAt` (by its physical name) in the newest row.
    newest_stamp: Option<String>,
}

impl Table {
    fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
    fn names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }
}

/// The tables of a SQLite file.
pub(crate) type Catalog = BTreeMap<String, Table>;

/// SQLite's type affinity of a declared type (its rules in order, §3.1 of its docs).
fn affinity(decl: &str) -> &'static str {
    let t = decl.to_ascii_uppercase();
    if t.contains("INT") {
        "INTEGER"
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        "TEXT"
    } else if t.contains("BLOB") || t.is_empty() {
        "BLOB"
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        "REAL"
    } else {
        "NUMERIC"
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The column type and Prisma field type a missing column is added with.
fn canonical_type(logical_table: &str, logical: &str) -> (&'static str, &'static str) {
    match (logical_table, logical) {
        (_, "payload") => ("TEXT NOT NULL DEFAULT '{}'", "Json @default(\"{}\")"),
        (_, "headers") => ("TEXT", "Json?"),
        (_, "occurredAt" | "nextRetryAt" | "createdAt" | "updatedAt") => (
            "DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP",
            "DateTime @default(now())",
        ),
        (_, "lockedUntil" | "processedAt") => ("DATETIME", "DateTime?"),
        (EVENT_TABLE, "retryCount") => ("INTEGER NOT NULL DEFAULT 0", "Int @default(0)"),
        (EVENT_TABLE, "maxRetries" | "retryInterval" | "maxInterval") => ("INTEGER", "Int?"),
        (_, "maxRetries" | "retryInterval" | "maxInterval") => {
            ("INTEGER NOT NULL DEFAULT 0", "Int")
        }
        (_, "backoffMultiplier") => ("REAL NOT NULL DEFAULT 2", "Float @default(2)"),
        (_, "jitter") => ("REAL NOT NULL DEFAULT 0", "Float @default(0)"),
        (_, "ordered" | "paused" | "blockOnFailure") => {
            ("BOOLEAN NOT NULL DEFAULT false", "Boolean @default(false)")
        }
        (_, "status") => (
            "TEXT NOT NULL DEFAULT 'PENDING'",
            "String @default(\"PENDING\")",
        ),
        (_, "lockedBy" | "lastError" | "description") => ("TEXT", "String?"),
        _ => ("TEXT NOT NULL DEFAULT ''", "String"),
    }
}

/// The timestamp columns the worker writes.
const WRITTEN_STAMPS: &[&str] = &["nextRetryAt", "lockedUntil", "processedAt"];

/// Resolves the app-owned tables of `cat`. `format` is `database.timestamp_format` (`None`:
/// taken from the newest event, else from the columns' declared types).
pub(crate) fn resolve(
    cat: &Catalog,
    overrides: &Overrides,
    format: Option<Stamps>,
) -> (Option<Layout>, Adoption) {
    let mut out = Adoption::default();
    let mut layout = Layout::canonical();
    let mut blocked = false;
    let names = || cat.keys().map(String::as_str);
    for logical_table in [EVENT_TABLE, POLICY_TABLE] {
        let Some(physical) = table_or_finding(
            names(),
            logical_table,
            "the SQLite database",
            quote,
            overrides,
            &mut out,
        ) else {
            blocked = true;
            continue;
        };
        let table = &cat[&physical];
        let t = quote(&physical);
        let names: Vec<&str> = table.names().collect();
        let (columns, missing) = resolve_columns(
            &names,
            logical_table,
            &physical,
            &["seq"],
            overrides,
            &mut out,
            &FixStyle {
                quote,
                types: canonical_type,
            },
        );
        blocked |= missing;
        let col = |logical: &str| columns.get(logical).and_then(|n| table.column(n));
        if logical_table == EVENT_TABLE {
            if table.without_rowid {
                blocked = true;
                out.errors.push(Finding {
                    what: format!(
                        "{t} is a WITHOUT ROWID table: claims and ordered delivery go by the rowid"
                    ),
                    sql: format!(
                        "recreate {t} without the WITHOUT ROWID clause (SQLite cannot alter it)"
                    ),
                    prisma: "(Prisma's SQLite tables have a rowid)".into(),
                });
            }
            for logical in ["lockedBy", "lockedUntil", "processedAt"] {
                if let Some(c) = col(logical).filter(|c| c.not_null) {
                    blocked = true;
                    out.errors.push(Finding {
                        what: format!(
                            "column {t}.{} is NOT NULL; the worker clears it",
                            quote(&c.name)
                        ),
                        sql: format!(
                            "recreate {t} with {} nullable (SQLite cannot drop NOT NULL in place)",
                            quote(&c.name)
                        ),
                        prisma: format!("{logical} {}", canonical_type(EVENT_TABLE, logical).1),
                    });
                }
            }
            let text_stamps: Vec<&Column> = WRITTEN_STAMPS
                .iter()
                .filter_map(|l| col(l))
                .filter(|c| affinity(&c.decl) == "TEXT")
                .collect();
            layout.stamps = format.unwrap_or(match table.newest_stamp.as_deref() {
                Some("text") => Stamps::Iso8601,
                Some(_) => Stamps::UnixMillis,
                None if !text_stamps.is_empty() => Stamps::Iso8601,
                None => Stamps::UnixMillis,
            });
            if layout.stamps == Stamps::UnixMillis {
                for c in text_stamps {
                    blocked = true;
                    out.errors.push(Finding {
                        what: format!(
                            "column {t}.{} is declared {} (TEXT affinity): the integer milliseconds the worker writes would be stored as text",
                            quote(&c.name),
                            c.decl
                        ),
                        sql: "set database.timestamp_format = \"iso8601\", or declare the column DATETIME".into(),
                        prisma: "DateTime".into(),
                    });
                }
            }
            if format.is_none() && table.newest_stamp.is_none() {
                out.warnings.push(Finding {
                    what: format!(
                        "database.timestamp_format is not set and {t} has no event to tell it from: the worker writes its timestamps as {}; say what the app's client writes",
                        layout.stamps.as_str()
                    ),
                    sql: "database.timestamp_format = \"iso8601\"  (or \"unixepoch-ms\")".into(),
                    prisma: "(Prisma's SQLite driver adapters write iso8601 unless timestampFormat says otherwise)".into(),
                });
            }
            if let (Some(kind), Some(format)) = (table.newest_stamp.as_deref(), format) {
                let stored = if kind == "text" {
                    Stamps::Iso8601
                } else {
                    Stamps::UnixMillis
                };
                if stored != format {
                    out.warnings.push(Finding {
                        what: format!(
                            "the newest event's occurredAt is stored as {kind}, but database.timestamp_format = \"{}\": the worker writes its timestamps in another form than the app",
                            format.as_str()
                        ),
                        sql: format!("database.timestamp_format = \"{}\"", stored.as_str()),
                        prisma: "(Prisma's SQLite driver adapters write iso8601 unless timestampFormat says otherwise)".into(),
                    });
                }
            }
            let has_index = |lead: &str, value: &str| {
                let status = columns
                    .get("status")
                    .map(String::as_str)
                    .unwrap_or("status");
                table.indexes.iter().any(|i| {
                    let first = i.columns.first().map(String::as_str);
                    (first == Some(lead) && i.partial.contains(&format!("'{value}'")))
                        || (first == Some(status)
                            && i.columns.get(1).map(String::as_str) == Some(lead))
                })
            };
            let name = |l: &str| columns.get(l).cloned().unwrap_or_else(|| l.to_string());
            let (next, until, status) = (name("nextRetryAt"), name("lockedUntil"), name("status"));
            if !has_index(&next, "PENDING") {
                out.warnings.push(Finding {
                    what: format!("no index serves the claim on {t} ({status}, {next}); claims scan the table"),
                    sql: format!(
                        "CREATE INDEX {} ON {t} ({}, {});",
                        quote(&format!("{physical}_status_nextRetryAt_idx")),
                        quote(&status),
                        quote(&next)
                    ),
                    prisma: "@@index([status, nextRetryAt])".into(),
                });
            }
            if !has_index(&until, "PROCESSING") {
                out.warnings.push(Finding {
                    what: format!("no index serves the lease reaper on {t} ({status}, {until})"),
                    sql: format!(
                        "CREATE INDEX {} ON {t} ({}, {});",
                        quote(&format!("{physical}_status_lockedUntil_idx")),
                        quote(&status),
                        quote(&until)
                    ),
                    prisma: "@@index([status, lockedUntil])".into(),
                });
            }
            layout.event = physical;
            layout.event_columns = columns;
        } else {
            layout.policy = physical;
            layout.policy_columns = columns;
        }
    }
    layout.mixed_stamps = true;
    let tables: Vec<&str> = names().collect();
    layout.names.adopt_optional_tables(
        &tables,
        overrides,
        |name, columns, key| {
            let t = &cat[name];
            columns.iter().all(|c| t.column(c).is_some())
                && key.is_none_or(|k| t.indexes.iter().any(|i| i.unique && i.columns == [k]))
        },
        BLOCKED_TABLE_SQL,
        &mut out,
    );
    (
        if blocked { None } else { Some(layout) },
        Adoption {
            usable: !blocked,
            ..out
        },
    )
}

/// The blocked-aggregates table, as the worker's own migration creates it.
const BLOCKED_TABLE_SQL: &str = r#"CREATE TABLE "OutboxBlockedAggregate" ("aggregateId" TEXT NOT NULL PRIMARY KEY, "eventId" TEXT NOT NULL, "routingKey" TEXT NOT NULL, "reason" TEXT, "blockedAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP);"#;

/// Reads the tables of the file `c` is open on.
pub(crate) fn read(c: &Connection, overrides: &Overrides) -> rusqlite::Result<Catalog> {
    let mut cat = Catalog::new();
    let tables: Vec<(String, String)> = c
        .prepare("SELECT name, COALESCE(sql, '') FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, sql) in tables {
        let columns = c
            .prepare("SELECT name, type, \"notnull\" FROM pragma_table_info(?1)")?
            .query_map([&name], |r| {
                Ok(Column {
                    name: r.get(0)?,
                    decl: r.get(1)?,
                    not_null: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut indexes = Vec::new();
        let listed: Vec<(String, bool, String)> = c
            .prepare("SELECT l.name, l.\"unique\", COALESCE(s.sql, '') FROM pragma_index_list(?1) AS l LEFT JOIN sqlite_schema AS s ON s.type = 'index' AND s.name = l.name")?
            .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (index, unique, def) in listed {
            let cols = c
                .prepare("SELECT COALESCE(name, '') FROM pragma_index_info(?1) ORDER BY seqno")?
                .query_map([&index], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            let partial = def
                .to_ascii_uppercase()
                .find(" WHERE ")
                .map(|at| def[at..].to_string())
                .unwrap_or_default();
            indexes.push(Index {
                columns: cols,
                unique,
                partial,
            });
        }
        // A rowid alias (`INTEGER PRIMARY KEY`) or a declared one-column key has no entry in
        // pragma_index_list; it is unique all the same.
        let pk: Vec<String> = c
            .prepare("SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")?
            .query_map([&name], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if !pk.is_empty() {
            indexes.push(Index {
                columns: pk,
                unique: true,
                partial: String::new(),
            });
        }
        let without_rowid = sql
            .to_ascii_uppercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w == ["WITHOUT", "ROWID"]);
        cat.insert(
            name,
            Table {
                columns,
                indexes,
                without_rowid,
                newest_stamp: None,
            },
        );
    }
    // How the app stores timestamps: the storage class of the newest event's occurredAt.
    if let Some(event) = find_table(cat.keys().map(String::as_str), EVENT_TABLE, overrides) {
        let table = &cat[&event];
        let occurred = find_column(
            table.names(),
            EVENT_TABLE,
            &event,
            "occurredAt",
            overrides,
            &mut Vec::new(),
        );
        if let (Some((col, _)), false) = (occurred, table.without_rowid) {
            let kind: Option<String> = c
                .query_row(
                    &format!(
                        "SELECT typeof({}) FROM {} ORDER BY rowid DESC LIMIT 1",
                        quote(&col),
                        quote(&event)
                    ),
                    [],
                    |r| r.get(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            if let Some(t) = cat.get_mut(&event) {
                t.newest_stamp = kind.filter(|k| k != "null");
            }
        }
    }
    Ok(cat)
}

impl SqliteStore {
    /// Introspects the app-owned tables and, when nothing blocks, renders every statement
    /// for them. Runs no DDL.
    pub(crate) async fn adopt_tables(
        &mut self,
        overrides: &Overrides,
    ) -> Result<Adoption, StoreError> {
        let format = match overrides.timestamp_format.as_deref() {
            None => None,
            Some("unixepoch-ms") => Some(Stamps::UnixMillis),
            Some("iso8601") => Some(Stamps::Iso8601),
            Some(other) => {
                return Err(StoreError::Query(format!(
                    "database.timestamp_format = \"{other}\": use \"unixepoch-ms\" or \"iso8601\""
                )))
            }
        };
        let o = overrides.clone();
        let cat = self.call(false, move |c| read(c, &o)).await?;
        let (layout, adoption) = resolve(&cat, overrides, format);
        if let Some(layout) = layout {
            tracing::debug!(
                timestamps = layout.stamps.as_str(),
                "App-owned SQLite tables adopted"
            );
            self.set_layout(layout);
        }
        Ok(adoption)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(ddl: &str) -> Catalog {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(ddl).unwrap();
        read(&c, &Overrides::default()).unwrap()
    }

    /// Prisma's DDL for the contract's models on SQLite (no CHECKs, DATETIME, JSONB).
    const PRISMA: &str = r#"
CREATE TABLE "OutboxEvent" ("id" TEXT NOT NULL PRIMARY KEY, "eventName" TEXT NOT NULL, "eventType" TEXT NOT NULL,
  "aggregateId" TEXT NOT NULL, "routingKey" TEXT NOT NULL, "payload" JSONB NOT NULL DEFAULT '{}', "headers" JSONB,
  "status" TEXT NOT NULL DEFAULT 'PENDING', "occurredAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "retryCount" INTEGER NOT NULL DEFAULT 0, "maxRetries" INTEGER, "retryInterval" INTEGER, "maxInterval" INTEGER,
  "nextRetryAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, "lockedBy" TEXT, "lockedUntil" DATETIME,
  "lastError" TEXT, "processedAt" DATETIME, "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE INDEX "OutboxEvent_status_nextRetryAt_idx" ON "OutboxEvent"("status", "nextRetryAt");
CREATE TABLE "OutboxRetryPolicy" ("routingKey" TEXT NOT NULL PRIMARY KEY, "maxRetries" INTEGER NOT NULL,
  "retryInterval" INTEGER NOT NULL, "maxInterval" INTEGER NOT NULL);
"#;

    #[test]
    fn a_prisma_schema_is_adopted_as_it_is() {
        let (layout, a) = resolve(&catalog(PRISMA), &Overrides::default(), None);
        assert!(a.usable, "{:?}", a.errors);
        let layout = layout.unwrap();
        assert_eq!(layout.stamps, Stamps::UnixMillis);
        assert!(layout.blocked.is_none() && layout.audit.is_none());
        assert!(a.mapping.iter().all(|m| m.how == "exact"));
        // The reaper's index is missing, the claim's is there; an empty table cannot say how
        // the app stores timestamps.
        assert_eq!(a.warnings.len(), 2, "{:?}", a.warnings);
        assert!(a.warnings[0].what.contains("timestamp_format is not set"));
        assert!(a.warnings[1].what.contains("lease reaper"));
    }

    #[test]
    fn snake_case_tables_are_mapped_and_what_is_missing_is_named() {
        let cat = catalog(
            r#"CREATE TABLE outbox_events (id TEXT PRIMARY KEY, event_name TEXT, event_type TEXT, aggregate_id TEXT,
                 routing_key TEXT, payload TEXT, status TEXT, occurred_at TEXT, retry_count INTEGER,
                 next_retry_at TEXT, locked_by TEXT NOT NULL);
               CREATE TABLE outbox_retry_policy (routing_key TEXT PRIMARY KEY, max_retries INT, retry_interval INT, max_interval INT);"#,
        );
        let (layout, a) = resolve(&cat, &Overrides::default(), None);
        assert!(!a.usable && layout.is_none());
        let errors: Vec<&str> = a.errors.iter().map(|f| f.what.as_str()).collect();
        assert!(
            errors.iter().any(|e| e.contains("lockedUntil is missing")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("\"locked_by\" is NOT NULL")),
            "{errors:?}"
        );
        let fix = &a
            .errors
            .iter()
            .find(|f| f.what.contains("lockedUntil"))
            .unwrap();
        assert_eq!(
            fix.sql,
            "ALTER TABLE \"outbox_events\" ADD COLUMN \"locked_until\" DATETIME;"
        );
        assert!(a
            .mapping
            .iter()
            .any(|m| m.physical == "routing_key" && m.how == "snake_case"));
        // TEXT-affinity timestamps on an empty table: the worker writes ISO-8601 text.
        let cat = catalog(&PRISMA.replace("\"lockedUntil\" DATETIME", "\"lockedUntil\" TEXT"));
        let (layout, a) = resolve(&cat, &Overrides::default(), None);
        assert!(a.usable);
        assert_eq!(layout.unwrap().stamps, Stamps::Iso8601);
        let (_, a) = resolve(&cat, &Overrides::default(), Some(Stamps::UnixMillis));
        assert!(
            !a.usable && a.errors[0].what.contains("TEXT affinity"),
            "{:?}",
            a.errors
        );
    }

    #[test]
    fn the_newest_event_tells_how_timestamps_are_stored() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(PRISMA).unwrap();
        c.execute_batch(r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "occurredAt")
                           VALUES ('a', 'n', 't', 'g', 'k', '2026-12-02T10:00:00.000Z')"#).unwrap();
        let cat = read(&c, &Overrides::default()).unwrap();
        let (layout, a) = resolve(&cat, &Overrides::default(), None);
        assert_eq!(layout.unwrap().stamps, Stamps::Iso8601);
        assert!(a
            .warnings
            .iter()
            .all(|w| !w.what.contains("timestamp_format")));
        let (_, a) = resolve(&cat, &Overrides::default(), Some(Stamps::UnixMillis));
        assert!(
            a.warnings.iter().any(|w| w.what.contains("stored as text")),
            "{:?}",
            a.warnings
        );
    }

    #[test]
    fn affinity_follows_sqlite_rules() {
        assert_eq!(affinity("DATETIME"), "NUMERIC");
        assert_eq!(affinity("JSONB"), "NUMERIC");
        assert_eq!(affinity("varchar(20)"), "TEXT");
        assert_eq!(affinity("BIGINT"), "INTEGER");
        assert_eq!(affinity(""), "BLOB");
    }
}
