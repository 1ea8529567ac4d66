// Scaffolded by kubeless-trigger, then yours: edit freely, `kubeless-trigger` never rewrites this file.
//! The AMQP 0-9-1 (RabbitMQ) event source: one queue per (trigger,
//! function), bound to the trigger's `exchange` with its `routingKey`,
//! consumed with manual acknowledgements.
//!
//! - Without a `queue` in the trigger, the consumer declares a durable quorum
//!   queue named after the consumer group and the binding; with one, that
//!   queue must exist. Either way it is bound to `exchange` (declared as a
//!   durable topic exchange when missing) with `routingKey`.
//! - Controller replicas consume the same queue: the broker shares its
//!   messages among them (competing consumers).
//! - `basic.qos` prefetch is `MAX_IN_FLIGHT`: the broker sends no more
//!   unacknowledged messages than the sink delivers at once.
//! - A message is acknowledged only once the function took it or the dead
//!   letter did. After a final failure it is nacked with requeue after
//!   `REDELIVERY_DELAY_SECONDS` (with `AMQP_DEAD_LETTER_EXCHANGE`, rejected
//!   without requeue: the broker dead-letters it); after `MAX_DELIVER`
//!   deliveries it is acknowledged and counted lost.
//! - A broken connection ends the consumer with an error: the broker requeues
//!   what was unacknowledged, and the runtime restarts the consumer with
//!   backoff.
//!
//! The runtime calls [`consume`] once per (trigger, function) pair and cancels
//! `shutdown` when the trigger changes or goes away, when the function stops
//! matching, or when the controller shuts down; it restarts a consumer that
//! fails. Everything else (watching, finalizers, status, HTTP delivery with
//! the Kubeless headers) is done for you.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{Acker, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::apis::TriggerSpec;
use crate::consumers::ConsumerContext;
use crate::delivery::{Event, Outcome, Sink};
use crate::source::EventSource;

/// Errors a consumer may end with; the runtime restarts the consumer.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Every AMQP trigger acknowledges its messages (at-least-once).
pub fn acknowledges(_spec: &TriggerSpec) -> bool {
    true
}

/// What the runtime runs: [`consume`], once per (trigger, function).
pub fn source() -> EventSource {
    EventSource::stream(consume, acknowledges)
}

/// Where the controller looks for the broker; override with `AMQP_URL`.
pub const DEFAULT_AMQP_URL: &str = "amqp://rabbitmq.rabbitmq.svc.cluster.local:5672/%2f";
/// How long a declared queue outlives its last consumer
/// (`AMQP_QUEUE_EXPIRY_SECONDS` overrides).
const DEFAULT_QUEUE_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// Pause after a final failure before the message is requeued
/// (`REDELIVERY_DELAY_SECONDS` overrides).
const DEFAULT_REDELIVERY_DELAY: Duration = Duration::from_secs(10);
/// Deliveries of one message before it is given up, acknowledged and counted
/// lost (`MAX_DELIVER` overrides; a dead letter avoids the loss).
const DEFAULT_MAX_DELIVER: u32 = 10;
/// How long a stopping consumer waits for its deliveries in flight, to
/// acknowledge them; less than the runtime's 10 s wait for a source to stop.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long a stopping consumer waits for the broker to close the connection.
const CLOSE_DEADLINE: Duration = Duration::from_secs(2);
/// Messages whose failures a consumer remembers (classic queues have no
/// delivery count); past it the memory starts over.
const MAX_REMEMBERED_FAILURES: usize = 10_000;

/// Why a consumer cannot start with the configuration it has. Never holds a
/// password: URLs are shown without theirs.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("AMQP_URL `{0}`: expected amqp://[user:password@]host[:port][/vhost]")]
    Url(String),
    #[error("AMQP_URL `{0}`: TLS (amqps://) is not supported yet; use amqp://")]
    Tls(String),
    #[error("AMQP_PASSWORD is set but AMQP_USERNAME is not")]
    PasswordWithoutUser,
    #[error("{key} `{value}`: expected a whole number from {min} to {max}")]
    Number { key: &'static str, value: String, min: u64, max: u64 },
}

/// Why a running consumer stopped; the runtime restarts it.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("connecting to {broker}: {source}")]
    Connect { broker: String, source: lapin::Error },
    #[error("{what}: {source}")]
    Broker { what: String, source: lapin::Error },
    #[error("the broker cancelled the consumer of queue `{0}` (was it deleted?)")]
    Cancelled(String),
}

/// `error` while doing `what`.
fn broker_error(what: impl Into<String>) -> impl FnOnce(lapin::Error) -> AmqpError {
    let what = what.into();
    move |source| AmqpError::Broker { what, source }
}

/// `url` with its user info, if any, replaced by `***`: everything up to the
/// last `@`, so that a password holding `/`, `?` or `@` is hidden too.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}"),
        None => url.to_owned(),
    }
}

/// Parse `amqp://[user:password@]host[:port][/vhost]`; `amqps://` is refused.
pub fn broker_uri(url: &str) -> Result<AMQPUri, ConfigError> {
    let url = url.trim();
    let scheme = url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("amqp") => {}
        Some("amqps") => return Err(ConfigError::Tls(redacted(url))),
        _ => return Err(ConfigError::Url(redacted(url))),
    }
    AMQPUri::from_str(url).map_err(|_| ConfigError::Url(redacted(url)))
}

/// How a broker is named in logs and errors: no user, no password.
fn display(uri: &AMQPUri) -> String {
    format!("amqp://{}:{}/{}", uri.authority.host, uri.authority.port, uri.vhost)
}

/// The queue a trigger without `queue` declares for a consumer group: named
/// after the group and a hash of the binding, so a changed binding is a new
/// queue (the old one expires) instead of an old binding kept.
pub fn queue_name(group: &str, exchange: &str, routing_key: &str) -> String {
    let binding = fnv1a(format!("{exchange}\0{routing_key}").as_bytes());
    let name = format!("kt.{group}.{binding:016x}");
    // AMQP names are at most 255 bytes.
    if name.len() <= 255 { name } else { format!("kt.{:016x}.{binding:016x}", fnv1a(group.as_bytes())) }
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The consumer's settings, from the environment.
#[derive(Clone)]
struct Settings {
    uri: AMQPUri,
    queue_expiry: Duration,
    dead_letter_exchange: Option<String>,
    redelivery_delay: Duration,
    max_deliver: u32,
}

/// Without the credentials: a settings dump must not leak them.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("broker", &display(&self.uri))
            .field("queue_expiry", &self.queue_expiry)
            .field("dead_letter_exchange", &self.dead_letter_exchange)
            .field("redelivery_delay", &self.redelivery_delay)
            .field("max_deliver", &self.max_deliver)
            .finish()
    }
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A whole number from `min` to `max` in the environment variable `key`,
/// else `default`.
fn number(key: &'static str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    match env(key) {
        None => Ok(default),
        Some(value) => match value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError::Number { key, value, min, max }),
        },
    }
}

/// The longest `x-expires` RabbitMQ takes: 2^32 - 1 ms, in whole seconds.
const MAX_QUEUE_EXPIRY_SECONDS: u64 = 4_294_967;

impl Settings {
    fn from_env() -> Result<Settings, ConfigError> {
        let url = env("AMQP_URL").unwrap_or_else(|| DEFAULT_AMQP_URL.to_owned());
        let mut uri = broker_uri(&url)?;
        match (env("AMQP_USERNAME"), std::env::var("AMQP_PASSWORD").ok()) {
            (Some(user), password) => {
                uri.authority.userinfo.username = user;
                uri.authority.userinfo.password = password.unwrap_or_default();
            }
            (None, Some(password)) if !password.is_empty() => return Err(ConfigError::PasswordWithoutUser),
            (None, _) => {}
        }
        // An expiry under a minute would delete a queue, and what it holds,
        // whenever its consumer reconnects.
        let expiry = number(
            "AMQP_QUEUE_EXPIRY_SECONDS",
            DEFAULT_QUEUE_EXPIRY.as_secs(),
            60,
            MAX_QUEUE_EXPIRY_SECONDS,
        )?;
        let delay = number("REDELIVERY_DELAY_SECONDS", DEFAULT_REDELIVERY_DELAY.as_secs(), 0, 86_400)?;
        let max_deliver = number("MAX_DELIVER", DEFAULT_MAX_DELIVER.into(), 1, u32::MAX.into())?;
        Ok(Settings {
            uri,
            queue_expiry: Duration::from_secs(expiry),
            dead_letter_exchange: env("AMQP_DEAD_LETTER_EXCHANGE"),
            redelivery_delay: Duration::from_secs(delay),
            max_deliver: u32::try_from(max_deliver).unwrap_or(u32::MAX),
        })
    }

    /// The arguments of a declared queue: quorum (it counts deliveries),
    /// expiring, dead-lettering when asked to.
    fn queue_arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        let expiry = i64::try_from(self.queue_expiry.as_millis()).unwrap_or(i64::MAX).max(1);
        arguments.insert("x-expires".into(), AMQPValue::LongLongInt(expiry));
        if let Some(exchange) = &self.dead_letter_exchange {
            arguments
                .insert("x-dead-letter-exchange".into(), AMQPValue::LongString(exchange.as_str().into()));
        }
        arguments
    }
}

/// Deliver every message routed to the trigger's queue until `shutdown`.
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
    let broker = display(&settings.uri);
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("kubeless-trigger {}", ctx.group).into());
    let connection = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        connection = Connection::connect_uri(settings.uri.clone(), properties) => connection,
    };
    let connection = connection.map_err(|source| AmqpError::Connect { broker: broker.clone(), source })?;
    let consumer = Consumer {
        settings: Arc::new(settings),
        broker,
        sink,
        shutdown,
        failures: Arc::new(Mutex::new(HashMap::new())),
    };
    let result = consumer.run(&ctx, &connection).await;
    // What is still unacknowledged is requeued by the broker once the
    // connection is gone.
    let closed = tokio::time::timeout(CLOSE_DEADLINE, connection.close(200, "bye".into())).await;
    if let Ok(Err(e)) = closed
        && result.is_ok()
    {
        warn!(group = %ctx.group, error = %e, "closing the AMQP connection failed");
    }
    result.map_err(Into::into)
}

/// One consumer's state across its deliveries.
struct Consumer {
    settings: Arc<Settings>,
    /// The broker's URL without credentials, for logs.
    broker: String,
    sink: Sink,
    shutdown: CancellationToken,
    /// Final failures per message, for `MAX_DELIVER` on queues that do not
    /// count deliveries (classic ones); gone when the consumer restarts.
    failures: Arc<Mutex<HashMap<u64, u32>>>,
}

impl Consumer {
    /// Set up the channel, the exchange, the queue and its binding, then
    /// deliver until stopped or the connection breaks.
    async fn run(&self, ctx: &ConsumerContext, connection: &Connection) -> Result<(), AmqpError> {
        let exchange = ctx.spec.exchange.as_str();
        let routing_key = ctx.spec.routing_key.as_str();
        let channel = declare_exchange(connection, exchange).await?;
        if let Some(dead_letter) = &self.settings.dead_letter_exchange {
            dead_letter_exchange_exists(connection, dead_letter).await?;
        }
        let prefetch = u16::try_from(ctx.max_in_flight.max(1)).unwrap_or(u16::MAX);
        channel.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(broker_error("basic.qos"))?;
        let queue = match &ctx.spec.queue {
            Some(queue) => {
                let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
                channel
                    .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                    .await
                    .map_err(broker_error(format!("the trigger's queue `{queue}`")))?;
                queue.clone()
            }
            None => {
                let queue = queue_name(&ctx.group, exchange, routing_key);
                let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
                channel
                    .queue_declare(queue.as_str().into(), durable, self.settings.queue_arguments())
                    .await
                    .map_err(broker_error(format!("declaring queue `{queue}`")))?;
                queue
            }
        };
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker_error(format!("binding queue `{queue}` to exchange `{exchange}`")))?;
        let mut deliveries = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker_error(format!("consuming queue `{queue}`")))?;
        info!(group = %ctx.group, broker = %self.broker, %queue, %exchange, %routing_key, prefetch,
            "consuming (manual acknowledgements, at-least-once)");
        loop {
            let delivery = tokio::select! {
                () = self.shutdown.cancelled() => break,
                delivery = deliveries.next() => delivery,
            };
            let event = match delivery {
                Some(Ok(delivery)) => self.event(delivery),
                Some(Err(e)) => return Err(broker_error(format!("consuming queue `{queue}`"))(e)),
                None => return Err(AmqpError::Cancelled(queue)),
            };
            // A message still waiting for a delivery slot at shutdown is
            // dropped unacknowledged: the broker requeues it.
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = self.sink.send(event) => {}
            }
        }
        self.stop(&channel, deliveries.tag().as_str(), ctx).await;
        Ok(())
    }

    /// Stopping: take nothing new, and wait (at most `DRAIN_DEADLINE`) for
    /// the deliveries in flight and their acknowledgements, which need the
    /// connection still open.
    async fn stop(&self, channel: &Channel, tag: &str, ctx: &ConsumerContext) {
        let cancel = channel.basic_cancel(tag.into(), BasicCancelOptions::default());
        match tokio::time::timeout(CLOSE_DEADLINE, cancel).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(group = %ctx.group, error = %e, "cancelling the AMQP consumer failed"),
            Err(_) => warn!(group = %ctx.group, "the broker did not answer the consumer's cancel in time"),
        }
        if !self.sink.drain(DRAIN_DEADLINE).await {
            warn!(group = %ctx.group, "deliveries still in flight when stopping; the broker requeues them");
        }
    }

    /// The event of `delivery`, whose acknowledgement settles it with the broker.
    fn event(&self, mut delivery: Delivery) -> Event {
        let body = std::mem::take(&mut delivery.data);
        let key = message_key(&delivery, &body);
        let counted = delivery_count(&delivery);
        let id = delivery.properties.message_id().as_ref().map(|id| id.to_string());
        let pending = Pending {
            acker: delivery.acker,
            key,
            counted,
            redelivered: delivery.redelivered,
            settings: self.settings.clone(),
            failures: self.failures.clone(),
            sink: self.sink.clone(),
            shutdown: self.shutdown.clone(),
        };
        let event = Event::new(body)
            .with_topic(delivery.routing_key.to_string())
            .with_ack(move |outcome| pending.settle(outcome));
        match id.filter(|id| !id.is_empty()) {
            Some(id) => event.with_id(id),
            None => event,
        }
    }
}

/// Declare `exchange` as a durable topic exchange unless it exists (a
/// passive declaration first, so an existing exchange of another kind is
/// used as it is); returns a channel that is open.
async fn declare_exchange(connection: &Connection, exchange: &str) -> Result<Channel, AmqpError> {
    let channel = connection.create_channel().await.map_err(broker_error("opening a channel"))?;
    let passive = ExchangeDeclareOptions { passive: true, ..ExchangeDeclareOptions::default() };
    let exists =
        channel.exchange_declare(exchange.into(), ExchangeKind::Topic, passive, FieldTable::default()).await;
    if exists.is_ok() {
        return Ok(channel);
    }
    // A failed passive declaration closes the channel: declare on a new one.
    let channel = connection.create_channel().await.map_err(broker_error("opening a channel"))?;
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    channel
        .exchange_declare(exchange.into(), ExchangeKind::Topic, durable, FieldTable::default())
        .await
        .map_err(broker_error(format!("declaring exchange `{exchange}`")))?;
    Ok(channel)
}

/// Fail unless `exchange` exists: the broker drops, without a trace, what is
/// dead-lettered to an exchange that does not.
async fn dead_letter_exchange_exists(connection: &Connection, exchange: &str) -> Result<(), AmqpError> {
    let what = || format!("the dead-letter exchange `{exchange}` (AMQP_DEAD_LETTER_EXCHANGE)");
    let channel = connection.create_channel().await.map_err(broker_error("opening a channel"))?;
    let passive = ExchangeDeclareOptions { passive: true, ..ExchangeDeclareOptions::default() };
    channel
        .exchange_declare(exchange.into(), ExchangeKind::Topic, passive, FieldTable::default())
        .await
        .map_err(broker_error(what()))?;
    channel.close(200, "checked".into()).await.map_err(broker_error(what()))
}

/// Deliveries of this message before this one, as a quorum queue counts
/// them (`x-delivery-count`); classic queues do not.
fn delivery_count(delivery: &Delivery) -> Option<u32> {
    let headers = delivery.properties.headers().as_ref()?;
    let value = headers.inner().get("x-delivery-count")?;
    match value {
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(*n),
        AMQPValue::ShortInt(n) => u32::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some(u32::from(*n)),
        _ => None,
    }
}

/// What tells a message's deliveries apart from others': its `message-id`
/// when the publisher set one, else its routing key and body.
fn message_key(delivery: &Delivery, body: &[u8]) -> u64 {
    match delivery.properties.message_id().as_ref().filter(|id| !id.as_str().is_empty()) {
        Some(id) => fnv1a(id.as_str().as_bytes()),
        None => fnv1a(delivery.routing_key.as_str().as_bytes()) ^ fnv1a(body).rotate_left(1),
    }
}

/// What to tell the broker about a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settlement {
    /// Done with it (delivered, dead-lettered, or given up).
    Ack,
    /// Failed: reject it without requeue, to the queue's dead-letter exchange.
    DeadLetter,
    /// Failed: requeue it after the redelivery delay.
    Requeue,
}

/// The settlement of a final `outcome`, given the deliveries so far
/// (this one included) and the settings.
fn settlement(outcome: Outcome, deliveries: u32, settings: &Settings) -> Settlement {
    match outcome {
        Outcome::Delivered | Outcome::DeadLettered | Outcome::Received => Settlement::Ack,
        Outcome::Failed if settings.dead_letter_exchange.is_some() => Settlement::DeadLetter,
        Outcome::Failed if deliveries >= settings.max_deliver => Settlement::Ack,
        Outcome::Failed => Settlement::Requeue,
    }
}

/// A message being delivered, until its outcome is told to the broker. Dropped
/// without an outcome, it is left unacknowledged: the broker requeues it when
/// the channel closes.
struct Pending {
    acker: Acker,
    key: u64,
    /// `x-delivery-count`, when the queue counts.
    counted: Option<u32>,
    /// Whether the broker delivered the message before.
    redelivered: bool,
    settings: Arc<Settings>,
    failures: Arc<Mutex<HashMap<u64, u32>>>,
    sink: Sink,
    /// The consumer's stop: a requeue waiting for its delay goes at once.
    shutdown: CancellationToken,
}

impl Pending {
    /// The acknowledgement for `Event::with_ack`.
    fn settle(self, outcome: Outcome) {
        let deliveries = self.record(outcome);
        let settlement = settlement(outcome, deliveries, &self.settings);
        if outcome == Outcome::Failed && settlement == Settlement::Ack {
            self.sink.lost(1, "delivery failed on MAX_DELIVER deliveries");
        }
        let Pending { acker, settings, shutdown, .. } = self;
        self.sink.settle_in_background(async move {
            let result = match settlement {
                Settlement::Ack => acker.ack(BasicAckOptions::default()).await,
                // basic.reject, not basic.nack: from RabbitMQ 4.3 only a
                // reject raises a quorum queue's x-delivery-count.
                Settlement::DeadLetter => acker.reject(BasicRejectOptions { requeue: false }).await,
                Settlement::Requeue => {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(settings.redelivery_delay) => {}
                    }
                    acker.reject(BasicRejectOptions { requeue: true }).await
                }
            };
            if let Err(e) = result {
                warn!(error = %e, ?settlement, "settling an AMQP message failed; the broker requeues it");
            }
        });
    }

    /// Count a final failure; returns the deliveries of this message so far.
    /// A success forgets the message.
    fn record(&self, outcome: Outcome) -> u32 {
        let Ok(mut failures) = self.failures.lock() else { return self.counted.map_or(1, |n| n + 1) };
        if outcome != Outcome::Failed {
            failures.remove(&self.key);
            return 0;
        }
        if failures.len() >= MAX_REMEMBERED_FAILURES && !failures.contains_key(&self.key) {
            failures.clear();
        }
        // A first delivery is the first, whatever failed before with the same
        // key (another message with the same body or `message-id`); the
        // broker's count, where there is one, is exact.
        let seen = failures.entry(self.key).or_default();
        *seen = if self.redelivered { seen.saturating_add(1) } else { 1 };
        let deliveries = self.counted.map_or(*seen, |n| n.saturating_add(1));
        if deliveries >= self.settings.max_deliver || self.settings.dead_letter_exchange.is_some() {
            failures.remove(&self.key);
        }
        deliveries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            uri: broker_uri("amqp://127.0.0.1:5672/%2f").expect("a URL"),
            queue_expiry: DEFAULT_QUEUE_EXPIRY,
            dead_letter_exchange: None,
            redelivery_delay: Duration::from_secs(1),
            max_deliver: 3,
        }
    }

    #[test]
    fn the_broker_url_takes_amqp_and_refuses_tls_and_others_without_the_password() {
        let uri = broker_uri("amqp://user:secret@rabbit:5673/prod").expect("valid");
        assert_eq!((uri.authority.host.as_str(), uri.authority.port), ("rabbit", 5673));
        assert_eq!(uri.authority.userinfo.username, "user");
        assert_eq!(display(&uri), "amqp://rabbit:5673/prod", "no credentials in logs");
        assert_eq!(
            display(&broker_uri(DEFAULT_AMQP_URL).expect("valid")),
            "amqp://rabbitmq.rabbitmq.svc.cluster.local:5672//"
        );
        let tls = broker_uri("amqps://user:secret@rabbit").expect_err("TLS");
        assert!(matches!(tls, ConfigError::Tls(_)));
        for url in ["http://user:secret@rabbit", "rabbit:5672", "amqp://user:secret@rabbit:port"] {
            let error = broker_uri(url).expect_err(url);
            assert!(matches!(error, ConfigError::Url(_)), "{url}");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }

    #[test]
    fn a_password_is_never_shown() {
        assert_eq!(redacted("amqp://u:p@h:1/v"), "amqp://***@h:1/v");
        assert_eq!(redacted("amqp://u@h"), "amqp://***@h");
        assert_eq!(redacted("amqp://h:1/v"), "amqp://h:1/v");
        assert_eq!(redacted("no scheme"), "no scheme");
        // Passwords with the characters that end a URL's authority.
        for url in ["amqp://u:pa/XyZ@h/%2f", "amqp://u:pa?XyZ@h", "amqp://u:p@XyZ@h"] {
            assert!(!redacted(url).contains("XyZ"), "{}", redacted(url));
            if let Err(error) = broker_uri(url) {
                assert!(!error.to_string().contains("XyZ"), "{error}");
            }
        }
        let mut with_password = settings();
        with_password.uri.authority.userinfo.password = "secret".into();
        assert!(!format!("{with_password:?}").contains("secret"));
    }

    #[test]
    fn a_declared_queue_is_named_after_the_group_and_the_binding() {
        let name = queue_name("default.orders.hello", "events", "#");
        assert!(name.starts_with("kt.default.orders.hello."), "{name}");
        assert_eq!(name, queue_name("default.orders.hello", "events", "#"), "stable across restarts");
        assert_ne!(
            name,
            queue_name("default.orders.hello", "events", "a.*"),
            "another binding, another queue"
        );
        assert_ne!(name, queue_name("default.orders.hello", "other", "#"));
        let long = queue_name(&"g".repeat(300), "e", "#");
        assert!(long.len() <= 255 && long.starts_with("kt."), "{long}");
        // FNV-1a's published test vector: the hash must not change with Rust.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_failure_is_requeued_until_max_deliver_then_acknowledged() {
        let settings = settings();
        assert_eq!(settlement(Outcome::Delivered, 1, &settings), Settlement::Ack);
        assert_eq!(settlement(Outcome::DeadLettered, 1, &settings), Settlement::Ack);
        assert_eq!(settlement(Outcome::Failed, 2, &settings), Settlement::Requeue);
        assert_eq!(settlement(Outcome::Failed, 3, &settings), Settlement::Ack, "given up on MAX_DELIVER");
        let dead_letter = Settings { dead_letter_exchange: Some("dlx".into()), ..settings };
        assert_eq!(settlement(Outcome::Failed, 1, &dead_letter), Settlement::DeadLetter);
    }

    #[test]
    fn a_declared_queue_is_quorum_expiring_and_dead_letters_when_asked() {
        let mut settings = settings();
        let arguments = settings.queue_arguments();
        let get = |arguments: &FieldTable, key: &str| arguments.inner().get(key).cloned();
        assert_eq!(get(&arguments, "x-queue-type"), Some(AMQPValue::LongString("quorum".into())));
        assert_eq!(get(&arguments, "x-expires"), Some(AMQPValue::LongLongInt(86_400_000)));
        assert_eq!(get(&arguments, "x-dead-letter-exchange"), None);
        settings.dead_letter_exchange = Some("dlx".into());
        let arguments = settings.queue_arguments();
        assert_eq!(get(&arguments, "x-dead-letter-exchange"), Some(AMQPValue::LongString("dlx".into())));
    }
}

// The tests below need a broker: sources/amqp/harness starts RabbitMQ and
// runs them with AMQP_URL set.
#[cfg(test)]
mod broker {
    use super::*;
    use bytes::Bytes;
    use lapin::BasicProperties;
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    use tokio::time::Instant;

    use crate::apis::TEST_SPEC_JSON;
    use crate::consumers::ConsumerKey;
    use crate::delivery::{DeliveryMode, RetryPolicy, SinkOptions};
    use crate::invoker::{Invoker, event_id};
    use crate::metrics::Metrics;
    use crate::testkit::{Behaviour, LoopbackFunction};

    const WAIT: Duration = Duration::from_secs(20);

    type Running = (CancellationToken, tokio::task::JoinHandle<Result<(), SourceError>>);

    /// A trigger on its own exchange, so tests do not see each other's messages.
    fn spec(exchange: &str, queue: Option<&str>) -> TriggerSpec {
        let mut spec: TriggerSpec = serde_json::from_str(TEST_SPEC_JSON).expect("a valid test spec");
        spec.exchange = exchange.to_owned();
        spec.routing_key = "orders.#".to_owned();
        spec.queue = queue.map(str::to_owned);
        spec
    }

    fn settings() -> Settings {
        let mut settings = Settings::from_env().expect("AMQP_URL");
        settings.redelivery_delay = Duration::from_millis(500);
        settings
    }

    fn context(spec: &TriggerSpec, trigger: &str) -> ConsumerContext {
        let key =
            ConsumerKey { namespace: "default".into(), trigger: trigger.into(), function: "hello".into() };
        ConsumerContext {
            group: key.group(),
            key,
            spec: spec.clone(),
            delivery: DeliveryMode::AtLeastOnce,
            max_in_flight: 4,
            client: crate::testkit::offline_client(),
        }
    }

    /// A consumer of the trigger `trigger` delivering to `url` without retries.
    fn start(spec: &TriggerSpec, trigger: &str, url: &str, settings: Settings, metrics: &Metrics) -> Running {
        let retry = RetryPolicy { max_retries: 0, ..RetryPolicy::default() };
        let options = SinkOptions { max_in_flight: 4, retry, ..SinkOptions::default() };
        let sink =
            Sink::new(url.to_owned(), Invoker::new(Duration::from_secs(5)), options, metrics.clone(), None);
        let shutdown = CancellationToken::new();
        (shutdown.clone(), tokio::spawn(consume_with(settings, context(spec, trigger), sink, shutdown)))
    }

    async fn stop(consumer: Running) {
        consumer.0.cancel();
        consumer.1.await.expect("join").expect("the consumer stops cleanly");
    }

    /// A connection for the test's own publishing and queue inspection.
    struct Client {
        connection: Connection,
        channel: Channel,
    }

    impl Client {
        async fn connect() -> Client {
            let uri = settings().uri;
            let connection =
                Connection::connect_uri(uri, ConnectionProperties::default()).await.expect("connect");
            let channel = connection.create_channel().await.expect("channel");
            channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
            Client { connection, channel }
        }

        /// Publish persistent messages with a routing key, each confirmed by the broker.
        async fn publish(&self, exchange: &str, routing_key: &str, bodies: &[Bytes], id: Option<&str>) {
            for body in bodies {
                let mut properties = BasicProperties::default().with_delivery_mode(2);
                if let Some(id) = id {
                    properties = properties.with_message_id(id.into());
                }
                self.channel
                    .basic_publish(
                        exchange.into(),
                        routing_key.into(),
                        BasicPublishOptions::default(),
                        body,
                        properties,
                    )
                    .await
                    .expect("publish")
                    .await
                    .expect("the broker confirmed");
            }
        }

        /// The ready messages and the consumers of `queue` (a passive declare,
        /// on a channel of its own: a missing queue closes it).
        async fn queue(&self, queue: &str) -> Option<(u32, u32)> {
            let channel = self.connection.create_channel().await.expect("channel");
            let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
            let declared = channel.queue_declare(queue.into(), passive, FieldTable::default()).await.ok()?;
            let _ = channel.close(200, "done".into()).await;
            Some((declared.message_count(), declared.consumer_count()))
        }

        /// Wait until `queue` has `n` consumers.
        async fn consumers(&self, queue: &str, n: u32) {
            let deadline = Instant::now() + WAIT;
            while self.queue(queue).await.map(|(_, c)| c) != Some(n) {
                assert!(Instant::now() < deadline, "queue `{queue}` never had {n} consumers");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    fn bodies(n: usize) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(format!(r#"{{"n":{i},"id":"{}"}}"#, event_id()))).collect()
    }

    fn exchange() -> String {
        format!("kt-test-{}", event_id())
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

    #[tokio::test]
    #[ignore = "needs RabbitMQ: AMQP_URL=amqp://127.0.0.1:5672/%2f cargo test -- --ignored --test-threads=1"]
    async fn a_message_is_delivered_with_its_routing_key_and_message_id() {
        let (function, client, exchange) =
            (LoopbackFunction::start().await, Client::connect().await, exchange());
        let spec = spec(&exchange, None);
        let queue = queue_name("default.headers.hello", &exchange, &spec.routing_key);
        let consumer = start(&spec, "headers", &function.url, settings(), &Metrics::new());
        client.consumers(&queue, 1).await;
        let sent = bodies(1);
        client.publish(&exchange, "orders.created", &sent, Some("order-42")).await;
        client.publish(&exchange, "invoices.created", &bodies(1), None).await;
        assert_eq!(delivered(&function, &sent).await, vec![1]);
        let headers = function.headers();
        let header = |name: &str| headers[0].get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(header("event-topic").as_deref(), Some("orders.created"), "the routing key");
        assert_eq!(header("event-id").as_deref(), Some("order-42"), "the message-id");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(function.requests(), 1, "the binding key `orders.#` kept `invoices.created` out");
        stop(consumer).await;
        assert_eq!(client.queue(&queue).await, Some((0, 0)), "acknowledged: nothing requeued");
    }

    #[tokio::test]
    #[ignore = "needs RabbitMQ: AMQP_URL=amqp://127.0.0.1:5672/%2f cargo test -- --ignored --test-threads=1"]
    async fn a_failed_message_stays_unacknowledged_and_is_redelivered_until_delivered() {
        let (function, client, exchange) =
            (LoopbackFunction::start().await, Client::connect().await, exchange());
        let spec = spec(&exchange, None);
        let queue = queue_name("default.redeliver.hello", &exchange, &spec.routing_key);
        let metrics = Metrics::new();
        let consumer = start(&spec, "redeliver", &function.url, settings(), &metrics);
        client.consumers(&queue, 1).await;
        function.set(Behaviour::FailTimes(3));
        let sent = bodies(1);
        client.publish(&exchange, "orders.x", &sent, None).await;
        assert_eq!(delivered(&function, &sent).await, vec![1], "nacked with requeue, then delivered");
        assert_eq!(function.requests(), 4, "three failures, then the delivery");
        assert_eq!(metrics.lost.get(), 0);
        stop(consumer).await;
        assert_eq!(client.queue(&queue).await, Some((0, 0)), "acknowledged after delivery");
    }

    #[tokio::test]
    #[ignore = "needs RabbitMQ: AMQP_URL=amqp://127.0.0.1:5672/%2f cargo test -- --ignored --test-threads=1"]
    async fn a_message_failing_max_deliver_times_is_given_up_and_counted_lost() {
        let (function, client, exchange) =
            (LoopbackFunction::start().await, Client::connect().await, exchange());
        let spec = spec(&exchange, None);
        let queue = queue_name("default.poison.hello", &exchange, &spec.routing_key);
        let metrics = Metrics::new();
        let settings = Settings { max_deliver: 3, ..settings() };
        let consumer = start(&spec, "poison", &function.url, settings, &metrics);
        client.consumers(&queue, 1).await;
        function.set(Behaviour::Fail);
        client.publish(&exchange, "orders.x", &bodies(1), None).await;
        let deadline = Instant::now() + WAIT;
        while metrics.lost.get() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(metrics.lost.get(), 1, "given up");
        assert_eq!(function.requests(), 3, "on the quorum queue's third delivery");
        stop(consumer).await;
        assert_eq!(client.queue(&queue).await, Some((0, 0)), "acknowledged once given up");
    }

    #[tokio::test]
    #[ignore = "needs RabbitMQ: AMQP_URL=amqp://127.0.0.1:5672/%2f cargo test -- --ignored --test-threads=1"]
    async fn with_a_dead_letter_exchange_a_failure_is_rejected_to_it() {
        let (function, client, exchange) =
            (LoopbackFunction::start().await, Client::connect().await, exchange());
        let spec = spec(&exchange, None);
        let queue = queue_name("default.dlx.hello", &exchange, &spec.routing_key);
        // The dead letters' exchange and a queue that keeps them.
        let dlx = format!("{exchange}-dlx");
        let kept = format!("{exchange}-dead");
        let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        client
            .channel
            .exchange_declare(dlx.as_str().into(), ExchangeKind::Fanout, durable, FieldTable::default())
            .await
            .expect("dlx");
        client
            .channel
            .queue_declare(kept.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("queue");
        client
            .channel
            .queue_bind(
                kept.as_str().into(),
                dlx.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        let settings = Settings { dead_letter_exchange: Some(dlx), ..settings() };
        let consumer = start(&spec, "dlx", &function.url, settings, &Metrics::new());
        client.consumers(&queue, 1).await;
        function.set(Behaviour::Fail);
        client.publish(&exchange, "orders.x", &bodies(1), None).await;
        let deadline = Instant::now() + WAIT;
        while client.queue(&kept).await.map(|(n, _)| n) != Some(1) {
            assert!(Instant::now() < deadline, "never dead-lettered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(function.requests(), 1, "rejected on the first final failure, not requeued");
        stop(consumer).await;
    }

    #[tokio::test]
    #[ignore = "needs RabbitMQ: AMQP_URL=amqp://127.0.0.1:5672/%2f cargo test -- --ignored --test-threads=1"]
    async fn two_replicas_share_the_queue() {
        let (one, two) = (LoopbackFunction::start().await, LoopbackFunction::start().await);
        let (client, exchange) = (Client::connect().await, exchange());
        let spec = spec(&exchange, None);
        let queue = queue_name("default.shared.hello", &exchange, &spec.routing_key);
        let metrics = Metrics::new();
        let first = start(&spec, "shared", &one.url, settings(), &metrics);
        let second = start(&spec, "shared", &two.url, settings(), &metrics);
        client.consumers(&queue, 2).await;
        let sent = bodies(40);
        client.publish(&exchange, "orders.x", &sent, None).await;
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

    #[tokio::test]
    #[ignore = "needs RabbitMQ: AMQP_URL=amqp://127.0.0.1:5672/%2f cargo test -- --ignored --test-threads=1"]
    async fn a_restarted_consumer_gets_what_was_unacknowledged_or_published_meanwhile() {
        let (function, client, exchange) =
            (LoopbackFunction::start().await, Client::connect().await, exchange());
        let spec = spec(&exchange, None);
        let queue = queue_name("default.restart.hello", &exchange, &spec.routing_key);
        let metrics = Metrics::new();
        let consumer = start(&spec, "restart", &function.url, settings(), &metrics);
        client.consumers(&queue, 1).await;
        // Deliveries hang: the consumer stops with messages in flight and prefetched.
        function.set(Behaviour::Hang);
        let before = bodies(10);
        client.publish(&exchange, "orders.x", &before, None).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop(consumer).await;
        let meanwhile = bodies(10);
        client.publish(&exchange, "orders.x", &meanwhile, None).await;
        function.set(Behaviour::Answer);
        let consumer = start(&spec, "restart", &function.url, settings(), &metrics);
        let all: Vec<Bytes> = before.into_iter().chain(meanwhile).collect();
        let counts = delivered(&function, &all).await;
        assert!(counts.iter().all(|n| *n >= 1), "none lost across the restart: {counts:?}");
        stop(consumer).await;
        assert_eq!(client.queue(&queue).await, Some((0, 0)));
    }

    #[tokio::test]
    #[ignore = "needs RabbitMQ: AMQP_URL=amqp://127.0.0.1:5672/%2f cargo test -- --ignored --test-threads=1"]
    async fn an_existing_queue_is_consumed_and_a_missing_one_is_an_error() {
        let (function, client, exchange) =
            (LoopbackFunction::start().await, Client::connect().await, exchange());
        let missing = spec(&exchange, Some(&format!("{exchange}-missing")));
        let consumer = start(&missing, "missing", &function.url, settings(), &Metrics::new());
        let error = consumer.1.await.expect("join").expect_err("a missing queue fails the consumer");
        assert!(error.to_string().contains("-missing"), "{error}");
        // A classic queue the user declared: counted by the consumer, not the broker.
        let existing = format!("{exchange}-classic");
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        client
            .channel
            .queue_declare(existing.as_str().into(), durable, FieldTable::default())
            .await
            .expect("declare");
        let spec = spec(&exchange, Some(&existing));
        let consumer = start(&spec, "existing", &function.url, settings(), &Metrics::new());
        client.consumers(&existing, 1).await;
        function.set(Behaviour::FailTimes(1));
        let sent = bodies(3);
        client.publish(&exchange, "orders.x", &sent, None).await;
        assert_eq!(delivered(&function, &sent).await, vec![1, 1, 1], "bound to the exchange by the trigger");
        stop(consumer).await;
        assert_eq!(client.queue(&existing).await, Some((0, 0)));
    }
}

/// `make test-faults`: the real consumer and delivery runtime against a real
/// RabbitMQ node (started here, on free ports, as the caller; its scripts
/// from the directory `RABBITMQ_BIN`, else Debian's /usr/lib/rabbitmq/bin), with faults
/// injected. Prints what became of every event and fails if one the broker
/// confirmed and routed was never delivered.
#[cfg(test)]
mod faults {
    use super::*;
    use std::net::TcpStream;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};

    use bytes::Bytes;
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    use lapin::{BasicProperties, Confirmation};
    use tokio::time::Instant;

    use crate::apis::TEST_SPEC_JSON;
    use crate::consumers::{ConsumerKey, Consumers, Desired, Runtime};
    use crate::delivery::{DeliveryMode, RetryPolicy};
    use crate::invoker::{Invoker, event_id};
    use crate::metrics::Metrics;
    use crate::testkit::{Behaviour, LoopbackFunction, Tally, table};

    /// A RabbitMQ node of its own, whose queues survive its restarts.
    struct Rabbit {
        port: u16,
        /// Its own epmd's port: the suite stops that epmd, and no other.
        epmd: u16,
        node: String,
        dir: PathBuf,
        child: Option<Child>,
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
    }

    impl Rabbit {
        fn start() -> Rabbit {
            let port = free_port();
            let dir =
                std::env::temp_dir().join(format!("kubeless-amqp-faults-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a scratch directory");
            std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("the plugins file");
            std::fs::write(dir.join("rabbitmq.conf"), "").expect("the configuration");
            let node = format!("kt-faults-{}-{port}@localhost", std::process::id());
            let mut broker = Rabbit { port, epmd: free_port(), node, dir, child: None };
            broker.up();
            broker
        }

        fn url(&self) -> String {
            format!("amqp://127.0.0.1:{}/%2f", self.port)
        }

        fn bin(name: &str) -> String {
            let dir = std::env::var("RABBITMQ_BIN").unwrap_or_else(|_| "/usr/lib/rabbitmq/bin".to_owned());
            format!("{dir}/{name}")
        }

        fn command(&self, name: &str) -> Command {
            let mut command = Command::new(Self::bin(name));
            command
                .env("HOME", &self.dir)
                .env("ERL_EPMD_PORT", self.epmd.to_string())
                .env("RABBITMQ_NODENAME", &self.node)
                .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
                .env("RABBITMQ_NODE_PORT", self.port.to_string())
                .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
                .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
                .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("enabled_plugins"))
                .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq"))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            command
        }

        fn up(&mut self) {
            // A distribution port of its own each time: the last one may linger.
            let mut command = self.command("rabbitmq-server");
            command.env("RABBITMQ_DIST_PORT", free_port().to_string());
            let child = command.spawn().expect("rabbitmq-server (Debian: apt-get install rabbitmq-server)");
            self.child = Some(child);
            for _ in 0..600 {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            panic!("RabbitMQ did not listen on {}", self.port);
        }

        /// Stop the node cleanly (`rabbitmqctl stop`): durable queues and
        /// persistent messages are on disk.
        fn down(&mut self) {
            let _ = self.command("rabbitmqctl").arg("-n").arg(&self.node).arg("stop").status();
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for Rabbit {
        fn drop(&mut self) {
            self.down();
            let _ = Command::new("epmd").arg("-port").arg(self.epmd.to_string()).arg("-kill").output();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Publish persistent `bodies`, mandatory, on a connection of its own;
    /// returns those the broker confirmed and routed to a queue (the only
    /// ones it promised to keep). A broker that is down confirms none.
    async fn publish(url: &str, exchange: &str, bodies: Vec<Bytes>) -> Vec<Bytes> {
        let Ok(uri) = broker_uri(url) else { return Vec::new() };
        let Ok(connection) = Connection::connect_uri(uri, ConnectionProperties::default()).await else {
            return Vec::new();
        };
        let mut routed = Vec::new();
        if let Ok(channel) = connection.create_channel().await
            && channel.confirm_select(ConfirmSelectOptions::default()).await.is_ok()
        {
            let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
            let mut confirms = Vec::new();
            for body in bodies {
                let properties = BasicProperties::default().with_delivery_mode(2);
                match channel
                    .basic_publish(exchange.into(), "orders".into(), options, &body, properties)
                    .await
                {
                    Ok(confirm) => confirms.push((body, confirm)),
                    Err(_) => break,
                }
            }
            for (body, confirm) in confirms {
                if matches!(confirm.await, Ok(Confirmation::Ack(None))) {
                    routed.push(body);
                }
            }
        }
        let _ = connection.close(200, "done".into()).await;
        routed
    }

    /// The consumers of `queue`, or none when the broker cannot say.
    async fn consumers_of(url: &str, queue: &str) -> u32 {
        let Ok(uri) = broker_uri(url) else { return 0 };
        let Ok(connection) = Connection::connect_uri(uri, ConnectionProperties::default()).await else {
            return 0;
        };
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let mut count = 0;
        if let Ok(channel) = connection.create_channel().await
            && let Ok(queue) = channel.queue_declare(queue.into(), passive, FieldTable::default()).await
        {
            count = queue.consumer_count();
        }
        let _ = connection.close(200, "done".into()).await;
        count
    }

    /// One scenario's world: a function, the runtime's consumers, an exchange.
    struct Rig<'a> {
        scenario: &'static str,
        broker: &'a mut Rabbit,
        function: LoopbackFunction,
        metrics: Metrics,
        consumers: Consumers,
        spec: TriggerSpec,
        desired: Desired,
        queue: String,
        published: Vec<Bytes>,
    }

    impl<'a> Rig<'a> {
        async fn new(scenario: &'static str, trigger: &str, broker: &'a mut Rabbit) -> Rig<'a> {
            // SAFETY: the fault suite runs alone (`--test-threads=1`); nothing
            // else reads the environment while it is written.
            unsafe {
                std::env::set_var("AMQP_URL", broker.url());
                std::env::set_var("REDELIVERY_DELAY_SECONDS", "1");
            }
            let mut spec: TriggerSpec = serde_json::from_str(TEST_SPEC_JSON).expect("a valid test spec");
            spec.exchange = format!("faults-{}", event_id());
            spec.routing_key = "#".to_owned();
            spec.queue = None;
            let function = LoopbackFunction::start().await;
            let metrics = Metrics::new();
            let consumers = consumers(&metrics);
            let key = ConsumerKey {
                namespace: "default".into(),
                trigger: trigger.into(),
                function: "hello".into(),
            };
            let queue = queue_name(&key.group(), &spec.exchange, &spec.routing_key);
            let desired = Desired {
                key,
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
            let rig = Rig {
                scenario,
                broker,
                function,
                metrics,
                consumers,
                spec,
                desired,
                queue,
                published: Vec::new(),
            };
            rig.start().await;
            rig
        }

        /// Run the consumer and wait until it consumes its queue.
        async fn start(&self) {
            let trigger = self.desired.key.trigger.clone();
            self.consumers.sync("default", &trigger, &self.spec, vec![self.desired.clone()]).await;
            self.consuming().await;
        }

        /// Wait until the queue has a consumer (a restarted one, after a broker restart).
        async fn consuming(&self) {
            let deadline = Instant::now() + Duration::from_secs(60);
            while consumers_of(&self.broker.url(), &self.queue).await == 0 {
                assert!(Instant::now() < deadline, "{}: the consumer never consumed", self.scenario);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        /// Publish `n` events; only those the broker confirmed and routed count.
        async fn publish(&mut self, n: usize) {
            let bodies = (0..n).map(|_| Bytes::from(format!("{}-{}", self.scenario, event_id()))).collect();
            let routed = publish(&self.broker.url(), &self.spec.exchange, bodies).await;
            self.published.extend(routed);
        }

        async fn settle(&self, within: Duration) {
            let deadline = Instant::now() + within;
            while Instant::now() < deadline && self.tally().missing > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        fn tally(&self) -> Tally {
            let mut tally = Tally::of(self.scenario, "quorum queue", &self.published, &self.function);
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

    async fn broker_restarted_mid_stream(broker: &mut Rabbit) -> Tally {
        let mut rig = Rig::new("broker restarted mid-stream", "restart", broker).await;
        rig.function.set(Behaviour::Hang);
        rig.publish(100).await;
        // Deliveries hang: most of the 100 wait in the queue, unacknowledged, when the broker stops.
        tokio::time::sleep(Duration::from_millis(300)).await;
        rig.broker.down();
        rig.function.set(Behaviour::Answer);
        rig.publish(10).await; // refused while the broker is down: not counted
        rig.broker.up();
        // The consumer failed with the connection; the runtime restarts it.
        rig.consuming().await;
        rig.publish(100).await;
        rig.finish().await
    }

    async fn function_failing_then_recovering(broker: &mut Rabbit) -> Tally {
        let mut rig = Rig::new("function failing, then recovering", "failing", broker).await;
        rig.function.set(Behaviour::Fail);
        rig.publish(50).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        rig.function.set(Behaviour::Answer);
        rig.publish(50).await;
        rig.finish().await
    }

    async fn function_hanging(broker: &mut Rabbit) -> Tally {
        let mut rig = Rig::new("function hanging, then answering", "hanging", broker).await;
        rig.function.set(Behaviour::Hang);
        rig.publish(20).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        rig.function.set(Behaviour::Answer);
        rig.publish(20).await;
        rig.finish().await
    }

    async fn shutdown_under_load(broker: &mut Rabbit) -> Tally {
        let mut rig = Rig::new("SIGTERM (drain) under load", "drain", broker).await;
        rig.function.set(Behaviour::Hang);
        rig.publish(100).await;
        // What the controller does on SIGTERM, with deliveries hanging.
        rig.consumers.stop_all(Duration::from_millis(500)).await;
        rig.function.set(Behaviour::Answer);
        rig.publish(20).await;
        // The next controller consumes the same durable queue: what was
        // unacknowledged or published meanwhile comes to it.
        rig.consumers = consumers(&rig.metrics);
        rig.start().await;
        rig.finish().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "starts a RabbitMQ node: make test-faults"]
    async fn fault_suite() {
        let mut broker = Rabbit::start();
        let rows = vec![
            broker_restarted_mid_stream(&mut broker).await,
            function_failing_then_recovering(&mut broker).await,
            function_hanging(&mut broker).await,
            shutdown_under_load(&mut broker).await,
        ];
        println!("{}", table(&rows));
        for row in &rows {
            assert!(row.published > 0, "the broker took nothing: {row:?}");
            assert_eq!(row.missing, 0, "at-least-once lost events: {row:?}");
            assert_eq!(row.lost, 0, "nothing given up: {row:?}");
        }
    }
}
