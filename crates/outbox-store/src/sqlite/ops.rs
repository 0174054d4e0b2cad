//! The operator commands on SQLite: listings, statistics, replaying and purging FAILED
//! events, unblocking aggregates and pausing policies — each action audited in the same
//! transaction.

use super::layout::Layout;
use super::row::{json_safe, shown};
use super::SqliteStore;
use async_trait::async_trait;
use outbox_core::{
    Blocked, EventFilter, KeyStats, Lease, ListedEvent, Operator, Status, StoreError,
};
use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Transaction};
use serde_json::Value;
use std::time::Duration;

/// A timestamp column as RFC 3339 text (integer milliseconds; other values as stored).
fn ts(col: &str) -> String {
    let c = format!("e.{{e.{col}}}");
    format!(
        r#"CASE typeof({c}) WHEN 'integer' THEN strftime('%Y-%m-%dT%H:%M:%fZ', {c} / 1000.0, 'unixepoch') WHEN 'blob' THEN '(a blob)' ELSE {c} END"#
    )
}

/// Every column but the payload, as one JSON object with the contract's names.
fn event_json() -> String {
    let plain = [
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
    ];
    let times = [
        "occurredAt",
        "nextRetryAt",
        "lockedUntil",
        "processedAt",
        "createdAt",
    ];
    let mut parts: Vec<String> = plain
        .iter()
        .map(|c| format!("'{c}', {}", json_safe(&format!("e.{{e.{c}}}"))))
        .collect();
    parts.extend(times.iter().map(|c| format!("'{c}', {}", ts(c))));
    parts.push(
        r#"'headers', CASE WHEN json_valid(e.{e.headers}) THEN json(e.{e.headers}) WHEN typeof(e.{e.headers}) = 'blob' THEN '(a blob)' ELSE e.{e.headers} END"#
            .into(),
    );
    format!("json_object({})", parts.join(", "))
}

/// The filter with parameters `?1`..`?8` (ids as a JSON array, status, routingKey,
/// aggregateId, since in seconds, error text, occurred from and before, in milliseconds); a
/// NULL or empty one does not filter. Statements number their own from `?9`.
const FILTER: &str = r#"(json_array_length(?1) = 0 OR e.{e.id} IN (SELECT value FROM json_each(?1)))
   AND (?2 IS NULL OR e.{e.status} = ?2)
   AND (?3 IS NULL OR e.{e.routingKey} = ?3)
   AND (?4 IS NULL OR e.{e.aggregateId} = ?4)
   AND (?5 IS NULL OR MS(e.{e.occurredAt}) >= {now} - ?5 * 1000)
   AND (?6 IS NULL OR instr(lower(COALESCE(e.{e.lastError}, '')), lower(?6)) > 0)
   AND (?7 IS NULL OR MS(e.{e.occurredAt}) >= ?7)
   AND (?8 IS NULL OR MS(e.{e.occurredAt}) < ?8)"#;

/// `template` for `layout`, with `$FILTER` the event filter (`filter_params`).
fn sql(layout: &Layout, template: &str) -> String {
    layout.render(&template.replace("$FILTER", FILTER))
}

fn filter_params(f: &EventFilter) -> Vec<Sql> {
    let opt = |s: &Option<String>| s.clone().map_or(Sql::Null, Sql::Text);
    vec![
        Sql::Text(serde_json::to_string(&f.ids).unwrap_or_else(|_| "[]".into())),
        f.status.map_or(Sql::Null, |s| Sql::Text(s.as_str().into())),
        opt(&f.routing_key),
        opt(&f.aggregate_id),
        f.since.map_or(Sql::Null, |d| Sql::Real(d.as_secs_f64())),
        opt(&f.error_contains),
        f.occurred_from
            .map_or(Sql::Null, |t| Sql::Integer(t.timestamp_millis())),
        f.occurred_to
            .map_or(Sql::Null, |t| Sql::Integer(t.timestamp_millis())),
    ]
}

fn listed(fields: Option<String>, payload: Option<String>) -> ListedEvent {
    let fields = match fields.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            serde_json::json!({ "unreadable": format!("this row cannot be shown as JSON: {e}") })
        }
        None => Value::Null,
    };
    let payload = payload.and_then(|p| serde_json::value::RawValue::from_string(p).ok());
    ListedEvent { fields, payload }
}

/// Writes an audit row (none when app-owned tables lack the audit table).
fn audit(
    tx: &Transaction<'_>,
    layout: &Layout,
    actor: &str,
    action: &str,
    event: Option<&str>,
    routing: Option<&str>,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    if layout.audit.is_none() {
        return Ok(());
    }
    tx.prepare_cached(&layout.render(
        r#"INSERT INTO {A} ("actor", "action", "eventId", "routingKey", "detail") VALUES (?1, ?2, ?3, ?4, ?5)"#,
    ))?
    .execute(params![actor, action, event, routing, detail])?;
    Ok(())
}

/// Up to `batch` FAILED events matching `filter`: (id, routingKey).
fn failed_batch(
    tx: &Transaction<'_>,
    layout: &Layout,
    filter: &EventFilter,
    batch: i64,
) -> rusqlite::Result<Vec<(String, Option<String>)>> {
    let mut p = filter_params(filter);
    p.push(Sql::Integer(batch));
    let mut stmt = tx.prepare_cached(&sql(
        layout,
        r#"SELECT e.{e.id}, e.{e.routingKey} FROM {E} AS e WHERE e.{e.status} = 'FAILED' AND $FILTER ORDER BY e.{e.id} LIMIT ?9"#,
    ))?;
    // A row whose id is not text cannot be addressed by it: left out, never failing the batch.
    let rows = stmt.query_map(params_from_iter(p), |r| {
        Ok(r.get::<_, String>(0).ok().map(|id| (id, Some(shown(r, 1)))))
    })?;
    rows.filter_map(Result::transpose).collect()
}

/// Releases the aggregate that `event` blocked, if any.
fn release_by_event(tx: &Transaction<'_>, layout: &Layout, event: &str) -> rusqlite::Result<()> {
    if layout.blocked.is_some() {
        tx.prepare_cached(&layout.render(r#"DELETE FROM {B} WHERE "eventId" = ?1"#))?
            .execute(params![event])?;
    }
    Ok(())
}

#[async_trait]
impl Operator for SqliteStore {
    async fn list_events(
        &self,
        filter: &EventFilter,
        limit: i64,
    ) -> Result<Vec<ListedEvent>, StoreError> {
        // Pages go by (occurredAt, id), a missing or unreadable occurredAt as the oldest.
        let order = match (&filter.page, filter.status) {
            (Some(_), _) => "COALESCE(MS(e.{e.occurredAt}), -9e18) DESC, e.{e.id} DESC",
            (None, Some(Status::Failed)) => "MS(e.{e.processedAt}) DESC, MS(e.{e.occurredAt}) DESC",
            (None, _) => "MS(e.{e.occurredAt}) DESC, e.{e.id} DESC",
        };
        let sql = sql(
            &self.layout,
            &format!(
                "SELECT {}, e.{{e.payload}} FROM {{E}} AS e WHERE $FILTER
                   AND (?10 IS NULL OR (COALESCE(MS(e.{{e.occurredAt}}), -9e18), e.{{e.id}}) < (SELECT COALESCE(MS(c.{{e.occurredAt}}), -9e18), c.{{e.id}} FROM {{E}} AS c WHERE c.{{e.id}} = ?10))
                 ORDER BY {order} LIMIT ?9",
                event_json()
            ),
        );
        let mut p = filter_params(filter);
        p.push(Sql::Integer(limit));
        p.push(
            filter
                .page_after()
                .map_or(Sql::Null, |id| Sql::Text(id.into())),
        );
        self.call(false, move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(p), |r| {
                Ok(listed(r.get(0).ok(), r.get(1).ok()))
            })?;
            rows.collect()
        })
        .await
    }

    async fn matching_ids(
        &self,
        filter: &EventFilter,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut p = filter_params(filter);
        p.push(after.map_or(Sql::Null, |a| Sql::Text(a.into())));
        p.push(Sql::Integer(limit));
        let sql = sql(
            &self.layout,
            r#"SELECT e.{e.id} FROM {E} AS e WHERE $FILTER AND (?9 IS NULL OR e.{e.id} > ?9) ORDER BY e.{e.id} LIMIT ?10"#,
        );
        self.call(false, move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(p), |r| Ok(shown(r, 0)))?;
            rows.collect()
        })
        .await
    }

    async fn count_events(&self, filter: &EventFilter) -> Result<i64, StoreError> {
        let p = filter_params(filter);
        let sql = sql(&self.layout, "SELECT count(*) FROM {E} AS e WHERE $FILTER");
        self.call(false, move |c| {
            c.prepare_cached(&sql)?
                .query_row(params_from_iter(p), |r| r.get(0))
        })
        .await
    }

    async fn stats(&self, sent: bool) -> Result<Vec<KeyStats>, StoreError> {
        // Without SENT: one arm per state, so each is read through its own (partial) index.
        let source = if sent {
            "{E}"
        } else {
            "(SELECT * FROM {E} WHERE {e.status} = 'PENDING' UNION ALL SELECT * FROM {E} WHERE {e.status} = 'PROCESSING'
              UNION ALL SELECT * FROM {E} WHERE {e.status} = 'FAILED')"
        };
        let sql = sql(
            &self.layout,
            &format!(
                r#"SELECT COALESCE({{e.routingKey}}, '(NULL)'),
       sum({{e.status}} = 'PENDING'), sum({{e.status}} = 'PROCESSING'), sum({{e.status}} = 'SENT'),
       sum({{e.status}} = 'FAILED'), sum({{e.status}} = 'PENDING' AND {{e.retryCount}} > 0),
       ({{now}} - min(CASE WHEN {{e.status}} = 'PENDING' THEN MS({{e.occurredAt}}) END)) / 1000.0
  FROM {source} GROUP BY 1 ORDER BY 1"#
            ),
        );
        self.call(false, move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map([], |r| {
                Ok(KeyStats {
                    routing_key: shown(r, 0),
                    pending: r.get(1)?,
                    processing: r.get(2)?,
                    sent: r.get(3)?,
                    failed: r.get(4)?,
                    retrying: r.get(5)?,
                    oldest_pending_seconds: r.get::<_, Option<f64>>(6)?.map(|s| s.max(0.0)),
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// SQLite keeps no row estimate of its own (its statistics exist only after ANALYZE,
    /// and a table's rowid span overstates it once old rows are purged): a local file is
    /// counted exactly.
    async fn estimated_rows(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }

    /// SQLite's planner keeps no row estimates worth the name.
    async fn estimated_count(&self, _filter: &EventFilter) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }

    async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let sql = self.layout.render(
            "SELECT COALESCE({e.lockedBy}, '(NULL)'), count(*), max(MS({e.lockedUntil}))
               FROM {E} WHERE {e.status} = 'PROCESSING' GROUP BY 1 ORDER BY 1",
        );
        self.call(false, move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map([], |r| {
                Ok(Lease {
                    owner: shown(r, 0),
                    events: r.get(1)?,
                    lease_until: r
                        .get::<_, Option<i64>>(2)
                        .ok()
                        .flatten()
                        .and_then(chrono::DateTime::from_timestamp_millis),
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn blocked_aggregates(&self) -> Result<Vec<Blocked>, StoreError> {
        if self.layout.blocked.is_none() {
            return Ok(Vec::new());
        }
        let sql = self.layout.render(
            r#"SELECT "aggregateId", "eventId", "routingKey" FROM {B} ORDER BY "blockedAt", "aggregateId""#,
        );
        self.call(false, move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map([], |r| {
                Ok(Blocked {
                    aggregate_id: r.get(0)?,
                    event_id: r.get(1)?,
                    routing_key: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    fn audits(&self) -> bool {
        self.layout.audit.is_some()
    }

    async fn replay_failed(
        &self,
        filter: &EventFilter,
        batch: i64,
        actor: &str,
    ) -> Result<Vec<String>, StoreError> {
        let (filter, actor) = (filter.clone(), actor.to_string());
        let layout = self.layout.clone();
        self.write(move |tx| {
            let picked = failed_batch(tx, &layout, &filter, batch)?;
            let mut replay = tx.prepare_cached(&layout.render(
                r#"UPDATE {E}
   SET
       {?e.processedAt}{e.processedAt} = NULL,
       {e.status} = 'PENDING', {e.retryCount} = 0, {e.nextRetryAt} = STAMP({now}),
       {e.lockedBy} = NULL, {e.lockedUntil} = NULL
 WHERE {e.id} = ?1 AND {e.status} = 'FAILED'"#,
            ))?;
            let mut done = Vec::new();
            for (id, routing) in picked {
                if replay.execute(params![id])? > 0 {
                    release_by_event(tx, &layout, &id)?;
                    audit(
                        tx,
                        &layout,
                        &actor,
                        "replay",
                        Some(&id),
                        routing.as_deref(),
                        None,
                    )?;
                    done.push(id);
                }
            }
            Ok(done)
        })
        .await
    }

    async fn purge_failed(
        &self,
        filter: &EventFilter,
        batch: i64,
        actor: &str,
        unblock: bool,
    ) -> Result<Vec<String>, StoreError> {
        let (filter, actor) = (filter.clone(), actor.to_string());
        let layout = self.layout.clone();
        self.write(move |tx| {
            let picked = failed_batch(tx, &layout, &filter, batch)?;
            let mut delete =
                tx.prepare_cached(&layout.render("DELETE FROM {E} WHERE {e.id} = ?1"))?;
            let action = if unblock { "purge+unblock" } else { "purge" };
            let mut done = Vec::new();
            for (id, routing) in picked {
                if delete.execute(params![id])? > 0 {
                    if unblock {
                        release_by_event(tx, &layout, &id)?;
                    }
                    audit(
                        tx,
                        &layout,
                        &actor,
                        action,
                        Some(&id),
                        routing.as_deref(),
                        None,
                    )?;
                    done.push(id);
                }
            }
            Ok(done)
        })
        .await
    }

    async fn unblock(&self, aggregates: &[String], actor: &str) -> Result<Vec<String>, StoreError> {
        if self.layout.blocked.is_none() {
            return Ok(Vec::new());
        }
        let (aggregates, actor) = (aggregates.to_vec(), actor.to_string());
        let layout = self.layout.clone();
        self.write(move |tx| {
            let mut release = tx.prepare_cached(&layout.render(
                r#"DELETE FROM {B} WHERE "aggregateId" = ?1 RETURNING "eventId", "routingKey""#,
            ))?;
            let mut done = Vec::new();
            for a in aggregates {
                let mut rows = release.query(params![a])?;
                if let Some(r) = rows.next()? {
                    let (event, routing): (String, String) = (r.get(0)?, r.get(1)?);
                    let detail = format!("aggregate {a}");
                    audit(
                        tx,
                        &layout,
                        &actor,
                        "unblock",
                        Some(&event),
                        Some(&routing),
                        Some(&detail),
                    )?;
                    done.push(a);
                }
            }
            Ok(done)
        })
        .await
    }

    async fn set_paused(
        &self,
        routing_key: &str,
        paused: bool,
        actor: &str,
    ) -> Result<bool, StoreError> {
        if !self.layout.policy_columns.contains_key("paused") {
            return Err(StoreError::Query(format!(
                "the policy table {} has no paused column; add it: ALTER TABLE {} ADD COLUMN \"paused\" BOOLEAN NOT NULL DEFAULT false (Prisma: paused Boolean @default(false))",
                self.layout.policy_table(),
                self.layout.policy_table()
            )));
        }
        let (key, actor) = (routing_key.to_string(), actor.to_string());
        let layout = self.layout.clone();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(&layout.render(
                    r#"UPDATE {P} SET
       {?p.updatedAt}{p.updatedAt} = STAMP({now}),
       {p.paused} = ?2
 WHERE {p.routingKey} = ?1"#,
                ))?
                .execute(params![key, paused])?;
            if n > 0 {
                let action = if paused { "pause" } else { "resume" };
                audit(tx, &layout, &actor, action, None, Some(&key), None)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn purgeable(&self, status: Status, older_than: Duration) -> Result<u64, StoreError> {
        let age = super::millis(older_than);
        let sql = self.layout.render(
            &"SELECT count(*) FROM {E} WHERE {e.status} = ?1 AND MS({e.processedAt}) < {now} - ?2"
                .replace("{e.processedAt}", super::finished_at(&self.layout)),
        );
        self.call(false, move |c| {
            c.prepare_cached(&sql)?
                .query_row(params![status.as_str(), age], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
        })
        .await
    }
}
