//! `outbox`: the transactional-outbox relay.

mod commands;
mod config;

use clap::{Parser, Subcommand, ValueEnum};
use config::{Config, ConfigError, Env, LoadOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for failures that are not usage or configuration errors.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for usage and configuration errors.
pub const EXIT_CONFIG: u8 = 2;

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

/// Output format of reporting commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines for people.
    Text,
    /// One JSON document for scripts.
    Json,
}

/// `schema print` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaFormat {
    /// PostgreSQL DDL.
    Sql,
    /// Prisma models.
    Prisma,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the worker in the foreground until SIGINT or SIGTERM.
    Run {
        /// Start even when migrations are pending or the schema has drifted (worker-owned
        /// tables only). The worker may then fail on the tables it finds.
        #[arg(long)]
        skip_schema_check: bool,
    },
    /// Apply or inspect the worker's migrations (worker-owned tables).
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print the outbox schema, for apps that own the tables.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
    /// Check connectivity, schema, column mapping, routes and policies; print the fix for
    /// each problem.
    Doctor,
    /// Delete SENT or FAILED rows older than an age, in small batches.
    Purge {
        /// Which finished rows.
        #[arg(long, value_enum)]
        status: PurgeStatus,
        /// Age, e.g. 7d, 12h, 30m.
        #[arg(long, value_name = "AGE")]
        older_than: String,
        /// Rows per delete statement.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch_size: u32,
    },
}

/// Statuses `purge` deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PurgeStatus {
    /// Delivered rows.
    #[value(name = "SENT", alias = "sent")]
    Sent,
    /// Dead letters.
    #[value(name = "FAILED", alias = "failed")]
    Failed,
}

#[derive(Subcommand, Debug)]
enum MigrateAction {
    /// Apply pending migrations (idempotent; safe with replicas starting at once).
    Deploy,
    /// Applied and pending migrations and live drift; exit 0 only when clean.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Drop the outbox tables and apply every migration again (development only).
    Reset {
        /// Really drop; without it, only print what would be dropped.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum SchemaAction {
    /// Print the tables as SQL or as Prisma models.
    Print {
        /// Output format.
        #[arg(long, value_enum, default_value_t = SchemaFormat::Sql)]
        format: SchemaFormat,
    },
}

/// A failure with its exit code; printed as one line.
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// A failure exiting with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
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
            return ExitCode::from(EXIT_FAILURE);
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

fn load_config(
    config: &Option<PathBuf>,
    env_files: &[PathBuf],
    database_url: &Option<String>,
) -> Result<Config, Failure> {
    let mut env = Env::from_process();
    for path in env_files {
        env.load_file(path)
            .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    }
    let opts = LoadOptions {
        config: config.clone(),
        database_url: database_url.clone(),
    };
    let config = config::load(&opts, &env)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let command = cli.command;
    let load = || load_config(&cli.config, &cli.env_files, &cli.database_url);
    match command {
        // Printing the schema needs no configuration beyond an optional schema name.
        Command::Schema {
            action: SchemaAction::Print { format },
        } => {
            let schema = load()
                .map(|c| c.database.schema)
                .unwrap_or_else(|_| "public".into());
            Ok(commands::schema::print(format, &schema))
        }
        Command::Run { skip_schema_check } => commands::run::run(load()?, skip_schema_check).await,
        Command::Migrate { action } => {
            let config = load()?;
            match action {
                MigrateAction::Deploy => commands::migrate::deploy(&config).await,
                MigrateAction::Status { format } => {
                    commands::migrate::status(&config, format).await
                }
                MigrateAction::Reset { force } => commands::migrate::reset(&config, force).await,
            }
        }
        Command::Doctor => commands::doctor::doctor(&load()?).await,
        Command::Purge {
            status,
            older_than,
            batch_size,
        } => commands::purge::purge(&load()?, status, &older_than, batch_size as usize).await,
    }
}
