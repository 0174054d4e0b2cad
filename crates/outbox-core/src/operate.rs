//! What the operator commands (`outbox events`, `stats`, `dlq`, `policy`, `purge`) and the
//! migration commands (`outbox migrate`) need from a store: the [`Operator`] and
//! [`Migrator`] traits and the backend-neutral types they speak. A store backend implements
//! them beside [`Store`]; [`Backend`] is the three together, which is what the CLI opens.

use crate::event::Status;
use crate::store::{Store, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Which events an operator command is about. Empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Exactly these ids (when not empty).
    pub ids: Vec<String>,
    /// In this status.
    pub status: Option<Status>,
    /// Of this routingKey.
    pub routing_key: Option<String>,
    /// Of this aggregate.
    pub aggregate_id: Option<String>,
    /// Occurred at most this long ago.
    pub since: Option<Duration>,
    /// Occurred at or after this time.
    pub occurred_from: Option<DateTime<Utc>>,
    /// Occurred before this time.
    pub occurred_to: Option<DateTime<Utc>>,
    /// lastError contains this (case-insensitive).
    pub error_contains: Option<String>,
    /// For [`Operator::list_events`]: list by occurrence, newest first (occurredAt, then
    /// id), from the start or after a given event — pages that stay put while events are
    /// added, whatever the status. `None`: the listing's own order (FAILED events by when
    /// they failed).
    pub page: Option<Page>,
}

/// Where a page of a newest-first listing starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// With the newest event.
    First,
    /// With the event listed next after this one (the last of the previous page). When that
    /// event no longer exists, the page is empty.
    After(String),
}

impl EventFilter {
    /// The cursor's event id, when listing after one.
    pub fn page_after(&self) -> Option<&str> {
        match &self.page {
            Some(Page::After(id)) => Some(id),
            _ => None,
        }
    }
}

/// The events one worker holds (PROCESSING under its lease).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// `lockedBy`: the worker's id.
    pub owner: String,
    /// How many events it holds.
    pub events: i64,
    /// The latest `lockedUntil` of them.
    pub lease_until: Option<DateTime<Utc>>,
}

/// Counts of one routingKey (part of `outbox stats --format json`, as `byRoutingKey`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyStats {
    /// The routingKey.
    pub routing_key: String,
    /// PENDING events.
    pub pending: i64,
    /// PROCESSING events.
    pub processing: i64,
    /// SENT events.
    pub sent: i64,
    /// FAILED events.
    pub failed: i64,
    /// PENDING after at least one failed attempt.
    pub retrying: i64,
    /// Age of the oldest PENDING event, seconds.
    pub oldest_pending_seconds: Option<f64>,
}

/// A blocked aggregate (an ordered head FAILED under blockOnFailure).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blocked {
    /// The aggregate held back.
    pub aggregate_id: String,
    /// The FAILED event holding it.
    pub event_id: String,
    /// That event's routingKey.
    pub routing_key: String,
}

/// One event of a listing: its columns as a JSON object with the contract's column names,
/// and its payload as the text the database gives — shown as stored, never through `f64`.
#[derive(Debug, Clone)]
pub struct ListedEvent {
    /// Every column but the payload.
    pub fields: Value,
    /// The payload's JSON text (`None` when NULL or not JSON).
    pub payload: Option<Box<serde_json::value::RawValue>>,
}

impl std::ops::Index<&str> for ListedEvent {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        &self.fields[key]
    }
}

impl ListedEvent {
    /// The event's status, when its column holds one of the four.
    pub fn status(&self) -> Option<Status> {
        self.fields["status"].as_str().and_then(Status::parse)
    }

    /// One JSON object: the columns, `extra` fields, then `payload` as stored.
    pub fn to_json(&self, extra: &[(&str, Value)]) -> String {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            #[serde(flatten)]
            fields: serde_json::Map<String, Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            payload: Option<&'a serde_json::value::RawValue>,
        }
        let mut fields = match &self.fields {
            Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        for (k, v) in extra {
            fields.insert(k.to_string(), v.clone());
        }
        let line = Line {
            fields,
            payload: self.payload.as_deref(),
        };
        serde_json::to_string(&line)
            .unwrap_or_else(|e| serde_json::json!({ "unreadable": e.to_string() }).to_string())
    }
}

/// The operator commands' reads and actions. Every action on events is audited where the
/// store keeps an audit table ([`Operator::audits`]).
#[async_trait]
pub trait Operator: Send + Sync {
    /// Events matching `filter`, newest first (FAILED ones by when they failed), at most
    /// `limit`.
    async fn list_events(
        &self,
        filter: &EventFilter,
        limit: i64,
    ) -> Result<Vec<ListedEvent>, StoreError>;

    /// Ids of events matching `filter`, in id order, after `after`, at most `limit`: bulk
    /// commands walk them in chunks, so each event is acted on at most once per run.
    async fn matching_ids(
        &self,
        filter: &EventFilter,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError>;

    /// How many events match `filter`.
    async fn count_events(&self, filter: &EventFilter) -> Result<i64, StoreError>;

    /// Counts per routingKey and status. Without `sent`, SENT rows are not counted (`sent` is
    /// 0): the other states are found through the status index, which stays fast on a table
    /// of millions of delivered rows.
    async fn stats(&self, sent: bool) -> Result<Vec<KeyStats>, StoreError>;

    /// The number of rows in the event table by the database's own statistics, read without
    /// counting; `None` where the store keeps no such figure.
    async fn estimated_rows(&self) -> Result<Option<i64>, StoreError>;

    /// How many events match `filter` by the database's own estimate (its planner's), read
    /// without counting; `None` where the store makes no such estimate.
    async fn estimated_count(&self, filter: &EventFilter) -> Result<Option<i64>, StoreError>;

    /// The workers holding PROCESSING events, with how many each holds.
    async fn leases(&self) -> Result<Vec<Lease>, StoreError>;

    /// The aggregates held back by a FAILED ordered head (none where the store has no such
    /// table).
    async fn blocked_aggregates(&self) -> Result<Vec<Blocked>, StoreError>;

    /// Whether operator actions are audited.
    fn audits(&self) -> bool;

    /// Puts up to `batch` FAILED events matching `filter` back to PENDING (retryCount 0, due
    /// now, no lease, processedAt cleared; lastError kept), releases the aggregates they
    /// blocked, and audits each as done by `actor`. Returns the ids replayed; call again
    /// until it returns fewer than `batch`.
    async fn replay_failed(
        &self,
        filter: &EventFilter,
        batch: i64,
        actor: &str,
    ) -> Result<Vec<String>, StoreError>;

    /// Deletes up to `batch` FAILED events matching `filter`, audited. Aggregates they
    /// blocked stay blocked unless `unblock`. Returns the ids deleted.
    async fn purge_failed(
        &self,
        filter: &EventFilter,
        batch: i64,
        actor: &str,
        unblock: bool,
    ) -> Result<Vec<String>, StoreError>;

    /// Releases blocked `aggregates` (audited); returns the ones that were blocked.
    async fn unblock(&self, aggregates: &[String], actor: &str) -> Result<Vec<String>, StoreError>;

    /// Sets `paused` on the policy of `routing_key`, audited; false when there is no such
    /// policy. Running workers hear of it.
    async fn set_paused(
        &self,
        routing_key: &str,
        paused: bool,
        actor: &str,
    ) -> Result<bool, StoreError>;

    /// How many rows [`Store::purge`] would delete: `status` (SENT or FAILED), finished more
    /// than `older_than` ago.
    async fn purgeable(&self, status: Status, older_than: Duration) -> Result<u64, StoreError>;
}

/// Where one migration stands against a database.
#[derive(Debug, Clone, PartialEq)]
pub enum MigrationState {
    /// Applied with the checksum this binary has.
    Applied {
        /// When it was applied.
        at: DateTime<Utc>,
    },
    /// Known to this binary, not applied yet.
    Pending,
    /// Applied, but the script this binary carries differs from what was applied.
    Modified {
        /// Checksum recorded at apply time.
        applied: String,
        /// Checksum of the embedded script.
        embedded: String,
    },
    /// Recorded in the history, but this binary does not know it (a newer or other build).
    Unknown,
    /// Started but never finished (recorded with success = false).
    Dirty,
}

/// One row of `migrate status`.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationReport {
    /// Version number.
    pub version: i64,
    /// Description.
    pub name: String,
    /// State.
    pub state: MigrationState,
}

/// The kinds of problem `migrate status` reports, from least to most serious.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    /// A migration is not applied yet.
    Pending,
    /// An applied migration's script differs from this build's.
    Modified,
    /// The history holds a migration this build does not know.
    Unknown,
    /// A migration started and did not finish.
    Dirty,
    /// The live schema differs from what the migrations produce.
    Drift,
}

/// One problem, with its fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Kind.
    pub kind: ProblemKind,
    /// What is wrong.
    pub what: String,
    /// How to fix it (SQL or a command).
    pub fix: String,
}

/// One difference between the live schema and what the applied migrations produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// What differs, e.g. `index "OutboxEvent_pending_idx"`.
    pub object: String,
    /// How it differs.
    pub problem: String,
    /// SQL (or a command) that restores the migrated shape.
    pub fix: String,
}

/// Migration history plus live drift.
#[derive(Debug, Clone)]
pub struct SchemaStatus {
    /// The schema holding the outbox tables (PostgreSQL; `main` on SQLite).
    pub schema: String,
    /// The migration history table, as SQL names it (for the fix of a dirty migration).
    pub history: String,
    /// One row per known or recorded migration.
    pub migrations: Vec<MigrationReport>,
    /// Differences of the live schema from the applied migrations.
    pub drift: Vec<Drift>,
}

impl SchemaStatus {
    /// Every problem, in the order of the report.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for m in &self.migrations {
            let id = format!("{:04}_{}", m.version, m.name);
            let (kind, what, fix) = match &m.state {
                MigrationState::Applied { .. } => continue,
                MigrationState::Pending => (
                    ProblemKind::Pending,
                    format!("migration {id} is pending"),
                    "outbox migrate deploy".to_string(),
                ),
                MigrationState::Modified { applied, embedded } => (
                    ProblemKind::Modified,
                    format!(
                        "migration {id} was applied with a different script (checksum {}…, this build has {}…)",
                        applied.chars().take(12).collect::<String>(),
                        embedded.chars().take(12).collect::<String>()
                    ),
                    "run the outbox build that applied it (released migrations are never edited); in development: outbox migrate reset --force".to_string(),
                ),
                MigrationState::Unknown => (
                    ProblemKind::Unknown,
                    format!("migration {id} is recorded in {} but this build does not know it", self.history),
                    "run the newer outbox build that applied it".to_string(),
                ),
                MigrationState::Dirty => (
                    ProblemKind::Dirty,
                    format!("migration {id} started and did not finish (dirty)"),
                    format!(
                        "repair the schema by hand, then DELETE FROM {} WHERE \"version\" = {}; and run outbox migrate deploy (development: outbox migrate reset --force)",
                        self.history, m.version
                    ),
                ),
            };
            out.push(Problem { kind, what, fix });
        }
        for d in &self.drift {
            out.push(Problem {
                kind: ProblemKind::Drift,
                what: format!("drift: {} {}", d.object, d.problem),
                fix: d.fix.clone(),
            });
        }
        out
    }

    /// The most serious problem, if any.
    pub fn worst(&self) -> Option<ProblemKind> {
        self.problems().iter().map(|p| p.kind).max()
    }
}

/// The store's own migrations: history with checksums, live drift, deploy and reset.
#[async_trait]
pub trait Migrator: Send + Sync {
    /// The migration history compared with this build, and the live schema compared with
    /// what the applied migrations produce.
    async fn schema_status(&self) -> Result<SchemaStatus, StoreError>;

    /// Applies the pending migrations, all or nothing, safe with several processes starting
    /// at once. Returns the state of every migration afterwards.
    async fn deploy(&self) -> Result<Vec<MigrationReport>, StoreError>;

    /// The statements [`Migrator::reset`] would run to drop the outbox objects.
    async fn reset_plan(&self) -> Result<Vec<String>, StoreError>;

    /// Drops the outbox objects and applies every migration again, all or nothing. Returns
    /// the statements run and the migrations applied.
    async fn reset(&self) -> Result<(Vec<String>, Vec<MigrationReport>), StoreError>;

    /// App-owned tables (`schema_owner = "app"`): finds the outbox tables and columns by
    /// introspection (config overrides win), checks them, and when nothing blocks makes
    /// every statement of this store use them. Runs no DDL.
    async fn adopt(&mut self, overrides: &Overrides) -> Result<Adoption, StoreError>;
}

/// Names given in config where introspection of app-owned tables cannot tell
/// (`[database.tables]`, `[database.columns]`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Logical table (`OutboxEvent`, `OutboxRetryPolicy`) → physical table.
    pub tables: BTreeMap<String, String>,
    /// Logical column → physical column; `OutboxRetryPolicy.<column>` for the policy table,
    /// a bare name for the event table.
    pub columns: BTreeMap<String, String>,
    /// How app-owned SQLite tables store timestamps (`unixepoch-ms` or `iso8601`;
    /// `database.timestamp_format`); `None` tells from the rows.
    pub timestamp_format: Option<String>,
}

/// One finding about app-owned tables, with its fix in SQL and as a Prisma model line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What is wrong.
    pub what: String,
    /// SQL that fixes it.
    pub sql: String,
    /// The Prisma schema line(s) that fix it.
    pub prisma: String,
}

/// How one logical column of app-owned tables was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// `OutboxEvent` or `OutboxRetryPolicy`.
    pub table: &'static str,
    /// Logical column.
    pub logical: String,
    /// Physical column.
    pub physical: String,
    /// `exact`, `case-insensitive`, `snake_case` or `config`.
    pub how: &'static str,
}

/// What adopting app-owned tables found.
#[derive(Debug, Clone, Default)]
pub struct Adoption {
    /// Nothing blocks the worker: the store now uses these tables.
    pub usable: bool,
    /// Blocking problems.
    pub errors: Vec<Finding>,
    /// Things that work but are worse than they should be.
    pub warnings: Vec<Finding>,
    /// How each column was found.
    pub mapping: Vec<Mapped>,
}

/// A store backend as the CLI opens it: the engine's [`Store`], the [`Operator`] commands
/// and the [`Migrator`], with what messages call it.
pub trait Backend: Store + Operator + Migrator {
    /// The schema holding the outbox tables (PostgreSQL's schema; `main` on SQLite).
    fn schema(&self) -> &str;

    /// Where the outbox lives, as messages name it, e.g. `schema "public"`.
    fn location(&self) -> String;

    /// A logical table (`OutboxEvent`, `OutboxRetryPolicy`) as SQL in this store's
    /// messages and fixes writes it: its physical name, quoted for this database.
    fn table_name(&self, logical: &str) -> String;

    /// A logical column of a logical table, as [`Backend::table_name`] writes it (its
    /// logical name where the table lacks it).
    fn column_name(&self, logical_table: &str, logical: &str) -> String;

    /// The backend itself, for the few commands that are by nature about one kind of
    /// database (they say so when used on another).
    fn as_any(&self) -> &dyn std::any::Any;
}
