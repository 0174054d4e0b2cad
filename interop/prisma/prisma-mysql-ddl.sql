-- The DDL `prisma migrate diff --from-empty` writes for header-mysql.prisma plus the printed
-- outbox models (Prisma's MySQL conventions: VARCHAR(191) strings, DATETIME(3) with
-- CURRENT_TIMESTAMP(3), ENUM for enums, JSON, utf8mb4_unicode_ci tables). Prisma's schema
-- engine for MySQL is a native binary its CLI downloads from Prisma's own host, which this
-- machine cannot reach (its WebAssembly engine has no MySQL), so the DDL is kept here; the
-- models themselves are checked by `prisma generate`.
CREATE TABLE `AuthLog` (
    `id` VARCHAR(191) NOT NULL,
    `userId` VARCHAR(191) NOT NULL,
    `createdAt` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),

    PRIMARY KEY (`id`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE `OutboxEvent` (
    `id` VARCHAR(191) NOT NULL,
    `eventName` VARCHAR(191) NOT NULL,
    `eventType` VARCHAR(191) NOT NULL,
    `aggregateId` VARCHAR(191) NOT NULL,
    `routingKey` VARCHAR(191) NOT NULL,
    `payload` JSON NOT NULL,
    `headers` JSON NULL,
    `status` ENUM('PENDING', 'PROCESSING', 'SENT', 'FAILED') NOT NULL DEFAULT 'PENDING',
    `occurredAt` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    `retryCount` INTEGER NOT NULL DEFAULT 0,
    `maxRetries` INTEGER NULL,
    `retryInterval` INTEGER NULL,
    `maxInterval` INTEGER NULL,
    `nextRetryAt` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    `lockedBy` VARCHAR(191) NULL,
    `lockedUntil` DATETIME(3) NULL,
    `lastError` TEXT NULL,
    `processedAt` DATETIME(3) NULL,
    `createdAt` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    `seq` BIGINT NOT NULL AUTO_INCREMENT,

    UNIQUE INDEX `OutboxEvent_seq_key`(`seq`),
    INDEX `OutboxEvent_status_nextRetryAt_idx`(`status`, `nextRetryAt`),
    INDEX `OutboxEvent_status_lockedUntil_idx`(`status`, `lockedUntil`),
    INDEX `OutboxEvent_status_processedAt_idx`(`status`, `processedAt`),
    INDEX `OutboxEvent_aggregateId_seq_idx`(`aggregateId`, `seq`),
    PRIMARY KEY (`id`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE `OutboxRetryPolicy` (
    `routingKey` VARCHAR(191) NOT NULL,
    `maxRetries` INTEGER NOT NULL,
    `retryInterval` INTEGER NOT NULL,
    `maxInterval` INTEGER NOT NULL,
    `backoffMultiplier` DOUBLE NOT NULL DEFAULT 2,
    `jitter` DOUBLE NOT NULL DEFAULT 0,
    `ordered` BOOLEAN NOT NULL DEFAULT false,
    `paused` BOOLEAN NOT NULL DEFAULT false,
    `blockOnFailure` BOOLEAN NOT NULL DEFAULT false,
    `description` TEXT NULL,
    `createdAt` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    `updatedAt` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),

    PRIMARY KEY (`routingKey`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE `OutboxBlockedAggregate` (
    `aggregateId` VARCHAR(191) NOT NULL,
    `eventId` VARCHAR(191) NOT NULL,
    `routingKey` VARCHAR(191) NOT NULL,
    `reason` TEXT NULL,
    `blockedAt` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),

    PRIMARY KEY (`aggregateId`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE `OutboxAudit` (
    `id` BIGINT NOT NULL AUTO_INCREMENT,
    `at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    `actor` VARCHAR(191) NOT NULL,
    `action` VARCHAR(191) NOT NULL,
    `eventId` VARCHAR(191) NULL,
    `routingKey` VARCHAR(191) NULL,
    `detail` TEXT NULL,

    INDEX `OutboxAudit_at_idx`(`at`),
    PRIMARY KEY (`id`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
