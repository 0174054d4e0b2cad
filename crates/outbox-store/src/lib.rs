//! The storage layer of the outbox relay. All SQL lives here, one module per backend.
//! The engine only sees [`outbox_core::Store`]; a second backend implements that trait.

pub mod adopt;
#[cfg(any(feature = "sqlite", feature = "mysql"))]
mod cells;
pub mod migration;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(any(feature = "sqlite", feature = "mysql"))]
mod template;

pub use outbox_core::operate::{
    Adoption, Backend, Blocked, Drift, EventFilter, Finding, KeyStats, Lease, ListedEvent, Mapped,
    MigrationReport, MigrationState, Migrator, Operator, Overrides, Page, Problem, ProblemKind,
    SchemaStatus,
};
#[cfg(feature = "postgres")]
pub use postgres::layout::Layout;
#[cfg(feature = "postgres")]
pub use postgres::local::LocalCluster;
#[cfg(feature = "postgres")]
pub use postgres::migrate::MIGRATIONS;
#[cfg(feature = "postgres")]
pub use postgres::resolve::Resolution;
#[cfg(feature = "postgres")]
pub use postgres::{PgStore, PgStoreOptions};

#[cfg(any(feature = "sqlite", feature = "mysql"))]
/// What one non-success result writes: status, retryCount, delay before the next attempt,
/// lastError, and whether the aggregate is blocked behind it; `None` for a success (written
/// in bulk).
pub(crate) fn result_fields(
    c: &outbox_core::Completion,
) -> Option<(
    outbox_core::Status,
    i32,
    std::time::Duration,
    Option<&str>,
    bool,
)> {
    use outbox_core::{CompletionAction as A, Status};
    use std::time::Duration;
    Some(match &c.action {
        A::Sent | A::Delete => return None,
        A::Retry {
            retry_count,
            delay,
            error,
        } => (
            Status::Pending,
            *retry_count,
            *delay,
            Some(error.as_str()),
            false,
        ),
        A::Fail {
            error,
            block_aggregate,
        } => (
            Status::Failed,
            c.retry_count,
            Duration::ZERO,
            Some(error.as_str()),
            *block_aggregate,
        ),
        A::Release { note } => (
            Status::Pending,
            c.retry_count,
            Duration::ZERO,
            note.as_deref(),
            false,
        ),
    })
}

/// `keys` as a JSON array, the one parameter that stands for a list of keys.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn json_list(keys: &[String]) -> String {
    serde_json::to_string(keys).unwrap_or_else(|_| "[]".into())
}

/// The results of `completions` whose action `pick` selects, as a JSON array of
/// `[id, lease owner, retryCount]` (each row's fence), for one statement per kind;
/// `None` when there are none.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn fenced_batch(
    completions: &[outbox_core::Completion],
    pick: fn(&outbox_core::CompletionAction) -> bool,
) -> Option<String> {
    let rows: Vec<(&str, &str, i32)> = completions
        .iter()
        .filter(|c| pick(&c.action))
        .map(|c| (c.id.as_str(), c.lease_owner.as_str(), c.retry_count))
        .collect();
    (!rows.is_empty()).then(|| serde_json::to_string(&rows).unwrap_or_default())
}
