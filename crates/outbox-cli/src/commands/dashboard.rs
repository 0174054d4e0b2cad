//! `outbox dashboard`: the dashboard alone, for looking at an outbox without running a
//! worker. Token, actions and timeouts come from `[admin]`; the address from `--listen`,
//! else 127.0.0.1:9091 (beside a worker's admin listener on 9090, with the same config).

use super::{admin, open_dashboard_store, origin};
use crate::config::Config;
use crate::{Failure, EXIT_CONFIG, EXIT_FAILURE};
use std::net::SocketAddr;
use std::time::Duration;

pub async fn dashboard(config: Config, listen: Option<String>) -> Result<u8, Failure> {
    let invalid = |what: String| {
        Failure::new(
            EXIT_CONFIG,
            format!("invalid configuration ({}): {what}", origin(&config)),
        )
    };
    let admin_config = config.admin.clone();
    let addr: SocketAddr = match listen {
        Some(l) => l.parse().map_err(|_| {
            invalid(format!(
                "--listen '{l}' is not an address:port; use e.g. 127.0.0.1:9090"
            ))
        })?,
        None => ([127, 0, 0, 1], 9091).into(),
    };
    let options = match &admin_config {
        Some(a) => a.dashboard_options(&config.routes),
        None => outbox_web::Options {
            routes: config.routes.clone(),
            ..outbox_web::Options::default()
        },
    };
    if options.token.is_none() && !addr.ip().is_loopback() {
        return Err(invalid(format!(
            "admin.token: is required for the dashboard on {addr}, which is not a loopback address: set [admin] token = \"${{OUTBOX_ADMIN_TOKEN}}\", or listen on 127.0.0.1"
        )));
    }
    let timeout = admin_config
        .as_ref()
        .map_or(Duration::from_secs(5), |a| a.statement_timeout);
    let store = open_dashboard_store(&config, timeout).await?;
    store
        .ping()
        .await
        .map_err(|e| Failure::new(EXIT_FAILURE, format!("cannot reach the database: {e}")))?;
    let actions = options.actions;
    let router = outbox_web::Dashboard::new(store.clone(), None, options).router();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::new(EXIT_FAILURE, format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        store = %store.location(),
        actions,
        "Dashboard at http://{bound}/ (no worker runs here: the charts show counts only)"
    );
    tokio::select! {
        _ = admin::serve(listener, router) => {}
        name = super::run::wait_for_signal() => {
            tracing::info!(signal = name, "Dashboard stopped");
        }
    }
    Ok(0)
}
