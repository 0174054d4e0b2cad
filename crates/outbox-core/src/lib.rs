//! Domain types of the outbox relay: events, retry policies, delivery outcomes, the pure
//! backoff math, and the two traits the engine is written against — [`Sink`] (where an
//! event goes) and [`Store`] (where events live). Nothing here does I/O.

pub mod breaker;
pub mod conf;
pub mod event;
pub mod operate;
pub mod policy;
pub mod sink;
pub mod store;
pub mod throttle;

pub use breaker::BreakerSettings;
pub use event::{ClaimedEvent, OutboxEvent, Payload, Status};
pub use operate::{
    Adoption, Backend, Blocked, Drift, EventFilter, Finding, KeyStats, Lease, ListedEvent, Mapped,
    MigrationReport, MigrationState, Migrator, Operator, Overrides, Page, Problem, ProblemKind,
    SchemaStatus,
};
pub use policy::{Decision, RetryPolicy, RetrySettings};
pub use sink::{Outcome, Sink};
pub use store::{
    BrokenPolicy, Completion, CompletionAction, Leased, Notification, NotificationStream,
    PolicyRows, Store, StoreError, Unreadable,
};
pub use throttle::Throttle;

/// Re-exported so implementors of [`Sink`] need no extra dependency.
pub use async_trait::async_trait;
