//! `outbox schema print --format prisma` on MySQL / MariaDB: the Prisma models of the
//! outbox for an app that owns its tables, which the worker then adopts with no warnings
//! on MariaDB (on MySQL, `Json` is a binary type: `outbox doctor` says what that means).

/// The SQL a Prisma app adds to its migration: the bucket locks of ordered delivery (a
/// table and the insert trigger that takes them), which Prisma cannot express.
pub fn prisma_extra_sql() -> String {
    crate::adopt::sql_from(
        super::migrate::MIGRATIONS[0].sql,
        "CREATE TABLE `OutboxOrderLock`",
    )
}

/// The Prisma models for MySQL / MariaDB.
pub fn prisma() -> String {
    use crate::adopt::{PRISMA_SQL_BEGIN, PRISMA_SQL_END};
    let sql = crate::adopt::commented(&prisma_extra_sql());
    format!(
        r#"// outbox: the models of the transactional outbox, for a Prisma app whose MySQL or MariaDB
// database holds the tables (database.schema_owner = "app"). Paste them into schema.prisma,
// create the migration with `prisma migrate dev --create-only` and append the SQL between
// the BEGIN and END lines below (without the leading "// "): Prisma cannot express the
// trigger that lets an ordered claim wait for producers still inside their transactions, so
// that an event committed late is never overtaken. Keep the server's time zone UTC (or set
// the app's connections to it): the @default(now()) columns are filled by the server.
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
  id            String       @id @default(uuid())
  eventName     String
  eventType     String
  aggregateId   String
  routingKey    String
  payload       Json
  headers       Json?
  status        OutboxStatus @default(PENDING)
  occurredAt    DateTime     @default(now())
  retryCount    Int          @default(0)
  maxRetries    Int?
  retryInterval Int?
  maxInterval   Int?
  nextRetryAt   DateTime     @default(now())
  lockedBy      String?
  lockedUntil   DateTime?
  lastError     String?      @db.Text
  processedAt   DateTime?
  createdAt     DateTime     @default(now())
  seq           BigInt       @unique @default(autoincrement())

  @@index([status, nextRetryAt])
  @@index([status, lockedUntil])
  @@index([status, processedAt])
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
  description       String?  @db.Text
  createdAt         DateTime @default(now())
  updatedAt         DateTime @default(now()) @updatedAt
}}

model OutboxBlockedAggregate {{
  aggregateId String   @id
  eventId     String
  routingKey  String
  reason      String?  @db.Text
  blockedAt   DateTime @default(now())
}}

model OutboxAudit {{
  id         BigInt   @id @default(autoincrement())
  at         DateTime @default(now())
  actor      String
  action     String
  eventId    String?
  routingKey String?
  detail     String?  @db.Text

  @@index([at])
}}
"#
    )
}
