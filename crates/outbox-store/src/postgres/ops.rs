//! Operator commands' SQL: statistics, listing and showing events, replaying and purging
//! FAILED events, pausing policies — each action audited. Every statement goes through the
//! [`Layout`], so app-owned tables with other names work the same.

use super::layout::{Layout, EVENT_TIMESTAMPS};
use super::{classify, quote_ident, PgStore};
use async_trait::async_trait;
use outbox_core::{Lease, Operator, Status, StoreError};
use serde_json::Value;
use std::time::Duration;
use tokio_postgres::types::ToSql;

pub use outbox_core::operate::{Blocked, EventFilter, KeyStats, ListedEvent};

impl Layout {
    /// The event as a JSON object with the contract's (logical) column names.
    fn event_json(&self, alias: &str) -> String {
        let mut parts = Vec::new();
        // The payload comes as a column of its own, its text as stored (see `ListedEvent`).
        for logical in self
            .event_columns
            .keys()
            .filter(|c| c.as_str() != "payload")
        {
            let value = if EVENT_TIMESTAMPS.contains(&logical.as_str()) {
                self.ts_read(alias, logical)
            } else if logical == "status" {
                format!("{alias}.{}::text", self.ev(logical))
            } else {
                format!("{alias}.{}", self.ev(logical))
            };
            parts.push(format!("'{}', {value}", logical.replace('\'', "''")));
        }
        // json, not jsonb, and read as text: a `json` payload that jsonb rejects (a
        // `\u0000`) must not fail a listing. json_build_object takes at most 100 arguments;
        // 21 columns need 42.
        format!(
            "json_build_object({})::text, {alias}.{}::text",
            parts.join(", "),
            self.ev("payload")
        )
    }

    /// The filter with parameters `$1`..`$8` (ids, status, routingKey, aggregateId, since
    /// seconds, error text, occurred from, occurred before); a NULL or empty parameter does
    /// not filter. Statements number their own parameters from `$9`.
    fn filter_sql(&self, alias: &str) -> String {
        let error = match self.ev_opt("lastError") {
            Some(c) => format!("strpos(lower(COALESCE({alias}.{c}, '')), lower($6::text)) > 0"),
            None => "false".into(),
        };
        format!(
            "(cardinality($1::text[]) = 0 OR {alias}.{id}::text = ANY($1::text[])) \
             AND ($2::text IS NULL OR {alias}.{status}::text = $2::text) \
             AND ($3::text IS NULL OR {alias}.{routing}::text = $3::text) \
             AND ($4::text IS NULL OR {alias}.{aggregate}::text = $4::text) \
             AND ($5::float8 IS NULL OR {occurred} >= now() - make_interval(secs => $5::float8)) \
             AND ($6::text IS NULL OR {error}) \
             AND ($7::timestamptz IS NULL OR {occurred} >= $7::timestamptz) \
             AND ($8::timestamptz IS NULL OR {occurred} < $8::timestamptz)",
            id = self.ev("id"),
            status = self.ev("status"),
            routing = self.ev("routingKey"),
            aggregate = self.ev("aggregateId"),
            occurred = self.ts_read(alias, "occurredAt"),
        )
    }

    /// The newest-first ordering of listings: FAILED by when they failed, others by occurredAt.
    fn newest_first(&self, alias: &str, failed: bool) -> String {
        let occurred = self.ts_read(alias, "occurredAt");
        match self.ev_opt("processedAt") {
            Some(_) if failed => format!(
                "{} DESC NULLS LAST, {occurred} DESC",
                self.ts_read(alias, "processedAt")
            ),
            _ => format!("{occurred} DESC, {alias}.{} DESC", self.ev("id")),
        }
    }

    fn table(&self, name: &str) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(name))
    }
}

/// A text column of an operator query; `(NULL)` where an app-owned table holds a NULL,
/// so one odd row never fails a listing.
pub(crate) fn text_or_null(row: &tokio_postgres::Row, i: usize) -> String {
    row.try_get::<_, Option<String>>(i)
        .ok()
        .flatten()
        .unwrap_or_else(|| "(NULL)".to_string())
}

/// One row of a listing; a row whose text cannot be parsed (a lone surrogate escape in a
/// `json` column) is shown with the reason instead.
fn listed_event(row: &tokio_postgres::Row) -> ListedEvent {
    let text = row.try_get::<_, Option<String>>(0).ok().flatten();
    let fields = match text.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            serde_json::json!({ "unreadable": format!("this row cannot be shown as JSON: {e}") })
        }
        None => Value::Null,
    };
    let payload = row
        .try_get::<_, Option<String>>(1)
        .ok()
        .flatten()
        .and_then(|p| serde_json::value::RawValue::from_string(p).ok());
    ListedEvent { fields, payload }
}

fn filter_params(f: &EventFilter) -> Vec<Box<dyn ToSql + Sync + Send>> {
    vec![
        Box::new(f.ids.clone()),
        Box::new(f.status.map(|s| s.as_str().to_string())),
        Box::new(f.routing_key.clone()),
        Box::new(f.aggregate_id.clone()),
        Box::new(f.since.map(|d| d.as_secs_f64())),
        Box::new(f.error_contains.clone()),
        Box::new(f.occurred_from),
        Box::new(f.occurred_to),
    ]
}

fn refs(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

#[async_trait]
impl Operator for PgStore {
    /// Events matching `filter`, newest first, at most `limit`, as JSON objects with the
    /// contract's column names.
    async fn list_events(
        &self,
        filter: &EventFilter,
        limit: i64,
    ) -> Result<Vec<ListedEvent>, StoreError> {
        let l = &self.layout;
        let failed = filter.status == Some(Status::Failed);
        // Pages go by (occurredAt, id), a missing occurredAt as the oldest; a page after an
        // event starts after its stored values (no timestamp goes through text and back).
        let id = l.ev("id");
        let key = |alias: &str| {
            format!(
                "COALESCE({}, '-infinity'::timestamptz)",
                l.ts_read(alias, "occurredAt")
            )
        };
        let order = match filter.page {
            Some(_) => format!("{} DESC, e.{id} DESC", key("e")),
            None => l.newest_first("e", failed),
        };
        let sql = format!(
            "SELECT {} FROM {ev} AS e WHERE {} \
               AND ($10::text IS NULL OR ({key_e}, e.{id}) < (SELECT {key_c}, c.{id} FROM {ev} AS c WHERE c.{id}::text = $10::text)) \
             ORDER BY {order} LIMIT $9",
            l.event_json("e"),
            l.filter_sql("e"),
            ev = l.events(),
            key_e = key("e"),
            key_c = key("c"),
        );
        let mut params = filter_params(filter);
        params.push(Box::new(limit));
        params.push(Box::new(filter.page_after().map(str::to_string)));
        let client = self.client().await?;
        let rows = client.query(&sql, &refs(&params)).await.map_err(classify)?;
        Ok(rows.iter().map(listed_event).collect())
    }

    /// Ids of events matching `filter`, in id order, after `after`, at most `limit`: bulk
    /// commands walk them in chunks, so each event is acted on at most once per run (a
    /// replayed event that fails again is not replayed again).
    async fn matching_ids(
        &self,
        filter: &EventFilter,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let l = &self.layout;
        let id = l.ev("id");
        let sql = format!(
            "SELECT e.{id}::text FROM {} AS e WHERE {} AND ($9::text IS NULL OR e.{id}::text > $9::text) \
             ORDER BY e.{id}::text LIMIT $10",
            l.events(),
            l.filter_sql("e")
        );
        let mut params = filter_params(filter);
        params.push(Box::new(after.map(str::to_string)));
        params.push(Box::new(limit));
        let client = self.client().await?;
        let rows = client.query(&sql, &refs(&params)).await.map_err(classify)?;
        Ok(rows.iter().map(|r| text_or_null(r, 0)).collect())
    }

    /// How many events match `filter`.
    async fn count_events(&self, filter: &EventFilter) -> Result<i64, StoreError> {
        let l = &self.layout;
        let sql = format!(
            "SELECT count(*)::int8 FROM {} AS e WHERE {}",
            l.events(),
            l.filter_sql("e")
        );
        let params = filter_params(filter);
        let client = self.client().await?;
        let row = client
            .query_one(&sql, &refs(&params))
            .await
            .map_err(classify)?;
        Ok(row.get(0))
    }

    /// Counts per routingKey (one scan of the table, or of the unfinished rows).
    async fn stats(&self, sent: bool) -> Result<Vec<KeyStats>, StoreError> {
        let l = &self.layout;
        let status = l.ev("status");
        // Without SENT: one arm per state, so each is read through its own (partial) index.
        let source = if sent {
            format!("{} AS e", l.events())
        } else {
            let arms: Vec<String> = ["'PENDING'", "'PROCESSING'", "'FAILED'"]
                .iter()
                .map(|s| {
                    format!(
                        "SELECT * FROM {} WHERE {status} = {}",
                        l.events(),
                        l.status_value(s)
                    )
                })
                .collect();
            format!("({}) AS e", arms.join(" UNION ALL "))
        };
        let sql = format!(
            "SELECT e.{routing}::text,
                    count(*) FILTER (WHERE e.{status}::text = 'PENDING')::int8,
                    count(*) FILTER (WHERE e.{status}::text = 'PROCESSING')::int8,
                    count(*) FILTER (WHERE e.{status}::text = 'SENT')::int8,
                    count(*) FILTER (WHERE e.{status}::text = 'FAILED')::int8,
                    count(*) FILTER (WHERE e.{status}::text = 'PENDING' AND e.{retry} > 0)::int8,
                    {oldest}
               FROM {source} GROUP BY 1 ORDER BY 1",
            oldest = super::layout::seconds_between(
                "now()",
                &format!(
                    "min({occurred}) FILTER (WHERE e.{status}::text = 'PENDING' AND isfinite({occurred}))",
                    occurred = l.ts_read("e", "occurredAt")
                )
            ),
            routing = l.ev("routingKey"),
            retry = l.ev("retryCount"),
        );
        let client = self.client().await?;
        let rows = client.query(&sql, &[]).await.map_err(classify)?;
        Ok(rows
            .iter()
            .map(|r| KeyStats {
                routing_key: text_or_null(r, 0),
                pending: r.get(1),
                processing: r.get(2),
                sent: r.get(3),
                failed: r.get(4),
                retrying: r.get(5),
                oldest_pending_seconds: r.get::<_, Option<f64>>(6).map(|s| s.max(0.0)),
            })
            .collect())
    }

    /// The planner's estimate of the table's rows: from its current size and density, so
    /// it holds even where the table was never analyzed.
    async fn estimated_rows(&self) -> Result<Option<i64>, StoreError> {
        let sql = format!("SELECT 1 FROM {}", self.layout.events());
        self.plan_rows(&sql, Vec::new()).await
    }

    /// The planner's row estimate for the filter (with the actual values: statements are
    /// planned with them), from the table's statistics.
    async fn estimated_count(&self, filter: &EventFilter) -> Result<Option<i64>, StoreError> {
        let l = &self.layout;
        let sql = format!(
            "SELECT 1 FROM {} AS e WHERE {}",
            l.events(),
            l.filter_sql("e")
        );
        self.plan_rows(&sql, filter_params(filter)).await
    }

    async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let l = &self.layout;
        let sql = format!(
            "SELECT e.{owner}::text, count(*)::int8, max({until}) FROM {ev} AS e \
              WHERE e.{status} = {processing} GROUP BY 1 ORDER BY 1",
            owner = l.ev("lockedBy"),
            until = l.ts_read("e", "lockedUntil"),
            ev = l.events(),
            status = l.ev("status"),
            processing = l.status_value("'PROCESSING'"),
        );
        let client = self.client().await?;
        let rows = client.query(&sql, &[]).await.map_err(classify)?;
        Ok(rows
            .iter()
            .map(|r| Lease {
                owner: text_or_null(r, 0),
                events: r.get(1),
                lease_until: r.try_get(2).ok().flatten(),
            })
            .collect())
    }

    /// Aggregates held back by a failed head (none when the table does not exist).
    async fn blocked_aggregates(&self) -> Result<Vec<Blocked>, StoreError> {
        let Some(t) = &self.layout.blocked_table else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT \"aggregateId\"::text, \"eventId\"::text, \"routingKey\"::text FROM {} ORDER BY \"blockedAt\"",
            self.layout.table(t)
        );
        let client = self.client().await?;
        let rows = client.query(&sql, &[]).await.map_err(classify)?;
        Ok(rows
            .iter()
            .map(|r| Blocked {
                aggregate_id: text_or_null(r, 0),
                event_id: text_or_null(r, 1),
                routing_key: text_or_null(r, 2),
            })
            .collect())
    }

    /// Whether operator actions are audited (the audit table exists).
    fn audits(&self) -> bool {
        self.layout.audit_table.is_some()
    }

    /// Puts up to `batch` FAILED events matching `filter` back to PENDING (retryCount 0, due
    /// now, no lease, processedAt cleared; lastError kept), releases the aggregates they
    /// blocked, and audits each as done by `actor`. Returns the ids replayed; call again
    /// until it returns fewer than `batch`.
    async fn replay_failed(
        &self,
        filter: &EventFilter,
        batch: i64,
        actor: &str,
    ) -> Result<Vec<String>, StoreError> {
        let l = &self.layout;
        let (id, status) = (l.ev("id"), l.ev("status"));
        let mut sets = vec![
            format!("{status} = {}", l.status_value("'PENDING'")),
            format!("{} = 0", l.ev("retryCount")),
            format!(
                "{} = {}",
                l.ev("nextRetryAt"),
                l.ts_value("nextRetryAt", "now()")
            ),
            format!("{} = NULL", l.ev("lockedBy")),
            format!("{} = NULL", l.ev("lockedUntil")),
        ];
        if let Some(c) = l.ev_opt("processedAt") {
            sets.push(format!("{c} = NULL"));
        }
        let change = format!(
            "UPDATE {ev} AS e SET {sets} FROM picked WHERE e.{id} = picked.pid AND e.{status}::text = 'FAILED'",
            ev = l.events(),
            sets = sets.join(", "),
        );
        let sql = self.failed_batch_sql(&change, true, "replay");
        self.batch_action(&sql, filter, batch, actor).await
    }

    /// Deletes up to `batch` FAILED events matching `filter`, audited. Aggregates they
    /// blocked stay blocked unless `unblock`. Returns the ids deleted.
    async fn purge_failed(
        &self,
        filter: &EventFilter,
        batch: i64,
        actor: &str,
        unblock: bool,
    ) -> Result<Vec<String>, StoreError> {
        let l = &self.layout;
        let id = l.ev("id");
        let change = format!(
            "DELETE FROM {ev} AS e USING picked WHERE e.{id} = picked.pid",
            ev = l.events()
        );
        let action = if unblock { "purge+unblock" } else { "purge" };
        let sql = self.failed_batch_sql(&change, unblock, action);
        self.batch_action(&sql, filter, batch, actor).await
    }

    /// Releases blocked `aggregates` (audited); returns the ones that were blocked.
    async fn unblock(&self, aggregates: &[String], actor: &str) -> Result<Vec<String>, StoreError> {
        let l = &self.layout;
        let Some(t) = &l.blocked_table else {
            return Ok(Vec::new());
        };
        let audit = match &l.audit_table {
            Some(a) => format!(
                ", audit AS (INSERT INTO {} (\"actor\", \"action\", \"eventId\", \"routingKey\", \"detail\") \
                 SELECT $2::text, 'unblock', id, routing, 'aggregate ' || agg FROM done)",
                l.table(a)
            ),
            None => String::new(),
        };
        let sql = format!(
            "WITH done AS (DELETE FROM {} AS b WHERE b.\"aggregateId\" = ANY($1::text[]) \
             RETURNING b.\"aggregateId\"::text AS agg, b.\"eventId\"::text AS id, b.\"routingKey\"::text AS routing){audit} \
             SELECT agg FROM done",
            l.table(t)
        );
        let client = self.client().await?;
        let rows = if l.audit_table.is_some() {
            client.query(&sql, &[&aggregates, &actor]).await
        } else {
            client.query(&sql, &[&aggregates]).await
        }
        .map_err(classify)?;
        Ok(rows.iter().map(|r| text_or_null(r, 0)).collect())
    }

    /// Sets `paused` on the policy of `routing_key`, audited; false when there is no such
    /// policy. The policy table's NOTIFY trigger tells running workers.
    async fn set_paused(
        &self,
        routing_key: &str,
        paused: bool,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let l = &self.layout;
        let Some(col) = l.policy_columns.get("paused") else {
            return Err(StoreError::Query(format!(
                "the policy table {} has no paused column; add it: ALTER TABLE {} ADD COLUMN \"paused\" boolean NOT NULL DEFAULT false;",
                l.policies(),
                l.policies()
            )));
        };
        let key = l
            .policy_columns
            .get("routingKey")
            .cloned()
            .unwrap_or_else(|| "routingKey".into());
        let action = if paused { "pause" } else { "resume" };
        let audit = match &l.audit_table {
            Some(t) => format!(
                ", audit AS (INSERT INTO {} (\"actor\", \"action\", \"routingKey\") SELECT $3::text, '{action}', k FROM done)",
                l.table(t)
            ),
            None => String::new(),
        };
        let sql = format!(
            "WITH done AS (UPDATE {pol} SET {col} = $2 WHERE {key}::text = $1 RETURNING {key}::text AS k){audit}
             SELECT count(*)::int8 FROM done",
            pol = l.policies(),
            col = quote_ident(col),
            key = quote_ident(&key),
        );
        let client = self.client().await?;
        let row = if l.audit_table.is_some() {
            client
                .query_one(&sql, &[&routing_key, &paused, &actor])
                .await
        } else {
            client.query_one(&sql, &[&routing_key, &paused]).await
        }
        .map_err(classify)?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    async fn purgeable(&self, status: Status, older_than: Duration) -> Result<u64, StoreError> {
        let (_, count) = self.layout.purge_statements(status);
        let client = self.client().await?;
        let n: i64 = client
            .query_one(&count, &[&older_than.as_secs_f64()])
            .await
            .map_err(classify)?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

impl PgStore {
    /// The rows the planner expects `sql` (a SELECT) to return with `params`.
    async fn plan_rows(
        &self,
        sql: &str,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
    ) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(&format!("EXPLAIN (FORMAT JSON) {sql}"), &refs(&params))
            .await
            .map_err(classify)?;
        let plan: Value = row
            .try_get(0)
            .map_err(|e| StoreError::Query(e.to_string()))?;
        Ok(plan[0]["Plan"]["Plan Rows"].as_f64().map(|n| n as i64))
    }

    /// The audit insert for rows of CTE `done(id, routing)`, or nothing.
    fn audit_cte(&self, action: &str) -> String {
        match &self.layout.audit_table {
            Some(t) => format!(
                ", audit AS (INSERT INTO {} (\"actor\", \"action\", \"eventId\", \"routingKey\") \
                 SELECT $10::text, '{action}', id, routing FROM done)",
                self.layout.table(t)
            ),
            None => String::new(),
        }
    }

    /// One batch of a bulk action on FAILED events: `picked` (up to `$9` rows matching the
    /// filter, locked), `change` (an UPDATE or DELETE over `picked` returning nothing yet),
    /// then the aggregates they blocked released when `release`, and the audit rows.
    fn failed_batch_sql(&self, change: &str, release: bool, action: &str) -> String {
        let l = &self.layout;
        let (id, status) = (l.ev("id"), l.ev("status"));
        let unblock = match (&l.blocked_table, release) {
            (Some(t), true) => format!(
                ", unblocked AS (DELETE FROM {} AS b USING done WHERE b.\"eventId\" = done.id)",
                l.table(t)
            ),
            _ => String::new(),
        };
        format!(
            "WITH picked AS (
                 SELECT e.{id} AS pid FROM {ev} AS e
                  WHERE e.{status}::text = 'FAILED' AND {filter}
                  LIMIT $9 FOR UPDATE SKIP LOCKED),
             done AS ({change}
              RETURNING e.{id}::text AS id, e.{routing}::text AS routing){unblock}{audit}
             SELECT id FROM done",
            ev = l.events(),
            filter = l.filter_sql("e"),
            routing = l.ev("routingKey"),
            audit = self.audit_cte(action),
        )
    }

    async fn batch_action(
        &self,
        sql: &str,
        filter: &EventFilter,
        batch: i64,
        actor: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut params = filter_params(filter);
        params.push(Box::new(batch));
        // $10, the actor, appears in the statement only when there is an audit table.
        if self.layout.audit_table.is_some() {
            params.push(Box::new(actor.to_string()));
        }
        let client = self.client().await?;
        let rows = client.query(sql, &refs(&params)).await.map_err(classify)?;
        Ok(rows.iter().map(|r| text_or_null(r, 0)).collect())
    }
}
