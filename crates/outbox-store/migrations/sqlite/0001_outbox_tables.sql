-- outbox on SQLite: the event table, the retry-policy table, the tables of ordered delivery
-- and operator audits, and a signal row that tells workers a policy changed.
-- Same table and column names as on PostgreSQL (quoted camelCase, Prisma's defaults).
-- Timestamps are INTEGER milliseconds since 1970-01-01 UTC (what Prisma's SQLite client
-- writes for DateTime); defaults come from SQLite's clock. Delivery order within an
-- aggregate is insertion order: the table's rowid.

CREATE TABLE "OutboxEvent" (
    "id"            TEXT    NOT NULL PRIMARY KEY DEFAULT (lower(hex(randomblob(16)))),
    "eventName"     TEXT    NOT NULL,
    "eventType"     TEXT    NOT NULL,
    "aggregateId"   TEXT    NOT NULL,
    "routingKey"    TEXT    NOT NULL,
    "payload"       TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid("payload")),
    "headers"       TEXT    CHECK ("headers" IS NULL OR json_valid("headers")),
    "status"        TEXT    NOT NULL DEFAULT 'PENDING'
                    CHECK ("status" IN ('PENDING', 'PROCESSING', 'SENT', 'FAILED')),
    "occurredAt"    INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
                    CHECK (typeof("occurredAt") = 'integer'),
    "retryCount"    INTEGER NOT NULL DEFAULT 0 CHECK ("retryCount" >= 0),
    "maxRetries"    INTEGER CHECK ("maxRetries" IS NULL OR "maxRetries" >= 0),
    "retryInterval" INTEGER CHECK ("retryInterval" IS NULL OR "retryInterval" >= 0),
    "maxInterval"   INTEGER CHECK ("maxInterval" IS NULL OR "maxInterval" >= 0),
    "nextRetryAt"   INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
                    CHECK (typeof("nextRetryAt") = 'integer'),
    "lockedBy"      TEXT,
    "lockedUntil"   INTEGER,
    "lastError"     TEXT,
    "processedAt"   INTEGER,
    "createdAt"     INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);

-- The claim: due PENDING rows in nextRetryAt order.
CREATE INDEX "OutboxEvent_pending_idx"
    ON "OutboxEvent" ("nextRetryAt") WHERE "status" = 'PENDING';
-- The lease reaper: PROCESSING rows by lease expiry.
CREATE INDEX "OutboxEvent_processing_idx"
    ON "OutboxEvent" ("lockedUntil") WHERE "status" = 'PROCESSING';
-- Purging and dead-letter listings: finished rows by age.
CREATE INDEX "OutboxEvent_finished_idx"
    ON "OutboxEvent" ("status", "processedAt") WHERE "status" IN ('SENT', 'FAILED');
-- Ordered delivery: the unfinished events of an aggregate, in insertion order.
CREATE INDEX "OutboxEvent_aggregate_idx"
    ON "OutboxEvent" ("aggregateId") WHERE "status" IN ('PENDING', 'PROCESSING');

CREATE TABLE "OutboxRetryPolicy" (
    "routingKey"        TEXT    NOT NULL PRIMARY KEY,
    "maxRetries"        INTEGER NOT NULL CHECK ("maxRetries" >= 0),
    "retryInterval"     INTEGER NOT NULL CHECK ("retryInterval" >= 0),
    "maxInterval"       INTEGER NOT NULL CHECK ("maxInterval" >= 0),
    "backoffMultiplier" REAL    NOT NULL DEFAULT 2 CHECK ("backoffMultiplier" >= 1),
    "jitter"            REAL    NOT NULL DEFAULT 0 CHECK ("jitter" >= 0 AND "jitter" <= 1),
    "ordered"           BOOLEAN NOT NULL DEFAULT false,
    "paused"            BOOLEAN NOT NULL DEFAULT false,
    "blockOnFailure"    BOOLEAN NOT NULL DEFAULT false,
    "description"       TEXT,
    "createdAt"         INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    "updatedAt"         INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);

-- Aggregates held back by a FAILED ordered head (policies with blockOnFailure).
CREATE TABLE "OutboxBlockedAggregate" (
    "aggregateId" TEXT    NOT NULL PRIMARY KEY,
    "eventId"     TEXT    NOT NULL,
    "routingKey"  TEXT    NOT NULL,
    "reason"      TEXT,
    "blockedAt"   INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);

-- Who replayed, purged, unblocked, paused or resumed what, and when.
CREATE TABLE "OutboxAudit" (
    "id"         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "at"         INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    "actor"      TEXT    NOT NULL,
    "action"     TEXT    NOT NULL,
    "eventId"    TEXT,
    "routingKey" TEXT,
    "detail"     TEXT
);

-- Workers watch this counter (SQLite has no LISTEN): any change to a policy row bumps it.
CREATE TABLE "OutboxSignal" (
    "name"    TEXT    NOT NULL PRIMARY KEY,
    "version" INTEGER NOT NULL DEFAULT 0
);
INSERT INTO "OutboxSignal" ("name", "version") VALUES ('policy', 0);

CREATE TRIGGER "OutboxRetryPolicy_insert_signal" AFTER INSERT ON "OutboxRetryPolicy"
BEGIN
    UPDATE "OutboxSignal" SET "version" = "version" + 1 WHERE "name" = 'policy';
END;
CREATE TRIGGER "OutboxRetryPolicy_update_signal" AFTER UPDATE ON "OutboxRetryPolicy"
BEGIN
    UPDATE "OutboxSignal" SET "version" = "version" + 1 WHERE "name" = 'policy';
END;
CREATE TRIGGER "OutboxRetryPolicy_delete_signal" AFTER DELETE ON "OutboxRetryPolicy"
BEGIN
    UPDATE "OutboxSignal" SET "version" = "version" + 1 WHERE "name" = 'policy';
END;
