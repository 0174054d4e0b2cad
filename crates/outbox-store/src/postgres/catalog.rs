//! Reading what a schema really contains: tables, columns, constraints, indexes, triggers,
//! functions and enum types. Definitions are read with the schema on the search path, so
//! they come back unqualified and two schemas built by the same SQL compare equal.

use super::{classify, quote_ident};
use outbox_core::StoreError;
use std::collections::BTreeMap;

/// One column as PostgreSQL describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Physical name.
    pub name: String,
    /// `format_type` spelling, e.g. `timestamp(3) with time zone`.
    pub sql_type: String,
    /// Whether the type is an enum.
    pub is_enum: bool,
    /// NOT NULL.
    pub not_null: bool,
    /// Default expression, if any.
    pub default: Option<String>,
}

/// One table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Columns in attribute order.
    pub columns: Vec<Column>,
    /// Constraint name → definition.
    pub constraints: BTreeMap<String, String>,
    /// Index name → definition.
    pub indexes: BTreeMap<String, String>,
    /// Trigger name → definition.
    pub triggers: BTreeMap<String, String>,
}

impl Table {
    /// A column by exact name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Everything in one schema that the outbox cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Table name → table.
    pub tables: BTreeMap<String, Table>,
    /// Function name → definition (only functions named `outbox_*`).
    pub functions: BTreeMap<String, String>,
    /// Enum type name → labels in order.
    pub enums: BTreeMap<String, Vec<String>>,
}

/// Reads `schema`. Must run inside a transaction (it sets the search path locally).
pub async fn read(
    client: &tokio_postgres::Transaction<'_>,
    schema: &str,
) -> Result<Catalog, StoreError> {
    client
        .batch_execute(&format!("SET LOCAL search_path TO {}", quote_ident(schema)))
        .await
        .map_err(classify)?;
    let mut cat = Catalog::default();
    let rows = client
        .query(
            r#"SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), t.typtype = 'e',
                      a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
                 FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 JOIN pg_type t ON t.oid = a.atttypid
                 LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
                WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
                ORDER BY c.relname, a.attnum"#,
            &[&schema],
        )
        .await
        .map_err(classify)?;
    for r in rows {
        let table: String = r.get(0);
        cat.tables.entry(table).or_default().columns.push(Column {
            name: r.get(1),
            sql_type: r.get(2),
            is_enum: r.get(3),
            not_null: r.get(4),
            default: r.get(5),
        });
    }
    // (table, name, definition) of constraints, indexes and triggers.
    let per_table = [
        r#"SELECT c.relname, k.conname, pg_get_constraintdef(k.oid)
             FROM pg_constraint k
             JOIN pg_class c ON c.oid = k.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1"#,
        r#"SELECT c.relname, i.relname, pg_get_indexdef(i.oid)
             FROM pg_index x
             JOIN pg_class c ON c.oid = x.indrelid
             JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1"#,
        r#"SELECT c.relname, g.tgname, pg_get_triggerdef(g.oid)
             FROM pg_trigger g
             JOIN pg_class c ON c.oid = g.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND NOT g.tgisinternal"#,
    ];
    for (kind, sql) in per_table.iter().enumerate() {
        let rows = client.query(*sql, &[&schema]).await.map_err(classify)?;
        for r in rows {
            if let Some(t) = cat.tables.get_mut(&r.get::<_, String>(0)) {
                let defs = match kind {
                    0 => &mut t.constraints,
                    1 => &mut t.indexes,
                    _ => &mut t.triggers,
                };
                defs.insert(r.get(1), r.get(2));
            }
        }
    }
    let rows = client
        .query(
            r#"SELECT p.proname, pg_get_functiondef(p.oid)
                 FROM pg_proc p
                 JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = $1 AND p.proname LIKE 'outbox\_%'"#,
            &[&schema],
        )
        .await
        .map_err(classify)?;
    for r in rows {
        cat.functions.insert(r.get(0), r.get(1));
    }
    let rows = client
        .query(
            r#"SELECT t.typname, e.enumlabel
                 FROM pg_type t
                 JOIN pg_namespace n ON n.oid = t.typnamespace
                 JOIN pg_enum e ON e.enumtypid = t.oid
                WHERE n.nspname = $1
                ORDER BY t.typname, e.enumsortorder"#,
            &[&schema],
        )
        .await
        .map_err(classify)?;
    for r in rows {
        cat.enums.entry(r.get(0)).or_default().push(r.get(1));
    }
    Ok(normalise(&cat, schema))
}

/// Definitions with the schema's own qualifier removed, so catalogs of two schemas compare.
fn strip_schema(text: &str, schema: &str) -> String {
    text.replace(&format!("{}.", quote_ident(schema)), "")
        .replace(&format!("{schema}."), "")
}

fn normalise(cat: &Catalog, schema: &str) -> Catalog {
    let fix = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .map(|(k, v)| (k.clone(), strip_schema(v, schema)))
            .collect()
    };
    Catalog {
        tables: cat
            .tables
            .iter()
            .map(|(name, t)| {
                let table = Table {
                    columns: t
                        .columns
                        .iter()
                        .map(|c| Column {
                            sql_type: strip_schema(&c.sql_type, schema),
                            default: c.default.as_ref().map(|d| strip_schema(d, schema)),
                            ..c.clone()
                        })
                        .collect(),
                    constraints: fix(&t.constraints),
                    indexes: fix(&t.indexes),
                    triggers: fix(&t.triggers),
                };
                (name.clone(), table)
            })
            .collect(),
        functions: fix(&cat.functions),
        enums: cat.enums.clone(),
    }
}
