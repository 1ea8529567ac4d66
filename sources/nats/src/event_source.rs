// {{ scaffolded }}
//! The NATS event source, in one of two modes chosen by the trigger's spec:
//!
//! - core NATS (no `stream`): a queue subscription on `topic`. Core NATS has
//!   no acknowledgements, so delivery is at-most-once: a message is gone once
//!   received, whatever happens to its delivery;
//! - JetStream (`stream` set): a durable pull consumer on the stream, filtered
//!   by `topic`. A message is acknowledged after delivery (or after the dead
//!   letter took it) and nak'ed with a delay after a final failure, so the
//!   server redelivers it: at-least-once.
//!
//! The runtime calls [`consume`] once per (trigger, function) pair and cancels
//! `shutdown` when the trigger changes or goes away, when the function stops
//! matching, or when the controller shuts down; it restarts a consumer that
//! fails. Everything else (watching, finalizers, status, HTTP delivery with
//! the Kubeless headers) is done for you. Every consumer uses its group name
//! as the queue group or durable name, so controller replicas share the
//! messages instead of each delivering them.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::{self, AckKind, consumer::AckPolicy, consumer::pull};
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::apis::TriggerSpec;
use crate::consumers::ConsumerContext;
use crate::delivery::{Event, Outcome, Sink};
use crate::source::EventSource;

/// Errors a consumer may end with; the runtime restarts the consumer.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Whether the consumer of `spec` acknowledges events: only in JetStream mode.
pub fn acknowledges(spec: &TriggerSpec) -> bool {
    spec.stream.is_some()
}

/// What the runtime runs: [`consume`], once per (trigger, function).
pub fn source() -> EventSource {
    EventSource::stream(consume, acknowledges)
}

/// Where the Kubeless NATS trigger looked for NATS; override with `NATS_URL`.
pub const DEFAULT_NATS_URL: &str = "nats://nats.nats-io.svc.cluster.local:4222";

/// How long JetStream waits for an acknowledgement, or a sign of progress
/// (sent every half of it while a delivery runs), before it redelivers
/// (`ACK_WAIT_SECONDS` overrides).
const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(300);
/// Deliveries JetStream makes of one message before the consumer gives up on
/// it, counting it lost (`MAX_DELIVER` overrides; a dead letter avoids the loss).
const DEFAULT_MAX_DELIVER: i64 = 10;
/// Pause before JetStream redelivers a message whose delivery finally failed
/// (`NAK_DELAY_SECONDS` overrides).
const DEFAULT_NAK_DELAY: Duration = Duration::from_secs(10);
/// How long a stopping core consumer hands buffered messages over; less than
/// the runtime's 10 s wait for a source to stop.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long a stopping consumer waits for an acknowledgement to be flushed.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Subscription buffer per delivery slot (`MAX_IN_FLIGHT`): room for bursts
/// while every slot is busy.
const SUBSCRIPTION_BUFFER_PER_SLOT: usize = 64;

/// The NATS server to connect to: `NATS_URL`, else [`DEFAULT_NATS_URL`].
pub fn nats_url() -> String {
    std::env::var("NATS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned())
}

/// Whole seconds from the environment variable `key`, else `default`.
fn seconds_from_env(key: &str, default: Duration) -> Duration {
    std::env::var(key).ok().and_then(|s| s.trim().parse().ok()).map_or(default, Duration::from_secs)
}

/// The durable consumer name of a group: `.` is not allowed in it.
pub fn durable_name(group: &str) -> String {
    group.replace('.', "_")
}

/// Deliver every message on the trigger's topic until `shutdown`.
pub async fn consume(
    ctx: ConsumerContext,
    sink: Sink,
    shutdown: CancellationToken,
) -> Result<(), SourceError> {
    let url = nats_url();
    let (connection, users) = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        connection = connection(&url, ctx.max_in_flight, &sink) => connection?,
    };
    let client = (*connection).clone();
    match ctx.spec.stream.clone() {
        None => {
            // Only core consumers can lose what the client drops (JetStream redelivers it).
            let _using = Using::join(&users, &sink);
            core(&ctx, client, &sink, &shutdown, &url).await
        }
        Some(stream) => jetstream(&ctx, client, &sink, &shutdown, &stream).await,
    }
}

/// The connections of this process, one per NATS URL, shared by every
/// consumer: a thousand triggers cost one connection, not a thousand. A
/// connection closes when the last consumer using it stops.
static CONNECTIONS: tokio::sync::Mutex<BTreeMap<String, Pooled>> =
    tokio::sync::Mutex::const_new(BTreeMap::new());

/// A shared connection, whether the runtime driving it still runs (a
/// connection opened on a runtime that has shut down is dead), and the sinks
/// of the consumers using it.
struct Pooled {
    client: Weak<async_nats::Client>,
    driven: CancellationToken,
    users: Users,
}

impl Pooled {
    fn live(&self) -> Option<Arc<async_nats::Client>> {
        if self.driven.is_cancelled() { None } else { self.client.upgrade() }
    }
}

/// The sinks of the core consumers using one connection, by a number of
/// their own, and when they were last told of a drop.
type Users = Arc<std::sync::Mutex<Registry>>;

#[derive(Default)]
struct Registry {
    next: u64,
    sinks: BTreeMap<u64, Sink>,
    last_told: Option<std::time::Instant>,
}

/// How often the triggers of one connection are told that it dropped messages.
const TELL_EVERY: Duration = Duration::from_secs(60);

fn users_of(users: &Users) -> std::sync::MutexGuard<'_, Registry> {
    users.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The sinks to tell of a drop now: all of them, at most once a `TELL_EVERY`.
fn to_tell(users: &Users) -> Vec<Sink> {
    let mut registry = users_of(users);
    if registry.last_told.is_some_and(|at| at.elapsed() < TELL_EVERY) {
        return Vec::new();
    }
    registry.last_told = Some(std::time::Instant::now());
    registry.sinks.values().cloned().collect()
}

/// A consumer's place among a connection's users, left when dropped.
struct Using {
    users: Users,
    id: u64,
}

impl Using {
    fn join(users: &Users, sink: &Sink) -> Using {
        let mut registry = users_of(users);
        registry.next += 1;
        let id = registry.next;
        registry.sinks.insert(id, sink.clone());
        Using { users: users.clone(), id }
    }
}

impl Drop for Using {
    fn drop(&mut self) {
        users_of(&self.users).sinks.remove(&self.id);
    }
}

/// What the Event on every core trigger of a connection says when its
/// client dropped a message.
const SLOW_CONSUMER: &str = "the NATS client dropped a message because a subscription buffer on the \
     connection this trigger shares was full; the client does not say which subscription, so every \
     core NATS trigger on the connection is told (the count is kubeless_trigger_events_lost_total)";

/// Connections open now (for tests and benchmarks).
pub async fn connections_open() -> usize {
    CONNECTIONS.lock().await.values().filter(|c| c.live().is_some()).count()
}

/// The shared connection to `url`, opened on first use, and the registry of
/// its core consumers. No retry on the first connection: a failure ends the
/// consumer, and the runtime restarts it with backoff and reports it in the
/// trigger's status. Subscription buffers follow MAX_IN_FLIGHT; a message
/// that overflows one is dropped by the client, counted once in
/// `kubeless_trigger_events_lost_total`, and reported (at most once a
/// minute) as a Warning Event on every core trigger using the connection:
/// the client does not say which subscription overflowed.
async fn connection(
    url: &str,
    max_in_flight: usize,
    sink: &Sink,
) -> Result<(Arc<async_nats::Client>, Users), SourceError> {
    let mut connections = CONNECTIONS.lock().await;
    if let Some(pooled) = connections.get(url)
        && let Some(client) = pooled.live()
    {
        return Ok((client, pooled.users.clone()));
    }
    let metrics = sink.metrics().clone();
    let users = Users::default();
    let told = users.clone();
    let client = async_nats::ConnectOptions::new()
        .name(crate::MANAGER)
        .subscription_capacity(max_in_flight.saturating_mul(SUBSCRIPTION_BUFFER_PER_SLOT).max(1))
        .event_callback(move |event| {
            let (metrics, told) = (metrics.clone(), told.clone());
            async move {
                if let async_nats::Event::SlowConsumer(sid) = event {
                    metrics.lost.inc();
                    warn!(sid, "the NATS client dropped a message: a subscription buffer is full");
                    for sink in to_tell(&told) {
                        sink.report_possible_loss(SLOW_CONSUMER);
                    }
                }
            }
        })
        .connect(url)
        .await?;
    let client = Arc::new(client);
    // A task on this runtime marks the connection dead when the runtime shuts
    // down (its tasks are dropped), and ends once nobody uses the connection.
    let driven = CancellationToken::new();
    let (guard, weak) = (driven.clone().drop_guard(), Arc::downgrade(&client));
    tokio::spawn(async move {
        let _guard = guard;
        while weak.strong_count() > 0 {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    connections.retain(|_, c| c.live().is_some());
    connections
        .insert(url.to_owned(), Pooled { client: Arc::downgrade(&client), driven, users: users.clone() });
    Ok((client, users))
}

/// Core NATS: a queue subscription; at-most-once.
async fn core(
    ctx: &ConsumerContext,
    client: async_nats::Client,
    sink: &Sink,
    shutdown: &CancellationToken,
    url: &str,
) -> Result<(), SourceError> {
    let mut messages = client.queue_subscribe(ctx.spec.topic.clone(), ctx.group.clone()).await?;
    info!(group = %ctx.group, topic = %ctx.spec.topic, %url, "subscribed (core NATS, at-most-once)");
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            message = messages.next() => match message {
                Some(message) => {
                    let event = Event::new(message.payload).with_topic(message.subject.to_string());
                    tokio::select! {
                        () = sink.send(event) => {}
                        () = shutdown.cancelled() => {
                            sink.lost(1, "no delivery slot when the consumer stopped");
                            break;
                        }
                    }
                }
                None => return Err("the NATS subscription ended".into()),
            },
        }
    }
    // Drain: stop new messages, then hand over what the client already
    // buffered, until DRAIN_DEADLINE; what is left then is counted as lost.
    if let Err(e) = messages.drain().await {
        warn!(error = %e, "draining the subscription failed");
    }
    let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, messages.next()).await {
            Ok(Some(message)) => {
                let event = Event::new(message.payload).with_topic(message.subject.to_string());
                if tokio::time::timeout_at(deadline, sink.send(event)).await.is_err() {
                    sink.lost(1, "no delivery slot before the drain deadline");
                    break;
                }
            }
            Ok(None) => return Ok(()),
            Err(_) => break,
        }
    }
    let mut left = 0;
    while let Some(Some(_)) = messages.next().now_or_never() {
        left += 1;
    }
    if left > 0 {
        sink.lost(left, "still buffered at the drain deadline");
    }
    Ok(())
}

/// JetStream: a durable pull consumer, acknowledged after delivery; at-least-once.
async fn jetstream(
    ctx: &ConsumerContext,
    client: async_nats::Client,
    sink: &Sink,
    shutdown: &CancellationToken,
    stream: &str,
) -> Result<(), SourceError> {
    let js = jetstream::new(client);
    let durable = durable_name(&ctx.group);
    let settings = JetStreamSettings::from_env();
    let config = pull::Config {
        durable_name: Some(durable.clone()),
        filter_subject: ctx.spec.topic.clone(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        max_deliver: settings.max_deliver,
        max_ack_pending: i64::try_from(ctx.max_in_flight).unwrap_or(i64::MAX),
        // A durable whose trigger is gone (deleted, or no longer naming this
        // function) is removed by the server after a day without consumers.
        inactive_threshold: Duration::from_secs(24 * 3600),
        ..pull::Config::default()
    };
    let consumer = js.get_stream(stream).await?.create_consumer(config).await?;
    let mut messages = consumer.messages().await?;
    info!(group = %ctx.group, %stream, %durable, topic = %ctx.spec.topic, "consuming (JetStream, at-least-once)");
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            message = messages.next() => message,
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(e)) if matches!(e.kind(), MessagesErrorKind::MissingHeartbeat) => {
                warn!(group = %ctx.group, "JetStream heartbeat missed; still consuming");
                continue;
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Err("the JetStream consumer ended".into()),
        };
        let event = Event::new(message.payload.clone())
            .with_topic(message.subject.to_string())
            .with_ack(Pending::new(message, settings, sink.clone(), shutdown.clone()).settle());
        // A message still waiting for a delivery slot at shutdown is nak'ed
        // (its `Pending` is dropped), so JetStream redelivers it at once.
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = sink.send(event) => {}
        }
    }
}

/// The JetStream consumer's settings, from the environment.
#[derive(Clone, Copy, Debug)]
struct JetStreamSettings {
    ack_wait: Duration,
    nak_delay: Duration,
    max_deliver: i64,
}

impl JetStreamSettings {
    fn from_env() -> JetStreamSettings {
        let max_deliver = std::env::var("MAX_DELIVER").ok().and_then(|s| s.trim().parse().ok());
        JetStreamSettings {
            ack_wait: seconds_from_env("ACK_WAIT_SECONDS", DEFAULT_ACK_WAIT),
            nak_delay: seconds_from_env("NAK_DELAY_SECONDS", DEFAULT_NAK_DELAY),
            max_deliver: max_deliver.filter(|n| *n > 0).unwrap_or(DEFAULT_MAX_DELIVER),
        }
    }
}

/// A JetStream message being delivered. While it is, a task tells the
/// server every half `ack_wait` that work is in progress, so a slow delivery
/// (retries of a slow function) is not redelivered meanwhile. Dropped without
/// an outcome (the consumer stopped before a delivery slot was free), it is
/// nak'ed for immediate redelivery.
struct Pending {
    message: Option<jetstream::Message>,
    settings: JetStreamSettings,
    sink: Sink,
    /// The consumer's stop: once it stops, every acknowledgement is flushed.
    stopping: CancellationToken,
    progress: Option<tokio::task::JoinHandle<()>>,
}

impl Pending {
    fn new(
        message: jetstream::Message,
        settings: JetStreamSettings,
        sink: Sink,
        stopping: CancellationToken,
    ) -> Pending {
        let ticking = message.clone();
        let every = settings.ack_wait / 2;
        let progress = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if ticking.ack_with(AckKind::Progress).await.is_err() {
                    return;
                }
            }
        });
        Pending { message: Some(message), settings, sink, stopping, progress: Some(progress) }
    }

    /// The acknowledgement for `Event::with_ack`.
    fn settle(mut self) -> impl FnOnce(Outcome) + Send + 'static {
        move |outcome| {
            let Some(message) = self.message.take() else { return };
            let delivered = message.info().map_or(0, |info| info.delivered);
            let kind = match outcome {
                Outcome::Delivered | Outcome::DeadLettered | Outcome::Received => AckKind::Ack,
                // The last delivery JetStream makes: end it, and count the loss.
                Outcome::Failed if delivered >= self.settings.max_deliver => {
                    self.sink.lost(1, "delivery failed on every delivery JetStream makes (MAX_DELIVER)");
                    AckKind::Term
                }
                Outcome::Failed => AckKind::Nak(Some(self.settings.nak_delay)),
            };
            self.finish(message, kind);
        }
    }

    /// Send `kind` for `message` in the background, as part of the sink's
    /// work (its drain waits for it); once the consumer stops, also flush
    /// the connection, so the broker hears before the process exits. Not
    /// sent, JetStream redelivers the message after `ack_wait`.
    fn finish(&self, message: jetstream::Message, kind: AckKind) {
        let flush = self.stopping.is_cancelled();
        self.sink.settle_in_background(async move {
            if let Err(e) = message.ack_with(kind).await {
                warn!(error = %e, "acknowledging a JetStream message failed");
            } else if flush {
                // Bounded: while the server is unreachable a flush waits for the reconnect.
                match tokio::time::timeout(FLUSH_TIMEOUT, message.context.client().flush()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "flushing a JetStream acknowledgement failed"),
                    Err(_) => warn!("a JetStream acknowledgement was not flushed within {FLUSH_TIMEOUT:?}"),
                }
            }
        });
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(progress) = self.progress.take() {
            progress.abort();
        }
        if let Some(message) = self.message.take() {
            self.finish(message, AckKind::Nak(None));
        }
    }
}

// The connection pool is per process and each test has its own runtime: run
// the tests that connect one at a time (`--test-threads=1`), or a test could
// pick up a connection whose runtime another test already shut down.
#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use crate::apis::{TEST_SPEC_JSON, TriggerSpec};
    use crate::consumers::ConsumerKey;
    use crate::delivery::{DeliveryMode, RetryPolicy, SinkOptions};
    use crate::invoker::{Invoker, event_id};
    use crate::metrics::Metrics;

    /// A loopback function that reports each request's `event-topic` and body,
    /// and answers 500 to the first `failures` of them.
    async fn function(failures: usize) -> (String, mpsc::UnboundedReceiver<(String, Bytes)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = mpsc::unbounded_channel();
        let seen = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, seen) = (tx.clone(), seen.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (tx, seen) = (tx.clone(), seen.clone());
                        async move {
                            let topic = req.headers().get("event-topic").and_then(|v| v.to_str().ok());
                            let topic = topic.unwrap_or_default().to_owned();
                            let body =
                                req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let _ = tx.send((topic, body));
                            let mut response = hyper::Response::new(Full::new(Bytes::new()));
                            if seen.fetch_add(1, Ordering::SeqCst) < failures {
                                *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        (url, rx)
    }

    /// A consumer of `spec` delivering to `url` without retries.
    fn start(
        spec: TriggerSpec,
        url: String,
    ) -> (CancellationToken, tokio::task::JoinHandle<Result<(), SourceError>>) {
        let key =
            ConsumerKey { namespace: "default".into(), trigger: "orders".into(), function: "hello".into() };
        let ctx = ConsumerContext {
            group: key.group(),
            key,
            spec,
            delivery: DeliveryMode::AtLeastOnce,
            max_in_flight: 4,
            client: crate::testkit::offline_client(),
        };
        let retry = RetryPolicy { max_retries: 0, ..RetryPolicy::default() };
        let options = SinkOptions { max_in_flight: 4, retry, ..SinkOptions::default() };
        let sink = Sink::new(url, Invoker::new(Duration::from_secs(5)), options, Metrics::new(), None);
        let shutdown = CancellationToken::new();
        (shutdown.clone(), tokio::spawn(consume(ctx, sink, shutdown)))
    }

    fn spec_on(subject: &str) -> TriggerSpec {
        let mut spec: TriggerSpec = serde_json::from_str(TEST_SPEC_JSON).expect("a valid test spec");
        spec.topic = subject.to_owned();
        spec
    }

    #[tokio::test]
    #[ignore = "needs a NATS server: NATS_URL=nats://127.0.0.1:4222 cargo test -- --ignored --test-threads=1"]
    async fn messages_on_the_topic_reach_the_function() {
        let (url, mut received) = function(0).await;
        let subject = format!("kubeless-test-{}", event_id());
        let (shutdown, consumer) = start(spec_on(&subject), url);

        let publisher = async_nats::connect(nats_url()).await.expect("a NATS server at NATS_URL");
        let body = Bytes::from_static(br#"{"payload":"hello"}"#);
        // The subscription starts asynchronously: publish until the function sees the event.
        let mut got = None;
        for _ in 0..50 {
            publisher.publish(subject.clone(), body.clone()).await.expect("publish");
            publisher.flush().await.expect("flush");
            if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(200), received.recv()).await {
                got = Some(event);
                break;
            }
        }
        assert_eq!(got, Some((subject, body)), "the function received the message with its topic");
        shutdown.cancel();
        consumer.await.expect("join").expect("the consumer stops cleanly");
    }

    #[tokio::test]
    #[ignore = "needs a NATS server: NATS_URL=nats://127.0.0.1:4222 cargo test -- --ignored --test-threads=1"]
    async fn consumers_share_one_connection_per_server() {
        let (url, mut received) = function(0).await;
        let (a, b) = (format!("kubeless-test-{}", event_id()), format!("kubeless-test-{}", event_id()));
        let (stop_a, consumer_a) = start(spec_on(&a), url.clone());
        let (stop_b, consumer_b) = start(spec_on(&b), url);
        let publisher = async_nats::connect(nats_url()).await.expect("a NATS server at NATS_URL");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            for subject in [&a, &b] {
                publisher.publish(subject.clone(), Bytes::from_static(b"x")).await.expect("publish");
            }
            publisher.flush().await.expect("flush");
            while let Ok(Some((topic, _))) =
                tokio::time::timeout(Duration::from_millis(100), received.recv()).await
            {
                seen.insert(topic);
            }
            if seen.len() == 2 {
                break;
            }
        }
        assert_eq!(seen, [a, b].into_iter().collect(), "both consumers receive");
        assert_eq!(connections_open().await, 1, "over one shared connection");
        stop_a.cancel();
        stop_b.cancel();
        consumer_a.await.expect("join").expect("stops cleanly");
        consumer_b.await.expect("join").expect("stops cleanly");
    }

    /// A subscription whose buffer overflows (one delivery slot, a function
    /// that never answers, a burst of messages): the client drops messages;
    /// they are counted, and the trigger gets a Warning Event saying so.
    #[tokio::test]
    #[ignore = "needs a NATS server: NATS_URL=nats://127.0.0.1:4222 cargo test -- --ignored --test-threads=1"]
    async fn messages_the_client_drops_are_counted_and_raised_on_the_trigger() {
        use k8s_openapi::api::core::v1::ObjectReference;
        use kube::runtime::events::Recorder;

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let (api, mut events) =
            tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
        let recorder = Recorder::new(kube::Client::new(api, "default"), "test".into());
        let trigger = ObjectReference {
            kind: Some("Trigger".into()),
            name: Some("orders".into()),
            namespace: Some("default".into()),
            ..ObjectReference::default()
        };
        let failures = crate::delivery::FailureReporter::new(recorder, trigger);
        let metrics = Metrics::new();
        let options =
            SinkOptions { max_in_flight: 1, mode: DeliveryMode::AtMostOnce, ..SinkOptions::default() };
        let sink =
            Sink::new(url, Invoker::new(Duration::from_secs(60)), options, metrics.clone(), Some(failures));
        let subject = format!("kubeless-test-{}", event_id());
        let key =
            ConsumerKey { namespace: "default".into(), trigger: "orders".into(), function: "hello".into() };
        let ctx = ConsumerContext {
            group: key.group(),
            key,
            spec: spec_on(&subject),
            delivery: DeliveryMode::AtMostOnce,
            max_in_flight: 1,
            client: crate::testkit::offline_client(),
        };
        let shutdown = CancellationToken::new();
        let consumer = tokio::spawn(consume(ctx, sink, shutdown.clone()));

        let publisher = async_nats::connect(nats_url()).await.expect("a NATS server at NATS_URL");
        let event = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                for _ in 0..500 {
                    publisher.publish(subject.clone(), Bytes::from_static(b"{}")).await.expect("publish");
                }
                publisher.flush().await.expect("flush");
                if let Ok(request) =
                    tokio::time::timeout(Duration::from_millis(200), events.next_request()).await
                {
                    break request.expect("an Event request").0;
                }
            }
        })
        .await
        .expect("a Warning Event on the trigger");
        let body = event.into_body().collect_bytes().await.expect("the Event");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("EventsMayBeLost") && body.contains("subscription buffer"), "{body}");
        assert!(metrics.lost.get() > 0, "the dropped messages are counted");
        shutdown.cancel();
        consumer.await.expect("join").expect("stops cleanly");
    }

    #[tokio::test]
    #[ignore = "needs nats-server -js: NATS_URL=nats://127.0.0.1:4222 cargo test -- --ignored --test-threads=1"]
    async fn jetstream_redelivers_a_failed_message_and_acknowledges_it_once_delivered() {
        let (url, mut received) = function(1).await;
        let id = event_id();
        let (subject, stream) = (format!("kubeless-test-{id}"), format!("KUBELESS_TEST_{id}"));
        let client = async_nats::connect(nats_url()).await.expect("a NATS server at NATS_URL");
        let js = jetstream::new(client);
        js.create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{subject}.>")],
            ..Default::default()
        })
        .await
        .expect("a JetStream-enabled server (nats-server -js)");
        let body = Bytes::from_static(br#"{"order":1}"#);
        let (subject, moved) = (format!("{subject}.a"), format!("{subject}.b"));
        js.publish(subject.clone(), body.clone()).await.expect("publish").await.expect("stored");

        let mut spec = spec_on(&subject);
        spec.stream = Some(stream.clone());
        let (shutdown, consumer) = start(spec.clone(), url.clone());
        let first = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.expect("delivered");
        assert_eq!(first, Some((subject.clone(), body.clone())), "the first delivery fails with 500");
        let again =
            tokio::time::timeout(Duration::from_secs(30), received.recv()).await.expect("redelivered");
        assert_eq!(again, Some((subject, body.clone())), "nak'ed, then redelivered and delivered");

        let durable = durable_name("default.orders.hello");
        let mut info =
            js.get_stream(&stream).await.expect("stream").consumer_info(&durable).await.expect("info");
        for _ in 0..50 {
            if info.num_ack_pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            info = js.get_stream(&stream).await.expect("stream").consumer_info(&durable).await.expect("info");
        }
        assert_eq!((info.num_ack_pending, info.num_pending), (0, 0), "acknowledged, nothing left");
        shutdown.cancel();
        consumer.await.expect("join").expect("the consumer stops cleanly");

        // A changed topic restarts the consumer: the same durable now follows the new subject.
        spec.topic = moved.clone();
        let (shutdown, consumer) = start(spec, url);
        js.publish(moved.clone(), body.clone()).await.expect("publish").await.expect("stored");
        let next = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.expect("delivered");
        assert_eq!(next, Some((moved, body)), "the restarted consumer follows the new topic");
        shutdown.cancel();
        consumer.await.expect("join").expect("the consumer stops cleanly");
        js.delete_stream(&stream).await.expect("cleanup");
    }
}
/// `make test-faults`: the real consumer and delivery runtime against real
/// `nats-server` processes (started here; `nats-server` must be on PATH),
/// with faults injected, in core and JetStream mode. Prints what became of
/// every event; at-least-once (JetStream) must deliver every published event,
/// at-most-once (core) must count every loss it can see.
#[cfg(test)]
mod faults {
    use super::*;
    use std::net::TcpStream;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};

    use bytes::Bytes;

    use crate::apis::{TEST_SPEC_JSON, TriggerSpec};
    use crate::consumers::{ConsumerKey, Consumers, Desired, Runtime};
    use crate::delivery::{DeliveryMode, RetryPolicy};
    use crate::invoker::{Invoker, event_id};
    use crate::metrics::Metrics;
    use crate::testkit::{Behaviour, LoopbackFunction, Tally, table};

    /// A `nats-server -js` on a fixed port, with its store kept across
    /// restarts, and its monitoring endpoint on another.
    pub(super) struct NatsServer {
        port: u16,
        monitoring: u16,
        store: PathBuf,
        child: Option<Child>,
    }

    impl NatsServer {
        pub(super) fn start() -> NatsServer {
            let free = || {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port()
            };
            let (port, monitoring) = (free(), free());
            let store = std::env::temp_dir().join(format!("kubeless-faults-{}-{port}", std::process::id()));
            let mut server = NatsServer { port, monitoring, store, child: None };
            server.up();
            server
        }

        /// Client connections the server has now (its `/varz`).
        pub(super) fn connections(&self) -> u64 {
            use std::io::{Read, Write};
            let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.monitoring)) else { return 0 };
            let _ = stream.write_all(b"GET /varz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
            serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["connections"].as_u64())
                .unwrap_or_default()
        }

        pub(super) fn url(&self) -> String {
            format!("nats://127.0.0.1:{}", self.port)
        }

        fn up(&mut self) {
            let child = Command::new("nats-server")
                .args(["-js", "-sd"])
                .arg(&self.store)
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-m", &self.monitoring.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server on PATH (Debian: apt-get install nats-server)");
            self.child = Some(child);
            for _ in 0..100 {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("nats-server did not listen on {}", self.port);
        }

        fn down(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for NatsServer {
        fn drop(&mut self) {
            self.down();
            let _ = std::fs::remove_dir_all(&self.store);
        }
    }

    /// One scenario's world: a server, a function, the runtime's consumers.
    struct Rig {
        scenario: &'static str,
        mode: &'static str,
        server: NatsServer,
        function: LoopbackFunction,
        metrics: Metrics,
        consumers: Consumers,
        spec: TriggerSpec,
        desired: Desired,
        client: async_nats::Client,
        stream: Option<String>,
        published: Vec<Bytes>,
    }

    impl Rig {
        async fn new(scenario: &'static str, jetstream_mode: bool) -> Rig {
            let server = NatsServer::start();
            // SAFETY: the fault suite runs alone (`--test-threads=1`); nothing
            // else reads the environment while it is written.
            unsafe {
                std::env::set_var("NATS_URL", server.url());
                std::env::set_var("ACK_WAIT_SECONDS", "2");
                std::env::set_var("NAK_DELAY_SECONDS", "1");
            }
            let client = async_nats::connect(server.url()).await.expect("connect");
            let id = event_id();
            let mut spec: TriggerSpec = serde_json::from_str(TEST_SPEC_JSON).expect("a valid test spec");
            spec.topic = format!("faults.{id}");
            let stream = jetstream_mode.then(|| format!("FAULTS_{id}"));
            if let Some(stream) = &stream {
                let js = jetstream::new(client.clone());
                let config = jetstream::stream::Config {
                    name: stream.clone(),
                    subjects: vec![spec.topic.clone()],
                    ..Default::default()
                };
                js.create_stream(config).await.expect("a stream");
                spec.stream = Some(stream.clone());
            }
            let function = LoopbackFunction::start().await;
            let metrics = Metrics::new();
            let consumers = consumers(&metrics);
            let mode = if acknowledges(&spec) { DeliveryMode::AtLeastOnce } else { DeliveryMode::AtMostOnce };
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
                delivery: mode,
                trigger: Default::default(),
            };
            let mode = if jetstream_mode { "JetStream" } else { "core" };
            let rig = Rig {
                scenario,
                mode,
                server,
                function,
                metrics,
                consumers,
                spec,
                desired,
                client,
                stream,
                published: Vec::new(),
            };
            rig.start().await;
            rig
        }

        /// Run the consumer and wait until it receives (a probe, not counted).
        async fn start(&self) {
            let (spec, desired) = (self.spec.clone(), vec![self.desired.clone()]);
            self.consumers.sync("default", "orders", &spec, desired).await;
            let probe = Bytes::from(format!("probe-{}", event_id()));
            for _ in 0..100 {
                let _ = self.client.publish(self.spec.topic.clone(), probe.clone()).await;
                let _ = self.client.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                if self.function.delivered().contains_key(&probe) {
                    return;
                }
            }
            panic!("{}: the consumer never received", self.scenario);
        }

        /// Publish `n` events; only those the broker accepted count.
        async fn publish(&mut self, n: usize) {
            let js = jetstream::new(self.client.clone());
            for _ in 0..n {
                let body = Bytes::from(format!("{}-{}", self.scenario, event_id()));
                let accepted = match &self.stream {
                    Some(_) => match js.publish(self.spec.topic.clone(), body.clone()).await {
                        Ok(ack) => ack.await.is_ok(),
                        Err(_) => false,
                    },
                    None => self.client.publish(self.spec.topic.clone(), body.clone()).await.is_ok(),
                };
                if accepted {
                    self.published.push(body);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let _ = self.client.flush().await;
        }

        /// Wait until every published event was delivered, or nothing changed for a while.
        async fn settle(&self, within: Duration) {
            let deadline = tokio::time::Instant::now() + within;
            let (mut last, mut still) = (u64::MAX, 0);
            while tokio::time::Instant::now() < deadline {
                let tally = self.tally();
                if tally.missing == 0 {
                    return;
                }
                let progress = tally.delivered + self.metrics.failed.get() + self.metrics.lost.get();
                still = if progress == last { still + 1 } else { 0 };
                last = progress;
                if self.stream.is_none() && still >= 20 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        fn tally(&self) -> Tally {
            let mut tally = Tally::of(self.scenario, self.mode, &self.published, &self.function);
            tally.dead_lettered = self.metrics.dead_lettered.get();
            tally.failed = self.metrics.failed.get();
            tally.lost = self.metrics.lost.get();
            tally
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

    async fn broker_restarted_mid_stream(jetstream_mode: bool) -> Tally {
        let mut rig = Rig::new("broker restarted mid-stream", jetstream_mode).await;
        rig.publish(100).await;
        rig.server.down();
        tokio::time::sleep(Duration::from_millis(500)).await;
        rig.server.up();
        rig.publish(100).await;
        rig.settle(Duration::from_secs(30)).await;
        rig.consumers.stop_all(Duration::from_secs(2)).await;
        rig.tally()
    }

    async fn function_failing_then_recovering(jetstream_mode: bool) -> Tally {
        let mut rig = Rig::new("function failing, then recovering", jetstream_mode).await;
        rig.function.set(Behaviour::Fail);
        rig.publish(50).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        rig.function.set(Behaviour::Answer);
        rig.publish(50).await;
        rig.settle(Duration::from_secs(30)).await;
        rig.consumers.stop_all(Duration::from_secs(2)).await;
        rig.tally()
    }

    async fn function_hanging(jetstream_mode: bool) -> Tally {
        let mut rig = Rig::new("function hanging, then answering", jetstream_mode).await;
        rig.function.set(Behaviour::Hang);
        rig.publish(20).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        rig.function.set(Behaviour::Answer);
        rig.publish(20).await;
        rig.settle(Duration::from_secs(30)).await;
        rig.consumers.stop_all(Duration::from_secs(2)).await;
        rig.tally()
    }

    async fn function_dropping_connections(jetstream_mode: bool) -> Tally {
        let mut rig = Rig::new("function dropping connections", jetstream_mode).await;
        rig.function.set(Behaviour::Drop);
        rig.publish(30).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        rig.function.set(Behaviour::Answer);
        rig.publish(30).await;
        rig.settle(Duration::from_secs(30)).await;
        rig.consumers.stop_all(Duration::from_secs(2)).await;
        rig.tally()
    }

    async fn trigger_changed_under_load(jetstream_mode: bool) -> Tally {
        let mut rig = Rig::new("trigger spec changed under load", jetstream_mode).await;
        rig.publish(50).await;
        rig.desired.retry.max_retries = 3;
        let (spec, desired) = (rig.spec.clone(), vec![rig.desired.clone()]);
        rig.consumers.sync("default", "orders", &spec, desired).await;
        rig.publish(50).await;
        rig.settle(Duration::from_secs(30)).await;
        rig.consumers.stop_all(Duration::from_secs(2)).await;
        rig.tally()
    }

    async fn function_removed_and_readded(jetstream_mode: bool) -> Tally {
        let mut rig = Rig::new("function removed and re-added", jetstream_mode).await;
        rig.publish(50).await;
        rig.consumers.sync("default", "orders", &rig.spec.clone(), Vec::new()).await;
        rig.publish(50).await;
        rig.start().await;
        rig.publish(50).await;
        rig.settle(Duration::from_secs(30)).await;
        rig.consumers.stop_all(Duration::from_secs(2)).await;
        rig.tally()
    }

    async fn shutdown_under_load(jetstream_mode: bool) -> Tally {
        let mut rig = Rig::new("SIGTERM (drain) under load", jetstream_mode).await;
        rig.function.set(Behaviour::Hang);
        rig.publish(100).await;
        // What the controller does on SIGTERM, with deliveries hanging.
        rig.consumers.stop_all(Duration::from_millis(500)).await;
        rig.function.set(Behaviour::Answer);
        if jetstream_mode {
            // The next controller picks up what was left unacknowledged.
            rig.consumers = consumers(&rig.metrics);
            rig.start().await;
        }
        rig.settle(Duration::from_secs(30)).await;
        rig.consumers.stop_all(Duration::from_secs(2)).await;
        rig.tally()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "starts nats-server processes: make test-faults"]
    async fn fault_suite() {
        let mut rows = Vec::new();
        for jetstream_mode in [true, false] {
            rows.push(broker_restarted_mid_stream(jetstream_mode).await);
            rows.push(function_failing_then_recovering(jetstream_mode).await);
            rows.push(function_hanging(jetstream_mode).await);
            rows.push(function_dropping_connections(jetstream_mode).await);
            rows.push(trigger_changed_under_load(jetstream_mode).await);
            rows.push(function_removed_and_readded(jetstream_mode).await);
            rows.push(shutdown_under_load(jetstream_mode).await);
        }
        println!("{}", table(&rows));
        println!(
            "core NATS drops messages the server cannot hand to a subscriber (while the broker restarts, \
             or while no consumer is subscribed); no client can count those."
        );
        for row in &rows {
            if row.mode == "JetStream" {
                assert_eq!(row.missing, 0, "at-least-once lost events: {row:?}");
            } else if !matches!(
                row.scenario.as_str(),
                "broker restarted mid-stream"
                    | "trigger spec changed under load"
                    | "function removed and re-added"
            ) {
                let accounted = row.delivered + row.failed + row.lost;
                assert!(accounted >= row.published, "at-most-once lost events silently: {row:?}");
            }
        }
    }
}
/// `make bench` (second part): the NATS trigger end to end through a real
/// `nats-server` beside the limit measured in the same run (a bare
/// async-nats subscriber that POSTs each message with the same
/// concurrency), in core and JetStream mode; and the cost of 1, 100 and
/// 1,000 consumers in one controller. Each measured side runs in a child
/// process of its own, so each peak RSS is its own. Results are printed with
/// their targets; a machine busy with other work must not fail a build, so
/// nothing here asserts a duration.
#[cfg(test)]
mod bench {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::sync::Mutex;
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::net::TcpListener;
    use tokio::sync::Semaphore;

    use super::faults::NatsServer;
    use crate::apis::{TEST_SPEC_JSON, TriggerSpec};
    use crate::consumers::{ConsumerKey, Consumers, Desired, Runtime};
    use crate::delivery::{DeliveryMode, RetryPolicy};
    use crate::invoker::Invoker;
    use crate::metrics::Metrics;

    const ROLE: &str = "NATS_BENCH_ROLE";
    const CONCURRENCY: usize = 16;
    /// Events published and not yet received, at most: the publisher waits beyond it.
    const WINDOW: u64 = 1000;
    /// Events sent before the scale benchmark measures: enough for every
    /// consumer count to reach the concurrency it is measured at.
    const WARM_UP: u64 = 4 * WINDOW;
    /// The scale benchmark's even load: no more events ahead than a few
    /// consumers deliver at once, whatever the number of consumers.
    const EVEN: u64 = 4 * CONCURRENCY as u64;

    fn setting(key: &str, default: usize) -> usize {
        std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    fn now_us() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
    }

    fn peak_rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmHWM:").map(str::to_owned)))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_default()
    }

    /// CPU time the process `pid` has used so far, all its threads (Linux).
    fn cpu_time(pid: u32) -> Duration {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
        let ns: u64 = tasks
            .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
            .filter_map(|stat| stat.split(' ').next().and_then(|ns| ns.parse::<u64>().ok()))
            .sum();
        Duration::from_nanos(ns)
    }

    /// The loopback function: every body starts with its publish time (µs).
    #[derive(Default)]
    struct Received {
        count: std::sync::atomic::AtomicU64,
        /// Connections the function accepted.
        connections: std::sync::atomic::AtomicU64,
        /// Told of every event received.
        progress: tokio::sync::Notify,
        latencies_us: Mutex<Vec<u64>>,
    }

    async fn function(received: Arc<Received>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                received.connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let received = received.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let received = received.clone();
                        async move {
                            let body =
                                req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let sent: u64 = std::str::from_utf8(&body)
                                .ok()
                                .and_then(|b| b.split(' ').next())
                                .and_then(|t| t.parse().ok())
                                .unwrap_or_default();
                            received.latencies_us.lock().expect("lock").push(now_us().saturating_sub(sent));
                            received.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            received.progress.notify_waiters();
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        url
    }

    /// A measured side, running in a child process until its stdin closes;
    /// it prints `ready` once subscribed and its peak RSS when told to stop.
    struct Side {
        child: std::process::Child,
        lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    }

    impl Side {
        fn spawn(role: &str, env: &[(&str, String)]) -> Side {
            let mut command = Command::new(std::env::current_exe().expect("the test binary"));
            command
                .args([
                    "--exact",
                    "event_source::bench::child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(ROLE, role)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            for (k, v) in env {
                command.env(k, v);
            }
            let mut child = command.spawn().expect("spawn a measured side");
            let stdout = child.stdout.take().expect("stdout");
            Side { child, lines: BufReader::new(stdout).lines() }
        }

        fn wait_for(&mut self, word: &str) -> String {
            for line in self.lines.by_ref() {
                let line = line.expect("a line from the child");
                // libtest may print the test's name on the same line first.
                if let Some((_, rest)) = line.split_once(word) {
                    return rest.trim().to_owned();
                }
            }
            panic!("the measured side ended before saying {word}");
        }

        /// Close its stdin: it prints its peak RSS and exits.
        fn finish(mut self) -> u64 {
            drop(self.child.stdin.take());
            let rss = self.wait_for("rss").parse().unwrap_or_default();
            let _ = self.child.wait();
            rss
        }
    }

    /// Publish `events` bodies round-robin over `subjects` (JetStream when
    /// `jetstream`), at most `window` ahead of what the function received;
    /// returns the time until the function received them all.
    async fn drive(
        client: &async_nats::Client,
        subjects: &[String],
        jetstream_mode: bool,
        events: u64,
        window: u64,
        received: &Received,
    ) -> Duration {
        use std::sync::atomic::Ordering::SeqCst;
        let js = jetstream::new(client.clone());
        let start_count = received.count.load(SeqCst);
        let started = Instant::now();
        for i in 0..events {
            // Woken by the function, not a timer: a timer's millisecond
            // would bound a small window's throughput.
            while i - (received.count.load(SeqCst) - start_count) >= window {
                let progress = received.progress.notified();
                tokio::pin!(progress);
                progress.as_mut().enable();
                if i - (received.count.load(SeqCst) - start_count) >= window {
                    progress.await;
                }
            }
            let subject = subjects[(i as usize) % subjects.len()].clone();
            let body = Bytes::from(format!("{} event-{i}", now_us()));
            if jetstream_mode {
                js.publish(subject, body).await.expect("publish").await.expect("stored");
            } else {
                client.publish(subject, body).await.expect("publish");
            }
        }
        client.flush().await.expect("flush");
        let deadline = Instant::now() + Duration::from_secs(120);
        while received.count.load(SeqCst) - start_count < events && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        started.elapsed()
    }

    struct Result {
        events_per_second: f64,
        p50_us: u64,
        p99_us: u64,
        rss_kib: u64,
    }

    fn result(events: u64, elapsed: Duration, received: &Received, rss_kib: u64) -> Result {
        let mut latencies = std::mem::take(&mut *received.latencies_us.lock().expect("lock"));
        latencies.sort_unstable();
        let at = |q: f64| {
            latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
        };
        Result {
            events_per_second: events as f64 / elapsed.as_secs_f64(),
            p50_us: at(0.50).copied().unwrap_or_default(),
            p99_us: at(0.99).copied().unwrap_or_default(),
            rss_kib,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "benchmark: make bench"]
    async fn end_to_end() {
        let events = setting("BENCH_EVENTS", 20_000) as u64;
        let server = NatsServer::start();
        let client = async_nats::connect(server.url()).await.expect("connect");
        let received = Arc::new(Received::default());
        let url = function(received.clone()).await;
        println!(
            "NATS end to end: {events} events, concurrency {CONCURRENCY}, one consumer, loopback function"
        );
        println!(
            "{:<11} {:<9} {:>10} {:>8} {:>8} {:>9}",
            "mode", "side", "events/s", "p50 µs", "p99 µs", "RSS MiB"
        );
        for jetstream_mode in [false, true] {
            let mode = if jetstream_mode { "JetStream" } else { "core" };
            let mut results = Vec::new();
            for side in ["runtime", "baseline"] {
                let subject = format!("bench.{side}.{}", crate::invoker::event_id());
                let mut env = vec![
                    ("NATS_URL", server.url()),
                    ("BENCH_SUBJECT", subject.clone()),
                    ("BENCH_URL", url.clone()),
                ];
                if jetstream_mode {
                    let stream = format!("BENCH_{}", crate::invoker::event_id());
                    jetstream::new(client.clone())
                        .create_stream(jetstream::stream::Config {
                            name: stream.clone(),
                            subjects: vec![subject.clone()],
                            ..Default::default()
                        })
                        .await
                        .expect("a stream");
                    env.push(("BENCH_STREAM", stream));
                }
                let mut child = Side::spawn(side, &env);
                child.wait_for("ready");
                // Warm up (connections, the consumer's first pull), then measure.
                drive(&client, std::slice::from_ref(&subject), jetstream_mode, 500, WINDOW, &received).await;
                received.latencies_us.lock().expect("lock").clear();
                let elapsed =
                    drive(&client, std::slice::from_ref(&subject), jetstream_mode, events, WINDOW, &received)
                        .await;
                let rss = child.finish();
                let r = result(events, elapsed, &received, rss);
                println!(
                    "{mode:<11} {side:<9} {:>10.0} {:>8} {:>8} {:>9.1}",
                    r.events_per_second,
                    r.p50_us,
                    r.p99_us,
                    r.rss_kib as f64 / 1024.0
                );
                results.push(r);
            }
            let (runtime, baseline) = (&results[0], &results[1]);
            let ratio = runtime.events_per_second / baseline.events_per_second;
            let p99 = runtime.p99_us as f64 / baseline.p99_us.max(1) as f64;
            let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
            println!(
                "{mode}: throughput {ratio:.2} of the bare client (target >= 0.8): {}; p99 {p99:.2}x (target <= 1.5): {}; runtime RSS {:.1} MiB (target < 30): {}",
                verdict(ratio >= 0.8),
                verdict(p99 <= 1.5),
                runtime.rss_kib as f64 / 1024.0,
                verdict(runtime.rss_kib < 30 * 1024)
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "benchmark: make bench"]
    async fn scale() {
        use std::sync::atomic::Ordering::SeqCst;
        let events = setting("BENCH_EVENTS", 60_000) as u64;
        let server = NatsServer::start();
        let client = async_nats::connect(server.url()).await.expect("connect");
        let received = Arc::new(Received::default());
        let url = function(received.clone()).await;
        println!(
            "NATS consumers in one controller (core), one loopback function: {events} events spread over them, published at most {EVEN} ahead (as many as {} consumers deliver at once), then at most {WINDOW} ahead (each consumer delivers up to {CONCURRENCY} at once: more consumers, more connections to the function); start: from process start to every consumer delivering; opened: connections the function accepted while measuring (after a warm-up of {WARM_UP} events)",
            EVEN as usize / CONCURRENCY
        );
        println!(
            "{:>9} {:>8} {:>11} | {:>10} {:>8} | {:>10} {:>8} {:>7} | {:>7}",
            "consumers",
            "start ms",
            "connections",
            "events/s",
            "CPU µs",
            "events/s",
            "CPU µs",
            "opened",
            "RSS MiB"
        );
        // events/s and the controller's CPU µs per event, by consumer count, at each load.
        let mut rows: Vec<[(f64, f64); 2]> = Vec::new();
        for consumers in [1usize, 100, 1000] {
            let prefix = format!("scale.{}", crate::invoker::event_id());
            let subjects: Vec<String> = (0..consumers).map(|i| format!("{prefix}.{i}")).collect();
            let before = server.connections();
            let started = Instant::now();
            let mut child = Side::spawn(
                "scale",
                &[
                    ("NATS_URL", server.url()),
                    ("BENCH_SUBJECT", prefix.clone()),
                    ("BENCH_URL", url.clone()),
                    ("BENCH_CONSUMERS", consumers.to_string()),
                ],
            );
            child.wait_for("ready");
            // Started: a probe on every subject reaches the function.
            while started.elapsed() < Duration::from_secs(120) {
                let base = received.count.load(SeqCst);
                for subject in &subjects {
                    client
                        .publish(subject.clone(), Bytes::from(format!("{} probe", now_us())))
                        .await
                        .expect("publish");
                }
                client.flush().await.expect("flush");
                tokio::time::sleep(Duration::from_millis(100)).await;
                if received.count.load(SeqCst) - base >= consumers as u64 {
                    break;
                }
            }
            let start_ms = started.elapsed().as_millis();
            // The controller's connections: the server's count less this test's client.
            let connections = server.connections().saturating_sub(before);
            // Opening the connections to the function is part of starting,
            // not of the cost per event.
            drive(&client, &subjects, false, WARM_UP, WINDOW, &received).await;
            let opened = received.connections.load(SeqCst);
            let mut row = [(0.0, 0.0); 2];
            for (at, window) in [EVEN, WINDOW].into_iter().enumerate() {
                let cpu_before = cpu_time(child.child.id());
                let elapsed = drive(&client, &subjects, false, events, window, &received).await;
                let cpu = cpu_time(child.child.id()).saturating_sub(cpu_before);
                row[at] = (events as f64 / elapsed.as_secs_f64(), cpu.as_secs_f64() * 1e6 / events as f64);
            }
            let opened = received.connections.load(SeqCst) - opened;
            let rss = child.finish();
            println!(
                "{consumers:>9} {start_ms:>8} {connections:>11} | {:>10.0} {:>8.1} | {:>10.0} {:>8.1} {opened:>7} | {:>7.1}",
                row[0].0,
                row[0].1,
                row[1].0,
                row[1].1,
                rss as f64 / 1024.0
            );
            rows.push(row);
            if consumers == 1000 {
                let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
                let (one, many) = (rows[0], row);
                println!(
                    "1000 consumers: RSS {:.1} MiB (target < 100): {}; {connections} connections (target: a handful): {}; throughput {:.2} of one consumer's at {EVEN} ahead (target >= 0.9: within noise of one consumer): {}, {:.2} at {WINDOW} ahead: {}; the controller's CPU per event {:.2}x and {:.2}x one consumer's",
                    rss as f64 / 1024.0,
                    verdict(rss < 100 * 1024),
                    verdict(connections <= 4),
                    many[0].0 / one[0].0,
                    verdict(many[0].0 >= one[0].0 * 0.9),
                    many[1].0 / one[1].0,
                    verdict(many[1].0 >= one[1].0 * 0.9),
                    many[0].1 / one[0].1,
                    many[1].1 / one[1].1,
                );
            }
        }
    }

    /// One measured side (see [`Side`]); does nothing unless spawned as one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a child of the benchmarks"]
    async fn child() {
        let Ok(role) = std::env::var(ROLE) else { return };
        let subject = std::env::var("BENCH_SUBJECT").expect("BENCH_SUBJECT");
        let url = std::env::var("BENCH_URL").expect("BENCH_URL");
        let stream = std::env::var("BENCH_STREAM").ok();
        // What runs until the parent says stop.
        let _running: (Option<Consumers>, Option<tokio::task::JoinHandle<()>>) = match role.as_str() {
            "runtime" => (Some(runtime_side(vec![(subject, stream)], &url).await), None),
            "scale" => {
                let n = setting("BENCH_CONSUMERS", 1);
                let subjects = (0..n).map(|i| (format!("{subject}.{i}"), None)).collect();
                (Some(runtime_side(subjects, &url).await), None)
            }
            _ => (None, Some(baseline_side(subject, stream, url).await)),
        };
        println!("ready");
        std::io::stdout().flush().expect("flush");
        // Run until the parent closes our stdin.
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().lines().count()).await;
        println!("rss {}", peak_rss_kib());
        std::io::stdout().flush().expect("flush");
    }

    /// The controller's runtime: one consumer per subject through `Consumers`.
    async fn runtime_side(subjects: Vec<(String, Option<String>)>, url: &str) -> Consumers {
        let consumers = Consumers::new(Runtime {
            source: Arc::new(|ctx, sink, stop| Box::pin(super::consume(ctx, sink, stop))),
            restart: RetryPolicy::default(),
            changes: None,
            invoker: Invoker::new(Duration::from_secs(30)),
            max_in_flight: CONCURRENCY,
            drain_grace: Duration::from_secs(1),
            metrics: Metrics::new(),
            recorder: None,
            client: crate::testkit::offline_client(),
        });
        for (i, (subject, stream)) in subjects.into_iter().enumerate() {
            let mut spec: TriggerSpec = serde_json::from_str(TEST_SPEC_JSON).expect("spec");
            spec.topic = subject;
            spec.stream = stream;
            let mode = if acknowledges(&spec) { DeliveryMode::AtLeastOnce } else { DeliveryMode::AtMostOnce };
            let trigger = format!("t{i}");
            let desired = Desired {
                key: ConsumerKey {
                    namespace: "default".into(),
                    trigger: trigger.clone(),
                    function: "hello".into(),
                },
                url: url.to_owned(),
                timeout: Duration::from_secs(30),
                retry: RetryPolicy::default(),
                dead_letter: None,
                delivery: mode,
                trigger: Default::default(),
            };
            consumers.sync("default", &trigger, &spec, vec![desired]).await;
        }
        // Let every consumer connect and subscribe.
        tokio::time::sleep(Duration::from_millis(500)).await;
        consumers
    }

    /// The limit: a bare async-nats subscriber that POSTs each message with
    /// the same concurrency (and, on JetStream, acks after the POST).
    async fn baseline_side(
        subject: String,
        stream: Option<String>,
        url: String,
    ) -> tokio::task::JoinHandle<()> {
        let client = async_nats::connect(nats_url()).await.expect("connect");
        let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        let post = move |body: Bytes| {
            let request = hyper::Request::post(url.as_str()).body(Full::new(body)).expect("request");
            http.request(request)
        };
        match stream {
            None => {
                let mut messages = client.subscribe(subject).await.expect("subscribe");
                client.flush().await.expect("flush");
                tokio::spawn(async move {
                    while let Some(message) = messages.next().await {
                        let permit = permits.clone().acquire_owned().await.expect("permit");
                        let posting = post(message.payload);
                        tokio::spawn(async move {
                            let _ = posting.await;
                            drop(permit);
                        });
                    }
                })
            }
            Some(stream) => {
                let js = jetstream::new(client);
                let config = pull::Config {
                    durable_name: Some("baseline".into()),
                    ack_policy: AckPolicy::Explicit,
                    max_ack_pending: CONCURRENCY as i64,
                    ..pull::Config::default()
                };
                let consumer = js
                    .get_stream(stream)
                    .await
                    .expect("stream")
                    .create_consumer(config)
                    .await
                    .expect("consumer");
                let mut messages = consumer.messages().await.expect("messages");
                tokio::spawn(async move {
                    while let Some(Ok(message)) = messages.next().await {
                        let permit = permits.clone().acquire_owned().await.expect("permit");
                        let posting = post(message.payload.clone());
                        tokio::spawn(async move {
                            let _ = posting.await;
                            let _ = message.ack().await;
                            drop(permit);
                        });
                    }
                })
            }
        }
    }
}
