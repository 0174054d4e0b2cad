//! Loading the configuration: the TOML file, `--env-file`s, `OUTBOX_*` variables,
//! `${VAR}` expansion and `DATABASE_URL`; then validation that reports every problem at once,
//! before anything touches the network.

use outbox_core::conf::{Issue, Section};
use outbox_sinks::SinkConfig;
use outbox_store::postgres::layout::{
    EVENT_OPTIONAL, EVENT_RECOMMENDED, EVENT_REQUIRED, POLICY_OPTIONAL, POLICY_REQUIRED,
};
use outbox_store::Overrides;
use outbox_worker::{OnSuccess, Retention, WorkerOptions};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::{Table, Value};

/// The process environment with any `--env-file` values laid over it.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The current process environment.
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    /// An environment from explicit pairs (tests).
    #[cfg(test)]
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Env {
        Env {
            vars: pairs.into_iter().collect(),
        }
    }

    /// A variable's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Lays a `KEY=VALUE` file over this environment (its values win, as with
    /// `env $(grep -v '^#' env/.env.local | xargs) …`).
    pub fn load_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read env file {}: {e}", path.display()))?;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            // The line itself is never quoted back: it may hold a secret.
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "{}:{}: expected KEY=VALUE (the line is not shown: it may hold a secret)",
                    path.display(),
                    n + 1
                ));
            };
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "{}:{}: the name before '=' is not a variable name (letters, digits and _ only)",
                    path.display(),
                    n + 1
                ));
            }
            self.vars.insert(key.to_string(), unquote(value.trim()));
        }
        Ok(())
    }
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    // An unquoted value ends at an inline comment.
    match v.find(" #") {
        Some(i) => v[..i].trim_end().to_string(),
        None => v.to_string(),
    }
}

/// `[database]`.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Connection URL.
    pub url: Option<String>,
    /// Schema holding the tables.
    pub schema: String,
    /// Pool size.
    pub pool_size: usize,
    /// `development`, `production`, ...
    pub environment: String,
    /// Who owns the tables: the worker (its migrations) or the app (no DDL at all).
    pub owner: SchemaOwner,
    /// App mode: physical names where introspection cannot tell.
    pub overrides: Overrides,
}

/// `database.schema_owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaOwner {
    /// Our migrations create and evolve the tables.
    Worker,
    /// The application's own migrations (e.g. Prisma) own them; the worker runs no DDL.
    App,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[worker]`.
    pub worker: WorkerOptions,
    /// routingKey → sink name.
    pub routes: BTreeMap<String, String>,
    /// Sink name → sink.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// `[admin]`: where /metrics, /healthz and /readyz listen, and the dashboard (off when
    /// absent).
    pub admin: Option<AdminConfig>,
    /// Things worth a warning but not fatal.
    pub warnings: Vec<String>,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Where the listener binds.
    pub listen: std::net::SocketAddr,
    /// Whether the dashboard is served there (`/`, `/api/…`).
    pub dashboard: bool,
    /// The dashboard's token (required off loopback).
    pub token: Option<String>,
    /// Whether the dashboard offers replay, purge, unblock and pause/resume.
    pub actions: bool,
    /// Past this many rows SENT counts are estimated.
    pub exact_counts_up_to: i64,
    /// The longest a dashboard query may run.
    pub statement_timeout: std::time::Duration,
}

impl AdminConfig {
    /// The dashboard's options, with the configuration's routes.
    pub fn dashboard_options(&self, routes: &BTreeMap<String, String>) -> outbox_web::Options {
        outbox_web::Options {
            token: self.token.clone(),
            actions: self.actions,
            exact_counts_up_to: self.exact_counts_up_to,
            statement_timeout: self.statement_timeout,
            routes: routes.clone(),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug)]
pub struct ConfigError {
    /// Where it was read from, for the message.
    pub origin: String,
    /// Every problem.
    pub issues: Vec<String>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.issues.len() == 1 {
            return write!(
                f,
                "invalid configuration ({}): {}",
                self.origin, self.issues[0]
            );
        }
        writeln!(
            f,
            "invalid configuration ({}), {} problems:",
            self.origin,
            self.issues.len()
        )?;
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {issue}")?;
        }
        Ok(())
    }
}

/// Where to look, and what the command line overrides.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--database-url`.
    pub database_url: Option<String>,
}

const TOP_KEYS: &[&str] = &[
    "database",
    "worker",
    "retention",
    "routes",
    "sinks",
    "admin",
];
/// The longest `worker.lease`: a crashed worker's events wait this long at most.
const MAX_LEASE: Duration = Duration::from_secs(86_400);
const RETENTION_KEYS: &[&str] = &["sent", "failed", "interval", "batch_size"];
const DATABASE_KEYS: &[&str] = &[
    "url",
    "schema",
    "schema_owner",
    "environment",
    "pool_size",
    "columns",
    "tables",
    "timestamp_format",
];
const WORKER_KEYS: &[&str] = &[
    "batch_size",
    "concurrency",
    "poll_interval",
    "lease",
    "shutdown_timeout",
    "on_success",
    "policy_refresh",
    "worker_id",
];

/// Picks the config file: `--config`, else `$OUTBOX_CONFIG`, else `./outbox.toml` if present.
pub fn locate(opts: &LoadOptions, env: &Env) -> Result<Option<PathBuf>, ConfigError> {
    let explicit = opts.config.clone().map(|p| (p, "--config")).or_else(|| {
        env.get("OUTBOX_CONFIG")
            .map(|p| (PathBuf::from(p), "OUTBOX_CONFIG"))
    });
    match explicit {
        Some((path, via)) => {
            if path.is_file() {
                Ok(Some(path))
            } else {
                Err(ConfigError {
                    origin: via.to_string(),
                    issues: vec![format!(
                        "config file {} does not exist; check the path given by {via}",
                        path.display()
                    )],
                })
            }
        }
        None => {
            let default = PathBuf::from("outbox.toml");
            Ok(default.is_file().then_some(default))
        }
    }
}

/// Loads and validates the configuration.
pub fn load(opts: &LoadOptions, env: &Env) -> Result<Config, ConfigError> {
    let file = locate(opts, env)?;
    let origin = match &file {
        Some(p) => p.display().to_string(),
        None => "no config file; environment only".to_string(),
    };
    let text = match &file {
        Some(p) => std::fs::read_to_string(p).map_err(|e| ConfigError {
            origin: origin.clone(),
            issues: vec![format!("cannot read the file: {e}")],
        })?,
        None => String::new(),
    };
    parse(&text, file, &origin, opts, env)
}

/// Validates configuration text (exposed for tests).
pub fn parse(
    text: &str,
    file: Option<PathBuf>,
    origin: &str,
    opts: &LoadOptions,
    env: &Env,
) -> Result<Config, ConfigError> {
    let mut root: Table = toml::from_str(text).map_err(|e| ConfigError {
        origin: origin.to_string(),
        issues: vec![toml_error(text, &e)],
    })?;
    let mut issues: Vec<Issue> = Vec::new();
    // `${VAR}` is expanded in the file's text only: a value that comes from the
    // environment (an OUTBOX_* variable) is taken as it is, `$$` and all.
    expand_vars(&mut root, "", env, &mut issues);
    let set_by_env = apply_env_overrides(&mut root, env, &mut issues);

    let mut database_url_override = None;
    if let Some(u) = &opts.database_url {
        database_url_override = Some(u.clone());
    } else if !set_by_env.contains_key("database.url") {
        if let Some(u) = env.get("DATABASE_URL") {
            database_url_override = Some(u.to_string());
        }
    }

    let mut s = Section::new("", &root, TOP_KEYS, &mut issues);
    let db_table = s.table("database").cloned().unwrap_or_default();
    let worker_table = s.table("worker").cloned().unwrap_or_default();
    let retention_table = s.table("retention").cloned().unwrap_or_default();
    let routes_table = s.table("routes").cloned().unwrap_or_default();
    let sinks_table = s.table("sinks").cloned().unwrap_or_default();
    let admin = s
        .table("admin")
        .cloned()
        .and_then(|t| read_admin(&t, &mut issues));

    let database = read_database(&db_table, database_url_override, &mut issues);
    let mut worker = read_worker(&worker_table, &mut issues);
    worker.retention = read_retention(&retention_table, &mut issues);

    let mut sinks = BTreeMap::new();
    for (name, value) in &sinks_table {
        let path = format!("sinks.{name}");
        match value {
            Value::Table(t) => {
                // `circuit_breaker` is the engine's, common to every sink type.
                let breaker = outbox_core::BreakerSettings::from_value(
                    &path,
                    t.get("circuit_breaker"),
                    &mut issues,
                );
                worker.breakers.insert(name.clone(), breaker);
                let mut own = t.clone();
                own.remove("circuit_breaker");
                if let Some(c) = SinkConfig::from_table(&path, &own, &mut issues) {
                    sinks.insert(name.clone(), c);
                }
            }
            _ => issues.push(Issue {
                key: path,
                message: format!(
                    "expected a table: [sinks.{name}] with type = \"http\" and its keys"
                ),
            }),
        }
    }
    let mut routes = BTreeMap::new();
    for (key, value) in &routes_table {
        let path = format!("routes.\"{key}\"");
        let sink = match value {
            Value::Table(t) => {
                let mut rs = Section::new(&path, t, &["sink"], &mut issues);
                rs.required_string("sink", "\"audit-api\"")
            }
            _ => {
                issues.push(Issue {
                    key: path.clone(),
                    message: "expected a table such as { sink = \"audit-api\" }".to_string(),
                });
                None
            }
        };
        if let Some(sink) = sink {
            if sinks_table.contains_key(&sink) {
                routes.insert(key.clone(), sink);
            } else {
                let known: Vec<&String> = sinks_table.keys().collect();
                let hint = if known.is_empty() {
                    "no sinks are defined; add a [sinks.NAME] section".to_string()
                } else {
                    format!(
                        "defined sinks: {}",
                        known
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                issues.push(Issue {
                    key: format!("{path}.sink"),
                    message: format!("sink '{sink}' is not defined; {hint}"),
                });
            }
        }
    }
    // A delivery must not outlive its lease, or a second worker would deliver it too: the
    // worker cuts every delivery at 90% of the lease, so a sink timeout beyond that would
    // never be reached.
    let budget = outbox_worker::delivery_budget(worker.lease);
    for (key, sink_name) in &routes {
        if let Some(timeout) = sinks.get(sink_name).and_then(SinkConfig::timeout) {
            if timeout > budget {
                let fmt = outbox_core::conf::format_duration;
                issues.push(Issue {
                    key: "worker.lease".to_string(),
                    message: format!(
                        "{} leaves deliveries {} (90% of it), less than sinks.{sink_name}.timeout ({}) used by route '{key}'; raise worker.lease to at least {}",
                        fmt(worker.lease),
                        fmt(budget),
                        fmt(timeout),
                        // Whole seconds, rounded up, so the advice passes this check.
                        fmt(Duration::from_secs(
                            (timeout.as_secs_f64() / 0.9).ceil().max(1.0) as u64
                        ))
                    ),
                });
            }
        }
    }
    let mut warnings = Vec::new();
    for (name, sink) in &sinks {
        if !routes.values().any(|s| s == name) {
            warnings.push(format!("sinks.{name} is not used by any route"));
        }
        for w in sink.warnings() {
            warnings.push(format!("sinks.{name} {w}"));
        }
    }

    if !issues.is_empty() {
        let mut seen = std::collections::HashSet::new();
        let rendered = issues
            .iter()
            .map(|i| {
                match set_by_env
                    .iter()
                    .find(|(k, _)| i.key == **k || i.key.starts_with(&format!("{k}.")))
                {
                    Some((_, var)) => format!("{i} (set by {var})"),
                    None => i.to_string(),
                }
            })
            .filter(|line| seen.insert(line.clone()))
            .collect();
        return Err(ConfigError {
            origin: origin.to_string(),
            issues: rendered,
        });
    }
    Ok(Config {
        file,
        database,
        worker,
        routes,
        sinks,
        admin,
        warnings,
    })
}

fn read_admin(t: &Table, issues: &mut Vec<Issue>) -> Option<AdminConfig> {
    let mut s = Section::new("admin", t, ADMIN_KEYS, issues);
    let dashboard = s.boolean("dashboard", false);
    let token = s.string("token").filter(|t| !t.is_empty());
    let actions = s.boolean("actions", false);
    let exact_counts_up_to = s.int("exact_counts_up_to", 0, i64::MAX, 1_000_000);
    let statement_timeout = s.duration_within(
        "statement_timeout",
        Duration::from_millis(100),
        Duration::from_secs(600),
        Duration::from_secs(5),
    );
    if let Some(t) = &token {
        if t.len() < 16 {
            s.issue(
                "token",
                "is shorter than 16 characters: use a long random one (e.g. openssl rand -hex 24)",
            );
        }
    }
    if actions && token.is_none() {
        s.issue(
            "actions",
            "needs a token: set [admin] token = \"${OUTBOX_ADMIN_TOKEN}\" (every action must carry it)",
        );
    }
    let listen = s.required_string("listen", "127.0.0.1:9090")?;
    let listen: std::net::SocketAddr = match listen.parse() {
        Ok(addr) => addr,
        Err(_) => {
            s.issue(
                "listen",
                format!("'{listen}' is not an address:port; use e.g. \"127.0.0.1:9090\" or \"0.0.0.0:9090\""),
            );
            return None;
        }
    };
    if dashboard && token.is_none() && !listen.ip().is_loopback() {
        s.issue(
            "token",
            format!("is required for the dashboard on {listen}, which is not a loopback address: set token = \"${{OUTBOX_ADMIN_TOKEN}}\", or listen on 127.0.0.1"),
        );
    }
    Some(AdminConfig {
        listen,
        dashboard,
        token,
        actions,
        exact_counts_up_to,
        statement_timeout,
    })
}

/// The keys of `[admin]`.
const ADMIN_KEYS: &[&str] = &[
    "listen",
    "dashboard",
    "token",
    "actions",
    "exact_counts_up_to",
    "statement_timeout",
];

fn read_database(
    t: &Table,
    url_override: Option<String>,
    issues: &mut Vec<Issue>,
) -> DatabaseConfig {
    let mut s = Section::new("database", t, DATABASE_KEYS, issues);
    let url = url_override
        .or_else(|| s.string("url"))
        .filter(|u| !u.trim().is_empty());
    let schema = s.string("schema").unwrap_or_else(|| "public".to_string());
    if schema.is_empty() || schema.len() > 63 {
        s.issue(
            "schema",
            "must be a PostgreSQL schema name of 1 to 63 characters",
        );
    }
    let owner = match s
        .choice("schema_owner", &["worker", "app"], "worker")
        .as_str()
    {
        "app" => SchemaOwner::App,
        _ => SchemaOwner::Worker,
    };
    let mut overrides = Overrides::default();
    let columns = s.string_map("columns");
    for (logical, physical) in columns {
        let known = match logical.strip_prefix("OutboxRetryPolicy.") {
            Some(p) => POLICY_REQUIRED.contains(&p) || POLICY_OPTIONAL.contains(&p),
            None => {
                EVENT_REQUIRED.contains(&logical.as_str())
                    || EVENT_OPTIONAL.contains(&logical.as_str())
                    || EVENT_RECOMMENDED.contains(&logical.as_str())
            }
        };
        if !known {
            let msg = format!(
                "'{logical}' is not a column the worker uses; keys are OutboxEvent columns ({}) or \"OutboxRetryPolicy.<column>\"",
                EVENT_REQUIRED.join(", ")
            );
            s.issue(&format!("columns.{logical}"), msg);
        }
        overrides.columns.insert(logical, physical);
    }
    for (logical, physical) in s.string_map("tables") {
        if logical != "OutboxEvent" && logical != "OutboxRetryPolicy" {
            s.issue(
                &format!("tables.{logical}"),
                "keys are OutboxEvent and OutboxRetryPolicy",
            );
        }
        overrides.tables.insert(logical, physical);
    }
    overrides.timestamp_format = s.string("timestamp_format");
    if let Some(f) = overrides
        .timestamp_format
        .as_deref()
        .filter(|f| !["unixepoch-ms", "iso8601"].contains(f))
    {
        s.issue(
            "timestamp_format",
            format!("\"{f}\" is not a timestamp format: use \"unixepoch-ms\" (integer milliseconds) or \"iso8601\" (text), as the app's SQLite client writes them"),
        );
    }
    if owner == SchemaOwner::Worker && overrides.timestamp_format.is_some() {
        s.issue(
            "timestamp_format",
            "applies to app-owned SQLite tables; set schema_owner = \"app\" or remove it",
        );
    }
    if owner == SchemaOwner::Worker
        && !(overrides.columns.is_empty() && overrides.tables.is_empty())
    {
        s.issue(
            "schema_owner",
            "[database.columns] and [database.tables] apply to app-owned tables; set schema_owner = \"app\" or remove them",
        );
    }
    let environment = s
        .string("environment")
        .unwrap_or_else(|| "development".to_string());
    let pool_size = s.int("pool_size", 2, 1000, 4) as usize;
    DatabaseConfig {
        url,
        schema,
        pool_size,
        environment,
        owner,
        overrides,
    }
}

fn read_worker(t: &Table, issues: &mut Vec<Issue>) -> WorkerOptions {
    let d = WorkerOptions::default();
    let mut s = Section::new("worker", t, WORKER_KEYS, issues);
    WorkerOptions {
        batch_size: s.int("batch_size", 1, 10_000, d.batch_size as i64) as usize,
        concurrency: s.int("concurrency", 1, 10_000, d.concurrency as i64) as usize,
        poll_interval: s.duration("poll_interval", Duration::from_millis(10), d.poll_interval),
        lease: s.duration_within("lease", Duration::from_secs(1), MAX_LEASE, d.lease),
        shutdown_timeout: s.duration("shutdown_timeout", Duration::ZERO, d.shutdown_timeout),
        on_success: match s.choice("on_success", &["mark", "delete"], "mark").as_str() {
            "delete" => OnSuccess::Delete,
            _ => OnSuccess::Mark,
        },
        policy_refresh: s.duration(
            "policy_refresh",
            Duration::from_millis(100),
            d.policy_refresh,
        ),
        worker_id: s.string("worker_id"),
        retention: Retention::default(),
        claim_observer: None,
        breakers: Default::default(),
        metrics: None,
    }
}

fn read_retention(t: &Table, issues: &mut Vec<Issue>) -> Retention {
    let d = Retention::default();
    let mut s = Section::new("retention", t, RETENTION_KEYS, issues);
    Retention {
        sent: s.optional_duration("sent", Duration::from_secs(1)),
        failed: s.optional_duration("failed", Duration::from_secs(1)),
        interval: s.duration("interval", Duration::from_secs(1), d.interval),
        batch_size: s.int("batch_size", 1, 100_000, d.batch_size as i64) as usize,
    }
}

fn normalise(segment: &str) -> String {
    segment
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == '-' || c == '.' { '_' } else { c })
        .collect()
}

/// `OUTBOX_SECTION__KEY=value` (nested with `__`) sets `[section] key`. Each segment
/// matches an existing key case-insensitively, with `-` and `.` read as `_`; otherwise it
/// becomes a new lower-case key. Returns dotted key → variable name.
fn apply_env_overrides(
    root: &mut Table,
    env: &Env,
    issues: &mut Vec<Issue>,
) -> BTreeMap<String, String> {
    let mut set = BTreeMap::new();
    let mut vars: Vec<(&String, &String)> = env
        .vars
        .iter()
        .filter(|(k, _)| k.starts_with("OUTBOX_") && k.contains("__"))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let segments: Vec<&str> = name["OUTBOX_".len()..].split("__").collect();
        if segments.iter().any(|s| s.is_empty()) {
            issues.push(Issue {
                key: name.clone(),
                message: "malformed variable name; use OUTBOX_SECTION__KEY, e.g. OUTBOX_WORKER__BATCH_SIZE".into(),
            });
            continue;
        }
        let mut table = &mut *root;
        let mut path = Vec::new();
        let mut ok = true;
        for (i, seg) in segments.iter().enumerate() {
            let wanted = normalise(seg);
            let key = table
                .keys()
                .find(|k| normalise(k) == wanted)
                .cloned()
                .unwrap_or(wanted);
            path.push(key.clone());
            if i + 1 == segments.len() {
                table.insert(key, Value::String(value.clone()));
            } else {
                let entry = table
                    .entry(key)
                    .or_insert_with(|| Value::Table(Table::new()));
                match entry {
                    Value::Table(t) => table = t,
                    _ => {
                        issues.push(Issue {
                            key: path.join("."),
                            message: format!(
                                "{name} treats this key as a table, but it is a value"
                            ),
                        });
                        ok = false;
                        break;
                    }
                }
            }
        }
        if ok {
            set.insert(path.join("."), name.clone());
        }
    }
    set
}

/// Why `text` is not TOML, by line and column, without quoting the line: a config file
/// holds secrets, and `--config` may point at a file that is not a config at all.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let place = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!(" at line {line}, column {column}")
        }
        None => String::new(),
    };
    format!(
        "not valid TOML{place}: {} (the line is not shown: it may hold a secret)",
        e.message().trim_end().replace('\n', " ")
    )
}

/// Replaces `${VAR}` (and `${VAR:-default}`) in every string; `$$` is a literal `$`.
fn expand_vars(table: &mut Table, prefix: &str, env: &Env, issues: &mut Vec<Issue>) {
    for (k, v) in table.iter_mut() {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        expand_value(v, &path, env, issues);
    }
}

fn expand_value(v: &mut Value, path: &str, env: &Env, issues: &mut Vec<Issue>) {
    match v {
        Value::String(s) => match expand_str(s, env) {
            Ok(out) => *s = out,
            Err(msg) => issues.push(Issue {
                key: path.to_string(),
                message: msg,
            }),
        },
        Value::Table(t) => expand_vars(t, path, env, issues),
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{path}[{i}]"), env, issues);
            }
        }
        _ => {}
    }
}

/// Expands one string.
pub fn expand_str(s: &str, env: &Env) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                "has a '${' without its '}' (the value is not shown: it may hold a secret); write ${NAME}, or $$ for a literal $".to_string()
            })?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            match (env.get(name), default) {
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (used as ${{{name}}}); set it, put it in an --env-file, or write ${{{name}:-default}}"
                    ))
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
