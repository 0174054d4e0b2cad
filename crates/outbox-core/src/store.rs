//! Where events live: the [`Store`] trait the engine is written against. The PostgreSQL
//! implementation is in `outbox-store`; another backend implements the same few calls.

use crate::event::{ClaimedEvent, Status};
use crate::policy::RetryPolicy;
use async_trait::async_trait;
use std::time::Duration;

/// A failure of the backing database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the connection broke; worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A query failed for a reason a retry will not fix (e.g. a missing table).
    #[error("{0}")]
    Query(String),
    /// The store has no notifications ([`Store::listen`]): the worker finds new events by
    /// its poll alone.
    #[error("this store has no notifications; the worker polls")]
    PollOnly,
}

impl StoreError {
    /// Whether the error is about connectivity (retry after a backoff) rather than the query.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// What to record for one claimed event. Applied only while the row still carries
/// `lease_owner` and `retry_count` and is PROCESSING (the fence).
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Event id.
    pub id: String,
    /// `lockedBy` written by the claim.
    pub lease_owner: String,
    /// retryCount when claimed.
    pub retry_count: i32,
    /// The new state.
    pub action: CompletionAction,
}

/// The new state of a completed event.
#[derive(Debug, Clone, PartialEq)]
pub enum CompletionAction {
    /// SENT with processedAt.
    Sent,
    /// Delivered, and the row is deleted (`worker.on_success = "delete"`).
    Delete,
    /// Back to PENDING, `retry_count` stored, due `delay` after the database clock at write time.
    Retry {
        /// New retryCount.
        retry_count: i32,
        /// Delay from the moment of writing.
        delay: Duration,
        /// Stored in lastError.
        error: String,
    },
    /// FAILED with processedAt.
    Fail {
        /// Stored in lastError.
        error: String,
        /// Hold the event's aggregate back: its later ordered events wait until an operator
        /// replays or discards this one (ordered policies with `blockOnFailure`).
        block_aggregate: bool,
    },
    /// Given back unattempted (or interrupted by a clean stop): PENDING, due now,
    /// retryCount unchanged.
    Release {
        /// Stored in lastError when set.
        note: Option<String>,
    },
}

/// A leased row the store could not read as an event: a value the driver cannot decode (a
/// timestamp out of range, a payload that is not JSON), or a NULL in a required column of an
/// app-owned table. It is leased like the events claimed with it; the worker records it
/// FAILED with [`Unreadable::problem`] through [`Store::fail_unreadable`], and the other rows
/// go on.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// Event id.
    pub id: String,
    /// The lease token written by the claim (the fence of [`Store::fail_unreadable`]).
    pub lease_owner: String,
    /// The routingKey, when it could be read (for logs and metrics).
    pub routing_key: Option<String>,
    /// What could not be read, naming the column, e.g. `column occurredAt: value too large
    /// to decode`.
    pub problem: String,
    /// Hold the row's aggregate back, as a FAILED head of an ordered policy with
    /// `blockOnFailure` does (set by the worker, which knows the policies).
    pub block_aggregate: bool,
}

impl Unreadable {
    /// The `lastError` recorded for it.
    pub fn last_error(&self) -> String {
        format!(
            "unreadable row: {} (fix the row, then `outbox dlq replay --id {}`)",
            self.problem, self.id
        )
    }
}

/// Rows a claim (or the lease reaper's look-up) leased, each read on its own: the events,
/// and the rows that could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Leased {
    /// The rows read as events.
    pub events: Vec<ClaimedEvent>,
    /// The rows that could not be read.
    pub unreadable: Vec<Unreadable>,
}

impl Leased {
    /// How many rows in all.
    pub fn len(&self) -> usize {
        self.events.len() + self.unreadable.len()
    }

    /// No row at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A row of `"OutboxRetryPolicy"` that cannot be used (a NULL or out-of-range value). The
/// worker leaves its routingKey's events PENDING, uncharged, until the row is fixed, and
/// `outbox doctor` names it.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokenPolicy {
    /// The row's routingKey (`None` when that is what is NULL).
    pub routing_key: Option<String>,
    /// What is wrong, naming the column.
    pub problem: String,
    /// The row's `ordered` flag, where it could be read: its held events still hold back
    /// the later events of their aggregates under other ordered keys.
    pub ordered: bool,
}

/// The retry-policy table, read row by row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyRows {
    /// The usable rows.
    pub policies: Vec<RetryPolicy>,
    /// The rows that cannot be used.
    pub broken: Vec<BrokenPolicy>,
}

/// Something the database told listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    /// New events were inserted.
    Events,
    /// Retry policies changed.
    Policies,
    /// The worker answering notifications has more events than it can take at once: the
    /// others should claim too (see [`NotificationStream::try_lead`]).
    Help,
}

/// The storage calls the engine needs. Every call is safe to run from many worker processes
/// at once.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Claims up to `limit` due events (PENDING, `nextRetryAt` passed, routingKey not in
    /// `paused`), marks them PROCESSING leased to `owner` for `lease`, and returns them.
    /// Each row is read on its own: one that cannot be read comes back in
    /// [`Leased::unreadable`], never as an error of the whole claim.
    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        paused: &[String],
    ) -> Result<Leased, StoreError>;

    /// Claims up to `limit` events of ordered routingKeys: the head of each aggregate (its
    /// earliest unfinished event of any key in `ordered`), when it is due, its key is not in
    /// `paused`, no producer transaction that could still commit an earlier event of the
    /// aggregate is running, and the aggregate is not blocked by a failed head. At most one
    /// event per aggregate is ever leased.
    async fn claim_ordered(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        ordered: &[String],
        paused: &[String],
    ) -> Result<Leased, StoreError>;

    /// Applies fenced completions; returns how many rows changed (stale ones do not).
    async fn complete(&self, completions: &[Completion]) -> Result<u64, StoreError>;

    /// Records leased rows that could not be read as FAILED, each with
    /// [`Unreadable::last_error`]. Fenced by the lease token alone (a row another worker has
    /// taken over is left alone); returns how many rows changed.
    async fn fail_unreadable(&self, rows: &[Unreadable]) -> Result<u64, StoreError>;

    /// Up to `limit` PROCESSING rows whose lease ran out, each read on its own.
    async fn expired_leases(&self, limit: usize) -> Result<Leased, StoreError>;

    /// Every retry policy, read row by row: a row that cannot be used is in
    /// [`PolicyRows::broken`], never an error of the whole read.
    async fn policies(&self) -> Result<PolicyRows, StoreError>;

    /// Time until the earliest PENDING event (not in `paused`) is due, by the database
    /// clock; zero if one is due now, `None` if there is none.
    async fn next_due(&self, paused: &[String]) -> Result<Option<Duration>, StoreError>;

    /// Deletes up to `limit` rows with `status` (SENT or FAILED) that finished more than
    /// `older_than` ago; returns how many. Each call is one short statement.
    async fn purge(
        &self,
        status: Status,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError>;

    /// PENDING events per routingKey: (routingKey, count, age of the oldest in seconds).
    /// One pass over the PENDING rows; for periodic sampling, not for every request.
    async fn pending_summary(&self) -> Result<Vec<(String, i64, f64)>, StoreError>;

    /// Whether the database answers (the readiness probe): one cheap round trip.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Opens a listener. Notifications arrive on the receiver until the connection breaks,
    /// at which point the receiver ends and the caller listens again. By default the store
    /// has none ([`StoreError::PollOnly`]): the worker then finds new events and policy
    /// changes by its poll and its policy refresh alone.
    async fn listen(&self) -> Result<Box<dyn NotificationStream>, StoreError> {
        Err(StoreError::PollOnly)
    }

    /// Tells the other workers' listeners to claim too ([`Notification::Help`]). By default
    /// nothing (a store whose listeners all lead needs no help).
    async fn call_for_help(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A stream of database notifications that ends when the listening connection breaks.
#[async_trait]
pub trait NotificationStream: Send {
    /// The next notification, or `None` once the connection is gone.
    async fn next(&mut self) -> Option<Notification>;

    /// Tries to become the one listener (among all workers on the outbox) that answers
    /// new-event notifications at once; the others claim on [`Notification::Help`], their
    /// poll and their own timers, so one insert costs one claim however many workers run.
    /// Leadership lasts as long as this stream. By default every listener leads.
    async fn try_lead(&mut self) -> bool {
        true
    }
}
