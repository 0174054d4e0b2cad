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

pub use outbox_core::operate::{
    Adoption, Backend, Blocked, Drift, EventFilter, Finding, KeyStats, ListedEvent, Mapped,
    MigrationReport, MigrationState, Migrator, Operator, Overrides, Problem, ProblemKind,
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
