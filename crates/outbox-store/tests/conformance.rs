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

/// The suite on every store: `$($store, $fixture);` pairs, all checks.
macro_rules! everywhere {
    ($($store:ident, $fixture:ident);* $(;)?) => {
        $(
            suite!($store, $fixture:
                check_claim,
                check_fenced_results,
                check_result_kinds,
                check_ordered,
                check_late_commit,
                check_operator,
                check_expiry_due_and_limits,
                check_unreadable_rows,
                check_broken_policy_rows,
                check_migrations,
                check_notifications,
            );
        )*
    };
}

everywhere!(
    postgres, PgFixture;
    sqlite, SqliteFixture;
    mysql, MysqlFixture;
);

suite!(mysql_app, MysqlAppFixture:
    check_claim,
    check_fenced_results,
    check_result_kinds,
    check_ordered,
    check_late_commit,
    check_operator,
    check_expiry_due_and_limits,
    check_unreadable_rows,
    check_broken_policy_rows,
    check_notifications,
);

suite!(sqlite_app, SqliteAppFixture:
    check_claim,
    check_fenced_results,
    check_result_kinds,
    check_ordered,
    check_late_commit,
    check_operator,
    check_expiry_due_and_limits,
    check_unreadable_rows,
    check_broken_policy_rows,
    check_notifications,
);
