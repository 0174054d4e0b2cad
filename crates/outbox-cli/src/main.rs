//! `outbox`: the transactional-outbox relay.

mod commands;
mod config;
mod logs;
#[cfg(feature = "otel")]
mod telemetry;

use clap::{Parser, Subcommand, ValueEnum};
use config::{Config, ConfigError, Env, LoadOptions};
use outbox_core::Status;
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
    /// Log lines for people (`text`) or one JSON object per line for log pipelines.
    #[arg(long, global = true, value_enum, env = "OUTBOX_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
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

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
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
    /// Serve the web dashboard without running a worker (token, actions and timeouts from
    /// [admin]).
    Dashboard {
        /// Where to listen (default 127.0.0.1:9091, beside a worker's admin listener). Off
        /// loopback, [admin] token is required.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Counts per routingKey and status, lag (oldest PENDING), retrying and FAILED events.
    Stats {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Inspect events.
    Events {
        #[command(subcommand)]
        action: EventsAction,
    },
    /// FAILED events (the dead letters): list, put back, delete.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Retry policies next to this config's routes; pause and resume a routingKey.
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// A walk-through on a throwaway database: a SQLite file (nothing to install), a private
    /// PostgreSQL with --postgres, or with --database-url a schema of its own on your
    /// PostgreSQL server; a demo destination and the real commands; everything is removed at
    /// the end.
    Demo {
        /// Run it on a private PostgreSQL cluster (needs PostgreSQL's server installed).
        #[arg(long)]
        postgres: bool,
        /// Run it on this MySQL/MariaDB server (mysql://USER:PASS@HOST:3306), in a database
        /// of its own that is dropped at the end.
        #[arg(long, value_name = "URL")]
        mysql: Option<String>,
    },
    /// The demo's clean-up, run by `outbox demo` itself: removes what the demo made once the
    /// demo has ended, however it ended.
    #[command(hide = true, name = "demo-cleanup")]
    DemoCleanup {
        /// The demo's directory.
        #[arg(long)]
        dir: PathBuf,
        /// The demo's schema on the server in $DATABASE_URL.
        #[arg(long)]
        schema: Option<String>,
        /// The directory holds a private cluster to stop.
        #[arg(long)]
        cluster: bool,
    },
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

/// Which events: the filters every listing and bulk command shares.
#[derive(clap::Args, Debug, Clone)]
struct Filters {
    /// Events with this routingKey.
    #[arg(long)]
    routing_key: Option<String>,
    /// Events of this aggregate.
    #[arg(long)]
    aggregate_id: Option<String>,
    /// Events that occurred at most this long ago, e.g. 1h, 2d.
    #[arg(long, value_name = "AGE")]
    since: Option<String>,
}

impl Filters {
    fn to_filter(
        &self,
        ids: Vec<String>,
        error_contains: Option<String>,
    ) -> Result<outbox_store::EventFilter, Failure> {
        let since = match &self.since {
            Some(s) => Some(
                outbox_core::conf::parse_duration(s)
                    .map_err(|e| Failure::new(EXIT_CONFIG, format!("--since: {e}")))?,
            ),
            None => None,
        };
        Ok(outbox_store::EventFilter {
            ids,
            status: None,
            routing_key: self.routing_key.clone(),
            aggregate_id: self.aggregate_id.clone(),
            since,
            error_contains,
            occurred_from: None,
            occurred_to: None,
            page: None,
        })
    }
}

/// Which FAILED events a bulk command changes.
#[derive(clap::Args, Debug, Clone)]
struct Selection {
    /// This event; repeatable.
    #[arg(long = "id", value_name = "ID")]
    ids: Vec<String>,
    #[command(flatten)]
    filters: Filters,
    /// Events whose lastError contains this (case-insensitive).
    #[arg(long)]
    error_contains: Option<String>,
    /// Show how many and which, change nothing.
    #[arg(long)]
    dry_run: bool,
}

impl Selection {
    fn to_filter(&self) -> Result<outbox_store::EventFilter, Failure> {
        self.filters
            .to_filter(self.ids.clone(), self.error_contains.clone())
    }
}

/// Statuses of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventStatus {
    #[value(name = "PENDING", alias = "pending")]
    Pending,
    #[value(name = "PROCESSING", alias = "processing")]
    Processing,
    #[value(name = "SENT", alias = "sent")]
    Sent,
    #[value(name = "FAILED", alias = "failed")]
    Failed,
}

#[derive(Subcommand, Debug)]
enum EventsAction {
    /// Events, newest first.
    List {
        #[command(flatten)]
        filters: Filters,
        /// Only events with this status.
        #[arg(long, value_enum)]
        status: Option<EventStatus>,
        /// Most events shown.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// `json`: one object per line.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Every column of one event, its attempts and next attempt.
    Show {
        /// The event id.
        id: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Subcommand, Debug)]
enum DlqAction {
    /// FAILED events, newest first, with their last error; and blocked aggregates.
    List {
        #[command(flatten)]
        filters: Filters,
        /// Only events whose lastError contains this (case-insensitive).
        #[arg(long)]
        error_contains: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// `json`: one object per line.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Put FAILED events back to PENDING (retryCount 0, due now), audited.
    Replay {
        #[command(flatten)]
        selection: Selection,
        /// At most this many events per second.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        rate: Option<u32>,
        /// Events per statement.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch_size: u32,
    },
    /// Delete FAILED events, audited; asks first unless --yes.
    Purge {
        #[command(flatten)]
        selection: Selection,
        /// Do not ask (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// Also release the aggregates the deleted events blocked.
        #[arg(long)]
        unblock: bool,
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch_size: u32,
    },
    /// Release aggregates blocked by a FAILED head (their next events go ahead), audited.
    Unblock {
        /// The aggregate; repeatable.
        #[arg(long = "aggregate-id", value_name = "ID")]
        aggregates: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyAction {
    /// Each policy, its route and sink, and whether it is paused.
    List {
        /// `json`: one object per line.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Pause a routingKey: its events stay PENDING.
    Pause {
        /// The routingKey.
        key: String,
    },
    /// Resume a paused routingKey.
    Resume {
        /// The routingKey.
        key: String,
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
    let exports = matches!(cli.command, Command::Run { .. });
    let telemetry = match init_logging(cli.log_format, exports, runtime.handle()) {
        Ok(t) => t,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = runtime.block_on(dispatch(cli));
    if let Some(t) = telemetry {
        finish(t);
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

#[cfg(feature = "otel")]
type Telemetry = telemetry::Telemetry;
#[cfg(not(feature = "otel"))]
type Telemetry = std::convert::Infallible;

/// Flushes the span exporter, if there is one.
fn finish(telemetry: Telemetry) {
    #[cfg(feature = "otel")]
    telemetry.shutdown();
    #[cfg(not(feature = "otel"))]
    match telemetry {}
}

/// Log lines on stderr, filtered by `OUTBOX_LOG`/`RUST_LOG`; with the `otel` feature and
/// `exports`, also the OpenTelemetry span export the environment asks for.
fn init_logging(
    format: LogFormat,
    exports: bool,
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))] runtime: &tokio::runtime::Handle,
) -> Result<Option<Telemetry>, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = std::env::var("OUTBOX_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Whatever the filter says, other crates log at INFO at most: their debug and trace
    // output (connection handshakes, request headers) carries passwords and tokens.
    let capped = tracing_subscriber::filter::filter_fn(|meta| {
        meta.target().starts_with("outbox") || *meta.level() <= tracing::Level::INFO
    });
    let lines = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(logs::escaped_fields())
            .with_filter(filter)
            .with_filter(capped)
            .boxed(),
        LogFormat::Json => lines
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .with_filter(capped)
            .boxed(),
    };
    let logs = tracing_subscriber::registry().with(lines);
    #[cfg(feature = "otel")]
    {
        let export = if exports {
            telemetry::layer(runtime.clone())?
        } else {
            None
        };
        let (layer, telemetry) = match export {
            Some((layer, telemetry)) => (Some(layer), Some(telemetry)),
            None => (None, None),
        };
        logs.with(layer).init();
        if let Some(t) = &telemetry {
            tracing::info!("{}", t.summary);
        }
        Ok(telemetry)
    }
    #[cfg(not(feature = "otel"))]
    {
        logs.init();
        if exports && otel_requested() {
            tracing::warn!("OTEL_EXPORTER_OTLP_ENDPOINT is set, but this build of outbox does not export spans: build it with `--features otel`");
        }
        Ok(None)
    }
}

/// Whether the environment asks for OpenTelemetry span export: an OTLP endpoint is named,
/// and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` turns it off.
fn otel_requested() -> bool {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled
        && (var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some())
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
            // The configured store's flavour; PostgreSQL when there is no usable config.
            let config = load().ok();
            let kind = config
                .as_ref()
                .and_then(|c| commands::store_kind(c).ok())
                .unwrap_or(commands::StoreKind::Postgres);
            let schema = config.map_or_else(|| "public".into(), |c| c.database.schema);
            commands::schema::print(format, &schema, kind)
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
        Command::Dashboard { listen } => commands::dashboard::dashboard(load()?, listen).await,
        Command::Demo { postgres, mysql } => {
            commands::demo::demo(cli.database_url.clone(), postgres, mysql).await
        }
        Command::DemoCleanup {
            dir,
            schema,
            cluster,
        } => commands::demo::cleanup(dir, schema, cluster).await,
        Command::Stats { format } => commands::events::stats(&load()?, format).await,
        Command::Events { action } => {
            let config = load()?;
            match action {
                EventsAction::List {
                    filters,
                    status,
                    limit,
                    format,
                } => {
                    let mut filter = filters.to_filter(Vec::new(), None)?;
                    filter.status = status.map(|s| match s {
                        EventStatus::Pending => Status::Pending,
                        EventStatus::Processing => Status::Processing,
                        EventStatus::Sent => Status::Sent,
                        EventStatus::Failed => Status::Failed,
                    });
                    commands::events::list(&config, &filter, i64::from(limit), format).await
                }
                EventsAction::Show { id, format } => {
                    commands::events::show(&config, &id, format).await
                }
            }
        }
        Command::Dlq { action } => {
            let config = load()?;
            match action {
                DlqAction::List {
                    filters,
                    error_contains,
                    limit,
                    format,
                } => {
                    let filter = filters.to_filter(Vec::new(), error_contains)?;
                    commands::dlq::list(&config, &filter, i64::from(limit), format).await
                }
                DlqAction::Replay {
                    selection,
                    rate,
                    batch_size,
                } => {
                    let bulk = commands::dlq::Bulk {
                        dry_run: selection.dry_run,
                        batch_size: i64::from(batch_size),
                        rate,
                    };
                    commands::dlq::replay(&config, &selection.to_filter()?, &bulk).await
                }
                DlqAction::Purge {
                    selection,
                    yes,
                    unblock,
                    batch_size,
                } => {
                    let bulk = commands::dlq::Bulk {
                        dry_run: selection.dry_run,
                        batch_size: i64::from(batch_size),
                        rate: None,
                    };
                    let filter = selection.to_filter()?;
                    commands::dlq::purge(&config, &filter, &bulk, yes, unblock).await
                }
                DlqAction::Unblock { aggregates } => {
                    commands::dlq::unblock(&config, &aggregates).await
                }
            }
        }
        Command::Policy { action } => {
            let config = load()?;
            match action {
                PolicyAction::List { format } => commands::policy::list(&config, format).await,
                PolicyAction::Pause { key } => {
                    commands::policy::set_paused(&config, &key, true).await
                }
                PolicyAction::Resume { key } => {
                    commands::policy::set_paused(&config, &key, false).await
                }
            }
        }
        Command::Purge {
            status,
            older_than,
            batch_size,
        } => commands::purge::purge(&load()?, status, &older_than, batch_size as usize).await,
    }
}
