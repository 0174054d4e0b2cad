//! The storage layer of the outbox relay. All SQL lives here, one module per backend.
//! The engine only sees [`outbox_core::Store`]; a second backend implements that trait.

pub mod migration;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use outbox_core::operate::{
    Backend, Blocked, Drift, EventFilter, KeyStats, ListedEvent, MigrationReport, MigrationState,
    Migrator, Operator, Problem, ProblemKind, SchemaStatus,
};
#[cfg(feature = "postgres")]
pub use postgres::layout::Layout;
#[cfg(feature = "postgres")]
pub use postgres::local::LocalCluster;
#[cfg(feature = "postgres")]
pub use postgres::migrate::MIGRATIONS;
#[cfg(feature = "postgres")]
pub use postgres::resolve::{Finding, Mapped, Overrides, Resolution};
#[cfg(feature = "postgres")]
pub use postgres::{PgStore, PgStoreOptions};
