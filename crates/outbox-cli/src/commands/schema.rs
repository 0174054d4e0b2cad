//! `outbox schema print`.

use super::StoreKind;
use crate::{Failure, SchemaFormat};

/// Prints the schema of the configured store's kind.
pub fn print(format: SchemaFormat, schema: &str, kind: StoreKind) -> Result<u8, Failure> {
    match (format, kind) {
        (SchemaFormat::Sql, StoreKind::Postgres) => {
            print!("{}", outbox_store::postgres::print::sql(schema))
        }
        (SchemaFormat::Prisma, StoreKind::Postgres) => {
            print!("{}", outbox_store::postgres::print::prisma())
        }
        (SchemaFormat::Sql, StoreKind::Sqlite) => {
            print!("{}", outbox_store::sqlite::migrate::sql())
        }
        (SchemaFormat::Prisma, StoreKind::Sqlite) => {
            print!("{}", outbox_store::sqlite::print::prisma())
        }
        (SchemaFormat::Sql, StoreKind::Mysql) => print!("{}", outbox_store::mysql::migrate::sql()),
        (SchemaFormat::Prisma, StoreKind::Mysql) => {
            print!("{}", outbox_store::mysql::print::prisma())
        }
    }
    Ok(0)
}
