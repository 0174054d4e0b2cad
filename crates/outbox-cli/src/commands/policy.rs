//! `outbox policy list|pause|resume`: the retry policies next to this config's routes, and
//! pausing a routingKey (its events stay PENDING; running workers hear of it by NOTIFY).

use super::events::fit;
use super::{actor, failed, query_store};
use crate::config::Config;
use crate::{Failure, Format, EXIT_FAILURE};
use serde_json::json;

pub async fn list(config: &Config, format: Format) -> Result<u8, Failure> {
    let store = query_store(config).await?;
    let rows = store.policies().await.map_err(failed)?;
    let mut policies = rows.policies;
    policies.sort_by(|a, b| a.routing_key.cmp(&b.routing_key));
    let mut broken = rows.broken;
    broken.sort_by(|a, b| a.routing_key.cmp(&b.routing_key));
    let broken_key =
        |b: &outbox_core::BrokenPolicy| b.routing_key.clone().unwrap_or_else(|| "(NULL)".into());
    let sink_of = |key: &str| config.routes.get(key).cloned();
    match format {
        Format::Json => {
            for p in &policies {
                println!(
                    "{}",
                    json!({
                        "routingKey": p.routing_key,
                        "sink": sink_of(&p.routing_key),
                        "maxRetries": p.max_retries,
                        "retryInterval": p.retry_interval_ms,
                        "maxInterval": p.max_interval_ms,
                        "backoffMultiplier": p.backoff_multiplier,
                        "jitter": p.jitter,
                        "ordered": p.ordered,
                        "blockOnFailure": p.block_on_failure,
                        "paused": p.paused,
                    })
                );
            }
            for b in &broken {
                println!(
                    "{}",
                    json!({
                        "routingKey": b.routing_key,
                        "sink": b.routing_key.as_deref().and_then(sink_of),
                        "broken": b.problem,
                    })
                );
            }
        }
        Format::Text => {
            println!(
                "{:<26} {:<16} {:>7} {:>15} {:<8} state",
                "routingKey", "sink", "retries", "interval ms", "ordered"
            );
            for p in &policies {
                let ordered = match (p.ordered, p.block_on_failure) {
                    (true, true) => "blocks",
                    (true, false) => "yes",
                    _ => "no",
                };
                println!(
                    "{:<26} {:<16} {:>7} {:>15} {:<8} {}",
                    fit(&p.routing_key, 26),
                    fit(
                        &sink_of(&p.routing_key).unwrap_or_else(|| "(no route)".into()),
                        16
                    ),
                    p.max_retries,
                    fit(
                        &format!("{}..{}", p.retry_interval_ms, p.max_interval_ms),
                        15
                    ),
                    ordered,
                    if p.paused { "PAUSED" } else { "active" }
                );
            }
            for b in &broken {
                let key = broken_key(b);
                println!(
                    "{:<26} {:<16} UNUSABLE: {} (its events wait until the row is fixed)",
                    fit(&key, 26),
                    fit(&sink_of(&key).unwrap_or_else(|| "(no route)".into()), 16),
                    b.problem
                );
            }
            let unpoliced: Vec<&String> = config
                .routes
                .keys()
                .filter(|k| !policies.iter().any(|p| &p.routing_key == *k))
                .filter(|k| !broken.iter().any(|b| b.routing_key.as_ref() == Some(*k)))
                .collect();
            for k in unpoliced {
                println!(
                    "{:<26} {:<16} (route without an OutboxRetryPolicy row: its events end FAILED)",
                    fit(k, 26),
                    fit(&config.routes[k], 16)
                );
            }
            if policies.is_empty() && broken.is_empty() {
                println!("(no policies)");
            }
        }
    }
    Ok(0)
}

pub async fn set_paused(config: &Config, key: &str, paused: bool) -> Result<u8, Failure> {
    let store = query_store(config).await?;
    let who = actor();
    if !store.set_paused(key, paused, &who).await.map_err(failed)? {
        return Err(Failure::new(
            EXIT_FAILURE,
            format!("no OutboxRetryPolicy row for routingKey '{key}'"),
        ));
    }
    if paused {
        println!("Paused '{key}': its events stay PENDING until `outbox policy resume {key}` (by {who}).");
    } else {
        println!("Resumed '{key}': its events are delivered again (by {who}).");
    }
    Ok(0)
}
