//! `outbox schema print --format prisma` on SQLite: the Prisma models of the outbox for an
//! app that owns its SQLite tables, which the worker then adopts with no warnings.

/// The SQL a Prisma app adds to its migration: the counter and triggers that tell running
/// workers at once that a policy row changed (without them, at `worker.policy_refresh`).
pub fn prisma_extra_sql() -> String {
    crate::adopt::sql_from(
        super::migrate::MIGRATIONS[0].sql,
        "CREATE TABLE \"OutboxSignal\"",
    )
}

/// The Prisma models for SQLite.
pub fn prisma() -> String {
    use crate::adopt::{PRISMA_SQL_BEGIN, PRISMA_SQL_END};
    let sql = crate::adopt::commented(&prisma_extra_sql());
    format!(
        r#"// outbox: the models of the transactional outbox, for a Prisma app whose SQLite database
// holds the tables (database.schema_owner = "app"). Paste them into schema.prisma, create the
// migration with `prisma migrate dev --create-only` and append the SQL between the BEGIN and
// END lines below (without the leading "// "): it lets running workers see a policy edit at
// once. Set database.timestamp_format to what your client writes: Prisma's SQLite driver
// adapters write "iso8601" text unless their timestampFormat option says "unixepoch-ms".
// payload has no @default: Prisma writes SQLite's JSON defaults unquoted, which SQLite
// refuses; Prisma Client always sends the payload, and SQL inserts must name it.
// Check the result with `outbox doctor`.
//
{PRISMA_SQL_BEGIN}
{sql}{PRISMA_SQL_END}

model OutboxEvent {{
  id            String    @id @default(uuid())
  eventName     String
  eventType     String
  aggregateId   String
  routingKey    String
  payload       Json
  headers       Json?
  status        String    @default("PENDING")
  occurredAt    DateTime  @default(now())
  retryCount    Int       @default(0)
  maxRetries    Int?
  retryInterval Int?
  maxInterval   Int?
  nextRetryAt   DateTime  @default(now())
  lockedBy      String?
  lockedUntil   DateTime?
  lastError     String?
  processedAt   DateTime?
  createdAt     DateTime  @default(now())

  @@index([status, nextRetryAt])
  @@index([status, lockedUntil])
  @@index([aggregateId, status])
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
  createdAt         DateTime @default(now())
  updatedAt         DateTime @default(now()) @updatedAt
}}

model OutboxBlockedAggregate {{
  aggregateId String   @id
  eventId     String
  routingKey  String
  reason      String?
  blockedAt   DateTime @default(now())
}}

model OutboxAudit {{
  id         Int      @id @default(autoincrement())
  at         DateTime @default(now())
  actor      String
  action     String
  eventId    String?
  routingKey String?
  detail     String?

  @@index([at])
}}
"#
    )
}
