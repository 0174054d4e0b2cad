//! App-owned tables: find the outbox tables and columns by introspection (exact name, then
//! case-insensitive, then snake_case; config overrides win), check their types, and build
//! the [`Layout`] the statements use. Whatever is missing or incompatible is reported with
//! the SQL and the Prisma model line that fix it.

use super::catalog::{Catalog, Column, Table};
use super::layout::{
    Layout, AUDIT_TABLE, BLOCKED_TABLE, EVENT_OPTIONAL, EVENT_RECOMMENDED, EVENT_REQUIRED,
    EVENT_TABLE, ORDER_LOCK_CLASS, POLICY_OPTIONAL, POLICY_REQUIRED, POLICY_TABLE,
};
use super::quote_ident;
pub use crate::adopt::snake_case;
use crate::adopt::{find_column, looked_for, Naming};
pub use outbox_core::{Finding, Mapped, Overrides};
use std::collections::BTreeMap;

/// The outcome of resolving an app-owned schema.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// The layout, when nothing blocks the worker.
    pub layout: Option<Layout>,
    /// Blocking problems.
    pub errors: Vec<Finding>,
    /// Things that work but are worse than they should be.
    pub warnings: Vec<Finding>,
    /// How each column was found.
    pub mapping: Vec<Mapped>,
}

/// Canonical SQL type and Prisma type of a logical column.
fn canonical_type(table: &str, logical: &str, naive: bool) -> (&'static str, &'static str) {
    let ts = if naive {
        ("timestamp(3)", "DateTime")
    } else {
        ("timestamptz(3)", "DateTime @db.Timestamptz(3)")
    };
    match (table, logical) {
        (_, "payload") => ("jsonb NOT NULL DEFAULT '{}'", "Json @default(\"{}\")"),
        (_, "headers") => ("jsonb", "Json?"),
        (_, "occurredAt" | "nextRetryAt" | "createdAt" | "updatedAt") => {
            if naive {
                (
                    "timestamp(3) NOT NULL DEFAULT now()",
                    "DateTime @default(now())",
                )
            } else {
                (
                    "timestamptz(3) NOT NULL DEFAULT now()",
                    "DateTime @default(now()) @db.Timestamptz(3)",
                )
            }
        }
        (_, "lockedUntil" | "processedAt") => {
            if naive {
                ("timestamp(3)", "DateTime?")
            } else {
                (ts.0, "DateTime? @db.Timestamptz(3)")
            }
        }
        (EVENT_TABLE, "retryCount") => ("integer NOT NULL DEFAULT 0", "Int @default(0)"),
        (EVENT_TABLE, "seq") => ("bigserial NOT NULL", "BigInt @default(autoincrement())"),
        (EVENT_TABLE, "maxRetries" | "retryInterval" | "maxInterval") => ("integer", "Int?"),
        (POLICY_TABLE, "maxRetries" | "retryInterval" | "maxInterval") => {
            ("integer NOT NULL", "Int")
        }
        (_, "backoffMultiplier") => ("double precision NOT NULL DEFAULT 2", "Float @default(2)"),
        (_, "jitter") => ("double precision NOT NULL DEFAULT 0", "Float @default(0)"),
        (_, "ordered" | "paused" | "blockOnFailure") => {
            ("boolean NOT NULL DEFAULT false", "Boolean @default(false)")
        }
        (_, "status") => (
            "text NOT NULL DEFAULT 'PENDING'",
            "OutboxStatus @default(PENDING)",
        ),
        (_, "lockedBy" | "lastError" | "description") => ("text", "String?"),
        _ => ("text NOT NULL", "String"),
    }
}

fn is_text(t: &str) -> bool {
    t == "text"
        || t.starts_with("character varying")
        || t.starts_with("character(")
        || t == "character"
}
fn is_int(t: &str) -> bool {
    matches!(t, "smallint" | "integer" | "bigint")
}
fn is_float(t: &str) -> bool {
    matches!(t, "double precision" | "real") || t.starts_with("numeric")
}
fn is_json(t: &str) -> bool {
    matches!(t, "json" | "jsonb")
}
fn ts_kind(t: &str) -> Option<bool> {
    if !t.starts_with("timestamp") {
        return None;
    }
    Some(t.ends_with("without time zone"))
}

/// Which type family a logical column needs, for messages.
fn family(logical: &str, table: &str) -> &'static str {
    match logical {
        "payload" | "headers" => "json or jsonb",
        "occurredAt" | "nextRetryAt" | "lockedUntil" | "processedAt" | "createdAt"
        | "updatedAt" => "a timestamp",
        "retryCount" | "maxRetries" | "retryInterval" | "maxInterval" | "seq" => "an integer",
        "backoffMultiplier" | "jitter" => "a floating-point number",
        "ordered" | "paused" | "blockOnFailure" => "boolean",
        "id" if table == EVENT_TABLE => "text, varchar or uuid",
        "status" => "text, varchar or an enum",
        _ => "text or varchar",
    }
}

fn type_fits(logical: &str, c: &Column) -> bool {
    let t = c.sql_type.as_str();
    match logical {
        "payload" | "headers" => is_json(t),
        "occurredAt" | "nextRetryAt" | "lockedUntil" | "processedAt" | "createdAt"
        | "updatedAt" => ts_kind(t).is_some(),
        "retryCount" | "maxRetries" | "retryInterval" | "maxInterval" | "seq" => is_int(t),
        "backoffMultiplier" | "jitter" => is_float(t),
        "ordered" | "paused" | "blockOnFailure" => t == "boolean",
        "id" => is_text(t) || t == "uuid",
        "status" => is_text(t) || c.is_enum,
        _ => is_text(t),
    }
}

struct TableResolver<'a> {
    logical_table: &'static str,
    physical: String,
    table: &'a Table,
    naming: Naming,
    naive: bool,
}

impl TableResolver<'_> {
    fn find(
        &self,
        logical: &str,
        overrides: &Overrides,
        out: &mut Resolution,
    ) -> Option<(String, &'static str)> {
        find_column(
            self.table.columns.iter().map(|c| c.name.as_str()),
            self.logical_table,
            &self.physical,
            logical,
            overrides,
            &mut out.errors,
        )
    }

    fn add_column_fix(&self, logical: &str) -> (String, String) {
        let physical = self.naming.apply(logical);
        let (sql_type, prisma_type) = canonical_type(self.logical_table, logical, self.naive);
        let map = if physical == logical {
            String::new()
        } else {
            format!(" @map(\"{physical}\")")
        };
        (
            format!(
                "ALTER TABLE {} ADD COLUMN {} {sql_type};",
                quote_ident(&self.physical),
                quote_ident(&physical)
            ),
            format!("{logical} {prisma_type}{map}"),
        )
    }
}

fn find_table<'a>(
    cat: &'a Catalog,
    logical: &str,
    overrides: &Overrides,
) -> Option<(String, &'a Table)> {
    let name = crate::adopt::find_table(cat.tables.keys().map(String::as_str), logical, overrides)?;
    cat.tables.get(&name).map(|t| (name, t))
}

/// The index columns of `CREATE INDEX ... USING btree (a, b) [WHERE ...]`, unquoted.
fn index_columns(def: &str) -> (Vec<String>, String) {
    let Some(start) = def
        .find(" USING ")
        .and_then(|u| def[u..].find('(').map(|p| u + p + 1))
    else {
        return (Vec::new(), String::new());
    };
    let mut depth = 1;
    let mut end = start;
    for (i, ch) in def[start..].char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    end = start + i;
                    break;
                }
            }
            _ => {}
        }
    }
    let cols = def[start..end]
        .split(',')
        .map(|c| {
            c.trim()
                .trim_matches('"')
                .split(' ')
                .next()
                .unwrap_or("")
                .trim_matches('"')
                .to_string()
        })
        .collect();
    let rest = def[end..].to_string();
    (cols, rest)
}

/// Resolves the app-owned tables in `cat` (read from `schema`).
pub fn resolve(cat: &Catalog, schema: &str, overrides: &Overrides) -> Resolution {
    let mut out = Resolution::default();
    let mut layout = Layout::canonical(schema);
    let mut blocked = false;

    for (logical_table, required, optional, recommended) in [
        (
            EVENT_TABLE,
            EVENT_REQUIRED,
            EVENT_OPTIONAL,
            EVENT_RECOMMENDED,
        ),
        (POLICY_TABLE, POLICY_REQUIRED, POLICY_OPTIONAL, &[][..]),
    ] {
        let Some((physical, table)) = find_table(cat, logical_table, overrides) else {
            blocked = true;
            out.errors.push(Finding {
                what: format!(
                    "table {} not found in schema \"{schema}\" ({})",
                    quote_ident(logical_table),
                    looked_for(logical_table)
                ),
                sql: "see `outbox schema print --format sql`".into(),
                prisma: "see `outbox schema print --format prisma`".into(),
            });
            continue;
        };
        let naive = table
            .columns
            .iter()
            .filter_map(|c| ts_kind(&c.sql_type))
            .any(|n| n);
        let r = TableResolver {
            logical_table,
            physical: physical.clone(),
            table,
            naming: Naming::of(table.columns.iter().map(|c| c.name.as_str())),
            naive,
        };
        let mut columns = BTreeMap::new();
        for (logical, need) in required
            .iter()
            .map(|c| (*c, 2))
            .chain(recommended.iter().map(|c| (*c, 1)))
            .chain(optional.iter().map(|c| (*c, 0)))
        {
            let Some((name, how)) = r.find(logical, overrides, &mut out) else {
                let (sql, prisma) = r.add_column_fix(logical);
                let what = format!(
                    "column {logical} is missing from {}",
                    quote_ident(&physical)
                );
                match need {
                    2 => {
                        blocked = true;
                        out.errors.push(Finding { what, sql, prisma });
                    }
                    1 => out.warnings.push(Finding {
                        what: format!("{what} (recommended: without it failures and finish times are not recorded)"),
                        sql,
                        prisma,
                    }),
                    _ => {}
                }
                continue;
            };
            let col = table.column(&name).expect("found above");
            if !type_fits(logical, col) {
                blocked = true;
                let (sql_type, prisma) = canonical_type(logical_table, logical, naive);
                let bare_type = sql_type.split(" NOT NULL").next().unwrap_or(sql_type);
                out.errors.push(Finding {
                    what: format!(
                        "column {}.{} has type {}; {logical} needs {}",
                        quote_ident(&physical),
                        quote_ident(&name),
                        col.sql_type,
                        family(logical, logical_table)
                    ),
                    sql: format!(
                        "ALTER TABLE {} ALTER COLUMN {} TYPE {bare_type} USING {}::{bare_type};",
                        quote_ident(&physical),
                        quote_ident(&name),
                        quote_ident(&name)
                    ),
                    prisma: format!("{logical} {prisma}"),
                });
            }
            out.mapping.push(Mapped {
                table: logical_table,
                logical: logical.to_string(),
                physical: name.clone(),
                how,
            });
            columns.insert(logical.to_string(), name);
        }
        if logical_table == EVENT_TABLE {
            check_event_table(
                &r,
                table,
                &columns,
                cat,
                &mut out,
                &mut layout,
                &mut blocked,
            );
            layout.event_table = physical;
            layout.event_columns = columns;
        } else {
            check_policy_table(&r, table, &mut out);
            layout.policy_table = physical;
            layout.policy_columns = columns;
        }
    }
    let wanted = layout.policy_columns.contains_key("blockOnFailure");
    layout.blocked_table = resolve_blocked_table(cat, schema, overrides, wanted, &mut out);
    // The audit table is the operator commands' (they say when it is missing).
    layout.audit_table = find_table(cat, AUDIT_TABLE, overrides)
        .filter(|(_, t)| {
            ["actor", "action", "eventId", "routingKey", "detail"]
                .iter()
                .all(|c| t.column(c).is_some())
        })
        .map(|(name, _)| name);
    if !blocked {
        out.layout = Some(layout);
    }
    out
}

fn check_event_table(
    r: &TableResolver<'_>,
    table: &Table,
    columns: &BTreeMap<String, String>,
    cat: &Catalog,
    out: &mut Resolution,
    layout: &mut Layout,
    blocked: &mut bool,
) {
    let t = quote_ident(&r.physical);
    let col = |logical: &str| columns.get(logical).and_then(|n| table.column(n));
    if let Some(id) = col("id") {
        layout.id_type = id.sql_type.clone();
    }
    layout.naive_timestamps = columns
        .iter()
        .filter(|(_, phys)| table.column(phys).and_then(|c| ts_kind(&c.sql_type)) == Some(true))
        .map(|(logical, _)| logical.clone())
        .collect();
    if let Some(status) = col("status") {
        if status.is_enum {
            let labels = cat.enums.get(status.sql_type.trim_matches('"'));
            let missing: Vec<&str> = ["PENDING", "PROCESSING", "SENT", "FAILED"]
                .into_iter()
                .filter(|l| !labels.is_some_and(|ls| ls.iter().any(|x| x == l)))
                .collect();
            if !missing.is_empty() {
                *blocked = true;
                out.errors.push(Finding {
                    what: format!(
                        "enum {} of the status column lacks {}",
                        status.sql_type,
                        missing.join(", ")
                    ),
                    sql: missing
                        .iter()
                        .map(|l| format!("ALTER TYPE {} ADD VALUE '{l}';", status.sql_type))
                        .collect::<Vec<_>>()
                        .join(" "),
                    prisma: format!(
                        "enum {} {{ PENDING PROCESSING SENT FAILED }}",
                        status.sql_type.trim_matches('"')
                    ),
                });
            }
            layout.status_enum = Some(format!(
                "{}.{}",
                quote_ident(&layout.schema),
                status.sql_type
            ));
        }
    }
    if let Some(c) = col("nextRetryAt") {
        layout.next_retry_nullable = !c.not_null;
    }
    if let Some(c) = col("lastError").filter(|c| c.sql_type != "text") {
        layout.last_error_type = Some(c.sql_type.clone());
    }
    // Required columns that allow NULL: the worker copes row by row, and says what a NULL
    // there does.
    let leases = ["nextRetryAt", "lockedBy", "lockedUntil"];
    for &logical in EVENT_REQUIRED.iter().filter(|c| !leases.contains(c)) {
        let Some(c) = col(logical) else { continue };
        if c.not_null {
            continue;
        }
        layout.nullable.push(logical.to_string());
        let effect = match logical {
            "retryCount" => "a NULL is read (and stored by the claim) as 0",
            "status" | "id" => "a row with a NULL there is never delivered, nor reported",
            _ => "a row with a NULL there is claimed and ends FAILED as unreadable",
        };
        out.warnings.push(Finding {
            what: format!("column {t}.{} allows NULL: {effect}", quote_ident(&c.name)),
            sql: format!(
                "ALTER TABLE {t} ALTER COLUMN {} SET NOT NULL;",
                quote_ident(&c.name)
            ),
            prisma: format!(
                "{logical} {}",
                canonical_type(EVENT_TABLE, logical, r.naive).1
            ),
        });
    }
    for logical in ["lockedBy", "lockedUntil", "processedAt"] {
        if let Some(c) = col(logical) {
            if c.not_null {
                *blocked = true;
                out.errors.push(Finding {
                    what: format!(
                        "column {t}.{} is NOT NULL; the worker clears it",
                        quote_ident(&c.name)
                    ),
                    sql: format!(
                        "ALTER TABLE {t} ALTER COLUMN {} DROP NOT NULL;",
                        quote_ident(&c.name)
                    ),
                    prisma: format!(
                        "{logical} {}",
                        canonical_type(EVENT_TABLE, logical, r.naive).1
                    ),
                });
            }
        }
    }
    for logical in ["maxRetries", "retryInterval", "maxInterval"] {
        if let Some(c) = col(logical) {
            if c.not_null {
                out.warnings.push(Finding {
                    what: format!(
                        "column {t}.{} is NOT NULL: every event carries its own {logical}, which always overrides the policy's",
                        quote_ident(&c.name)
                    ),
                    sql: format!("ALTER TABLE {t} ALTER COLUMN {} DROP NOT NULL, ALTER COLUMN {} DROP DEFAULT;", quote_ident(&c.name), quote_ident(&c.name)),
                    prisma: format!("{logical} Int?"),
                });
            }
        }
    }
    // Recommended indexes: the claim and the lease reaper.
    let q = |logical: &str| {
        columns
            .get(logical)
            .cloned()
            .unwrap_or_else(|| logical.to_string())
    };
    let (status, next, until) = (q("status"), q("nextRetryAt"), q("lockedUntil"));
    let has_index = |lead: &str, partial_value: &str| {
        table.indexes.values().any(|def| {
            let (cols, rest) = index_columns(def);
            let partial = rest.contains(&format!("'{partial_value}'")) && rest.contains("WHERE");
            (cols.first().map(String::as_str) == Some(lead) && partial)
                || (cols.len() >= 2 && cols[0] == status && cols[1] == lead)
        })
    };
    if !has_index(&next, "PENDING") {
        out.warnings.push(Finding {
            what: format!(
                "no index serves the claim on {t} (status, {next}); claims scan the table"
            ),
            sql: format!(
                "CREATE INDEX {} ON {t} ({}) WHERE {} = 'PENDING';",
                quote_ident(&format!("{}_pending_idx", r.physical)),
                quote_ident(&next),
                quote_ident(&status)
            ),
            prisma: "@@index([status, nextRetryAt])".into(),
        });
    }
    if !has_index(&until, "PROCESSING") {
        out.warnings.push(Finding {
            what: format!("no index serves the lease reaper on {t} (status, {until})"),
            sql: format!(
                "CREATE INDEX {} ON {t} ({}) WHERE {} = 'PROCESSING';",
                quote_ident(&format!("{}_processing_idx", r.physical)),
                quote_ident(&until),
                quote_ident(&status)
            ),
            prisma: "@@index([status, lockedUntil])".into(),
        });
    }
    if let Some(seq) = columns.get("seq") {
        if !table
            .triggers
            .values()
            .any(|d| d.contains("outbox_event_seq"))
        {
            out.warnings.push(Finding {
                what: format!("no sequencing trigger on {t}: an ordered event committed late can be overtaken by a later one of its aggregate"),
                sql: seq_trigger_sql(&r.physical, seq, &q("aggregateId")),
                prisma: "(add the SQL to a migration made with `prisma migrate dev --create-only`)".into(),
            });
        }
        let aggregate = q("aggregateId");
        let serves_heads = table.indexes.values().any(|def| {
            let (cols, _) = index_columns(def);
            cols.len() >= 2 && cols[0] == aggregate && &cols[1] == seq
        });
        if !serves_heads {
            out.warnings.push(Finding {
                what: format!("no index serves ordered claims on {t} ({aggregate}, {seq}): each looks for earlier events by scanning"),
                sql: format!(
                    "CREATE INDEX {} ON {t} ({}, {}) WHERE {} IN ('PENDING', 'PROCESSING');",
                    quote_ident(&format!("{}_aggregate_idx", r.physical)),
                    quote_ident(&aggregate),
                    quote_ident(seq),
                    quote_ident(&status)
                ),
                prisma: "@@index([aggregateId, seq])".into(),
            });
        }
    }
    if !table
        .triggers
        .values()
        .any(|d| d.contains("outbox_notify_event"))
    {
        out.warnings.push(Finding {
            what: format!("no NOTIFY trigger on {t}: new events wait for the next poll (worker.poll_interval)"),
            sql: notify_trigger_sql(&r.physical, "outbox_notify_event", "outbox_event", "INSERT", "OutboxEvent_notify"),
            prisma: "(add the SQL to a migration made with `prisma migrate dev --create-only`)".into(),
        });
    }
}

fn check_policy_table(r: &TableResolver<'_>, table: &Table, out: &mut Resolution) {
    if !table
        .triggers
        .values()
        .any(|d| d.contains("outbox_notify_policy"))
    {
        out.warnings.push(Finding {
            what: format!(
                "no NOTIFY trigger on {}: policy edits reach workers at the next refresh (worker.policy_refresh)",
                quote_ident(&r.physical)
            ),
            sql: notify_trigger_sql(
                &r.physical,
                "outbox_notify_policy",
                "outbox_policy",
                "INSERT OR UPDATE OR DELETE OR TRUNCATE",
                "OutboxRetryPolicy_notify",
            ),
            prisma: "(add the SQL to a migration made with `prisma migrate dev --create-only`)".into(),
        });
    }
}

/// The statement-level NOTIFY trigger the worker's migrations install, for `table`.
pub fn notify_trigger_sql(
    table: &str,
    function: &str,
    channel: &str,
    events: &str,
    trigger: &str,
) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('{channel}', TG_TABLE_SCHEMA); RETURN NULL; END; $$; \
         CREATE TRIGGER {tr} AFTER {events} ON {t} FOR EACH STATEMENT EXECUTE FUNCTION {f}();",
        f = quote_ident(function),
        tr = quote_ident(trigger),
        t = quote_ident(table)
    )
}

/// The row trigger that numbers events for ordered delivery (as migration 0003 installs
/// it), for `table` with columns `seq` and `aggregate`.
pub fn seq_trigger_sql(table: &str, seq: &str, aggregate: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION \"outbox_event_seq\"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         PERFORM pg_advisory_xact_lock_shared({ORDER_LOCK_CLASS}, hashtext(NEW.{a}::text) & 255); \
         NEW.{s} := nextval(pg_get_serial_sequence(quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME), '{seq}')); \
         RETURN NEW; END; $$; \
         CREATE TRIGGER {tr} BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION \"outbox_event_seq\"();",
        a = quote_ident(aggregate),
        s = quote_ident(seq),
        seq = seq.replace('\'', "''"),
        tr = quote_ident(&format!("{table}_seq")),
        t = quote_ident(table)
    )
}

/// The blocked-aggregates table, as migration 0003 creates it.
const BLOCKED_TABLE_SQL: &str = "CREATE TABLE \"OutboxBlockedAggregate\" (\"aggregateId\" text NOT NULL PRIMARY KEY, \"eventId\" text NOT NULL, \"routingKey\" text NOT NULL, \"reason\" text, \"blockedAt\" timestamptz(3) NOT NULL DEFAULT now());";
const BLOCKED_COLUMNS: &[&str] = &["aggregateId", "eventId", "routingKey", "reason"];

/// Finds the blocked-aggregates table (columns by their exact names). Only a policy table
/// with a blockOnFailure column needs one.
fn resolve_blocked_table(
    cat: &Catalog,
    schema: &str,
    overrides: &Overrides,
    wanted: bool,
    out: &mut Resolution,
) -> Option<String> {
    let found = find_table(cat, BLOCKED_TABLE, overrides);
    if let Some((name, table)) = &found {
        let missing: Vec<&str> = BLOCKED_COLUMNS
            .iter()
            .copied()
            .filter(|c| table.column(c).is_none())
            .collect();
        // Blocking writes with ON CONFLICT ("aggregateId"): a unique index must back it.
        let unique = table.indexes.values().any(|def| {
            let (cols, _) = index_columns(def);
            def.contains("UNIQUE") && cols == ["aggregateId"]
        });
        if missing.is_empty() && unique {
            return Some(name.clone());
        }
        if missing.is_empty() {
            if wanted {
                out.warnings.push(Finding {
                    what: format!(
                        "table {} has no primary key or unique index on \"aggregateId\": policies with blockOnFailure release the aggregate instead",
                        quote_ident(name)
                    ),
                    sql: format!(
                        "ALTER TABLE {} ADD PRIMARY KEY (\"aggregateId\");",
                        quote_ident(name)
                    ),
                    prisma: "aggregateId String @id".into(),
                });
            }
            return None;
        }
        if wanted {
            out.warnings.push(Finding {
                what: format!(
                    "table {} lacks column(s) {}: policies with blockOnFailure release the aggregate instead",
                    quote_ident(name),
                    missing.join(", ")
                ),
                sql: BLOCKED_TABLE_SQL.into(),
                prisma: "see `outbox schema print --format prisma` (model OutboxBlockedAggregate)".into(),
            });
        }
        return None;
    }
    if wanted {
        out.warnings.push(Finding {
            what: format!("no table {BLOCKED_TABLE} in schema \"{schema}\": policies with blockOnFailure release the aggregate of a failed event instead"),
            sql: BLOCKED_TABLE_SQL.into(),
            prisma: "see `outbox schema print --format prisma` (model OutboxBlockedAggregate)".into(),
        });
    }
    None
}

impl super::PgStore {
    /// Introspects the app-owned tables and, when nothing blocks, switches every statement
    /// to the resolved layout. Runs no DDL.
    pub async fn adopt_app_tables(
        &mut self,
        overrides: &Overrides,
    ) -> Result<Resolution, outbox_core::StoreError> {
        let catalog = self.live_catalog().await?;
        let resolution = resolve(&catalog, self.schema(), overrides);
        if let Some(layout) = &resolution.layout {
            self.set_layout(layout.clone());
        }
        Ok(resolution)
    }
}

impl From<Resolution> for outbox_core::Adoption {
    fn from(r: Resolution) -> outbox_core::Adoption {
        outbox_core::Adoption {
            usable: r.layout.is_some(),
            errors: r.errors,
            warnings: r.warnings,
            mapping: r.mapping,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_columns_are_read_from_definitions() {
        let (cols, rest) = index_columns(
            r#"CREATE INDEX "x" ON "OutboxEvent" USING btree ("nextRetryAt") WHERE (status = 'PENDING'::text)"#,
        );
        assert_eq!(cols, vec!["nextRetryAt"]);
        assert!(rest.contains("'PENDING'"));
        let (cols, _) = index_columns(
            r#"CREATE INDEX x ON outbox_event USING btree (status, next_retry_at DESC)"#,
        );
        assert_eq!(cols, vec!["status", "next_retry_at"]);
    }
}
