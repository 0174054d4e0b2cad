//! Live drift: the tables, columns, types, defaults, constraints, indexes, triggers and
//! functions in the database compared with what the applied migrations produce. The
//! expected side is built for real — the migrations run in a scratch schema inside a
//! transaction that is rolled back — so there is no hand-kept description to go stale.

use super::catalog::{self, Catalog, Column};
use super::migrate::MIGRATIONS;
use super::{classify, quote_ident, PgStore};
use outbox_core::StoreError;
use std::collections::BTreeMap;

/// Object name → definition.
type Defs = BTreeMap<String, String>;

pub use outbox_core::operate::Drift;

fn column_ddl(c: &Column) -> String {
    let mut s = format!("{} {}", quote_ident(&c.name), c.sql_type);
    if c.not_null {
        s.push_str(" NOT NULL");
    }
    if let Some(d) = &c.default {
        s.push_str(&format!(" DEFAULT {d}"));
    }
    s
}

/// Differences of `live` from `expected`.
pub fn compare(exp: &Catalog, got: &Catalog) -> Vec<Drift> {
    let mut out = Vec::new();
    let mut push = |object: String, problem: String, fix: String| {
        out.push(Drift {
            object,
            problem,
            fix,
        })
    };
    for (name, want) in &exp.tables {
        let t = quote_ident(name);
        let Some(have) = got.tables.get(name) else {
            push(
                format!("table {t}"),
                "is missing".into(),
                "run `outbox migrate reset --force` (development), or restore it from a backup"
                    .into(),
            );
            continue;
        };
        for c in &want.columns {
            let col = quote_ident(&c.name);
            let object = format!("column {t}.{col}");
            let Some(h) = have.column(&c.name) else {
                push(
                    object,
                    "is missing".into(),
                    format!("ALTER TABLE {t} ADD COLUMN {};", column_ddl(c)),
                );
                continue;
            };
            if h.sql_type != c.sql_type {
                push(
                    object.clone(),
                    format!(
                        "has type {}, the migrations give {}",
                        h.sql_type, c.sql_type
                    ),
                    format!("ALTER TABLE {t} ALTER COLUMN {col} TYPE {};", c.sql_type),
                );
            }
            if h.not_null != c.not_null {
                let (problem, fix) = if c.not_null {
                    (
                        "allows NULL, the migrations make it NOT NULL",
                        "SET NOT NULL",
                    )
                } else {
                    ("is NOT NULL, the migrations allow NULL", "DROP NOT NULL")
                };
                push(
                    object.clone(),
                    problem.into(),
                    format!("ALTER TABLE {t} ALTER COLUMN {col} {fix};"),
                );
            }
            if h.default != c.default {
                let fix = match &c.default {
                    Some(d) => format!("ALTER TABLE {t} ALTER COLUMN {col} SET DEFAULT {d};"),
                    None => format!("ALTER TABLE {t} ALTER COLUMN {col} DROP DEFAULT;"),
                };
                push(
                    object,
                    format!(
                        "has default {}, the migrations give {}",
                        h.default.as_deref().unwrap_or("none"),
                        c.default.as_deref().unwrap_or("none")
                    ),
                    fix,
                );
            }
        }
        for h in &have.columns {
            if want.column(&h.name).is_none() {
                let col = quote_ident(&h.name);
                push(
                    format!("column {t}.{col}"),
                    "is not in the migrations (added by hand?)".into(),
                    format!("ALTER TABLE {t} DROP COLUMN {col};"),
                );
            }
        }
        let kinds: [(&str, &Defs, &Defs); 3] = [
            ("constraint", &want.constraints, &have.constraints),
            ("index", &want.indexes, &have.indexes),
            ("trigger", &want.triggers, &have.triggers),
        ];
        for (kind, wanted, had) in kinds {
            let drop = |n: &str| match kind {
                "constraint" => format!("ALTER TABLE {t} DROP CONSTRAINT {};", quote_ident(n)),
                "index" => format!("DROP INDEX {};", quote_ident(n)),
                _ => format!("DROP TRIGGER {} ON {t};", quote_ident(n)),
            };
            let create = |n: &str, def: &str| match kind {
                "constraint" => format!("ALTER TABLE {t} ADD CONSTRAINT {} {def};", quote_ident(n)),
                _ => format!("{def};"),
            };
            for (n, def) in wanted {
                let object = format!("{kind} {} on {t}", quote_ident(n));
                match had.get(n) {
                    None => push(object, "is missing".into(), create(n, def)),
                    Some(h) if h != def => push(
                        object,
                        format!("is `{h}`, the migrations give `{def}`"),
                        format!("{} {}", drop(n), create(n, def)),
                    ),
                    Some(_) => {}
                }
            }
            for n in had.keys() {
                if !wanted.contains_key(n) {
                    push(
                        format!("{kind} {} on {t}", quote_ident(n)),
                        "is not in the migrations (added by hand?)".into(),
                        drop(n),
                    );
                }
            }
        }
    }
    for (name, def) in &exp.functions {
        let object = format!("function {}()", quote_ident(name));
        match got.functions.get(name) {
            None => push(object, "is missing".into(), format!("{};", def.trim_end())),
            Some(h) if h != def => push(
                object,
                "differs from the migrations".into(),
                format!("{};", def.trim_end()),
            ),
            Some(_) => {}
        }
    }
    out
}

impl PgStore {
    /// What the migrations with these versions produce, read from a scratch schema that is
    /// rolled back.
    pub async fn expected_catalog(&self, versions: &[i64]) -> Result<Catalog, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        let scratch = format!("_outbox_expected_{:016x}", rand_suffix());
        tx.batch_execute(&format!(
            "SET LOCAL client_min_messages = warning; CREATE SCHEMA {s}; SET LOCAL search_path TO {s};",
            s = quote_ident(&scratch)
        ))
        .await
        .map_err(classify)?;
        for m in MIGRATIONS.iter().filter(|m| versions.contains(&m.version)) {
            tx.batch_execute(m.sql).await.map_err(classify)?;
        }
        let cat = catalog::read(&tx, &scratch).await?;
        tx.rollback().await.map_err(classify)?;
        Ok(cat)
    }

    /// What the configured schema holds now.
    pub async fn live_catalog(&self) -> Result<Catalog, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        let cat = catalog::read(&tx, &self.schema).await?;
        tx.rollback().await.map_err(classify)?;
        Ok(cat)
    }

    /// Differences between the live schema and what the applied migrations `versions` give.
    pub async fn drift(&self, versions: &[i64]) -> Result<Vec<Drift>, StoreError> {
        if versions.is_empty() {
            return Ok(Vec::new());
        }
        let expected = self.expected_catalog(versions).await?;
        let live = self.live_catalog().await?;
        Ok(compare(&expected, &live))
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}
