//! Retention: deletes SENT (and, on its own setting, FAILED) rows older than their
//! configured age, in small batches with pauses, so no statement holds many locks or runs
//! long next to the claims.

use crate::backoff::Backoff;
use outbox_core::{Status, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long finished rows are kept (the `[retention]` section).
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// Age after which SENT rows are deleted; `None` keeps them.
    pub sent: Option<Duration>,
    /// Age after which FAILED rows are deleted; `None` keeps them.
    pub failed: Option<Duration>,
    /// How often to look.
    pub interval: Duration,
    /// Rows per delete statement.
    pub batch_size: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            sent: None,
            failed: None,
            interval: Duration::from_secs(60),
            batch_size: 1000,
        }
    }
}

impl Retention {
    fn targets(&self) -> Vec<(Status, Duration)> {
        [(Status::Sent, self.sent), (Status::Failed, self.failed)]
            .into_iter()
            .filter_map(|(s, age)| age.map(|a| (s, a)))
            .collect()
    }
}

pub(crate) async fn run(store: Arc<dyn Store>, retention: Retention, cancel: CancellationToken) {
    let targets = retention.targets();
    if targets.is_empty() {
        return;
    }
    let mut backoff = Backoff::database();
    loop {
        let wait = if backoff.failures() > 0 {
            backoff.next_delay().max(retention.interval)
        } else {
            retention.interval
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        for (status, age) in &targets {
            let mut total = 0;
            loop {
                if cancel.is_cancelled() {
                    return;
                }
                match store.purge(*status, *age, retention.batch_size).await {
                    Ok(n) => {
                        backoff.reset();
                        total += n;
                        if (n as usize) < retention.batch_size {
                            break;
                        }
                        // Leave room for claims between batches.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, status = %status, "Retention could not delete old rows");
                        backoff.next_delay();
                        break;
                    }
                }
            }
            if total > 0 {
                tracing::info!(status = %status, deleted = total, "Retention deleted old rows");
            }
        }
    }
}
