//! (5) Peak RSS of a worker process — this program re-executed as `--worker-child`, running
//! the real engine with a sink that accepts at once — with an empty table and while draining
//! a large backlog.

use crate::db::{connect, BenchDb};
use anyhow::{Context, Result};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn spawn_worker(url: &str) -> Result<Child> {
    Command::new(std::env::current_exe()?)
        .args([
            "--relay-sslmode",
            crate::relay::sslmode(),
            "--worker-child",
            url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn the worker child")
}

fn stop(mut child: Child) -> Result<()> {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    Ok(())
}

/// (peak RSS MiB with an empty table, peak RSS MiB draining `events`, drain events/s).
pub async fn run(db: &BenchDb, events: u64) -> Result<(f64, f64, f64)> {
    db.fill(0).await?;
    let child = spawn_worker(&db.url)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = status_kib(child.id(), "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    stop(child)?;

    db.fill(events).await?;
    let c = connect(&db.url).await?;
    let child = spawn_worker(&db.url)?;
    let started = Instant::now();
    let mut last_log = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let left = db.unfinished(&c).await?;
        if left == 0 {
            break;
        }
        if last_log.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "  memory: {left} events left, RSS {} MiB",
                status_kib(child.id(), "VmRSS:").unwrap_or(0) / 1024
            );
            last_log = Instant::now();
        }
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    let peak = status_kib(child.id(), "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    stop(child)?;
    Ok((idle, peak, rate))
}
