//! The MQTT sink: QoS 1 publishes over one session (MQTT 5 or 3.1.1), each delivered on its
//! PUBACK.
//!
//! The client library reports a publish's packet id only as an event of its event loop, in
//! the order the publishes were handed to it. So publishes are handed over one at a time,
//! each with a waiter queued in the same order; the event loop task gives each packet id the
//! next waiter, and each PUBACK to the waiter of its packet id. When the session fails, every
//! waiter gets the error and the next delivery opens a new session.

use super::config::MqttSinkConfig;
use super::protocol::{self, Client, Happened, Loop};
use crate::message::{event_headers, outbox_headers, Destination, Encoding, Template};
use async_trait::async_trait;
use outbox_core::conf::format_duration;
use outbox_core::{ClaimedEvent, Outcome, Sink};
use rumqttc::v5::mqttbytes::v5::{PubAckReason, PublishProperties};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<PubAckReason, String>>;

/// Waiters for packet ids, in publish order (each with an id of its own, so a delivery that
/// is cancelled before its publish was handed over can take its waiter back out), and for
/// PUBACKs, by packet id.
#[derive(Default)]
struct Waiters {
    next: u64,
    unnumbered: VecDeque<(u64, Waiter)>,
    numbered: HashMap<u16, Waiter>,
}

/// Takes a waiter back out of the queue when dropped before [`Queued::handed`]: the delivery
/// was cancelled (its budget ran out) or the publish could not be handed over. Left in, it
/// would be given the packet id of the next publish, and every PUBACK after that would go to
/// the wrong delivery.
struct Queued<'a> {
    waiters: &'a Mutex<Waiters>,
    id: u64,
    handed: bool,
}

impl Queued<'_> {
    fn push(waiters: &Mutex<Waiters>, waiter: Waiter) -> Queued<'_> {
        let mut w = lock(waiters);
        let id = w.next;
        w.next += 1;
        w.unnumbered.push_back((id, waiter));
        Queued {
            waiters,
            id,
            handed: false,
        }
    }

    fn handed(mut self) {
        self.handed = true;
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if !self.handed {
            lock(self.waiters)
                .unnumbered
                .retain(|(id, _)| *id != self.id);
        }
    }
}

/// One connection to the broker.
struct Session {
    client: Client,
    /// The broker's limit on a packet, from its CONNACK.
    max_packet: Option<u32>,
    waiters: Arc<Mutex<Waiters>>,
    alive: Arc<AtomicBool>,
    /// Publishes are handed over one at a time, so packet ids come in waiter order.
    handing: tokio::sync::Mutex<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(w: &Mutex<Waiters>) -> std::sync::MutexGuard<'_, Waiters> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

/// Drives the event loop: numbers waiters, answers them on PUBACK, fails them all when the
/// session ends.
async fn drive(mut events: Loop, waiters: Arc<Mutex<Waiters>>, alive: Arc<AtomicBool>) {
    let error = loop {
        match events.next().await {
            Happened::Numbered(pkid) => {
                let mut w = lock(&waiters);
                if let Some((_, waiter)) = w.unnumbered.pop_front() {
                    w.numbered.insert(pkid, waiter);
                }
            }
            Happened::Acked(pkid, reason) => {
                if let Some(waiter) = lock(&waiters).numbered.remove(&pkid) {
                    let _ = waiter.send(Ok(reason));
                }
            }
            Happened::Ended(why) => break why,
            Happened::Other => {}
        }
    };
    alive.store(false, Ordering::SeqCst);
    let w = std::mem::take(&mut *lock(&waiters));
    let unnumbered = w.unnumbered.into_iter().map(|(_, waiter)| waiter);
    for waiter in unnumbered.chain(w.numbered.into_values()) {
        let _ = waiter.send(Err(error.clone()));
    }
}

/// Publishes to an MQTT broker with QoS 1.
pub struct MqttSink {
    config: MqttSinkConfig,
    topic: Template,
    encoding: Encoding,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
}

impl std::fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSink")
            .field("url", &self.config.shown)
            .finish_non_exhaustive()
    }
}

impl MqttSink {
    /// Builds the sink from a validated config (no I/O).
    pub fn new(config: &MqttSinkConfig) -> Result<MqttSink, String> {
        Ok(MqttSink {
            topic: config.topic.clone(),
            encoding: config.encoding.clone(),
            config: config.clone(),
            session: tokio::sync::Mutex::new(None),
        })
    }

    /// The live session, connecting first when there is none.
    async fn session(&self) -> Result<Arc<Session>, String> {
        let mut current = self.session.lock().await;
        if let Some(s) = current.as_ref() {
            if s.alive.load(Ordering::SeqCst) {
                return Ok(s.clone());
            }
        }
        *current = None;
        let c = &self.config;
        let id = c
            .client_id
            .clone()
            .unwrap_or_else(|| format!("outbox-{:016x}", rand::random::<u64>()));
        let (client, events, max_packet) = protocol::connect(c, id).await?;
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let alive = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(drive(events, waiters.clone(), alive.clone()));
        let session = Arc::new(Session {
            client,
            max_packet,
            waiters,
            alive,
            handing: tokio::sync::Mutex::new(()),
            task,
        });
        *current = Some(session.clone());
        Ok(session)
    }

    fn properties(&self, claimed: &ClaimedEvent, content_type: &str) -> PublishProperties {
        if self.config.version == protocol::Version::V311 {
            return PublishProperties::default(); // 3.1.1 has none
        }
        // An MQTT string holds at most 65,535 bytes: longer headers are left out.
        let fits = |(k, v): &(String, String)| k.len() <= 65_535 && v.len() <= 65_535;
        let mut user_properties: Vec<(String, String)> =
            event_headers(claimed).into_iter().filter(fits).collect();
        user_properties.extend(
            outbox_headers(claimed)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .filter(fits),
        );
        PublishProperties {
            content_type: Some(content_type.to_string()),
            payload_format_indicator: Some(1),
            user_properties,
            ..Default::default()
        }
    }
}

/// The size of a QoS 1 PUBLISH packet for `topic`, `properties` and a body of `body`
/// bytes: the fixed header (at most 5), the topic, the packet id, the properties and the
/// body.
fn packet_size(topic: &str, properties: &PublishProperties, body: usize) -> usize {
    let text = |s: &str| 2 + s.len();
    let props: usize = properties
        .user_properties
        .iter()
        .map(|(k, v)| 1 + text(k) + text(v))
        .sum::<usize>()
        + properties
            .content_type
            .as_deref()
            .map_or(0, |c| 1 + text(c))
        + properties.payload_format_indicator.map_or(0, |_| 2);
    5 + text(topic) + 2 + 4 + props + body
}

/// The one place a PUBACK reason becomes an [`Outcome`]. Success — also "no matching
/// subscribers", which MQTT 5 brokers report when nobody listens yet — is delivered; a
/// refusal is retried (an operator fixes permissions or quotas), except a topic or payload
/// the broker calls invalid, which the event will never stop being.
fn classify(reason: PubAckReason, topic: &str) -> Outcome {
    match reason {
        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Outcome::Delivered,
        PubAckReason::TopicNameInvalid => {
            Outcome::reject(format!("the broker calls topic '{topic}' invalid"))
        }
        PubAckReason::PayloadFormatInvalid => {
            Outcome::reject("the broker calls the payload's format invalid".to_string())
        }
        PubAckReason::NotAuthorized => Outcome::retry(format!(
            "the broker does not authorize publishing to '{topic}'; grant it in the broker's ACL"
        )),
        other => Outcome::retry(format!("the broker refused the message: {other:?}")),
    }
}

#[async_trait]
impl Sink for MqttSink {
    async fn deliver(&self, claimed: &ClaimedEvent) -> Outcome {
        let topic = match self.topic.destination(claimed, Destination::MqttTopic) {
            Ok(t) => t,
            Err(e) => return Outcome::reject(e),
        };
        let (body, content_type) = match self.encoding.bytes(claimed) {
            Ok(b) => b,
            Err(e) => return Outcome::reject(e),
        };
        if body.len() > self.config.max_size {
            return Outcome::reject(format!(
                "the message is {} bytes, more than max_size ({})",
                body.len(),
                self.config.max_size
            ));
        }
        let session = match self.session().await {
            Ok(s) => s,
            Err(e) => return crate::unreachable(e),
        };
        let properties = self.properties(claimed, content_type);
        // Too big for the broker: the client library would fail the whole session on it.
        let size = packet_size(&topic, &properties, body.len());
        if let Some(max) = session.max_packet {
            if size > max as usize {
                return Outcome::reject(format!(
                    "the message is {size} bytes as an MQTT packet, more than the broker's maximum of {max}"
                ));
            }
        }
        let (tx, rx) = oneshot::channel();
        {
            // Queue the waiter and hand the publish over without an await in between: a
            // delivery cancelled there could not tell whether its publish went out.
            let _turn = session.handing.lock().await;
            let queued = Queued::push(&session.waiters, tx);
            let handed =
                session
                    .client
                    .try_publish(topic.clone(), self.config.retain, body, properties);
            if let Err(e) = handed {
                return Outcome::retry(format!("cannot publish: {e}"));
            }
            queued.handed();
        }
        match tokio::time::timeout(self.config.timeout, rx).await {
            Ok(Ok(Ok(reason))) => classify(reason, &topic),
            Ok(Ok(Err(e))) => crate::unreachable(e),
            Ok(Err(_)) => Outcome::retry("the session ended before the PUBACK".to_string()),
            Err(_) => {
                // The session is not trusted after a lost acknowledgement.
                session.alive.store(false, Ordering::SeqCst);
                Outcome::retry(format!(
                    "no PUBACK within {}",
                    format_duration(self.config.timeout)
                ))
            }
        }
    }

    async fn health(&self) -> Result<(), String> {
        self.session().await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_whose_publish_was_not_handed_over_leaves_the_queue() {
        let waiters = Mutex::new(Waiters::default());
        let (first, _first_rx) = oneshot::channel();
        let (second, mut second_rx) = oneshot::channel();
        let (third, _third_rx) = oneshot::channel();
        Queued::push(&waiters, first).handed();
        // Cancelled (or failed) before its publish was handed over.
        drop(Queued::push(&waiters, second));
        Queued::push(&waiters, third).handed();
        let w = lock(&waiters);
        assert_eq!(
            w.unnumbered.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [0, 2],
            "the next packet ids go to the first and third deliveries"
        );
        drop(w);
        assert!(second_rx.try_recv().is_err());
    }

    #[test]
    fn reasons_are_classified() {
        assert_eq!(
            classify(PubAckReason::NoMatchingSubscribers, "t"),
            Outcome::Delivered
        );
        assert!(matches!(
            classify(PubAckReason::NotAuthorized, "t"),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(PubAckReason::TopicNameInvalid, "t"),
            Outcome::Reject { .. }
        ));
    }
}
