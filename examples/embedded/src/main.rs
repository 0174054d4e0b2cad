//! Embedding the outbox worker in your own Rust service, with a handler written in code.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/reserve_manage \
//!   cargo run -p outbox-example-embedded
//! ```
//! then insert an event with routingKey `audit.record-auth-log` (see the README) and watch
//! it printed here. Ctrl-C stops the worker cleanly.

use outbox_worker::{
    async_trait, ClaimedEvent, Migrator, Outcome, PgStore, PgStoreOptions, Sink, Worker,
    WorkerOptions,
};
use std::sync::Arc;

/// The application's own handler: here it prints the event; a real one would call a
/// service, write to another store, and so on. Returning `Outcome::Retry` schedules another
/// attempt per the routingKey's policy; `Outcome::Reject` fails the event for good.
struct AuditLogHandler;

#[async_trait]
impl Sink for AuditLogHandler {
    async fn deliver(&self, claimed: &ClaimedEvent) -> Outcome {
        let e = &claimed.event;
        // `payload.get()` is the JSON text as stored; `to_value()` parses it to look inside.
        if !e.payload.to_value().is_ok_and(|v| v.is_object()) {
            return Outcome::reject("payload must be a JSON object");
        }
        println!(
            "audit: {} {} for {} (attempt {}) payload={}",
            e.event_name,
            e.id,
            e.aggregate_id,
            claimed.attempt(),
            e.payload
        );
        Outcome::Delivered
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(false).init();
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/reserve_manage")?;
    let store = PgStore::new(&PgStoreOptions::new(url))?;
    store.deploy().await?;

    let worker = Worker::new(Arc::new(store), WorkerOptions::default()).route(
        "audit.record-auth-log",
        "audit-log-handler",
        Arc::new(AuditLogHandler),
    );
    let summary = worker
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    println!("stopped: {summary:?}");
    Ok(())
}
