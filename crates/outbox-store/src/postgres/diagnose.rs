//! Why claims got slow: the transactions that hold vacuum back (a pinned xmin horizon), and
//! the event table's dead tuples and planner statistics. Read only when a claim was slow
//! (at most once a minute) and by `outbox doctor`.

use super::{classify, PgStore};
use outbox_core::StoreError;
use std::time::Duration;

/// A claim slower than this is worth a warning.
pub const SLOW_CLAIM: Duration = Duration::from_millis(100);
/// At most one slow-claim warning in this long.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(60);

/// A session whose snapshot keeps vacuum from removing dead rows (its `backend_xmin`).
#[derive(Debug, Clone, PartialEq)]
pub struct XminHolder {
    pub pid: i32,
    pub user: String,
    pub application: String,
    /// `active`, `idle in transaction`, ...
    pub state: String,
    /// How long its transaction has been open.
    pub open_for: Duration,
    /// How many transactions it holds vacuum back by.
    pub xmin_age: i32,
}

impl std::fmt::Display for XminHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} (user \"{}\", application \"{}\", {}, transaction open {}s, {} transactions behind)",
            self.pid,
            self.user,
            self.application,
            self.state,
            self.open_for.as_secs(),
            self.xmin_age
        )
    }
}

/// The event table's state as the statistics collector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableHealth {
    pub live: i64,
    pub dead: i64,
    pub modified_since_analyze: i64,
    /// When it was last analysed (`None`: never).
    pub analyzed: Option<String>,
}

impl PgStore {
    /// Client sessions whose transaction has been open longer than `older_than` and that
    /// hold vacuum back — by a snapshot (`backend_xmin`: a REPEATABLE READ reader, a long
    /// query) or by a transaction id of their own (`backend_xid`: a producer left idle in
    /// transaction after writing) — the one holding back most first. Vacuum's own sessions
    /// are left out; sessions of other roles show only with `pg_read_all_stats`.
    pub async fn xmin_holders(&self, older_than: Duration) -> Result<Vec<XminHolder>, StoreError> {
        xmin_holders(&self.pool, older_than).await
    }

    /// Dead tuples and planner statistics of the event table.
    pub async fn table_health(&self) -> Result<Option<TableHealth>, StoreError> {
        table_health(&self.pool, &self.layout.events()).await
    }

    /// After a claim whose statements took `took`: a warning, at most once a minute,
    /// naming what likely slowed it. The look-up runs on a task of its own, so the claimed
    /// events are not held back by it.
    pub(crate) fn note_claim_time(&self, took: Duration) {
        if took < SLOW_CLAIM || self.slow_warned.allow().is_none() {
            return;
        }
        let (pool, table) = (self.pool.clone(), self.layout.events());
        tokio::spawn(async move {
            let causes = slow_claim_causes(&pool, &table).await;
            tracing::warn!(took = ?took, causes = %causes, "A claim was slow");
        });
    }
}

async fn xmin_holders(
    pool: &deadpool_postgres::Pool,
    older_than: Duration,
) -> Result<Vec<XminHolder>, StoreError> {
    let client = pool.get().await.map_err(super::pool_error)?;
    let rows = client
            .query(
                "SELECT pid, COALESCE(usename::text, ''), COALESCE(application_name, ''), \
                        COALESCE(state, ''), \
                        COALESCE(EXTRACT(EPOCH FROM now() - xact_start)::float8, 0), \
                        GREATEST(COALESCE(age(backend_xmin), 0), COALESCE(age(backend_xid), 0))::int4 \
                   FROM pg_stat_activity \
                  WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
                    AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL) \
                    AND xact_start < now() - make_interval(secs => $1::float8) \
                  ORDER BY 6 DESC LIMIT 5",
                &[&older_than.as_secs_f64()],
            )
            .await
            .map_err(classify)?;
    Ok(rows
        .iter()
        .map(|r| XminHolder {
            pid: r.get(0),
            user: r.get(1),
            application: r.get(2),
            state: r.get(3),
            open_for: Duration::try_from_secs_f64(r.get::<_, f64>(4).max(0.0)).unwrap_or_default(),
            xmin_age: r.get(5),
        })
        .collect())
}

async fn table_health(
    pool: &deadpool_postgres::Pool,
    table: &str,
) -> Result<Option<TableHealth>, StoreError> {
    let client = pool.get().await.map_err(super::pool_error)?;
    let row = client
        .query_opt(
            "SELECT n_live_tup, n_dead_tup, n_mod_since_analyze, \
                    GREATEST(last_analyze, last_autoanalyze)::text \
               FROM pg_stat_user_tables WHERE relid = to_regclass($1)",
            &[&table],
        )
        .await
        .map_err(classify)?;
    Ok(row.map(|r| TableHealth {
        live: r.get(0),
        dead: r.get(1),
        modified_since_analyze: r.get(2),
        analyzed: r.get(3),
    }))
}

/// What likely slowed a claim, in words, each with its fix.
async fn slow_claim_causes(pool: &deadpool_postgres::Pool, table: &str) -> String {
    let mut causes = Vec::new();
    if let Ok(holders) = xmin_holders(pool, Duration::from_secs(30)).await {
        if let Some(h) = holders.first() {
            causes.push(format!(
                "a transaction holds vacuum back, so dead index entries pile up: {h}; end it if it is stuck (SELECT pg_terminate_backend({}))",
                h.pid
            ));
        }
    }
    if let Ok(Some(t)) = table_health(pool, table).await {
        if t.modified_since_analyze > t.live.max(1000) / 5 {
            causes.push(format!(
                "the planner's statistics are stale: {} rows changed since the last ANALYZE ({}); run ANALYZE {table}",
                t.modified_since_analyze,
                t.analyzed.as_deref().unwrap_or("never"),
            ));
        }
        if t.dead > t.live.max(10_000) {
            causes.push(format!(
                "{} dead rows against {} live ones in {table}: vacuum is behind",
                t.dead, t.live,
            ));
        }
    }
    if causes.is_empty() {
        "no transaction holding vacuum back, stale statistics or dead-row pile-up found (an overloaded server?)"
            .to_string()
    } else {
        causes.join("; ")
    }
}
