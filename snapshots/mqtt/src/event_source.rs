// Scaffolded by kubeless-trigger, then yours: edit freely, `kubeless-trigger` never rewrites this file.
//! The MQTT event source: an MQTT 5 shared subscription, QoS 1, on the
//! trigger's `topic` filter, in a persistent session, with manual
//! acknowledgements.
//!
//! - Every (trigger, function) pair is one MQTT session, whose client id is
//!   derived from the consumer group and the topic filter (and
//!   `MQTT_REPLICA_ID`, when set), so a restarted controller resumes the
//!   session it left: the broker kept what was published meanwhile.
//! - The subscription is `$share/<group>/<topic>`: controller replicas (each
//!   with its own `MQTT_REPLICA_ID`) share the messages instead of each
//!   delivering them.
//! - A message is acknowledged (PUBACK) only once the function took it or the
//!   dead letter did. MQTT requires PUBACKs in the order the messages came
//!   in, so only the settled front of the messages received is acknowledged.
//! - MQTT 5 has no negative acknowledgement, and a broker resends an
//!   unacknowledged message only when the session resumes on a new
//!   connection. So after a final failure the consumer waits
//!   `REDELIVERY_DELAY_SECONDS`, then reconnects: the broker resends every
//!   message still unacknowledged, the failed one and those behind it
//!   (duplicates of those already delivered are possible).
//!
//! The runtime calls [`consume`] once per (trigger, function) pair and cancels
//! `shutdown` when the trigger changes or goes away, when the function stops
//! matching, or when the controller shuts down; it restarts a consumer that
//! fails. Everything else (watching, finalizers, status, HTTP delivery with
//! the Kubeless headers) is done for you.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event as MqttEvent, EventLoop, MqttOptions};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::apis::TriggerSpec;
use crate::consumers::ConsumerContext;
use crate::delivery::{Event, Outcome, Sink};
use crate::source::EventSource;

/// Errors a consumer may end with; the runtime restarts the consumer.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Every MQTT trigger acknowledges its messages (at-least-once).
pub fn acknowledges(_spec: &TriggerSpec) -> bool {
    true
}

/// What the runtime runs: [`consume`], once per (trigger, function).
pub fn source() -> EventSource {
    EventSource::stream(consume, acknowledges)
}

/// Where the controller looks for the broker; override with `MQTT_URL`.
pub const DEFAULT_MQTT_URL: &str = "mqtt://mosquitto.mosquitto.svc.cluster.local:1883";
/// The MQTT port when `MQTT_URL` names none.
const DEFAULT_PORT: u16 = 1883;
/// How long the broker keeps a session (its subscription and the messages
/// for it) after its connection ends (`MQTT_SESSION_EXPIRY_SECONDS` overrides).
const DEFAULT_SESSION_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// Pause after a final failure before the session is resumed for the broker
/// to resend it (`REDELIVERY_DELAY_SECONDS` overrides).
const DEFAULT_REDELIVERY_DELAY: Duration = Duration::from_secs(10);
/// Deliveries of one message before it is given up, acknowledged and counted
/// lost (`MAX_DELIVER` overrides; a dead letter avoids the loss).
const DEFAULT_MAX_DELIVER: u32 = 10;
/// How long a stopping consumer waits for its deliveries in flight, to
/// acknowledge them; less than the runtime's 10 s wait for a source to stop.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long a stopping consumer waits for its DISCONNECT to leave.
const DISCONNECT_DEADLINE: Duration = Duration::from_secs(2);
/// Pause before reconnecting after the connection broke.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// MQTT keep-alive: the broker drops a connection silent for 1.5 times it.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// The largest MQTT packet the consumer takes, announced to the broker (which
/// then does not send larger ones). rumqttc's own default, 10 KiB, made a
/// larger message break the connection on every redelivery, stalling the
/// session behind it. `MAX_IN_FLIGHT` of these fit the controller's memory.
const MAX_PACKET_BYTES: u32 = 1024 * 1024;

/// Why a consumer cannot start with the configuration it has.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("MQTT_URL `{0}`: expected mqtt://host[:port] or tcp://host[:port]")]
    Url(String),
    #[error("MQTT_URL `{0}`: TLS (mqtts://, ssl://) is not supported yet; use mqtt://")]
    Tls(String),
    #[error("MQTT_PASSWORD is set but MQTT_USERNAME is not")]
    PasswordWithoutUser,
    #[error("topic `{0}`: give the topic filter alone; the trigger adds `$share/<group>/` itself")]
    SharedTopic(String),
    #[error("the broker refused the subscription to `{filter}`: {code:?}")]
    Subscription { filter: String, code: SubscribeReasonCode },
}

/// The broker's address, from `MQTT_URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
}

/// Parse `mqtt://host[:port]` (or `tcp://`; no scheme means `mqtt://`).
pub fn broker(url: &str) -> Result<Broker, ConfigError> {
    let url = url.trim();
    let bad = || ConfigError::Url(url.to_owned());
    let rest = match url.split_once("://") {
        Some(("mqtt" | "tcp", rest)) => rest,
        Some(("mqtts" | "ssl" | "tls", _)) => return Err(ConfigError::Tls(url.to_owned())),
        Some(_) => return Err(bad()),
        None => url,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '@', '?']) {
        return Err(bad());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => (host, port.parse().map_err(|_| bad())?),
        _ => (rest, DEFAULT_PORT),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok(Broker { host: host.to_owned(), port })
}

/// The share name of a consumer group: MQTT forbids `/`, `+` and `#` in it.
pub fn share_name(group: &str) -> String {
    group.chars().map(|c| if matches!(c, '/' | '+' | '#') || c.is_whitespace() { '_' } else { c }).collect()
}

/// The shared subscription of a group on `topic`: `$share/<group>/<topic>`.
pub fn shared_filter(group: &str, topic: &str) -> Result<String, ConfigError> {
    if topic.starts_with("$share/") {
        return Err(ConfigError::SharedTopic(topic.to_owned()));
    }
    Ok(format!("$share/{}/{topic}", share_name(group)))
}

/// The session's client id: stable for a (group, topic, replica), so a
/// restarted controller resumes its session; another topic is another
/// session, so a changed trigger does not keep the old subscription.
pub fn client_id(group: &str, topic: &str, replica: Option<&str>) -> String {
    let mut id = format!("kt-{}-{:016x}", share_name(group), fnv1a(topic.as_bytes()));
    if let Some(replica) = replica.filter(|r| !r.is_empty()) {
        id.push('-');
        id.push_str(&share_name(replica));
    }
    id
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The consumer's settings, from the environment.
#[derive(Clone, Debug)]
struct Settings {
    broker: Broker,
    credentials: Option<(String, String)>,
    session_expiry: Duration,
    redelivery_delay: Duration,
    max_deliver: u32,
    replica: Option<String>,
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Whole seconds from the environment variable `key`, else `default`.
fn seconds_from_env(key: &str, default: Duration) -> Duration {
    env(key).and_then(|s| s.parse().ok()).map_or(default, Duration::from_secs)
}

impl Settings {
    fn from_env() -> Result<Settings, ConfigError> {
        let url = env("MQTT_URL").unwrap_or_else(|| DEFAULT_MQTT_URL.to_owned());
        let credentials = match (env("MQTT_USERNAME"), std::env::var("MQTT_PASSWORD").ok()) {
            (Some(user), password) => Some((user, password.unwrap_or_default())),
            (None, Some(password)) if !password.is_empty() => return Err(ConfigError::PasswordWithoutUser),
            (None, _) => None,
        };
        Ok(Settings {
            broker: broker(&url)?,
            credentials,
            session_expiry: seconds_from_env("MQTT_SESSION_EXPIRY_SECONDS", DEFAULT_SESSION_EXPIRY),
            redelivery_delay: seconds_from_env("REDELIVERY_DELAY_SECONDS", DEFAULT_REDELIVERY_DELAY),
            max_deliver: env("MAX_DELIVER")
                .and_then(|s| s.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_MAX_DELIVER),
            replica: env("MQTT_REPLICA_ID"),
        })
    }

    /// The connection options of a session: clean start off, the session
    /// kept `session_expiry` after a disconnect, acknowledgements by hand,
    /// and at most `in_flight` unacknowledged messages sent at once.
    fn options(&self, client_id: &str, in_flight: usize) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, self.broker.host.clone(), self.broker.port);
        let expiry = u32::try_from(self.session_expiry.as_secs()).unwrap_or(u32::MAX);
        let receive_maximum = u16::try_from(in_flight.max(1)).unwrap_or(u16::MAX);
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_start(false)
            .set_session_expiry_interval(Some(expiry))
            .set_receive_maximum(Some(receive_maximum))
            .set_max_packet_size(Some(MAX_PACKET_BYTES))
            .set_manual_acks(true);
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        options
    }
}

/// Where a message received on a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Handed to the sink; no outcome yet.
    Delivering,
    /// Delivered (or dead-lettered, or given up): acknowledge it.
    Acknowledge,
    /// Delivery finally failed: never acknowledge it on this connection.
    Hold,
}

/// The messages of one connection in the order they came in: MQTT wants
/// their PUBACKs in that order, so only the settled front is acknowledged.
#[derive(Debug)]
struct Ledger<T> {
    next: u64,
    entries: VecDeque<(u64, T, State)>,
}

impl<T> Default for Ledger<T> {
    fn default() -> Ledger<T> {
        Ledger { next: 0, entries: VecDeque::new() }
    }
}

impl<T> Ledger<T> {
    /// Record a message handed to the sink; returns its number.
    fn push(&mut self, message: T) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.entries.push_back((seq, message, State::Delivering));
        seq
    }

    /// Record the outcome of message `seq`.
    fn settle(&mut self, seq: u64, acknowledge: bool) {
        if let Some(entry) = self.entries.iter_mut().find(|(s, _, _)| *s == seq) {
            entry.2 = if acknowledge { State::Acknowledge } else { State::Hold };
        }
    }

    /// Take the front run of messages to acknowledge, in order.
    fn ready(&mut self) -> Vec<T> {
        let mut out = Vec::new();
        while self.entries.front().is_some_and(|(_, _, state)| *state == State::Acknowledge) {
            if let Some((_, message, _)) = self.entries.pop_front() {
                out.push(message);
            }
        }
        out
    }

    /// Whether a failed message holds the acknowledgements back.
    fn held(&self) -> bool {
        self.entries.iter().any(|(_, _, state)| *state == State::Hold)
    }

    /// Whether a delivery of this connection still runs.
    fn delivering(&self) -> bool {
        self.entries.iter().any(|(_, _, state)| *state == State::Delivering)
    }
}

/// The outcome of message `seq` of connection `connection`.
type Settled = (u64, u64, Outcome);

/// How one connection ended.
enum End {
    /// The consumer was stopped.
    Stopped,
    /// Connect again after a pause (a final failure, a broken connection).
    Resume(Duration),
}

/// Deliver every message on the trigger's topic filter until `shutdown`.
pub async fn consume(
    ctx: ConsumerContext,
    sink: Sink,
    shutdown: CancellationToken,
) -> Result<(), SourceError> {
    consume_with(Settings::from_env()?, ctx, sink, shutdown).await
}

/// [`consume`] with the settings given.
async fn consume_with(
    settings: Settings,
    ctx: ConsumerContext,
    sink: Sink,
    shutdown: CancellationToken,
) -> Result<(), SourceError> {
    let filter = shared_filter(&ctx.group, &ctx.spec.topic)?;
    let client_id = client_id(&ctx.group, &ctx.spec.topic, settings.replica.as_deref());
    let (settled_tx, mut settled_rx) = mpsc::unbounded_channel();
    let mut session = Session {
        settings,
        filter,
        client_id,
        in_flight: ctx.max_in_flight,
        sink,
        shutdown,
        settled_tx,
        failures: HashMap::new(),
        connection: 0,
    };
    loop {
        session.connection += 1;
        match session.run(&mut settled_rx).await? {
            End::Stopped => return Ok(()),
            End::Resume(pause) => {
                tokio::select! {
                    () = session.shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// One consumer's MQTT session, over successive connections.
struct Session {
    settings: Settings,
    filter: String,
    client_id: String,
    in_flight: usize,
    sink: Sink,
    shutdown: CancellationToken,
    settled_tx: mpsc::UnboundedSender<Settled>,
    /// Failed deliveries per message (topic and payload hash), for `MAX_DELIVER`.
    failures: HashMap<u64, u32>,
    /// The number of the current connection: outcomes of an earlier one are
    /// ignored (its packet ids may name other messages now).
    connection: u64,
}

/// The client's event loop, polled by its own task: its events arrive on a
/// channel, which `tokio::select!` may drop a receive of safely. The channel
/// is unbounded so that the loop never waits for the consumer: it keeps
/// sending PUBACKs and pings while a delivery slot is awaited. What it
/// holds is bounded by the broker: at most `in_flight` unacknowledged
/// messages, and a few control packets.
struct Driver {
    events: mpsc::UnboundedReceiver<Result<MqttEvent, ConnectionError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Driver {
    fn start(mut eventloop: EventLoop) -> Driver {
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if tx.send(event).is_err() || failed {
                    return;
                }
            }
        });
        Driver { events, task }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Session {
    /// One connection: subscribe, deliver, acknowledge, until it ends.
    async fn run(&mut self, settled: &mut mpsc::UnboundedReceiver<Settled>) -> Result<End, SourceError> {
        // Requests are PUBACKs (at most `in_flight` at once) and the subscription.
        let capacity = self.in_flight.saturating_mul(4).saturating_add(64);
        let options = self.settings.options(&self.client_id, self.in_flight);
        let (client, eventloop) = AsyncClient::new(options, capacity);
        client.try_subscribe(self.filter.clone(), QoS::AtLeastOnce)?;
        let mut driver = Driver::start(eventloop);
        let mut ledger = Ledger::default();
        let mut resume_at: Option<Instant> = None;
        let mut connected = false;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    self.drain(&client, &mut driver, &mut ledger, settled).await;
                    return Ok(End::Stopped);
                }
                Some(outcome) = settled.recv() => {
                    if !self.settle(&client, &mut ledger, outcome) {
                        // The event loop is gone: its error, or the next connection, follows.
                        warn!(client_id = %self.client_id, "the MQTT connection ended before an acknowledgement; reconnecting");
                        return Ok(End::Resume(RECONNECT_PAUSE));
                    }
                    if resume_at.is_none() && ledger.held() {
                        warn!(client_id = %self.client_id, delay = ?self.settings.redelivery_delay,
                            "a delivery failed finally; resuming the session then, for the broker to resend it");
                        resume_at = Some(Instant::now() + self.settings.redelivery_delay);
                    }
                }
                () = sleep_until(resume_at) => {
                    info!(client_id = %self.client_id, "resuming the session for the broker to resend what is unacknowledged");
                    return Ok(End::Resume(Duration::ZERO));
                }
                event = driver.events.recv() => match event {
                    Some(Ok(MqttEvent::Incoming(Packet::Publish(publish)))) => {
                        // Held back after a failure: left unacknowledged, resent on resume.
                        if resume_at.is_none() {
                            self.hand_over(&mut ledger, publish).await;
                        }
                    }
                    Some(Ok(MqttEvent::Incoming(Packet::ConnAck(ack)))) => {
                        connected = true;
                        info!(client_id = %self.client_id, filter = %self.filter, session_present = ack.session_present,
                            "connected (MQTT 5, QoS 1, at-least-once)");
                    }
                    Some(Ok(MqttEvent::Incoming(Packet::SubAck(ack)))) => self.subscribed(&ack.return_codes)?,
                    Some(Ok(_)) => {}
                    Some(Err(e)) if !connected => return Err(e.into()),
                    Some(Err(e)) => {
                        warn!(client_id = %self.client_id, error = %e, "the MQTT connection broke; reconnecting");
                        return Ok(End::Resume(RECONNECT_PAUSE));
                    }
                    None => return Ok(End::Resume(RECONNECT_PAUSE)),
                },
            }
        }
    }

    /// Fail on a refused subscription (not authorised, shared subscriptions
    /// not supported, an invalid filter).
    fn subscribed(&self, codes: &[SubscribeReasonCode]) -> Result<(), ConfigError> {
        match codes.iter().find(|c| !matches!(c, SubscribeReasonCode::Success(_))) {
            Some(code) => Err(ConfigError::Subscription { filter: self.filter.clone(), code: *code }),
            None => Ok(()),
        }
    }

    /// Hand `publish` to the sink; its outcome comes back on the channel.
    async fn hand_over(&self, ledger: &mut Ledger<Publish>, publish: Publish) {
        let topic = String::from_utf8_lossy(&publish.topic).into_owned();
        let payload = publish.payload.clone();
        let seq = ledger.push(publish);
        let (tx, connection) = (self.settled_tx.clone(), self.connection);
        let event = Event::new(payload).with_topic(topic).with_ack(move |outcome| {
            let _ = tx.send((connection, seq, outcome));
        });
        // A slot is free: the broker sends at most `in_flight` messages unacknowledged.
        self.sink.send(event).await;
    }

    /// Record an outcome and send the PUBACKs it makes possible; false when
    /// the client's event loop is gone (the PUBACKs not sent are resent by
    /// the broker as messages on the next connection).
    fn settle(
        &mut self,
        client: &AsyncClient,
        ledger: &mut Ledger<Publish>,
        (connection, seq, outcome): Settled,
    ) -> bool {
        if connection != self.connection {
            return true;
        }
        let acknowledge = match outcome {
            Outcome::Delivered | Outcome::DeadLettered | Outcome::Received => true,
            Outcome::Failed => self.given_up(ledger, seq),
        };
        ledger.settle(seq, acknowledge);
        for publish in ledger.ready() {
            self.failures.remove(&message_key(&publish));
            if client.try_ack(&publish).is_err() {
                return false;
            }
        }
        true
    }

    /// Count a final failure of message `seq`; true once it failed on
    /// `MAX_DELIVER` deliveries: then it is acknowledged and counted lost.
    fn given_up(&mut self, ledger: &Ledger<Publish>, seq: u64) -> bool {
        let Some((_, publish, _)) = ledger.entries.iter().find(|(s, _, _)| *s == seq) else { return false };
        let failures = self.failures.entry(message_key(publish)).or_default();
        *failures += 1;
        if *failures < self.settings.max_deliver {
            return false;
        }
        self.sink.lost(1, "delivery failed on MAX_DELIVER deliveries");
        true
    }

    /// Stopping: hand nothing new over, wait (at most `DRAIN_DEADLINE`) for
    /// the deliveries in flight, acknowledge what may be, and disconnect; the
    /// broker keeps the rest in the session for the next connection.
    async fn drain(
        &mut self,
        client: &AsyncClient,
        driver: &mut Driver,
        ledger: &mut Ledger<Publish>,
        settled: &mut mpsc::UnboundedReceiver<Settled>,
    ) {
        let deadline = Instant::now() + DRAIN_DEADLINE;
        while ledger.delivering() {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                Some(outcome) = settled.recv() => {
                    if !self.settle(client, ledger, outcome) {
                        warn!(client_id = %self.client_id, "the MQTT connection ended while stopping");
                        return;
                    }
                }
                event = driver.events.recv() => if !matches!(event, Some(Ok(_))) { return },
            }
        }
        if client.try_disconnect().is_err() {
            return;
        }
        // The DISCONNECT leaves after the PUBACKs queued before it.
        let deadline = Instant::now() + DISCONNECT_DEADLINE;
        while let Ok(Some(Ok(event))) = tokio::time::timeout_at(deadline, driver.events.recv()).await {
            if matches!(event, MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    }
}

/// Sleep until `at`, or forever when there is none.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What tells a message's deliveries apart from others', for `MAX_DELIVER`:
/// MQTT has no message id that survives a redelivery.
fn message_key(publish: &Publish) -> u64 {
    fnv1a(&publish.topic) ^ fnv1a(&publish.payload).rotate_left(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_url_takes_mqtt_and_tcp_schemes_and_a_default_port() {
        let at = |host: &str, port| Some(Broker { host: host.to_owned(), port });
        assert_eq!(broker("mqtt://mosquitto:1884").ok(), at("mosquitto", 1884));
        assert_eq!(broker("tcp://127.0.0.1:1883/").ok(), at("127.0.0.1", 1883));
        assert_eq!(broker("mosquitto.mosquitto.svc").ok(), at("mosquitto.mosquitto.svc", 1883));
        assert_eq!(broker("mqtt://[::1]:1999").ok(), at("::1", 1999));
        assert_eq!(broker(DEFAULT_MQTT_URL).ok(), at("mosquitto.mosquitto.svc.cluster.local", 1883));
    }

    #[test]
    fn a_bad_or_tls_broker_url_is_refused() {
        for url in ["http://x:1883", "mqtt://", "mqtt://x:port", "mqtt://x:0", "mqtt://u@x", "mqtt://x/a"] {
            assert!(matches!(broker(url), Err(ConfigError::Url(_))), "{url}");
        }
        for url in ["mqtts://x:8883", "ssl://x"] {
            assert!(matches!(broker(url), Err(ConfigError::Tls(_))), "{url}");
        }
    }

    #[test]
    fn the_share_name_has_no_characters_mqtt_forbids() {
        assert_eq!(share_name("default.orders.hello"), "default.orders.hello");
        assert_eq!(share_name("a/b+c#d e"), "a_b_c_d_e");
        assert_eq!(
            shared_filter("ns.t.f", "sensors/+/temp").ok().as_deref(),
            Some("$share/ns.t.f/sensors/+/temp")
        );
        assert!(matches!(shared_filter("g", "$share/x/y"), Err(ConfigError::SharedTopic(_))));
    }

    #[test]
    fn the_client_id_is_stable_per_group_topic_and_replica() {
        let id = client_id("default.orders.hello", "a/b", None);
        assert_eq!(id, client_id("default.orders.hello", "a/b", None), "stable across restarts");
        assert!(id.starts_with("kt-default.orders.hello-"), "{id}");
        assert_ne!(id, client_id("default.orders.hello", "a/c", None), "another topic, another session");
        assert_eq!(client_id("g", "t", Some("pod/0")), format!("{}-pod_0", client_id("g", "t", None)));
        assert_eq!(client_id("g", "t", Some("")), client_id("g", "t", None));
        // FNV-1a's published test vector: the hash must not change with Rust.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn only_the_settled_front_is_acknowledged_in_order() {
        let mut ledger = Ledger::default();
        let (a, b, c) = (ledger.push('a'), ledger.push('b'), ledger.push('c'));
        ledger.settle(b, true);
        assert!(ledger.ready().is_empty(), "b waits for a");
        ledger.settle(a, true);
        assert_eq!(ledger.ready(), vec!['a', 'b']);
        assert!(ledger.delivering());
        ledger.settle(c, true);
        assert_eq!(ledger.ready(), vec!['c']);
        assert!(!ledger.delivering() && !ledger.held());
    }

    #[test]
    fn a_failed_message_holds_back_every_acknowledgement_behind_it() {
        let mut ledger = Ledger::default();
        let (a, b) = (ledger.push('a'), ledger.push('b'));
        ledger.settle(a, false);
        ledger.settle(b, true);
        assert!(ledger.ready().is_empty(), "a is never acknowledged on this connection, nor b after it");
        assert!(ledger.held());
    }
}

// The tests below need a broker: sources/mqtt/harness starts mosquitto and
// runs them with MQTT_URL set.
#[cfg(test)]
mod broker {
    use super::*;
    use bytes::Bytes;

    use crate::apis::TEST_SPEC_JSON;
    use crate::consumers::ConsumerKey;
    use crate::delivery::{DeliveryMode, RetryPolicy, SinkOptions};
    use crate::invoker::{Invoker, event_id};
    use crate::metrics::Metrics;
    use crate::testkit::{Behaviour, LoopbackFunction};

    const WAIT: Duration = Duration::from_secs(20);

    fn spec_on(topic: &str) -> TriggerSpec {
        let mut spec: TriggerSpec = serde_json::from_str(TEST_SPEC_JSON).expect("a valid test spec");
        spec.topic = topic.to_owned();
        spec
    }

    /// A consumer (one replica's) of `topic` delivering to `url` without retries.
    fn start(
        topic: &str,
        url: &str,
        replica: &str,
    ) -> (CancellationToken, tokio::task::JoinHandle<Result<(), SourceError>>) {
        let mut settings = Settings::from_env().expect("MQTT_URL");
        settings.replica = Some(replica.to_owned());
        settings.redelivery_delay = Duration::from_secs(1);
        let key =
            ConsumerKey { namespace: "default".into(), trigger: "orders".into(), function: "hello".into() };
        let ctx = ConsumerContext {
            group: key.group(),
            key,
            spec: spec_on(topic),
            delivery: DeliveryMode::AtLeastOnce,
            max_in_flight: 4,
            client: crate::testkit::offline_client(),
        };
        let retry = RetryPolicy { max_retries: 0, ..RetryPolicy::default() };
        let options = SinkOptions { max_in_flight: 4, retry, ..SinkOptions::default() };
        let sink =
            Sink::new(url.to_owned(), Invoker::new(Duration::from_secs(5)), options, Metrics::new(), None);
        let shutdown = CancellationToken::new();
        (shutdown.clone(), tokio::spawn(consume_with(settings, ctx, sink, shutdown)))
    }

    async fn stop(consumer: (CancellationToken, tokio::task::JoinHandle<Result<(), SourceError>>)) {
        consumer.0.cancel();
        consumer.1.await.expect("join").expect("the consumer stops cleanly");
    }

    /// A publishing client: QoS 1, each publish acknowledged by the broker.
    struct Publisher {
        client: AsyncClient,
        task: tokio::task::JoinHandle<()>,
        acked: mpsc::UnboundedReceiver<()>,
    }

    impl Publisher {
        async fn connect() -> Publisher {
            let settings = Settings::from_env().expect("MQTT_URL");
            let id = format!("kt-test-publisher-{}", event_id());
            let mut options = MqttOptions::new(id, settings.broker.host, settings.broker.port);
            options.set_clean_start(true);
            let (client, mut eventloop) = AsyncClient::new(options, 1024);
            let (tx, acked) = mpsc::unbounded_channel();
            let task = tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(MqttEvent::Incoming(Packet::PubAck(_))) => {
                            let _ = tx.send(());
                        }
                        Ok(_) => {}
                        Err(e) => panic!("the publisher's connection failed: {e}"),
                    }
                }
            });
            Publisher { client, task, acked }
        }

        async fn publish(&mut self, topic: &str, bodies: &[Bytes]) {
            for body in bodies {
                self.client.publish(topic, QoS::AtLeastOnce, false, body.clone()).await.expect("publish");
            }
            for _ in bodies {
                tokio::time::timeout(WAIT, self.acked.recv()).await.expect("the broker took the message");
            }
        }
    }

    impl Drop for Publisher {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn bodies(n: usize) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(format!(r#"{{"n":{i},"id":"{}"}}"#, event_id()))).collect()
    }

    /// Wait until `function` answered 2xx to every body; returns how often each was delivered.
    async fn delivered(function: &LoopbackFunction, bodies: &[Bytes]) -> Vec<u32> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = function.delivered();
            let counts: Vec<u32> = bodies.iter().map(|b| got.get(b).copied().unwrap_or(0)).collect();
            if counts.iter().all(|n| *n > 0) || Instant::now() > deadline {
                return counts;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publish until the consumer's subscription exists (the broker drops
    /// messages for a filter nobody subscribed yet); returns the probes sent.
    async fn probe(publisher: &mut Publisher, topic: &str, function: &LoopbackFunction) -> Vec<Bytes> {
        let mut sent = Vec::new();
        for _ in 0..100 {
            let probe = bodies(1);
            publisher.publish(topic, &probe).await;
            sent.extend(probe);
            tokio::time::sleep(Duration::from_millis(100)).await;
            if !function.delivered().is_empty() {
                return sent;
            }
        }
        panic!("the consumer never subscribed");
    }

    #[tokio::test]
    #[ignore = "needs mosquitto: MQTT_URL=mqtt://127.0.0.1:1883 cargo test -- --ignored --test-threads=1"]
    async fn messages_on_the_topic_reach_the_function_with_their_topic() {
        let function = LoopbackFunction::start().await;
        let topic = format!("kubeless-test/{}", event_id());
        let consumer = start(&format!("{topic}/+"), &function.url, "a");
        let mut publisher = Publisher::connect().await;
        probe(&mut publisher, &format!("{topic}/probe"), &function).await;
        let sent = bodies(5);
        publisher.publish(&format!("{topic}/kitchen"), &sent).await;
        assert!(delivered(&function, &sent).await.iter().all(|n| *n >= 1), "every message arrived");
        let topics: Vec<_> = function
            .headers()
            .iter()
            .filter_map(|h| h.get("event-topic")?.to_str().ok().map(str::to_owned))
            .collect();
        assert!(topics.contains(&format!("{topic}/kitchen")), "the event-topic header: {topics:?}");
        stop(consumer).await;
    }

    #[tokio::test]
    #[ignore = "needs mosquitto: MQTT_URL=mqtt://127.0.0.1:1883 cargo test -- --ignored --test-threads=1"]
    async fn a_message_larger_than_the_client_default_is_delivered() {
        let function = LoopbackFunction::start().await;
        let topic = format!("kubeless-test/{}", event_id());
        let consumer = start(&topic, &function.url, "a");
        let mut publisher = Publisher::connect().await;
        probe(&mut publisher, &topic, &function).await;
        let large =
            vec![Bytes::from(format!(r#"{{"id":"{}","pad":"{}"}}"#, event_id(), "x".repeat(200 * 1024)))];
        publisher.publish(&topic, &large).await;
        assert_eq!(delivered(&function, &large).await, vec![1], "a 200 KiB message arrives, once");
        stop(consumer).await;
    }

    #[tokio::test]
    #[ignore = "needs mosquitto: MQTT_URL=mqtt://127.0.0.1:1883 cargo test -- --ignored --test-threads=1"]
    async fn a_failed_message_is_redelivered_once_the_function_recovers() {
        let function = LoopbackFunction::start().await;
        let topic = format!("kubeless-test/{}", event_id());
        let consumer = start(&topic, &function.url, "a");
        let mut publisher = Publisher::connect().await;
        probe(&mut publisher, &topic, &function).await;
        function.set(Behaviour::FailTimes(3));
        let sent = bodies(3);
        publisher.publish(&topic, &sent).await;
        let counts = delivered(&function, &sent).await;
        assert!(counts.iter().all(|n| *n >= 1), "nothing lost after the failures: {counts:?}");
        assert!(function.requests() > 3 + 3, "the failed ones came again");
        stop(consumer).await;
    }

    #[tokio::test]
    #[ignore = "needs mosquitto: MQTT_URL=mqtt://127.0.0.1:1883 cargo test -- --ignored --test-threads=1"]
    async fn messages_published_while_the_consumer_is_stopped_arrive_after_it_restarts() {
        let function = LoopbackFunction::start().await;
        let topic = format!("kubeless-test/{}", event_id());
        let consumer = start(&topic, &function.url, "a");
        let mut publisher = Publisher::connect().await;
        probe(&mut publisher, &topic, &function).await;
        stop(consumer).await;

        let sent = bodies(10);
        publisher.publish(&topic, &sent).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(sent.iter().all(|b| !function.delivered().contains_key(b)), "nobody consumes meanwhile");
        let consumer = start(&topic, &function.url, "a");
        let counts = delivered(&function, &sent).await;
        assert!(counts.iter().all(|n| *n >= 1), "the session kept them: {counts:?}");
        stop(consumer).await;
    }

    #[tokio::test]
    #[ignore = "needs mosquitto: MQTT_URL=mqtt://127.0.0.1:1883 cargo test -- --ignored --test-threads=1"]
    async fn two_replicas_share_the_subscription() {
        let (one, two) = (LoopbackFunction::start().await, LoopbackFunction::start().await);
        let topic = format!("kubeless-test/{}", event_id());
        let first = start(&topic, &one.url, "replica-1");
        let second = start(&topic, &two.url, "replica-2");
        let mut publisher = Publisher::connect().await;
        // Both subscribed once each has received a probe.
        let mut probes = Vec::new();
        for _ in 0..100 {
            let probe = bodies(1);
            publisher.publish(&topic, &probe).await;
            probes.extend(probe);
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !one.delivered().is_empty() && !two.delivered().is_empty() {
                break;
            }
        }
        let sent = bodies(40);
        publisher.publish(&topic, &sent).await;
        let deadline = Instant::now() + WAIT;
        let counts = loop {
            let (a, b) = (one.delivered(), two.delivered());
            let counts: Vec<(u32, u32)> = sent
                .iter()
                .map(|m| (a.get(m).copied().unwrap_or(0), b.get(m).copied().unwrap_or(0)))
                .collect();
            if counts.iter().all(|(a, b)| a + b > 0) || Instant::now() > deadline {
                break counts;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(counts.iter().all(|(a, b)| a + b == 1), "each message delivered once overall: {counts:?}");
        assert!(counts.iter().any(|(a, _)| *a == 1) && counts.iter().any(|(_, b)| *b == 1), "both took some");
        stop(first).await;
        stop(second).await;
    }
}

/// `make test-faults`: the real consumer and delivery runtime against a real
/// mosquitto (started here, with persistence; `mosquitto` must be on PATH or
/// in /usr/sbin), with faults injected. Prints what became of every event
/// and fails if one published event was never delivered.
#[cfg(test)]
mod faults {
    use super::*;
    use std::net::TcpStream;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;

    use bytes::Bytes;

    use crate::apis::TEST_SPEC_JSON;
    use crate::consumers::{ConsumerKey, Consumers, Desired, Runtime};
    use crate::delivery::{DeliveryMode, RetryPolicy};
    use crate::invoker::{Invoker, event_id};
    use crate::metrics::Metrics;
    use crate::testkit::{Behaviour, LoopbackFunction, Tally, table};

    /// A mosquitto on a fixed port whose sessions persist across restarts.
    struct Mosquitto {
        port: u16,
        dir: PathBuf,
        child: Option<Child>,
    }

    impl Mosquitto {
        fn start() -> Mosquitto {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let dir =
                std::env::temp_dir().join(format!("kubeless-mqtt-faults-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a scratch directory");
            let user = std::env::var("USER").unwrap_or_else(|_| "root".to_owned());
            let config = format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nmax_queued_messages 0\nuser {user}\n",
                dir.display()
            );
            std::fs::write(dir.join("mosquitto.conf"), config).expect("the configuration");
            let mut broker = Mosquitto { port, dir, child: None };
            broker.up();
            broker
        }

        fn url(&self) -> String {
            format!("mqtt://127.0.0.1:{}", self.port)
        }

        fn up(&mut self) {
            let binary = if Command::new("mosquitto").arg("-h").output().is_ok() {
                "mosquitto"
            } else {
                "/usr/sbin/mosquitto"
            };
            let child = Command::new(binary)
                .arg("-c")
                .arg(self.dir.join("mosquitto.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto (Debian: apt-get install mosquitto)");
            self.child = Some(child);
            for _ in 0..100 {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("mosquitto did not listen on {}", self.port);
        }

        /// Stop the broker with SIGTERM: it saves its sessions on the way out.
        fn down(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
                let _ = child.wait();
            }
        }
    }

    impl Drop for Mosquitto {
        fn drop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Publish `bodies` with QoS 1 on a connection of its own; returns those
    /// the broker acknowledged (PUBACK) with success, the only ones it
    /// promised to route: `No matching subscribers` tells the publisher the
    /// broker dropped it (mosquitto does so after a restart until the
    /// consumer subscribes again). PUBACKs come in publish order (packet ids
    /// are reused, so they are taken in turn).
    async fn publish(url: &str, topic: &str, bodies: Vec<Bytes>) -> Vec<Bytes> {
        let Ok(broker) = broker(url) else { return Vec::new() };
        let mut options = MqttOptions::new(format!("kt-faults-{}", event_id()), broker.host, broker.port);
        options.set_clean_start(true);
        let (client, mut eventloop) = AsyncClient::new(options, bodies.len() + 8);
        for body in &bodies {
            if client.publish(topic, QoS::AtLeastOnce, false, body.clone()).await.is_err() {
                break;
            }
        }
        let mut routed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while routed.len() < bodies.len() {
            match tokio::time::timeout_at(deadline, eventloop.poll()).await {
                Ok(Ok(MqttEvent::Incoming(Packet::PubAck(ack)))) => {
                    routed.push(ack.reason == rumqttc::v5::mqttbytes::v5::PubAckReason::Success);
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
        let dropped = routed.iter().filter(|ok| !**ok).count();
        if dropped > 0 {
            println!("the broker routed {dropped} of {} messages to no subscriber", bodies.len());
        }
        bodies.into_iter().zip(routed).filter_map(|(body, ok)| ok.then_some(body)).collect()
    }

    /// One scenario's world: a broker, a function, the runtime's consumers.
    struct Rig {
        scenario: &'static str,
        broker: Mosquitto,
        function: LoopbackFunction,
        metrics: Metrics,
        consumers: Consumers,
        spec: TriggerSpec,
        desired: Desired,
        published: Vec<Bytes>,
    }

    impl Rig {
        async fn new(scenario: &'static str) -> Rig {
            let broker = Mosquitto::start();
            // SAFETY: the fault suite runs alone (`--test-threads=1`); nothing
            // else reads the environment while it is written.
            unsafe {
                std::env::set_var("MQTT_URL", broker.url());
                std::env::set_var("REDELIVERY_DELAY_SECONDS", "1");
                std::env::set_var("MQTT_REPLICA_ID", "faults");
            }
            let mut spec: TriggerSpec = serde_json::from_str(TEST_SPEC_JSON).expect("a valid test spec");
            spec.topic = format!("faults/{}", event_id());
            let function = LoopbackFunction::start().await;
            let metrics = Metrics::new();
            let consumers = consumers(&metrics);
            let desired = Desired {
                key: ConsumerKey {
                    namespace: "default".into(),
                    trigger: "orders".into(),
                    function: "hello".into(),
                },
                url: function.url.clone(),
                timeout: Duration::from_secs(1),
                retry: RetryPolicy {
                    max_retries: 2,
                    base: Duration::from_millis(50),
                    max: Duration::from_millis(200),
                    ..RetryPolicy::default()
                },
                dead_letter: None,
                delivery: DeliveryMode::AtLeastOnce,
                trigger: Default::default(),
            };
            let rig =
                Rig { scenario, broker, function, metrics, consumers, spec, desired, published: Vec::new() };
            rig.start().await;
            rig
        }

        /// Run the consumer and wait until it receives (a probe, not counted).
        async fn start(&self) {
            let (spec, desired) = (self.spec.clone(), vec![self.desired.clone()]);
            self.consumers.sync("default", "orders", &spec, desired).await;
            let probe = Bytes::from(format!("probe-{}", event_id()));
            for _ in 0..100 {
                publish(&self.broker.url(), &self.spec.topic, vec![probe.clone()]).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                if self.function.delivered().contains_key(&probe) {
                    return;
                }
            }
            panic!("{}: the consumer never received", self.scenario);
        }

        /// Publish `n` events; only those the broker acknowledged count.
        async fn publish(&mut self, n: usize) {
            let bodies = (0..n).map(|_| Bytes::from(format!("{}-{}", self.scenario, event_id()))).collect();
            let accepted = publish(&self.broker.url(), &self.spec.topic, bodies).await;
            self.published.extend(accepted);
        }

        /// Wait until every published event was delivered, or `within` passed.
        async fn settle(&self, within: Duration) {
            let deadline = Instant::now() + within;
            while Instant::now() < deadline && self.tally().missing > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        fn tally(&self) -> Tally {
            let mut tally = Tally::of(self.scenario, "QoS 1", &self.published, &self.function);
            tally.dead_lettered = self.metrics.dead_lettered.get();
            tally.failed = self.metrics.failed.get();
            tally.lost = self.metrics.lost.get();
            tally
        }

        async fn finish(self) -> Tally {
            self.settle(Duration::from_secs(60)).await;
            self.consumers.stop_all(Duration::from_secs(2)).await;
            self.tally()
        }
    }

    fn consumers(metrics: &Metrics) -> Consumers {
        Consumers::new(Runtime {
            source: Arc::new(|ctx, sink, stop| Box::pin(super::consume(ctx, sink, stop))),
            restart: RetryPolicy {
                max_retries: 0,
                base: Duration::from_millis(100),
                max: Duration::from_secs(1),
                ..RetryPolicy::default()
            },
            changes: None,
            invoker: Invoker::new(Duration::from_secs(1)),
            max_in_flight: 8,
            drain_grace: Duration::from_secs(2),
            metrics: metrics.clone(),
            recorder: None,
            client: crate::testkit::offline_client(),
        })
    }

    async fn broker_restarted_mid_stream() -> Tally {
        let mut rig = Rig::new("broker restarted mid-stream").await;
        rig.function.set(Behaviour::Hang);
        rig.publish(100).await;
        // Deliveries hang: most of the 100 wait in the session when the broker stops.
        tokio::time::sleep(Duration::from_millis(300)).await;
        rig.broker.down();
        rig.function.set(Behaviour::Answer);
        tokio::time::sleep(Duration::from_millis(500)).await;
        rig.broker.up();
        // Mosquitto does not route to a restored shared subscription until its
        // consumer subscribes again: what is published meanwhile is answered
        // `No matching subscribers` (the publisher sees it) and not counted.
        rig.publish(20).await;
        rig.start().await;
        rig.publish(100).await;
        rig.finish().await
    }

    async fn function_failing_then_recovering() -> Tally {
        let mut rig = Rig::new("function failing, then recovering").await;
        rig.function.set(Behaviour::Fail);
        rig.publish(50).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        rig.function.set(Behaviour::Answer);
        rig.publish(50).await;
        rig.finish().await
    }

    async fn function_hanging() -> Tally {
        let mut rig = Rig::new("function hanging, then answering").await;
        rig.function.set(Behaviour::Hang);
        rig.publish(20).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        rig.function.set(Behaviour::Answer);
        rig.publish(20).await;
        rig.finish().await
    }

    async fn shutdown_under_load() -> Tally {
        let mut rig = Rig::new("SIGTERM (drain) under load").await;
        rig.function.set(Behaviour::Hang);
        rig.publish(100).await;
        // What the controller does on SIGTERM, with deliveries hanging.
        rig.consumers.stop_all(Duration::from_millis(500)).await;
        rig.function.set(Behaviour::Answer);
        rig.publish(20).await;
        // The next controller resumes the session: what was unacknowledged
        // or published meanwhile comes to it.
        rig.consumers = consumers(&rig.metrics);
        rig.start().await;
        rig.finish().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "starts mosquitto processes: make test-faults"]
    async fn fault_suite() {
        let rows = vec![
            broker_restarted_mid_stream().await,
            function_failing_then_recovering().await,
            function_hanging().await,
            shutdown_under_load().await,
        ];
        println!("{}", table(&rows));
        for row in &rows {
            assert!(row.published > 0, "the broker took nothing: {row:?}");
            assert_eq!(row.missing, 0, "at-least-once lost events: {row:?}");
        }
    }
}
