-- outbox on MySQL 8.0+ / MariaDB 10.6+: the event table, the retry-policy table, the tables
-- of ordered delivery and operator audits. Same table and column names as on PostgreSQL
-- (camelCase, as Prisma names them). Timestamps are DATETIME(3) in UTC: defaults use
-- UTC_TIMESTAMP(3), whatever the inserting session's time zone, and every connection of the
-- worker sets time_zone = '+00:00'. The payload is LONGTEXT checked to be JSON: MySQL's JSON
-- type rewrites documents, and the relay passes payloads on byte for byte.
-- Delivery order within an aggregate is insertion order: the AUTO_INCREMENT column seq. So
-- that an event committed late is never overtaken, each insert takes a shared lock on its
-- aggregate's bucket row (a trigger) and an ordered claim takes every bucket exclusively: it
-- waits for producers still inside their transactions, and none starts meanwhile.

CREATE TABLE `OutboxEvent` (
    `id`            VARCHAR(191) NOT NULL DEFAULT (UUID()),
    `eventName`     VARCHAR(255) NOT NULL,
    `eventType`     VARCHAR(255) NOT NULL,
    `aggregateId`   VARCHAR(191) NOT NULL,
    `routingKey`    VARCHAR(191) NOT NULL,
    `payload`       LONGTEXT     NOT NULL DEFAULT ('{}'),
    `headers`       LONGTEXT     NULL,
    `status`        VARCHAR(16)  NOT NULL DEFAULT 'PENDING',
    `occurredAt`    DATETIME(3)  NOT NULL DEFAULT (UTC_TIMESTAMP(3)),
    `retryCount`    INT          NOT NULL DEFAULT 0,
    `maxRetries`    INT          NULL,
    `retryInterval` INT          NULL,
    `maxInterval`   INT          NULL,
    `nextRetryAt`   DATETIME(3)  NOT NULL DEFAULT (UTC_TIMESTAMP(3)),
    `lockedBy`      VARCHAR(191) NULL,
    `lockedUntil`   DATETIME(3)  NULL,
    `lastError`     TEXT         NULL,
    `processedAt`   DATETIME(3)  NULL,
    `createdAt`     DATETIME(3)  NOT NULL DEFAULT (UTC_TIMESTAMP(3)),
    `seq`           BIGINT       NOT NULL AUTO_INCREMENT,
    PRIMARY KEY (`id`),
    UNIQUE KEY `OutboxEvent_seq_key` (`seq`),
    KEY `OutboxEvent_pending_idx` (`status`, `nextRetryAt`),
    KEY `OutboxEvent_processing_idx` (`status`, `lockedUntil`),
    KEY `OutboxEvent_finished_idx` (`status`, `processedAt`),
    KEY `OutboxEvent_aggregate_idx` (`aggregateId`, `seq`),
    CONSTRAINT `OutboxEvent_payload_json` CHECK (JSON_VALID(`payload`)),
    CONSTRAINT `OutboxEvent_headers_json` CHECK (`headers` IS NULL OR JSON_VALID(`headers`)),
    CONSTRAINT `OutboxEvent_status_check` CHECK (`status` IN ('PENDING', 'PROCESSING', 'SENT', 'FAILED')),
    CONSTRAINT `OutboxEvent_counts_check` CHECK (`retryCount` >= 0 AND (`maxRetries` IS NULL OR `maxRetries` >= 0)
        AND (`retryInterval` IS NULL OR `retryInterval` >= 0) AND (`maxInterval` IS NULL OR `maxInterval` >= 0))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE `OutboxRetryPolicy` (
    `routingKey`        VARCHAR(191) NOT NULL,
    `maxRetries`        INT          NOT NULL,
    `retryInterval`     INT          NOT NULL,
    `maxInterval`       INT          NOT NULL,
    `backoffMultiplier` DOUBLE       NOT NULL DEFAULT 2,
    `jitter`            DOUBLE       NOT NULL DEFAULT 0,
    `ordered`           BOOLEAN      NOT NULL DEFAULT FALSE,
    `paused`            BOOLEAN      NOT NULL DEFAULT FALSE,
    `blockOnFailure`    BOOLEAN      NOT NULL DEFAULT FALSE,
    `description`       TEXT         NULL,
    `createdAt`         DATETIME(3)  NOT NULL DEFAULT (UTC_TIMESTAMP(3)),
    `updatedAt`         DATETIME(3)  NOT NULL DEFAULT (UTC_TIMESTAMP(3)) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (`routingKey`),
    CONSTRAINT `OutboxRetryPolicy_values_check` CHECK (`maxRetries` >= 0 AND `retryInterval` >= 0 AND `maxInterval` >= 0
        AND `backoffMultiplier` >= 1 AND `jitter` >= 0 AND `jitter` <= 1)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE `OutboxBlockedAggregate` (
    `aggregateId` VARCHAR(191) NOT NULL,
    `eventId`     VARCHAR(191) NOT NULL,
    `routingKey`  VARCHAR(191) NOT NULL,
    `reason`      TEXT         NULL,
    `blockedAt`   DATETIME(3)  NOT NULL DEFAULT (UTC_TIMESTAMP(3)),
    PRIMARY KEY (`aggregateId`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE `OutboxAudit` (
    `id`         BIGINT       NOT NULL AUTO_INCREMENT,
    `at`         DATETIME(3)  NOT NULL DEFAULT (UTC_TIMESTAMP(3)),
    `actor`      VARCHAR(255) NOT NULL,
    `action`     VARCHAR(64)  NOT NULL,
    `eventId`    VARCHAR(191) NULL,
    `routingKey` VARCHAR(191) NULL,
    `detail`     TEXT         NULL,
    PRIMARY KEY (`id`),
    KEY `OutboxAudit_at_idx` (`at`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Ordered delivery: 1024 buckets of aggregates (CRC32 of aggregateId).
CREATE TABLE `OutboxOrderLock` (
    `bucket` SMALLINT UNSIGNED NOT NULL,
    PRIMARY KEY (`bucket`)
) ENGINE = InnoDB;
INSERT INTO `OutboxOrderLock` (`bucket`)
SELECT a.i + 4 * b.i + 16 * c.i + 64 * d.i + 256 * e.i
  FROM (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) AS a
 CROSS JOIN (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) AS b
 CROSS JOIN (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) AS c
 CROSS JOIN (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) AS d
 CROSS JOIN (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) AS e;

CREATE TRIGGER `OutboxEvent_order` BEFORE INSERT ON `OutboxEvent` FOR EACH ROW
SELECT `bucket` INTO @outbox_order_bucket FROM `OutboxOrderLock`
 WHERE `bucket` = CRC32(NEW.`aggregateId`) % 1024 LOCK IN SHARE MODE;
