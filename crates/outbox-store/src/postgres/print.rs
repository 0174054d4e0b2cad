//! `outbox schema print`: our schema as SQL (the migrations) and as a Prisma model that an
//! app owning the tables can paste in, and that the worker then accepts with no warnings.

use super::migrate::MIGRATIONS;
use super::quote_ident;
use super::resolve::{notify_trigger_sql, seq_trigger_sql};

/// The tables as SQL: every migration, in order, for `schema`.
pub fn sql(schema: &str) -> String {
    let mut out = String::from(
        "-- outbox schema: the tables, indexes and NOTIFY triggers the worker's migrations create.\n",
    );
    if schema != "public" {
        out.push_str(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s};\nSET search_path TO {s};\n",
            s = quote_ident(schema)
        ));
    }
    for m in MIGRATIONS {
        out.push_str(&format!("\n-- {:04}_{}\n", m.version, m.name));
        out.push_str(m.sql.trim_end());
        out.push('\n');
    }
    out
}

pub use crate::adopt::{PRISMA_SQL_BEGIN, PRISMA_SQL_END};

/// The extra SQL a Prisma app adds to its migration: the NOTIFY triggers, the sequencing
/// trigger of ordered delivery and the autovacuum settings, which Prisma's schema language
/// cannot express.
pub fn prisma_extra_sql() -> String {
    [
        "ALTER TABLE \"OutboxEvent\" SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);".to_string(),
        notify_triggers_sql(),
        seq_trigger_sql("OutboxEvent", "seq", "aggregateId"),
    ]
    .join("\n")
}

/// The two NOTIFY triggers (event inserts, policy edits) on the canonical table names.
pub fn notify_triggers_sql() -> String {
    [
        notify_trigger_sql(
            "OutboxEvent",
            "outbox_notify_event",
            "outbox_event",
            "INSERT",
            "OutboxEvent_notify",
        ),
        notify_trigger_sql(
            "OutboxRetryPolicy",
            "outbox_notify_policy",
            "outbox_policy",
            "INSERT OR UPDATE OR DELETE OR TRUNCATE",
            "OutboxRetryPolicy_notify",
        ),
    ]
    .join("\n")
}

/// The Prisma models.
pub fn prisma() -> String {
    let sql = crate::adopt::commented(&prisma_extra_sql());
    format!(
        r#"// outbox: the models of the transactional outbox, for a Prisma app that owns the tables
// (database.schema_owner = "app"). Paste them into schema.prisma, then create the migration
// with `prisma migrate dev --create-only` and append the SQL between the BEGIN and END lines
// below (without the leading "// "): Prisma cannot express the NOTIFY triggers that wake the
// worker as soon as an event is inserted, the trigger that numbers events for ordered
// delivery, nor the autovacuum settings a queue table needs.
// Check the result with `outbox doctor`.
//
{PRISMA_SQL_BEGIN}
{sql}{PRISMA_SQL_END}

enum OutboxStatus {{
  PENDING
  PROCESSING
  SENT
  FAILED
}}

model OutboxEvent {{
  id            String       @id @default(dbgenerated("(gen_random_uuid())::text"))
  eventName     String
  eventType     String
  aggregateId   String
  routingKey    String
  payload       Json         @default("{{}}")
  headers       Json?
  status        OutboxStatus @default(PENDING)
  occurredAt    DateTime     @default(now()) @db.Timestamptz(3)
  retryCount    Int          @default(0)
  maxRetries    Int?
  retryInterval Int?
  maxInterval   Int?
  nextRetryAt   DateTime     @default(now()) @db.Timestamptz(3)
  lockedBy      String?
  lockedUntil   DateTime?    @db.Timestamptz(3)
  lastError     String?
  processedAt   DateTime?    @db.Timestamptz(3)
  createdAt     DateTime     @default(now()) @db.Timestamptz(3)
  seq           BigInt       @default(autoincrement())

  @@index([status, nextRetryAt])
  @@index([status, lockedUntil])
  @@index([aggregateId, seq])
}}

model OutboxRetryPolicy {{
  routingKey        String   @id
  maxRetries        Int
  retryInterval     Int
  maxInterval       Int
  backoffMultiplier Float    @default(2)
  jitter            Float    @default(0)
  ordered           Boolean  @default(false)
  paused            Boolean  @default(false)
  blockOnFailure    Boolean  @default(false)
  description       String?
  createdAt         DateTime @default(now()) @db.Timestamptz(3)
  updatedAt         DateTime @default(now()) @updatedAt @db.Timestamptz(3)
}}

model OutboxBlockedAggregate {{
  aggregateId String   @id
  eventId     String
  routingKey  String
  reason      String?
  blockedAt   DateTime @default(now()) @db.Timestamptz(3)
}}

model OutboxAudit {{
  id         BigInt   @id @default(autoincrement())
  at         DateTime @default(now()) @db.Timestamptz(3)
  actor      String
  dbUser     String   @default(dbgenerated("CURRENT_USER"))
  action     String
  eventId    String?
  routingKey String?
  detail     String?

  @@index([at])
}}
"#
    )
}
