-- outbox: the event table, the retry-policy table, their indexes and NOTIFY triggers.
-- Identifiers are quoted camelCase (Prisma's defaults) so a Prisma app can model them.
-- Runs with search_path set to the configured schema (database.schema).

CREATE TABLE "OutboxEvent" (
    "id"            text         NOT NULL DEFAULT gen_random_uuid()::text,
    "eventName"     text         NOT NULL,
    "eventType"     text         NOT NULL,
    "aggregateId"   text         NOT NULL,
    "routingKey"    text         NOT NULL,
    "payload"       jsonb        NOT NULL DEFAULT '{}'::jsonb,
    "headers"       jsonb,
    "status"        text         NOT NULL DEFAULT 'PENDING',
    "occurredAt"    timestamptz(3) NOT NULL DEFAULT now(),
    "retryCount"    integer      NOT NULL DEFAULT 0,
    "maxRetries"    integer,
    "retryInterval" integer,
    "maxInterval"   integer,
    "nextRetryAt"   timestamptz(3) NOT NULL DEFAULT now(),
    "lockedBy"      text,
    "lockedUntil"   timestamptz(3),
    "lastError"     text,
    "processedAt"   timestamptz(3),
    "createdAt"     timestamptz(3) NOT NULL DEFAULT now(),
    CONSTRAINT "OutboxEvent_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "OutboxEvent_status_check"
        CHECK ("status" IN ('PENDING', 'PROCESSING', 'SENT', 'FAILED')),
    CONSTRAINT "OutboxEvent_retryCount_check" CHECK ("retryCount" >= 0),
    CONSTRAINT "OutboxEvent_maxRetries_check" CHECK ("maxRetries" IS NULL OR "maxRetries" >= 0),
    CONSTRAINT "OutboxEvent_retryInterval_check"
        CHECK ("retryInterval" IS NULL OR "retryInterval" >= 0),
    CONSTRAINT "OutboxEvent_maxInterval_check" CHECK ("maxInterval" IS NULL OR "maxInterval" >= 0)
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

CREATE TABLE "OutboxRetryPolicy" (
    "routingKey"        text             NOT NULL,
    "maxRetries"        integer          NOT NULL,
    "retryInterval"     integer          NOT NULL,
    "maxInterval"       integer          NOT NULL,
    "backoffMultiplier" double precision NOT NULL DEFAULT 2,
    "jitter"            double precision NOT NULL DEFAULT 0,
    "ordered"           boolean          NOT NULL DEFAULT false,
    "paused"            boolean          NOT NULL DEFAULT false,
    "description"       text,
    "createdAt"         timestamptz(3)   NOT NULL DEFAULT now(),
    "updatedAt"         timestamptz(3)   NOT NULL DEFAULT now(),
    CONSTRAINT "OutboxRetryPolicy_pkey" PRIMARY KEY ("routingKey"),
    CONSTRAINT "OutboxRetryPolicy_maxRetries_check" CHECK ("maxRetries" >= 0),
    CONSTRAINT "OutboxRetryPolicy_retryInterval_check" CHECK ("retryInterval" >= 0),
    CONSTRAINT "OutboxRetryPolicy_maxInterval_check" CHECK ("maxInterval" >= 0),
    CONSTRAINT "OutboxRetryPolicy_backoffMultiplier_check" CHECK ("backoffMultiplier" >= 1),
    CONSTRAINT "OutboxRetryPolicy_jitter_check" CHECK ("jitter" >= 0 AND "jitter" <= 1)
);

-- One notification per inserting statement wakes listening workers at once.
CREATE FUNCTION "outbox_notify_event"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_event', TG_TABLE_SCHEMA);
    RETURN NULL;
END;
$$;

CREATE TRIGGER "OutboxEvent_notify"
    AFTER INSERT ON "OutboxEvent"
    FOR EACH STATEMENT EXECUTE FUNCTION "outbox_notify_event"();

-- Policy edits reach running workers without waiting for their periodic refresh.
CREATE FUNCTION "outbox_notify_policy"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_policy', TG_TABLE_SCHEMA);
    RETURN NULL;
END;
$$;

CREATE TRIGGER "OutboxRetryPolicy_notify"
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "OutboxRetryPolicy"
    FOR EACH STATEMENT EXECUTE FUNCTION "outbox_notify_policy"();
