//! The storage layer of the outbox relay. All SQL lives here, one module per backend.
//! The engine only sees [`outbox_core::Store`]; a second backend implements that trait.

pub mod postgres;

pub use postgres::drift::Drift;
pub use postgres::layout::Layout;
pub use postgres::local::LocalCluster;
pub use postgres::migrate::{
    MigrationReport, MigrationState, Problem, ProblemKind, SchemaStatus, MIGRATIONS,
};
pub use postgres::resolve::{Finding, Mapped, Overrides, Resolution};
pub use postgres::{PgStore, PgStoreOptions};
