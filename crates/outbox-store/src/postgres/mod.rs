//! PostgreSQL backend: a connection pool, the claim/complete/reap statements, and a
//! dedicated LISTEN connection.

pub mod catalog;
pub mod diagnose;
pub mod drift;
pub mod inspect;
pub mod layout;
pub mod local;
pub mod migrate;
pub mod ops;
pub mod print;
pub mod resolve;
pub mod tls;

use layout::{Layout, Statements};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::future::poll_fn;
use outbox_core::{
    BrokenPolicy, ClaimedEvent, Completion, CompletionAction, Leased, Notification,
    NotificationStream, OutboxEvent, Payload, PolicyRows, RetryPolicy, Status, Store, StoreError,
    Unreadable,
};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Row};

/// NOTIFY channel for inserted events (payload: the table's schema).
pub const EVENT_CHANNEL: &str = "outbox_event";
/// NOTIFY channel for edited policies (payload: the table's schema).
pub const POLICY_CHANNEL: &str = "outbox_policy";
/// NOTIFY channel of the leading listener asking the other workers to claim too (payload:
/// the table's schema).
pub const HELP_CHANNEL: &str = "outbox_help";
/// The advisory-lock class (first key) of the leading listener; the second key is the
/// schema's hash. Held by the leader's LISTEN session for as long as it lives.
pub const LEAD_LOCK_CLASS: i32 = 1_869_968_483;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// `postgres://` URL or key=value connection string.
    pub url: String,
    /// The PostgreSQL schema holding the outbox tables.
    pub schema: String,
    /// Most connections the pool opens.
    pub pool_size: usize,
    /// Longest wait for a new connection.
    pub connect_timeout: Duration,
    /// Cuts every statement of this store's connections after this long (the dashboard's
    /// reads); `None`: the server's setting.
    pub statement_timeout: Option<Duration>,
}

impl PgStoreOptions {
    /// Options for `url` with the `public` schema and a small pool.
    pub fn new(url: impl Into<String>) -> Self {
        PgStoreOptions {
            url: url.into(),
            schema: "public".into(),
            pool_size: 4,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: None,
        }
    }
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The PostgreSQL store: a pool for statements plus one connection per listener.
pub struct PgStore {
    pool: Pool,
    config: tokio_postgres::Config,
    /// The connector for every connection (TLS as `sslmode` says).
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    tls_params: tls::TlsParams,
    schema: String,
    layout: Layout,
    sql: Statements,
    cursor: std::sync::Mutex<ClaimCursor>,
    /// At most one slow-claim warning a minute.
    slow_warned: outbox_core::Throttle,
}

/// Where this worker's claims have got to in `nextRetryAt` order. Claims start their index
/// scan a little before it, so they do not wade through the index entries of rows already
/// claimed — entries vacuum cannot remove while a long transaction elsewhere pins the xmin
/// horizon. A full claim from the start runs every second (less often when full claims are
/// slow, see [`ClaimCursor::full_every`]) and catches any row that became visible late with
/// an earlier `nextRetryAt`.
#[derive(Debug, Default)]
struct ClaimCursor {
    /// The newest `nextRetryAt` claimed so far.
    newest: Option<DateTime<Utc>>,
    /// When the last claim without a floor ran.
    last_full: Option<std::time::Instant>,
    /// How long that claim took.
    full_took: Duration,
}

/// How far before the cursor a claim starts: rows of concurrent producers commit a little
/// out of `nextRetryAt` order. A row later than this is found by the next full claim.
const CURSOR_MARGIN: chrono::TimeDelta = chrono::TimeDelta::milliseconds(250);
/// The shortest and longest time between two claims from the start of the index.
const FULL_CLAIM_EVERY: Duration = Duration::from_secs(1);
const FULL_CLAIM_AT_MOST_EVERY: Duration = Duration::from_secs(60);
/// A full claim may take this share of the claim loop's time at most (1/20 = 5%).
const FULL_CLAIM_SHARE: u32 = 20;

impl ClaimCursor {
    /// The time between full claims: a second, stretched so that full claims take at most
    /// 5% of the time when they are slow (dead index entries piling up behind a pinned xmin
    /// horizon), and never more than a minute.
    fn full_every(&self) -> Duration {
        (self.full_took * FULL_CLAIM_SHARE).clamp(FULL_CLAIM_EVERY, FULL_CLAIM_AT_MOST_EVERY)
    }

    /// Where a bounded scan starts (`None`: nowhere to start but the beginning).
    fn bound(&self) -> Option<DateTime<Utc>> {
        self.newest.map(|n| n - CURSOR_MARGIN)
    }

    /// The floor for the next claim (`None` for a full claim).
    fn floor(&mut self) -> Option<DateTime<Utc>> {
        let full_due = self
            .last_full
            .is_none_or(|t| t.elapsed() >= self.full_every());
        match self.bound() {
            Some(bound) if !full_due => Some(bound),
            _ => {
                self.last_full = Some(std::time::Instant::now());
                None
            }
        }
    }

    /// Records how long a full claim took.
    fn full_claim_took(&mut self, took: Duration) {
        self.full_took = took;
    }

    /// Records the newest `nextRetryAt` a claim returned. A full claim sets the cursor even
    /// backwards: it saw the oldest due rows, so if they lie behind the cursor (a policy
    /// un-paused, a producer's long transaction), the next claims start there.
    fn claimed_up_to(&mut self, newest: DateTime<Utc>, full: bool) {
        if full || self.newest.is_none_or(|n| n < newest) {
            self.newest = Some(newest);
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .finish()
    }
}

/// Whether a driver error is about the connection (worth a reconnect) rather than the query.
fn classify(e: tokio_postgres::Error) -> StoreError {
    // Connectivity: a closed connection, an I/O error (refused, reset, timed out), or a
    // server saying it is shutting down or starting. Anything else (TLS demanded but not
    // available, authentication, a bad query) will not get better by waiting.
    let source = std::error::Error::source(&e);
    let io = source.and_then(|s| s.downcast_ref::<std::io::Error>());
    // A certificate the verifier rejects will not get better by waiting either.
    if let Some(tls) = io.and_then(|io| io.get_ref()?.downcast_ref::<rustls::Error>()) {
        return StoreError::Query(format!(
            "TLS: {tls} (see sslmode and sslrootcert in the database URL)"
        ));
    }
    let io = io.is_some();
    let unavailable = e.is_closed()
        || io
        || e.code().is_some_and(|code| {
            let c = code.code();
            c.starts_with("08") || c.starts_with("57P")
        });
    let text = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    };
    if unavailable {
        StoreError::Unavailable(text)
    } else {
        StoreError::Query(text)
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(inner) => classify(inner),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// Masks the password of a connection URL for messages.
pub fn redact_url(url: &str) -> String {
    outbox_core::conf::redact_secrets(url)
}

impl PgStore {
    /// Builds the pool. No connection is made until the first statement.
    pub fn new(options: &PgStoreOptions) -> Result<PgStore, StoreError> {
        let invalid = |e: &dyn std::fmt::Display| {
            StoreError::Query(format!(
                "database.url '{}' is not a valid PostgreSQL URL: {e}",
                redact_url(&options.url)
            ))
        };
        let (url, tls_params) = tls::split(&options.url).map_err(|e| invalid(&e))?;
        let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| invalid(&e))?;
        config.ssl_mode(tls_params.mode.driver());
        let connector = tls::connector(&tls_params)
            .map_err(|e| StoreError::Query(format!("database.url: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("outbox");
        }
        // Plan every statement with its actual values. A generic plan cached while the table
        // was small (a worker started on an empty outbox) would keep sorting the whole
        // table on every claim once it has grown, until the next ANALYZE.
        let mut server_options = config.get_options().map(str::to_string).unwrap_or_default();
        if !server_options.contains("plan_cache_mode") {
            server_options.push_str(" -c plan_cache_mode=force_custom_plan");
        }
        if let Some(t) = options.statement_timeout {
            server_options.push_str(&format!(" -c statement_timeout={}", t.as_millis().max(1)));
        }
        config.options(server_options.trim());
        // A database that stops answering (network partition) must surface as an error,
        // not a statement that waits for the kernel's TCP timeout.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(15));
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(30));
        }
        let manager = Manager::from_config(
            config.clone(),
            connector.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout * 2))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Query(format!("cannot build the connection pool: {e}")))?;
        Ok(PgStore {
            pool,
            config,
            tls: connector,
            tls_params,
            schema: options.schema.clone(),
            layout: Layout::canonical(&options.schema),
            sql: Layout::canonical(&options.schema).statements(),
            cursor: Default::default(),
            slow_warned: outbox_core::Throttle::new(diagnose::WARN_EVERY),
        })
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The physical layout the statements use.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Uses `layout` (e.g. resolved from an app-owned table) for every statement.
    pub fn set_layout(&mut self, layout: Layout) {
        self.sql = layout.statements();
        self.layout = layout;
    }

    /// A pooled connection.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }
}

/// Reads one claimed (or expired) row as an event. Each column is read once, on its own;
/// the first that cannot be read makes the row [`Unreadable`], naming it.
pub(crate) fn read_row(layout: &Layout, row: &Row) -> Result<ClaimedEvent, Unreadable> {
    let text = |i: usize| row.try_get::<_, Option<String>>(i).ok().flatten();
    let id = text(0).unwrap_or_default();
    let lease_owner = text(12).unwrap_or_default();
    let routing_key = text(4);
    match read_fields(row, routing_key.as_deref()) {
        Ok(f) => Ok(ClaimedEvent {
            event: OutboxEvent {
                id,
                event_name: f.event_name,
                event_type: f.event_type,
                aggregate_id: f.aggregate_id,
                // read_fields checked it is there.
                routing_key: routing_key.unwrap_or_default(),
                payload: f.payload,
                headers: f.headers,
                occurred_at: f.occurred_at,
                retry_count: f.retry_count.unwrap_or(0),
                max_retries: f.max_retries,
                retry_interval: f.retry_interval,
                max_interval: f.max_interval,
            },
            lease_owner,
        }),
        Err((i, what)) => Err(Unreadable {
            id,
            lease_owner,
            routing_key,
            problem: format!(
                "column {}: {what}",
                layout.column_label(layout::RETURNED[i])
            ),
            block_aggregate: false,
        }),
    }
}

/// The columns of a claimed row besides id, lease owner and routingKey (read by the
/// caller, which needs them for an unreadable row too).
struct Fields {
    event_name: String,
    event_type: String,
    aggregate_id: String,
    payload: Payload,
    headers: Option<serde_json::Value>,
    occurred_at: DateTime<Utc>,
    retry_count: Option<i32>,
    max_retries: Option<i32>,
    retry_interval: Option<i32>,
    max_interval: Option<i32>,
}

/// Reads [`Fields`], or says which column (its index in [`layout::RETURNED`]) could not
/// be read and why.
fn read_fields(row: &Row, routing_key: Option<&str>) -> Result<Fields, (usize, String)> {
    // A value of a column the worker cannot do without.
    fn required<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a Row,
        i: usize,
    ) -> Result<T, (usize, String)> {
        match row.try_get::<_, Option<T>>(i) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err((i, "is NULL".to_string())),
            Err(e) => Err((i, decode_error(&e))),
        }
    }
    let int = |i: usize| -> Result<Option<i32>, (usize, String)> {
        match row.try_get::<_, Option<i64>>(i) {
            Ok(None) => Ok(None),
            Ok(Some(v)) => i32::try_from(v)
                .map(Some)
                .map_err(|_| (i, format!("{v} is out of range (a 32-bit integer)"))),
            Err(e) => Err((i, decode_error(&e))),
        }
    };
    let not_json =
        |i: usize| move |e: serde_json::Error| (i, format!("is not JSON the relay can read ({e})"));
    let event_name = required(row, 1)?;
    let event_type = required(row, 2)?;
    let aggregate_id = required(row, 3)?;
    if routing_key.is_none() {
        return Err((4, "is NULL".to_string()));
    }
    // The payload stays the text the database gave (only checked to be JSON): it is
    // forwarded byte for byte. The headers are metadata the sinks look into.
    let payload = Payload::from_json(required(row, 5)?).map_err(not_json(5))?;
    let headers = match row.try_get::<_, Option<String>>(6) {
        Ok(None) => None,
        Ok(Some(raw)) => Some(serde_json::from_str(&raw).map_err(not_json(6))?),
        Err(e) => return Err((6, decode_error(&e))),
    };
    Ok(Fields {
        event_name,
        event_type,
        aggregate_id,
        payload,
        headers,
        occurred_at: required(row, 7)?,
        retry_count: int(8)?,
        max_retries: int(9)?,
        retry_interval: int(10)?,
        max_interval: int(11)?,
    })
}

/// What a column's decode error says, without the driver's wrapping.
fn decode_error(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

/// Claimed rows read one by one; events oldest first.
fn leased(layout: &Layout, rows: &[Row]) -> Leased {
    let mut out = Leased::default();
    for row in rows {
        match read_row(layout, row) {
            Ok(event) => out.events.push(event),
            Err(bad) => out.unreadable.push(bad),
        }
    }
    out.events.sort_by(|a, b| {
        (a.event.occurred_at, &a.event.id).cmp(&(b.event.occurred_at, &b.event.id))
    });
    out
}

/// A policy row read value by value (every column arrives as text, in
/// [`layout::POLICY_READ`] order): a NULL where a value is needed, a value that does not
/// parse, or one [`RetryPolicy::problem`] rejects makes the row broken, naming the column.
pub(crate) fn read_policy(row: &Row) -> Result<RetryPolicy, BrokenPolicy> {
    let value = |i: usize| -> Option<String> { row.try_get::<_, Option<String>>(i).ok().flatten() };
    let routing_key = value(0);
    // Read first, so that even a broken row's events keep their aggregates in order.
    let ordered = value(6).is_some_and(|v| v.trim() == "true");
    let broken = |problem: String| BrokenPolicy {
        routing_key: routing_key.clone(),
        problem,
        ordered,
    };
    let Some(key) = routing_key.clone() else {
        return Err(broken("routingKey is NULL".into()));
    };
    let raw = |i: usize| -> Result<String, BrokenPolicy> {
        let (logical, default) = layout::POLICY_READ[i];
        match value(i) {
            Some(v) => Ok(v),
            None if default != "NULL" => Ok(default.to_string()),
            None => Err(broken(format!("{logical} is NULL; set it"))),
        }
    };
    fn parse<T: FromStr>(logical: &str, text: &str) -> Result<T, String> {
        text.trim()
            .parse::<T>()
            .map_err(|_| format!("{logical} '{text}' is not a value the worker can use"))
    }
    let num = |i: usize| -> Result<i64, BrokenPolicy> {
        let text = raw(i)?;
        let logical = layout::POLICY_READ[i].0;
        // numeric columns may hold a fraction: whole milliseconds only.
        parse::<i64>(logical, &text)
            .or_else(|e| match parse::<f64>(logical, &text) {
                Ok(f) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(f as i64),
                _ => Err(e),
            })
            .map_err(broken)
    };
    let float = |i: usize| parse::<f64>(layout::POLICY_READ[i].0, &raw(i)?).map_err(broken);
    let flag = |i: usize| parse::<bool>(layout::POLICY_READ[i].0, &raw(i)?).map_err(broken);
    let max_retries = num(1)?;
    let policy = RetryPolicy {
        routing_key: key,
        max_retries: i32::try_from(max_retries)
            .map_err(|_| broken(format!("maxRetries {max_retries} is out of range")))?,
        retry_interval_ms: num(2)?,
        max_interval_ms: num(3)?,
        backoff_multiplier: float(4)?,
        jitter: float(5)?,
        ordered: flag(6)?,
        paused: flag(7)?,
        block_on_failure: flag(8)?,
    };
    match policy.problem() {
        Some(problem) => Err(broken(problem)),
        None => Ok(policy),
    }
}

impl outbox_core::Backend for PgStore {
    fn schema(&self) -> &str {
        &self.schema
    }

    fn location(&self) -> String {
        format!("schema \"{}\"", self.schema)
    }

    fn table_name(&self, logical: &str) -> String {
        let l = self.layout();
        if logical == crate::adopt::POLICY_TABLE {
            l.policies()
        } else {
            l.events()
        }
    }

    fn column_name(&self, logical_table: &str, logical: &str) -> String {
        let l = self.layout();
        let map = if logical_table == crate::adopt::POLICY_TABLE {
            &l.policy_columns
        } else {
            &l.event_columns
        };
        quote_ident(map.get(logical).map(String::as_str).unwrap_or(logical))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl PgStore {
    /// Caps the pool at `n` connections (e.g. 1 for a store that only pings).
    pub fn set_pool_size(&mut self, n: usize) {
        self.pool.resize(n.max(1));
    }
}

impl PgStore {
    /// Runs claim statements in one transaction that commits without waiting for its WAL
    /// flush. If the server crashed before the flush, the claim would be lost and the rows
    /// PENDING again: a redelivery, which at-least-once allows. A result write (synchronous)
    /// can never outlive its claim, since it comes later in the same WAL. BEGIN, the
    /// statements and COMMIT are pipelined: one round trip. Returns each statement's rows.
    async fn claim_rows(
        &self,
        steps: &[(&str, &[&(dyn ToSql + Sync)])],
    ) -> Result<(Vec<Vec<tokio_postgres::Row>>, Duration), StoreError> {
        type Call<'a> = std::pin::Pin<
            Box<
                dyn Future<Output = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>
                    + Send
                    + 'a,
            >,
        >;
        let client = self.client().await?;
        // Timed from here: the statements, not the wait for a pooled connection.
        let started = std::time::Instant::now();
        let mut stmts = Vec::with_capacity(steps.len());
        for (sql, _) in steps {
            stmts.push(client.prepare_cached(sql).await.map_err(classify)?);
        }
        let c: &tokio_postgres::Client = &client;
        let mut calls: Vec<Call<'_>> = vec![Box::pin(async move {
            c.batch_execute("BEGIN; SET LOCAL synchronous_commit = off")
                .await
                .map(|()| Vec::new())
        })];
        for (stmt, (_, params)) in stmts.iter().zip(steps) {
            calls.push(Box::pin(c.query(stmt, params)));
        }
        calls.push(Box::pin(async move {
            c.batch_execute("COMMIT").await.map(|()| Vec::new())
        }));
        // join_all polls in order, so the messages go out in order.
        let mut results = futures_util::future::join_all(calls).await;
        let commit = results.pop();
        let mut results = results.into_iter();
        results.next().transpose().map_err(classify)?;
        let rows = results.collect::<Result<Vec<_>, _>>().map_err(classify)?;
        commit.transpose().map_err(classify)?;
        let took = started.elapsed();
        self.note_claim_time(took);
        Ok((rows, took))
    }
}

#[async_trait]
impl Store for PgStore {
    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        paused: &[String],
    ) -> Result<Leased, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let lease = lease.as_secs_f64();
        let floor = self.cursor.lock().expect("claim cursor").floor();
        let (mut results, took) = self
            .claim_rows(&[(&self.sql.claim, &[&owner, &lease, &limit, &floor, &paused])])
            .await?;
        let rows = results.swap_remove(0);
        let newest: Option<DateTime<Utc>> = rows.iter().filter_map(|r| r.try_get(13).ok()).max();
        {
            let mut cursor = self.cursor.lock().expect("claim cursor");
            if floor.is_none() {
                cursor.full_claim_took(took);
            }
            if let Some(newest) = newest {
                cursor.claimed_up_to(newest, floor.is_none());
            }
        }
        Ok(leased(&self.layout, &rows))
    }

    async fn claim_ordered(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        ordered: &[String],
        paused: &[String],
    ) -> Result<Leased, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let lease = lease.as_secs_f64();
        // The recheck runs in the same transaction, with the bucket locks held.
        let (mut results, _) = self
            .claim_rows(&[
                (
                    &self.sql.ordered_claim,
                    &[&owner, &lease, &limit, &ordered, &paused],
                ),
                (&self.sql.ordered_recheck, &[&owner, &ordered]),
            ])
            .await?;
        let given_back: Vec<String> = results[1]
            .iter()
            .filter_map(|r| r.try_get(0).ok())
            .collect();
        let rows = results.swap_remove(0);
        let mut out = leased(&self.layout, &rows);
        out.events.retain(|e| !given_back.contains(&e.event.id));
        out.unreadable.retain(|u| !given_back.contains(&u.id));
        Ok(out)
    }

    async fn complete(&self, completions: &[Completion]) -> Result<u64, StoreError> {
        if completions.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::new();
        let mut owners = Vec::new();
        let mut rc_old = Vec::new();
        let mut statuses = Vec::new();
        let mut rc_new = Vec::new();
        let mut delays = Vec::new();
        let mut errors: Vec<Option<String>> = Vec::new();
        let mut block = Vec::new();
        let mut del_ids = Vec::new();
        let mut del_owners = Vec::new();
        let mut del_rc = Vec::new();
        for c in completions {
            let mut blocks = false;
            let (status, rc, delay, err) = match &c.action {
                CompletionAction::Delete => {
                    del_ids.push(c.id.as_str());
                    del_owners.push(c.lease_owner.as_str());
                    del_rc.push(c.retry_count);
                    continue;
                }
                CompletionAction::Sent => (Status::Sent, c.retry_count, 0.0, None),
                CompletionAction::Retry {
                    retry_count,
                    delay,
                    error,
                } => (
                    Status::Pending,
                    *retry_count,
                    delay.as_secs_f64(),
                    Some(error.clone()),
                ),
                CompletionAction::Fail {
                    error,
                    block_aggregate,
                } => {
                    blocks = *block_aggregate;
                    (Status::Failed, c.retry_count, 0.0, Some(error.clone()))
                }
                CompletionAction::Release { note } => {
                    (Status::Pending, c.retry_count, 0.0, note.clone())
                }
            };
            ids.push(c.id.as_str());
            owners.push(c.lease_owner.as_str());
            rc_old.push(c.retry_count);
            statuses.push(status.as_str());
            rc_new.push(rc);
            delays.push(delay);
            block.push(blocks);
            // PostgreSQL text cannot hold NUL; a sink's error body might.
            errors.push(err.map(|e| e.replace('\0', "")));
        }
        let client = self.client().await?;
        let mut changed = 0;
        match &self.sql.complete_blocking {
            Some(sql) if block.contains(&true) => {
                let stmt = client.prepare_cached(sql).await.map_err(classify)?;
                let row = client
                    .query_one(
                        &stmt,
                        &[
                            &ids, &owners, &rc_old, &statuses, &rc_new, &delays, &errors, &block,
                        ],
                    )
                    .await
                    .map_err(classify)?;
                let n: i64 = row.try_get(0).map_err(classify)?;
                changed += u64::try_from(n).unwrap_or(0);
            }
            _ if !ids.is_empty() => {
                let stmt = client
                    .prepare_cached(&self.sql.complete)
                    .await
                    .map_err(classify)?;
                changed += client
                    .execute(
                        &stmt,
                        &[&ids, &owners, &rc_old, &statuses, &rc_new, &delays, &errors],
                    )
                    .await
                    .map_err(classify)?;
            }
            _ => {}
        }
        if !del_ids.is_empty() {
            let stmt = client
                .prepare_cached(&self.sql.delete)
                .await
                .map_err(classify)?;
            changed += client
                .execute(&stmt, &[&del_ids, &del_owners, &del_rc])
                .await
                .map_err(classify)?;
        }
        Ok(changed)
    }

    async fn fail_unreadable(&self, rows: &[Unreadable]) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let owners: Vec<&str> = rows.iter().map(|r| r.lease_owner.as_str()).collect();
        // PostgreSQL text cannot hold NUL, and a problem may quote a value.
        let errors: Vec<String> = rows
            .iter()
            .map(|r| r.last_error().replace('\0', ""))
            .collect();
        let block: Vec<bool> = rows.iter().map(|r| r.block_aggregate).collect();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.fail_unreadable)
            .await
            .map_err(classify)?;
        let row = client
            .query_one(&stmt, &[&ids, &owners, &errors, &block])
            .await
            .map_err(classify)?;
        let n: i64 = row.try_get(0).map_err(classify)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn expired_leases(&self, limit: usize) -> Result<Leased, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.expired)
            .await
            .map_err(classify)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client.query(&stmt, &[&limit]).await.map_err(classify)?;
        Ok(leased(&self.layout, &rows))
    }

    async fn policies(&self) -> Result<PolicyRows, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.policies)
            .await
            .map_err(classify)?;
        let rows = client.query(&stmt, &[]).await.map_err(classify)?;
        let mut out = PolicyRows::default();
        for row in &rows {
            match read_policy(row) {
                Ok(p) => out.policies.push(p),
                Err(b) => out.broken.push(b),
            }
        }
        Ok(out)
    }

    async fn next_due(&self, paused: &[String]) -> Result<Option<Duration>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.next_due)
            .await
            .map_err(classify)?;
        // From the claim cursor on, like a bounded claim: a due row behind it is the full
        // claim's to find, and the scan skips the entries of rows already claimed.
        let bound = self.cursor.lock().expect("claim cursor").bound();
        let row = client
            .query_opt(&stmt, &[&paused, &bound])
            .await
            .map_err(classify)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let secs: f64 = row.try_get(0).map_err(classify)?;
        // An 'infinity' nextRetryAt reads as +inf: treat it as "not within any wait".
        Ok(Duration::try_from_secs_f64(secs.max(0.0)).ok())
    }

    async fn pending_summary(&self) -> Result<Vec<(String, i64, f64)>, StoreError> {
        let (_, by_key) = self.layout.summary_statements();
        let client = self.client().await?;
        let stmt = client.prepare_cached(&by_key).await.map_err(classify)?;
        let rows = client.query(&stmt, &[]).await.map_err(classify)?;
        Ok(rows
            .iter()
            .map(|r| {
                let age = r.get::<_, f64>(2);
                // An occurredAt that is infinite (or a clock far off) says nothing of age.
                let age = if age.is_finite() { age.max(0.0) } else { 0.0 };
                (ops::text_or_null(r, 0), r.get(1), age)
            })
            .collect())
    }

    async fn purge(
        &self,
        status: Status,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let (delete, _) = self.layout.purge_statements(status);
        let client = self.client().await?;
        let stmt = client.prepare_cached(&delete).await.map_err(classify)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        client
            .execute(&stmt, &[&older_than.as_secs_f64(), &limit])
            .await
            .map_err(classify)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client()
            .await?
            .simple_query("SELECT 1")
            .await
            .map(drop)
            .map_err(classify)
    }

    async fn listen(&self) -> Result<Box<dyn NotificationStream>, StoreError> {
        let (client, mut connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(classify)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let schema = self.schema.clone();
        tokio::spawn(async move {
            while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(n)) if n.payload() == schema => {
                        let kind = match n.channel() {
                            EVENT_CHANNEL => Notification::Events,
                            POLICY_CHANNEL => Notification::Policies,
                            HELP_CHANNEL => Notification::Help,
                            _ => continue,
                        };
                        if tx.send(kind).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "Listener connection ended");
                        return;
                    }
                }
            }
        });
        client
            .batch_execute(&format!(
                "LISTEN {EVENT_CHANNEL}; LISTEN {POLICY_CHANNEL}; LISTEN {HELP_CHANNEL};"
            ))
            .await
            .map_err(classify)?;
        Ok(Box::new(PgListener {
            client,
            rx,
            schema: self.schema.clone(),
        }))
    }

    async fn call_for_help(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute("SELECT pg_notify($1, $2)", &[&HELP_CHANNEL, &self.schema])
            .await
            .map_err(classify)?;
        Ok(())
    }
}

/// A LISTEN connection; dropping it closes the connection (and ends its leadership).
struct PgListener {
    client: tokio_postgres::Client,
    rx: mpsc::UnboundedReceiver<Notification>,
    schema: String,
}

#[async_trait]
impl NotificationStream for PgListener {
    async fn next(&mut self) -> Option<Notification> {
        self.rx.recv().await
    }

    /// A session-level advisory lock on this connection: held until it closes, so a
    /// leader that dies or loses its connection frees the place at once. A failed try
    /// leads (better one claim too many than an event left to the poll).
    async fn try_lead(&mut self) -> bool {
        self.client
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&LEAD_LOCK_CLASS, &self.schema],
            )
            .await
            .map_or(true, |row| row.try_get::<_, bool>(0).unwrap_or(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_cursor_moves_forward_and_a_full_claim_can_move_it_back() {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        let before = |s: i64| Some(t(s) - CURSOR_MARGIN);
        let mut c = ClaimCursor::default();
        assert_eq!(c.floor(), None, "the first claim is a full one");
        c.claimed_up_to(t(1000), true);
        assert_eq!(
            c.floor(),
            before(1000),
            "then claims start before the cursor"
        );
        c.claimed_up_to(t(1010), false);
        c.claimed_up_to(t(1005), false);
        assert_eq!(
            c.floor(),
            before(1010),
            "a bounded claim only moves it forward"
        );
        c.last_full = Some(std::time::Instant::now() - FULL_CLAIM_EVERY);
        assert_eq!(c.floor(), None, "a full claim at least once a second");
        c.claimed_up_to(t(500), true);
        assert_eq!(
            c.floor(),
            before(500),
            "old due rows found by a full claim pull it back"
        );
    }

    #[test]
    fn slow_full_claims_run_less_often_but_at_least_once_a_minute() {
        let mut c = ClaimCursor::default();
        c.full_claim_took(Duration::from_millis(10));
        assert_eq!(c.full_every(), FULL_CLAIM_EVERY);
        c.full_claim_took(Duration::from_millis(500));
        assert_eq!(c.full_every(), Duration::from_secs(10), "5% of the time");
        c.full_claim_took(Duration::from_secs(30));
        assert_eq!(c.full_every(), FULL_CLAIM_AT_MOST_EVERY);
        c.claimed_up_to(DateTime::<Utc>::from_timestamp(1000, 0).unwrap(), true);
        c.last_full = Some(std::time::Instant::now() - Duration::from_secs(5));
        assert!(c.floor().is_some(), "5 s after a 30 s full claim: bounded");
        c.last_full = Some(std::time::Instant::now() - FULL_CLAIM_AT_MOST_EVERY);
        assert_eq!(c.floor(), None);
    }

    #[test]
    fn identifiers_are_quoted_and_escaped() {
        assert_eq!(quote_ident("public"), "\"public\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("host=h user=u"), "host=h user=u");
    }
}
