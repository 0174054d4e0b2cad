//! Where the outbox lives physically: table and column names, and the few type facts the
//! statements must respect (enum status, timestamps without time zone, a non-text id).
//! Worker-owned tables use the canonical layout; app-owned tables get one resolved by
//! introspection. Every statement is generated from a layout, once.

use super::quote_ident;
use outbox_core::Status;
use std::collections::BTreeMap;

pub use crate::adopt::{
    AUDIT_TABLE, BLOCKED_TABLE, EVENT_OPTIONAL, EVENT_RECOMMENDED, EVENT_REQUIRED, EVENT_TABLE,
    POLICY_OPTIONAL, POLICY_REQUIRED, POLICY_TABLE,
};
/// Logical timestamp columns of `"OutboxEvent"`.
pub const EVENT_TIMESTAMPS: &[&str] = &[
    "occurredAt",
    "nextRetryAt",
    "lockedUntil",
    "processedAt",
    "createdAt",
];

/// The logical columns of a claimed (or expired) row, in the order the statements return
/// them and [`super::read_row`] reads them.
pub(crate) const RETURNED: [&str; 14] = [
    "id",
    "eventName",
    "eventType",
    "aggregateId",
    "routingKey",
    "payload",
    "headers",
    "occurredAt",
    "retryCount",
    "maxRetries",
    "retryInterval",
    "maxInterval",
    "lockedBy",
    "nextRetryAt",
];

/// The policy columns the worker reads, in order, each with the value an absent optional
/// column reads as (NULL for the required ones).
pub const POLICY_READ: &[(&str, &str)] = &[
    ("routingKey", "NULL"),
    ("maxRetries", "NULL"),
    ("retryInterval", "NULL"),
    ("maxInterval", "NULL"),
    ("backoffMultiplier", "2"),
    ("jitter", "0"),
    ("ordered", "false"),
    ("paused", "false"),
    ("blockOnFailure", "false"),
];

/// The advisory-lock class (first key) of the aggregate buckets that order producers and
/// ordered claims (see migration 0003).
pub const ORDER_LOCK_CLASS: i32 = 1_869_968_482;

/// The physical shape of the two tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Schema holding both tables.
    pub schema: String,
    /// Physical name of the event table.
    pub event_table: String,
    /// Physical name of the policy table.
    pub policy_table: String,
    /// Logical → physical column of the event table (absent optional columns are missing).
    pub event_columns: BTreeMap<String, String>,
    /// Logical → physical column of the policy table.
    pub policy_columns: BTreeMap<String, String>,
    /// SQL type of the id column (`text`, `uuid`, `character varying(191)`...).
    pub id_type: String,
    /// The status column's enum type, schema-qualified and quoted; `None` for text.
    pub status_enum: Option<String>,
    /// Logical timestamp columns stored without time zone (read and written as UTC).
    pub naive_timestamps: Vec<String>,
    /// Whether `nextRetryAt` may be NULL (then NULL means "due now").
    pub next_retry_nullable: bool,
    /// The SQL type of lastError where it is not `text` (e.g. `character varying(191)`).
    pub last_error_type: Option<String>,
    /// Other required logical event columns that allow NULL (app-owned tables): a NULL
    /// `retryCount` is read as 0 (and stored as 0 by the claim), a NULL `routingKey` does
    /// not hide the row from claims, and a NULL elsewhere makes that row unreadable.
    pub nullable: Vec<String>,
    /// Physical name of the blocked-aggregates table (same schema), when there is one.
    pub blocked_table: Option<String>,
    /// Physical name of the audit table (same schema), when there is one.
    pub audit_table: Option<String>,
}

impl Layout {
    /// The layout our migrations create in `schema`.
    pub fn canonical(schema: &str) -> Layout {
        let all = |names: &[&[&str]]| -> BTreeMap<String, String> {
            names
                .iter()
                .flat_map(|n| n.iter())
                .map(|n| (n.to_string(), n.to_string()))
                .collect()
        };
        Layout {
            schema: schema.to_string(),
            event_table: EVENT_TABLE.to_string(),
            policy_table: POLICY_TABLE.to_string(),
            event_columns: all(&[EVENT_REQUIRED, EVENT_OPTIONAL, EVENT_RECOMMENDED]),
            policy_columns: all(&[POLICY_REQUIRED, POLICY_OPTIONAL]),
            id_type: "text".to_string(),
            status_enum: None,
            naive_timestamps: Vec::new(),
            next_retry_nullable: false,
            nullable: Vec::new(),
            last_error_type: None,
            blocked_table: Some(BLOCKED_TABLE.to_string()),
            audit_table: Some(AUDIT_TABLE.to_string()),
        }
    }

    /// `"schema"."table"` of the event table.
    pub fn events(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(&self.event_table)
        )
    }

    /// `"schema"."table"` of the policy table.
    pub fn policies(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(&self.policy_table)
        )
    }

    /// Quoted physical name of an event column (which must be mapped).
    pub(crate) fn ev(&self, logical: &str) -> String {
        quote_ident(
            self.event_columns
                .get(logical)
                .map(String::as_str)
                .unwrap_or(logical),
        )
    }

    pub(crate) fn ev_opt(&self, logical: &str) -> Option<String> {
        self.event_columns.get(logical).map(|c| quote_ident(c))
    }

    fn naive(&self, logical: &str) -> bool {
        self.naive_timestamps.iter().any(|t| t == logical)
    }

    /// A timestamp column read as timestamptz.
    pub(crate) fn ts_read(&self, alias: &str, logical: &str) -> String {
        let col = format!("{alias}.{}", self.ev(logical));
        if self.naive(logical) {
            format!("({col} AT TIME ZONE 'UTC')")
        } else {
            col
        }
    }

    /// A timestamptz expression converted for storing in a timestamp column.
    pub(crate) fn ts_value(&self, logical: &str, expr: &str) -> String {
        if self.naive(logical) {
            format!("(({expr}) AT TIME ZONE 'UTC')")
        } else {
            expr.to_string()
        }
    }

    pub(crate) fn status_value(&self, expr: &str) -> String {
        match &self.status_enum {
            Some(t) => format!("{expr}::{t}"),
            None => expr.to_string(),
        }
    }

    fn id_value(&self, expr: &str) -> String {
        if self.id_type == "text" {
            expr.to_string()
        } else {
            format!("{expr}::{}", self.id_type)
        }
    }

    /// Whether a required logical event column allows NULL.
    pub(crate) fn is_nullable(&self, logical: &str) -> bool {
        self.nullable.iter().any(|c| c == logical)
    }

    /// A logical event column as messages name it: `occurredAt`, or `occurredAt
    /// ("occurred_at")` where the physical name differs.
    pub fn column_label(&self, logical: &str) -> String {
        match self.event_columns.get(logical) {
            Some(physical) if physical != logical => {
                format!("{logical} ({})", quote_ident(physical))
            }
            _ => logical.to_string(),
        }
    }

    /// Columns returned for a claimed or expired event: [`RETURNED`], in its order. Every
    /// cast is one that cannot fail, whatever a row holds: text, and integers widened to
    /// int8. JSON travels as text and is parsed row by row, so a `json` payload that `jsonb`
    /// rejects (a `\u0000`) fails only its own row.
    fn returning(&self) -> String {
        RETURNED
            .iter()
            .map(|&logical| {
                let cast = match logical {
                    "occurredAt" | "nextRetryAt" => return self.ts_read("e", logical),
                    "retryCount" | "maxRetries" | "retryInterval" | "maxInterval" => "int8",
                    _ => "text",
                };
                match self.ev_opt(logical) {
                    Some(c) => format!("e.{c}::{cast}"),
                    None => format!("NULL::{cast}"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Leaves out rows of the routingKeys in parameter `param` (a NULL routingKey is never
    /// left out: its row is claimed and reported unreadable).
    fn not_skipped(&self, alias: &str, param: &str) -> String {
        let routing = self.ev("routingKey");
        if self.is_nullable("routingKey") {
            format!("NOT COALESCE({alias}.{routing} = ANY({param}::text[]), false)")
        } else {
            format!("NOT ({alias}.{routing} = ANY({param}::text[]))")
        }
    }

    /// A text expression as stored in lastError: cast explicitly to the column's type, so
    /// that a `varchar(n)` column cuts a long message short instead of failing the write
    /// (and with it every other result in the statement).
    fn last_error_value(&self, expr: &str) -> String {
        match &self.last_error_type {
            Some(t) => format!("{expr}::{t}"),
            None => expr.to_string(),
        }
    }

    /// What a result write's `done` CTE returns for [`Layout::block_failed`].
    fn done_returning(&self) -> String {
        format!(
            "e.{}::text AS aggregate, e.{}::text AS id, e.{}::text AS routing, a.err, a.block",
            self.ev("aggregateId"),
            self.ev("id"),
            self.ev("routingKey")
        )
    }

    /// The CTE that follows a result write's `done` CTE: the aggregates of the rows that
    /// ended FAILED with `block` set are held back in the blocked table, in the same
    /// statement (so no claim can see the FAILED head without the block). `None` without a
    /// blocked table.
    fn block_failed(&self) -> Option<String> {
        self.blocked_table.as_ref().map(|t| {
            format!(
                r#", blocked AS (
INSERT INTO {}.{} ("aggregateId", "eventId", "routingKey", "reason")
SELECT aggregate, id, routing, err FROM done
 WHERE block AND aggregate IS NOT NULL AND routing IS NOT NULL
ON CONFLICT ("aggregateId") DO NOTHING
)"#,
                quote_ident(&self.schema),
                quote_ident(t),
            )
        })
    }

    /// The SET list of a write that ends a lease: `status` (an expression), the lease
    /// columns cleared and, where the table has them, lastError (`error` given the quoted
    /// column) and processedAt (`processed` given the database clock as stored).
    fn lease_ended(
        &self,
        status: &str,
        error: impl Fn(&str) -> String,
        processed: impl Fn(&str) -> String,
    ) -> Vec<String> {
        let mut sets = vec![
            format!("{} = {status}", self.ev("status")),
            format!("{} = NULL", self.ev("lockedBy")),
            format!("{} = NULL", self.ev("lockedUntil")),
        ];
        if let Some(c) = self.ev_opt("lastError") {
            sets.push(format!("{c} = {}", error(&c)));
        }
        if let Some(c) = self.ev_opt("processedAt") {
            let now = self.ts_value("processedAt", "clock_timestamp()");
            sets.push(format!("{c} = {}", processed(&now)));
        }
        sets
    }

    /// Due now, and not before `floor` (a timestamptz expression; `-infinity` for no floor).
    fn due(&self, alias: &str, now: &str, floor: &str) -> String {
        let col = format!("{alias}.{}", self.ev("nextRetryAt"));
        let bound = self.ts_value("nextRetryAt", now);
        let floor = self.ts_value("nextRetryAt", floor);
        if self.next_retry_nullable {
            format!("({col} IS NULL OR ({col} >= {floor} AND {col} <= {bound}))")
        } else {
            format!("{col} >= {floor} AND {col} <= {bound}")
        }
    }

    /// `{a}` comes before `{b}` in delivery order: by `seq`, or where the table has none, by
    /// occurredAt then id.
    fn earlier(&self, a: &str, b: &str) -> String {
        match self.ev_opt("seq") {
            Some(seq) => format!("{a}.{seq} < {b}.{seq}"),
            None => {
                let (t, id) = (self.ev("occurredAt"), self.ev("id"));
                format!("({a}.{t}, {a}.{id}) < ({b}.{t}, {b}.{id})")
            }
        }
    }

    /// Every statement the engine runs.
    pub(crate) fn statements(&self) -> Statements {
        let ev = self.events();
        let pol = self.policies();
        let id = self.ev("id");
        let status = self.ev("status");
        let routing = self.ev("routingKey");
        let next = self.ev("nextRetryAt");
        let locked_by = self.ev("lockedBy");
        let locked_until = self.ev("lockedUntil");
        let retry_count = self.ev("retryCount");
        let returning = self.returning();
        let lease_end = self.ts_value(
            "lockedUntil",
            "clock_timestamp() + make_interval(secs => $2::float8)",
        );
        let order = if self.next_retry_nullable {
            format!("c.{next} NULLS FIRST")
        } else {
            format!("c.{next}")
        };
        // Planned with the actual values every time (the connections force custom plans), so
        // the paused filter and the cursor floor cost the pending-index plan nothing. The
        // outer UPDATE has no condition on status: the inner FOR UPDATE already rechecks it
        // on the row it locks, and a second one lets the planner, when its statistics say
        // PENDING rows are rare (the normal state of a relay that keeps up), scan the
        // pending index filtering on id instead of probing the primary key for each id —
        // hundreds of milliseconds a claim once a backlog forms between two ANALYZEs.
        // A NULL retryCount (an app-owned column that allows it) is stored as 0 by the
        // claim, so the fence of the result write compares like with like.
        let lease_sets = if self.is_nullable("retryCount") {
            format!(
                "{status} = 'PROCESSING', {locked_by} = $1, {locked_until} = {lease_end}, \
                 {retry_count} = COALESCE(e.{retry_count}, 0)"
            )
        } else {
            format!("{status} = 'PROCESSING', {locked_by} = $1, {locked_until} = {lease_end}")
        };
        let claim = format!(
            r#"UPDATE {ev} AS e
   SET {lease_sets}
 WHERE e.{id} = ANY(ARRAY(
         SELECT c.{id} FROM {ev} AS c
          WHERE c.{status} = 'PENDING' AND {due}
            AND {not_skipped}
          ORDER BY {order}
          LIMIT $3
          FOR UPDATE SKIP LOCKED))
RETURNING {returning}"#,
            due = self.due("c", "now()", "COALESCE($4::timestamptz, '-infinity')"),
            not_skipped = self.not_skipped("c", "$5"),
        );

        // Ordered routingKeys: the head of each aggregate only. `$4` all ordered keys (the
        // scope of an aggregate's order), `$5` paused ones. A head is taken only with its
        // aggregate's bucket lock (see migration 0003): no producer still holds an
        // uncommitted earlier event of it.
        let aggregate = self.ev("aggregateId");
        // The bucket locks are tried only for the heads found, never during the scan: the
        // outer ORDER BY sorts the whole inner result before the first lock is tried, so
        // producers never wait for a long scan (and locks are taken in one order).
        let ordered_claim = format!(
            r#"UPDATE {ev} AS e
   SET {lease_sets}
 WHERE e.{id} = ANY(ARRAY(
         SELECT h.id FROM (
           SELECT c.{id} AS id, c.{aggregate} AS aggregate FROM {ev} AS c
            WHERE c.{status} = 'PENDING' AND {due}
              AND c.{routing} = ANY($4::text[]) AND NOT (c.{routing} = ANY($5::text[]))
              AND NOT EXISTS (
                  SELECT 1 FROM {ev} AS p
                   WHERE p.{aggregate} = c.{aggregate}
                     AND p.{status} IN ('PENDING', 'PROCESSING')
                     AND {earlier}
                     AND p.{routing} = ANY($4::text[])){not_blocked}
            ORDER BY {order}
            LIMIT $3
            FOR UPDATE SKIP LOCKED) AS h
          WHERE h.aggregate IS NULL
             OR pg_try_advisory_xact_lock({ORDER_LOCK_CLASS}, hashtext(h.aggregate::text) & 255)
          ORDER BY h.aggregate))
RETURNING {returning}"#,
            due = self.due("c", "now()", "'-infinity'::timestamptz"),
            earlier = self.earlier("p", "c"),
            not_blocked = match &self.blocked_table {
                Some(t) => format!(
                    "\n            AND NOT EXISTS (SELECT 1 FROM {}.{} AS b WHERE b.\"aggregateId\" = c.{aggregate})",
                    quote_ident(&self.schema),
                    quote_ident(t),
                ),
                None => String::new(),
            },
        );
        // Run right after `ordered_claim`, in its transaction but with a fresh snapshot: a
        // producer that committed an earlier event between that claim's snapshot and its
        // lock is visible now, and the head it should have followed goes back. `$1` the
        // claim's lease token, `$2` the ordered keys. Returns the ids given back.
        let ordered_recheck = format!(
            r#"UPDATE {ev} AS e
   SET {status} = 'PENDING', {locked_by} = NULL, {locked_until} = NULL
 WHERE e.{status} = 'PROCESSING' AND e.{locked_by} = $1
   AND EXISTS (
       SELECT 1 FROM {ev} AS p
        WHERE p.{aggregate} = e.{aggregate}
          AND p.{status} IN ('PENDING', 'PROCESSING')
          AND {earlier}
          AND p.{routing} = ANY($2::text[]))
RETURNING e.{id}::text"#,
            earlier = self.earlier("p", "e"),
        );

        let err = self.last_error_value("a.err");
        let mut sets = self.lease_ended(
            &self.status_value("a.status"),
            |c| format!("COALESCE({err}, e.{c})"),
            |now| format!("CASE WHEN a.status IN ('SENT', 'FAILED') THEN {now} END"),
        );
        sets.push(format!("{retry_count} = a.rc_new"));
        sets.push(format!(
            "{next} = CASE WHEN a.status = 'PENDING' THEN {} ELSE e.{next} END",
            self.ts_value(
                "nextRetryAt",
                "clock_timestamp() + make_interval(secs => a.delay)"
            )
        ));
        // `status NOT IN (...)` rather than `= 'PROCESSING'`: the latter lets the planner pick
        // the partial PROCESSING index and compare every leased row with every result; this
        // way each result is one primary-key lookup.
        let fence = format!(
            "e.{id} = {} AND e.{locked_by} = a.owner AND e.{retry_count} = a.rc_old \
             AND e.{status} NOT IN ('PENDING', 'SENT', 'FAILED')",
            self.id_value("a.id")
        );
        let complete = format!(
            r#"UPDATE {ev} AS e
   SET {sets}
  FROM unnest($1::text[], $2::text[], $3::int4[], $4::text[], $5::int4[], $6::float8[], $7::text[])
       AS a(id, owner, rc_old, status, rc_new, delay, err)
 WHERE {fence}"#,
            sets = sets.join(",\n       ")
        );
        // The same write, and for the results that ask for it, the aggregate held back in
        // the blocked table, in one statement (so no claim can see the FAILED head without
        // the block). Returns how many events it changed.
        let complete_blocking = self.block_failed().map(|blocked| {
            format!(
                r#"WITH done AS (
UPDATE {ev} AS e
   SET {sets}
  FROM unnest($1::text[], $2::text[], $3::int4[], $4::text[], $5::int4[], $6::float8[], $7::text[], $8::bool[])
       AS a(id, owner, rc_old, status, rc_new, delay, err, block)
 WHERE {fence}
RETURNING {done}
){blocked}
SELECT count(*) FROM done"#,
                sets = sets.join(",\n       "),
                done = self.done_returning(),
            )
        });
        let delete = format!(
            r#"DELETE FROM {ev} AS e
 USING unnest($1::text[], $2::text[], $3::int4[]) AS a(id, owner, rc_old)
 WHERE {fence}"#
        );
        let expired = format!(
            r#"SELECT {returning} FROM {ev} AS e
 WHERE e.{status} = 'PROCESSING' AND e.{locked_until} < {now}
 ORDER BY e.{locked_until}
 LIMIT $1"#,
            now = self.ts_value("lockedUntil", "now()")
        );
        // Every value as text (a cast that cannot fail, whatever a row holds), parsed and
        // checked row by row; an absent optional column reads as its default.
        let pc = |logical: &str, default: &str| match self.policy_columns.get(logical) {
            Some(c) => format!("{}::text", quote_ident(c)),
            None => format!("{default}::text"),
        };
        let policies = format!(
            "SELECT {} FROM {pol}",
            POLICY_READ
                .iter()
                .map(|(logical, default)| pc(logical, default))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let fail_sets = self.lease_ended(
            &self.status_value("'FAILED'"),
            |_| self.last_error_value("a.err"),
            |now| now.to_string(),
        );
        // `$4`: whether each row holds its aggregate back (a blocking ordered policy), as
        // `complete_blocking` records it. Returns how many rows it changed.
        let fail_unreadable = format!(
            r#"WITH done AS (
UPDATE {ev} AS e
   SET {}
  FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[]) AS a(id, owner, err, block)
 WHERE e.{id} = {} AND e.{locked_by} = a.owner
   AND e.{status} NOT IN ('PENDING', 'SENT', 'FAILED')
RETURNING {}
){}
SELECT count(*) FROM done"#,
            fail_sets.join(",\n       "),
            self.id_value("a.id"),
            self.done_returning(),
            self.block_failed().unwrap_or_default(),
        );
        // The earliest PENDING event by an ordered scan of the pending index (a `min()` over
        // an expression could not use it).
        let from = {
            let floor = self.ts_value("nextRetryAt", "COALESCE($2::timestamptz, '-infinity')");
            if self.next_retry_nullable {
                format!("(e.{next} IS NULL OR e.{next} >= {floor})")
            } else {
                format!("e.{next} >= {floor}")
            }
        };
        let next_due = format!(
            r#"SELECT COALESCE({}, 0)
  FROM {ev} AS e
 WHERE e.{status} = 'PENDING' AND {from} AND {not_skipped}
 ORDER BY e.{next}{nulls}
 LIMIT 1"#,
            seconds_between(&self.ts_read("e", "nextRetryAt"), "now()"),
            not_skipped = self.not_skipped("e", "$1"),
            nulls = if self.next_retry_nullable {
                " NULLS FIRST"
            } else {
                ""
            },
        );
        Statements {
            claim,
            ordered_claim,
            ordered_recheck,
            complete,
            complete_blocking,
            delete,
            expired,
            policies,
            fail_unreadable,
            next_due,
        }
    }
}

impl Layout {
    /// Deletes finished rows of `status` older than `$1` seconds, at most `$2` of them; and
    /// the matching count. Age is measured by processedAt, else occurredAt. The status is a
    /// literal so the partial index on finished rows applies.
    pub(crate) fn purge_statements(&self, status_value: Status) -> (String, String) {
        let ev = self.events();
        let id = self.ev("id");
        let status = self.ev("status");
        let (age_col, age_logical) = match self.ev_opt("processedAt") {
            Some(c) => (c, "processedAt"),
            None => (self.ev("occurredAt"), "occurredAt"),
        };
        let cutoff = self.ts_value(age_logical, "now() - make_interval(secs => $1::float8)");
        let matching = format!(
            "p.{status} = '{}' AND p.{age_col} < {cutoff}",
            status_value.as_str()
        );
        (
            format!(
                "DELETE FROM {ev} AS e WHERE e.{id} = ANY(ARRAY(\
                 SELECT p.{id} FROM {ev} AS p WHERE {matching} LIMIT $2 FOR UPDATE SKIP LOCKED))"
            ),
            format!("SELECT count(*)::int8 FROM {ev} AS p WHERE {matching}"),
        )
    }

    /// PROCESSING rows whose lease expired more than `$1` seconds ago: how many, and how
    /// long ago the oldest expired (seconds).
    pub(crate) fn stale_leases_statement(&self) -> String {
        let until = self.ts_read("e", "lockedUntil");
        format!(
            "SELECT count(*)::int8, max({}) FROM {} AS e \
             WHERE e.{} = 'PROCESSING' AND e.{} < {}",
            seconds_between("now()", &until),
            self.events(),
            self.ev("status"),
            self.ev("lockedUntil"),
            self.ts_value("lockedUntil", "now() - make_interval(secs => $1::float8)"),
        )
    }

    /// Totals (FAILED count, oldest PENDING age in seconds) and PENDING per routingKey.
    pub(crate) fn summary_statements(&self) -> (String, String) {
        let ev = self.events();
        let status = self.ev("status");
        let routing = self.ev("routingKey");
        let occurred = self.ts_read("e", "occurredAt");
        (
            format!(
                "SELECT (count(*) FILTER (WHERE e.{status} = 'FAILED'))::int8, \
                 {} \
                 FROM {ev} AS e",
                seconds_between(
                    "now()",
                    &format!(
                        "min({occurred}) FILTER (WHERE e.{status} = 'PENDING' AND isfinite({occurred}))"
                    )
                ),
            ),
            format!(
                "SELECT e.{routing}::text, count(*)::int8, \
                 COALESCE({}, 0) \
                 FROM {ev} AS e WHERE e.{status} = 'PENDING' GROUP BY 1 ORDER BY 1",
                seconds_between(
                    "now()",
                    &format!("min({occurred}) FILTER (WHERE isfinite({occurred}))")
                ),
            ),
        )
    }
}

/// `a - b` in seconds as float8, for timestamps that may be infinite: PostgreSQL refuses to
/// subtract an infinite timestamp, which would fail the whole statement for one odd row; the
/// epochs subtract to ±Infinity instead.
pub(crate) fn seconds_between(a: &str, b: &str) -> String {
    format!("(EXTRACT(EPOCH FROM {a})::float8 - EXTRACT(EPOCH FROM {b})::float8)")
}

/// The generated statements.
#[derive(Debug, Clone)]
pub(crate) struct Statements {
    /// Claim: `$1` owner, `$2` lease seconds, `$3` limit, `$4` the earliest nextRetryAt to
    /// look at (NULL for all), `$5` paused routingKeys to skip.
    pub(crate) claim: String,
    /// Claim of aggregate heads: `$1`–`$3` as `claim`, `$4` ordered routingKeys, `$5`
    /// paused ones.
    pub(crate) ordered_claim: String,
    /// Gives back heads that turned out not to be heads: `$1` lease token, `$2` ordered keys.
    pub(crate) ordered_recheck: String,
    pub(crate) complete: String,
    /// `complete` with an eighth array: whether a FAILED result blocks its aggregate.
    pub(crate) complete_blocking: Option<String>,
    pub(crate) delete: String,
    pub(crate) expired: String,
    /// Every policy row, each value as text in [`POLICY_READ`] order.
    pub(crate) policies: String,
    /// FAILED with lastError for unreadable rows: `$1` ids, `$2` lease tokens, `$3` errors.
    pub(crate) fail_unreadable: String,
    /// Seconds until the earliest PENDING event outside the `$1` paused routingKeys is due
    /// (no row: none).
    pub(crate) next_due: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_layout_maps_every_column_to_itself() {
        let l = Layout::canonical("public");
        assert_eq!(l.events(), "\"public\".\"OutboxEvent\"");
        for c in EVENT_REQUIRED
            .iter()
            .chain(EVENT_OPTIONAL)
            .chain(EVENT_RECOMMENDED)
        {
            assert_eq!(l.event_columns.get(*c).map(String::as_str), Some(*c));
        }
        let s = l.statements();
        assert!(
            s.claim.contains(r#"c."nextRetryAt" <= now()"#),
            "{}",
            s.claim
        );
        assert!(s
            .complete
            .contains(r#""lastError" = COALESCE(a.err, e."lastError")"#));
    }

    #[test]
    fn naive_timestamps_enum_status_and_uuid_ids_are_converted_on_the_constant_side() {
        let mut l = Layout::canonical("app");
        l.naive_timestamps = vec![
            "nextRetryAt".into(),
            "lockedUntil".into(),
            "occurredAt".into(),
        ];
        l.status_enum = Some("\"app\".\"OutboxStatus\"".into());
        l.id_type = "uuid".into();
        l.event_columns.remove("lastError");
        let s = l.statements();
        assert!(
            s.claim
                .contains(r#"c."nextRetryAt" <= ((now()) AT TIME ZONE 'UTC')"#),
            "{}",
            s.claim
        );
        assert!(
            s.claim.contains(r#"(e."occurredAt" AT TIME ZONE 'UTC')"#),
            "{}",
            s.claim
        );
        assert!(
            s.complete
                .contains(r#""status" = a.status::"app"."OutboxStatus""#),
            "{}",
            s.complete
        );
        assert!(
            s.complete.contains(r#"e."id" = a.id::uuid"#),
            "{}",
            s.complete
        );
        assert!(!s.complete.contains("lastError"));
        assert!(
            s.expired
                .contains(r#"e."lockedUntil" < ((now()) AT TIME ZONE 'UTC')"#),
            "{}",
            s.expired
        );
    }
}
