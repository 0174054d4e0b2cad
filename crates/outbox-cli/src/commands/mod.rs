//! One module per subcommand; shared helpers here.

pub mod admin;
pub mod dashboard;
pub mod demo;
pub mod dlq;
pub mod doctor;
pub mod events;
pub mod migrate;
pub mod policy;
pub mod purge;
pub mod run;
pub mod schema;

use crate::config::{Config, SchemaOwner};
use crate::{Failure, EXIT_CONFIG, EXIT_FAILURE};
use outbox_store::mysql::MysqlStore;
use outbox_store::sqlite::{SqliteOptions, SqliteStore};
use outbox_store::{Backend, PgStore, PgStoreOptions};
use std::time::Duration;

/// Where the configuration came from, for messages.
pub fn origin(config: &Config) -> String {
    match &config.file {
        Some(p) => p.display().to_string(),
        None => "no config file".to_string(),
    }
}

/// The kind of database a `database.url` names, by its form (SPEC §1b).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `postgres://`, `postgresql://` or a libpq `key=value` string.
    Postgres,
    /// `sqlite:PATH` or `sqlite:///ABS/PATH`.
    Sqlite,
    /// `mysql://` or `mariadb://`.
    Mysql,
}

impl StoreKind {
    /// The kind of `url`, or `None` for a form no store takes.
    pub fn of(url: &str) -> Option<StoreKind> {
        let lower = url.trim_start().to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Some(StoreKind::Postgres)
        } else if lower.starts_with("sqlite:") {
            Some(StoreKind::Sqlite)
        } else if lower.starts_with("mysql://") || lower.starts_with("mariadb://") {
            Some(StoreKind::Mysql)
        } else if !lower.contains("://") && lower.contains('=') {
            // libpq's key=value form: `host=... dbname=...`.
            Some(StoreKind::Postgres)
        } else {
            None
        }
    }
}

/// The configured database URL and the kind of store it names; a config error when it is
/// missing, of no known form, or of a store this build does not have.
fn database_url(config: &Config) -> Result<(StoreKind, String), Failure> {
    let Some(url) = config.database.url.clone() else {
        return Err(Failure::new(
            EXIT_CONFIG,
            format!(
                "invalid configuration ({}): database.url: missing; set database.url in the config file, $DATABASE_URL, or --database-url",
                origin(config)
            ),
        ));
    };
    match StoreKind::of(&url) {
        Some(kind) => Ok((kind, url)),
        None => Err(Failure::new(
            EXIT_CONFIG,
            format!(
                "invalid configuration ({}): database.url: `{}` is not a database URL; use postgres://user@host:5432/db (or a libpq key=value string), sqlite:///path/app.db or mysql://user:pass@host:3306/db",
                origin(config),
                outbox_core::conf::redact_secrets(&url)
            ),
        )),
    }
}

/// The kind of store the configured database.url names.
pub fn store_kind(config: &Config) -> Result<StoreKind, Failure> {
    Ok(database_url(config)?.0)
}

/// The backend for the configured database (nothing opened yet), for commands that speak
/// only the store traits.
pub fn open_backend(config: &Config) -> Result<Box<dyn Backend>, Failure> {
    match database_url(config)?.0 {
        StoreKind::Sqlite => Ok(Box::new(open_sqlite(config)?)),
        StoreKind::Mysql => Ok(Box::new(open_mysql(config)?)),
        StoreKind::Postgres => Ok(Box::new(open_store(config)?)),
    }
}

/// The MySQL / MariaDB store for a `mysql://` (or `mariadb://`) database.url (no connection
/// yet).
pub fn open_mysql(config: &Config) -> Result<MysqlStore, Failure> {
    let (_, url) = database_url(config)?;
    if config.database.overrides.timestamp_format.is_some() {
        return Err(Failure::new(
            EXIT_CONFIG,
            format!(
                "invalid configuration ({}): database.timestamp_format applies to SQLite only (MySQL timestamps have a type); remove it",
                origin(config)
            ),
        ));
    }
    MysqlStore::new(&url, config.database.pool_size).map_err(|e| {
        Failure::new(
            EXIT_CONFIG,
            format!(
                "invalid configuration ({}): database.url: {e}",
                origin(config)
            ),
        )
    })
}

/// The SQLite store for a `sqlite:` database.url: a relative path is taken from the config
/// file's folder (else the current one).
pub fn open_sqlite(config: &Config) -> Result<SqliteStore, Failure> {
    let (_, url) = database_url(config)?;
    let base = config.file.as_deref().and_then(|f| f.parent());
    SqliteOptions::from_url(&url, base)
        .map(|o| SqliteStore::new(&o))
        .map_err(|e| {
            Failure::new(
                EXIT_CONFIG,
                format!(
                    "invalid configuration ({}): database.url: {e}",
                    origin(config)
                ),
            )
        })
}

/// The PostgreSQL store for the configured database (no connection yet), for what is by
/// nature about PostgreSQL (app-owned tables, `doctor`'s server checks).
pub fn open_store(config: &Config) -> Result<PgStore, Failure> {
    let (kind, url) = database_url(config)?;
    if kind != StoreKind::Postgres {
        return Err(Failure::new(
            EXIT_CONFIG,
            format!(
                "invalid configuration ({}): database.url names a {} database, and this needs PostgreSQL",
                origin(config),
                if kind == StoreKind::Sqlite { "SQLite" } else { "MySQL/MariaDB" }
            ),
        ));
    }
    if config.database.overrides.timestamp_format.is_some() {
        return Err(Failure::new(
            EXIT_CONFIG,
            format!(
                "invalid configuration ({}): database.timestamp_format applies to SQLite only (PostgreSQL timestamps have a type); remove it",
                origin(config)
            ),
        ));
    }
    let opts = PgStoreOptions {
        url,
        schema: config.database.schema.clone(),
        pool_size: config.database.pool_size,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: None,
    };
    PgStore::new(&opts).map_err(|e| {
        Failure::new(
            EXIT_CONFIG,
            format!("invalid configuration ({}): {e}", origin(config)),
        )
    })
}

/// The dashboard's own store: two connections at most, each statement cut at `timeout`
/// (on SQLite, a local file, reads are not cut), with the app's tables resolved when they
/// are app-owned.
pub async fn open_dashboard_store(
    config: &Config,
    timeout: Duration,
) -> Result<std::sync::Arc<dyn Backend>, Failure> {
    let invalid = |e: String| {
        Failure::new(
            EXIT_CONFIG,
            format!("invalid configuration ({}): {e}", origin(config)),
        )
    };
    let mut store: Box<dyn Backend> = match database_url(config)? {
        (StoreKind::Postgres, _) => {
            let pg = open_store(config)?;
            drop(pg);
            let (_, url) = database_url(config)?;
            let opts = PgStoreOptions {
                url,
                schema: config.database.schema.clone(),
                pool_size: 2,
                connect_timeout: Duration::from_secs(5),
                statement_timeout: Some(timeout),
            };
            Box::new(PgStore::new(&opts).map_err(|e| invalid(e.to_string()))?)
        }
        (StoreKind::Mysql, url) => {
            open_mysql(config)?;
            Box::new(
                MysqlStore::with_statement_timeout(&url, 2, Some(timeout))
                    .map_err(|e| invalid(format!("database.url: {e}")))?,
            )
        }
        (StoreKind::Sqlite, _) => Box::new(open_sqlite(config)?),
    };
    resolve_app_tables(&mut *store, config).await?;
    Ok(std::sync::Arc::from(store))
}

/// Refuses schema commands on app-owned tables, where the worker runs no DDL.
pub fn require_worker_owned(config: &Config, command: &str) -> Result<(), Failure> {
    if config.database.owner == SchemaOwner::App {
        return Err(Failure::new(
            EXIT_CONFIG,
            format!(
                "`outbox {command}` manages worker-owned tables, but database.schema_owner = \"app\" ({}): the app's migrations own the tables and the worker runs no DDL; check them with `outbox doctor`",
                origin(config)
            ),
        ));
    }
    Ok(())
}

/// The backend, ready for operator queries: on app-owned tables, with the layout resolved.
pub async fn query_store(config: &Config) -> Result<Box<dyn Backend>, Failure> {
    let mut store = open_backend(config)?;
    resolve_app_tables(&mut *store, config).await?;
    Ok(store)
}

/// On app-owned tables, resolves their names and columns (refusing unusable ones).
async fn resolve_app_tables(store: &mut dyn Backend, config: &Config) -> Result<(), Failure> {
    if config.database.owner == SchemaOwner::App {
        let res = store.adopt(&config.database.overrides).await.map_err(|e| {
            Failure::new(EXIT_FAILURE, format!("cannot read the app's tables: {e}"))
        })?;
        if !res.usable {
            return Err(Failure::new(
                EXIT_FAILURE,
                "the app-owned tables cannot be used; run `outbox doctor` for the fixes",
            ));
        }
    }
    Ok(())
}

/// A database failure of an operator command.
pub fn failed(e: outbox_core::StoreError) -> Failure {
    Failure::new(EXIT_FAILURE, e.to_string())
}

/// Who runs an operator command, for the audit: `user@host`.
pub fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{user}@{host}")
}

/// A progress display for a bulk operation: a bar on a terminal, a line every 5 s otherwise.
pub struct Progress {
    bar: indicatif::ProgressBar,
    what: &'static str,
    done: u64,
    total: u64,
    last_line: std::time::Instant,
}

impl Progress {
    pub fn new(total: u64, what: &'static str) -> Progress {
        let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            indicatif::ProgressBar::new(total)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, {{eta}} left)"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Progress {
            bar,
            what,
            done: 0,
            total,
            last_line: std::time::Instant::now(),
        }
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        self.bar.inc(n);
        if self.bar.is_hidden() && self.last_line.elapsed().as_secs() >= 5 {
            eprintln!("{}/{} {}", self.done, self.total, self.what);
            self.last_line = std::time::Instant::now();
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
