//! Where the outbox lives in a MySQL database: table and column names (the worker's own
//! tables, or an app's found by introspection, [`super::adopt`]) and whether the bucket
//! locks of ordered delivery are there. Statements are templates (see `crate::template`)
//! with two tokens of this store:
//! - `{earlier p c}`: row `p` comes before row `c` in delivery order (`seq`, else
//!   occurredAt then id);
//! - `{seq}`: the newest event's insertion number, or 0 without a `seq` column;
//! - `{limit}`: left as it is, for the caller to fill in;
//! - `{text col}`: the type of a JSON_TABLE column compared with event column `col`:
//!   `VARCHAR(n)` of its length, with its character set and collation on an app's tables
//!   (`VARCHAR(191)`, the server's defaults, on the worker's own).

use crate::template::Names;

/// One layout: physical names, and the ordering aids present.
#[derive(Debug, Clone)]
pub struct Layout {
    pub(crate) names: Names,
    /// `OutboxOrderLock` and the insert trigger that takes its buckets exist: an ordered
    /// claim can wait for producers still inside their transactions.
    pub(crate) order_lock: bool,
    /// Logical event column → its length and its character set and collation, on an app's
    /// tables.
    pub(crate) texts: std::collections::BTreeMap<String, (u64, Option<(String, String)>)>,
}

pub(crate) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

impl Layout {
    /// The worker's own tables.
    pub fn canonical() -> Layout {
        Layout {
            names: Names::canonical(),
            order_lock: true,
            texts: Default::default(),
        }
    }

    /// Whether the event table has `logical`.
    pub(crate) fn has_event_column(&self, logical: &str) -> bool {
        self.names.event_columns.contains_key(logical)
    }

    /// The event table, quoted, for messages.
    pub fn event_table(&self) -> String {
        quote(&self.names.event)
    }

    /// The policy table, quoted, for messages and fixes.
    pub fn policy_table(&self) -> String {
        quote(&self.names.policy)
    }

    /// The physical name of policy column `logical` (its logical name when absent).
    pub fn policy_column<'a>(&'a self, logical: &'a str) -> &'a str {
        self.names
            .policy_columns
            .get(logical)
            .map(String::as_str)
            .unwrap_or(logical)
    }

    /// Whether the audit table is there (the operator commands record their actions).
    pub(crate) fn audits(&self) -> bool {
        self.names.audit.is_some()
    }

    fn token(&self, token: &str) -> Option<String> {
        let col = |alias: &str, logical: &str| {
            let c = self
                .names
                .event_columns
                .get(logical)
                .map(|c| quote(c))
                .unwrap_or_else(|| "NULL".into());
            format!("{alias}.{c}")
        };
        if let Some(pair) = token.strip_prefix("earlier ") {
            let (p, c) = pair.split_once(' ').expect("{earlier p c}");
            return Some(if self.has_event_column("seq") {
                format!("{} < {}", col(p, "seq"), col(c, "seq"))
            } else {
                format!(
                    "({}, {}) < ({}, {})",
                    col(p, "occurredAt"),
                    col(p, "id"),
                    col(c, "occurredAt"),
                    col(c, "id")
                )
            });
        }
        if let Some(logical) = token.strip_prefix("text ") {
            let plain = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            // The longest VARCHAR a utf8mb4 JSON_TABLE column can be.
            let (len, collation) = self.texts.get(logical).cloned().unwrap_or((191, None));
            let mut out = format!("VARCHAR({})", len.clamp(1, 16_383));
            if let Some((set, c)) = collation.filter(|(s, c)| plain(s) && plain(c)) {
                out.push_str(&format!(" CHARACTER SET {set} COLLATE {c}"));
            }
            return Some(out);
        }
        if token == "limit" {
            // Filled in at each call.
            return Some("{limit}".into());
        }
        if token == "seq" {
            return Some(match self.names.event_columns.get("seq") {
                Some(s) => format!("COALESCE(MAX({}), 0)", quote(s)),
                // An aggregate, so the look-up is one row whatever the table holds.
                None => "COALESCE(MAX(0), 0)".into(),
            });
        }
        self.names
            .token(token, quote)
            .unwrap_or_else(|| panic!("unknown template token {{{token}}}"))
    }

    /// `template` rendered for this layout.
    pub(crate) fn render(&self, template: &str) -> String {
        crate::template::render(template, |t| self.token(t))
    }
}

/// The columns every event read selects, in this order (`lockedBy` last): a template.
pub(crate) const EVENT_COLUMNS: &str = "{e.id}, {e.eventName}, {e.eventType}, {e.aggregateId}, {e.routingKey}, {e.payload}, {e.headers}, {e.occurredAt}, {e.retryCount}, {e.maxRetries}, {e.retryInterval}, {e.maxInterval}, {e.lockedBy}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_layouts_rename_and_order_without_seq() {
        let mut l = Layout::canonical();
        assert_eq!(
            l.render("SELECT {e.lockedBy} FROM {E} AS e WHERE {earlier p e}"),
            "SELECT `lockedBy` FROM `OutboxEvent` AS e WHERE p.`seq` < e.`seq`"
        );
        l.names.event = "outbox_event".into();
        l.names.event_columns.remove("seq");
        l.names.event_columns.remove("headers");
        l.names
            .event_columns
            .insert("lockedBy".into(), "locked_by".into());
        assert_eq!(
            l.render("SELECT e.{e.headers}, {e.lockedBy}, {seq} FROM {E} AS e\n  SET {?e.headers} = 1\nWHERE {earlier p e}"),
            "SELECT NULL, `locked_by`, COALESCE(MAX(0), 0) FROM `outbox_event` AS e\nWHERE (p.`occurredAt`, p.`id`) < (e.`occurredAt`, e.`id`)"
        );
    }
}
