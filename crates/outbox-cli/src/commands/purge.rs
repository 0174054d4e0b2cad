//! `outbox purge --status S --older-than D`: deletes old finished rows by hand, in small
//! batches, with a progress bar.

use super::open_store;
use crate::config::{Config, SchemaOwner};
use crate::{Failure, PurgeStatus, EXIT_CONFIG, EXIT_FAILURE};
use indicatif::{ProgressBar, ProgressStyle};
use outbox_core::conf::{format_duration, parse_duration};
use outbox_core::{Status, Store};

pub async fn purge(
    config: &Config,
    status: PurgeStatus,
    older_than: &str,
    batch_size: usize,
) -> Result<u8, Failure> {
    let age = parse_duration(older_than)
        .map_err(|e| Failure::new(EXIT_CONFIG, format!("--older-than: {e}")))?;
    let status = match status {
        PurgeStatus::Sent => Status::Sent,
        PurgeStatus::Failed => Status::Failed,
    };
    let mut store = open_store(config)?;
    if config.database.owner == SchemaOwner::App {
        let res = store
            .adopt_app_tables(&config.database.overrides)
            .await
            .map_err(|e| {
                Failure::new(EXIT_FAILURE, format!("cannot read the app's tables: {e}"))
            })?;
        if res.layout.is_none() {
            return Err(Failure::new(
                EXIT_FAILURE,
                "the app-owned tables cannot be used; run `outbox doctor` for the fixes",
            ));
        }
    }
    let fail =
        |e: outbox_core::StoreError| Failure::new(EXIT_FAILURE, format!("purge failed: {e}"));
    let total = store.purgeable(status, age).await.map_err(fail)?;
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows deleted ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut deleted: u64 = 0;
    let mut last_report = std::time::Instant::now();
    loop {
        let n = store.purge(status, age, batch_size).await.map_err(fail)?;
        deleted += n;
        bar.inc(n);
        if bar.is_hidden() && last_report.elapsed().as_secs() >= 5 {
            eprintln!("purge: {deleted}/{total} rows deleted");
            last_report = std::time::Instant::now();
        }
        if (n as usize) < batch_size {
            break;
        }
    }
    bar.finish_and_clear();
    println!(
        "Deleted {deleted} {status} row(s) older than {} from schema \"{}\".",
        format_duration(age),
        store.schema()
    );
    Ok(0)
}
