//! Routes a claimed event to its sink and turns the sink's [`Outcome`] into a
//! [`Completion`] for the acker. The decision is a pure function of the event, the policy
//! and the outcome.

use crate::acker::Ack;
use crate::breaker::Admit;
use crate::metrics::Counted;
use crate::{Counters, OnSuccess, Route};
use futures_util::FutureExt;
use outbox_core::{
    ClaimedEvent, Completion, CompletionAction, Decision, Outcome, RetryPolicy, Throttle,
};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::OwnedSemaphorePermit;

/// The policy and route of an event, or why it cannot be delivered at all (checked before
/// any sink is called).
pub(crate) fn routed<P, R>(
    claimed: &ClaimedEvent,
    policy: Option<P>,
    route: Option<R>,
) -> Result<(P, R), String> {
    let key = &claimed.event.routing_key;
    match (policy, route) {
        (Some(p), Some(r)) => Ok((p, r)),
        (None, None) => Err(format!(
            "no OutboxRetryPolicy row for routingKey '{key}' and no route configured for it"
        )),
        (None, Some(_)) => Err(format!("no OutboxRetryPolicy row for routingKey '{key}'")),
        (Some(_), None) => Err(format!("no route configured for routingKey '{key}'")),
    }
}

/// What becomes of a claimed event before any sink is called.
pub(crate) enum Admission<R> {
    /// Deliver it (`probe`: as the one trial delivery of a half-open circuit breaker).
    Deliver {
        policy: RetryPolicy,
        route: R,
        probe: bool,
    },
    /// Record this result without delivering (FAILED at once, or given back uncharged).
    Settle(Completion),
}

/// What the engine knows of a claimed event's routingKey when it admits the event.
pub(crate) struct Known<R> {
    /// Its policy row, when there is a usable one.
    pub policy: Option<RetryPolicy>,
    /// Why its policy row cannot be used, when there is such a row.
    pub broken: Option<String>,
    /// Its route.
    pub route: Option<R>,
    /// It came from the claim of ordered heads.
    pub as_head: bool,
    /// How long to hold back an event whose policy row cannot be used.
    pub broken_delay: Duration,
}

/// The sink end of a route as admission sees it: its circuit breaker and its name.
pub(crate) trait Gate {
    /// The breaker's answer for a delivery starting now.
    fn admit(&self) -> Admit;
    /// The sink's name, for the note of an event held back.
    fn sink_name(&self) -> &str;
}

impl Gate for Route {
    fn admit(&self) -> Admit {
        self.breaker.admit(Instant::now())
    }
    fn sink_name(&self) -> &str {
        &self.sink_name
    }
}

/// The admission rules, in order: a policy row that cannot be used holds the event back
/// uncharged; no policy or no route fails it at once (naming which); a paused policy, or an
/// ordered one for an event not claimed as its aggregate's head, gives it back; an open
/// circuit breaker (asked last and only then, since a half-open breaker hands out one
/// probe) holds it back uncharged.
pub(crate) fn admit<R: Gate>(claimed: &ClaimedEvent, known: Known<R>) -> Admission<R> {
    let key = &claimed.event.routing_key;
    if known.policy.is_none() {
        if let Some(problem) = known.broken {
            let note = format!(
                "not attempted: the OutboxRetryPolicy row of '{key}' cannot be used: {problem}"
            );
            return Admission::Settle(postpone(claimed, known.broken_delay, note));
        }
    }
    let blocks = known.policy.as_ref().is_some_and(|p| p.blocks_on_failure());
    let (policy, route) = match routed(claimed, known.policy, known.route) {
        Ok(both) => both,
        Err(reason) => return Admission::Settle(fail_now(claimed, reason, blocks)),
    };
    if policy.paused || (policy.ordered && !known.as_head) {
        return Admission::Settle(release(claimed, None));
    }
    let probe = match route.admit() {
        Admit::Go => false,
        Admit::Probe => true,
        Admit::Hold(delay) => {
            let note = format!(
                "not attempted: the circuit breaker of sink '{}' is open",
                route.sink_name()
            );
            return Admission::Settle(postpone(claimed, delay, note));
        }
    };
    Admission::Deliver {
        policy,
        route,
        probe,
    }
}

fn completion(claimed: &ClaimedEvent, action: CompletionAction) -> Completion {
    Completion {
        id: claimed.event.id.clone(),
        lease_owner: claimed.lease_owner.clone(),
        retry_count: claimed.event.retry_count,
        action,
    }
}

/// FAILED at once, without spending retries.
pub(crate) fn fail_now(claimed: &ClaimedEvent, error: String, block_aggregate: bool) -> Completion {
    completion(
        claimed,
        CompletionAction::Fail {
            error,
            block_aggregate,
        },
    )
}

/// Back to PENDING, unattempted and not charged, due after `delay`.
pub(crate) fn postpone(claimed: &ClaimedEvent, delay: Duration, note: String) -> Completion {
    completion(
        claimed,
        CompletionAction::Retry {
            retry_count: claimed.event.retry_count,
            delay,
            error: note,
        },
    )
}

/// Back to PENDING, unattempted.
pub(crate) fn release(claimed: &ClaimedEvent, note: Option<String>) -> Completion {
    completion(claimed, CompletionAction::Release { note })
}

/// The new state of `claimed` after `outcome`. `jitter_sample` is in `[0, 1)`.
pub(crate) fn decide(
    claimed: &ClaimedEvent,
    policy: &RetryPolicy,
    outcome: Outcome,
    on_success: OnSuccess,
    jitter_sample: f64,
) -> Completion {
    let action = match outcome {
        Outcome::Delivered => match on_success {
            OnSuccess::Mark => CompletionAction::Sent,
            OnSuccess::Delete => CompletionAction::Delete,
        },
        Outcome::NotAttempted { reason, after } => CompletionAction::Retry {
            retry_count: claimed.event.retry_count,
            delay: after,
            error: format!("not attempted: {reason}"),
        },
        Outcome::Reject { reason } => CompletionAction::Fail {
            error: format!("permanent failure: {reason}"),
            block_aggregate: policy.blocks_on_failure(),
        },
        Outcome::Retry { reason, after } => {
            return failed_attempt(claimed, policy, reason, after, jitter_sample)
        }
    };
    completion(claimed, action)
}

/// The new state of `claimed` after an attempt that failed in a way worth retrying (a
/// retryable sink answer, or a lease that ran out while it was delivered): the next retry
/// with its backoff (`retry_after` from the sink wins when longer), or FAILED once the
/// retries are spent. `jitter_sample` is in `[0, 1)`.
pub(crate) fn failed_attempt(
    claimed: &ClaimedEvent,
    policy: &RetryPolicy,
    reason: String,
    retry_after: Option<Duration>,
    jitter_sample: f64,
) -> Completion {
    let settings = policy.settings_for(&claimed.event);
    let action = match settings.decide(claimed.event.retry_count, retry_after, jitter_sample) {
        Decision::Retry { retry_count, delay } => CompletionAction::Retry {
            retry_count,
            delay,
            error: reason,
        },
        Decision::Fail => CompletionAction::Fail {
            error: format!(
                "retries exhausted after {} attempts (maxRetries={}): {reason}",
                claimed.attempt(),
                settings.max_retries
            ),
            block_aggregate: policy.blocks_on_failure(),
        },
    };
    completion(claimed, action)
}

/// Sends a completion to the acker exactly once; if dropped unsent (the delivery was
/// aborted at the end of the shutdown timeout) it gives the event back instead.
pub(crate) struct InFlight {
    claimed: ClaimedEvent,
    tx: UnboundedSender<Ack>,
    slot: Option<OwnedSemaphorePermit>,
    /// The event is the head of an ordered aggregate: its result lets the next one go.
    ordered: bool,
}

impl InFlight {
    pub(crate) fn new(
        claimed: ClaimedEvent,
        tx: UnboundedSender<Ack>,
        slot: OwnedSemaphorePermit,
        ordered: bool,
    ) -> InFlight {
        InFlight {
            claimed,
            tx,
            slot: Some(slot),
            ordered,
        }
    }

    fn send(&mut self, completion: Completion) {
        // The acker outlives every delivery; a closed channel means the process is ending.
        let _ = self.tx.send(Ack {
            completion,
            slot: self.slot.take(),
            wake: self.ordered,
        });
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.slot.is_some() {
            let note = Some(
                "delivery interrupted by worker shutdown; it will be attempted again".to_string(),
            );
            let c = release(&self.claimed, note);
            self.send(c);
        }
    }
}

/// The relay short of descriptors or memory fails every delivery alike: one line a second.
static NOT_ATTEMPTED_LOG: Throttle = Throttle::new(Duration::from_secs(1));

/// One delivery: call the sink (a panic counts as a retryable failure), decide, report.
/// How one delivery is run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// What a success becomes.
    pub(crate) on_success: OnSuccess,
    /// 90% of the lease: the sink must be done by then, so no other worker can have taken
    /// the event over while this delivery still runs.
    pub(crate) budget: Duration,
    /// When the lease began (the claim), from which the budget counts.
    pub(crate) claimed_at: Instant,
    /// This delivery probes a half-open circuit breaker.
    pub(crate) probe: bool,
}

/// The W3C trace context of an event (`headers.traceparent`: version-traceid-parentid-flags),
/// as (trace id, parent span id); `None` when absent or malformed.
pub(crate) fn trace_context(event: &outbox_core::OutboxEvent) -> Option<(String, String)> {
    let tp = event.headers.as_ref()?.get("traceparent")?.as_str()?;
    let parts: Vec<&str> = tp.trim().split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    match parts.as_slice() {
        [version, trace, parent, flags]
            if hex(version, 2)
                && hex(trace, 32)
                && hex(parent, 16)
                && hex(flags, 2)
                && trace.bytes().any(|b| b != b'0')
                && parent.bytes().any(|b| b != b'0') =>
        {
            Some((trace.to_ascii_lowercase(), parent.to_ascii_lowercase()))
        }
        _ => None,
    }
}

/// One delivery inside a `delivery` span that carries the event's trace context, so every
/// log line of the delivery names the trace it belongs to.
pub(crate) async fn deliver(
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))] mut flight: InFlight,
    route: Route,
    policy: RetryPolicy,
    rules: Rules,
    running: OwnedSemaphorePermit,
    counters: Arc<Counters>,
) {
    let e = &flight.claimed.event;
    let (trace_id, parent_span_id) = match trace_context(e) {
        Some((t, p)) => (Some(t), Some(p)),
        None => (None, None),
    };
    macro_rules! delivery_span {
        ($($more:tt)*) => {
            tracing::info_span!(
                "delivery",
                id = %e.id,
                routing_key = %e.routing_key,
                sink = %route.sink_name,
                trace_id = trace_id.as_deref(),
                parent_span_id = parent_span_id.as_deref(),
                outcome = tracing::field::Empty,
                $($more)*
            )
        };
    }
    // An exported span is a producer's: it hands the event on to the destination.
    #[cfg(feature = "otel")]
    let span = delivery_span!("otel.kind" = "producer");
    #[cfg(not(feature = "otel"))]
    let span = delivery_span!();
    #[cfg(feature = "otel")]
    crate::otel::link(&span, &mut flight.claimed.event.headers);
    tracing::Instrument::instrument(
        deliver_in_span(flight, route, policy, rules, running, counters),
        span,
    )
    .await
}

async fn deliver_in_span(
    mut flight: InFlight,
    route: Route,
    policy: RetryPolicy,
    rules: Rules,
    running: OwnedSemaphorePermit,
    counters: Arc<Counters>,
) {
    let deadline = tokio::time::Instant::from_std(rules.claimed_at + rules.budget);
    let claimed = &flight.claimed;
    let called = Instant::now();
    let attempt = AssertUnwindSafe(route.sink.deliver(claimed)).catch_unwind();
    let outcome = match tokio::time::timeout_at(deadline, attempt).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Outcome::retry(format!("sink '{}' panicked", route.sink_name)),
        Err(_) => Outcome::retry(format!(
            "sink '{}' did not finish within {:?} of the claim (90% of the lease)",
            route.sink_name, rules.budget
        )),
    };
    // The delivery is over: its permit goes back now; the holding slot waits for the write.
    drop(running);
    let took = Some(called.elapsed());
    if let Some(cooldown) = route.breaker.record(&outcome, rules.probe, Instant::now()) {
        tracing::warn!(sink = %route.sink_name, cooldown = ?cooldown, "Circuit breaker open: the sink keeps failing; its events wait, not charged an attempt");
    } else if rules.probe
        && !matches!(
            outcome,
            Outcome::Retry { .. } | Outcome::NotAttempted { .. }
        )
    {
        tracing::info!(sink = %route.sink_name, "Circuit breaker closed: the probe went through");
    }
    let attempted = !matches!(outcome, Outcome::NotAttempted { .. });
    let c = decide(
        claimed,
        &policy,
        outcome,
        rules.on_success,
        rand::random::<f64>(),
    );
    let e = &claimed.event;
    let span = tracing::Span::current();
    match &c.action {
        CompletionAction::Sent | CompletionAction::Delete => {
            let age = (chrono::Utc::now() - e.occurred_at)
                .to_std()
                .unwrap_or_default();
            let (key, sink) = (&e.routing_key, &route.sink_name);
            counters.record(Counted::Delivered, key, sink, took, Some(age));
            tracing::debug!(id = %e.id, routing_key = %e.routing_key, sink = %route.sink_name, attempt = claimed.attempt(), "Delivered");
            span.record("outcome", "sent");
        }
        CompletionAction::Retry { delay, error, .. } if !attempted => {
            // The relay short of descriptors or memory fails every delivery alike: said at
            // most once a second, with how many went back since.
            if let Some(since) = NOT_ATTEMPTED_LOG.allow() {
                tracing::warn!(id = %e.id, routing_key = %e.routing_key, sink = %route.sink_name, retry_in = ?delay, error = %error, not_attempted_since_last = since, "Delivery not attempted; the event goes back uncharged");
            }
            span.record("outcome", "not_attempted");
        }
        CompletionAction::Retry { delay, error, .. } => {
            counters.record(
                Counted::Retried,
                &e.routing_key,
                &route.sink_name,
                took,
                None,
            );
            tracing::warn!(id = %e.id, routing_key = %e.routing_key, sink = %route.sink_name, attempt = claimed.attempt(), retry_in = ?delay, error = %error, "Delivery failed; will retry");
            span.record("outcome", "retry");
            #[cfg(feature = "otel")]
            crate::otel::failed(&span, error);
        }
        CompletionAction::Fail { error, .. } => {
            counters.record(
                Counted::Failed,
                &e.routing_key,
                &route.sink_name,
                took,
                None,
            );
            tracing::error!(id = %e.id, routing_key = %e.routing_key, sink = %route.sink_name, attempt = claimed.attempt(), error = %error, "Event FAILED");
            span.record("outcome", "failed");
            #[cfg(feature = "otel")]
            crate::otel::failed(&span, error);
        }
        CompletionAction::Release { .. } => {}
    }
    flight.send(c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use outbox_core::OutboxEvent;

    fn claimed(retry_count: i32, max_retries: Option<i32>) -> ClaimedEvent {
        ClaimedEvent {
            event: OutboxEvent {
                id: "id-1".into(),
                event_name: "n".into(),
                event_type: "t".into(),
                aggregate_id: "a".into(),
                routing_key: "k".into(),
                payload: serde_json::json!({}).into(),
                headers: None,
                occurred_at: Utc::now(),
                retry_count,
                max_retries,
                retry_interval: None,
                max_interval: None,
            },
            lease_owner: "w1".into(),
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            routing_key: "k".into(),
            max_retries: 2,
            retry_interval_ms: 1000,
            max_interval_ms: 10_000,
            backoff_multiplier: 2.0,
            jitter: 0.0,
            ordered: false,
            block_on_failure: false,
            paused: false,
        }
    }

    /// The action for an event at `retry_count` (with its own `max_retries`) after `outcome`.
    fn act(
        retry_count: i32,
        max_retries: Option<i32>,
        outcome: Outcome,
        on_success: OnSuccess,
    ) -> CompletionAction {
        decide(
            &claimed(retry_count, max_retries),
            &policy(),
            outcome,
            on_success,
            0.0,
        )
        .action
    }

    #[test]
    fn outcomes_map_to_actions() {
        let c = decide(
            &claimed(0, None),
            &policy(),
            Outcome::Delivered,
            OnSuccess::Mark,
            0.0,
        );
        assert_eq!(c.action, CompletionAction::Sent);
        assert_eq!((c.lease_owner.as_str(), c.retry_count), ("w1", 0));
        assert_eq!(
            act(0, None, Outcome::Delivered, OnSuccess::Delete),
            CompletionAction::Delete
        );
        let retry = CompletionAction::Retry {
            retry_count: 2,
            delay: Duration::from_secs(2),
            error: "HTTP 503".into(),
        };
        assert_eq!(
            act(1, None, Outcome::retry("HTTP 503"), OnSuccess::Mark),
            retry
        );
        let exhausted = "retries exhausted after 3 attempts (maxRetries=2): HTTP 503".to_string();
        assert_eq!(
            act(2, None, Outcome::retry("HTTP 503"), OnSuccess::Mark),
            CompletionAction::Fail {
                error: exhausted,
                block_aggregate: false
            }
        );
        let permanent = "permanent failure: HTTP 400".to_string();
        assert_eq!(
            act(0, None, Outcome::reject("HTTP 400"), OnSuccess::Mark),
            CompletionAction::Fail {
                error: permanent,
                block_aggregate: false
            }
        );
    }

    #[test]
    fn the_event_override_of_max_retries_wins() {
        assert!(matches!(
            act(2, Some(5), Outcome::retry("x"), OnSuccess::Mark),
            CompletionAction::Retry { retry_count: 3, .. }
        ));
        assert!(matches!(
            act(0, Some(0), Outcome::retry("x"), OnSuccess::Mark),
            CompletionAction::Fail { .. }
        ));
    }

    #[test]
    fn the_trace_context_is_read_from_a_valid_traceparent_only() {
        let mut e = claimed(0, None).event;
        assert_eq!(trace_context(&e), None);
        e.headers = Some(serde_json::json!({
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        }));
        assert_eq!(
            trace_context(&e),
            Some((
                "0af7651916cd43dd8448eb211c80319c".into(),
                "b7ad6b7169203331".into()
            ))
        );
        for bad in [
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-zzad6b7169203331-01",
        ] {
            e.headers = Some(serde_json::json!({ "traceparent": bad }));
            assert_eq!(trace_context(&e), None, "{bad}");
        }
    }

    #[test]
    fn missing_policy_or_route_is_named() {
        let e = claimed(0, None);
        let p = policy();
        let r = Route {
            sink_name: "s".into(),
            sink: Arc::new(outbox_store_free_sink::Nothing),
            breaker: Arc::new(crate::breaker::Breaker::new(Default::default())),
        };
        assert!(routed(&e, Some(&p), Some(&r)).is_ok());
        assert_eq!(
            routed(&e, None::<&RetryPolicy>, Some(&r)).err().unwrap(),
            "no OutboxRetryPolicy row for routingKey 'k'"
        );
        assert_eq!(
            routed(&e, Some(&p), None::<&Route>).err().unwrap(),
            "no route configured for routingKey 'k'"
        );
        assert!(routed(&e, None::<&RetryPolicy>, None::<&Route>)
            .err()
            .unwrap()
            .contains("and no route configured"));
    }

    /// A route whose breaker gives one answer, counting how often it was asked.
    struct Fixed(Admit, std::cell::Cell<u32>);

    impl Gate for Fixed {
        fn admit(&self) -> Admit {
            self.1.set(self.1.get() + 1);
            self.0
        }
        fn sink_name(&self) -> &str {
            "s"
        }
    }

    #[test]
    fn admission_applies_its_rules_in_order() {
        let e = claimed(2, None);
        let known =
            |policy: Option<RetryPolicy>, broken: Option<&str>, gate: Option<Admit>| Known {
                policy,
                broken: broken.map(str::to_string),
                route: gate.map(|a| Fixed(a, Default::default())),
                as_head: false,
                broken_delay: Duration::from_secs(7),
            };
        let settled = |a: Admission<Fixed>| match a {
            Admission::Settle(c) => c.action,
            Admission::Deliver { .. } => panic!("delivered"),
        };
        // A broken row comes before everything: held back, uncharged.
        match settled(admit(&e, known(None, Some("maxRetries is NULL"), None))) {
            CompletionAction::Retry {
                retry_count,
                delay,
                error,
            } => {
                assert_eq!((retry_count, delay), (2, Duration::from_secs(7)));
                assert!(
                    error.contains("cannot be used: maxRetries is NULL"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
        // No policy, or no route: FAILED at once, naming which; the breaker is not asked.
        match settled(admit(&e, known(None, None, Some(Admit::Go)))) {
            CompletionAction::Fail { error, .. } => {
                assert_eq!(error, "no OutboxRetryPolicy row for routingKey 'k'")
            }
            other => panic!("{other:?}"),
        }
        // Paused, and ordered but not claimed as a head: given back.
        let mut paused = policy();
        paused.paused = true;
        assert!(matches!(
            settled(admit(&e, known(Some(paused), None, Some(Admit::Go)))),
            CompletionAction::Release { note: None }
        ));
        let mut ordered = policy();
        ordered.ordered = true;
        assert!(matches!(
            settled(admit(
                &e,
                known(Some(ordered.clone()), None, Some(Admit::Go))
            )),
            CompletionAction::Release { note: None }
        ));
        let mut head = known(Some(ordered), None, Some(Admit::Go));
        head.as_head = true;
        match admit(&e, head) {
            Admission::Deliver { probe, route, .. } => {
                assert!(!probe);
                assert_eq!(route.1.get(), 1, "asked once");
            }
            Admission::Settle(c) => panic!("{c:?}"),
        }
        // An open breaker holds the event back uncharged; a half-open one lets a probe go.
        match settled(admit(
            &e,
            known(
                Some(policy()),
                None,
                Some(Admit::Hold(Duration::from_secs(3))),
            ),
        )) {
            CompletionAction::Retry {
                retry_count,
                delay,
                error,
            } => {
                assert_eq!((retry_count, delay), (2, Duration::from_secs(3)));
                assert_eq!(
                    error,
                    "not attempted: the circuit breaker of sink 's' is open"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            admit(&e, known(Some(policy()), None, Some(Admit::Probe))),
            Admission::Deliver { probe: true, .. }
        ));
    }

    #[test]
    fn not_attempted_is_given_back_uncharged() {
        let c = decide(
            &claimed(1, None),
            &policy(),
            Outcome::NotAttempted {
                reason: "out of file descriptors".into(),
                after: Duration::from_secs(1),
            },
            OnSuccess::Mark,
            0.0,
        );
        assert_eq!(
            c.action,
            CompletionAction::Retry {
                retry_count: 1,
                delay: Duration::from_secs(1),
                error: "not attempted: out of file descriptors".into()
            }
        );
    }

    #[test]
    fn an_unsent_flight_gives_the_event_back() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let slot = slots.clone().try_acquire_owned().unwrap();
        drop(InFlight::new(claimed(1, None), tx, slot, false));
        let ack = rx.try_recv().unwrap();
        assert!(matches!(
            ack.completion.action,
            CompletionAction::Release { .. }
        ));
        assert_eq!(ack.completion.retry_count, 1);
        assert_eq!(
            slots.available_permits(),
            0,
            "the slot travels with the result"
        );
        drop(ack);
        assert_eq!(slots.available_permits(), 1);
    }

    mod outbox_store_free_sink {
        use outbox_core::{ClaimedEvent, Outcome, Sink};
        pub struct Nothing;
        #[async_trait::async_trait]
        impl Sink for Nothing {
            async fn deliver(&self, _: &ClaimedEvent) -> Outcome {
                Outcome::Delivered
            }
        }
    }
}
