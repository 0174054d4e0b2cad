//! The two MQTT versions behind one face: connecting, handing over a publish, and what the
//! event loop reports. MQTT 5 carries the metadata as user properties and its PUBACK a
//! reason; MQTT 3.1.1 has neither (its PUBACK means success).

use super::config::MqttSinkConfig;
use outbox_core::conf::format_duration;
use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAckReason, PublishProperties};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use std::sync::Arc;
use std::time::Duration;

/// The protocol version spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V5,
    V311,
}

/// What the event loop reported.
pub(super) enum Happened {
    /// A publish was written with this packet id (in the order they were handed over).
    Numbered(u16),
    /// The broker acknowledged this packet id.
    Acked(u16, PubAckReason),
    /// The session is over, and why.
    Ended(String),
    Other,
}

/// The handle publishes are handed to.
pub(super) enum Client {
    V5(rumqttc::v5::AsyncClient),
    V311(rumqttc::AsyncClient),
}

/// The event loop that does the network work (boxed: the two differ much in size).
pub(super) enum Loop {
    V5(Box<rumqttc::v5::EventLoop>),
    V311(Box<rumqttc::EventLoop>),
}

impl Client {
    /// Hands a QoS 1 publish to the event loop at once, or fails when its queue is full;
    /// MQTT 3.1.1 drops `properties`.
    pub(super) fn try_publish(
        &self,
        topic: String,
        retain: bool,
        body: Vec<u8>,
        properties: PublishProperties,
    ) -> Result<(), String> {
        let full = |e: &dyn std::fmt::Display| {
            format!(
                "{e} (more publishes waiting than the session queues; lower worker.concurrency)"
            )
        };
        match self {
            Client::V5(c) => c
                .try_publish_with_properties(topic, QoS5::AtLeastOnce, retain, body, properties)
                .map_err(|e| full(&e)),
            Client::V311(c) => c
                .try_publish(topic, rumqttc::QoS::AtLeastOnce, retain, body)
                .map_err(|e| full(&e)),
        }
    }
}

/// Publishes the event loop queues before handing over fails (the deliveries in flight per
/// sink are bounded by `worker.concurrency`).
const QUEUE: usize = 4096;

impl Loop {
    pub(super) async fn next(&mut self) -> Happened {
        match self {
            Loop::V5(events) => match events.poll().await {
                Ok(rumqttc::v5::Event::Outgoing(Outgoing::Publish(pkid))) => {
                    Happened::Numbered(pkid)
                }
                Ok(rumqttc::v5::Event::Incoming(Packet5::PubAck(ack))) => {
                    Happened::Acked(ack.pkid, ack.reason)
                }
                Ok(rumqttc::v5::Event::Incoming(Packet5::Disconnect(d))) => {
                    Happened::Ended(format!("the broker disconnected: {:?}", d.reason_code))
                }
                Ok(_) => Happened::Other,
                Err(e) => Happened::Ended(format!("the connection to the broker failed: {e}")),
            },
            Loop::V311(events) => match events.poll().await {
                Ok(rumqttc::Event::Outgoing(Outgoing::Publish(pkid))) => Happened::Numbered(pkid),
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(ack))) => {
                    Happened::Acked(ack.pkid, PubAckReason::Success)
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Disconnect)) => {
                    Happened::Ended("the broker disconnected".to_string())
                }
                Ok(_) => Happened::Other,
                Err(e) => Happened::Ended(format!("the connection to the broker failed: {e}")),
            },
        }
    }
}

/// Room over `max_size` for the rest of a packet (topic, properties) in MQTT 3.1.1, where the
/// client library caps outgoing packets itself.
const V311_OVERHEAD: usize = 64 * 1024;

/// Connects and waits for the CONNACK: the client, its event loop, and the largest packet
/// the broker (or, for 3.1.1, the client library as set up here) takes.
pub(super) async fn connect(
    c: &MqttSinkConfig,
    client_id: String,
) -> Result<(Client, Loop, Option<u32>), String> {
    let transport = if c.tls {
        let config = crate::tls::client_config(c.ca_file.as_deref())?;
        Some(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(config),
        )))
    } else {
        None
    };
    let keep_alive = Duration::from_secs(30);
    let (client, mut events) = match c.version {
        Version::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(client_id, c.host.clone(), c.port);
            o.set_keep_alive(keep_alive)
                .set_clean_start(true)
                .set_connection_timeout(c.timeout.as_secs().max(1));
            if let Some((user, password)) = &c.credentials {
                o.set_credentials(user.clone(), password.clone());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, events) = rumqttc::v5::AsyncClient::new(o, QUEUE);
            (Client::V5(client), Loop::V5(Box::new(events)))
        }
        Version::V311 => {
            let mut o = rumqttc::MqttOptions::new(client_id, c.host.clone(), c.port);
            o.set_keep_alive(keep_alive)
                .set_clean_session(true)
                .set_max_packet_size(10 * 1024, c.max_size + V311_OVERHEAD);
            if let Some((user, password)) = &c.credentials {
                o.set_credentials(user.clone(), password.clone());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, events) = rumqttc::AsyncClient::new(o, QUEUE);
            (Client::V311(client), Loop::V311(Box::new(events)))
        }
    };
    let connected = tokio::time::timeout(c.timeout, async {
        loop {
            match &mut events {
                Loop::V5(e) => match e.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(Packet5::ConnAck(ack))) => {
                        return Ok(ack.properties.and_then(|p| p.max_packet_size))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                },
                Loop::V311(e) => match e.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        return Ok(Some((c.max_size + V311_OVERHEAD) as u32))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                },
            }
        }
    })
    .await;
    match connected {
        Ok(Ok(max)) => Ok((client, events, max)),
        Ok(Err(e)) => Err(format!("cannot connect to {}: {e}", c.shown)),
        Err(_) => Err(format!(
            "cannot connect to {} within {}",
            c.shown,
            format_duration(c.timeout)
        )),
    }
}
