//! `outbox`: the transactional-outbox relay.

mod config;

use clap::{Parser, Subcommand};
use config::{Config, ConfigError, Env, LoadOptions};
use outbox_store::{MigrationState, PgStore, PgStoreOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit code for usage and configuration errors.
const EXIT_CONFIG: u8 = 2;
/// `migrate status`: migrations are pending.
const EXIT_PENDING: u8 = 10;
/// `migrate status`: an applied migration differs from this build's.
const EXIT_MODIFIED: u8 = 11;
/// `migrate status`: an applied migration is unknown to this build.
const EXIT_UNKNOWN: u8 = 12;

#[derive(Parser, Debug)]
#[command(
    name = "outbox",
    version,
    about = "Relays events from a transactional outbox table to their destinations."
)]
struct Cli {
    /// Config file (default: $OUTBOX_CONFIG, else ./outbox.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Load KEY=VALUE lines (# comments allowed) into the environment first; repeatable.
    #[arg(long = "env-file", global = true, value_name = "PATH")]
    env_files: Vec<PathBuf>,
    /// Overrides database.url and $DATABASE_URL.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the worker in the foreground until SIGINT or SIGTERM.
    Run,
    /// Apply or inspect the worker's migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
}

#[derive(Subcommand, Debug)]
enum MigrateAction {
    /// Apply pending migrations (idempotent; safe with replicas starting at once).
    Deploy,
    /// List applied and pending migrations; exit 0 only when up to date.
    Status,
}

/// A failure with its exit code; printed as one line.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        Failure::new(EXIT_CONFIG, e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_CONFIG } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn init_logging() {
    let filter = std::env::var("OUTBOX_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let mut env = Env::from_process();
    for path in &cli.env_files {
        env.load_file(path)
            .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    }
    let opts = LoadOptions {
        config: cli.config.clone(),
        database_url: cli.database_url.clone(),
    };
    let config = config::load(&opts, &env)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    match cli.command {
        Command::Run => run(config).await,
        Command::Migrate {
            action: MigrateAction::Deploy,
        } => migrate_deploy(&config).await,
        Command::Migrate {
            action: MigrateAction::Status,
        } => migrate_status(&config).await,
    }
}

fn origin(config: &Config) -> String {
    match &config.file {
        Some(p) => p.display().to_string(),
        None => "no config file".to_string(),
    }
}

fn store(config: &Config) -> Result<PgStore, Failure> {
    let Some(url) = config.database.url.clone() else {
        return Err(Failure::new(
            EXIT_CONFIG,
            format!(
                "invalid configuration ({}): database.url: missing; set database.url in the config file, $DATABASE_URL, or --database-url",
                origin(config)
            ),
        ));
    };
    let opts = PgStoreOptions {
        url,
        schema: config.database.schema.clone(),
        pool_size: config.database.pool_size,
        connect_timeout: Duration::from_secs(5),
    };
    PgStore::new(&opts).map_err(|e| {
        Failure::new(
            EXIT_CONFIG,
            format!("invalid configuration ({}): {e}", origin(config)),
        )
    })
}

async fn migrate_deploy(config: &Config) -> Result<u8, Failure> {
    let store = store(config)?;
    let applied = store
        .migrate_deploy()
        .await
        .map_err(|e| Failure::new(1, format!("migrate deploy failed: {e}")))?;
    if applied.is_empty() {
        println!(
            "Already up to date: no pending migrations in schema \"{}\".",
            store.schema()
        );
    } else {
        for m in &applied {
            println!("Applied {:04} {}", m.version, m.name);
        }
        println!(
            "{} migration(s) applied to schema \"{}\".",
            applied.len(),
            store.schema()
        );
    }
    Ok(0)
}

async fn migrate_status(config: &Config) -> Result<u8, Failure> {
    let store = store(config)?;
    let reports = store
        .migration_status()
        .await
        .map_err(|e| Failure::new(1, format!("migrate status failed: {e}")))?;
    let mut code = 0;
    println!("Migrations in schema \"{}\":", store.schema());
    for r in &reports {
        let (state, c) = match &r.state {
            MigrationState::Applied { at } => {
                (format!("applied {}", at.format("%Y-%m-%d %H:%M:%S UTC")), 0)
            }
            MigrationState::Pending => (
                "pending (run `outbox migrate deploy`)".to_string(),
                EXIT_PENDING,
            ),
            MigrationState::Modified { applied, embedded } => (
                format!(
                    "MODIFIED: applied with checksum {}…, this build has {}…",
                    &applied[..applied.len().min(12)],
                    &embedded[..embedded.len().min(12)]
                ),
                EXIT_MODIFIED,
            ),
            MigrationState::Unknown => (
                "UNKNOWN to this build (applied by a newer or other build)".to_string(),
                EXIT_UNKNOWN,
            ),
        };
        if c > code {
            code = c;
        }
        println!("  {:04} {:<24} {state}", r.version, r.name);
    }
    if code == 0 {
        println!("Up to date.");
    }
    Ok(code)
}

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

async fn wait_for_signal() -> &'static str {
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

async fn run(config: Config) -> Result<u8, Failure> {
    if config.routes.is_empty() {
        return Err(Failure::new(
            EXIT_CONFIG,
            format!(
                "invalid configuration ({}): routes: no routes configured; add e.g. [routes] \"audit.record-auth-log\" = {{ sink = \"audit-api\" }} and a [sinks.audit-api] section",
                origin(&config)
            ),
        ));
    }
    let store = store(&config)?;
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

    // Wait for the database (it may start after us), but refuse to run on an old schema.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut delay = Duration::from_millis(500);
    loop {
        let status = tokio::select! {
            _ = &mut shutdown => return Ok(0),
            s = store.migration_status() => s,
        };
        match status {
            Ok(reports) => {
                let pending: Vec<String> = reports
                    .iter()
                    .filter(|r| r.state == MigrationState::Pending)
                    .map(|r| format!("{:04}_{}", r.version, r.name))
                    .collect();
                if !pending.is_empty() {
                    return Err(Failure::new(
                        1,
                        format!(
                            "{} migration(s) pending in schema \"{}\" ({}); run `outbox migrate deploy` first",
                            pending.len(),
                            store.schema(),
                            pending.join(", ")
                        ),
                    ));
                }
                if let Some(bad) = reports.iter().find(|r| {
                    matches!(
                        r.state,
                        MigrationState::Modified { .. } | MigrationState::Unknown
                    )
                }) {
                    return Err(Failure::new(
                        1,
                        format!(
                            "migration {:04} ({}) in schema \"{}\" does not match this build; run `outbox migrate status` for details",
                            bad.version,
                            bad.name,
                            store.schema()
                        ),
                    ));
                }
                break;
            }
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, retry_in = ?delay, "Database not reachable; waiting for it");
                tokio::select! {
                    _ = &mut shutdown => return Ok(0),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(Failure::new(
                    1,
                    format!("cannot read the migration history: {e}"),
                ))
            }
        }
    }

    tracing::info!(
        environment = %config.database.environment,
        schema = %store.schema(),
        routes = config.routes.len(),
        "Schema up to date"
    );
    let mut worker = outbox_worker::Worker::new(Arc::new(store), config.worker.clone());
    for (key, sink_name) in &config.routes {
        let sink = sinks[sink_name].clone();
        worker = worker.route(key.clone(), sink_name.clone(), sink);
    }
    worker.run(shutdown).await;
    Ok(0)
}
