//! `outbox stats`, `outbox events list` and `outbox events show`: what is in the outbox,
//! for people (tables that fit 80 columns) and scripts (`--format json`).

use super::{failed, query_store};
use crate::config::Config;
use crate::{Failure, Format, EXIT_FAILURE};
use outbox_core::conf::format_duration;
use outbox_core::Status;
use outbox_store::{Backend, EventFilter, KeyStats, ListedEvent};
use serde_json::{json, Value};
use std::time::Duration;

/// "12s", "3m", "2h" (whole units, for columns).
fn age(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) => format_duration(Duration::from_secs(s as u64)),
        None => "-".into(),
    }
}

/// Cuts `text` to `width` characters, marking the cut.
pub fn fit(text: &str, width: usize) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= width {
        one_line
    } else {
        let mut s: String = one_line.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

pub async fn stats(config: &Config, format: Format) -> Result<u8, Failure> {
    let store = query_store(config).await?;
    let keys = store.stats(true).await.map_err(failed)?;
    let blocked = store.blocked_aggregates().await.map_err(failed)?;
    let sum = |f: fn(&KeyStats) -> i64| keys.iter().map(f).sum::<i64>();
    let oldest = keys
        .iter()
        .filter_map(|k| k.oldest_pending_seconds)
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
    let (pending, processing, sent, failed) = (
        sum(|k| k.pending),
        sum(|k| k.processing),
        sum(|k| k.sent),
        sum(|k| k.failed),
    );
    let retrying = sum(|k| k.retrying);
    match format {
        Format::Json => {
            let doc = json!({
                "schema": store.schema(),
                "byStatus": {"PENDING": pending, "PROCESSING": processing, "SENT": sent, "FAILED": failed},
                "retrying": retrying,
                "oldestPendingSeconds": oldest,
                "byRoutingKey": keys,
                "blockedAggregates": blocked,
            });
            println!("{doc}");
        }
        Format::Text => {
            println!(
                "{:<24} {:>8} {:>6} {:>9} {:>7} {:>8} {:>8}",
                "routingKey", "PENDING", "PROC", "SENT", "FAILED", "retrying", "lag"
            );
            for k in &keys {
                println!(
                    "{:<24} {:>8} {:>6} {:>9} {:>7} {:>8} {:>8}",
                    fit(&k.routing_key, 24),
                    k.pending,
                    k.processing,
                    k.sent,
                    k.failed,
                    k.retrying,
                    age(k.oldest_pending_seconds)
                );
            }
            println!(
                "{:<24} {:>8} {:>6} {:>9} {:>7} {:>8} {:>8}",
                "total",
                pending,
                processing,
                sent,
                failed,
                retrying,
                age(oldest)
            );
            println!();
            println!(
                "lag = age of the oldest PENDING event; retrying = PENDING after a failed attempt"
            );
            if !blocked.is_empty() {
                println!(
                    "{} aggregate(s) blocked by a FAILED head (see `outbox dlq list`)",
                    blocked.len()
                );
            }
        }
    }
    Ok(0)
}

/// Attempts made so far: retryCount, plus the one that finished it (or is running).
fn attempts(e: &ListedEvent) -> i64 {
    let retries = e["retryCount"].as_i64().unwrap_or(0);
    match e.status() {
        Some(Status::Sent | Status::Failed | Status::Processing) => retries + 1,
        _ => retries,
    }
}

/// Prints events as a table, or as one JSON object per line.
pub fn print_events(events: &[ListedEvent], format: Format, with_error: bool) {
    match format {
        Format::Json => {
            for e in events {
                println!("{}", e.to_json(&[]));
            }
        }
        Format::Text => {
            if with_error {
                println!(
                    "{:<20} {:<18} {:<11} {:>3} lastError",
                    "id", "routingKey", "failed (UTC)", "try"
                );
            } else {
                println!(
                    "{:<20} {:<10} {:<18} {:<14} {:>3} {:<8}",
                    "id", "status", "routingKey", "aggregateId", "try", "occurred"
                );
            }
            for e in events {
                let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
                if with_error {
                    // "2026-11-26T22:21:22.066+00:00" → "11-26 22:21"
                    let when = s("processedAt");
                    let when = when.get(5..16).unwrap_or(&when).replace('T', " ");
                    println!(
                        "{:<20} {:<18} {:<11} {:>3} {}",
                        fit(&s("id"), 20),
                        fit(&s("routingKey"), 18),
                        when,
                        attempts(e),
                        fit(&s("lastError"), 22)
                    );
                } else {
                    let occurred = s("occurredAt");
                    println!(
                        "{:<20} {:<10} {:<18} {:<14} {:>3} {:<8}",
                        fit(&s("id"), 20),
                        s("status"),
                        fit(&s("routingKey"), 18),
                        fit(&s("aggregateId"), 14),
                        attempts(e),
                        occurred.get(11..19).unwrap_or(&occurred)
                    );
                }
            }
            if events.is_empty() {
                println!("(no events)");
            }
        }
    }
}

pub async fn list(
    config: &Config,
    filter: &EventFilter,
    limit: i64,
    format: Format,
) -> Result<u8, Failure> {
    show_list(config, filter, limit, format, false).await?;
    Ok(0)
}

/// Lists the events matching `filter` (with their last error when `with_error`); returns
/// the store for more questions.
pub async fn show_list(
    config: &Config,
    filter: &EventFilter,
    limit: i64,
    format: Format,
    with_error: bool,
) -> Result<Box<dyn Backend>, Failure> {
    let store = query_store(config).await?;
    let events = store.list_events(filter, limit).await.map_err(failed)?;
    print_events(&events, format, with_error);
    Ok(store)
}

pub async fn show(config: &Config, id: &str, format: Format) -> Result<u8, Failure> {
    let store = query_store(config).await?;
    let filter = EventFilter {
        ids: vec![id.to_string()],
        ..EventFilter::default()
    };
    let Some(event) = store
        .list_events(&filter, 1)
        .await
        .map_err(failed)?
        .into_iter()
        .next()
    else {
        return Err(Failure::new(
            EXIT_FAILURE,
            format!("no event with id '{id}' in {}", store.location()),
        ));
    };
    let made = attempts(&event);
    let next = match event.status() {
        Some(Status::Pending) => event["nextRetryAt"].clone(),
        _ => Value::Null,
    };
    match format {
        Format::Json => {
            println!(
                "{}",
                event.to_json(&[("attempts", json!(made)), ("nextAttemptAt", next)])
            );
        }
        Format::Text => {
            if let Value::Object(map) = &event.fields {
                for (k, v) in map {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => "-".into(),
                        other => other.to_string(),
                    };
                    println!("{k:>14}: {text}");
                }
            }
            // As stored, never through f64.
            let payload = event.payload.as_ref().map_or("-", |p| p.get());
            println!("{:>14}: {payload}", "payload");
            println!("{:>14}: {made}", "attempts");
            if let Some(at) = next.as_str() {
                println!("{:>14}: {at}", "next attempt");
            }
        }
    }
    Ok(0)
}
