-- outbox: per-aggregate ordering (policies with "ordered" = true).
--
-- "seq" is the delivery order: taken from a sequence when the row is inserted. The trigger
-- below takes it only after the inserting transaction has a transaction id, and records in
-- "seqHorizon" the first transaction id not yet assigned at that moment. Every transaction
-- that took a smaller "seq" has a smaller id, so once no transaction older than
-- "seqHorizon" is running, no event that will come before this one can still appear: the
-- worker delivers an ordered event only then (see the README, "Guarantees").
-- Both columns have defaults, so producers (and Prisma models) never set them.

ALTER TABLE "OutboxEvent" ADD COLUMN "seq" bigserial NOT NULL;
ALTER TABLE "OutboxEvent" ADD COLUMN "seqHorizon" bigint NOT NULL DEFAULT 0;

CREATE FUNCTION "outbox_event_seq"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_current_xact_id();
    NEW."seq" := nextval(pg_get_serial_sequence(quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME), 'seq'));
    NEW."seqHorizon" := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
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
