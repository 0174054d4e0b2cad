-- outbox: values that no delivery can use are refused when they are written.
--
-- An occurredAt of 'infinity' or '-infinity' is no time a sink can carry (the envelope's
-- occurredAt, a CloudEvents time), and a backoffMultiplier of NaN or Infinity turns every
-- retry delay into nonsense. The worker already copes with such rows one by one (the event
-- ends FAILED naming the column; the policy row is skipped and `outbox doctor` names it);
-- from this migration on the database refuses them at the INSERT or UPDATE that writes them.
--
-- Rows already there are repaired first, since a CHECK cannot be added over them: an event
-- with an infinite occurredAt gets its createdAt (or, where that is infinite too, the time
-- of the migration) and, if it was still to be delivered, ends FAILED with a lastError
-- saying so (replay it once you have checked it); such a head of an ordered policy with
-- "blockOnFailure" holds its aggregate back, as any FAILED head would. A policy whose
-- backoffMultiplier is NaN or Infinity gets the default, 2.
-- Adding the constraints reads the whole event table once, under the migration's lock.

INSERT INTO "OutboxBlockedAggregate" ("aggregateId", "eventId", "routingKey", "reason")
SELECT e."aggregateId", e."id", e."routingKey",
       'occurredAt was ' || e."occurredAt"::text || ', which no sink can carry'
  FROM "OutboxEvent" AS e
  JOIN "OutboxRetryPolicy" AS p ON p."routingKey" = e."routingKey"
 WHERE NOT isfinite(e."occurredAt") AND e."status" IN ('PENDING', 'PROCESSING')
   AND p."ordered" AND p."blockOnFailure"
ON CONFLICT ("aggregateId") DO NOTHING;

UPDATE "OutboxEvent"
   SET "lastError" = 'occurredAt was ' || "occurredAt"::text
                     || ', which no sink can carry; migration 0005 set it to createdAt'
                     || CASE WHEN "status" IN ('PENDING', 'PROCESSING')
                             THEN ' and failed the event: check it, then replay it' ELSE '' END,
       "status" = CASE WHEN "status" IN ('PENDING', 'PROCESSING') THEN 'FAILED' ELSE "status" END,
       "processedAt" = COALESCE("processedAt", now()),
       "lockedBy" = NULL,
       "lockedUntil" = NULL,
       "occurredAt" = CASE WHEN isfinite("createdAt") THEN "createdAt" ELSE now() END
 WHERE NOT isfinite("occurredAt");

ALTER TABLE "OutboxEvent"
    ADD CONSTRAINT "OutboxEvent_occurredAt_check" CHECK (isfinite("occurredAt"));

UPDATE "OutboxRetryPolicy" SET "backoffMultiplier" = 2
 WHERE NOT ("backoffMultiplier" < 'Infinity'::double precision);

-- NaN passes the ">= 1" check of migration 0001 (PostgreSQL orders NaN above every number).
ALTER TABLE "OutboxRetryPolicy"
    ADD CONSTRAINT "OutboxRetryPolicy_backoffMultiplier_finite_check"
        CHECK ("backoffMultiplier" < 'Infinity'::double precision);
