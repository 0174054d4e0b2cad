//! `outbox purge --status S --older-than D`: deletes old finished rows by hand, in small
//! batches, with a progress bar.

use super::{query_store, Progress};
use crate::config::Config;
use crate::{Failure, PurgeStatus, EXIT_CONFIG, EXIT_FAILURE};
use outbox_core::conf::{format_duration, parse_duration};
use outbox_core::Status;

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
    let store = query_store(config).await?;
    let fail =
        |e: outbox_core::StoreError| Failure::new(EXIT_FAILURE, format!("purge failed: {e}"));
    let total = store.purgeable(status, age).await.map_err(fail)?;
    let mut progress = Progress::new(total, "rows deleted");
    let mut deleted: u64 = 0;
    loop {
        let n = store.purge(status, age, batch_size).await.map_err(fail)?;
        deleted += n;
        progress.add(n);
        if (n as usize) < batch_size {
            break;
        }
    }
    progress.finish();
    println!(
        "Deleted {deleted} {status} row(s) older than {} from {}.",
        format_duration(age),
        store.location()
    );
    Ok(0)
}
