//! SQLite backend: the embedded store. One writer connection per process (every write
//! transaction `BEGIN IMMEDIATE`, so processes sharing the file take turns), one reader, WAL
//! mode and a busy timeout; a writer that stays busy comes back as
//! [`StoreError::Unavailable`], which the engine retries with backoff. SQLite has no LISTEN:
//! a watcher thread polls `PRAGMA data_version` (a few microseconds) and a policy counter
//! kept by triggers. Calls run on tokio's blocking threads.

pub mod adopt;
pub mod layout;
pub mod migrate;
pub mod ops;
pub mod print;
mod row;

use async_trait::async_trait;
use layout::Layout;
use outbox_core::{
    Completion, CompletionAction, Leased, Notification, NotificationStream, PolicyRows, Status,
    Store, StoreError, Unreadable,
};
use row::{leased_rows, EVENT_COLUMNS};
use rusqlite::{params, Connection, ErrorCode, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a statement waits for another connection's write lock before SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the watcher looks for changes made by other connections.
const WATCH_EVERY: Duration = Duration::from_millis(20);

/// Where the database file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// The database file.
    pub path: PathBuf,
}

impl SqliteOptions {
    /// The file a `sqlite:` URL names: `sqlite:///abs/path` or `sqlite:/abs/path` (absolute),
    /// `sqlite:rel/path` (relative to `base`, the config file's folder, else the current
    /// one). Query parameters are not taken.
    pub fn from_url(url: &str, base: Option<&Path>) -> Result<SqliteOptions, String> {
        let rest = url
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("sqlite:"))
            .map(|_| &url[7..])
            .ok_or_else(|| format!("`{url}` is not a sqlite: URL"))?;
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.contains('?') || path.contains('#') {
            return Err(format!(
                "`{url}` has parameters, which a sqlite: URL does not take (the store sets WAL mode and its timeouts itself); name only the file"
            ));
        }
        if path.is_empty() {
            return Err(format!(
                "`{url}` names no file; write sqlite:///absolute/path/app.db or sqlite:relative/app.db"
            ));
        }
        if path == ":memory:" {
            return Err("an in-memory SQLite database cannot be shared between the worker and the app; name a file".into());
        }
        let path = PathBuf::from(path);
        let path = match (path.is_absolute(), base) {
            (false, Some(b)) => b.join(path),
            _ => path,
        };
        Ok(SqliteOptions { path })
    }
}

/// A connection opened on first use and kept.
type Slot = Arc<Mutex<Option<Connection>>>;

/// The SQLite store. Cheap to create: nothing is opened until the first call.
pub struct SqliteStore {
    path: PathBuf,
    writer: Slot,
    reader: Slot,
    /// Where the outbox tables are (the worker's own, unless adopted).
    layout: Arc<Layout>,
    sql: Arc<Statements>,
}

impl SqliteStore {
    /// The store for `options` (no file is opened yet).
    pub fn new(options: &SqliteOptions) -> SqliteStore {
        let layout = Layout::canonical();
        SqliteStore {
            path: options.path.clone(),
            writer: Arc::default(),
            reader: Arc::default(),
            sql: Arc::new(Statements::new(&layout)),
            layout: Arc::new(layout),
        }
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

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `sql`, a script of statements, in one transaction: for `outbox demo`, which
    /// runs the SQL an application would.
    pub async fn run_script(&self, sql: &str) -> Result<(), StoreError> {
        let sql = sql.to_string();
        self.write(move |tx| tx.execute_batch(&sql)).await
    }

    /// Runs `f` on the writer (`write`) or the reader connection, off the async threads.
    async fn call<T, F>(&self, write: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let slot = if write {
            self.writer.clone()
        } else {
            self.reader.clone()
        };
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                *guard = Some(open(&path, false)?);
            }
            let conn = guard.as_mut().expect("opened above");
            f(conn).map_err(|e| classify(e, &path))
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the SQLite call did not finish: {e}")))?
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.call(true, move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }
}

/// Opens the file (creating it when `create`) with the store's settings.
pub(crate) fn open(path: &Path, create: bool) -> Result<Connection, StoreError> {
    if !create && !path.exists() {
        return Err(StoreError::Query(format!(
            "the SQLite database {} does not exist; create it with `outbox migrate deploy` (or fix database.url)",
            path.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(StoreError::Query(format!(
                "the folder of the SQLite database {} does not exist; create it first",
                path.display()
            )));
        }
    }
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(e, path))?;
    // Said once per file: every connection (writer, reader, watcher) opens it.
    static WARNED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let first = {
        let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
        let first = !warned.iter().any(|p| p == path);
        if first {
            warned.push(path.to_path_buf());
        }
        first
    };
    if let Some(fs) = network_filesystem(path).filter(|_| first) {
        tracing::warn!(path = %path.display(), filesystem = fs, "The SQLite database is on a network filesystem: its locks and WAL's shared memory may not work there, and two hosts writing to it can corrupt it; keep it on a local disk");
    }
    let setup = |c: &Connection| -> rusqlite::Result<()> {
        c.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets readers (the app's and ours) go on while one connection writes.
        let mode: String = c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "SQLite did not switch to WAL mode (a network filesystem?); writers will block readers");
        }
        // A commit is durable against a crash of the process; a power cut may undo the last
        // few, which at-least-once tolerates (a result lost means one more delivery).
        // Statement journals and the sorts of app-owned tables' claims stay in memory. The
        // WAL is checkpointed every 8,000 pages (~32 MB) rather than SQLite's 1,000: a queue
        // rewrites the same pages over and over, and fewer checkpoints copy them fewer times.
        c.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 8000;",
        )?;
        Ok(())
    };
    setup(&conn).map_err(|e| classify(e, path))?;
    Ok(conn)
}

/// The kind of network filesystem holding `path`, if it is on one (Linux).
fn network_filesystem(path: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs writes into the zeroed struct we pass and reads the NUL-terminated path.
    let kind = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        st.f_type as i64
    };
    match kind {
        0x6969 => Some("NFS"),
        0x517B => Some("SMB"),
        0xFF53_4D42 => Some("CIFS"),
        0xFE53_4D42 => Some("SMB2"),
        0x6B41_4653 => Some("AFS"),
        0x0102_1997 => Some("9P"),
        _ => None,
    }
}

/// A rusqlite error as the engine needs it: SQLITE_BUSY and I/O trouble are worth retrying;
/// the rest name what to fix.
pub(crate) fn classify(e: rusqlite::Error, path: &Path) -> StoreError {
    let file = path.display();
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable(
            format!("the SQLite database {file} is busy: another connection holds its write lock"),
        ),
        Some(ErrorCode::NotADatabase) => StoreError::Query(format!(
            "{file} is not a SQLite database (or it is encrypted); fix database.url"
        )),
        Some(ErrorCode::ReadOnly) => StoreError::Query(format!(
            "the SQLite database {file} is read-only for this process; it needs write access to the file and its folder (for the -wal and -shm files)"
        )),
        Some(ErrorCode::CannotOpen) => StoreError::Query(format!(
            "cannot open the SQLite database {file}: {e}; check the path and the permissions of the file and its folder"
        )),
        Some(ErrorCode::SystemIoFailure | ErrorCode::DiskFull) => {
            StoreError::Unavailable(format!("I/O error on the SQLite database {file}: {e}"))
        }
        _ => StoreError::Query(format!("SQLite ({file}): {e}")),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The statements of the claim and result path, rendered once per layout.
pub(crate) struct Statements {
    /// `?1` owner, `?2` lease ms, `?3` paused keys (JSON), `?4` limit.
    claim: String,
    /// `?1` owner, `?2` lease ms, `?3` ordered keys, `?4` paused keys (JSON), `?5` limit.
    claim_ordered: String,
    /// `?1`: a JSON array of [id, lease owner, retryCount] triples, marked SENT.
    sent: String,
    /// `?1`: the same triples, deleted.
    deleted: String,
    /// One result: `?1` id, `?2` owner, `?3` retryCount claimed, `?4` status, `?5` error,
    /// `?6` new retryCount, `?7` delay ms.
    complete_one: String,
    /// `?1` id, `?2` owner, `?3` error: an unreadable row, FAILED.
    fail_unreadable: String,
    /// `?1` limit: PROCESSING rows whose lease has run out.
    expired: String,
    policies: String,
    /// `?1` paused keys (JSON).
    next_due: String,
    /// `?1` status, `?2` age ms, `?3` limit.
    purge: String,
    pending_summary: String,
    /// `?1` aggregate, `?2` event, `?3` routingKey, `?4` reason (no statement without the
    /// table).
    block: Option<String>,
}

/// The lease a claim writes: `?1` owner, `?2` lease in ms.
const LEASE_SETS: &str = r#"{e.status} = 'PROCESSING', {e.lockedBy} = ?1, {e.retryCount} = COALESCE({e.retryCount}, 0),
       {e.lockedUntil} = STAMP({now} + ?2)"#;
/// The results of a batch, as rows `a(id, owner, rc)`.
const BATCH: &str =
    r#"SELECT value ->> 0 AS id, value ->> 1 AS owner, value ->> 2 AS rc FROM json_each(?1)"#;
const BATCH_FENCE: &str = r#"e.{e.id} = a.id AND e.{e.lockedBy} = a.owner AND e.{e.retryCount} = a.rc AND e.{e.status} = 'PROCESSING'"#;
const FENCE: &str =
    r#"{e.id} = ?1 AND {e.lockedBy} = ?2 AND {e.retryCount} = ?3 AND {e.status} = 'PROCESSING'"#;

/// The column that says when an event finished: processedAt, else occurredAt.
pub(crate) fn finished_at(l: &Layout) -> &'static str {
    if l.has_event_column("processedAt") {
        "{e.processedAt}"
    } else {
        "{e.occurredAt}"
    }
}

impl Statements {
    pub(crate) fn new(l: &Layout) -> Statements {
        let r = |t: &str| {
            l.render(
                &t.replace("$COLUMNS", EVENT_COLUMNS)
                    .replace("$LEASE", LEASE_SETS)
                    .replace("$BATCH_FENCE", BATCH_FENCE)
                    .replace("$BATCH", BATCH)
                    .replace("$FENCE", FENCE),
            )
        };
        Statements {
            claim: r(r#"UPDATE {E} SET $LEASE
 WHERE rowid IN (
       SELECT c.rowid FROM {E} AS c
        WHERE c.{e.status} = 'PENDING' AND MS(c.{e.nextRetryAt}) <= {now}
          AND c.{e.routingKey} NOT IN (SELECT value FROM json_each(?3))
        ORDER BY MS(c.{e.nextRetryAt})
        LIMIT ?4)
RETURNING $COLUMNS"#),
            claim_ordered: r(r#"UPDATE {E} SET $LEASE
 WHERE rowid IN (
       SELECT c.rowid FROM {E} AS c
        WHERE c.{e.status} = 'PENDING' AND MS(c.{e.nextRetryAt}) <= {now}
          AND c.{e.routingKey} IN (SELECT value FROM json_each(?3))
          AND c.{e.routingKey} NOT IN (SELECT value FROM json_each(?4))
          AND NOT EXISTS (
              SELECT 1 FROM {E} AS p
               WHERE p.{e.aggregateId} = c.{e.aggregateId}
                 AND p.{e.status} IN ('PENDING', 'PROCESSING')
                 AND p.rowid < c.rowid
                 AND p.{e.routingKey} IN (SELECT value FROM json_each(?3)))
          {?B}AND NOT EXISTS (SELECT 1 FROM {B} AS b WHERE b."aggregateId" = c.{e.aggregateId})
        ORDER BY MS(c.{e.nextRetryAt})
        LIMIT ?5)
RETURNING $COLUMNS"#),
            sent: r(r#"UPDATE {E} AS e
   SET
       {?e.processedAt}{e.processedAt} = STAMP({now}),
       {e.status} = 'SENT', {e.lockedBy} = NULL, {e.lockedUntil} = NULL
  FROM ($BATCH) AS a
 WHERE $BATCH_FENCE"#),
            deleted: r(r#"DELETE FROM {E} AS e
 WHERE EXISTS (SELECT 1 FROM ($BATCH) AS a WHERE $BATCH_FENCE)"#),
            complete_one: r(r#"UPDATE {E}
   SET
       {?e.lastError}{e.lastError} = COALESCE(?5, {e.lastError}),
       {?e.processedAt}{e.processedAt} = CASE WHEN ?4 IN ('SENT', 'FAILED') THEN STAMP({now}) END,
       {e.nextRetryAt} = CASE WHEN ?4 = 'PENDING' THEN STAMP({now} + ?7) ELSE {e.nextRetryAt} END,
       {e.status} = ?4, {e.lockedBy} = NULL, {e.lockedUntil} = NULL, {e.retryCount} = ?6
 WHERE $FENCE
RETURNING {e.aggregateId}, {e.routingKey}"#),
            fail_unreadable: r(r#"UPDATE {E}
   SET
       {?e.lastError}{e.lastError} = ?3,
       {?e.processedAt}{e.processedAt} = STAMP({now}),
       {e.status} = 'FAILED', {e.lockedBy} = NULL, {e.lockedUntil} = NULL
 WHERE {e.id} = ?1 AND {e.lockedBy} = ?2 AND {e.status} = 'PROCESSING'
RETURNING {e.aggregateId}, {e.routingKey}"#),
            expired: r(r#"SELECT $COLUMNS FROM {E}
 WHERE {e.status} = 'PROCESSING' AND MS({e.lockedUntil}) < {now}
 ORDER BY MS({e.lockedUntil}) LIMIT ?1"#),
            policies: r(
                r#"SELECT {p.routingKey}, {p.maxRetries}, {p.retryInterval}, {p.maxInterval}, {p.backoffMultiplier},
       {p.jitter}, {p.ordered}, {p.paused}, {p.blockOnFailure} FROM {P}"#,
            ),
            next_due: r(r#"SELECT min(MS({e.nextRetryAt})) - {now} FROM {E}
 WHERE {e.status} = 'PENDING' AND {e.routingKey} NOT IN (SELECT value FROM json_each(?1))"#),
            // Without processedAt, a finished event's age is taken from occurredAt.
            purge: r(&r#"DELETE FROM {E} WHERE rowid IN (
       SELECT rowid FROM {E}
        WHERE {e.status} = ?1 AND MS({e.processedAt}) < {now} - ?2 LIMIT ?3)"#
                .replace("{e.processedAt}", finished_at(l))),
            pending_summary: r(
                r#"SELECT {e.routingKey}, count(*), ({now} - min(MS({e.occurredAt}))) / 1000.0
  FROM {E} WHERE {e.status} = 'PENDING' GROUP BY {e.routingKey}"#,
            ),
            block: l.blocked.as_ref().map(|_| {
                r(
                    r#"INSERT INTO {B} ("aggregateId", "eventId", "routingKey", "reason")
VALUES (?1, ?2, ?3, ?4) ON CONFLICT ("aggregateId") DO NOTHING"#,
                )
            }),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        paused: &[String],
    ) -> Result<Leased, StoreError> {
        let owner = owner.to_string();
        let (lease, limit, paused) = (millis(lease), limit as i64, crate::json_list(paused));
        let sql = self.sql.clone();
        self.write(move |tx| {
            let mut stmt = tx.prepare_cached(&sql.claim)?;
            let mut rows = stmt.query(params![owner, lease, paused, limit])?;
            leased_rows(&mut rows, Some(&owner))
        })
        .await
    }

    async fn claim_ordered(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        ordered: &[String],
        paused: &[String],
    ) -> Result<Leased, StoreError> {
        let owner = owner.to_string();
        let (lease, limit) = (millis(lease), limit as i64);
        let (ordered, paused) = (crate::json_list(ordered), crate::json_list(paused));
        let sql = self.sql.clone();
        // Writers take turns on SQLite: no producer transaction can be open while this runs,
        // so the earliest unfinished event of an aggregate is its head for certain.
        self.write(move |tx| {
            let mut stmt = tx.prepare_cached(&sql.claim_ordered)?;
            let mut rows = stmt.query(params![owner, lease, ordered, paused, limit])?;
            leased_rows(&mut rows, Some(&owner))
        })
        .await
    }

    async fn complete(&self, completions: &[Completion]) -> Result<u64, StoreError> {
        if completions.is_empty() {
            return Ok(0);
        }
        // Successes, the bulk of every batch, go in one statement each for SENT and for
        // deleted rows; the rest one by one. Each row is fenced by its own lease.
        let sent = crate::fenced_batch(completions, |a| matches!(a, CompletionAction::Sent));
        let deleted = crate::fenced_batch(completions, |a| matches!(a, CompletionAction::Delete));
        let completions: Vec<Completion> = completions
            .iter()
            .filter(|c| !matches!(c.action, CompletionAction::Sent | CompletionAction::Delete))
            .cloned()
            .collect();
        let sql = self.sql.clone();
        self.write(move |tx| {
            let mut changed = 0u64;
            if let Some(rows) = sent {
                changed += tx.prepare_cached(&sql.sent)?.execute(params![rows])? as u64;
            }
            if let Some(rows) = deleted {
                changed += tx.prepare_cached(&sql.deleted)?.execute(params![rows])? as u64;
            }
            let mut update = tx.prepare_cached(&sql.complete_one)?;
            for c in &completions {
                let Some((status, rc, delay, error, block)) = crate::result_fields(c) else {
                    continue;
                };
                let delay = millis(delay);
                let done: Option<(Option<String>, Option<String>)> = update
                    .query_row(
                        params![
                            c.id,
                            c.lease_owner,
                            c.retry_count,
                            status.as_str(),
                            error,
                            rc,
                            delay
                        ],
                        |r| Ok((r.get(0).ok(), r.get(1).ok())),
                    )
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })?;
                if let Some((aggregate, routing)) = done {
                    changed += 1;
                    if let (true, Some(a), Some(r)) = (block, aggregate, routing) {
                        block_aggregate(tx, &sql, &a, &c.id, &r, error)?;
                    }
                }
            }
            Ok(changed)
        })
        .await
    }

    async fn fail_unreadable(&self, rows: &[Unreadable]) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let rows = rows.to_vec();
        let sql = self.sql.clone();
        self.write(move |tx| {
            let mut fail = tx.prepare_cached(&sql.fail_unreadable)?;
            let mut changed = 0u64;
            for u in &rows {
                let error = u.last_error();
                let mut done = fail.query(params![u.id, u.lease_owner, error])?;
                if let Some(r) = done.next()? {
                    changed += 1;
                    let aggregate: Option<String> = r.get(0).ok();
                    let routing: Option<String> = r.get(1).ok();
                    if let (true, Some(a), Some(k)) = (u.block_aggregate, aggregate, routing) {
                        block_aggregate(tx, &sql, &a, &u.id, &k, Some(&error))?;
                    }
                }
            }
            Ok(changed)
        })
        .await
    }

    async fn expired_leases(&self, limit: usize) -> Result<Leased, StoreError> {
        let limit = limit as i64;
        let sql = self.sql.clone();
        self.call(false, move |c| {
            let mut stmt = c.prepare_cached(&sql.expired)?;
            let mut rows = stmt.query(params![limit])?;
            leased_rows(&mut rows, None)
        })
        .await
    }

    async fn policies(&self) -> Result<PolicyRows, StoreError> {
        let sql = self.sql.clone();
        self.call(false, move |c| {
            let mut stmt = c.prepare_cached(&sql.policies)?;
            let mut rows = stmt.query([])?;
            let mut out = PolicyRows::default();
            while let Some(r) = rows.next()? {
                match crate::cells::policy_row(r) {
                    Ok(p) => out.policies.push(p),
                    Err(b) => out.broken.push(b),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn next_due(&self, paused: &[String]) -> Result<Option<Duration>, StoreError> {
        let paused = crate::json_list(paused);
        let sql = self.sql.clone();
        self.call(false, move |c| {
            let mut stmt = c.prepare_cached(&sql.next_due)?;
            let ms: Option<i64> = stmt.query_row(params![paused], |r| r.get(0))?;
            Ok(ms.map(|ms| Duration::from_millis(ms.max(0) as u64)))
        })
        .await
    }

    async fn purge(
        &self,
        status: Status,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let (age, limit) = (millis(older_than), limit as i64);
        let sql = self.sql.clone();
        self.write(move |tx| {
            let mut stmt = tx.prepare_cached(&sql.purge)?;
            Ok(stmt.execute(params![status.as_str(), age, limit])? as u64)
        })
        .await
    }

    async fn pending_summary(&self) -> Result<Vec<(String, i64, f64)>, StoreError> {
        let sql = self.sql.clone();
        self.call(false, move |c| {
            let mut stmt = c.prepare_cached(&sql.pending_summary)?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    row::shown(r, 0),
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<f64>>(2)?.unwrap_or(0.0).max(0.0),
                ))
            })?;
            rows.collect()
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.call(false, |c| c.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    async fn listen(&self) -> Result<Box<dyn NotificationStream>, StoreError> {
        let path = self.path.clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let conn = tokio::task::spawn_blocking(move || open(&path, false).map(|c| (c, path)))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        std::thread::Builder::new()
            .name("outbox-sqlite-watch".into())
            .spawn(move || watch(conn.0, &conn.1, tx))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the SQLite watcher: {e}"))
            })?;
        Ok(Box::new(Watch(rx)))
    }
}

/// Holds `aggregate` back behind its FAILED head `event` (once; an earlier block stays).
/// Without a blocked-aggregates table (app-owned tables may lack it) the aggregate is
/// released instead.
fn block_aggregate(
    tx: &rusqlite::Transaction<'_>,
    sql: &Statements,
    aggregate: &str,
    event: &str,
    routing: &str,
    reason: Option<&str>,
) -> rusqlite::Result<()> {
    if let Some(block) = &sql.block {
        tx.prepare_cached(block)?
            .execute(params![aggregate, event, routing, reason])?;
    }
    Ok(())
}

/// Polls for commits of other connections until the receiver goes away or the file cannot
/// be read; each change is a [`Notification::Events`], and a change of the policy counter
/// also a [`Notification::Policies`].
fn watch(conn: Connection, path: &Path, tx: tokio::sync::mpsc::UnboundedSender<Notification>) {
    let read = |c: &Connection| -> rusqlite::Result<(i64, i64)> {
        let data: i64 = c.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let policy: i64 = c
            .query_row(
                r#"SELECT "version" FROM "OutboxSignal" WHERE "name" = 'policy'"#,
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        Ok((data, policy))
    };
    let Ok(mut last) = read(&conn) else {
        return;
    };
    while !tx.is_closed() {
        std::thread::sleep(WATCH_EVERY);
        match read(&conn) {
            Ok(now) if now != last => {
                let sent = tx.send(Notification::Events).is_ok()
                    && (now.1 == last.1 || tx.send(Notification::Policies).is_ok());
                last = now;
                if !sent {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "The SQLite change watcher stopped");
                return;
            }
        }
    }
}

/// The notifications of one watcher thread.
struct Watch(tokio::sync::mpsc::UnboundedReceiver<Notification>);

#[async_trait]
impl NotificationStream for Watch {
    async fn next(&mut self) -> Option<Notification> {
        self.0.recv().await
    }
}

impl outbox_core::Backend for SqliteStore {
    fn schema(&self) -> &str {
        "main"
    }

    fn location(&self) -> String {
        format!("the SQLite database {}", self.path.display())
    }

    fn table_name(&self, logical: &str) -> String {
        self.layout.names.table_name(logical, layout::quote)
    }

    fn column_name(&self, logical_table: &str, logical: &str) -> String {
        self.layout
            .names
            .column_name(logical_table, logical, layout::quote)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        let base = Path::new("/etc/outbox");
        let path = |url: &str| SqliteOptions::from_url(url, Some(base)).map(|o| o.path);
        assert_eq!(
            path("sqlite:///var/lib/app.db"),
            Ok(PathBuf::from("/var/lib/app.db"))
        );
        assert_eq!(
            path("sqlite:/var/lib/app.db"),
            Ok(PathBuf::from("/var/lib/app.db"))
        );
        assert_eq!(
            path("SQLITE:app.db"),
            Ok(PathBuf::from("/etc/outbox/app.db"))
        );
        assert_eq!(
            path("sqlite:data/app.db"),
            Ok(PathBuf::from("/etc/outbox/data/app.db"))
        );
        assert!(path("sqlite:").unwrap_err().contains("names no file"));
        assert!(path("sqlite:app.db?mode=ro")
            .unwrap_err()
            .contains("does not take"));
        assert!(path("sqlite::memory:").unwrap_err().contains("in-memory"));
        assert!(path("postgres://x").is_err());
    }

    #[test]
    fn every_statement_prepares_on_tables_with_only_the_required_columns() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            r#"CREATE TABLE outbox_event (id TEXT PRIMARY KEY, event_name TEXT, event_type TEXT,
                 aggregate_id TEXT, routing_key TEXT, payload TEXT, status TEXT, occurred_at TEXT,
                 retry_count INT, next_retry_at TEXT, locked_by TEXT, locked_until TEXT);
               CREATE TABLE outbox_retry_policy (routing_key TEXT PRIMARY KEY, max_retries INT,
                 retry_interval INT, max_interval INT);"#,
        )
        .unwrap();
        let cat = adopt::read(&c, &Default::default()).unwrap();
        let (layout, a) = adopt::resolve(&cat, &Default::default(), None);
        assert!(a.usable, "{:?}", a.errors);
        let s = Statements::new(&layout.unwrap());
        for sql in [
            &s.claim,
            &s.claim_ordered,
            &s.sent,
            &s.deleted,
            &s.complete_one,
            &s.fail_unreadable,
            &s.expired,
            &s.policies,
            &s.next_due,
            &s.purge,
            &s.pending_summary,
        ] {
            c.prepare(sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
        }
        assert!(s.block.is_none());
    }

    #[test]
    fn a_local_folder_is_not_a_network_filesystem() {
        let dir = std::env::temp_dir().join("outbox-nfs-check.db");
        assert_eq!(network_filesystem(&dir), None);
        assert_eq!(network_filesystem(Path::new("relative.db")), None);
    }
}
