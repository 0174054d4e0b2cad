//! (11) Graphile Worker, the Node job queue on PostgreSQL, draining no-op jobs on the same
//! database and machine: a baseline of what a tuned queue in another runtime does. Its
//! pinned version is installed with npm into a cache folder the first time; without Node
//! the measurement is skipped.

use crate::db::BenchDb;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// The version measured.
pub const VERSION: &str = "0.17.3";

const RUNNER: &str = include_str!("../graphile/runner.js");

/// Where the pinned Graphile Worker is installed.
fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("outbox-bench")
        .join(format!("graphile-worker-{VERSION}"))
}

fn command_ok(program: &str, arg: &str) -> bool {
    std::process::Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Jobs per second: `jobs` no-op jobs enqueued, then drained by one Graphile Worker process
/// (concurrentJobs 24, maxPoolSize 25, localQueue 500, completeJobBatchDelay 0).
pub async fn run(db: &BenchDb, jobs: u64) -> Result<f64> {
    if !command_ok("node", "--version") {
        bail!("node not found");
    }
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if !dir
        .join("node_modules/graphile-worker/package.json")
        .is_file()
    {
        if !command_ok("npm", "--version") {
            bail!("npm not found (needed once, to install graphile-worker {VERSION})");
        }
        eprintln!(
            "    installing graphile-worker {VERSION} into {} ...",
            dir.display()
        );
        let dir2 = dir.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                .arg(format!("graphile-worker@{VERSION}"))
                .arg("pg")
                .current_dir(&dir2)
                .output()
        })
        .await??;
        if !out.status.success() {
            bail!(
                "npm install graphile-worker@{VERSION} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let runner = dir.join("runner.js");
    std::fs::write(&runner, RUNNER)?;
    let url = db.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(&runner)
            .arg(&url)
            .arg(jobs.to_string())
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the Graphile Worker runner failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("rate ")?.trim().parse::<f64>().ok())
        .with_context(|| format!("no rate in the runner's output: {stdout}"))
}
