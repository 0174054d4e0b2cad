-- outbox: who did what by hand. `outbox dlq replay`, `outbox dlq purge` and
-- `outbox policy pause|resume` write one row per event or policy they change: when, the
-- operator (OS user and host of the command, and the database user), the action, and what
-- it touched. The worker never writes here; nothing deletes from it.
CREATE TABLE "OutboxAudit" (
    "id"         bigserial      NOT NULL,
    "at"         timestamptz(3) NOT NULL DEFAULT now(),
    "actor"      text           NOT NULL,
    "dbUser"     text           NOT NULL DEFAULT current_user,
    "action"     text           NOT NULL,
    "eventId"    text,
    "routingKey" text,
    "detail"     text,
    CONSTRAINT "OutboxAudit_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "OutboxAudit_at_idx" ON "OutboxAudit" ("at");
