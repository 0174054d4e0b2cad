//! App-owned tables, the part every backend shares: the contract's logical tables and
//! columns (SPEC §2) and how a physical name is found for each — a config override, else
//! the exact name, else case-insensitively, else in snake_case.

use outbox_core::{Adoption, Finding, Mapped, Overrides};
use std::collections::BTreeMap;

/// Logical columns of `"OutboxEvent"` the worker cannot run without.
pub const EVENT_REQUIRED: &[&str] = &[
    "id",
    "eventName",
    "eventType",
    "aggregateId",
    "routingKey",
    "payload",
    "status",
    "occurredAt",
    "retryCount",
    "nextRetryAt",
    "lockedBy",
    "lockedUntil",
];
/// Logical columns of `"OutboxEvent"` used when present (`seq`: PostgreSQL's ordering).
pub const EVENT_OPTIONAL: &[&str] = &[
    "maxRetries",
    "retryInterval",
    "maxInterval",
    "headers",
    "createdAt",
    "seq",
];
/// Optional columns whose absence is worth a warning.
pub const EVENT_RECOMMENDED: &[&str] = &["lastError", "processedAt"];
/// Logical columns of `"OutboxRetryPolicy"` the worker cannot run without.
pub const POLICY_REQUIRED: &[&str] = &["routingKey", "maxRetries", "retryInterval", "maxInterval"];
/// Logical columns of `"OutboxRetryPolicy"` used when present (else their defaults).
pub const POLICY_OPTIONAL: &[&str] = &[
    "backoffMultiplier",
    "jitter",
    "ordered",
    "paused",
    "blockOnFailure",
    "description",
    "createdAt",
    "updatedAt",
];

/// Canonical table names.
pub const EVENT_TABLE: &str = "OutboxEvent";
/// Canonical table names.
pub const POLICY_TABLE: &str = "OutboxRetryPolicy";
/// Canonical table names.
pub const BLOCKED_TABLE: &str = "OutboxBlockedAggregate";
/// Canonical table names.
pub const AUDIT_TABLE: &str = "OutboxAudit";

/// Marks the SQL block inside `outbox schema print --format prisma`.
pub const PRISMA_SQL_BEGIN: &str = "// BEGIN outbox SQL";
/// Ends the SQL block inside `outbox schema print --format prisma`.
pub const PRISMA_SQL_END: &str = "// END outbox SQL";

/// `eventName` → `event_name`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// How an app names its columns, to suggest a missing one under a name that fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `eventName`
    Camel,
    /// `eventname`
    Lower,
    /// `event_name`
    Snake,
}

impl Naming {
    /// The naming of a table whose columns are `names`.
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Naming {
        let names: Vec<&str> = names.into_iter().collect();
        if names.iter().any(|n| n.contains('_')) {
            Naming::Snake
        } else if names
            .iter()
            .any(|n| n.chars().any(|c| c.is_ascii_uppercase()))
        {
            Naming::Camel
        } else {
            Naming::Lower
        }
    }

    /// `logical` in this naming.
    pub fn apply(self, logical: &str) -> String {
        match self {
            Naming::Camel => logical.to_string(),
            Naming::Lower => logical.to_ascii_lowercase(),
            Naming::Snake => snake_case(logical),
        }
    }
}

/// The physical table for `logical` among `tables`: the configured one, else the first of
/// `Name`, `name`, `snake_name`, `snake_names`, else one equal ignoring case.
pub fn find_table<'a>(
    tables: impl IntoIterator<Item = &'a str>,
    logical: &str,
    overrides: &Overrides,
) -> Option<String> {
    let tables: Vec<&str> = tables.into_iter().collect();
    if let Some(name) = overrides.tables.get(logical) {
        return tables.contains(&name.as_str()).then(|| name.clone());
    }
    let snake = snake_case(logical);
    let candidates = [
        logical.to_string(),
        logical.to_ascii_lowercase(),
        snake.clone(),
        format!("{snake}s"),
    ];
    candidates
        .into_iter()
        .find(|c| tables.contains(&c.as_str()))
        .or_else(|| {
            tables
                .iter()
                .find(|n| n.eq_ignore_ascii_case(logical))
                .map(|n| n.to_string())
        })
}

/// Where to look for the tables, for the message when one is not found.
pub fn looked_for(logical: &str) -> String {
    let snake = snake_case(logical);
    format!(
        "looked for {logical}, {}, {snake}, {snake}s; or set database.tables.{logical}",
        logical.to_ascii_lowercase()
    )
}

/// The physical column of `logical` in table `table` (logical `logical_table`, columns
/// `columns`), with how it was found. A configured name that the table lacks is an error
/// pushed to `errors` (and `None`).
pub fn find_column<'a>(
    columns: impl IntoIterator<Item = &'a str>,
    logical_table: &str,
    table: &str,
    logical: &str,
    overrides: &Overrides,
    errors: &mut Vec<Finding>,
) -> Option<(String, &'static str)> {
    let columns: Vec<&str> = columns.into_iter().collect();
    let key = if logical_table == EVENT_TABLE {
        logical.to_string()
    } else {
        format!("{logical_table}.{logical}")
    };
    if let Some(name) = overrides.columns.get(&key) {
        if columns.contains(&name.as_str()) {
            return Some((name.clone(), "config"));
        }
        errors.push(Finding {
            what: format!(
                "database.columns.\"{key}\" names column \"{name}\", which \"{}\" does not have",
                table.replace('"', "\"\"")
            ),
            sql: String::new(),
            prisma: String::new(),
        });
        return None;
    }
    if columns.contains(&logical) {
        return Some((logical.to_string(), "exact"));
    }
    if let Some(c) = columns.iter().find(|c| c.eq_ignore_ascii_case(logical)) {
        return Some((c.to_string(), "case-insensitive"));
    }
    let snake = snake_case(logical);
    columns
        .iter()
        .find(|c| **c == snake)
        .map(|c| (c.to_string(), "snake_case"))
}

/// The logical columns of a table with how much each matters: 2 required, 1 recommended,
/// 0 optional.
pub fn wanted(logical_table: &str) -> Vec<(&'static str, u8)> {
    let (required, recommended, optional) = if logical_table == EVENT_TABLE {
        (EVENT_REQUIRED, EVENT_RECOMMENDED, EVENT_OPTIONAL)
    } else {
        (POLICY_REQUIRED, &[][..], POLICY_OPTIONAL)
    };
    required
        .iter()
        .map(|c| (*c, 2))
        .chain(recommended.iter().map(|c| (*c, 1)))
        .chain(optional.iter().map(|c| (*c, 0)))
        .collect()
}

/// The physical table of `logical_table` among `tables`, or `None` with the finding that
/// says so (in `where_`, e.g. "the SQLite database") pushed to `out.errors`.
pub fn table_or_finding<'a>(
    tables: impl IntoIterator<Item = &'a str>,
    logical_table: &str,
    where_: &str,
    quote: fn(&str) -> String,
    overrides: &Overrides,
    out: &mut Adoption,
) -> Option<String> {
    let found = find_table(tables, logical_table, overrides);
    if found.is_none() {
        out.errors.push(Finding {
            what: format!(
                "table {} not found in {where_} ({})",
                quote(logical_table),
                looked_for(logical_table)
            ),
            sql: "see `outbox schema print --format sql`".into(),
            prisma: "see `outbox schema print --format prisma`".into(),
        });
    }
    found
}

/// The lines of migration `sql` from the one that starts with `from` on, without blank
/// lines and comments: the SQL a Prisma app appends to its migration.
pub fn sql_from(sql: &str, from: &str) -> String {
    let at = sql
        .find(from)
        .unwrap_or_else(|| panic!("the migration has {from}"));
    sql[at..]
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `sql` as the comment lines of a Prisma schema (each line behind `// `).
pub fn commented(sql: &str) -> String {
    sql.lines().map(|l| format!("// {l}\n")).collect()
}

/// How a store writes the fix of a missing column: its quoting of names, and the column
/// types of its own tables, `types(logical table, logical column)` → (SQL, Prisma).
pub struct FixStyle {
    pub quote: fn(&str) -> String,
    pub types: fn(&str, &str) -> (&'static str, &'static str),
}

/// Finds each logical column of `logical_table` (`skip` left out) among `columns`, the
/// columns of its physical table `physical`: how each was found goes to `out.mapping`, a
/// missing required one to `out.errors` (the result's `true`: it blocks), a missing
/// recommended one to `out.warnings`, each with its fix as `ALTER TABLE … ADD COLUMN` and as
/// a Prisma line in `style`, the column named in the table's own naming style. Returns
/// logical → physical of those found.
pub fn resolve_columns(
    columns: &[&str],
    logical_table: &'static str,
    physical: &str,
    skip: &[&str],
    overrides: &Overrides,
    out: &mut Adoption,
    style: &FixStyle,
) -> (BTreeMap<String, String>, bool) {
    let quoted = (style.quote)(physical);
    let fix = |logical: &str, col: &str| {
        let (sql_type, prisma_type) = (style.types)(logical_table, logical);
        let map = if col == logical {
            String::new()
        } else {
            format!(" @map(\"{col}\")")
        };
        (
            format!(
                "ALTER TABLE {quoted} ADD COLUMN {} {sql_type};",
                (style.quote)(col)
            ),
            format!("{logical} {prisma_type}{map}"),
        )
    };
    let naming = Naming::of(columns.iter().copied());
    let mut found = BTreeMap::new();
    let mut blocked = false;
    for (logical, need) in wanted(logical_table) {
        if skip.contains(&logical) {
            continue;
        }
        let Some((name, how)) = find_column(
            columns.iter().copied(),
            logical_table,
            physical,
            logical,
            overrides,
            &mut out.errors,
        ) else {
            let (sql, prisma) = fix(logical, &naming.apply(logical));
            let what = format!("column {logical} is missing from {quoted}");
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
        out.mapping.push(Mapped {
            table: logical_table,
            logical: logical.to_string(),
            physical: name.clone(),
            how,
        });
        found.insert(logical.to_string(), name);
    }
    (found, blocked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_splits_camel_words() {
        assert_eq!(snake_case("eventName"), "event_name");
        assert_eq!(snake_case("OutboxEvent"), "outbox_event");
        assert_eq!(snake_case("id"), "id");
    }

    #[test]
    fn names_are_found_exactly_then_ignoring_case_then_in_snake_case() {
        let mut errors = Vec::new();
        let none = Overrides::default();
        let cols = ["id", "EVENTNAME", "routing_key", "eventType"];
        let find = |l: &str, o: &Overrides, e: &mut Vec<Finding>| {
            find_column(cols, EVENT_TABLE, "t", l, o, e)
        };
        assert_eq!(
            find("eventType", &none, &mut errors),
            Some(("eventType".into(), "exact"))
        );
        assert_eq!(
            find("eventName", &none, &mut errors),
            Some(("EVENTNAME".into(), "case-insensitive"))
        );
        assert_eq!(
            find("routingKey", &none, &mut errors),
            Some(("routing_key".into(), "snake_case"))
        );
        assert_eq!(find("payload", &none, &mut errors), None);
        let mut o = Overrides::default();
        o.columns.insert("payload".into(), "body".into());
        assert_eq!(find("payload", &o, &mut errors), None);
        assert!(
            errors[0].what.contains("names column \"body\""),
            "{errors:?}"
        );
        assert_eq!(
            find_table(["outbox_events", "x"], EVENT_TABLE, &none),
            Some("outbox_events".into())
        );
        assert_eq!(
            find_table(["OUTBOXEVENT"], EVENT_TABLE, &none),
            Some("OUTBOXEVENT".into())
        );
        assert_eq!(Naming::of(["id", "event_name"]), Naming::Snake);
        assert_eq!(Naming::of(["id", "eventName"]), Naming::Camel);
        assert_eq!(Naming::Lower.apply("eventName"), "eventname");
    }
}
