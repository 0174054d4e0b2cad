//! `outbox schema print`.

use crate::{Failure, SchemaFormat};

/// Prints the schema of the configured store (`sqlite`: SQLite's, else PostgreSQL's).
pub fn print(format: SchemaFormat, schema: &str, sqlite: bool) -> Result<u8, Failure> {
    match (format, sqlite) {
        (SchemaFormat::Sql, false) => print!("{}", outbox_store::postgres::print::sql(schema)),
        (SchemaFormat::Prisma, false) => print!("{}", outbox_store::postgres::print::prisma()),
        (SchemaFormat::Sql, true) => print!("{}", outbox_store::sqlite::migrate::sql()),
        (SchemaFormat::Prisma, true) => print!("{}", outbox_store::sqlite::print::prisma()),
    }
    Ok(0)
}
