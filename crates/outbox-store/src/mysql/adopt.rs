//! App-owned tables on MySQL / MariaDB (`schema_owner = "app"`): the outbox tables and
//! columns found by introspection of `information_schema` (config overrides win), checked,
//! and turned into the [`Layout`] every statement is rendered for. Runs no DDL.

use super::layout::{quote, Layout};
use super::{catalog, classify, MysqlStore};
use crate::adopt::{resolve_columns, table_or_finding, FixStyle, EVENT_TABLE, POLICY_TABLE};
use mysql_async::prelude::Queryable;
use outbox_core::{Adoption, Finding, Overrides, StoreError};
use std::collections::BTreeMap;

/// One column as `information_schema` describes it.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) nullable: bool,
    /// `DATA_TYPE`, lower case (`datetime`, `varchar`, `json`, `longtext`, …).
    pub(crate) data_type: String,
    /// `COLUMN_TYPE` as the server writes it (`enum('PENDING',…)`, `varchar(191)`, …).
    pub(crate) column_type: String,
    /// `EXTRA` (`auto_increment`, …).
    pub(crate) extra: String,
    /// `CHARACTER_MAXIMUM_LENGTH` of a text column.
    pub(crate) max_len: Option<u64>,
    /// `CHARACTER_SET_NAME` and `COLLATION_NAME` of a text column.
    pub(crate) collation: Option<(String, String)>,
}

/// One table: its columns in order, its indexes (name → columns in order, unique), and
/// the statements of its triggers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub(crate) columns: Vec<Column>,
    pub(crate) indexes: BTreeMap<String, (Vec<String>, bool)>,
    pub(crate) triggers: Vec<String>,
}

impl Table {
    fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// The tables of one database, by name.
pub(crate) type Catalog = BTreeMap<String, Table>;

/// The column types of the worker's own tables, for the fix of a missing column: (MySQL,
/// Prisma).
fn canonical_type(logical_table: &str, logical: &str) -> (&'static str, &'static str) {
    match (logical_table == EVENT_TABLE, logical) {
        (true, "payload") => ("JSON NOT NULL", "Json"),
        (true, "headers") => ("JSON NULL", "Json?"),
        (true, "status") => (
            "VARCHAR(16) NOT NULL DEFAULT 'PENDING'",
            "String @default(\"PENDING\") @db.VarChar(16)",
        ),
        (true, "occurredAt" | "nextRetryAt" | "createdAt") => (
            "DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)",
            "DateTime @default(now())",
        ),
        (true, "lockedUntil" | "processedAt") => ("DATETIME(3) NULL", "DateTime?"),
        (true, "retryCount") => ("INT NOT NULL DEFAULT 0", "Int @default(0)"),
        (true, "maxRetries" | "retryInterval" | "maxInterval") => ("INT NULL", "Int?"),
        (true, "lockedBy") => ("VARCHAR(191) NULL", "String?"),
        (true, "lastError") => ("TEXT NULL", "String? @db.Text"),
        (false, "maxRetries" | "retryInterval" | "maxInterval") => ("INT NOT NULL", "Int"),
        (false, "backoffMultiplier") => ("DOUBLE NOT NULL DEFAULT 2", "Float @default(2)"),
        (false, "jitter") => ("DOUBLE NOT NULL DEFAULT 0", "Float @default(0)"),
        (false, "ordered" | "paused" | "blockOnFailure") => {
            ("BOOLEAN NOT NULL DEFAULT FALSE", "Boolean @default(false)")
        }
        (false, "description") => ("TEXT NULL", "String? @db.Text"),
        (false, "createdAt" | "updatedAt") => (
            "DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)",
            "DateTime @default(now())",
        ),
        _ => ("VARCHAR(191) NOT NULL", "String"),
    }
}

/// The timestamp columns the worker compares with the server clock or writes.
const STAMPS: &[&str] = &["occurredAt", "nextRetryAt", "lockedUntil", "processedAt"];

/// Resolves the app-owned tables of `cat`.
pub(crate) fn resolve(cat: &Catalog, overrides: &Overrides) -> (Option<Layout>, Adoption) {
    let mut out = Adoption::default();
    let mut layout = Layout::canonical();
    let mut blocked = false;
    let names = || cat.keys().map(String::as_str);
    for logical_table in [EVENT_TABLE, POLICY_TABLE] {
        let Some(physical) = table_or_finding(
            names(),
            logical_table,
            "the database",
            quote,
            overrides,
            &mut out,
        ) else {
            blocked = true;
            continue;
        };
        let table = &cat[&physical];
        let t = quote(&physical);
        let column_names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        let (columns, missing) = resolve_columns(
            &column_names,
            logical_table,
            &physical,
            &[],
            overrides,
            &mut out,
            &FixStyle {
                quote,
                types: canonical_type,
            },
        );
        blocked |= missing;
        let mut columns = columns;
        if logical_table == EVENT_TABLE {
            // seq orders events only as an AUTO_INCREMENT integer.
            if let Some(c) = columns.get("seq").and_then(|n| table.column(n)) {
                let integer = c.data_type.ends_with("int");
                if !integer || !c.extra.to_ascii_lowercase().contains("auto_increment") {
                    out.warnings.push(Finding {
                        what: format!(
                            "column {t}.{} is not an AUTO_INCREMENT integer: ordered delivery goes by occurredAt, then id",
                            quote(&c.name)
                        ),
                        sql: format!(
                            "ALTER TABLE {t} MODIFY {} BIGINT NOT NULL AUTO_INCREMENT UNIQUE;",
                            quote(&c.name)
                        ),
                        prisma: "seq BigInt @unique @default(autoincrement())".into(),
                    });
                    columns.remove("seq");
                }
            }
        }
        let col = |logical: &str| columns.get(logical).and_then(|n| table.column(n));
        if logical_table == EVENT_TABLE {
            if let Some(c) = col("status") {
                let column_type = c.column_type.to_ascii_lowercase();
                let holds_all = match c.data_type.as_str() {
                    "enum" => ["pending", "processing", "sent", "failed"]
                        .iter()
                        .all(|v| column_type.contains(&format!("'{v}'"))),
                    "varchar" | "char" | "text" | "tinytext" | "mediumtext" | "longtext" => {
                        c.max_len.is_none_or(|n| n >= 10)
                    }
                    _ => false,
                };
                if !holds_all {
                    blocked = true;
                    let (sql_type, prisma_type) = canonical_type(EVENT_TABLE, "status");
                    out.errors.push(Finding {
                        what: format!(
                            "column {t}.{} is {}: it cannot hold each of PENDING, PROCESSING, SENT and FAILED",
                            quote(&c.name),
                            c.column_type
                        ),
                        sql: format!("ALTER TABLE {t} MODIFY {} {sql_type};", quote(&c.name)),
                        prisma: format!("status {prisma_type}"),
                    });
                }
            }
            // Results find their rows by primary key (`FORCE INDEX (PRIMARY)`).
            let id = columns.get("id").cloned().unwrap_or_else(|| "id".into());
            let keyed = table
                .indexes
                .get("PRIMARY")
                .is_some_and(|(cols, _)| cols == std::slice::from_ref(&id));
            if !keyed && columns.contains_key("id") {
                blocked = true;
                out.errors.push(Finding {
                    what: format!(
                        "{t}'s primary key is not its id column {}: the worker finds each event by it",
                        quote(&id)
                    ),
                    sql: format!("ALTER TABLE {t} DROP PRIMARY KEY, ADD PRIMARY KEY ({});", quote(&id)),
                    prisma: "id String @id".into(),
                });
            }
            for logical in ["lockedBy", "lockedUntil", "processedAt"] {
                if let Some(c) = col(logical).filter(|c| !c.nullable) {
                    blocked = true;
                    let (sql_type, prisma_type) = canonical_type(EVENT_TABLE, logical);
                    out.errors.push(Finding {
                        what: format!(
                            "column {t}.{} is NOT NULL; the worker clears it",
                            quote(&c.name)
                        ),
                        sql: format!("ALTER TABLE {t} MODIFY {} {sql_type};", quote(&c.name)),
                        prisma: format!("{logical} {prisma_type}"),
                    });
                }
            }
            for logical in STAMPS {
                if let Some(c) = col(logical)
                    .filter(|c| !matches!(c.data_type.as_str(), "datetime" | "timestamp"))
                {
                    blocked = true;
                    let (sql_type, prisma_type) = canonical_type(EVENT_TABLE, logical);
                    out.errors.push(Finding {
                        what: format!(
                            "column {t}.{} is {}: the worker compares and writes DATETIME values (UTC)",
                            quote(&c.name),
                            c.data_type.to_uppercase()
                        ),
                        sql: format!("ALTER TABLE {t} MODIFY {} {sql_type};", quote(&c.name)),
                        prisma: format!("{logical} {prisma_type}"),
                    });
                }
            }
            if let Some(c) = col("payload").filter(|c| c.data_type == "json") {
                out.warnings.push(Finding {
                    what: format!(
                        "column {t}.{} is MySQL's JSON type, which stores documents in a binary form: payloads are relayed as MySQL prints them (keys sorted, spaces normalised), not byte for byte as written",
                        quote(&c.name)
                    ),
                    sql: format!("ALTER TABLE {t} MODIFY {} LONGTEXT NOT NULL CHECK (JSON_VALID({0}));", quote(&c.name)),
                    prisma: "payload Json  (MariaDB keeps JSON as text; on MySQL, String @db.LongText keeps the bytes)".into(),
                });
            }
            let name = |l: &str| columns.get(l).cloned().unwrap_or_else(|| l.to_string());
            let has_index = |second: &str| {
                let status = name("status");
                table
                    .indexes
                    .values()
                    .any(|(cols, _)| cols.len() >= 2 && cols[0] == status && cols[1] == second)
            };
            for (logical, what) in [
                ("nextRetryAt", "the claim"),
                ("lockedUntil", "the lease reaper"),
            ] {
                let c = name(logical);
                if columns.contains_key(logical) && !has_index(&c) {
                    out.warnings.push(Finding {
                        what: format!(
                            "no index serves {what} on {t} ({}, {}); it scans the table",
                            name("status"),
                            c
                        ),
                        sql: format!(
                            "CREATE INDEX {} ON {t} ({}, {});",
                            quote(&format!("{physical}_status_{logical}_idx")),
                            quote(&name("status")),
                            quote(&c)
                        ),
                        prisma: format!("@@index([status, {logical}])"),
                    });
                }
            }
            // The bucket locks of ordered delivery: the table, and a trigger on the event
            // table that takes them.
            layout.order_lock = cat.contains_key("OutboxOrderLock")
                && table.triggers.iter().any(|s| s.contains("OutboxOrderLock"));
            layout.texts = columns
                .iter()
                .filter_map(|(logical, name)| {
                    let c = table.column(name)?;
                    Some((logical.clone(), (c.max_len?, c.collation.clone())))
                })
                .collect();
            layout.names.event = physical;
            layout.names.event_columns = columns;
        } else {
            layout.names.policy = physical;
            layout.names.policy_columns = columns;
        }
    }
    let tables: Vec<&str> = names().collect();
    layout.names.adopt_optional_tables(
        &tables,
        overrides,
        |name, columns, key| {
            let t = &cat[name];
            columns.iter().all(|c| t.column(c).is_some())
                && key.is_none_or(|k| {
                    t.indexes
                        .values()
                        .any(|(cols, unique)| *unique && cols.len() == 1 && cols[0] == k)
                })
        },
        "see `outbox schema print --format sql` (table OutboxBlockedAggregate)",
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

impl MysqlStore {
    /// The tables of the store's database as `information_schema` describes them.
    pub(crate) async fn catalog(&self) -> Result<Catalog, StoreError> {
        let mut c = self.conn().await?;
        let db = self.database().to_string();
        let mut cat = Catalog::new();
        type ColumnRow = (
            String,
            String,
            String,
            String,
            String,
            String,
            Option<u64>,
            Option<String>,
            Option<String>,
        );
        let columns: Vec<ColumnRow> = c
            .exec(catalog::ADOPT_COLUMNS, (&db,))
            .await
            .map_err(classify)?;
        for (table, name, nullable, data_type, column_type, extra, max_len, charset, collation) in
            columns
        {
            cat.entry(table).or_default().columns.push(Column {
                name,
                nullable: nullable == "YES",
                data_type,
                column_type,
                extra,
                max_len,
                collation: charset.zip(collation),
            });
        }
        // A functional key part has no column name: such an index serves none of ours.
        let indexes: Vec<(String, String, i64, Option<String>)> = c
            .exec(catalog::ADOPT_INDEXES, (&db,))
            .await
            .map_err(classify)?;
        for (table, index, non_unique, column) in indexes {
            let column = column.unwrap_or_default();
            if let Some(t) = cat.get_mut(&table) {
                let entry = t
                    .indexes
                    .entry(index)
                    .or_insert((Vec::new(), non_unique == 0));
                entry.0.push(column);
            }
        }
        let triggers: Vec<(String, String)> = c
            .exec(catalog::ADOPT_TRIGGERS, (&db,))
            .await
            .map_err(classify)?;
        for (table, statement) in triggers {
            if let Some(t) = cat.get_mut(&table) {
                t.triggers.push(statement);
            }
        }
        Ok(cat)
    }

    /// Introspects the app-owned tables and, when nothing blocks, renders every statement
    /// for them. Runs no DDL.
    pub(crate) async fn adopt_tables(
        &mut self,
        overrides: &Overrides,
    ) -> Result<Adoption, StoreError> {
        if let Some(f) = &overrides.timestamp_format {
            return Err(StoreError::Query(format!(
                "database.timestamp_format = \"{f}\" is for SQLite; MySQL's DATETIME columns say what they hold"
            )));
        }
        let cat = self.catalog().await?;
        let (layout, adoption) = resolve(&cat, overrides);
        if let Some(layout) = layout {
            self.set_layout(layout);
        }
        Ok(adoption)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, nullable: bool, data_type: &str) -> Column {
        Column {
            name: name.into(),
            nullable,
            data_type: data_type.into(),
            column_type: if data_type == "enum" {
                "enum('PENDING','PROCESSING','SENT','FAILED')".into()
            } else {
                data_type.into()
            },
            extra: String::new(),
            max_len: None,
            collation: Some(("utf8mb4".into(), "utf8mb4_unicode_ci".into())),
        }
    }

    /// The tables a Prisma app on MySQL has for the contract's models (no seq, the four
    /// required policy columns only).
    fn prisma_like(event: &str, snake: bool) -> Catalog {
        let n = |c: &str| {
            if snake {
                crate::adopt::snake_case(c)
            } else {
                c.to_string()
            }
        };
        let mut cat = Catalog::new();
        let mut e = Table::default();
        for (c, null, ty) in [
            ("id", false, "varchar"),
            ("eventName", false, "varchar"),
            ("eventType", false, "varchar"),
            ("aggregateId", false, "varchar"),
            ("routingKey", false, "varchar"),
            ("payload", false, "longtext"),
            ("status", false, "enum"),
            ("occurredAt", false, "datetime"),
            ("retryCount", false, "int"),
            ("nextRetryAt", false, "datetime"),
            ("lockedBy", true, "varchar"),
            ("lockedUntil", true, "datetime"),
        ] {
            e.columns.push(col(&n(c), null, ty));
        }
        e.indexes
            .insert("PRIMARY".into(), (vec!["id".into()], true));
        e.indexes.insert(
            "by_status".into(),
            (vec![n("status"), n("nextRetryAt")], false),
        );
        cat.insert(event.into(), e);
        let mut p = Table::default();
        for c in ["routingKey", "maxRetries", "retryInterval", "maxInterval"] {
            p.columns.push(col(&n(c), false, "int"));
        }
        cat.insert(
            if snake {
                "outbox_retry_policy"
            } else {
                "OutboxRetryPolicy"
            }
            .into(),
            p,
        );
        cat
    }

    #[test]
    fn a_snake_case_app_table_is_adopted_and_renders_its_names() {
        let (layout, a) = resolve(&prisma_like("outbox_event", true), &Overrides::default());
        let layout = layout.expect("usable");
        assert!(a.errors.is_empty(), "{:?}", a.errors);
        // lastError and processedAt are recommended; the reaper's index is missing.
        assert_eq!(a.warnings.len(), 3, "{:?}", a.warnings);
        assert!(!layout.order_lock);
        assert_eq!(
            layout.render("UPDATE {E} SET\n {e.lastError} = ?, {?e.lastError}\n {e.lockedBy} = NULL WHERE {earlier p c}"),
            "UPDATE `outbox_event` SET\n `locked_by` = NULL WHERE (p.`occurred_at`, p.`id`) < (c.`occurred_at`, c.`id`)"
        );
    }

    #[test]
    fn what_blocks_is_named_with_its_fix() {
        let mut cat = prisma_like("OutboxEvent", false);
        let e = cat.get_mut("OutboxEvent").unwrap();
        e.columns.retain(|c| c.name != "routingKey");
        e.columns.iter_mut().for_each(|c| {
            if c.name == "lockedUntil" {
                c.nullable = false;
            }
            if c.name == "nextRetryAt" {
                c.data_type = "varchar".into();
            }
        });
        let (layout, a) = resolve(&cat, &Overrides::default());
        assert!(layout.is_none());
        let whats: Vec<&str> = a.errors.iter().map(|f| f.what.as_str()).collect();
        assert_eq!(whats.len(), 3, "{whats:?}");
        assert!(whats[0].contains("routingKey is missing"), "{whats:?}");
        assert!(
            a.errors[1]
                .sql
                .contains("MODIFY `lockedUntil` DATETIME(3) NULL"),
            "{:?}",
            a.errors[1]
        );
        assert!(whats[2].contains("`nextRetryAt` is VARCHAR"), "{whats:?}");
    }

    #[test]
    fn a_status_that_cannot_hold_every_state_blocks_and_a_plain_seq_is_not_trusted() {
        let mut cat = prisma_like("OutboxEvent", false);
        let e = cat.get_mut("OutboxEvent").unwrap();
        for c in e.columns.iter_mut() {
            if c.name == "status" {
                c.column_type = "enum('PENDING','SENT','FAILED')".into();
            }
        }
        e.columns.push(col("seq", false, "bigint"));
        let (layout, a) = resolve(&cat, &Overrides::default());
        assert!(layout.is_none());
        assert!(
            a.errors
                .iter()
                .any(|f| f.what.contains("cannot hold each of PENDING, PROCESSING")),
            "{:?}",
            a.errors
        );
        assert!(
            a.warnings
                .iter()
                .any(|f| f.what.contains("`seq` is not an AUTO_INCREMENT integer")),
            "{:?}",
            a.warnings
        );
        // A VARCHAR long enough is fine; one too short for PROCESSING is not.
        let e = cat.get_mut("OutboxEvent").unwrap();
        for c in e.columns.iter_mut() {
            if c.name == "status" {
                c.data_type = "varchar".into();
                c.max_len = Some(16);
            }
        }
        let (layout, _) = resolve(&cat, &Overrides::default());
        let layout = layout.expect("usable");
        assert!(!layout.has_event_column("seq"), "the plain seq is left out");
        let e = cat.get_mut("OutboxEvent").unwrap();
        for c in e.columns.iter_mut() {
            if c.name == "status" {
                c.max_len = Some(8);
            }
        }
        assert!(resolve(&cat, &Overrides::default()).0.is_none());
    }
}
