//! `outbox doctor`: every check a new deployment needs, in order, each a ✔/⚠/✘ line with
//! the fix. Exits 0 when nothing is ✘; otherwise with the code of the first failed check.

use super::migrate::search_path_note;
use super::{open_mysql, open_sqlite, open_store, store_kind, StoreKind};
use crate::config::{Config, SchemaOwner};
use crate::Failure;
use outbox_store::mysql::MysqlStore;
use outbox_store::sqlite::SqliteStore;
use outbox_store::{Backend, PgStore};
use std::collections::BTreeSet;

/// Exit codes, one per failed check.
const EXIT_UNREACHABLE: u8 = 20;
const EXIT_SCHEMA: u8 = 21;
const EXIT_ROUTES: u8 = 22;
const EXIT_UNROUTABLE: u8 = 23;
const EXIT_POLICY_ROW: u8 = 24;
/// A snapshot held this long is named (it keeps vacuum from cleaning the event table).
const XMIN_HOLD: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Default)]
struct Report {
    code: u8,
    failures: usize,
}

impl Report {
    /// The schema could not be read: a failed check, and the schema is not usable.
    fn cannot_inspect(&mut self, schema: &str, e: outbox_core::StoreError) -> bool {
        self.fail(
            EXIT_SCHEMA,
            &format!("cannot inspect schema \"{schema}\": {e}"),
            &[],
        );
        false
    }

    fn ok(&self, line: &str) {
        println!("✔ {line}");
    }

    fn warn(&self, line: &str, fixes: &[&str]) {
        println!("⚠ {line}");
        for f in fixes.iter().filter(|f| !f.is_empty()) {
            println!("    {f}");
        }
    }

    fn fail(&mut self, code: u8, line: &str, fixes: &[&str]) {
        println!("✘ {line}");
        for f in fixes.iter().filter(|f| !f.is_empty()) {
            println!("    {f}");
        }
        self.failures += 1;
        if self.code == 0 {
            self.code = code;
        }
    }
}

/// Each routed broker sink: can a connection be opened? A warning, not a failure: the
/// worker retries a sink's events until it is back.
async fn check_sinks(config: &Config, r: &mut Report) {
    let routed: BTreeSet<&String> = config.routes.values().collect();
    for name in routed {
        let Some(sc) = config.sinks.get(name) else {
            continue;
        };
        if !sc.has_health_check() {
            continue;
        }
        let kind = sc.kind();
        let sink = match sc.build() {
            Ok(s) => s,
            Err(e) => {
                r.warn(&format!("sink '{name}' ({kind}): {e}"), &[]);
                continue;
            }
        };
        let limit = sc.timeout().unwrap_or(std::time::Duration::from_secs(5))
            + std::time::Duration::from_secs(1);
        match tokio::time::timeout(limit, sink.health()).await {
            Ok(Ok(())) => {
                r.ok(&format!("sink '{name}' ({kind}) reachable"));
                let keys: Vec<String> = config
                    .routes
                    .iter()
                    .filter(|(_, s)| *s == name)
                    .map(|(k, _)| k.clone())
                    .collect();
                if let Ok(problems) = tokio::time::timeout(limit, sink.check_routes(&keys)).await {
                    for p in problems {
                        r.warn(&format!("sink '{name}' ({kind}): {p}"), &[]);
                    }
                }
            }
            Ok(Err(e)) => r.warn(
                &format!("sink '{name}' ({kind}) not reachable: {e}"),
                &["its events wait (retried, then FAILED after their retries); check the sink's url and that the broker runs"],
            ),
            Err(_) => r.warn(
                &format!("sink '{name}' ({kind}) did not answer within {limit:?}"),
                &["check the sink's url and that the broker runs"],
            ),
        }
    }
}

/// Whichever store is open, as the traits see it.
fn backend<'a>(
    pg: &'a Option<PgStore>,
    lite: &'a Option<SqliteStore>,
    my: &'a Option<MysqlStore>,
) -> &'a dyn Backend {
    match (pg, lite, my) {
        (Some(pg), _, _) => pg,
        (None, Some(lite), _) => lite,
        (None, None, Some(my)) => my,
        (None, None, None) => unreachable!("one store is open"),
    }
}

fn backend_mut<'a>(
    pg: &'a mut Option<PgStore>,
    lite: &'a mut Option<SqliteStore>,
    my: &'a mut Option<MysqlStore>,
) -> &'a mut dyn Backend {
    match (pg, lite, my) {
        (Some(pg), _, _) => pg,
        (None, Some(lite), _) => lite,
        (None, None, Some(my)) => my,
        (None, None, None) => unreachable!("one store is open"),
    }
}

/// The queue's state from the store traits alone (stores without a summary query of their
/// own): PENDING per routingKey and the oldest's age, FAILED, and leases expired for over
/// [`outbox_store::postgres::inspect::STALE_LEASE`].
async fn queue_summary(
    store: &dyn Backend,
) -> Result<outbox_store::postgres::inspect::QueueSummary, outbox_core::StoreError> {
    let pending = store.pending_summary().await?;
    let failed = store
        .count_events(&outbox_store::EventFilter {
            status: Some(outbox_core::Status::Failed),
            ..Default::default()
        })
        .await?;
    let oldest = pending
        .iter()
        .map(|(_, _, age)| *age)
        .fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.max(a))));
    Ok(outbox_store::postgres::inspect::QueueSummary {
        failed,
        oldest_pending: oldest.map(std::time::Duration::from_secs_f64),
        pending_by_key: pending.into_iter().map(|(k, n, _)| (k, n)).collect(),
        stale_leases: 0,
        stale_leases_oldest: None,
    })
}

fn age(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub async fn doctor(config: &Config) -> Result<u8, Failure> {
    // PostgreSQL's own checks (server facts, autovacuum, app-owned tables, snapshots) run on
    // the PostgreSQL store; the rest on whichever store the URL names.
    type Open = (Option<PgStore>, Option<SqliteStore>, Option<MysqlStore>);
    let (mut pg, mut lite, mut my): Open = match store_kind(config)? {
        StoreKind::Sqlite => (None, Some(open_sqlite(config)?), None),
        StoreKind::Mysql => (None, None, Some(open_mysql(config)?)),
        StoreKind::Postgres => (Some(open_store(config)?), None, None),
    };
    let mut r = Report::default();

    let reached = match (&pg, &lite, &my) {
        (Some(pg), _, _) => pg.server_info().await,
        (None, Some(lite), _) => outbox_core::Store::ping(lite)
            .await
            .map(|()| format!("SQLite database {}", lite.path().display())),
        (None, None, Some(my)) => my.server_info().await,
        (None, None, None) => unreachable!("one store is open"),
    };
    match reached {
        Ok(info) => r.ok(&format!("database reachable: {info}")),
        Err(e) => {
            let fix = if lite.is_some() {
                "fix: check database.url (or $DATABASE_URL); `outbox migrate deploy` creates the file"
            } else {
                "fix: check database.url (or $DATABASE_URL) and that the database server is running"
            };
            r.fail(
                EXIT_UNREACHABLE,
                &format!("database not reachable: {e}"),
                &[fix],
            );
            println!("(the other checks need the database)");
            return Ok(r.code);
        }
    }

    if let Some(my) = &my {
        for (problem, fix) in my.server_problems().await {
            r.warn(&problem, &[&fix]);
        }
    }

    if let Some(Ok(false)) = match &pg {
        Some(pg) => Some(pg.autovacuum_enabled().await),
        None => None,
    } {
        r.warn(
            "autovacuum is off on this server: the outbox table's dead row versions are never reclaimed and it bloats",
            &["fix: ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();  (or VACUUM the table on a schedule)"],
        );
    }

    let schema = backend(&pg, &lite, &my).schema().to_string();
    let usable = match config.database.owner {
        SchemaOwner::Worker => match backend(&pg, &lite, &my).schema_status().await {
            Ok(st) => {
                let problems = st.problems();
                if problems.is_empty() {
                    r.ok(&format!(
                        "schema \"{schema}\" (worker-owned): migrations applied, no drift"
                    ));
                }
                for p in &problems {
                    r.fail(
                        EXIT_SCHEMA,
                        &format!("schema \"{schema}\": {}", p.what),
                        &[&format!("fix: {}", p.fix)],
                    );
                }
                if let (false, Some(note)) = (problems.is_empty(), search_path_note(&schema)) {
                    println!("    {note}");
                }
                r.ok("columns: the worker's own names (worker-owned tables)");
                problems
                    .iter()
                    .all(|p| p.kind != outbox_store::ProblemKind::Pending)
                    && st
                        .migrations
                        .iter()
                        .any(|m| matches!(m.state, outbox_store::MigrationState::Applied { .. }))
            }
            Err(e) => r.cannot_inspect(&schema, e),
        },
        SchemaOwner::App => {
            let store = backend_mut(&mut pg, &mut lite, &mut my);
            match store.adopt(&config.database.overrides).await {
                Ok(res) => {
                    if res.errors.is_empty() {
                        r.ok(&format!("schema \"{schema}\" (app-owned): every required table and column found"));
                    }
                    for f in &res.errors {
                        r.fail(
                            EXIT_SCHEMA,
                            &format!("schema \"{schema}\": {}", f.what),
                            &[
                                &format!("SQL:    {}", f.sql),
                                &format!("Prisma: {}", f.prisma),
                            ],
                        );
                    }
                    for f in &res.warnings {
                        r.warn(
                            &format!("schema \"{schema}\": {}", f.what),
                            &[
                                &format!("SQL:    {}", f.sql),
                                &format!("Prisma: {}", f.prisma),
                            ],
                        );
                    }
                    let renamed: Vec<String> = res
                        .mapping
                        .iter()
                        .filter(|m| m.how != "exact")
                        .map(|m| format!("{}.{}→{} ({})", m.table, m.logical, m.physical, m.how))
                        .collect();
                    if renamed.is_empty() {
                        r.ok(&format!(
                            "columns: all {} under their contract names",
                            res.mapping.len()
                        ));
                    } else {
                        r.ok(&format!("columns: {}", renamed.join(", ")));
                    }
                    res.usable
                }
                Err(e) => r.cannot_inspect(&schema, e),
            }
        }
    };
    if !usable {
        println!("(routes, policies and the queue are checked once the schema is usable)");
        return Ok(r.code);
    }

    let store = backend(&pg, &lite, &my);
    let rows = match store.policies().await {
        Ok(rows) => rows,
        Err(e) => {
            r.fail(EXIT_SCHEMA, &format!("cannot read the policies: {e}"), &[]);
            return Ok(r.code);
        }
    };
    // The names the fixes below use, as this store writes them (maybe an app's tables).
    let (policy_table, event_table) = (
        store.table_name("OutboxRetryPolicy"),
        store.table_name("OutboxEvent"),
    );
    let pcol = |c: &str| store.column_name("OutboxRetryPolicy", c);
    for b in &rows.broken {
        let (which, fix) = match &b.routing_key {
            Some(key) => (
                format!("the OutboxRetryPolicy row of '{key}'"),
                format!(
                    "fix: correct it, e.g. UPDATE {policy_table} SET ... WHERE {} = '{}';",
                    pcol("routingKey"),
                    key.replace('\'', "''")
                ),
            ),
            None => (
                "an OutboxRetryPolicy row".to_string(),
                "fix: give it a routingKey, or delete it".to_string(),
            ),
        };
        r.fail(
            EXIT_POLICY_ROW,
            &format!(
                "{which} cannot be used: {}; the worker skips it and leaves its events PENDING",
                b.problem
            ),
            &[&fix],
        );
    }
    let policies: BTreeSet<String> = rows
        .policies
        .into_iter()
        .map(|p| p.routing_key)
        .chain(rows.broken.into_iter().filter_map(|b| b.routing_key))
        .collect();
    let routes: BTreeSet<String> = config.routes.keys().cloned().collect();
    let mut matched = true;
    for key in routes.difference(&policies) {
        matched = false;
        r.fail(
            EXIT_ROUTES,
            &format!("route '{key}' has no OutboxRetryPolicy row: its events will end FAILED"),
            &[&format!(
                "fix: INSERT INTO {policy_table} ({}, {}, {}, {}) VALUES ('{}', 5, 5000, 60000);",
                pcol("routingKey"),
                pcol("maxRetries"),
                pcol("retryInterval"),
                pcol("maxInterval"),
                key.replace('\'', "''")
            )],
        );
    }
    for key in policies.difference(&routes) {
        matched = false;
        let sink = config
            .sinks
            .keys()
            .next()
            .map(String::as_str)
            .unwrap_or("NAME");
        r.fail(
            EXIT_ROUTES,
            &format!("policy '{key}' has no route in the config: its events will end FAILED"),
            &[&format!(
                "fix: add to [routes]: \"{key}\" = {{ sink = \"{sink}\" }}"
            )],
        );
    }
    if matched {
        r.ok(&format!(
            "routes and policies match ({} routingKeys)",
            routes.len()
        ));
    }

    let summary = match &pg {
        Some(pg) => pg.queue_summary().await,
        None => queue_summary(store).await,
    };
    match summary {
        Ok(q) => {
            let mut stuck = false;
            for (key, n) in &q.pending_by_key {
                let why = match (policies.contains(key), routes.contains(key)) {
                    (true, true) => continue,
                    (false, false) => "no policy and no route",
                    (false, true) => "no policy",
                    (true, false) => "no route",
                };
                stuck = true;
                r.fail(
                    EXIT_UNROUTABLE,
                    &format!("{n} PENDING event(s) with routingKey '{key}' have {why}: they will end FAILED when claimed"),
                    &["fix: add the missing policy row and/or route before starting the worker"],
                );
            }
            if !stuck {
                let total: i64 = q.pending_by_key.iter().map(|(_, n)| n).sum();
                r.ok(&format!(
                    "every PENDING event is routable ({total} PENDING)"
                ));
            }
            if q.failed == 0 {
                r.ok("no FAILED events");
            } else {
                r.warn(
                    &format!("{} FAILED event(s)", q.failed),
                    &[&format!(
                        "see them: SELECT * FROM {event_table} WHERE {} = 'FAILED';",
                        store.column_name("OutboxEvent", "status")
                    )],
                );
            }
            match q.oldest_pending {
                Some(d) => r.ok(&format!("oldest PENDING event is {} old", age(d))),
                None => r.ok("no PENDING events"),
            }
            if q.stale_leases > 0 {
                let oldest = q
                    .stale_leases_oldest
                    .map(|d| format!(" (the oldest {} ago)", age(d)))
                    .unwrap_or_default();
                r.warn(
                    &format!(
                        "{} PROCESSING event(s) hold leases that expired over {} ago{oldest}: no worker is taking them back",
                        q.stale_leases,
                        age(outbox_store::postgres::inspect::STALE_LEASE),
                    ),
                    &["fix: start `outbox run` (a running worker takes expired leases back within a quarter of worker.lease); if one runs, look in its log for \"Lease reaper could not run\""],
                );
            }
        }
        Err(e) => r.fail(
            EXIT_SCHEMA,
            &format!("cannot read the event table: {e}"),
            &[],
        ),
    }
    // SQLite keeps no snapshot that holds other writers' cleanup back: PostgreSQL only.
    let holders = match &pg {
        Some(pg) => Some(pg.xmin_holders(XMIN_HOLD).await),
        None => None,
    };
    match holders {
        None => {}
        Some(Ok(holders)) if !holders.is_empty() => {
            let fixes: Vec<String> = holders
                .iter()
                .map(|h| {
                    format!(
                        "{h}: if it is stuck, SELECT pg_terminate_backend({});",
                        h.pid
                    )
                })
                .collect();
            let fixes: Vec<&str> = fixes.iter().map(String::as_str).collect();
            r.warn(
                &format!(
                    "{} session(s) have held a snapshot for over {}: vacuum cannot remove the outbox's dead rows meanwhile, and claims slow down",
                    holders.len(),
                    age(XMIN_HOLD)
                ),
                &fixes,
            );
        }
        Some(Ok(_)) => r.ok(&format!(
            "no transaction has held vacuum back for over {}",
            age(XMIN_HOLD)
        )),
        Some(Err(e)) => r.warn(&format!("cannot look for long transactions: {e}"), &[]),
    }
    check_sinks(config, &mut r).await;
    if r.failures == 0 {
        println!("All checks passed.");
    } else {
        println!("{} check(s) failed.", r.failures);
    }
    Ok(r.code)
}
