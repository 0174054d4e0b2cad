//! Statements written once as templates and rendered for the tables a store found (its own,
//! or an app's with other names and fewer columns). Shared by the SQLite and MySQL stores;
//! each gives the text of its tokens:
//! - `{E}` `{P}` `{B}` `{A}`: the event, policy, blocked-aggregate and audit tables;
//! - `{e.col}` / `{p.col}`: a column of the event / policy table by its logical name;
//! - `{?token}` anywhere on a line: the line is left out when the token names something
//!   absent (for `SET` items and optional conditions);
//! - any other `{token}` naming something absent reads as `NULL` (also where an alias
//!   qualifies it: `e.{e.headers}` → `NULL`).

use std::collections::BTreeMap;

/// The names a layout resolves: tables and the present columns, logical → physical.
#[derive(Debug, Clone)]
pub struct Names {
    pub(crate) event: String,
    pub(crate) policy: String,
    pub(crate) blocked: Option<String>,
    pub(crate) audit: Option<String>,
    pub(crate) event_columns: BTreeMap<String, String>,
    pub(crate) policy_columns: BTreeMap<String, String>,
}

impl Names {
    /// The worker's own tables, every column of the contract present (`seq` too).
    pub(crate) fn canonical() -> Names {
        use crate::adopt::*;
        let all = |names: &[&[&str]]| -> BTreeMap<String, String> {
            names
                .iter()
                .flat_map(|n| n.iter())
                .map(|c| (c.to_string(), c.to_string()))
                .collect()
        };
        Names {
            event: EVENT_TABLE.into(),
            policy: POLICY_TABLE.into(),
            blocked: Some(BLOCKED_TABLE.into()),
            audit: Some(AUDIT_TABLE.into()),
            event_columns: all(&[EVENT_REQUIRED, EVENT_OPTIONAL, EVENT_RECOMMENDED]),
            policy_columns: all(&[POLICY_REQUIRED, POLICY_OPTIONAL]),
        }
    }

    /// App-owned mode's optional tables among `tables`, each taken when `fits(name, columns,
    /// key)` (it has those columns, exactly named, and a unique index on `key` alone): the
    /// blocked-aggregates table — with a warning whose SQL fix is `blocked_fix` when policies
    /// can block and it is missing — and the audit table (the operator commands say when
    /// that one is missing).
    pub(crate) fn adopt_optional_tables(
        &mut self,
        tables: &[&str],
        overrides: &outbox_core::Overrides,
        fits: impl Fn(&str, &[&str], Option<&str>) -> bool,
        blocked_fix: &str,
        out: &mut outbox_core::Adoption,
    ) {
        use crate::adopt::{find_table, AUDIT_TABLE, BLOCKED_TABLE};
        let usable = |logical: &str, columns: &[&str], key: Option<&str>| {
            find_table(tables.iter().copied(), logical, overrides)
                .filter(|name| fits(name, columns, key))
        };
        self.blocked = usable(
            BLOCKED_TABLE,
            &[
                "aggregateId",
                "eventId",
                "routingKey",
                "reason",
                "blockedAt",
            ],
            Some("aggregateId"),
        );
        if self.blocked.is_none() && self.policy_columns.contains_key("blockOnFailure") {
            out.warnings.push(outbox_core::Finding {
                what: format!("no usable table {BLOCKED_TABLE} (columns aggregateId as its key, eventId, routingKey, reason, blockedAt): policies with blockOnFailure release the aggregate of a failed event instead"),
                sql: blocked_fix.into(),
                prisma: "see `outbox schema print --format prisma` (model OutboxBlockedAggregate)".into(),
            });
        }
        self.audit = usable(
            AUDIT_TABLE,
            &["actor", "action", "eventId", "routingKey", "detail"],
            None,
        );
    }

    /// Logical table `logical` (the event table unless it names the policy table), quoted.
    pub(crate) fn table_name(&self, logical: &str, quote: fn(&str) -> String) -> String {
        if logical == crate::adopt::POLICY_TABLE {
            quote(&self.policy)
        } else {
            quote(&self.event)
        }
    }

    /// A logical column of a logical table, quoted (its logical name when absent).
    pub(crate) fn column_name(
        &self,
        logical_table: &str,
        logical: &str,
        quote: fn(&str) -> String,
    ) -> String {
        let map = if logical_table == crate::adopt::POLICY_TABLE {
            &self.policy_columns
        } else {
            &self.event_columns
        };
        quote(map.get(logical).map(String::as_str).unwrap_or(logical))
    }

    /// The table and column tokens quoted by `quote`; `None` for an absent one or a token
    /// these names do not know.
    pub(crate) fn token(&self, token: &str, quote: fn(&str) -> String) -> Option<Option<String>> {
        let column =
            |map: &BTreeMap<String, String>, logical: &str| map.get(logical).map(|c| quote(c));
        Some(match token {
            "E" => Some(quote(&self.event)),
            "P" => Some(quote(&self.policy)),
            "B" => self.blocked.as_deref().map(quote),
            "A" => self.audit.as_deref().map(quote),
            t => match t.split_once('.') {
                Some(("e", c)) => column(&self.event_columns, c),
                Some(("p", c)) => column(&self.policy_columns, c),
                _ => return None,
            },
        })
    }
}

/// `template` with each token replaced by `token(name)` (`None`: absent; see the module's
/// documentation). Panics on a malformed template: templates are constants of this crate.
pub(crate) fn render(template: &str, token: impl Fn(&str) -> Option<String>) -> String {
    let mut lines = Vec::new();
    'line: for line in template.lines() {
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .unwrap_or_else(|| panic!("unclosed template token in {line}"));
            let name = &rest[open + 1..close];
            if let Some(guard) = name.strip_prefix('?') {
                if token(guard).is_none() {
                    continue 'line;
                }
            } else if let Some(text) = token(name) {
                out.push_str(&text);
            } else {
                // An absent column reads as NULL, also where an alias qualifies it.
                if out.ends_with('.') {
                    let qualified = out.len()
                        - out
                            .trim_end_matches('.')
                            .trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_')
                            .len();
                    out.truncate(out.len() - qualified);
                }
                out.push_str("NULL");
            }
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        lines.push(out);
    }
    lines.join("\n")
}
