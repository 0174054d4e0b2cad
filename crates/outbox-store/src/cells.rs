//! Reading one row value by value, the same way on every store that reads rows itself
//! (SQLite, MySQL): a column of the wrong type, a NULL where a value is required, a payload
//! that is not JSON — each makes its own row unreadable (or its policy unusable), never the
//! call. A store says how to read one cell of its rows ([`Cells`]); the rows of events and
//! policies are read here once.

use chrono::{DateTime, Utc};
use outbox_core::{
    BrokenPolicy, ClaimedEvent, Leased, OutboxEvent, Payload, RetryPolicy, Unreadable,
};

/// How one store reads the cells of its rows; each error names the column.
pub(crate) trait Cells {
    /// Text; `None` for NULL.
    fn text_opt(&self, i: usize, name: &str) -> Result<Option<String>, String>;
    /// An integer; `None` for NULL.
    fn int_opt(&self, i: usize, name: &str) -> Result<Option<i64>, String>;
    /// A number; `None` for NULL.
    fn real_opt(&self, i: usize, name: &str) -> Result<Option<f64>, String>;
    /// A boolean; `None` for NULL.
    fn bool_opt(&self, i: usize, name: &str) -> Result<Option<bool>, String>;
    /// A timestamp, required.
    fn timestamp(&self, i: usize, name: &str) -> Result<DateTime<Utc>, String>;

    /// Text, required.
    fn text(&self, i: usize, name: &str) -> Result<String, String> {
        self.text_opt(i, name)?
            .ok_or_else(|| format!("column {name}: NULL in a required column"))
    }

    /// A 32-bit integer; `None` for NULL.
    fn int32_opt(&self, i: usize, name: &str) -> Result<Option<i32>, String> {
        match self.int_opt(i, name)? {
            None => Ok(None),
            Some(n) => i32::try_from(n)
                .map(Some)
                .map_err(|_| format!("column {name}: {n} is out of range for a 32-bit integer")),
        }
    }
}

/// One leased row, its columns in the order `id, eventName, eventType, aggregateId,
/// routingKey, payload, headers, occurredAt, retryCount, maxRetries, retryInterval,
/// maxInterval, lockedBy`. `owner` is the lease token the claim wrote; `None` takes the row's
/// own `lockedBy` (the lease reaper).
pub(crate) fn leased_row(
    row: &impl Cells,
    owner: Option<&str>,
) -> Result<ClaimedEvent, Unreadable> {
    let id = row.text_opt(0, "id").ok().flatten().unwrap_or_default();
    let lease_owner = match owner {
        Some(o) => o.to_string(),
        None => row
            .text_opt(12, "lockedBy")
            .ok()
            .flatten()
            .unwrap_or_default(),
    };
    let read = || -> Result<OutboxEvent, String> {
        let payload = Payload::from_json(row.text(5, "payload")?)
            .map_err(|e| format!("column payload: not JSON ({e})"))?;
        let headers = match row.text_opt(6, "headers")? {
            None => None,
            Some(h) => Some(
                serde_json::from_str(&h).map_err(|e| format!("column headers: not JSON ({e})"))?,
            ),
        };
        Ok(OutboxEvent {
            id: row.text(0, "id")?,
            event_name: row.text(1, "eventName")?,
            event_type: row.text(2, "eventType")?,
            aggregate_id: row.text(3, "aggregateId")?,
            routing_key: row.text(4, "routingKey")?,
            payload,
            headers,
            occurred_at: row.timestamp(7, "occurredAt")?,
            retry_count: row.int32_opt(8, "retryCount")?.unwrap_or(0),
            max_retries: row.int32_opt(9, "maxRetries")?,
            retry_interval: row.int32_opt(10, "retryInterval")?,
            max_interval: row.int32_opt(11, "maxInterval")?,
        })
    };
    match read() {
        Ok(event) => Ok(ClaimedEvent { event, lease_owner }),
        Err(problem) => Err(Unreadable {
            id,
            lease_owner,
            routing_key: row.text_opt(4, "routingKey").ok().flatten(),
            problem,
            block_aggregate: false,
        }),
    }
}

/// Rows read each on its own, into events and the rows that could not be read.
pub(crate) fn leased<'a, R: Cells + 'a>(
    rows: impl IntoIterator<Item = &'a R>,
    owner: Option<&str>,
) -> Leased {
    let mut out = Leased::default();
    for row in rows {
        match leased_row(row, owner) {
            Ok(e) => out.events.push(e),
            Err(u) => out.unreadable.push(u),
        }
    }
    out
}

/// One policy row, its columns in the order `routingKey, maxRetries, retryInterval,
/// maxInterval, backoffMultiplier, jitter, ordered, paused, blockOnFailure`: the policy, or
/// why it cannot be used.
pub(crate) fn policy_row(r: &impl Cells) -> Result<RetryPolicy, BrokenPolicy> {
    let read = || -> Result<RetryPolicy, String> {
        let need = |v: Option<i64>, name: &str| {
            v.ok_or_else(|| format!("column {name}: NULL in a required column"))
        };
        let policy = RetryPolicy {
            routing_key: r
                .text_opt(0, "routingKey")?
                .ok_or("column routingKey: NULL")?,
            max_retries: r
                .int32_opt(1, "maxRetries")?
                .ok_or("column maxRetries: NULL in a required column")?,
            retry_interval_ms: need(r.int_opt(2, "retryInterval")?, "retryInterval")?,
            max_interval_ms: need(r.int_opt(3, "maxInterval")?, "maxInterval")?,
            backoff_multiplier: r.real_opt(4, "backoffMultiplier")?.unwrap_or(2.0),
            jitter: r.real_opt(5, "jitter")?.unwrap_or(0.0),
            ordered: r.bool_opt(6, "ordered")?.unwrap_or(false),
            paused: r.bool_opt(7, "paused")?.unwrap_or(false),
            block_on_failure: r.bool_opt(8, "blockOnFailure")?.unwrap_or(false),
        };
        match policy.problem() {
            Some(p) => Err(p),
            None => Ok(policy),
        }
    };
    read().map_err(|problem| BrokenPolicy {
        routing_key: r.text_opt(0, "routingKey").ok().flatten(),
        problem,
        ordered: r.bool_opt(6, "ordered").ok().flatten().unwrap_or(false),
    })
}
