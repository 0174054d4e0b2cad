//! `outbox dlq list|replay|purge`: the FAILED events — what failed and why, put them back,
//! or delete them. Bulk actions run in batches with progress, are audited in
//! `"OutboxAudit"`, and are safe while workers run (workers never touch FAILED rows).

use super::events::{fit, show_list};
use super::{actor, failed, query_store, Progress};
use crate::config::Config;
use crate::{Failure, Format, EXIT_CONFIG};
use outbox_core::Status;
use outbox_store::{Backend, EventFilter};
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

/// The filter restricted to FAILED events.
fn dead(filter: &EventFilter) -> EventFilter {
    EventFilter {
        status: Some(Status::Failed),
        ..filter.clone()
    }
}

fn selects_something(filter: &EventFilter) -> bool {
    !filter.ids.is_empty()
        || filter.routing_key.is_some()
        || filter.aggregate_id.is_some()
        || filter.since.is_some()
        || filter.error_contains.is_some()
}

pub async fn list(
    config: &Config,
    filter: &EventFilter,
    limit: i64,
    format: Format,
) -> Result<u8, Failure> {
    let store = show_list(config, &dead(filter), limit, format, true).await?;
    if format == Format::Text {
        let blocked = store.blocked_aggregates().await.map_err(failed)?;
        if !blocked.is_empty() {
            println!();
            println!("blocked aggregates (later events wait until the FAILED head is replayed or purged with --unblock):");
            for b in blocked {
                println!(
                    "  {} by {} ({})",
                    fit(&b.aggregate_id, 30),
                    b.event_id,
                    b.routing_key
                );
            }
        }
    }
    Ok(0)
}

/// What a bulk action is about to touch: the count, and the first few.
async fn preview(store: &dyn Backend, filter: &EventFilter) -> Result<i64, Failure> {
    let total = store.count_events(filter).await.map_err(failed)?;
    let first = store.list_events(filter, 20).await.map_err(failed)?;
    println!("{total} FAILED event(s) match:");
    for e in &first {
        println!(
            "  {}  {}  {}",
            e["id"].as_str().unwrap_or(""),
            e["routingKey"].as_str().unwrap_or(""),
            fit(e["lastError"].as_str().unwrap_or(""), 40)
        );
    }
    if total > first.len() as i64 {
        println!("  … and {} more", total - first.len() as i64);
    }
    Ok(total)
}

/// The store, the FAILED-only filter and how many match, after showing them; `None` on a
/// dry run (nothing more to do).
async fn selected(
    config: &Config,
    filter: &EventFilter,
    bulk: &Bulk,
) -> Result<Option<(Box<dyn Backend>, EventFilter, i64)>, Failure> {
    let store = query_store(config).await?;
    let filter = dead(filter);
    let total = preview(&*store, &filter).await?;
    if bulk.dry_run {
        println!("dry run: nothing changed");
        return Ok(None);
    }
    Ok(Some((store, filter, total)))
}

/// Options of a bulk action.
pub struct Bulk {
    pub dry_run: bool,
    pub batch_size: i64,
    /// Events per second at most.
    pub rate: Option<u32>,
}

pub async fn replay(config: &Config, filter: &EventFilter, bulk: &Bulk) -> Result<u8, Failure> {
    if !selects_something(filter) {
        return Err(Failure::new(
            EXIT_CONFIG,
            "say which FAILED events to replay: --id ID (repeatable), --routing-key, --aggregate-id, --since or --error-contains",
        ));
    }
    let Some((store, filter, total)) = selected(config, filter, bulk).await? else {
        return Ok(0);
    };
    let who = actor();
    let done = run_batches(&*store, &filter, bulk, &who, total, Action::Replay).await?;
    println!("Replayed {done} FAILED event(s): PENDING again, retryCount 0, due now (by {who}).");
    Ok(0)
}

/// What a bulk command does to each batch.
#[derive(Clone, Copy)]
enum Action {
    Replay,
    Purge { unblock: bool },
}

/// Applies `action` batch by batch until nothing matches, with progress and the rate cap;
/// returns how many events it changed.
async fn run_batches(
    store: &dyn Backend,
    filter: &EventFilter,
    bulk: &Bulk,
    who: &str,
    total: i64,
    action: Action,
) -> Result<u64, Failure> {
    let (verb, what) = match action {
        Action::Replay => ("replay", "events replayed"),
        Action::Purge { .. } => ("purge", "events deleted"),
    };
    if !store.audits() {
        eprintln!("warning: no OutboxAudit table in {}: this {verb} is not audited (see `outbox schema print`)", store.location());
    }
    let batch = match bulk.rate {
        Some(r) => bulk.batch_size.min(i64::from(r.max(1))),
        None => bulk.batch_size,
    };
    let mut progress = Progress::new(total.max(0) as u64, what);
    let started = Instant::now();
    let mut done: u64 = 0;
    let mut after: Option<String> = None;
    loop {
        // The next chunk of matching ids, in id order: each event is acted on at most once,
        // even if a replayed one fails again while this runs.
        let chunk = store
            .matching_ids(filter, after.as_deref(), batch)
            .await
            .map_err(failed)?;
        let Some(last) = chunk.last().cloned() else {
            break;
        };
        let n = chunk.len() as i64;
        let these = EventFilter {
            ids: chunk,
            status: Some(Status::Failed),
            ..EventFilter::default()
        };
        let ids = match action {
            Action::Replay => store.replay_failed(&these, n, who).await,
            Action::Purge { unblock } => store.purge_failed(&these, n, who, unblock).await,
        }
        .map_err(failed)?;
        done += ids.len() as u64;
        progress.add(ids.len() as u64);
        after = Some(last);
        if n < batch {
            break;
        }
        if let Some(rate) = bulk.rate {
            let due = Duration::from_secs_f64(done as f64 / f64::from(rate.max(1)));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    progress.finish();
    Ok(done)
}

/// Asks on the terminal; refuses when there is none.
fn confirm(question: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            EXIT_CONFIG,
            "refusing to delete without --yes (stdin is not a terminal to ask on)",
        ));
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub async fn purge(
    config: &Config,
    filter: &EventFilter,
    bulk: &Bulk,
    yes: bool,
    unblock: bool,
) -> Result<u8, Failure> {
    if !selects_something(filter) && !yes {
        return Err(Failure::new(
            EXIT_CONFIG,
            "say which FAILED events to delete (--id, --routing-key, --aggregate-id, --since, --error-contains), or pass --yes to delete them all",
        ));
    }
    let Some((store, filter, total)) = selected(config, filter, bulk).await? else {
        return Ok(0);
    };
    if total == 0 {
        println!("Nothing to delete.");
        return Ok(0);
    }
    if !yes && !confirm(&format!("Delete {total} FAILED event(s)?"))? {
        println!("Nothing deleted.");
        return Ok(0);
    }
    let who = actor();
    let done = run_batches(
        &*store,
        &filter,
        bulk,
        &who,
        total,
        Action::Purge { unblock },
    )
    .await?;
    println!("Deleted {done} FAILED event(s) (by {who}).");
    let still = store.blocked_aggregates().await.map_err(failed)?;
    if !still.is_empty() {
        println!(
            "{} aggregate(s) are blocked; release one with `outbox dlq unblock --aggregate-id ID`",
            still.len()
        );
    }
    Ok(0)
}

pub async fn unblock(config: &Config, aggregates: &[String]) -> Result<u8, Failure> {
    if aggregates.is_empty() {
        return Err(Failure::new(
            EXIT_CONFIG,
            "say which aggregates to release: --aggregate-id ID (repeatable)",
        ));
    }
    let store = query_store(config).await?;
    let who = actor();
    let released = store.unblock(aggregates, &who).await.map_err(failed)?;
    for a in aggregates {
        if released.contains(a) {
            println!("Released aggregate {a}: its next event goes ahead (by {who}).");
        } else {
            println!("Aggregate {a} was not blocked.");
        }
    }
    Ok(0)
}
