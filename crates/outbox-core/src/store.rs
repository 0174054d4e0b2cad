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

/// A PROCESSING row whose lease has run out.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiredLease {
    /// The row, as it is now.
    pub claimed: ClaimedEvent,
}

/// Something the database told listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    /// New events were inserted.
    Events,
    /// Retry policies changed.
    Policies,
}

/// The storage calls the engine needs. Every call is safe to run from many worker processes
/// at once.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Claims up to `limit` due events (PENDING, `nextRetryAt` passed, routingKey not in
    /// `paused`), marks them PROCESSING leased to `owner` for `lease`, and returns them.
    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        paused: &[String],
    ) -> Result<Vec<ClaimedEvent>, StoreError>;

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
    ) -> Result<Vec<ClaimedEvent>, StoreError>;

    /// Applies fenced completions; returns how many rows changed (stale ones do not).
    async fn complete(&self, completions: &[Completion]) -> Result<u64, StoreError>;

    /// Up to `limit` PROCESSING rows whose lease ran out.
    async fn expired_leases(&self, limit: usize) -> Result<Vec<ExpiredLease>, StoreError>;

    /// Every retry policy.
    async fn policies(&self) -> Result<Vec<RetryPolicy>, StoreError>;

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

    /// Opens a listener. Notifications arrive on the receiver until the connection breaks,
    /// at which point the receiver ends and the caller listens again.
    async fn listen(&self) -> Result<Box<dyn NotificationStream>, StoreError>;
}

/// A stream of database notifications that ends when the listening connection breaks.
#[async_trait]
pub trait NotificationStream: Send {
    /// The next notification, or `None` once the connection is gone.
    async fn next(&mut self) -> Option<Notification>;
}
