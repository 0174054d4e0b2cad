//! MySQL 8.0+ / MariaDB 10.6+ backend. Claims are `SELECT … FOR UPDATE SKIP LOCKED` then
//! `UPDATE` in one short transaction (neither server has `UPDATE … RETURNING`); every
//! connection works in UTC (`time_zone = '+00:00'`); deadlocks, lock wait timeouts and lost
//! connections come back as [`StoreError::Unavailable`], which the engine retries with
//! backoff — never an event failure. No LISTEN: a watcher polls the newest event's seq.
//! Every statement is a template rendered for the tables in use ([`layout::Layout`]): the
//! worker's own, or an app's adopted by introspection ([`adopt`]).

mod adopt;
pub mod catalog;
pub mod layout;
pub mod migrate;
pub mod ops;
pub mod print;
mod row;

use async_trait::async_trait;
use layout::{Layout, EVENT_COLUMNS};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, TxOpts, Value};
use outbox_core::{
    Completion, CompletionAction, Leased, Notification, NotificationStream, PolicyRows, Status,
    Store, StoreError, Unreadable,
};
use row::{int_opt, leased_rows, real_opt};
use std::sync::Arc;
use std::time::Duration;

/// The store. Cheap to create: connections are opened on first use.
pub struct MysqlStore {
    pool: Pool,
    /// The URL with its password masked, for messages.
    shown: String,
    database: String,
    layout: Arc<Layout>,
    sql: Arc<Statements>,
}

/// The statements of the engine's calls, rendered once per layout. `{limit}` is written in
/// at each call ([`with_limit`]), a literal as in the claims before they were templates
/// (the few batch sizes in use make a few statement texts).
struct Statements {
    claim: String,
    claim_skipping: String,
    claim_ordered: String,
    /// Takes every bucket of ordered delivery (absent without `OutboxOrderLock`).
    order_locks: Option<String>,
    lease: String,
    sent: String,
    delete: String,
    /// The fenced row of one result, locked: (aggregateId, routingKey).
    result_head: String,
    result: String,
    unreadable_head: String,
    unreadable: String,
    /// Holds an aggregate back (absent without the blocked-aggregates table).
    block: Option<String>,
    expired: String,
    policies: String,
    next_due: String,
    purge: String,
    pending: String,
    look: String,
}

impl Statements {
    fn new(l: &Layout) -> Statements {
        let r = |t: &str| l.render(t);
        let fence = "e.{e.id} = a.id AND e.{e.lockedBy} = a.owner AND e.{e.retryCount} = a.rc AND e.{e.status} = 'PROCESSING'";
        // JSON_TABLE's text columns take the length, character set and collation of the
        // column they are compared with (an app's tables may use others than the server's
        // defaults; a shorter one would cut a long id silently, and its row never match).
        let batch = "JSON_TABLE(?, '$[*]' COLUMNS (id {text id} PATH '$[0]', owner {text lockedBy} PATH '$[1]', rc INT PATH '$[2]')) AS a";
        let keys_of = KEYS_OF.replace("{text}", "{text routingKey}");
        // The key lists drive every join, and each row is found by its primary key: on a
        // small table the server would rather scan the event table, and a scan waits on every
        // row another transaction holds (a producer's uncommitted insert, another worker's
        // claim) — result writes stalled behind leases until they expired.
        let by_id = "STRAIGHT_JOIN {E} AS e FORCE INDEX (PRIMARY)";
        let ids = "JSON_TABLE(?, '$[*]' COLUMNS (k {text id} PATH '$')) AS l";
        Statements {
            claim: r(&format!(
                "SELECT {EVENT_COLUMNS} FROM {{E}}
                  WHERE {{e.status}} = 'PENDING' AND {{e.nextRetryAt}} <= NOW(3)
                  ORDER BY {{e.nextRetryAt}} LIMIT {{limit}}
                  FOR UPDATE SKIP LOCKED"
            )),
            claim_skipping: r(&format!(
                "SELECT {EVENT_COLUMNS} FROM {{E}}
                  WHERE {{e.status}} = 'PENDING' AND {{e.nextRetryAt}} <= NOW(3)
                    AND {{e.routingKey}} NOT IN ({keys_of})
                  ORDER BY {{e.nextRetryAt}} LIMIT {{limit}}
                  FOR UPDATE SKIP LOCKED"
            )),
            // An aggregate's head is its earliest unfinished event under the ordered keys,
            // not held back by a blocked aggregate.
            claim_ordered: r(&format!(
                "SELECT {EVENT_COLUMNS} FROM {{E}} AS c
                  WHERE c.{{e.status}} = 'PENDING' AND c.{{e.nextRetryAt}} <= NOW(3)
                    AND c.{{e.routingKey}} IN ({keys_of})
                    AND c.{{e.routingKey}} NOT IN ({keys_of})
                    AND NOT EXISTS (
                        SELECT 1 FROM {{E}} AS p
                         WHERE p.{{e.aggregateId}} = c.{{e.aggregateId}} AND {{earlier p c}}
                           AND p.{{e.status}} IN ('PENDING', 'PROCESSING')
                           AND p.{{e.routingKey}} IN ({keys_of}))
                    AND NOT EXISTS (SELECT 1 FROM {{B}} AS b WHERE b.`aggregateId` = c.{{e.aggregateId}}) {{?B}}
                  ORDER BY c.{{e.nextRetryAt}} LIMIT {{limit}}
                  FOR UPDATE SKIP LOCKED"
            )),
            order_locks: l.order_lock.then(|| {
                "SELECT COUNT(*) FROM (SELECT `bucket` FROM `OutboxOrderLock` ORDER BY `bucket` FOR UPDATE) AS l".to_string()
            }),
            lease: r(&format!(
                "UPDATE {ids} {by_id} ON e.{{e.id}} = l.k
                    SET e.{{e.status}} = 'PROCESSING', e.{{e.lockedBy}} = ?, e.{{e.retryCount}} = COALESCE(e.{{e.retryCount}}, 0),
                        e.{{e.lockedUntil}} = NOW(3) + INTERVAL ? MICROSECOND"
            )),
            sent: r(&format!(
                "UPDATE {batch} {by_id} ON {fence}
                    SET
                        e.{{e.processedAt}} = NOW(3), {{?e.processedAt}}
                        e.{{e.lockedBy}} = NULL, e.{{e.lockedUntil}} = NULL, e.{{e.status}} = 'SENT'"
            )),
            delete: r(&format!("DELETE e FROM {batch} {by_id} ON {fence}")),
            result_head: r("SELECT {e.aggregateId}, {e.routingKey} FROM {E}
                  WHERE {e.id} = ? AND {e.lockedBy} = ? AND {e.retryCount} = ? AND {e.status} = 'PROCESSING' FOR UPDATE"),
            // Parameters: [lastError], [finished], status, delay, retryCount, status, id —
            // the bracketed ones only where the column is there (`result_params`).
            result: r("UPDATE {E}
                    SET
                        {e.lastError} = COALESCE(?, {e.lastError}), {?e.lastError}
                        {e.processedAt} = CASE WHEN ? THEN NOW(3) END, {?e.processedAt}
                        {e.nextRetryAt} = CASE WHEN ? = 'PENDING' THEN NOW(3) + INTERVAL ? MICROSECOND ELSE {e.nextRetryAt} END,
                        {e.retryCount} = ?, {e.lockedBy} = NULL, {e.lockedUntil} = NULL, {e.status} = ?
                  WHERE {e.id} = ?"),
            unreadable_head: r("SELECT {e.aggregateId}, {e.routingKey} FROM {E}
                  WHERE {e.id} = ? AND {e.lockedBy} = ? AND {e.status} = 'PROCESSING' FOR UPDATE"),
            // Parameters: [lastError], id.
            unreadable: r("UPDATE {E}
                    SET
                        {e.lastError} = ?, {?e.lastError}
                        {e.processedAt} = NOW(3), {?e.processedAt}
                        {e.lockedBy} = NULL, {e.lockedUntil} = NULL, {e.status} = 'FAILED'
                  WHERE {e.id} = ?"),
            block: l.names.blocked.as_ref().map(|_| {
                r("INSERT IGNORE INTO {B} (`aggregateId`, `eventId`, `routingKey`, `reason`) VALUES (?, ?, ?, ?)")
            }),
            expired: r(&format!(
                "SELECT {EVENT_COLUMNS} FROM {{E}}
                  WHERE {{e.status}} = 'PROCESSING' AND {{e.lockedUntil}} < NOW(3)
                  ORDER BY {{e.lockedUntil}} LIMIT {{limit}}"
            )),
            policies: r("SELECT {p.routingKey}, {p.maxRetries}, {p.retryInterval}, {p.maxInterval}, {p.backoffMultiplier},
                        {p.jitter}, {p.ordered}, {p.paused}, {p.blockOnFailure} FROM {P}"),
            next_due: r(&format!(
                "SELECT TIMESTAMPDIFF(MICROSECOND, NOW(3), MIN({{e.nextRetryAt}})) FROM {{E}}
                  WHERE {{e.status}} = 'PENDING' AND {{e.routingKey}} NOT IN ({keys_of})"
            )),
            purge: r("DELETE FROM {E} WHERE {e.status} = ? AND {e.processedAt} < NOW(3) - INTERVAL ? MICROSECOND LIMIT ?"),
            pending: r("SELECT {e.routingKey}, COUNT(*), TIMESTAMPDIFF(MICROSECOND, MIN({e.occurredAt}), NOW(3)) / 1e6
                   FROM {E} WHERE {e.status} = 'PENDING' GROUP BY {e.routingKey}"),
            look: r("SELECT (SELECT {seq} FROM {E}),
                            (SELECT COUNT(*) FROM {P}),
                            (SELECT COALESCE(CAST(MAX({p.updatedAt}) AS CHAR), '') FROM {P}),
                            EXISTS (SELECT 1 FROM {E} WHERE {e.status} = 'PENDING' AND {e.nextRetryAt} <= NOW(3))"),
        }
    }
}

/// Server error codes worth a retry: deadlock, lock wait timeout, too many connections,
/// server shutting down, connection killed, read-only (fail-over in progress).
const RETRYABLE: &[u16] = &[1213, 1205, 1040, 1053, 1927, 1290, 1836];

/// A mysql_async error as the engine needs it.
pub(crate) fn classify(e: mysql_async::Error) -> StoreError {
    use mysql_async::Error as E;
    let text = outbox_core::conf::redact_secrets(&e.to_string());
    match &e {
        E::Io(_) | E::Driver(_) => StoreError::Unavailable(format!("MySQL: {text}")),
        E::Server(s) if RETRYABLE.contains(&s.code) => {
            StoreError::Unavailable(format!("MySQL: {text}"))
        }
        _ => StoreError::Query(format!("MySQL: {text}")),
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// `?, ?, …` for `n` values.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `sql` with its `{limit}` filled in.
fn with_limit(sql: &str, limit: usize) -> String {
    sql.replace("{limit}", &limit.max(1).to_string())
}

/// Rows of the keys in a JSON array parameter, for `IN (…)`.
/// (A template: `{text}` stands for the type of the column the keys are compared with.)
const KEYS_OF: &str = "SELECT k FROM JSON_TABLE(?, '$[*]' COLUMNS (k {text} PATH '$')) AS j";

impl MysqlStore {
    /// The store for `url` (`mysql://user:pass@host:3306/db`, or `mariadb://…`); nothing is
    /// opened yet.
    pub fn new(url: &str, pool_size: usize) -> Result<MysqlStore, String> {
        MysqlStore::with_statement_timeout(url, pool_size, None)
    }

    /// [`MysqlStore::new`] for the dashboard's reads: with `timeout`, every statement is cut
    /// after it (MariaDB's `max_statement_time`; MySQL's `max_execution_time`, which cuts
    /// reads only) and table statistics are read fresh.
    pub fn with_statement_timeout(
        url: &str,
        pool_size: usize,
        timeout: Option<Duration>,
    ) -> Result<MysqlStore, String> {
        let shown = outbox_core::conf::redact_secrets(url);
        let url = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mariadb") => {
                format!("mysql://{rest}")
            }
            _ => url.to_string(),
        };
        let opts =
            Opts::from_url(&url).map_err(|e| format!("`{shown}` is not a MySQL URL: {e}"))?;
        let database = opts.db_name().map(str::to_string).ok_or_else(|| {
            format!("`{shown}` names no database; write mysql://user:pass@host:3306/dbname")
        })?;
        let constraints = PoolConstraints::new(0, pool_size.max(2))
            .ok_or_else(|| "pool_size must be at least 2".to_string())?;
        let mut init = vec![
            "SET time_zone = '+00:00'".to_string(),
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_string(),
            // MariaDB re-checks a row's CHECK constraints on every UPDATE: a row stored
            // while checks were off (an invalid payload, say) would fail each claim that
            // picks it, and with it the whole batch. The worker's own writes keep every
            // check; with this it can lease such a row, find it unreadable and fail it
            // alone. (MySQL ignores the comment.)
            "/*M! SET SESSION check_constraint_checks = OFF */".to_string(),
        ];
        if let Some(t) = timeout {
            // Each comment is run by its own server only.
            init.push(format!(
                "/*M! SET SESSION max_statement_time = {} */",
                t.as_secs_f64()
            ));
            init.push(format!(
                "/*!80000 SET SESSION max_execution_time = {} */",
                t.as_millis().max(1)
            ));
            // MySQL 8 caches table statistics for a day by default: the dashboard's row
            // estimate must be today's.
            init.push("/*!80000 SET SESSION information_schema_stats_expiry = 0 */".into());
        }
        let opts = OptsBuilder::from_opts(opts)
            .init(init)
            // A connection keeps its session (UTC, READ COMMITTED) when it goes back to the
            // pool: a reset would drop what `init` set.
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    .with_reset_connection(false),
            );
        let layout = Layout::canonical();
        Ok(MysqlStore {
            pool: Pool::new(opts),
            shown,
            database,
            sql: Arc::new(Statements::new(&layout)),
            layout: Arc::new(layout),
        })
    }

    /// Makes every statement use `layout` (app-owned tables).
    pub(crate) fn set_layout(&mut self, layout: Layout) {
        self.sql = Arc::new(Statements::new(&layout));
        self.layout = Arc::new(layout);
    }

    /// The layout in use.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The database holding the outbox tables.
    pub fn database(&self) -> &str {
        &self.database
    }

    pub(crate) async fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get_conn().await.map_err(classify)
    }

    /// The server's kind and version, e.g. `MariaDB 10.11.19, database outbox`, or why it
    /// cannot serve the relay (a server without `SKIP LOCKED`).
    pub async fn server_info(&self) -> Result<String, StoreError> {
        let mut c = self.conn().await?;
        let version: Option<String> = c.query_first("SELECT VERSION()").await.map_err(classify)?;
        let version = version.unwrap_or_default();
        check_version(&version)?;
        let (kind, number) = describe(&version);
        Ok(format!("{kind} {number}, database `{}`", self.database))
    }

    /// Server settings that would corrupt timestamps or lose data, each with its fix:
    /// checked by `outbox doctor`.
    pub async fn server_problems(&self) -> Vec<(String, String)> {
        let Ok(mut c) = self.conn().await else {
            return Vec::new();
        };
        let row: Option<(String, String, String)> = c
            .query_first("SELECT @@session.time_zone, @@global.sql_mode, @@session.sql_mode")
            .await
            .ok()
            .flatten();
        let Some((tz, global_mode, session_mode)) = row else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if tz != "+00:00" {
            out.push((
                format!(
                    "the worker's session time zone is {tz}, not UTC: timestamps would be shifted"
                ),
                "report this: every connection of the worker sets time_zone = '+00:00'".into(),
            ));
        }
        let strict = |m: &str| m.contains("STRICT_TRANS_TABLES") || m.contains("STRICT_ALL_TABLES");
        if !strict(&global_mode) || !strict(&session_mode) {
            out.push((
                format!("sql_mode is not strict ({global_mode}): the server may store a truncated or zero value instead of refusing a bad one"),
                "fix: SET GLOBAL sql_mode = CONCAT(@@global.sql_mode, ',STRICT_TRANS_TABLES') (and in the server's config)".into(),
            ));
        }
        if global_mode.contains("ALLOW_INVALID_DATES") {
            out.push((
                "sql_mode has ALLOW_INVALID_DATES: impossible dates can be stored in the outbox's timestamps".into(),
                "fix: remove ALLOW_INVALID_DATES from sql_mode".into(),
            ));
        }
        out
    }

    /// Makes database `name` on the server `url` points at (whatever database the URL names
    /// is not used) and returns the URL of the new one: for `outbox demo --mysql`.
    pub async fn create_database(url: &str, name: &str) -> Result<String, StoreError> {
        let shown = outbox_core::conf::redact_secrets(url);
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| StoreError::Query(format!("`{shown}` is not a MySQL URL")))?;
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
        let server = format!("mysql://{authority}/{query}");
        let opts = Opts::from_url(&server)
            .map_err(|e| StoreError::Query(format!("`{shown}` is not a MySQL URL: {e}")))?;
        let mut c = Conn::new(opts).await.map_err(classify)?;
        c.query_drop(format!(
            "CREATE DATABASE `{}` CHARACTER SET utf8mb4",
            name.replace('`', "``")
        ))
        .await
        .map_err(classify)?;
        let _ = c.disconnect().await;
        Ok(format!("{scheme}://{authority}/{name}{query}"))
    }

    /// Drops the store's database, with everything in it: for `outbox demo --mysql`.
    pub async fn drop_database(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        c.query_drop(format!(
            "DROP DATABASE IF EXISTS `{}`",
            self.database.replace('`', "``")
        ))
        .await
        .map_err(classify)
    }

    /// Runs `sql` (a script of statements) on one connection: for tests and `outbox demo`.
    pub async fn run_script(&self, sql: &str) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        c.query_drop(sql).await.map_err(classify)
    }

    /// Leases the `rows` the caller's transaction locked (read with [`EVENT_COLUMNS`], so
    /// no read-back is needed) to `owner`.
    async fn lease(
        &self,
        tx: &mut mysql_async::Transaction<'_>,
        rows: &[Row],
        owner: &str,
        lease: Duration,
    ) -> Result<(), mysql_async::Error> {
        let ids: Vec<String> = rows
            .iter()
            .filter_map(|r| row::text_opt(r, 0, "id").ok().flatten())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        // One statement text whatever the batch size, so it is prepared once per connection.
        tx.exec_drop(
            &self.sql.lease,
            (crate::json_list(&ids), owner, micros(lease)),
        )
        .await
    }

    async fn claim_with(
        &self,
        select: &str,
        params: Vec<Value>,
        owner: &str,
        lease: Duration,
    ) -> Result<Leased, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c
            .start_transaction(TxOpts::default())
            .await
            .map_err(classify)?;
        let rows: Vec<Row> = tx.exec(select, params).await.map_err(classify)?;
        self.lease(&mut tx, &rows, owner, lease)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(leased_rows(&rows, Some(owner)))
    }

    /// Holds `aggregate` back behind its FAILED head `event` (once; an earlier block stays);
    /// nothing without the blocked-aggregates table.
    async fn block_aggregate(
        &self,
        tx: &mut mysql_async::Transaction<'_>,
        aggregate: &str,
        event: &str,
        routing: &str,
        reason: Option<&str>,
    ) -> Result<(), mysql_async::Error> {
        match &self.sql.block {
            Some(sql) => tx.exec_drop(sql, (aggregate, event, routing, reason)).await,
            None => Ok(()),
        }
    }
}

/// `("MariaDB", "10.11.19")` or `("MySQL", "8.0.36")` from `SELECT VERSION()`.
fn describe(version: &str) -> (&'static str, &str) {
    let number = version.split('-').next().unwrap_or(version);
    if version.to_ascii_lowercase().contains("mariadb") {
        ("MariaDB", number)
    } else {
        ("MySQL", number)
    }
}

/// Refuses a server without `FOR UPDATE SKIP LOCKED`: MySQL before 8.0.1, MariaDB before
/// 10.6 (and JSON_TABLE, which result writes use: MySQL 8.0.4, MariaDB 10.6).
pub(crate) fn check_version(version: &str) -> Result<(), StoreError> {
    let (kind, number) = describe(version);
    let parts: Vec<u32> = number.split('.').filter_map(|p| p.parse().ok()).collect();
    let at_least = |want: &[u32]| parts.as_slice() >= want;
    let ok = match kind {
        "MariaDB" => at_least(&[10, 6]),
        _ => at_least(&[8, 0, 4]),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Query(format!(
            "{kind} {number} is too old for the outbox relay: it needs SELECT ... FOR UPDATE SKIP LOCKED and JSON_TABLE (MySQL 8.0.4 or later, MariaDB 10.6 or later)"
        )))
    }
}

/// How often the change watcher looks after a change, and at most while nothing changes.
const WATCH_FAST: Duration = Duration::from_millis(5);
const WATCH_IDLE: Duration = Duration::from_millis(50);

/// The notifications of one watcher task.
struct Watch(tokio::sync::mpsc::UnboundedReceiver<Notification>);

#[async_trait]
impl NotificationStream for Watch {
    async fn next(&mut self) -> Option<Notification> {
        self.0.recv().await
    }
}

#[async_trait]
impl Store for MysqlStore {
    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        paused: &[String],
    ) -> Result<Leased, StoreError> {
        // Without paused keys, no filter at all (the key list would be joined for each row).
        if paused.is_empty() {
            let sql = with_limit(&self.sql.claim, limit);
            self.claim_with(&sql, vec![], owner, lease).await
        } else {
            let sql = with_limit(&self.sql.claim_skipping, limit);
            let params = vec![crate::json_list(paused).into()];
            self.claim_with(&sql, params, owner, lease).await
        }
    }

    async fn claim_ordered(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        ordered: &[String],
        paused: &[String],
    ) -> Result<Leased, StoreError> {
        let (ordered, paused) = (crate::json_list(ordered), crate::json_list(paused));
        let params: Vec<Value> = vec![ordered.clone().into(), paused.into(), ordered.into()];
        let mut c = self.conn().await?;
        let mut tx = c
            .start_transaction(TxOpts::default())
            .await
            .map_err(classify)?;
        // Every producer holds its bucket shared until it commits: with all buckets ours, no
        // event is inserted but uncommitted, so an aggregate's earliest unfinished event is
        // its head for certain. (Without the buckets, app-owned tables: see the README.)
        if let Some(locks) = &self.sql.order_locks {
            tx.query_drop(locks).await.map_err(classify)?;
        }
        let rows: Vec<Row> = tx
            .exec(with_limit(&self.sql.claim_ordered, limit), params)
            .await
            .map_err(classify)?;
        self.lease(&mut tx, &rows, owner, lease)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(leased_rows(&rows, Some(owner)))
    }

    async fn complete(&self, completions: &[Completion]) -> Result<u64, StoreError> {
        if completions.is_empty() {
            return Ok(0);
        }
        let sql = &self.sql;
        let mut c = self.conn().await?;
        let mut tx = c
            .start_transaction(TxOpts::default())
            .await
            .map_err(classify)?;
        let mut changed = 0u64;
        if let Some(rows) =
            crate::fenced_batch(completions, |a| matches!(a, CompletionAction::Sent))
        {
            tx.exec_drop(&sql.sent, (rows,)).await.map_err(classify)?;
            changed += tx.affected_rows();
        }
        if let Some(rows) =
            crate::fenced_batch(completions, |a| matches!(a, CompletionAction::Delete))
        {
            tx.exec_drop(&sql.delete, (rows,)).await.map_err(classify)?;
            changed += tx.affected_rows();
        }
        let has = |c: &str| self.layout.has_event_column(c);
        for c in completions {
            let Some((status, rc, delay, error, block)) = crate::result_fields(c) else {
                continue;
            };
            let finished = matches!(status, Status::Sent | Status::Failed);
            let head: Option<(Option<String>, Option<String>)> = tx
                .exec_first(&sql.result_head, (&c.id, &c.lease_owner, c.retry_count))
                .await
                .map_err(classify)?;
            let Some((aggregate, routing)) = head else {
                continue;
            };
            let mut params: Vec<Value> = Vec::with_capacity(7);
            if has("lastError") {
                params.push(error.into());
            }
            if has("processedAt") {
                params.push(finished.into());
            }
            params.extend([
                status.as_str().into(),
                micros(delay).into(),
                rc.into(),
                status.as_str().into(),
                c.id.as_str().into(),
            ]);
            tx.exec_drop(&sql.result, params).await.map_err(classify)?;
            changed += 1;
            if let (true, Some(a), Some(r)) = (block, aggregate, routing) {
                self.block_aggregate(&mut tx, &a, &c.id, &r, error)
                    .await
                    .map_err(classify)?;
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(changed)
    }

    async fn fail_unreadable(&self, rows: &[Unreadable]) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let sql = &self.sql;
        let mut c = self.conn().await?;
        let mut tx = c
            .start_transaction(TxOpts::default())
            .await
            .map_err(classify)?;
        let mut changed = 0;
        for u in rows {
            let error = u.last_error();
            let head: Option<(Option<String>, Option<String>)> = tx
                .exec_first(&sql.unreadable_head, (&u.id, &u.lease_owner))
                .await
                .map_err(classify)?;
            let Some((aggregate, routing)) = head else {
                continue;
            };
            let mut params: Vec<Value> = Vec::with_capacity(2);
            if self.layout.has_event_column("lastError") {
                params.push(error.as_str().into());
            }
            params.push(u.id.as_str().into());
            tx.exec_drop(&sql.unreadable, params)
                .await
                .map_err(classify)?;
            changed += 1;
            if let (true, Some(a), Some(k)) = (u.block_aggregate, aggregate, routing) {
                self.block_aggregate(&mut tx, &a, &u.id, &k, Some(&error))
                    .await
                    .map_err(classify)?;
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(changed)
    }

    async fn expired_leases(&self, limit: usize) -> Result<Leased, StoreError> {
        let mut c = self.conn().await?;
        let rows: Vec<Row> = c
            .exec(with_limit(&self.sql.expired, limit), ())
            .await
            .map_err(classify)?;
        Ok(leased_rows(&rows, None))
    }

    async fn policies(&self) -> Result<PolicyRows, StoreError> {
        let mut c = self.conn().await?;
        let rows: Vec<Row> = c.query(&self.sql.policies).await.map_err(classify)?;
        let mut out = PolicyRows::default();
        for r in &rows {
            match crate::cells::policy_row(r) {
                Ok(p) => out.policies.push(p),
                Err(b) => out.broken.push(b),
            }
        }
        Ok(out)
    }

    async fn next_due(&self, paused: &[String]) -> Result<Option<Duration>, StoreError> {
        let mut c = self.conn().await?;
        let us: Option<Option<i64>> = c
            .exec_first(&self.sql.next_due, (crate::json_list(paused),))
            .await
            .map_err(classify)?;
        Ok(us
            .flatten()
            .map(|us| Duration::from_micros(us.max(0) as u64)))
    }

    async fn purge(
        &self,
        status: Status,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError> {
        if !self.layout.has_event_column("processedAt") {
            return Ok(0);
        }
        let mut c = self.conn().await?;
        c.exec_drop(
            &self.sql.purge,
            (status.as_str(), micros(older_than), limit.max(1) as u64),
        )
        .await
        .map_err(classify)?;
        Ok(c.affected_rows())
    }

    async fn pending_summary(&self) -> Result<Vec<(String, i64, f64)>, StoreError> {
        let mut c = self.conn().await?;
        let rows: Vec<Row> = c.query(&self.sql.pending).await.map_err(classify)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    row::shown(r, 0),
                    int_opt(r, 1, "count").ok().flatten().unwrap_or(0),
                    real_opt(r, 2, "age").ok().flatten().unwrap_or(0.0).max(0.0),
                )
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        c.ping().await.map_err(classify)
    }

    /// MySQL has no LISTEN: a watcher task on a connection of its own looks at the newest
    /// event's seq and whether a PENDING event is due (two index probes; an event committed
    /// late under a lower seq is found by the second), every 5 ms while there is something
    /// to tell, backing off to every 50 ms while nothing changes, and at the policy table's
    /// row count and last update. (On an app's table without seq, the due flag alone.)
    async fn listen(&self) -> Result<Box<dyn NotificationStream>, StoreError> {
        let mut conn = self.conn().await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let look = self.sql.look.clone();
        let mut last: (i64, i64, String, bool) = conn
            .query_first(&look)
            .await
            .map_err(classify)?
            .unwrap_or_default();
        tokio::spawn(async move {
            let mut every = WATCH_FAST;
            while !tx.is_closed() {
                tokio::time::sleep(every).await;
                let now: (i64, i64, String, bool) = match conn.query_first(&look).await {
                    Ok(row) => row.unwrap_or_default(),
                    Err(e) => {
                        tracing::warn!(error = %classify(e), "The MySQL change watcher stopped");
                        return;
                    }
                };
                let events_changed = now.0 != last.0 || (now.3 && !last.3);
                let policies_changed = (now.1, &now.2) != (last.1, &last.2);
                // Due events the worker has not taken yet (it may be busy, or one was
                // committed late under a lower seq) are told again, at the slower pace.
                let due_again = now.3 && every >= WATCH_IDLE;
                if !events_changed && !policies_changed && !due_again {
                    every = (every * 2).min(WATCH_IDLE);
                    last = now;
                    continue;
                }
                every = if events_changed || policies_changed {
                    WATCH_FAST
                } else {
                    WATCH_IDLE
                };
                let events =
                    (events_changed || due_again) && tx.send(Notification::Events).is_err();
                let policies = policies_changed && tx.send(Notification::Policies).is_err();
                last = now;
                if events || policies {
                    return;
                }
            }
        });
        Ok(Box::new(Watch(rx)))
    }
}

impl std::fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlStore")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layout of an app's minimal tables: no optional or recommended column, no blocked
    /// or audit table, no bucket locks.
    fn minimal() -> Layout {
        let mut l = Layout::canonical();
        for c in [
            "lastError",
            "processedAt",
            "headers",
            "seq",
            "createdAt",
            "maxRetries",
            "retryInterval",
            "maxInterval",
        ] {
            l.names.event_columns.remove(c);
        }
        l.names
            .policy_columns
            .retain(|k, _| crate::adopt::POLICY_REQUIRED.contains(&k.as_str()));
        l.names.blocked = None;
        l.names.audit = None;
        l.order_lock = false;
        l
    }

    #[test]
    fn statements_keep_their_shape_on_minimal_tables() {
        for (layout, optional) in [(Layout::canonical(), 2), (minimal(), 0)] {
            let s = Statements::new(&layout);
            let all = [
                &s.claim,
                &s.claim_skipping,
                &s.claim_ordered,
                &s.lease,
                &s.sent,
                &s.delete,
                &s.result_head,
                &s.result,
                &s.unreadable_head,
                &s.unreadable,
                &s.expired,
                &s.policies,
                &s.next_due,
                &s.purge,
                &s.pending,
                &s.look,
            ];
            for sql in all {
                assert!(
                    !sql.replace("{limit}", "").contains('{'),
                    "a token left: {sql}"
                );
                if sql.trim_start().starts_with("UPDATE") {
                    assert!(sql.contains("SET"), "an UPDATE without SET: {sql}");
                    let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
                    assert!(
                        !flat.contains(", WHERE") && !flat.ends_with(','),
                        "a SET list ending in a comma: {sql}"
                    );
                }
            }
            // The parameters `complete` and `fail_unreadable` send.
            assert_eq!(s.result.matches('?').count(), 5 + optional, "{}", s.result);
            assert_eq!(
                s.unreadable.matches('?').count(),
                1 + optional / 2,
                "{}",
                s.unreadable
            );
            assert_eq!(s.block.is_some(), layout.names.blocked.is_some());
            assert_eq!(s.order_locks.is_some(), layout.order_lock);
        }
    }
}
