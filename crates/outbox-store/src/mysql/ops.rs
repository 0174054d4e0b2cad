//! The operator commands on MySQL / MariaDB: listings, statistics, replaying and purging
//! FAILED events, unblocking aggregates and pausing policies — each action audited in the
//! same transaction.

use super::layout::Layout;
use super::row::{int_opt, shown, text_opt};
use super::{classify, marks, micros, MysqlStore};
use async_trait::async_trait;
use mysql_async::prelude::{Queryable, ToValue};
use mysql_async::{Row, TxOpts, Value};
use outbox_core::{
    Blocked, EventFilter, KeyStats, Lease, ListedEvent, Operator, Status, StoreError,
};
use serde_json::{Map, Value as Json};
use std::time::Duration;

/// The columns a listing shows, in order (the payload last).
const LISTED: &[&str] = &[
    "id",
    "eventName",
    "eventType",
    "aggregateId",
    "routingKey",
    "status",
    "retryCount",
    "maxRetries",
    "retryInterval",
    "maxInterval",
    "lockedBy",
    "lastError",
    "occurredAt",
    "nextRetryAt",
    "lockedUntil",
    "processedAt",
    "createdAt",
    "headers",
    "payload",
];

/// The filter's condition (a template) and its parameters: ids, status, routingKey,
/// aggregateId, since (seconds), error text; an empty or absent one does not filter.
fn filter(f: &EventFilter) -> (String, Vec<Value>) {
    let mut clauses = vec!["TRUE".to_string()];
    let mut params: Vec<Value> = Vec::new();
    if !f.ids.is_empty() {
        clauses.push(format!("e.{{e.id}} IN ({})", marks(f.ids.len())));
        params.extend(f.ids.iter().map(|i| i.to_value()));
    }
    if let Some(s) = f.status {
        clauses.push("e.{e.status} = ?".into());
        params.push(s.as_str().into());
    }
    if let Some(k) = &f.routing_key {
        clauses.push("e.{e.routingKey} = ?".into());
        params.push(k.to_value());
    }
    if let Some(a) = &f.aggregate_id {
        clauses.push("e.{e.aggregateId} = ?".into());
        params.push(a.to_value());
    }
    if let Some(since) = f.since {
        clauses.push("e.{e.occurredAt} >= NOW(3) - INTERVAL ? MICROSECOND".into());
        params.push(micros(since).into());
    }
    // The range in the column's own type: DATETIME(3) text in UTC, as the sessions store it.
    let stamp = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string();
    if let Some(from) = &f.occurred_from {
        clauses.push("e.{e.occurredAt} >= ?".into());
        params.push(stamp(from).into());
    }
    if let Some(to) = &f.occurred_to {
        clauses.push("e.{e.occurredAt} < ?".into());
        params.push(stamp(to).into());
    }
    if let Some(text) = &f.error_contains {
        clauses.push("LOCATE(LOWER(?), LOWER(COALESCE(e.{e.lastError}, ''))) > 0".into());
        params.push(text.to_value());
    }
    (clauses.join(" AND "), params)
}

/// One listed row as the contract's JSON fields and the raw payload.
fn listed(r: &Row) -> ListedEvent {
    let mut fields = Map::new();
    for (i, name) in LISTED.iter().enumerate().take(LISTED.len() - 1) {
        let v = match r.as_ref(i) {
            None | Some(Value::NULL) => Json::Null,
            Some(Value::Int(n)) => Json::from(*n),
            Some(Value::UInt(n)) => Json::from(*n),
            Some(Value::Date(y, mo, d, h, mi, s, us)) => Json::String(format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
                us / 1000
            )),
            Some(_) if *name == "headers" => {
                let text = shown(r, i);
                serde_json::from_str(&text).unwrap_or(Json::String(text))
            }
            Some(_) => Json::String(shown(r, i)),
        };
        fields.insert(name.to_string(), v);
    }
    let payload = text_opt(r, LISTED.len() - 1, "payload")
        .ok()
        .flatten()
        .and_then(|p| serde_json::value::RawValue::from_string(p).ok());
    ListedEvent {
        fields: Json::Object(fields),
        payload,
    }
}

/// Writes an audit row (none when app-owned tables lack the audit table).
async fn audit(
    tx: &mut mysql_async::Transaction<'_>,
    layout: &Layout,
    actor: &str,
    action: &str,
    event: Option<&str>,
    routing: Option<&str>,
    detail: Option<&str>,
) -> Result<(), mysql_async::Error> {
    if !layout.audits() {
        return Ok(());
    }
    tx.exec_drop(
        layout.render("INSERT INTO {A} (`actor`, `action`, `eventId`, `routingKey`, `detail`) VALUES (?, ?, ?, ?, ?)"),
        (actor, action, event, routing, detail),
    )
    .await
}

/// Removes the block an aggregate has behind FAILED event `id` (nothing without the table).
async fn unblock_behind(
    tx: &mut mysql_async::Transaction<'_>,
    layout: &Layout,
    id: &str,
) -> Result<(), mysql_async::Error> {
    if layout.names.blocked.is_none() {
        return Ok(());
    }
    tx.exec_drop(layout.render("DELETE FROM {B} WHERE `eventId` = ?"), (id,))
        .await
}

/// Up to `batch` FAILED events matching `f`, locked: (id, routingKey).
async fn failed_batch(
    tx: &mut mysql_async::Transaction<'_>,
    layout: &Layout,
    f: &EventFilter,
    batch: i64,
) -> Result<Vec<(String, Option<String>)>, mysql_async::Error> {
    let (cond, params) = filter(f);
    let rows: Vec<Row> = tx
        .exec(
            layout.render(&format!(
                "SELECT e.{{e.id}}, e.{{e.routingKey}} FROM {{E}} AS e
                  WHERE e.{{e.status}} = 'FAILED' AND {cond} ORDER BY e.{{e.id}} LIMIT {} FOR UPDATE",
                batch.max(1)
            )),
            params,
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            text_opt(r, 0, "id")
                .ok()
                .flatten()
                .map(|id| (id, Some(shown(r, 1))))
        })
        .collect())
}

#[async_trait]
impl Operator for MysqlStore {
    async fn list_events(
        &self,
        f: &EventFilter,
        limit: i64,
    ) -> Result<Vec<ListedEvent>, StoreError> {
        // Pages go by (occurredAt, id), a missing occurredAt as the oldest.
        let order = match (&f.page, f.status) {
            (Some(_), _) => "COALESCE(e.{e.occurredAt}, '1000-01-01') DESC, e.{e.id} DESC",
            (None, Some(Status::Failed)) => "e.{e.processedAt} DESC, e.{e.occurredAt} DESC",
            (None, _) => "e.{e.occurredAt} DESC, e.{e.id} DESC",
        };
        let (mut cond, mut params) = filter(f);
        if let Some(after) = f.page_after() {
            cond.push_str(
                " AND (COALESCE(e.{e.occurredAt}, '1000-01-01'), e.{e.id}) < (SELECT COALESCE(c.{e.occurredAt}, '1000-01-01'), c.{e.id} FROM {E} AS c WHERE c.{e.id} = ?)",
            );
            params.push(after.to_value());
        }
        let columns: Vec<String> = LISTED.iter().map(|c| format!("e.{{e.{c}}}")).collect();
        let mut c = self.conn().await?;
        let rows: Vec<Row> = c
            .exec(
                self.layout().render(&format!(
                    "SELECT {} FROM {{E}} AS e WHERE {cond} ORDER BY {order} LIMIT {}",
                    columns.join(", "),
                    limit.max(0)
                )),
                params,
            )
            .await
            .map_err(classify)?;
        Ok(rows.iter().map(listed).collect())
    }

    async fn matching_ids(
        &self,
        f: &EventFilter,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let (cond, mut params) = filter(f);
        params.push(after.to_value());
        params.push(after.to_value());
        let mut c = self.conn().await?;
        let rows: Vec<Row> = c
            .exec(
                self.layout().render(&format!(
                    "SELECT e.{{e.id}} FROM {{E}} AS e WHERE {cond} AND (? IS NULL OR e.{{e.id}} > ?)
                      ORDER BY e.{{e.id}} LIMIT {}",
                    limit.max(0)
                )),
                params,
            )
            .await
            .map_err(classify)?;
        Ok(rows.iter().map(|r| shown(r, 0)).collect())
    }

    async fn count_events(&self, f: &EventFilter) -> Result<i64, StoreError> {
        let (cond, params) = filter(f);
        let mut c = self.conn().await?;
        let n: Option<i64> = c
            .exec_first(
                self.layout()
                    .render(&format!("SELECT COUNT(*) FROM {{E}} AS e WHERE {cond}")),
                params,
            )
            .await
            .map_err(classify)?;
        Ok(n.unwrap_or(0))
    }

    async fn stats(&self, sent: bool) -> Result<Vec<KeyStats>, StoreError> {
        // Without SENT: one arm per state, so each is read through its own index.
        let source = if sent {
            "{E}"
        } else {
            "(SELECT * FROM {E} WHERE {e.status} = 'PENDING' UNION ALL SELECT * FROM {E} WHERE {e.status} = 'PROCESSING'
              UNION ALL SELECT * FROM {E} WHERE {e.status} = 'FAILED') AS u"
        };
        let mut c = self.conn().await?;
        let rows: Vec<Row> = c
            .query(self.layout().render(&format!(
                "SELECT COALESCE({{e.routingKey}}, '(NULL)'),
                        SUM({{e.status}} = 'PENDING'), SUM({{e.status}} = 'PROCESSING'), SUM({{e.status}} = 'SENT'),
                        SUM({{e.status}} = 'FAILED'), SUM({{e.status}} = 'PENDING' AND {{e.retryCount}} > 0),
                        TIMESTAMPDIFF(MICROSECOND, MIN(CASE WHEN {{e.status}} = 'PENDING' THEN {{e.occurredAt}} END), NOW(3)) / 1e6
                   FROM {source} GROUP BY 1 ORDER BY 1",
            )))
            .await
            .map_err(classify)?;
        Ok(rows
            .iter()
            .map(|r| {
                let n = |i| int_opt(r, i, "count").ok().flatten().unwrap_or(0);
                KeyStats {
                    routing_key: shown(r, 0),
                    pending: n(1),
                    processing: n(2),
                    sent: n(3),
                    failed: n(4),
                    retrying: n(5),
                    oldest_pending_seconds: super::row::real_opt(r, 6, "age")
                        .ok()
                        .flatten()
                        .map(|s| s.max(0.0)),
                }
            })
            .collect())
    }

    /// InnoDB's estimate of the event table's rows (`information_schema.TABLES`).
    async fn estimated_rows(&self) -> Result<Option<i64>, StoreError> {
        let mut c = self.conn().await?;
        let n: Option<Option<i64>> = c
            .exec_first(
                super::catalog::TABLE_ROWS,
                (self.database(), self.layout().names.event.as_str()),
            )
            .await
            .map_err(classify)?;
        Ok(n.flatten())
    }

    /// The optimizer's estimate for the filter: `rows` × `filtered` of its plan.
    async fn estimated_count(&self, f: &EventFilter) -> Result<Option<i64>, StoreError> {
        let (cond, params) = filter(f);
        let mut c = self.conn().await?;
        let plan: Option<Row> = c
            .exec_first(
                self.layout()
                    .render(&format!("EXPLAIN SELECT 1 FROM {{E}} AS e WHERE {cond}")),
                params,
            )
            .await
            .map_err(classify)?;
        let Some(plan) = plan else { return Ok(None) };
        let column = |name: &str| {
            plan.columns_ref()
                .iter()
                .position(|c| c.name_str() == name)
                .and_then(|i| super::row::real_opt(&plan, i, name).ok().flatten())
        };
        Ok(column("rows").map(|rows| (rows * column("filtered").unwrap_or(100.0) / 100.0) as i64))
    }

    async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let mut c = self.conn().await?;
        let rows: Vec<Row> = c
            .query(self.layout().render(
                "SELECT COALESCE({e.lockedBy}, '(NULL)'), COUNT(*), MAX({e.lockedUntil})
                   FROM {E} WHERE {e.status} = 'PROCESSING' GROUP BY 1 ORDER BY 1",
            ))
            .await
            .map_err(classify)?;
        Ok(rows
            .iter()
            .map(|r| Lease {
                owner: shown(r, 0),
                events: int_opt(r, 1, "count").ok().flatten().unwrap_or(0),
                lease_until: super::row::timestamp(r, 2, "lockedUntil").ok(),
            })
            .collect())
    }

    async fn blocked_aggregates(&self) -> Result<Vec<Blocked>, StoreError> {
        if self.layout().names.blocked.is_none() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await?;
        let rows: Vec<(String, String, String)> = c
            .query(self.layout().render(
                "SELECT `aggregateId`, `eventId`, `routingKey` FROM {B} ORDER BY `blockedAt`, `aggregateId`",
            ))
            .await
            .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|(aggregate_id, event_id, routing_key)| Blocked {
                aggregate_id,
                event_id,
                routing_key,
            })
            .collect())
    }

    fn audits(&self) -> bool {
        self.layout().audits()
    }

    async fn replay_failed(
        &self,
        f: &EventFilter,
        batch: i64,
        actor: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c
            .start_transaction(TxOpts::default())
            .await
            .map_err(classify)?;
        let layout = self.layout();
        let picked = failed_batch(&mut tx, layout, f, batch)
            .await
            .map_err(classify)?;
        let replay = layout.render(
            "UPDATE {E} SET
                    {e.processedAt} = NULL, {?e.processedAt}
                    {e.retryCount} = 0, {e.nextRetryAt} = NOW(3), {e.lockedBy} = NULL, {e.lockedUntil} = NULL,
                    {e.status} = 'PENDING'
              WHERE {e.id} = ? AND {e.status} = 'FAILED'",
        );
        let mut done = Vec::new();
        for (id, routing) in picked {
            tx.exec_drop(&replay, (&id,)).await.map_err(classify)?;
            if tx.affected_rows() > 0 {
                unblock_behind(&mut tx, layout, &id)
                    .await
                    .map_err(classify)?;
                audit(
                    &mut tx,
                    layout,
                    actor,
                    "replay",
                    Some(&id),
                    routing.as_deref(),
                    None,
                )
                .await
                .map_err(classify)?;
                done.push(id);
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(done)
    }

    async fn purge_failed(
        &self,
        f: &EventFilter,
        batch: i64,
        actor: &str,
        unblock: bool,
    ) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c
            .start_transaction(TxOpts::default())
            .await
            .map_err(classify)?;
        let layout = self.layout();
        let picked = failed_batch(&mut tx, layout, f, batch)
            .await
            .map_err(classify)?;
        let action = if unblock { "purge+unblock" } else { "purge" };
        let delete = layout.render("DELETE FROM {E} WHERE {e.id} = ?");
        let mut done = Vec::new();
        for (id, routing) in picked {
            tx.exec_drop(&delete, (&id,)).await.map_err(classify)?;
            if tx.affected_rows() > 0 {
                if unblock {
                    unblock_behind(&mut tx, layout, &id)
                        .await
                        .map_err(classify)?;
                }
                audit(
                    &mut tx,
                    layout,
                    actor,
                    action,
                    Some(&id),
                    routing.as_deref(),
                    None,
                )
                .await
                .map_err(classify)?;
                done.push(id);
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(done)
    }

    async fn unblock(&self, aggregates: &[String], actor: &str) -> Result<Vec<String>, StoreError> {
        let layout = self.layout();
        if layout.names.blocked.is_none() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await?;
        let mut tx = c
            .start_transaction(TxOpts::default())
            .await
            .map_err(classify)?;
        let mut done = Vec::new();
        for a in aggregates {
            let row: Option<(String, String)> = tx
                .exec_first(
                    layout.render("SELECT `eventId`, `routingKey` FROM {B} WHERE `aggregateId` = ? FOR UPDATE"),
                    (a,),
                )
                .await
                .map_err(classify)?;
            if let Some((event, routing)) = row {
                tx.exec_drop(
                    layout.render("DELETE FROM {B} WHERE `aggregateId` = ?"),
                    (a,),
                )
                .await
                .map_err(classify)?;
                let detail = format!("aggregate {a}");
                audit(
                    &mut tx,
                    layout,
                    actor,
                    "unblock",
                    Some(&event),
                    Some(&routing),
                    Some(&detail),
                )
                .await
                .map_err(classify)?;
                done.push(a.clone());
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(done)
    }

    async fn set_paused(
        &self,
        routing_key: &str,
        paused: bool,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let layout = self.layout();
        if !layout.names.policy_columns.contains_key("paused") {
            return Err(StoreError::Query(format!(
                "the policy table {} has no paused column; add it: ALTER TABLE {0} ADD COLUMN `paused` BOOLEAN NOT NULL DEFAULT FALSE (Prisma: paused Boolean @default(false))",
                layout.policy_table()
            )));
        }
        let mut c = self.conn().await?;
        let mut tx = c
            .start_transaction(TxOpts::default())
            .await
            .map_err(classify)?;
        let found: Option<i64> = tx
            .exec_first(
                layout.render("SELECT COUNT(*) FROM {P} WHERE {p.routingKey} = ? FOR UPDATE"),
                (routing_key,),
            )
            .await
            .map_err(classify)?;
        let found = found.unwrap_or(0) > 0;
        if found {
            tx.exec_drop(
                layout.render(
                    "UPDATE {P} SET
                        {p.updatedAt} = NOW(3), {?p.updatedAt}
                        {p.paused} = ? WHERE {p.routingKey} = ?",
                ),
                (paused, routing_key),
            )
            .await
            .map_err(classify)?;
            let action = if paused { "pause" } else { "resume" };
            audit(
                &mut tx,
                layout,
                actor,
                action,
                None,
                Some(routing_key),
                None,
            )
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(found)
    }

    async fn purgeable(&self, status: Status, older_than: Duration) -> Result<u64, StoreError> {
        if !self.layout().has_event_column("processedAt") {
            return Ok(0);
        }
        let mut c = self.conn().await?;
        let n: Option<i64> = c
            .exec_first(
                self.layout().render("SELECT COUNT(*) FROM {E} WHERE {e.status} = ? AND {e.processedAt} < NOW(3) - INTERVAL ? MICROSECOND"),
                (status.as_str(), micros(older_than)),
            )
            .await
            .map_err(classify)?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }
}

impl outbox_core::Backend for MysqlStore {
    fn schema(&self) -> &str {
        self.database()
    }

    fn location(&self) -> String {
        format!("MySQL database `{}`", self.database())
    }

    fn table_name(&self, logical: &str) -> String {
        self.layout()
            .names
            .table_name(logical, super::layout::quote)
    }

    fn column_name(&self, logical_table: &str, logical: &str) -> String {
        self.layout()
            .names
            .column_name(logical_table, logical, super::layout::quote)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
