//! The handlers of `/api/…` (see `API.md`).

use crate::{actor, refuse, Dashboard};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use outbox_core::{EventFilter, Page, Status, StoreError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_tokens_are_summed_per_worker() {
        let lease = |owner: &str, events, secs| outbox_core::Lease {
            owner: owner.into(),
            events,
            lease_until: chrono::DateTime::from_timestamp(secs, 0),
        };
        let got = by_worker(vec![
            lease("host-1#12", 3, 100),
            lease("host-1#13", 4, 130),
            lease("odd#name", 1, 50),
            lease("host-2#7", 2, 90),
        ]);
        let got: Vec<(String, i64, i64)> = got
            .iter()
            .map(|l| {
                (
                    l.owner.clone(),
                    l.events,
                    l.lease_until.unwrap().timestamp(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("host-1".to_string(), 7, 130),
                ("host-2".to_string(), 2, 90),
                ("odd#name".to_string(), 1, 50)
            ]
        );
    }
}
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

type Client = Option<Extension<ConnectInfo<SocketAddr>>>;

/// Events acted on per statement by the bulk actions.
const BATCH: i64 = 500;
/// Most events one action request changes (well inside the listener's 60 s per
/// connection); the answer says when more matched.
const MOST_PER_REQUEST: usize = 10_000;
/// `lastError` in a listing is cut to this many characters.
const ERROR_IN_LIST: usize = 300;

/// Runs one read or action, cut off past the statement timeout (plus a second for the
/// round trip): the answer is then 503, never a hung page.
async fn timed<T>(
    d: &Dashboard,
    f: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, Response> {
    let limit = d.options.statement_timeout + Duration::from_secs(1);
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Dashboard: a database call failed");
            Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the database call failed: {e}"),
            ))
        }
        Err(_) => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "the database did not answer within {} s (the dashboard's statement timeout)",
                limit.as_secs()
            ),
        )),
    }
}

#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct KeyRow {
    routing_key: String,
    sink: Option<String>,
    pending: i64,
    processing: i64,
    retrying: i64,
    /// `None` where SENT rows were not counted (a large table).
    sent: Option<i64>,
    failed: i64,
    oldest_pending_seconds: Option<f64>,
    paused: bool,
    policy: bool,
    ordered: bool,
    breaker: Option<&'static str>,
}

pub(crate) async fn overview(State(d): State<Dashboard>) -> Response {
    match overview_json(&d).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn overview_json(d: &Dashboard) -> Result<Value, Response> {
    let s = &d.store;
    let estimate = timed(d, s.estimated_rows()).await?;
    let approximate = estimate.is_some_and(|n| n > d.options.exact_counts_up_to);
    let stats = timed(d, s.stats(!approximate)).await?;
    let policies = timed(d, s.policies()).await?;
    let blocked = timed(d, s.blocked_aggregates()).await?;
    let workers = by_worker(timed(d, s.leases()).await?);
    let snapshot = d.metrics.as_ref().map(|m| m.snapshot());
    let breaker_of = |sink: &str| {
        snapshot
            .as_ref()
            .and_then(|s| s.breakers.get(sink).copied())
    };

    let mut keys: BTreeMap<String, KeyRow> = BTreeMap::new();
    fn row<'a>(keys: &'a mut BTreeMap<String, KeyRow>, key: &str, approx: bool) -> &'a mut KeyRow {
        keys.entry(key.to_string()).or_insert_with(|| KeyRow {
            routing_key: key.to_string(),
            sent: if approx { None } else { Some(0) },
            ..KeyRow::default()
        })
    }
    for (key, sink) in &d.options.routes {
        let r = row(&mut keys, key, approximate);
        r.sink = Some(sink.clone());
        r.breaker = breaker_of(sink);
    }
    for p in &policies.policies {
        let r = row(&mut keys, &p.routing_key, approximate);
        r.policy = true;
        r.paused = p.paused;
        r.ordered = p.ordered;
    }
    for b in &policies.broken {
        if let Some(key) = &b.routing_key {
            row(&mut keys, key, approximate).policy = true;
        }
    }
    let mut totals = json!({"pending": 0, "processing": 0, "retrying": 0, "sent": 0, "failed": 0});
    let mut unsent = 0;
    for k in &stats {
        let r = row(&mut keys, &k.routing_key, approximate);
        r.pending = k.pending;
        r.processing = k.processing;
        r.retrying = k.retrying;
        r.failed = k.failed;
        r.oldest_pending_seconds = k.oldest_pending_seconds;
        if !approximate {
            r.sent = Some(k.sent);
        }
        for (name, n) in [
            ("pending", k.pending),
            ("processing", k.processing),
            ("retrying", k.retrying),
            ("sent", k.sent),
            ("failed", k.failed),
        ] {
            totals[name] = json!(totals[name].as_i64().unwrap_or(0) + n);
        }
        unsent += k.pending + k.processing + k.failed;
    }
    if approximate {
        // The rows the statistics see, less the ones counted: the delivered ones; per key,
        // the planner's estimate where the store makes one.
        totals["sent"] = json!((estimate.unwrap_or(0) - unsent).max(0));
        for r in keys.values_mut() {
            let sent = EventFilter {
                routing_key: Some(r.routing_key.clone()),
                status: Some(Status::Sent),
                ..EventFilter::default()
            };
            r.sent = timed(d, s.estimated_count(&sent)).await?;
        }
    }
    let sinks: Vec<Value> = match &snapshot {
        Some(s) => s
            .breakers
            .iter()
            .map(|(name, state)| json!({"name": name, "breaker": state}))
            .collect(),
        None => {
            let names: std::collections::BTreeSet<&String> = d.options.routes.values().collect();
            names
                .into_iter()
                .map(|name| json!({"name": name, "breaker": null}))
                .collect()
        }
    };
    Ok(json!({
        "generatedAt": chrono::Utc::now(),
        "store": s.location(),
        "approximate": approximate,
        "actions": d.options.actions,
        "worker": d.metrics.is_some(),
        "keys": keys.into_values().collect::<Vec<_>>(),
        "totals": totals,
        "blocked": blocked,
        "workers": workers,
        "sinks": sinks,
    }))
}

/// Leases per worker: a worker writes `<its id>#<claim number>` as each claim's lease token,
/// so the tokens of one worker are summed under its id.
fn by_worker(leases: Vec<outbox_core::Lease>) -> Vec<outbox_core::Lease> {
    let mut out: BTreeMap<String, outbox_core::Lease> = BTreeMap::new();
    for l in leases {
        let owner = match l.owner.rsplit_once('#') {
            Some((worker, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                worker.to_string()
            }
            _ => l.owner.clone(),
        };
        let e = out.entry(owner.clone()).or_insert(outbox_core::Lease {
            owner,
            events: 0,
            lease_until: None,
        });
        e.events += l.events;
        e.lease_until = e.lease_until.max(l.lease_until);
    }
    out.into_values().collect()
}

pub(crate) async fn history(State(d): State<Dashboard>) -> Response {
    Json(d.history.series()).into_response()
}

/// The filter of `/api/events`, `/api/count` and the bulk actions; empty fields do not
/// filter.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct FilterQuery {
    #[serde(deserialize_with = "text")]
    status: Option<String>,
    #[serde(deserialize_with = "text")]
    routing_key: Option<String>,
    #[serde(deserialize_with = "text")]
    aggregate_id: Option<String>,
    #[serde(deserialize_with = "text")]
    id: Option<String>,
    #[serde(deserialize_with = "text")]
    since: Option<String>,
    #[serde(deserialize_with = "text")]
    error: Option<String>,
    #[serde(deserialize_with = "text")]
    from: Option<String>,
    #[serde(deserialize_with = "text")]
    to: Option<String>,
    #[serde(deserialize_with = "text")]
    before: Option<String>,
    #[serde(deserialize_with = "text")]
    limit: Option<String>,
}

/// A filter field as text, whether a query string or a JSON body (where numbers come as
/// numbers) gave it.
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Text(String),
        Number(serde_json::Number),
        Bool(bool),
    }
    Ok(match Option::<Given>::deserialize(d)? {
        Some(Given::Text(s)) => Some(s),
        Some(Given::Number(n)) => Some(n.to_string()),
        Some(Given::Bool(b)) => Some(b.to_string()),
        None => None,
    })
}

/// A request the API cannot take, and why.
pub(crate) struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        refuse(StatusCode::BAD_REQUEST, &self.0)
    }
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl FilterQuery {
    fn filter(&self) -> Result<EventFilter, BadRequest> {
        let bad = BadRequest;
        let status = match given(&self.status) {
            Some(s) => Some(Status::parse(&s).ok_or_else(|| {
                bad(format!(
                    "status {s:?} is none of PENDING, PROCESSING, SENT, FAILED"
                ))
            })?),
            None => None,
        };
        let since = match given(&self.since) {
            Some(s) => match s.parse::<f64>() {
                Ok(secs) if secs.is_finite() && secs > 0.0 && secs < 1e10 => {
                    Some(Duration::from_secs_f64(secs))
                }
                _ => return Err(bad(format!("since {s:?} is not a number of seconds"))),
            },
            None => None,
        };
        let time = |name: &str, v: &Option<String>| -> Result<_, BadRequest> {
            match given(v) {
                Some(t) => chrono::DateTime::parse_from_rfc3339(&t)
                    .map(|t| Some(t.with_timezone(&chrono::Utc)))
                    .map_err(|_| {
                        BadRequest(format!(
                            "{name} {t:?} is not an RFC 3339 time, e.g. 2026-12-03T08:00:00Z"
                        ))
                    }),
                None => Ok(None),
            }
        };
        Ok(EventFilter {
            occurred_from: time("from", &self.from)?,
            occurred_to: time("to", &self.to)?,
            ids: given(&self.id).into_iter().collect(),
            status,
            routing_key: given(&self.routing_key),
            aggregate_id: given(&self.aggregate_id),
            since,
            error_contains: given(&self.error),
            page: Some(match given(&self.before) {
                Some(id) => Page::After(id),
                None => Page::First,
            }),
        })
    }

    fn limit(&self) -> i64 {
        given(&self.limit)
            .and_then(|l| l.parse::<i64>().ok())
            .unwrap_or(50)
            .clamp(1, 200)
    }
}

pub(crate) async fn events(State(d): State<Dashboard>, Query(q): Query<FilterQuery>) -> Response {
    let filter = match q.filter() {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let limit = q.limit();
    let listed = match timed(&d, d.store.list_events(&filter, limit)).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    // Whatever type the id column has (an integer comes as a JSON number).
    let next = (listed.len() as i64 == limit)
        .then(|| {
            listed.last().and_then(|e| match &e["id"] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        })
        .flatten();
    let events: Vec<Value> = listed
        .into_iter()
        .map(|e| {
            let mut fields = e.fields;
            if let Some(text) = fields["lastError"].as_str() {
                if text.chars().count() > ERROR_IN_LIST {
                    let cut: String = text.chars().take(ERROR_IN_LIST).collect();
                    fields["lastError"] = json!(format!("{cut}…"));
                }
            }
            fields
        })
        .collect();
    Json(json!({ "events": events, "next": next })).into_response()
}

pub(crate) async fn event(State(d): State<Dashboard>, Path(id): Path<String>) -> Response {
    let filter = EventFilter {
        ids: vec![id.clone()],
        ..EventFilter::default()
    };
    let listed = match timed(&d, d.store.list_events(&filter, 1)).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Some(e) = listed.into_iter().next() else {
        return refuse(StatusCode::NOT_FOUND, &format!("no event with id {id:?}"));
    };
    // The payload goes out as the database's text, never through f64.
    #[derive(Serialize)]
    struct One<'a> {
        event: &'a Value,
        payload: Option<&'a serde_json::value::RawValue>,
    }
    Json(One {
        event: &e.fields,
        payload: e.payload.as_deref(),
    })
    .into_response()
}

pub(crate) async fn count(State(d): State<Dashboard>, Query(q): Query<FilterQuery>) -> Response {
    let filter = match q.filter() {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    match timed(&d, d.store.count_events(&filter)).await {
        Ok(n) => Json(json!({ "count": n })).into_response(),
        Err(r) => r,
    }
}

/// The body of replay and purge: these ids, or every FAILED event matching a filter.
#[derive(Debug, Deserialize)]
pub(crate) struct Selection {
    #[serde(default)]
    ids: Vec<String>,
    filter: Option<FilterQuery>,
}

impl Selection {
    fn filter(&self) -> Result<EventFilter, BadRequest> {
        let mut f = match (&self.filter, self.ids.is_empty()) {
            (Some(q), true) => q.filter()?,
            (None, false) => EventFilter {
                ids: self.ids.clone(),
                ..EventFilter::default()
            },
            _ => return Err(BadRequest("give either ids or a filter".into())),
        };
        f.status = Some(Status::Failed);
        f.page = None;
        Ok(f)
    }
}

/// The FAILED events an action is about, fixed before it starts (an event that fails again
/// while the action runs is not acted on twice), at most [`MOST_PER_REQUEST`]; and whether
/// more matched.
async fn selected(d: &Dashboard, filter: &EventFilter) -> Result<(Vec<String>, bool), Response> {
    if !filter.ids.is_empty() {
        let mut ids = filter.ids.clone();
        ids.sort();
        ids.dedup();
        let more = ids.len() > MOST_PER_REQUEST;
        ids.truncate(MOST_PER_REQUEST);
        return Ok((ids, more));
    }
    let mut ids: Vec<String> = Vec::new();
    loop {
        let after = ids.last().cloned();
        let page = timed(d, d.store.matching_ids(filter, after.as_deref(), BATCH)).await?;
        let last = (page.len() as i64) < BATCH;
        ids.extend(page);
        if last {
            return Ok((ids, false));
        }
        if ids.len() >= MOST_PER_REQUEST {
            ids.truncate(MOST_PER_REQUEST);
            return Ok((ids, true));
        }
    }
}

/// What a bulk action does to FAILED events.
#[derive(Clone, Copy)]
enum Bulk {
    Replay,
    Purge,
}

/// Acts on `selection`'s events [`BATCH`] at a time, audited as done by `client`. A failure
/// part way answers 503 with how many were done.
async fn act(d: &Dashboard, selection: &Selection, client: Client, bulk: Bulk) -> Response {
    let filter = match selection.filter() {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let (ids, more) = match selected(d, &filter).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let who = actor(client.map(|c| c.0 .0));
    let mut done: Vec<String> = Vec::new();
    for chunk in ids.chunks(BATCH as usize) {
        let these = EventFilter {
            ids: chunk.to_vec(),
            status: Some(Status::Failed),
            ..EventFilter::default()
        };
        let changed = match bulk {
            Bulk::Replay => timed(d, d.store.replay_failed(&these, BATCH, &who)).await,
            Bulk::Purge => timed(d, d.store.purge_failed(&these, BATCH, &who, false)).await,
        };
        match changed {
            Ok(changed) => done.extend(changed),
            Err(r) if done.is_empty() => return r,
            Err(_) => {
                let why = format!(
                    "stopped after {} events: the database call failed; run it again for the rest",
                    done.len()
                );
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({ "error": why, "done": done.len() })),
                )
                    .into_response();
            }
        }
    }
    Json(json!({ "done": done.len(), "ids": done, "more": more })).into_response()
}

pub(crate) async fn replay(
    State(d): State<Dashboard>,
    client: Client,
    Json(body): Json<Selection>,
) -> Response {
    act(&d, &body, client, Bulk::Replay).await
}

pub(crate) async fn purge(
    State(d): State<Dashboard>,
    client: Client,
    Json(body): Json<Selection>,
) -> Response {
    act(&d, &body, client, Bulk::Purge).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct Aggregates {
    aggregates: Vec<String>,
}

pub(crate) async fn unblock(
    State(d): State<Dashboard>,
    client: Client,
    Json(body): Json<Aggregates>,
) -> Response {
    let who = actor(client.map(|c| c.0 .0));
    match timed(&d, d.store.unblock(&body.aggregates, &who)).await {
        Ok(ids) => Json(json!({ "done": ids.len(), "ids": ids })).into_response(),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Key {
    routing_key: String,
}

async fn set_paused(d: Dashboard, client: Client, key: Key, paused: bool) -> Response {
    let who = actor(client.map(|c| c.0 .0));
    match timed(&d, d.store.set_paused(&key.routing_key, paused, &who)).await {
        Ok(true) => Json(json!({ "done": 1 })).into_response(),
        Ok(false) => refuse(
            StatusCode::NOT_FOUND,
            &format!("{:?} has no retry policy to pause", key.routing_key),
        ),
        Err(r) => r,
    }
}

pub(crate) async fn pause(
    State(d): State<Dashboard>,
    client: Client,
    Json(key): Json<Key>,
) -> Response {
    set_paused(d, client, key, true).await
}

pub(crate) async fn resume(
    State(d): State<Dashboard>,
    client: Client,
    Json(key): Json<Key>,
) -> Response {
    set_paused(d, client, key, false).await
}
