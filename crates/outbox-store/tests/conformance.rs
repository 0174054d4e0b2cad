//! The store conformance suite (outbox-testkit's `conformance` module) on every backend:
//! PostgreSQL and MariaDB against the local servers, SQLite on a scratch file, and SQLite
//! again on app-owned tables as Prisma makes them, and MariaDB on Prisma's tables too (every
//! check but the worker's own migrations, which those tables do not have).

use outbox_testkit::conformance::*;

/// A module `$store` running each check on a fresh `$fixture`.
macro_rules! suite {
    ($store:ident, $fixture:ident: $($check:ident),* $(,)?) => {
        mod $store {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let f = $fixture::new().await;
                    super::$check(&f).await;
                }
            )*
        }
    };
}

/// Every check but the worker's own migrations, and the `$extra` ones, on `$($store, $fixture);` pairs.
macro_rules! shared {
    ($($store:ident, $fixture:ident $(, $extra:ident)*);* $(;)?) => {
        $(
            suite!($store, $fixture:
                check_claim,
                check_fenced_results,
                check_result_kinds,
                check_ordered,
                check_late_commit,
                check_operator,
                check_dashboard_reads,
                check_expiry_due_and_limits,
                check_unreadable_rows,
                check_broken_policy_rows,
                check_notifications,
                $($extra),*
            );
        )*
    };
}

// The worker's own tables: every check, migrations too.
shared!(
    postgres, PgFixture, check_migrations;
    sqlite, SqliteFixture, check_migrations;
    mysql, MysqlFixture, check_migrations;
);

// Tables an app made (Prisma's DDL): no migrations of ours to check.
shared!(
    sqlite_app, SqliteAppFixture;
    mysql_app, MysqlAppFixture;
);
