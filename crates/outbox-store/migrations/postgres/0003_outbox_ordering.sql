-- outbox: per-aggregate ordering (policies with "ordered" = true).
--
-- "seq" is the delivery order: a number taken from a sequence as the row is inserted. The
-- trigger below first takes a shared, transaction-scoped advisory lock on one of 256
-- buckets of the aggregate id (class 1869968482, bucket hashtext(aggregateId) & 255) and
-- only then the number, so a transaction that holds a number it has not committed yet also
-- holds its bucket's lock. Shared locks never wait for each other: producers do not block
-- producers. Before claiming the head of an aggregate, the worker takes the bucket's lock
-- exclusively with a try-lock (never waiting): if a producer still holds it, the head
-- waits for the next claim; if not, no event of that aggregate can appear before the head
-- any more. So an event committed late is never overtaken (see the README, "Guarantees").
-- The column has a default, so producers (and Prisma models) never set it.

-- Rows already there are numbered in (occurredAt, id) order, then the column becomes what
-- bigserial (Prisma's BigInt @default(autoincrement())) makes.
ALTER TABLE "OutboxEvent" ADD COLUMN "seq" bigint;
CREATE SEQUENCE "OutboxEvent_seq_seq" OWNED BY "OutboxEvent"."seq";
UPDATE "OutboxEvent" AS e SET "seq" = n.rn
  FROM (SELECT "id", row_number() OVER (ORDER BY "occurredAt", "id") AS rn FROM "OutboxEvent") AS n
 WHERE e."id" = n."id";
SELECT setval('"OutboxEvent_seq_seq"', COALESCE((SELECT max("seq") FROM "OutboxEvent"), 0) + 1, false);
ALTER TABLE "OutboxEvent"
    ALTER COLUMN "seq" SET DEFAULT nextval('"OutboxEvent_seq_seq"'),
    ALTER COLUMN "seq" SET NOT NULL;

CREATE FUNCTION "outbox_event_seq"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1869968482, hashtext(NEW."aggregateId") & 255);
    NEW."seq" := nextval(pg_get_serial_sequence(quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME), 'seq'));
    RETURN NEW;
END;
$$;

CREATE TRIGGER "OutboxEvent_seq"
    BEFORE INSERT ON "OutboxEvent"
    FOR EACH ROW EXECUTE FUNCTION "outbox_event_seq"();

-- The head of each aggregate: its unfinished events in delivery order.
CREATE INDEX "OutboxEvent_aggregate_idx"
    ON "OutboxEvent" ("aggregateId", "seq") WHERE "status" IN ('PENDING', 'PROCESSING');

-- What to do when the head of an aggregate ends FAILED: release the aggregate (the next
-- event goes ahead; the default) or keep its later events waiting until an operator
-- replays or discards the failed one.
ALTER TABLE "OutboxRetryPolicy" ADD COLUMN "blockOnFailure" boolean NOT NULL DEFAULT false;

-- Aggregates held back by a FAILED head under a blockOnFailure policy. A row here stays until
-- an operator removes it (replaying or discarding the event), even if the FAILED event
-- itself is deleted: an aggregate is never released by accident.
CREATE TABLE "OutboxBlockedAggregate" (
    "aggregateId" text           NOT NULL,
    "eventId"     text           NOT NULL,
    "routingKey"  text           NOT NULL,
    "reason"      text,
    "blockedAt"   timestamptz(3) NOT NULL DEFAULT now(),
    CONSTRAINT "OutboxBlockedAggregate_pkey" PRIMARY KEY ("aggregateId")
);
