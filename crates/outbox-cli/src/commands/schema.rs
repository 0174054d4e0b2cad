//! `outbox schema print`.

use crate::SchemaFormat;

/// Prints the schema; always succeeds.
pub fn print(format: SchemaFormat, schema: &str) -> u8 {
    match format {
        SchemaFormat::Sql => print!("{}", outbox_store::postgres::print::sql(schema)),
        SchemaFormat::Prisma => print!("{}", outbox_store::postgres::print::prisma()),
    }
    0
}
