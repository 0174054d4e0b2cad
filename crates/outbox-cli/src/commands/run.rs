//! `outbox run`: check the schema, then relay until SIGINT/SIGTERM.

use super::{admin, open_backend, open_store, origin, store_kind, StoreKind};
use crate::config::{Config, SchemaOwner};
use crate::{Failure, EXIT_CONFIG, EXIT_FAILURE};
use outbox_core::StoreError;
use outbox_store::{Backend, ProblemKind};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Resolves on the first SIGINT or SIGTERM; a second one exits at once.
async fn shutdown_signal() {
    let name = wait_for_signal().await;
    tracing::info!(
        signal = name,
        "Received stop signal; finishing in-flight deliveries (send it again to exit at once)"
    );
    tokio::spawn(async {
        let again = wait_for_signal().await;
        tracing::warn!(signal = again, "Second stop signal; exiting now");
        std::process::exit(130);
    });
}

pub(crate) async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Runs `check` until the database answers (it may start after us), or until a stop
/// signal (`None`).
async fn when_reachable<T, F, Fut>(
    shutdown: &mut (impl Future<Output = ()> + Unpin),
    mut check: F,
) -> Result<Option<T>, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut delay = Duration::from_millis(500);
    loop {
        let result = tokio::select! {
            _ = &mut *shutdown => return Ok(None),
            r = check() => r,
        };
        match result {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, retry_in = ?delay, "Database not reachable; waiting for it");
                tokio::select! {
                    _ = &mut *shutdown => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Worker-owned tables: refuse pending migrations and drift (unless skipped).
fn refuse_unclean(store: &dyn Backend, st: &outbox_store::SchemaStatus) -> Result<(), Failure> {
    let problems = st.problems();
    let Some(first) = problems.first() else {
        return Ok(());
    };
    let more = match problems.len() {
        1 => String::new(),
        n => format!(" (+{} more)", n - 1),
    };
    let fix = if first.kind == ProblemKind::Pending {
        "run `outbox migrate deploy`".to_string()
    } else {
        "run `outbox migrate status` for every problem and its fix".to_string()
    };
    Err(Failure::new(
        EXIT_FAILURE,
        format!(
            "{} is not ready: {}{more}; {fix}, or start with --skip-schema-check",
            store.location(),
            first.what
        ),
    ))
}

/// Raises the soft limit on open files to the hard limit: each delivery, broker session,
/// database connection and admin client holds a descriptor, and a soft limit of 1024 (a
/// common default) is less than a busy relay needs.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let before = lim.rlim_cur;
        if before >= lim.rlim_max {
            return;
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            tracing::debug!(
                from = before,
                to = lim.rlim_cur,
                "Raised the limit on open files"
            );
        }
    }
}

pub async fn run(config: Config, skip_schema_check: bool) -> Result<u8, Failure> {
    raise_open_files_limit();
    if config.routes.is_empty() {
        return Err(Failure::new(
            EXIT_CONFIG,
            format!(
                "invalid configuration ({}): routes: no routes configured; add e.g. [routes] \"audit.record-auth-log\" = {{ sink = \"audit-api\" }} and a [sinks.audit-api] section",
                origin(&config)
            ),
        ));
    }
    // Opened now so a URL or config mistake is reported before anything starts.
    let store = open_backend(&config)?;
    let mut sinks = std::collections::HashMap::new();
    for (name, sc) in &config.sinks {
        let sink = sc.build().map_err(|e| {
            Failure::new(
                EXIT_CONFIG,
                format!(
                    "invalid configuration ({}): sinks.{name}: {e}",
                    origin(&config)
                ),
            )
        })?;
        sinks.insert(name.clone(), sink);
    }

    // The admin listener comes up first, so /healthz answers while the schema is checked.
    let readiness = Arc::new(admin::Readiness::default());
    let mut options = config.worker.clone();
    let mut dashboard = None;
    if let Some(admin) = &config.admin {
        let addr = admin.listen;
        let metrics = outbox_worker::Metrics::new();
        // A store of its own for the readiness probe (one connection at most).
        let ping: Arc<dyn outbox_core::Store> = match store_kind(&config)? {
            StoreKind::Postgres => {
                let mut pg = open_store(&config)?;
                pg.set_pool_size(1);
                Arc::new(pg)
            }
            _ => Arc::<dyn Backend>::from(open_backend(&config)?),
        };
        let slot = admin.dashboard.then(admin::DashboardSlot::default);
        dashboard = slot.clone().map(|s| (s, metrics.clone()));
        let bound = admin::start(addr, metrics.clone(), readiness.clone(), ping, slot)
            .await
            .map_err(|e| {
                Failure::new(
                    EXIT_FAILURE,
                    format!("cannot listen on {addr} ([admin] listen): {e}"),
                )
            })?;
        if admin.dashboard {
            tracing::info!(listen = %bound, "Admin listener: /metrics, /healthz, /readyz, and the dashboard at http://{bound}/");
        } else {
            tracing::info!(listen = %bound, "Admin listener: /metrics, /healthz, /readyz");
        }
        options.metrics = Some(metrics);
    }

    let stopping = readiness.clone();
    let shutdown = async move {
        shutdown_signal().await;
        stopping
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    };
    tokio::pin!(shutdown);
    let store: Box<dyn Backend> = match config.database.owner {
        SchemaOwner::Worker if skip_schema_check => {
            tracing::warn!("Schema check skipped (--skip-schema-check)");
            store
        }
        SchemaOwner::Worker => {
            let st = when_reachable(&mut shutdown, || store.schema_status())
                .await
                .map_err(|e| Failure::new(EXIT_FAILURE, format!("cannot check the schema: {e}")))?;
            let Some(st) = st else { return Ok(0) };
            refuse_unclean(&*store, &st)?;
            store
        }
        SchemaOwner::App => {
            let mut store = store;
            let cannot_read =
                |e| Failure::new(EXIT_FAILURE, format!("cannot read the app's tables: {e}"));
            let reached = when_reachable(&mut shutdown, || store.ping())
                .await
                .map_err(cannot_read)?;
            if reached.is_none() {
                return Ok(0);
            }
            let resolution = store
                .adopt(&config.database.overrides)
                .await
                .map_err(cannot_read)?;
            for w in &resolution.warnings {
                tracing::warn!(fix = %w.sql, "{}", w.what);
            }
            if !resolution.usable {
                let first = resolution
                    .errors
                    .first()
                    .map(|f| f.what.clone())
                    .unwrap_or_default();
                let more = match resolution.errors.len() {
                    0 | 1 => String::new(),
                    n => format!(" (+{} more)", n - 1),
                };
                return Err(Failure::new(
                    EXIT_FAILURE,
                    format!(
                        "the app-owned tables in {} cannot be used: {first}{more}; run `outbox doctor` for the SQL and Prisma lines that fix it",
                        store.location()
                    ),
                ));
            }
            for m in resolution.mapping.iter().filter(|m| m.how != "exact") {
                tracing::info!(table = m.table, column = %m.logical, physical = %m.physical, how = m.how, "Column mapped");
            }
            store
        }
    };

    tracing::info!(
        environment = %config.database.environment,
        store = %store.location(),
        routes = config.routes.len(),
        "Schema checked"
    );
    readiness
        .schema_ok
        .store(true, std::sync::atomic::Ordering::Relaxed);
    if let (Some((slot, metrics)), Some(admin)) = (dashboard, config.admin.clone()) {
        // The dashboard reads through a store of its own, its statements cut at the
        // statement timeout, so a heavy page never takes the worker's connections. It is
        // made beside the worker, which never waits for it; one that cannot start leaves
        // the deliveries alone and answers 503.
        let config = config.clone();
        tokio::spawn(async move {
            match super::open_dashboard_store(&config, admin.statement_timeout).await {
                Ok(store) => {
                    let options = admin.dashboard_options(&config.routes);
                    let dashboard = outbox_web::Dashboard::new(store, Some(metrics), options);
                    let _ = slot.set(dashboard.router());
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, "The dashboard cannot start; the worker runs without it")
                }
            }
        });
    }
    let mut worker = outbox_worker::Worker::new(Arc::<dyn Backend>::from(store), options);
    for (key, sink_name) in &config.routes {
        let sink = sinks[sink_name].clone();
        worker = worker.route(key.clone(), sink_name.clone(), sink);
    }
    worker.run(shutdown).await;
    Ok(0)
}
