//! What every store's migrations share: the embedded, checksummed scripts, their history
//! rows, and where each migration stands against a history.

use chrono::{DateTime, Utc};
use outbox_core::{MigrationReport, MigrationState};
use sha2::{Digest, Sha256};

/// The history table's name (every store's, never Prisma's).
pub const HISTORY_TABLE: &str = "_outbox_migrations";

/// One migration shipped in the binary.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Ordering number, from the file name.
    pub version: i64,
    /// Description, from the file name.
    pub name: &'static str,
    /// The SQL script.
    pub sql: &'static str,
}

impl Migration {
    /// SHA-256 of the script with line endings normalised to LF, as hex.
    pub fn checksum(&self) -> String {
        let normalised = self.sql.replace("\r\n", "\n");
        let digest = Sha256::digest(normalised.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The tables as SQL: `header`, then every migration, in order (`outbox schema print`).
pub fn script(header: &str, migrations: &[Migration]) -> String {
    let mut out = format!("{header}\n");
    for m in migrations {
        out.push_str(&format!("\n-- {:04}_{}\n", m.version, m.name));
        out.push_str(m.sql.trim_end());
        out.push('\n');
    }
    out
}

/// One row of the history table.
pub(crate) struct HistoryRow {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    pub applied_at: DateTime<Utc>,
    pub success: bool,
}

/// Each known migration's state against the history, then the unknown ones.
pub(crate) fn states(migrations: &[Migration], history: &[HistoryRow]) -> Vec<MigrationReport> {
    let mut reports = Vec::new();
    for m in migrations {
        let state = match history.iter().find(|h| h.version == m.version) {
            None => MigrationState::Pending,
            Some(h) if !h.success => MigrationState::Dirty,
            Some(h) if h.checksum == m.checksum() => MigrationState::Applied { at: h.applied_at },
            Some(h) => MigrationState::Modified {
                applied: h.checksum.clone(),
                embedded: m.checksum(),
            },
        };
        reports.push(MigrationReport {
            version: m.version,
            name: m.name.to_string(),
            state,
        });
    }
    for h in history {
        if !migrations.iter().any(|m| m.version == h.version) {
            reports.push(MigrationReport {
                version: h.version,
                name: h.name.clone(),
                state: if h.success {
                    MigrationState::Unknown
                } else {
                    MigrationState::Dirty
                },
            });
        }
    }
    reports.sort_by_key(|r| r.version);
    reports
}
