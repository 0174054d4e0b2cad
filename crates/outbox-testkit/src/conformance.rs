//! The store conformance suite: every promise of the [`Store`], [`Operator`] and
//! [`Migrator`] traits, written once and run against each backend through a [`Fixture`].
//! A backend's test file makes one fixture per test and calls each `check_*` function
//! (see `crates/outbox-store/tests/conformance.rs`).

use crate::{unique, TempDir, TestDb};
use outbox_core::{
    Backend, ClaimedEvent, Completion, CompletionAction, EventFilter, Leased, Migrator,
    Notification, Page, ProblemKind, Status,
};
use outbox_store::sqlite::{SqliteOptions, SqliteStore};
use outbox_store::{PgStore, PgStoreOptions};
use std::time::Duration;

/// A fresh, migrated outbox on one backend, and the few things a test must do to it that
/// the traits do not offer (writing rows as a producer would, moving clocks).
#[outbox_core::async_trait]
pub trait Fixture: Send + Sync {
    /// The store under test.
    fn backend(&self) -> &dyn Backend;
    /// Runs SQL that every store accepts (INSERT/UPDATE/DELETE with literals and quoted
    /// camelCase names).
    async fn exec(&self, sql: &str);
    /// Sets the event's timestamp `column` to `ms` from now (negative: in the past).
    async fn set_time(&self, id: &str, column: &str, ms: i64);
    /// Sets the event's nextRetryAt to `ms` from now (negative: in the past).
    async fn set_due_in(&self, id: &str, ms: i64) {
        self.set_time(id, "nextRetryAt", ms).await
    }
    /// Sets the event's lockedUntil to `ms` from now.
    async fn set_lease_end(&self, id: &str, ms: i64) {
        self.set_time(id, "lockedUntil", ms).await
    }
    /// Sets the event's processedAt to `ms` ago.
    async fn set_finished_ago(&self, id: &str, ms: i64) {
        self.set_time(id, "processedAt", -ms).await
    }
    /// Milliseconds from now to the event's nextRetryAt.
    async fn due_in(&self, id: &str) -> i64;
    /// The event's status, retryCount, lockedBy and lastError, and whether processedAt is
    /// set; `None` when there is no such row.
    async fn state(&self, id: &str) -> Option<State>;
    /// Runs `sql` in a transaction of its own connection and leaves it open: a producer
    /// that has not committed yet.
    async fn exec_held(&self, sql: &str) -> Box<dyn Held>;
    /// Drops the index the claim uses (to make drift).
    async fn drop_pending_index(&self);
    /// Gives the event a value this store cannot read as an event (whatever its own
    /// constraints let through); returns the column it spoiled.
    async fn spoil(&self, id: &str) -> &'static str;
    /// Gives the policy row of `key` a maxRetries this store's constraints let through but
    /// the worker cannot use.
    async fn spoil_policy(&self, key: &str);
}

/// A producer's open transaction ([`Fixture::exec_held`]).
#[outbox_core::async_trait]
pub trait Held: Send {
    /// Commits it.
    async fn commit(self: Box<Self>);
}

struct PgHeld(tokio_postgres::Client);

#[outbox_core::async_trait]
impl Held for PgHeld {
    async fn commit(self: Box<Self>) {
        self.0.batch_execute("COMMIT").await.unwrap();
    }
}

struct SqliteHeld(rusqlite::Connection);

#[outbox_core::async_trait]
impl Held for SqliteHeld {
    async fn commit(self: Box<Self>) {
        self.0.execute_batch("COMMIT").unwrap();
    }
}

struct MysqlHeld(mysql_async::Conn);

#[outbox_core::async_trait]
impl Held for MysqlHeld {
    async fn commit(self: Box<Self>) {
        use mysql_async::prelude::Queryable;
        let mut c = self.0;
        c.query_drop("COMMIT").await.unwrap();
    }
}

/// What a test checks of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub status: String,
    pub retry_count: i64,
    pub locked_by: Option<String>,
    pub last_error: Option<String>,
    pub processed: bool,
}

const KEY: &str = "conf.key";

async fn policy(f: &dyn Fixture, key: &str, max_retries: i32) {
    f.exec(&format!(
        r#"INSERT INTO "OutboxRetryPolicy" ("routingKey", "maxRetries", "retryInterval", "maxInterval") VALUES ('{key}', {max_retries}, 100, 60000)"#
    ))
    .await;
}

async fn event(f: &dyn Fixture, id: &str, key: &str, aggregate: &str) {
    f.exec(&format!(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload") VALUES ('{id}', 'Happened', 'thing.happened', '{aggregate}', '{key}', '{{"n": 12345678901234567890.5}}')"#
    ))
    .await;
    // Due a moment ago, in insertion order (some clocks give equal times).
    f.set_due_in(id, -1000).await;
}

fn result(c: &ClaimedEvent, action: CompletionAction) -> Completion {
    Completion {
        id: c.event.id.clone(),
        lease_owner: c.lease_owner.clone(),
        retry_count: c.event.retry_count,
        action,
    }
}

fn ids(l: &Leased) -> Vec<String> {
    let mut v: Vec<String> = l.events.iter().map(|e| e.event.id.clone()).collect();
    v.sort();
    v
}

async fn status(f: &dyn Fixture, id: &str) -> String {
    f.state(id).await.map(|s| s.status).unwrap_or_default()
}

const LEASE: Duration = Duration::from_secs(30);

/// Due PENDING events are leased once; not-due ones and paused keys are left; the event
/// comes back whole (payload text as stored).
pub async fn check_claim(f: &dyn Fixture) {
    let s = f.backend();
    policy(f, KEY, 3).await;
    policy(f, "conf.paused", 3).await;
    event(f, "c1", KEY, "a1").await;
    event(f, "c2", KEY, "a2").await;
    event(f, "c3", KEY, "a3").await;
    f.set_due_in("c3", 60_000).await;
    event(f, "p1", "conf.paused", "a4").await;

    let got = s
        .claim("w1", 10, LEASE, &["conf.paused".to_string()])
        .await
        .unwrap();
    assert_eq!(ids(&got), ["c1", "c2"]);
    assert!(got.unreadable.is_empty());
    let e = &got.events[0];
    assert_eq!(e.lease_owner, "w1");
    assert_eq!(e.event.routing_key, KEY);
    assert_eq!(e.event.event_name, "Happened");
    assert_eq!(e.event.retry_count, 0);
    assert!(
        e.event.payload.get().contains("12345678901234567890.5"),
        "{}",
        e.event.payload
    );
    let st = f.state("c1").await.unwrap();
    assert_eq!(
        (st.status.as_str(), st.locked_by.as_deref()),
        ("PROCESSING", Some("w1"))
    );
    assert!(s
        .claim("w2", 10, LEASE, &[])
        .await
        .unwrap()
        .events
        .iter()
        .all(|e| e.event.id == "p1"));
    assert_eq!(status(f, "c3").await, "PENDING");
    // A limit is a limit.
    event(f, "c4", KEY, "a5").await;
    event(f, "c5", KEY, "a6").await;
    assert_eq!(s.claim("w3", 1, LEASE, &[]).await.unwrap().len(), 1);
}

/// Results land only under the lease that was claimed (owner and attempt): a stale worker's
/// late result loses to the one that took the event over after its lease ran out.
pub async fn check_fenced_results(f: &dyn Fixture) {
    let s = f.backend();
    policy(f, KEY, 3).await;
    event(f, "f1", KEY, "a1").await;
    let a = s.claim("wa", 10, LEASE, &[]).await.unwrap().events;
    assert_eq!(a.len(), 1);
    let stale = a[0].clone();

    // The lease runs out; the reaper finds it and records the interrupted attempt.
    f.set_lease_end("f1", -1000).await;
    let expired = s.expired_leases(10).await.unwrap().events;
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].lease_owner, "wa");
    let reaped = result(
        &expired[0],
        CompletionAction::Retry {
            retry_count: 1,
            delay: Duration::ZERO,
            error: "lease expired".into(),
        },
    );
    assert_eq!(s.complete(&[reaped]).await.unwrap(), 1);
    let st = f.state("f1").await.unwrap();
    assert_eq!((st.status.as_str(), st.retry_count), ("PENDING", 1));
    assert_eq!(st.last_error.as_deref(), Some("lease expired"));

    let b = s.claim("wb", 10, LEASE, &[]).await.unwrap().events;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].event.retry_count, 1);
    // The stale worker's result changes nothing; the new holder's lands.
    assert_eq!(
        s.complete(&[result(&stale, CompletionAction::Sent)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(status(f, "f1").await, "PROCESSING");
    assert_eq!(
        s.complete(&[result(&b[0], CompletionAction::Sent)])
            .await
            .unwrap(),
        1
    );
    let st = f.state("f1").await.unwrap();
    assert_eq!(st.status, "SENT");
    assert!(st.processed && st.locked_by.is_none());
    // Once finished, no result changes it again.
    assert_eq!(
        s.complete(&[result(&b[0], CompletionAction::Sent)])
            .await
            .unwrap(),
        0
    );
}

/// Each kind of result writes what the contract says.
pub async fn check_result_kinds(f: &dyn Fixture) {
    let s = f.backend();
    policy(f, KEY, 3).await;
    for id in ["r-sent", "r-del", "r-retry", "r-fail", "r-back"] {
        event(f, id, KEY, id).await;
    }
    let got = s.claim("w", 10, LEASE, &[]).await.unwrap().events;
    assert_eq!(got.len(), 5);
    let by = |id: &str| got.iter().find(|e| e.event.id == id).unwrap();
    let results = vec![
        result(by("r-sent"), CompletionAction::Sent),
        result(by("r-del"), CompletionAction::Delete),
        result(
            by("r-retry"),
            CompletionAction::Retry {
                retry_count: 1,
                delay: Duration::from_secs(60),
                error: "HTTP 503".into(),
            },
        ),
        result(
            by("r-fail"),
            CompletionAction::Fail {
                error: "permanent failure: HTTP 400".into(),
                block_aggregate: false,
            },
        ),
        result(by("r-back"), CompletionAction::Release { note: None }),
    ];
    assert_eq!(s.complete(&results).await.unwrap(), 5);
    assert_eq!(status(f, "r-sent").await, "SENT");
    assert_eq!(f.state("r-del").await, None);
    let retry = f.state("r-retry").await.unwrap();
    assert_eq!((retry.status.as_str(), retry.retry_count), ("PENDING", 1));
    assert_eq!(retry.last_error.as_deref(), Some("HTTP 503"));
    let due = f.due_in("r-retry").await;
    assert!((50_000..=61_000).contains(&due), "due in {due} ms");
    let fail = f.state("r-fail").await.unwrap();
    assert_eq!(fail.status, "FAILED");
    assert!(fail.processed);
    assert_eq!(
        fail.last_error.as_deref(),
        Some("permanent failure: HTTP 400")
    );
    let back = f.state("r-back").await.unwrap();
    assert_eq!((back.status.as_str(), back.retry_count), ("PENDING", 0));
    // The given-back event is due at once; the retry is not.
    let again = s.claim("w", 10, LEASE, &[]).await.unwrap();
    assert_eq!(ids(&again), ["r-back"]);
    let next = s
        .next_due(&[])
        .await
        .unwrap()
        .expect("the retry is still pending");
    assert!(next > Duration::from_secs(50), "{next:?}");
}

/// Ordered claims lease an aggregate's head only, one at a time, in insertion order; a
/// FAILED head with blockOnFailure holds its aggregate back until it is unblocked.
/// An ordered event committed late is never overtaken by a later event of its aggregate
/// that committed first: while the earlier one's producer is still open, a claim either
/// waits for it (MySQL), leaves the aggregate alone (PostgreSQL), or the later insert
/// itself waits (SQLite: one writer at a time); once it commits, it goes first.
pub async fn check_late_commit(f: &dyn Fixture) {
    let s = f.backend();
    policy(f, KEY, 3).await;
    f.exec(&format!(
        r#"UPDATE "OutboxRetryPolicy" SET "ordered" = true WHERE "routingKey" = '{KEY}'"#
    ))
    .await;
    let insert = |id: &str| {
        format!(
            r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload") VALUES ('{id}', 'Happened', 'thing.happened', 'agg', '{KEY}', '{{}}')"#
        )
    };
    let held = f.exec_held(&insert("late")).await;
    let committer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        held.commit().await;
    });
    f.exec(&insert("early")).await;
    let keys = [KEY.to_string()];
    let during = s.claim_ordered("w", 10, LEASE, &keys, &[]).await.unwrap();
    assert!(
        !ids(&during).iter().any(|i| i == "early"),
        "the later event overtook one still being committed: {:?}",
        ids(&during)
    );
    committer.await.unwrap();
    let head = if during.is_empty() {
        s.claim_ordered("w", 10, LEASE, &keys, &[]).await.unwrap()
    } else {
        during
    };
    assert_eq!(ids(&head), ["late"], "the event committed late goes first");
}

pub async fn check_ordered(f: &dyn Fixture) {
    let s = f.backend();
    policy(f, KEY, 3).await;
    f.exec(&format!(
        r#"UPDATE "OutboxRetryPolicy" SET "ordered" = true, "blockOnFailure" = true WHERE "routingKey" = '{KEY}'"#
    ))
    .await;
    let rows = s.policies().await.unwrap();
    let p = rows.policies.iter().find(|p| p.routing_key == KEY).unwrap();
    assert!(p.ordered && p.block_on_failure && !p.paused);
    for id in ["o1", "o2", "o3"] {
        event(f, id, KEY, "agg").await;
    }
    event(f, "x1", KEY, "other").await;
    let keys = [KEY.to_string()];
    let first = s.claim_ordered("w", 10, LEASE, &keys, &[]).await.unwrap();
    assert_eq!(ids(&first), ["o1", "x1"]);
    assert!(s
        .claim_ordered("w", 10, LEASE, &keys, &[])
        .await
        .unwrap()
        .is_empty());
    let o1 = first.events.iter().find(|e| e.event.id == "o1").unwrap();
    s.complete(&[result(o1, CompletionAction::Sent)])
        .await
        .unwrap();
    let second = s.claim_ordered("w", 10, LEASE, &keys, &[]).await.unwrap();
    assert_eq!(ids(&second), ["o2"]);
    s.complete(&[result(
        &second.events[0],
        CompletionAction::Fail {
            error: "permanent failure".into(),
            block_aggregate: true,
        },
    )])
    .await
    .unwrap();
    let blocked = s.blocked_aggregates().await.unwrap();
    assert_eq!(blocked.len(), 1);
    assert_eq!(
        (
            blocked[0].aggregate_id.as_str(),
            blocked[0].event_id.as_str()
        ),
        ("agg", "o2")
    );
    assert!(s
        .claim_ordered("w", 10, LEASE, &keys, &[])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.unblock(&["agg".to_string()], "tester").await.unwrap(),
        ["agg"]
    );
    let third = s.claim_ordered("w", 10, LEASE, &keys, &[]).await.unwrap();
    assert_eq!(ids(&third), ["o3"]);
    // A paused ordered key is left alone.
    assert!(s
        .claim_ordered("w", 10, LEASE, &keys, &keys)
        .await
        .unwrap()
        .is_empty());
}

/// The operator's reads and actions: listings, counts, statistics, replay, purge, pause.
pub async fn check_operator(f: &dyn Fixture) {
    let s = f.backend();
    policy(f, KEY, 0).await;
    for id in ["d1", "d2", "d3"] {
        event(f, id, KEY, id).await;
    }
    let got = s.claim("w", 10, LEASE, &[]).await.unwrap().events;
    let fail = |c: &ClaimedEvent| {
        result(
            c,
            CompletionAction::Fail {
                error: format!("permanent failure: HTTP 400 for {}", c.event.id),
                block_aggregate: false,
            },
        )
    };
    let done: Vec<Completion> = got
        .iter()
        .map(|c| {
            if c.event.id == "d3" {
                result(c, CompletionAction::Sent)
            } else {
                fail(c)
            }
        })
        .collect();
    s.complete(&done).await.unwrap();

    let failed = EventFilter {
        status: Some(Status::Failed),
        ..EventFilter::default()
    };
    assert_eq!(s.count_events(&failed).await.unwrap(), 2);
    let listed = s.list_events(&failed, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].status(), Some(Status::Failed));
    assert_eq!(listed[0]["routingKey"], KEY);
    assert!(listed[0]["lastError"]
        .as_str()
        .unwrap()
        .contains("HTTP 400"));
    let payload = listed[0]
        .payload
        .as_ref()
        .expect("payload")
        .get()
        .to_string();
    assert!(payload.contains("12345678901234567890.5"), "{payload}");
    let by_error = EventFilter {
        error_contains: Some("for D1".into()),
        ..failed.clone()
    };
    assert_eq!(s.matching_ids(&by_error, None, 10).await.unwrap(), ["d1"]);
    assert_eq!(
        s.matching_ids(&failed, Some("d1"), 10).await.unwrap(),
        ["d2"]
    );

    let stats = s.stats(true).await.unwrap();
    let k = stats.iter().find(|k| k.routing_key == KEY).unwrap();
    assert_eq!((k.pending, k.processing, k.sent, k.failed), (0, 0, 1, 2));

    let replayed = s.replay_failed(&by_error, 100, "tester").await.unwrap();
    assert_eq!(replayed, ["d1"]);
    let st = f.state("d1").await.unwrap();
    assert_eq!(
        (st.status.as_str(), st.retry_count, st.processed),
        ("PENDING", 0, false)
    );
    assert_eq!(
        s.purge_failed(&failed, 100, "tester", false).await.unwrap(),
        ["d2"]
    );
    assert_eq!(f.state("d2").await, None);

    assert!(s.set_paused(KEY, true, "tester").await.unwrap());
    assert!(s.policies().await.unwrap().policies[0].paused);
    assert!(!s.set_paused("conf.none", true, "tester").await.unwrap());
    assert!(s.set_paused(KEY, false, "tester").await.unwrap());

    // Purging finished rows by age.
    f.set_finished_ago("d3", 3_600_000).await;
    assert_eq!(
        s.purgeable(Status::Sent, Duration::from_secs(60))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.purgeable(Status::Sent, Duration::from_secs(7200))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.purge(Status::Sent, Duration::from_secs(60), 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(f.state("d3").await, None);

    let summary = s.pending_summary().await.unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!((summary[0].0.as_str(), summary[0].1), (KEY, 1));
}

/// The dashboard's reads: newest-first pages that continue after an event (ties on
/// occurredAt broken by id, whatever the status filter), the workers holding leases,
/// counts without SENT rows, and a row estimate read without counting.
pub async fn check_dashboard_reads(f: &dyn Fixture) {
    let s = f.backend();
    policy(f, KEY, 0).await;
    for (id, ago) in [
        ("p1", 5000),
        ("p2", 4000),
        ("p3", 4000),
        ("p4", 3000),
        ("p5", 1000),
    ] {
        event(f, id, KEY, id).await;
        f.set_time(id, "occurredAt", -ago).await;
    }
    f.set_due_in("p1", -9000).await;
    f.set_due_in("p2", -8000).await;
    let page = |after: Option<&str>, status: Option<Status>| EventFilter {
        status,
        page: Some(match after {
            Some(id) => Page::After(id.into()),
            None => Page::First,
        }),
        ..EventFilter::default()
    };
    let ids = |events: Vec<outbox_core::ListedEvent>| -> Vec<String> {
        events
            .iter()
            .map(|e| e["id"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let got = ids(s
            .list_events(&page(after.as_deref(), None), 2)
            .await
            .unwrap());
        if got.is_empty() {
            break;
        }
        after = got.last().cloned();
        seen.extend(got);
        assert!(seen.len() <= 5, "pages repeat: {seen:?}");
    }
    assert_eq!(seen, ["p5", "p4", "p3", "p2", "p1"]);
    // A time range: from 4.5 s ago (inclusive) to 2 s ago (exclusive).
    let now = chrono::Utc::now();
    let range = EventFilter {
        occurred_from: Some(now - chrono::Duration::milliseconds(4500)),
        occurred_to: Some(now - chrono::Duration::milliseconds(2000)),
        page: Some(Page::First),
        ..EventFilter::default()
    };
    assert_eq!(
        ids(s.list_events(&range, 10).await.unwrap()),
        ["p4", "p3", "p2"]
    );
    assert_eq!(s.count_events(&range).await.unwrap(), 3);
    assert!(s
        .list_events(&page(Some("no-such-event"), None), 2)
        .await
        .unwrap()
        .is_empty());

    // Lease two (the oldest first), fail p1 and send p2: FAILED pages go by occurrence too.
    let got = s.claim("w-a", 2, LEASE, &[]).await.unwrap().events;
    assert_eq!(got.len(), 2);
    let leases = s.leases().await.unwrap();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!((leases[0].owner.as_str(), leases[0].events), ("w-a", 2));
    assert!(leases[0]
        .lease_until
        .is_some_and(|t| t > chrono::Utc::now()));
    let done: Vec<Completion> = got
        .iter()
        .map(|c| {
            let action = if c.event.id == "p1" {
                CompletionAction::Fail {
                    error: "permanent".into(),
                    block_aggregate: false,
                }
            } else {
                CompletionAction::Sent
            };
            result(c, action)
        })
        .collect();
    s.complete(&done).await.unwrap();
    assert!(s.leases().await.unwrap().is_empty());
    f.exec(r#"UPDATE "OutboxEvent" SET "status" = 'FAILED' WHERE "id" = 'p4'"#)
        .await;
    let failed = ids(s
        .list_events(&page(None, Some(Status::Failed)), 1)
        .await
        .unwrap());
    assert_eq!(failed, ["p4"]);
    let failed = ids(s
        .list_events(&page(Some("p4"), Some(Status::Failed)), 5)
        .await
        .unwrap());
    assert_eq!(failed, ["p1"]);

    // Without SENT: the other counts stay exact.
    let all = s.stats(true).await.unwrap();
    let unsent = s.stats(false).await.unwrap();
    let k = |v: &[outbox_core::KeyStats]| {
        let k = v.iter().find(|k| k.routing_key == KEY).unwrap().clone();
        (k.pending, k.processing, k.sent, k.failed)
    };
    assert_eq!(k(&all), (2, 0, 1, 2));
    assert_eq!(k(&unsent), (2, 0, 0, 2));
    // A store may keep no estimate (SQLite); one it gives is a row count.
    assert!(s.estimated_rows().await.unwrap().is_none_or(|n| n >= 0));
    let sent = EventFilter {
        routing_key: Some(KEY.into()),
        status: Some(Status::Sent),
        ..EventFilter::default()
    };
    assert!(s
        .estimated_count(&sent)
        .await
        .unwrap()
        .is_none_or(|n| n >= 0));
}

/// The lease reaper's look-up finds only leases that ran out, oldest first, up to its
/// limit; purging finished rows respects its limit; the next-due look-up leaves paused keys
/// out.
pub async fn check_expiry_due_and_limits(f: &dyn Fixture) {
    let s = f.backend();
    policy(f, KEY, 3).await;
    policy(f, "conf.paused", 3).await;
    assert_eq!(s.next_due(&[]).await.unwrap(), None);
    for id in ["l1", "l2", "l3"] {
        event(f, id, KEY, id).await;
    }
    let got = s.claim("w", 10, LEASE, &[]).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(s.expired_leases(10).await.unwrap().is_empty());
    f.set_lease_end("l2", -5000).await;
    f.set_lease_end("l3", -1000).await;
    let expired = s.expired_leases(10).await.unwrap();
    let order: Vec<&str> = expired.events.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(order, ["l2", "l3"], "oldest lease first");
    assert_eq!(s.expired_leases(1).await.unwrap().len(), 1);

    // Finished rows go in batches of the limit.
    let sent: Vec<Completion> = got
        .events
        .iter()
        .map(|c| result(c, CompletionAction::Sent))
        .collect();
    assert_eq!(s.complete(&sent).await.unwrap(), 3);
    for id in ["l1", "l2", "l3"] {
        f.set_finished_ago(id, 120_000).await;
    }
    assert_eq!(
        s.purge(Status::Sent, Duration::from_secs(60), 2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.purge(Status::Sent, Duration::from_secs(60), 2)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.purge(Status::Failed, Duration::from_secs(60), 2)
            .await
            .unwrap(),
        0
    );

    // The next due event, paused keys left out.
    event(f, "later", KEY, "x").await;
    f.set_due_in("later", 60_000).await;
    event(f, "held", "conf.paused", "y").await;
    let paused = ["conf.paused".to_string()];
    let next = s.next_due(&paused).await.unwrap().expect("one is pending");
    assert!(
        next > Duration::from_secs(50) && next <= Duration::from_secs(61),
        "{next:?}"
    );
    assert_eq!(s.next_due(&[]).await.unwrap(), Some(Duration::ZERO));
}

/// A row the store cannot read comes back on its own, never failing the claim: its
/// batch-mates are events, it is recorded FAILED under its lease alone, naming the column.
pub async fn check_unreadable_rows(f: &dyn Fixture) {
    let s = f.backend();
    policy(f, KEY, 3).await;
    for id in ["u-good", "u-bad"] {
        event(f, id, KEY, id).await;
    }
    let column = f.spoil("u-bad").await;
    let got = s.claim("w", 10, LEASE, &[]).await.unwrap();
    assert_eq!(ids(&got), ["u-good"]);
    assert_eq!(got.unreadable.len(), 1);
    let bad = &got.unreadable[0];
    assert_eq!((bad.id.as_str(), bad.lease_owner.as_str()), ("u-bad", "w"));
    assert_eq!(bad.routing_key.as_deref(), Some(KEY));
    assert!(
        bad.problem.contains(column),
        "{} names {column}",
        bad.problem
    );
    // Fenced by the lease token: another owner's write changes nothing.
    let mut stranger = bad.clone();
    stranger.lease_owner = "someone-else".into();
    assert_eq!(s.fail_unreadable(&[stranger]).await.unwrap(), 0);
    assert_eq!(
        s.fail_unreadable(std::slice::from_ref(bad)).await.unwrap(),
        1
    );
    let st = f.state("u-bad").await.unwrap();
    assert_eq!(st.status, "FAILED");
    assert!(st.processed && st.locked_by.is_none());
    let error = st.last_error.unwrap();
    assert!(
        error.starts_with("unreadable row: ") && error.contains(column),
        "{error}"
    );
    // The reaper's look-up reads such a row on its own too.
    event(f, "u-late", KEY, "u-late").await;
    f.spoil("u-late").await;
    let again = s.claim("w2", 10, LEASE, &[]).await.unwrap();
    assert_eq!(again.unreadable.len(), 1);
    f.set_lease_end("u-late", -1000).await;
    let expired = s.expired_leases(10).await.unwrap();
    assert!(expired.events.is_empty());
    assert_eq!(expired.unreadable.len(), 1);
    assert_eq!(expired.unreadable[0].lease_owner, "w2");
}

/// A policy row that cannot be used is reported beside the usable ones, naming its column,
/// never failing the read of the others.
pub async fn check_broken_policy_rows(f: &dyn Fixture) {
    let s = f.backend();
    policy(f, KEY, 3).await;
    policy(f, "conf.broken", 3).await;
    f.spoil_policy("conf.broken").await;
    let rows = s.policies().await.unwrap();
    let usable: Vec<&str> = rows
        .policies
        .iter()
        .map(|p| p.routing_key.as_str())
        .collect();
    assert_eq!(usable, [KEY]);
    assert_eq!(rows.broken.len(), 1);
    assert_eq!(rows.broken[0].routing_key.as_deref(), Some("conf.broken"));
    assert!(
        rows.broken[0].problem.contains("maxRetries"),
        "{:?}",
        rows.broken
    );
}

/// Migrations: a fresh deploy is clean, a second applies nothing, a dropped index is
/// reported as drift, a reset plan names the tables.
pub async fn check_migrations(f: &dyn Fixture) {
    let s = f.backend();
    let st = s.schema_status().await.unwrap();
    assert!(st.problems().is_empty(), "{:?}", st.problems());
    assert!(s.deploy().await.unwrap().is_empty());
    f.drop_pending_index().await;
    let st = s.schema_status().await.unwrap();
    assert_eq!(st.worst(), Some(ProblemKind::Drift), "{:?}", st.problems());
    assert!(
        st.problems()
            .iter()
            .any(|p| p.what.contains("OutboxEvent_pending_idx")),
        "{:?}",
        st.problems()
    );
    let plan = s.reset_plan().await.unwrap();
    assert!(plan.iter().any(|p| p.contains("OutboxEvent")), "{plan:?}");
    let (ran, applied) = s.reset().await.unwrap();
    assert_eq!(ran, plan);
    assert!(!applied.is_empty());
    assert!(s.schema_status().await.unwrap().problems().is_empty());
}

/// An insert wakes a listener; a policy change tells it so.
pub async fn check_notifications(f: &dyn Fixture) {
    let s = f.backend();
    s.ping().await.unwrap();
    let mut stream = s.listen().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    event(f, "n1", KEY, "a").await;
    let mut heard = Vec::new();
    let wait = async {
        while let Some(n) = stream.next().await {
            heard.push(n);
            if n == Notification::Events {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("an insert is heard");
    policy(f, "conf.new", 1).await;
    let wait = async {
        while let Some(n) = stream.next().await {
            if n == Notification::Policies {
                return;
            }
        }
        panic!("the stream ended");
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("a policy change is heard");
}

/// PostgreSQL: a database of its own with the worker's migrations.
pub struct PgFixture {
    pub db: TestDb,
    store: PgStore,
}

impl PgFixture {
    pub async fn new() -> PgFixture {
        let db = TestDb::new().await;
        db.migrate().await;
        let store = PgStore::new(&PgStoreOptions::new(db.url.clone())).unwrap();
        PgFixture { db, store }
    }

    async fn one(&self, sql: &str, id: &str) -> Option<tokio_postgres::Row> {
        self.db.client().await.query_opt(sql, &[&id]).await.unwrap()
    }
}

#[outbox_core::async_trait]
impl Fixture for PgFixture {
    fn backend(&self) -> &dyn Backend {
        &self.store
    }
    async fn exec(&self, sql: &str) {
        self.db.client().await.batch_execute(sql).await.unwrap();
    }
    async fn set_time(&self, id: &str, column: &str, ms: i64) {
        self.exec(&format!(
            r#"UPDATE "OutboxEvent" SET "{column}" = now() + make_interval(secs => {ms} / 1000.0) WHERE "id" = '{id}'"#
        ))
        .await;
    }
    async fn due_in(&self, id: &str) -> i64 {
        let r = self
            .one(
                r#"SELECT (extract(epoch FROM "nextRetryAt" - clock_timestamp()) * 1000)::int8 FROM "OutboxEvent" WHERE "id" = $1"#,
                id,
            )
            .await
            .unwrap();
        r.get(0)
    }
    async fn state(&self, id: &str) -> Option<State> {
        self.one(
            r#"SELECT "status", "retryCount"::int8, "lockedBy", "lastError", "processedAt" IS NOT NULL FROM "OutboxEvent" WHERE "id" = $1"#,
            id,
        )
        .await
        .map(|r| State {
            status: r.get(0),
            retry_count: r.get(1),
            locked_by: r.get(2),
            last_error: r.get(3),
            processed: r.get(4),
        })
    }
    async fn exec_held(&self, sql: &str) -> Box<dyn Held> {
        let c = self.db.client().await;
        c.batch_execute(&format!("BEGIN; {sql}")).await.unwrap();
        Box::new(PgHeld(c))
    }
    async fn drop_pending_index(&self) {
        self.exec(r#"DROP INDEX "OutboxEvent_pending_idx""#).await;
    }
    async fn spoil(&self, id: &str) -> &'static str {
        // An infinite occurredAt: migration 0005's check refuses it, so it goes first.
        self.exec(&format!(
            r#"ALTER TABLE "OutboxEvent" DROP CONSTRAINT IF EXISTS "OutboxEvent_occurredAt_check";
               UPDATE "OutboxEvent" SET "occurredAt" = 'infinity' WHERE "id" = '{id}'"#
        ))
        .await;
        "occurredAt"
    }
    async fn spoil_policy(&self, key: &str) {
        self.exec(&format!(
            r#"ALTER TABLE "OutboxRetryPolicy" ALTER COLUMN "maxRetries" DROP NOT NULL;
               UPDATE "OutboxRetryPolicy" SET "maxRetries" = NULL WHERE "routingKey" = '{key}'"#
        ))
        .await;
    }
}

/// SQLite: a database file of its own in a scratch folder, migrated.
pub struct SqliteFixture {
    _dir: TempDir,
    path: std::path::PathBuf,
    store: SqliteStore,
}

impl SqliteFixture {
    pub async fn new() -> SqliteFixture {
        let dir = TempDir::new();
        let path = dir.0.join(format!("{}.db", unique("outbox")));
        let store = SqliteStore::new(&SqliteOptions { path: path.clone() });
        store.deploy().await.unwrap();
        SqliteFixture {
            _dir: dir,
            path,
            store,
        }
    }

    fn conn(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(&self.path).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c
    }
}

#[outbox_core::async_trait]
impl Fixture for SqliteFixture {
    fn backend(&self) -> &dyn Backend {
        &self.store
    }
    async fn exec(&self, sql: &str) {
        self.conn().execute_batch(sql).unwrap();
    }
    async fn set_time(&self, id: &str, column: &str, ms: i64) {
        self.exec(&format!(
            r#"UPDATE "OutboxEvent" SET "{column}" = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) + ({ms}) WHERE "id" = '{id}'"#
        ))
        .await;
    }
    async fn due_in(&self, id: &str) -> i64 {
        self.conn()
            .query_row(
                r#"SELECT "nextRetryAt" - CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM "OutboxEvent" WHERE "id" = ?1"#,
                [id],
                |r| r.get(0),
            )
            .unwrap()
    }
    async fn state(&self, id: &str) -> Option<State> {
        let c = self.conn();
        let mut stmt = c
            .prepare(r#"SELECT "status", "retryCount", "lockedBy", "lastError", "processedAt" IS NOT NULL FROM "OutboxEvent" WHERE "id" = ?1"#)
            .unwrap();
        let mut rows = stmt.query([id]).unwrap();
        rows.next().unwrap().map(|r| State {
            status: r.get(0).unwrap(),
            retry_count: r.get(1).unwrap(),
            locked_by: r.get(2).unwrap(),
            last_error: r.get(3).unwrap(),
            processed: r.get(4).unwrap(),
        })
    }
    async fn exec_held(&self, sql: &str) -> Box<dyn Held> {
        let c = self.conn();
        c.execute_batch(&format!("BEGIN IMMEDIATE; {sql}")).unwrap();
        Box::new(SqliteHeld(c))
    }
    async fn drop_pending_index(&self) {
        self.exec(r#"DROP INDEX "OutboxEvent_pending_idx""#).await;
    }
    async fn spoil(&self, id: &str) -> &'static str {
        // Beyond 32 bits: the column's check (>= 0) lets it through.
        self.exec(&format!(
            r#"UPDATE "OutboxEvent" SET "maxRetries" = 5000000000 WHERE "id" = '{id}'"#
        ))
        .await;
        "maxRetries"
    }
    async fn spoil_policy(&self, key: &str) {
        // Text compares above every number in SQLite, so the `>= 0` check lets it through.
        self.exec(&format!(
            r#"UPDATE "OutboxRetryPolicy" SET "maxRetries" = 'many' WHERE "routingKey" = '{key}'"#
        ))
        .await;
    }
}

/// The tables a Prisma app on SQLite creates from `outbox schema print --format prisma`
/// (Prisma's DDL: DATETIME, JSONB, BOOLEAN, no checks, ids without a default), plus the
/// printed extra SQL.
pub const PRISMA_SQLITE_DDL: &str = r#"
CREATE TABLE "OutboxEvent" (
    "id" TEXT NOT NULL PRIMARY KEY, "eventName" TEXT NOT NULL, "eventType" TEXT NOT NULL,
    "aggregateId" TEXT NOT NULL, "routingKey" TEXT NOT NULL, "payload" JSONB NOT NULL, "headers" JSONB,
    "status" TEXT NOT NULL DEFAULT 'PENDING', "occurredAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "retryCount" INTEGER NOT NULL DEFAULT 0, "maxRetries" INTEGER, "retryInterval" INTEGER, "maxInterval" INTEGER,
    "nextRetryAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, "lockedBy" TEXT, "lockedUntil" DATETIME,
    "lastError" TEXT, "processedAt" DATETIME, "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE "OutboxRetryPolicy" (
    "routingKey" TEXT NOT NULL PRIMARY KEY, "maxRetries" INTEGER NOT NULL, "retryInterval" INTEGER NOT NULL,
    "maxInterval" INTEGER NOT NULL, "backoffMultiplier" REAL NOT NULL DEFAULT 2, "jitter" REAL NOT NULL DEFAULT 0,
    "ordered" BOOLEAN NOT NULL DEFAULT false, "paused" BOOLEAN NOT NULL DEFAULT false,
    "blockOnFailure" BOOLEAN NOT NULL DEFAULT false, "description" TEXT,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, "updatedAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE "OutboxBlockedAggregate" (
    "aggregateId" TEXT NOT NULL PRIMARY KEY, "eventId" TEXT NOT NULL, "routingKey" TEXT NOT NULL,
    "reason" TEXT, "blockedAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE "OutboxAudit" (
    "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actor" TEXT NOT NULL, "action" TEXT NOT NULL, "eventId" TEXT, "routingKey" TEXT, "detail" TEXT
);
CREATE INDEX "OutboxEvent_status_nextRetryAt_idx" ON "OutboxEvent"("status", "nextRetryAt");
CREATE INDEX "OutboxEvent_status_lockedUntil_idx" ON "OutboxEvent"("status", "lockedUntil");
CREATE INDEX "OutboxEvent_aggregateId_status_idx" ON "OutboxEvent"("aggregateId", "status");
CREATE INDEX "OutboxAudit_at_idx" ON "OutboxAudit"("at");
"#;

/// SQLite with app-owned tables as a Prisma app makes them, timestamps stored as ISO-8601
/// text (Prisma's driver adapters' default), adopted by the store. The migration checks
/// are not for it: the app's migrations own these tables.
pub struct SqliteAppFixture(SqliteFixture);

impl SqliteAppFixture {
    pub async fn new() -> SqliteAppFixture {
        let dir = TempDir::new();
        let path = dir.0.join(format!("{}.db", unique("outbox-app")));
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(PRISMA_SQLITE_DDL).unwrap();
        c.execute_batch(&outbox_store::sqlite::print::prisma_extra_sql())
            .unwrap();
        drop(c);
        let mut store = SqliteStore::new(&SqliteOptions { path: path.clone() });
        let overrides = outbox_core::Overrides {
            timestamp_format: Some("iso8601".into()),
            ..Default::default()
        };
        let adoption = store.adopt(&overrides).await.unwrap();
        assert!(adoption.usable, "{:?}", adoption.errors);
        assert!(adoption.warnings.is_empty(), "{:?}", adoption.warnings);
        SqliteAppFixture(SqliteFixture {
            _dir: dir,
            path,
            store,
        })
    }
}

/// `ms` from now as ISO-8601 text, the way Prisma's SQLite adapters store it.
const ISO_FROM_NOW: &str =
    "strftime('%Y-%m-%dT%H:%M:%f+00:00', (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) + (MS)) / 1000.0, 'unixepoch')";

#[outbox_core::async_trait]
impl Fixture for SqliteAppFixture {
    fn backend(&self) -> &dyn Backend {
        &self.0.store
    }
    async fn exec(&self, sql: &str) {
        self.0.exec(sql).await
    }
    async fn set_time(&self, id: &str, column: &str, ms: i64) {
        let at = ISO_FROM_NOW.replace("MS", &ms.to_string());
        self.exec(&format!(
            r#"UPDATE "OutboxEvent" SET "{column}" = {at} WHERE "id" = '{id}'"#
        ))
        .await;
    }
    async fn due_in(&self, id: &str) -> i64 {
        self.0
            .conn()
            .query_row(
                r#"SELECT CAST(round((julianday("nextRetryAt") - julianday('now')) * 86400000) AS INTEGER), typeof("nextRetryAt") FROM "OutboxEvent" WHERE "id" = ?1"#,
                [id],
                |r| {
                    // The worker writes this table's timestamps in its own form.
                    assert_eq!(r.get::<_, String>(1)?, "text");
                    r.get(0)
                },
            )
            .unwrap()
    }
    async fn state(&self, id: &str) -> Option<State> {
        self.0.state(id).await
    }
    async fn exec_held(&self, sql: &str) -> Box<dyn Held> {
        self.0.exec_held(sql).await
    }
    async fn drop_pending_index(&self) {
        unreachable!("the migration checks are not run on app-owned tables")
    }
    async fn spoil(&self, id: &str) -> &'static str {
        self.0.spoil(id).await
    }
    async fn spoil_policy(&self, key: &str) {
        self.0.spoil_policy(key).await
    }
}

/// MySQL / MariaDB: a database of its own on the local server (127.0.0.1:3306, root without
/// a password; scripts/services starts it), with the worker's migrations; dropped at the end.
pub struct MysqlFixture {
    name: String,
    pool: mysql_async::Pool,
    store: outbox_store::mysql::MysqlStore,
}

/// The local MySQL / MariaDB server for tests.
pub const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306";

/// The tables a Prisma app on MySQL / MariaDB has for the printed models (Prisma's DDL,
/// kept beside the interop test), without the worker's extra SQL.
pub const PRISMA_MYSQL_DDL: &str = include_str!("../../../interop/prisma/prisma-mysql-ddl.sql");

impl MysqlFixture {
    /// The worker's own tables (its migrations).
    pub async fn new() -> MysqlFixture {
        MysqlFixture::with(None).await
    }

    /// `ddl`'s tables, adopted as app-owned (`None`: the worker's migrations).
    pub async fn with(ddl: Option<&str>) -> MysqlFixture {
        use mysql_async::prelude::Queryable;
        let name = unique("outbox_t");
        let admin = mysql_async::Pool::new(MYSQL_URL);
        let mut c = admin
            .get_conn()
            .await
            .expect("MariaDB on 127.0.0.1:3306 (scripts/services starts it)");
        c.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .unwrap();
        drop(c);
        admin.disconnect().await.unwrap();
        let url = format!("{MYSQL_URL}/{name}");
        let mut store = outbox_store::mysql::MysqlStore::new(&url, 4).unwrap();
        match ddl {
            None => {
                store.deploy().await.unwrap();
            }
            Some(ddl) => {
                store.run_script(ddl).await.unwrap();
                store
                    .run_script(&outbox_store::mysql::print::prisma_extra_sql())
                    .await
                    .unwrap();
                let adoption = store.adopt(&Default::default()).await.unwrap();
                assert!(adoption.usable, "{:?}", adoption.errors);
                assert!(adoption.warnings.is_empty(), "{:?}", adoption.warnings);
            }
        }
        // The fixture's own connections: UTC, ANSI quotes (the suite's SQL quotes names with
        // double quotes), and checks that can be switched off to spoil rows.
        let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&url).unwrap())
            .init(vec![
                "SET time_zone = '+00:00'",
                "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')",
            ])
            .pool_opts(mysql_async::PoolOpts::default().with_reset_connection(false));
        MysqlFixture {
            name,
            pool: mysql_async::Pool::new(opts),
            store,
        }
    }

    async fn conn(&self) -> mysql_async::Conn {
        self.pool.get_conn().await.unwrap()
    }
}

impl Drop for MysqlFixture {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A runtime of its own: the test's may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use mysql_async::prelude::Queryable;
                if let Ok(mut c) = mysql_async::Conn::from_url(MYSQL_URL).await {
                    let _ = c
                        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                        .await;
                    let _ = c.disconnect().await;
                }
            });
        })
        .join();
    }
}

/// MySQL / MariaDB with the tables a Prisma app makes ([`PRISMA_MYSQL_DDL`] and the printed
/// extra SQL), adopted as app-owned.
pub struct MysqlAppFixture(MysqlFixture);

impl MysqlAppFixture {
    pub async fn new() -> MysqlAppFixture {
        MysqlAppFixture(MysqlFixture::with(Some(PRISMA_MYSQL_DDL)).await)
    }
}

impl std::ops::Deref for MysqlAppFixture {
    type Target = MysqlFixture;
    fn deref(&self) -> &MysqlFixture {
        &self.0
    }
}

#[outbox_core::async_trait]
impl Fixture for MysqlAppFixture {
    fn backend(&self) -> &dyn Backend {
        self.0.backend()
    }
    async fn exec(&self, sql: &str) {
        self.0.exec(sql).await
    }
    async fn set_time(&self, id: &str, column: &str, ms: i64) {
        self.0.set_time(id, column, ms).await
    }
    async fn due_in(&self, id: &str) -> i64 {
        self.0.due_in(id).await
    }
    async fn state(&self, id: &str) -> Option<State> {
        self.0.state(id).await
    }
    async fn exec_held(&self, sql: &str) -> Box<dyn Held> {
        self.0.exec_held(sql).await
    }
    async fn drop_pending_index(&self) {
        unreachable!("the migration checks are not run on app-owned tables")
    }
    async fn spoil(&self, id: &str) -> &'static str {
        self.0.spoil(id).await
    }
    async fn spoil_policy(&self, key: &str) {
        self.0.spoil_policy(key).await
    }
}

#[outbox_core::async_trait]
impl Fixture for MysqlFixture {
    fn backend(&self) -> &dyn Backend {
        &self.store
    }
    async fn exec(&self, sql: &str) {
        use mysql_async::prelude::Queryable;
        self.conn().await.query_drop(sql).await.unwrap();
    }
    async fn set_time(&self, id: &str, column: &str, ms: i64) {
        self.exec(&format!(
            r#"UPDATE "OutboxEvent" SET "{column}" = NOW(3) + INTERVAL ({ms}) * 1000 MICROSECOND WHERE "id" = '{id}'"#
        ))
        .await;
    }
    async fn due_in(&self, id: &str) -> i64 {
        use mysql_async::prelude::Queryable;
        let ms: Option<i64> = self
            .conn()
            .await
            .exec_first(
                r#"SELECT TIMESTAMPDIFF(MICROSECOND, NOW(3), "nextRetryAt") DIV 1000 FROM "OutboxEvent" WHERE "id" = ?"#,
                (id,),
            )
            .await
            .unwrap();
        ms.unwrap()
    }
    async fn state(&self, id: &str) -> Option<State> {
        use mysql_async::prelude::Queryable;
        type Row = (String, i64, Option<String>, Option<String>, bool);
        let row: Option<Row> = self
            .conn()
            .await
            .exec_first(
                r#"SELECT "status", "retryCount", "lockedBy", "lastError", "processedAt" IS NOT NULL FROM "OutboxEvent" WHERE "id" = ?"#,
                (id,),
            )
            .await
            .unwrap();
        row.map(
            |(status, retry_count, locked_by, last_error, processed)| State {
                status,
                retry_count,
                locked_by,
                last_error,
                processed,
            },
        )
    }
    async fn exec_held(&self, sql: &str) -> Box<dyn Held> {
        use mysql_async::prelude::Queryable;
        let mut c = self.conn().await;
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop(sql).await.unwrap();
        Box::new(MysqlHeld(c))
    }
    async fn drop_pending_index(&self) {
        self.exec(r#"DROP INDEX "OutboxEvent_pending_idx" ON "OutboxEvent""#)
            .await;
    }
    async fn spoil(&self, id: &str) -> &'static str {
        // MariaDB lets a session switch its checks off (as an import or an old row would).
        self.exec(&format!(
            r#"SET SESSION check_constraint_checks = OFF; UPDATE "OutboxEvent" SET "payload" = 'not json' WHERE "id" = '{id}'"#
        ))
        .await;
        "payload"
    }
    async fn spoil_policy(&self, key: &str) {
        self.exec(&format!(
            r#"SET SESSION check_constraint_checks = OFF; UPDATE "OutboxRetryPolicy" SET "maxRetries" = -1 WHERE "routingKey" = '{key}'"#
        ))
        .await;
    }
}
