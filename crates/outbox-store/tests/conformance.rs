//! The store conformance suite (outbox-testkit's `conformance` module) on every backend:
//! PostgreSQL against the local server, SQLite on a scratch file, and SQLite again on
//! app-owned tables as Prisma makes them (every check but the worker's own migrations).

use outbox_testkit::conformance::*;

macro_rules! on_every_store {
    ($($check:ident),* $(,)?) => {
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let f = PgFixture::new().await;
                    super::$check(&f).await;
                }
            )*
        }
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let f = SqliteFixture::new().await;
                    super::$check(&f).await;
                }
            )*
        }
    };
}

macro_rules! on_mysql {
    ($($check:ident),* $(,)?) => {
        mod mysql {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let f = MysqlFixture::new().await;
                    super::$check(&f).await;
                }
            )*
        }
    };
}

macro_rules! on_app_owned_tables {
    ($($check:ident),* $(,)?) => {
        mod sqlite_app {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let f = SqliteAppFixture::new().await;
                    super::$check(&f).await;
                }
            )*
        }
    };
}

on_every_store!(
    check_claim,
    check_fenced_results,
    check_result_kinds,
    check_ordered,
    check_operator,
    check_expiry_due_and_limits,
    check_unreadable_rows,
    check_broken_policy_rows,
    check_migrations,
    check_notifications,
);

on_app_owned_tables!(
    check_claim,
    check_fenced_results,
    check_result_kinds,
    check_ordered,
    check_operator,
    check_expiry_due_and_limits,
    check_unreadable_rows,
    check_broken_policy_rows,
    check_notifications,
);

on_mysql!(
    check_claim,
    check_fenced_results,
    check_result_kinds,
    check_ordered,
    check_operator,
    check_expiry_due_and_limits,
    check_unreadable_rows,
    check_broken_policy_rows,
    check_migrations,
    check_notifications,
);
