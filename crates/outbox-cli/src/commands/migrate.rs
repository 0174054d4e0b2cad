//! `outbox migrate deploy|status|reset`.

use super::{open_backend, origin, require_worker_owned};
use crate::config::Config;
use crate::{Failure, Format, EXIT_CONFIG, EXIT_FAILURE};
use outbox_store::{MigrationState, ProblemKind, SchemaStatus};
use serde_json::json;

/// `migrate status` exit code per kind of problem (the most serious one present wins).
pub fn exit_code(kind: ProblemKind) -> u8 {
    match kind {
        ProblemKind::Pending => 10,
        ProblemKind::Modified => 11,
        ProblemKind::Unknown => 12,
        ProblemKind::Dirty => 13,
        ProblemKind::Drift => 14,
    }
}

fn kind_name(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::Pending => "pending",
        ProblemKind::Modified => "modified",
        ProblemKind::Unknown => "unknown",
        ProblemKind::Dirty => "dirty",
        ProblemKind::Drift => "drift",
    }
}

fn state_name(state: &MigrationState) -> &'static str {
    match state {
        MigrationState::Applied { .. } => "applied",
        MigrationState::Pending => "pending",
        MigrationState::Modified { .. } => "modified",
        MigrationState::Unknown => "unknown",
        MigrationState::Dirty => "dirty",
    }
}

/// A line telling how to run the fixes in a non-default schema.
pub fn search_path_note(schema: &str) -> Option<String> {
    (schema != "public").then(|| {
        format!(
            "(run SQL fixes after: SET search_path TO \"{}\";)",
            schema.replace('"', "\"\"")
        )
    })
}

pub async fn deploy(config: &Config) -> Result<u8, Failure> {
    require_worker_owned(config, "migrate deploy")?;
    let store = open_backend(config)?;
    let applied = store
        .deploy()
        .await
        .map_err(|e| Failure::new(EXIT_FAILURE, format!("migrate deploy failed: {e}")))?;
    if applied.is_empty() {
        println!(
            "Already up to date: no pending migrations in {}.",
            store.location()
        );
    } else {
        for m in &applied {
            println!("Applied {:04} {}", m.version, m.name);
        }
        println!(
            "{} migration(s) applied to {}.",
            applied.len(),
            store.location()
        );
    }
    Ok(0)
}

fn render_text(st: &SchemaStatus) {
    println!("Migrations in schema \"{}\":", st.schema);
    for m in &st.migrations {
        let state = match &m.state {
            MigrationState::Applied { at } => {
                format!("applied {}", at.format("%Y-%m-%d %H:%M:%S UTC"))
            }
            other => state_name(other).to_string(),
        };
        println!("  {:04} {:<24} {state}", m.version, m.name);
    }
    let problems = st.problems();
    for p in &problems {
        println!("✘ {}", p.what);
        println!("    fix: {}", p.fix);
    }
    if problems.iter().any(|p| p.kind == ProblemKind::Drift) {
        if let Some(note) = search_path_note(&st.schema) {
            println!("{note}");
        }
        println!("(in development, `outbox migrate reset --force` rebuilds the tables; it deletes their rows)");
    }
    if problems.is_empty() {
        println!("Up to date, no drift.");
    }
}

fn render_json(st: &SchemaStatus) -> serde_json::Value {
    let migrations: Vec<_> = st
        .migrations
        .iter()
        .map(|m| {
            let mut v =
                json!({"version": m.version, "name": m.name, "state": state_name(&m.state)});
            if let MigrationState::Applied { at } = &m.state {
                v["appliedAt"] = json!(at.to_rfc3339());
            }
            v
        })
        .collect();
    let problems: Vec<_> = st
        .problems()
        .iter()
        .map(|p| json!({"kind": kind_name(p.kind), "what": p.what, "fix": p.fix}))
        .collect();
    json!({
        "schema": st.schema,
        "clean": problems.is_empty(),
        "exitCode": st.worst().map(exit_code).unwrap_or(0),
        "migrations": migrations,
        "problems": problems,
    })
}

pub async fn status(config: &Config, format: Format) -> Result<u8, Failure> {
    require_worker_owned(config, "migrate status")?;
    let store = open_backend(config)?;
    let st = store
        .schema_status()
        .await
        .map_err(|e| Failure::new(EXIT_FAILURE, format!("migrate status failed: {e}")))?;
    match format {
        Format::Text => render_text(&st),
        Format::Json => println!("{}", render_json(&st)),
    }
    Ok(st.worst().map(exit_code).unwrap_or(0))
}

pub async fn reset(config: &Config, force: bool) -> Result<u8, Failure> {
    require_worker_owned(config, "migrate reset")?;
    if config
        .database
        .environment
        .eq_ignore_ascii_case("production")
    {
        return Err(Failure::new(
            EXIT_FAILURE,
            format!(
                "migrate reset refuses to run: database.environment is \"production\" ({}); it would delete every outbox row",
                origin(config)
            ),
        ));
    }
    let store = open_backend(config)?;
    if !force {
        let plan = store
            .reset_plan()
            .await
            .map_err(|e| Failure::new(EXIT_FAILURE, format!("migrate reset failed: {e}")))?;
        println!(
            "migrate reset would run, in {} (deleting every outbox row):",
            store.location()
        );
        for stmt in &plan {
            println!("  {stmt};");
        }
        if plan.is_empty() {
            println!("  (nothing to drop)");
        }
        println!("and then apply every migration. Nothing was changed; add --force to do it.");
        return Ok(EXIT_CONFIG);
    }
    let (plan, applied) = store
        .reset()
        .await
        .map_err(|e| Failure::new(EXIT_FAILURE, format!("migrate reset failed: {e}")))?;
    for stmt in &plan {
        println!("{stmt};");
    }
    for m in &applied {
        println!("Applied {:04} {}", m.version, m.name);
    }
    println!(
        "Reset {}: dropped {} object(s), applied {} migration(s).",
        store.location(),
        plan.len(),
        applied.len()
    );
    Ok(0)
}
