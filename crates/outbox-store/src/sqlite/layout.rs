//! Where the outbox lives in a SQLite file: table and column names, and how timestamps are
//! stored. Worker-owned tables use the canonical layout (integer milliseconds, checked by
//! the schema); app-owned tables get one resolved by introspection ([`super::adopt`]).
//!
//! Statements are written once as templates and rendered for a layout:
//! - `{E}` `{P}` `{B}` `{A}`: the event, policy, blocked-aggregate and audit tables;
//! - `{e.col}` / `{p.col}`: a column of the event / policy table (`NULL` when the table
//!   lacks an optional one);
//! - `{?e.col}`, `{?p.col}`, `{?B}`, `{?A}` anywhere on a line: the line is left out when
//!   that column or table is absent (for `SET` items and optional conditions);
//! - `{now}`: now in milliseconds since 1970, by SQLite's clock;
//! - `MS(x)`: the timestamp `x` in milliseconds, whatever form it is stored in;
//! - `STAMP(x)`: the milliseconds `x` in the form this layout stores timestamps.

use crate::template::Names;
use std::collections::BTreeMap;

impl std::ops::Deref for Layout {
    type Target = Names;
    fn deref(&self) -> &Names {
        &self.names
    }
}

impl std::ops::DerefMut for Layout {
    fn deref_mut(&mut self) -> &mut Names {
        &mut self.names
    }
}

/// Milliseconds since 1970 by SQLite's clock (the database clock of this store).
pub(crate) const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/// The form the worker writes timestamps in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamps {
    /// INTEGER milliseconds since 1970 UTC: the worker's own tables, and Prisma's SQLite
    /// client without a driver adapter (or with `timestampFormat: 'unixepoch-ms'`).
    UnixMillis,
    /// ISO-8601 TEXT `YYYY-MM-DDTHH:MM:SS.SSS+00:00`, as Prisma's SQLite driver adapters
    /// write it by default.
    Iso8601,
}

impl Stamps {
    /// The config spelling (`database.timestamp_format`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stamps::UnixMillis => "unixepoch-ms",
            Stamps::Iso8601 => "iso8601",
        }
    }
}

/// One layout: physical names and the timestamp forms.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Tables, and the present columns (logical → physical).
    pub(crate) names: Names,
    /// Stored timestamps may be in any form (app-owned tables: integers, ISO-8601 text,
    /// SQLite's `YYYY-MM-DD HH:MM:SS`): every comparison converts them.
    pub(crate) mixed_stamps: bool,
    /// What the worker writes.
    pub(crate) stamps: Stamps,
}

pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Layout {
    /// The worker's own tables.
    pub fn canonical() -> Layout {
        // The rowid orders events: no seq column.
        let mut names = Names::canonical();
        names.event_columns.remove("seq");
        Layout {
            names,
            mixed_stamps: false,
            stamps: Stamps::UnixMillis,
        }
    }

    /// Whether the event table has `logical`.
    pub(crate) fn has_event_column(&self, logical: &str) -> bool {
        self.event_columns.contains_key(logical)
    }

    /// The event table's name.
    pub fn event_table(&self) -> &str {
        &self.event
    }

    /// Logical → physical columns of the event table (present ones only).
    pub fn event_columns(&self) -> &BTreeMap<String, String> {
        &self.event_columns
    }

    /// The policy table's name.
    pub fn policy_table_name(&self) -> &str {
        &self.policy
    }

    /// Logical → physical columns of the policy table (present ones only).
    pub fn policy_columns(&self) -> &BTreeMap<String, String> {
        &self.policy_columns
    }

    /// The quoted policy table, for messages and fixes.
    pub fn policy_table(&self) -> String {
        quote(&self.policy)
    }

    /// The physical name of policy column `logical` (its logical name when absent).
    pub fn policy_column<'a>(&'a self, logical: &'a str) -> &'a str {
        self.policy_columns
            .get(logical)
            .map(String::as_str)
            .unwrap_or(logical)
    }

    /// A token's text, `None` when it names something absent.
    fn token(&self, token: &str) -> Option<String> {
        match token {
            "now" => Some(NOW_MS.to_string()),
            t => self
                .names
                .token(t, quote)
                .unwrap_or_else(|| panic!("unknown template token {{{t}}}")),
        }
    }

    /// `template` rendered for this layout (see the module's documentation).
    pub(crate) fn render(&self, template: &str) -> String {
        let sql = crate::template::render(template, |t| self.token(t));
        let sql = self.expand(&sql, "MS(", |x| self.millis_of(x));
        self.expand(&sql, "STAMP(", |x| self.stamp_of(x))
    }

    /// Replaces each `NAME(inner)` with `f(inner)` (parentheses balanced).
    fn expand(&self, sql: &str, name: &str, f: impl Fn(&str) -> String) -> String {
        let mut out = String::with_capacity(sql.len());
        let mut rest = sql;
        while let Some(at) = rest.find(name) {
            // `MS(` must not match the tail of a longer word.
            let word_before = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            out.push_str(&rest[..at]);
            let start = at + name.len();
            if word_before {
                out.push_str(name);
                rest = &rest[start..];
                continue;
            }
            let mut depth = 1;
            let mut end = start;
            for (i, ch) in rest[start..].char_indices() {
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
            assert!(depth == 0, "unbalanced {name} in {sql}");
            out.push_str(&f(&rest[start..end]));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// A stored timestamp as milliseconds. On the worker's own tables the column itself
    /// (an integer, so indexes serve comparisons); elsewhere any stored form converted, and
    /// a NULL or unreadable one as 0 (due, expired, old).
    fn millis_of(&self, x: &str) -> String {
        if !self.mixed_stamps {
            return x.to_string();
        }
        format!(
            "COALESCE(CASE WHEN typeof({x}) IN ('integer', 'real') THEN {x} ELSE CAST(round((julianday({x}) - 2440587.5) * 86400000) AS INTEGER) END, 0)"
        )
    }

    /// Milliseconds `x` as this layout stores a timestamp.
    fn stamp_of(&self, x: &str) -> String {
        match self.stamps {
            Stamps::UnixMillis => format!("({x})"),
            Stamps::Iso8601 => {
                format!("strftime('%Y-%m-%dT%H:%M:%f+00:00', ({x}) / 1000.0, 'unixepoch')")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> Layout {
        let mut l = Layout::canonical();
        l.event = "outbox_event".into();
        l.event_columns
            .insert("nextRetryAt".into(), "next_retry_at".into());
        l.event_columns.remove("lastError");
        l.blocked = None;
        l.mixed_stamps = true;
        l.stamps = Stamps::Iso8601;
        l
    }

    #[test]
    fn canonical_templates_render_to_plain_sql() {
        let l = Layout::canonical();
        let sql = l.render(
            "UPDATE {E} SET\n {?e.lastError}{e.lastError} = ?1,\n {e.status} = 'SENT'\n WHERE MS({e.nextRetryAt}) <= {now} AND x = STAMP({now} + 5)",
        );
        assert_eq!(
            sql,
            format!("UPDATE \"OutboxEvent\" SET\n \"lastError\" = ?1,\n \"status\" = 'SENT'\n WHERE \"nextRetryAt\" <= {NOW_MS} AND x = ({NOW_MS} + 5)")
        );
    }

    #[test]
    fn app_layouts_rename_leave_out_absent_columns_and_convert_timestamps() {
        let l = app();
        let sql = l.render(
            "UPDATE {E} SET\n {?e.lastError}{e.lastError} = ?1,\n {e.status} = 'SENT'\n {?B}AND NOT EXISTS (SELECT 1 FROM {B})\n WHERE MS(c.{e.nextRetryAt}) <= {now} AND y = {e.lastError} AND x = STAMP({now} + 5)",
        );
        assert!(sql.starts_with("UPDATE \"outbox_event\" SET\n \"status\" = 'SENT'\n WHERE COALESCE(CASE WHEN typeof(c.\"next_retry_at\")"), "{sql}");
        assert!(sql.contains("y = NULL"), "{sql}");
        assert_eq!(
            l.render("json_object('e', e.{e.lastError})"),
            "json_object('e', NULL)"
        );
        assert!(
            sql.contains("x = strftime('%Y-%m-%dT%H:%M:%f+00:00', (CAST("),
            "{sql}"
        );
        assert!(!sql.contains("NOT EXISTS"), "{sql}");
        // A word ending in MS is not the macro.
        assert_eq!(l.render("ITEMS(1)"), "ITEMS(1)");
    }

    #[test]
    fn iso_stamps_read_back_as_the_same_milliseconds() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let l = app();
        let ms: i64 = 1_764_688_633_123;
        let stamped: String = c
            .query_row(
                &format!("SELECT {}", l.stamp_of(&ms.to_string())),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stamped, "2025-12-02T15:17:13.123+00:00");
        for stored in [
            format!("'{stamped}'"),
            "'2025-12-02T15:17:13.123Z'".to_string(),
            ms.to_string(),
            "'2025-12-02 15:17:13.123'".to_string(),
        ] {
            let back: i64 = c
                .query_row(&format!("SELECT {}", l.millis_of(&stored)), [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(back, ms, "{stored}");
        }
        let unreadable: i64 = c
            .query_row(&format!("SELECT {}", l.millis_of("'soon'")), [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(unreadable, 0);
    }
}
