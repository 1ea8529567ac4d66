//! Delivery: what happens to an event between the source and the function.
//!
//! A consumer hands events to its [`Sink`]. The sink bounds the deliveries in
//! flight (a slow function slows its own consumer and no other), retries
//! connection errors, timeouts and 5xx answers with exponential backoff and
//! jitter, never retries 4xx answers, and calls the event's acknowledgement:
//! after the final outcome (at-least-once) or on receipt (at-most-once).
//! In at-least-once mode a final failure reaches the acknowledgement as
//! [`Outcome::Failed`]: the source must then not acknowledge the event (nak
//! it, or leave its offset uncommitted) so that the broker redelivers it.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Uri};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::Error;
use crate::invoker::Invoker;
use crate::metrics::Metrics;
pub use crate::policy::BackoffPolicy;

/// One event from the source.
pub struct Event {
    /// `event-id`: the same on every attempt, so a function can tell a
    /// retry from a new event. Random unless the source sets one.
    pub id: String,
    /// The request body, passed through unchanged.
    pub body: Bytes,
    /// Topic (subject, stream, ...) the event came from; sent as `event-topic`.
    pub topic: Option<String>,
    ack: Option<Ack>,
}

impl Event {
    pub fn new(body: impl Into<Bytes>) -> Event {
        Event { id: crate::invoker::event_id(), body: body.into(), topic: None, ack: None }
    }

    /// Send `id` as the `event-id` instead of a random one.
    pub fn with_id(mut self, id: impl Into<String>) -> Event {
        self.id = id.into();
        self
    }

    pub fn with_topic(mut self, topic: impl Into<String>) -> Event {
        self.topic = Some(topic.into());
        self
    }

    /// Call `ack` with the event's [`Outcome`]: commit an offset, ack a
    /// message. At-least-once calls it after delivery, at-most-once on receipt.
    pub fn with_ack(mut self, ack: impl FnOnce(Outcome) + Send + 'static) -> Event {
        self.ack = Some(Ack(Box::new(ack)));
        self
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("body", &self.body)
            .field("topic", &self.topic)
            .field("ack", &self.ack.is_some())
            .finish()
    }
}

struct Ack(Box<dyn FnOnce(Outcome) + Send>);

/// What became of an event, as its acknowledgement learns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The function answered 2xx.
    Delivered,
    /// Every attempt failed, or the function answered 4xx. In at-least-once
    /// mode the source must not acknowledge the event: the broker redelivers it.
    Failed,
    /// Every attempt failed and the trigger's dead letter took the event:
    /// acknowledge it.
    DeadLettered,
    /// At-most-once: acknowledged on receipt, before delivery.
    Received,
}

/// When a consumer's events are acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeliveryMode {
    /// After delivery; a final failure is left unacknowledged for the broker to
    /// redeliver. Only sources that acknowledge (see `EventSource::Stream`) give it.
    #[default]
    AtLeastOnce,
    /// On receipt, as the Kubeless originals did.
    AtMostOnce,
}

impl FromStr for DeliveryMode {
    type Err = String;

    fn from_str(s: &str) -> Result<DeliveryMode, String> {
        match s {
            "at-least-once" => Ok(DeliveryMode::AtLeastOnce),
            "at-most-once" => Ok(DeliveryMode::AtMostOnce),
            _ => Err("expected `at-least-once` or `at-most-once`".into()),
        }
    }
}

impl fmt::Display for DeliveryMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeliveryMode::AtLeastOnce => "at-least-once",
            DeliveryMode::AtMostOnce => "at-most-once",
        })
    }
}

/// Retries of failed delivery attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub max_retries: u32,
    /// Pause before the first retry.
    pub base: Duration,
    /// How the pause grows for each further retry.
    pub policy: BackoffPolicy,
    /// Longest pause.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(200),
            policy: BackoffPolicy::Exponential,
            max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The longest pause [`RetryPolicy::backoff`] may give before retry `retry`.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = match self.policy {
            BackoffPolicy::Exponential => 2u32.saturating_pow(retry),
            BackoffPolicy::Linear => retry.saturating_add(1),
        };
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The pause before retry number `retry` (0-based): exponential or
    /// linear, capped, with jitter between half and all of it so retries do
    /// not synchronise.
    pub fn backoff(&self, retry: u32) -> Duration {
        let full = self.backoff_ceiling(retry);
        let mut random = [0u8; 8];
        let fraction = match getrandom::fill(&mut random) {
            Ok(()) => u64::from_le_bytes(random) as f64 / u64::MAX as f64,
            Err(_) => 1.0,
        };
        full.mul_f64(0.5 + fraction / 2.0)
    }
}

/// Whether a failed attempt may succeed when tried again.
fn retryable(error: &Error) -> bool {
    match error {
        Error::Transport { .. } | Error::Timeout { .. } => true,
        Error::Status { status, .. } => status.is_server_error(),
        _ => false,
    }
}

/// Publishes a Kubernetes Event on the trigger when deliveries fail, at most
/// once a minute per consumer; possible losses a shared client reports have
/// their own minute, so they never hide a delivery failure.
pub struct FailureReporter {
    recorder: Recorder,
    trigger: ObjectReference,
    last: Mutex<Option<Instant>>,
    last_possible_loss: Mutex<Option<Instant>>,
}

impl FailureReporter {
    const EVERY: Duration = Duration::from_secs(60);

    pub fn new(recorder: Recorder, trigger: ObjectReference) -> FailureReporter {
        FailureReporter { recorder, trigger, last: Mutex::new(None), last_possible_loss: Mutex::new(None) }
    }

    /// Publish `error` in the background (never while a delivery slot is
    /// held), unless one was published within the last minute.
    fn report(&self, error: &Error) {
        let limiter = match error {
            Error::MayBeLost { .. } => &self.last_possible_loss,
            _ => &self.last,
        };
        {
            let mut last = limiter.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < Self::EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        publish_warning(&self.recorder, self.trigger.clone(), "Deliver", error.reason(), error.to_string());
    }
}

/// Publish a Warning Event about `reference` in the background: a slow API
/// server never holds up a reconcile or a delivery slot.
pub fn publish_warning(
    recorder: &Recorder,
    reference: ObjectReference,
    action: &str,
    reason: &str,
    note: String,
) {
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    let recorder = recorder.clone();
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            warn!(error = %e, "could not publish a Kubernetes Event");
        }
    });
}

/// Where a consumer hands its events: delivery to one function.
#[derive(Clone)]
pub struct Sink {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    /// `url`, parsed once; `None` when it is not a valid URI (every delivery then fails).
    uri: Option<Uri>,
    invoker: Invoker,
    retry: RetryPolicy,
    mode: DeliveryMode,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    /// Work telling the source an outcome (`settle_in_background`).
    settling: TaskTracker,
    metrics: Metrics,
    failures: Option<FailureReporter>,
    /// Where events go after their last failed attempt.
    dead_letter: Option<(String, Option<Uri>)>,
}

/// How a sink delivers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkOptions {
    pub retry: RetryPolicy,
    pub mode: DeliveryMode,
    /// Deliveries running at once; [`Sink::send`] waits while this many run.
    pub max_in_flight: usize,
    /// URL of the trigger's dead letter, if it has one.
    pub dead_letter: Option<String>,
}

impl Sink {
    pub fn new(
        url: String,
        invoker: Invoker,
        options: SinkOptions,
        metrics: Metrics,
        failures: Option<FailureReporter>,
    ) -> Sink {
        Sink {
            inner: Arc::new(Inner {
                uri: url.parse().ok(),
                url,
                invoker,
                retry: options.retry,
                mode: options.mode,
                permits: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
                tracker: TaskTracker::new(),
                settling: TaskTracker::new(),
                metrics,
                failures,
                dead_letter: options.dead_letter.map(|url| {
                    let uri = url.parse().ok();
                    (url, uri)
                }),
            }),
        }
    }

    /// The function's URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    pub fn mode(&self) -> DeliveryMode {
        self.inner.mode
    }

    /// Hand one event over. Returns as soon as the delivery started, after
    /// waiting while the maximum number of deliveries is in flight, so a slow
    /// function slows down its own consumer. The event's acknowledgement is
    /// called with the outcome.
    pub async fn send(&self, event: Event) {
        let Ok(permit) = self.inner.permits.clone().acquire_owned().await else { return };
        self.inner.metrics.received.inc();
        let Event { id, body, topic, ack } = event;
        let ack = match self.inner.mode {
            DeliveryMode::AtMostOnce => {
                if let Some(Ack(ack)) = ack {
                    ack(Outcome::Received);
                }
                None
            }
            DeliveryMode::AtLeastOnce => ack,
        };
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move {
            let outcome = inner.deliver(&Payload { id: &id, body: &body, topic: topic.as_deref() }).await;
            if let Some(Ack(ack)) = ack {
                ack(outcome);
            }
            drop(permit);
        });
    }

    /// Deliver one event and wait for its outcome (retries included); the
    /// event's acknowledgement is not called.
    pub async fn deliver(&self, event: Event) -> Outcome {
        let Ok(_permit) = self.inner.permits.acquire().await else { return Outcome::Failed };
        self.inner.metrics.received.inc();
        self.inner.deliver(&Payload { id: &event.id, body: &event.body, topic: event.topic.as_deref() }).await
    }

    /// Run `work` that tells the source an event's outcome over the network
    /// (a JetStream acknowledgement): `drain` waits for it like a delivery,
    /// so a shutdown does not end before the broker heard. Outside a Tokio
    /// runtime (one being torn down) the work is dropped: the broker then
    /// redelivers what it did not hear about.
    pub fn settle_in_background(&self, work: impl Future<Output = ()> + Send + 'static) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.inner.settling.spawn_on(work, &runtime);
        }
    }

    /// Wait, at most `grace`, for the deliveries in flight and the work of
    /// `settle_in_background`; no new deliveries start once this is called.
    /// Returns whether everything finished.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.inner.tracker.close();
        let deadline = tokio::time::Instant::now() + grace;
        if tokio::time::timeout_at(deadline, self.inner.tracker.wait()).await.is_err() {
            return false;
        }
        // Deliveries are over, so no settlement starts any more.
        self.inner.settling.close();
        tokio::time::timeout_at(deadline, self.inner.settling.wait()).await.is_ok()
    }

    /// Count `count` events the source lost before handing them over (a
    /// client buffer overflowed, say): logged, counted in
    /// `kubeless_trigger_events_lost_total`, and published as an Event.
    pub fn lost(&self, count: u64, cause: &str) {
        self.inner.metrics.lost.inc_by(count);
        let error = Error::Lost { url: self.inner.url.clone(), cause: cause.to_owned() };
        warn!(count, error = %error, "events lost");
        if let Some(failures) = &self.inner.failures {
            failures.report(&error);
        }
    }

    /// Publish that events may have been lost for `cause` as an Event on
    /// this sink's trigger (at most once a minute), without counting them:
    /// for a loss that a client shared by several triggers counts once and
    /// cannot attribute.
    pub fn report_possible_loss(&self, cause: &str) {
        if let Some(failures) = &self.inner.failures {
            failures.report(&Error::MayBeLost { url: self.inner.url.clone(), cause: cause.to_owned() });
        }
    }

    /// The metrics this sink counts in (shared by every sink of the runtime).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Deliveries in flight now.
    pub fn in_flight(&self) -> usize {
        self.inner.tracker.len()
    }
}

/// What every attempt of one event sends.
struct Payload<'a> {
    id: &'a str,
    body: &'a Bytes,
    topic: Option<&'a str>,
}

impl Inner {
    async fn deliver(&self, event: &Payload<'_>) -> Outcome {
        let Some(uri) = &self.uri else {
            warn!(url = %self.url, "not a valid function URL; the event is not delivered");
            self.metrics.failed.inc();
            return Outcome::Failed;
        };
        let started = Instant::now();
        let (error, attempts) = match self.attempt(uri, event, &[]).await {
            Ok(()) => {
                self.metrics.delivered.inc();
                self.metrics.latency.observe(started.elapsed().as_secs_f64());
                return Outcome::Delivered;
            }
            Err(failure) => failure,
        };
        warn!(url = %self.url, error = %error, attempts, "delivery failed");
        self.metrics.failed.inc();
        if let Some(failures) = &self.failures {
            failures.report(&error);
        }
        match &self.dead_letter {
            None => Outcome::Failed,
            Some((url, uri)) => self.dead_letter(url, uri.as_ref(), event, &error, attempts).await,
        }
    }

    /// Attempts with retries; on failure, the last error and the number of attempts.
    async fn attempt(
        &self,
        uri: &Uri,
        event: &Payload<'_>,
        extra: &[(&'static str, HeaderValue)],
    ) -> Result<(), (Error, u32)> {
        let mut retry = 0;
        loop {
            match self.invoker.deliver_with(uri, event.id, event.body, event.topic, extra).await {
                Ok(()) => return Ok(()),
                Err(e) if retryable(&e) && retry < self.retry.max_retries => {
                    let pause = self.retry.backoff(retry);
                    debug!(url = %uri, error = %e, ?pause, "delivery failed; retrying");
                    self.metrics.retried.inc();
                    retry += 1;
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err((e, retry + 1)),
            }
        }
    }

    /// Hand a finally failed event to the dead letter, with headers saying
    /// where it was going, after how many attempts, and why it failed.
    async fn dead_letter(
        &self,
        url: &str,
        uri: Option<&Uri>,
        event: &Payload<'_>,
        error: &Error,
        attempts: u32,
    ) -> Outcome {
        let Some(uri) = uri else {
            warn!(dead_letter = %url, "not a valid dead-letter URL; the event is not acknowledged");
            return Outcome::Failed;
        };
        let mut extra = vec![
            ("dead-letter-destination", header(&self.url)),
            ("dead-letter-attempts", HeaderValue::from(attempts)),
            ("dead-letter-reason", header(&error.to_string())),
        ];
        if let Error::Status { status, .. } = error {
            extra.push(("dead-letter-status", HeaderValue::from(status.as_u16())));
        }
        match self.attempt(uri, event, &extra).await {
            Ok(()) => {
                self.metrics.dead_lettered.inc();
                Outcome::DeadLettered
            }
            Err((e, attempts)) => {
                warn!(dead_letter = %url, error = %e, attempts, "the dead letter failed too; the event is not acknowledged");
                Outcome::Failed
            }
        }
    }
}

/// `text` as a header value: printable ASCII kept, anything else escaped, at most 1 KiB.
fn header(text: &str) -> HeaderValue {
    let mut escaped: String = text.escape_default().collect();
    if escaped.len() > 1024 {
        let cut = (0..=1024).rev().find(|&i| escaped.is_char_boundary(i)).unwrap_or(0);
        escaped.truncate(cut);
    }
    HeaderValue::from_str(&escaped).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;
    use tokio::sync::{Notify, mpsc};

    /// A loopback function that answers with `statuses` in turn (the last one
    /// repeats), optionally holding each answer until `release` is notified.
    struct Function {
        url: String,
        requests: Arc<AtomicUsize>,
        release: Arc<Notify>,
        /// The `event-id` of every request, in order.
        ids: Arc<std::sync::Mutex<Vec<String>>>,
    }

    async fn function(statuses: Vec<u16>, hold: bool) -> Function {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, gate, seen) = (requests.clone(), release.clone(), ids.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (count, gate, statuses, seen) =
                    (count.clone(), gate.clone(), statuses.clone(), seen.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let id =
                            req.headers().get("event-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
                        seen.lock().expect("ids").push(id.to_owned());
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        let status = statuses[n.min(statuses.len() - 1)];
                        let gate = gate.clone();
                        async move {
                            if hold {
                                gate.notified().await;
                            }
                            let status = StatusCode::from_u16(status).expect("status");
                            Response::builder().status(status).body(Full::new(Bytes::new()))
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Function { url, requests, release, ids }
    }

    fn sink(url: &str, mode: DeliveryMode, max_in_flight: usize) -> Sink {
        let retry = RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
            ..RetryPolicy::default()
        };
        let options = SinkOptions { retry, mode, max_in_flight, dead_letter: None };
        Sink::new(url.to_owned(), Invoker::new(Duration::from_secs(2)), options, Metrics::new(), None)
    }

    /// An event whose acknowledgement lands in a channel.
    fn acked(body: &'static str) -> (Event, mpsc::UnboundedReceiver<Outcome>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let event = Event::new(body).with_ack(move |outcome| {
            let _ = tx.send(outcome);
        });
        (event, rx)
    }

    #[tokio::test]
    async fn a_5xx_is_retried_and_the_event_delivered_once() {
        let f = function(vec![503, 500, 200], false).await;
        let sink = sink(&f.url, DeliveryMode::AtLeastOnce, 4);
        assert_eq!(sink.deliver(Event::new("x")).await, Outcome::Delivered);
        assert_eq!(f.requests.load(Ordering::SeqCst), 3, "two failures, one success, nothing after");
        assert_eq!(sink.inner.metrics.retried.get(), 2);
        assert_eq!(sink.inner.metrics.delivered.get(), 1);
    }

    #[tokio::test]
    async fn every_attempt_of_one_event_carries_its_id_and_events_differ() {
        let f = function(vec![503, 200], false).await;
        let sink = sink(&f.url, DeliveryMode::AtLeastOnce, 4);
        assert_eq!(sink.deliver(Event::new("x")).await, Outcome::Delivered);
        assert_eq!(sink.deliver(Event::new("y").with_id("pod-1234")).await, Outcome::Delivered);
        let ids = f.ids.lock().expect("ids").clone();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert_eq!(ids[0], ids[1], "a retry is the same event");
        assert_eq!(ids[0].len(), 32, "{ids:?}");
        assert_eq!(ids[2], "pod-1234");
    }

    #[tokio::test]
    async fn a_4xx_is_not_retried() {
        let f = function(vec![400], false).await;
        let sink = sink(&f.url, DeliveryMode::AtLeastOnce, 4);
        assert_eq!(sink.deliver(Event::new("x")).await, Outcome::Failed);
        assert_eq!(f.requests.load(Ordering::SeqCst), 1);
        assert_eq!(sink.inner.metrics.failed.get(), 1);
    }

    #[tokio::test]
    async fn retries_stop_at_the_configured_count() {
        let f = function(vec![500], false).await;
        let sink = sink(&f.url, DeliveryMode::AtLeastOnce, 4);
        assert_eq!(sink.deliver(Event::new("x")).await, Outcome::Failed);
        assert_eq!(f.requests.load(Ordering::SeqCst), 4, "the first attempt and 3 retries");
    }

    #[tokio::test]
    async fn connection_errors_are_retried() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener); // nothing listens there any more
        let sink = sink(&url, DeliveryMode::AtLeastOnce, 1);
        assert_eq!(sink.deliver(Event::new("x")).await, Outcome::Failed);
        assert_eq!(sink.inner.metrics.retried.get(), 3);
    }

    #[tokio::test]
    async fn at_least_once_acknowledges_only_after_delivery() {
        let f = function(vec![200], true).await;
        let sink = sink(&f.url, DeliveryMode::AtLeastOnce, 4);
        let (event, mut acks) = acked("x");
        sink.send(event).await;
        while f.requests.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(acks.try_recv().is_err(), "not acknowledged while the function holds the request");
        f.release.notify_one();
        assert_eq!(acks.recv().await, Some(Outcome::Delivered));
    }

    #[tokio::test]
    async fn at_least_once_reports_a_final_failure_for_the_source_to_leave_unacknowledged() {
        let f = function(vec![404], false).await;
        let sink = sink(&f.url, DeliveryMode::AtLeastOnce, 4);
        let (event, mut acks) = acked("x");
        sink.send(event).await;
        assert_eq!(acks.recv().await, Some(Outcome::Failed));
    }

    /// A loopback dead letter that reports each request's headers and body.
    async fn dead_letter() -> (String, mpsc::UnboundedReceiver<(http::HeaderMap, Bytes)>) {
        use http_body_util::BodyExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let headers = req.headers().clone();
                            let body =
                                req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let _ = tx.send((headers, body));
                            Response::builder().status(StatusCode::OK).body(Full::new(Bytes::new()))
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        (url, rx)
    }

    fn with_dead_letter(url: &str, dead_letter: &str) -> Sink {
        let retry = RetryPolicy {
            max_retries: 2,
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
            ..RetryPolicy::default()
        };
        let options = SinkOptions {
            retry,
            max_in_flight: 4,
            dead_letter: Some(dead_letter.to_owned()),
            ..SinkOptions::default()
        };
        Sink::new(url.to_owned(), Invoker::new(Duration::from_secs(2)), options, Metrics::new(), None)
    }

    #[tokio::test]
    async fn a_final_failure_goes_to_the_dead_letter_with_the_reason_then_is_acknowledged() {
        let f = function(vec![503], false).await;
        let (dlq, mut dead) = dead_letter().await;
        let sink = with_dead_letter(&f.url, &dlq);
        let (event, mut acks) = acked("{\"order\":1}");
        sink.send(event.with_topic("orders")).await;
        assert_eq!(
            acks.recv().await,
            Some(Outcome::DeadLettered),
            "acknowledged once the dead letter took it"
        );
        assert_eq!(f.requests.load(Ordering::SeqCst), 3, "the first attempt and 2 retries");
        let (headers, body) = dead.recv().await.expect("the dead letter got the event");
        assert_eq!(body, Bytes::from_static(b"{\"order\":1}"));
        assert_eq!(headers["dead-letter-destination"], f.url.as_str());
        assert_eq!(headers["dead-letter-attempts"], "3");
        assert_eq!(headers["dead-letter-status"], "503");
        let reason = headers["dead-letter-reason"].to_str().expect("ASCII");
        assert!(reason.contains("503"), "{reason}");
        assert_eq!(headers["event-topic"], "orders", "the Kubeless headers stay");
        assert_eq!(sink.inner.metrics.dead_lettered.get(), 1);
    }

    #[tokio::test]
    async fn when_the_dead_letter_fails_too_the_event_is_not_acknowledged() {
        let f = function(vec![500], false).await;
        let gone = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dlq = format!("http://{}", gone.local_addr().expect("addr"));
        drop(gone);
        let sink = with_dead_letter(&f.url, &dlq);
        let (event, mut acks) = acked("x");
        sink.send(event).await;
        assert_eq!(acks.recv().await, Some(Outcome::Failed));
        assert_eq!(sink.inner.metrics.dead_lettered.get(), 0);
    }

    #[test]
    fn linear_backoff_grows_by_the_delay() {
        let policy = RetryPolicy {
            max_retries: 10,
            base: Duration::from_millis(100),
            policy: BackoffPolicy::Linear,
            max: Duration::from_secs(1),
        };
        for (retry, full) in [(0, 100), (1, 200), (2, 300), (3, 400), (12, 1000)] {
            let pause = policy.backoff(retry);
            let full = Duration::from_millis(full);
            assert!(
                pause >= full / 2 && pause <= full,
                "retry {retry}: {pause:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
    }

    #[tokio::test]
    async fn at_most_once_acknowledges_on_receipt() {
        let f = function(vec![200], true).await;
        let sink = sink(&f.url, DeliveryMode::AtMostOnce, 4);
        let (event, mut acks) = acked("x");
        sink.send(event).await;
        assert_eq!(acks.try_recv(), Ok(Outcome::Received), "acknowledged before the function answered");
        f.release.notify_one();
        assert!(sink.drain(Duration::from_secs(2)).await);
        assert_eq!(f.requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn in_flight_deliveries_are_bounded() {
        let f = function(vec![200], true).await;
        let sink = sink(&f.url, DeliveryMode::AtLeastOnce, 2);
        sink.send(Event::new("1")).await;
        sink.send(Event::new("2")).await;
        let third = tokio::time::timeout(Duration::from_millis(100), sink.send(Event::new("3"))).await;
        assert!(third.is_err(), "a third send waits while two deliveries are in flight");
        assert_eq!(sink.in_flight(), 2);
        f.release.notify_one();
        tokio::time::timeout(Duration::from_secs(2), sink.send(Event::new("3")))
            .await
            .expect("a slot freed up");
        for _ in 0..2 {
            f.release.notify_one();
        }
        assert!(sink.drain(Duration::from_secs(2)).await);
        assert_eq!(f.requests.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn drain_waits_for_deliveries_in_flight_within_the_grace_period() {
        let f = function(vec![200], true).await;
        let sink = sink(&f.url, DeliveryMode::AtLeastOnce, 4);
        let (event, mut acks) = acked("x");
        sink.send(event).await;
        assert!(!sink.drain(Duration::from_millis(50)).await, "the function has not answered yet");
        let release = f.release.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            release.notify_one();
        });
        assert!(sink.drain(Duration::from_secs(2)).await, "drained once the function answered");
        assert_eq!(acks.try_recv(), Ok(Outcome::Delivered));
    }

    #[tokio::test]
    async fn drain_waits_for_the_settlement_an_acknowledgement_starts() {
        let f = function(vec![200], false).await;
        let sink = sink(&f.url, DeliveryMode::AtLeastOnce, 4);
        let heard = Arc::new(AtomicBool::new(false));
        let (settling, told) = (sink.clone(), heard.clone());
        let event = Event::new("x").with_ack(move |_| {
            settling.settle_in_background(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                told.store(true, Ordering::SeqCst);
            });
        });
        sink.send(event).await;
        assert!(sink.drain(Duration::from_secs(2)).await);
        assert!(heard.load(Ordering::SeqCst), "drain returned before the broker heard the outcome");
    }

    #[tokio::test]
    async fn a_final_failure_is_published_as_a_kubernetes_event_at_most_once_a_minute() {
        use kube::client::Body;
        let f = function(vec![400], false).await;
        let (service, mut api) = tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        let recorder = Recorder::new(kube::Client::new(service, "default"), "test".into());
        let trigger = ObjectReference {
            kind: Some("Trigger".into()),
            name: Some("orders".into()),
            namespace: Some("default".into()),
            ..ObjectReference::default()
        };
        let options = SinkOptions { max_in_flight: 1, ..SinkOptions::default() };
        let failures = FailureReporter::new(recorder, trigger);
        let sink = Sink::new(
            f.url.clone(),
            Invoker::new(Duration::from_secs(2)),
            options,
            Metrics::new(),
            Some(failures),
        );
        let server = tokio::spawn(async move {
            let (req, send) = api.next_request().await.expect("an Event");
            assert_eq!(req.method(), http::Method::POST);
            assert_eq!(req.uri().path(), "/apis/events.k8s.io/v1/namespaces/default/events");
            let bytes = req.into_body().collect_bytes().await.expect("body");
            let event: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            assert_eq!(event["type"], "Warning");
            assert_eq!(event["reason"], "DeliveryFailed");
            assert!(event["note"].as_str().unwrap_or_default().contains("400"), "{event}");
            send.send_response(http::Response::new(Body::from(bytes.to_vec())));
            api
        });
        assert_eq!(sink.deliver(Event::new("x")).await, Outcome::Failed);
        let mut api =
            tokio::time::timeout(Duration::from_secs(2), server).await.expect("event").expect("asserts");
        assert_eq!(sink.deliver(Event::new("y")).await, Outcome::Failed);
        let second = tokio::time::timeout(Duration::from_millis(100), api.next_request()).await;
        assert!(second.is_err(), "a second failure within a minute publishes nothing");

        // A possible loss a shared client reports has a minute of its own.
        sink.report_possible_loss("a buffer overflowed");
        let (req, _send) = tokio::time::timeout(Duration::from_secs(2), api.next_request())
            .await
            .expect("an Event")
            .expect("a request");
        let bytes = req.into_body().collect_bytes().await.expect("body");
        let event: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(event["reason"], "EventsMayBeLost");
        sink.report_possible_loss("a buffer overflowed");
        let again = tokio::time::timeout(Duration::from_millis(100), api.next_request()).await;
        assert!(again.is_err(), "at most once a minute");
    }

    #[tokio::test]
    async fn losses_reported_by_a_source_are_counted() {
        let sink = sink("http://127.0.0.1:9", DeliveryMode::AtMostOnce, 1);
        sink.lost(2, "buffer full");
        sink.lost(1, "buffer full");
        assert_eq!(sink.inner.metrics.lost.get(), 3);
        assert!(sink.inner.metrics.encode().contains("kubeless_trigger_events_lost_total 3"));
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        let policy = RetryPolicy {
            max_retries: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for (retry, full) in [(0, 100), (1, 200), (2, 400), (3, 800), (4, 1000), (9, 1000)] {
            let pause = policy.backoff(retry);
            let full = Duration::from_millis(full);
            assert!(
                pause >= full / 2 && pause <= full,
                "retry {retry}: {pause:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
    }

    #[test]
    fn delivery_modes_parse() {
        assert_eq!("at-least-once".parse(), Ok(DeliveryMode::AtLeastOnce));
        assert_eq!("at-most-once".parse(), Ok(DeliveryMode::AtMostOnce));
        assert!("exactly-once".parse::<DeliveryMode>().is_err());
    }
}
