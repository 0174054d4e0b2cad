//! One module per subcommand; shared helpers here.

pub mod doctor;
pub mod migrate;
pub mod purge;
pub mod run;
pub mod schema;

use crate::config::{Config, SchemaOwner};
use crate::{Failure, EXIT_CONFIG};
use outbox_store::{PgStore, PgStoreOptions};
use std::time::Duration;

/// Where the configuration came from, for messages.
pub fn origin(config: &Config) -> String {
    match &config.file {
        Some(p) => p.display().to_string(),
        None => "no config file".to_string(),
    }
}

/// The store for the configured database (no connection yet).
pub fn open_store(config: &Config) -> Result<PgStore, Failure> {
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
