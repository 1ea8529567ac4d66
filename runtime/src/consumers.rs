//! Consumers: one running stream source (`crate::source::EventSource::Stream`) per (trigger,
//! function). The controller tells [`Consumers::sync`] what should run; this
//! module starts what is new, restarts what changed and stops what is gone,
//! so a changed topic or selector never leaves an old consumer behind.
//! Stopping a consumer cancels its source, then lets its deliveries in flight
//! finish within a grace period.
//!
//! Each consumer is supervised: a source that fails or ends while it should
//! run is restarted with exponential backoff and jitter, counted in the
//! `consumer_restarts` metric, and reported to the controller, which shows it
//! in the trigger's Ready condition and an Event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc::UnboundedSender;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::Recorder;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::apis::TriggerSpec;
use crate::delivery::{DeliveryMode, FailureReporter, RetryPolicy, Sink, SinkOptions};
use crate::invoker::Invoker;
use crate::metrics::Metrics;
use crate::source::SourceError;

/// How long a cancelled source may take to return before it is aborted.
const SOURCE_STOP_GRACE: Duration = Duration::from_secs(10);

/// Identifies one consumer: a trigger and one of its functions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerKey {
    pub namespace: String,
    pub trigger: String,
    pub function: String,
}

impl ConsumerKey {
    /// A stable name for this (trigger, function) pair. Sources with consumer or
    /// queue groups (Kafka, NATS) use it, so controller replicas share the work.
    pub fn group(&self) -> String {
        format!("{}.{}.{}", self.namespace, self.trigger, self.function)
    }
}

/// What a consumer is given when it starts.
#[derive(Clone)]
pub struct ConsumerContext {
    pub key: ConsumerKey,
    /// See [`ConsumerKey::group`].
    pub group: String,
    /// The trigger's spec at the time the consumer started; a change restarts the consumer.
    pub spec: TriggerSpec,
    /// When events are acknowledged; sources without acknowledgements can ignore it.
    pub delivery: DeliveryMode,
    /// Deliveries the sink runs at once (`MAX_IN_FLIGHT`): size client-side buffers by it.
    pub max_in_flight: usize,
    /// The controller's Kubernetes client, for sources that read Secrets or keep
    /// state (checkpoints) in the cluster; its RBAC is the controller's.
    pub client: kube::Client,
}

impl std::fmt::Debug for ConsumerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerContext")
            .field("key", &self.key)
            .field("group", &self.group)
            .field("spec", &self.spec)
            .field("delivery", &self.delivery)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

/// A consumer that should be running.
#[derive(Clone, Debug)]
pub struct Desired {
    pub key: ConsumerKey,
    pub url: String,
    /// Time limit of one delivery attempt.
    pub timeout: Duration,
    /// Retries of failed attempts (the trigger's `spec.delivery` over the defaults).
    pub retry: RetryPolicy,
    /// URL of the trigger's dead letter.
    pub dead_letter: Option<String>,
    pub delivery: DeliveryMode,
    /// The trigger, for Kubernetes Events about failed deliveries.
    pub trigger: ObjectReference,
}

/// Runs one consumer's event source until its token is cancelled.
pub type Source = Arc<
    dyn Fn(ConsumerContext, Sink, CancellationToken) -> BoxFuture<'static, Result<(), SourceError>>
        + Send
        + Sync,
>;

/// Health of one consumer, as its supervisor last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// The event source is running.
    Running,
    /// The event source failed or ended, and is restarted after a pause.
    Restarting {
        /// Restarts so far.
        restarts: u64,
        /// Why it stopped the last time.
        error: String,
    },
}

/// How consumers deliver, shared by all of them.
#[derive(Clone)]
pub struct Runtime {
    /// The event source each consumer runs.
    pub source: Source,
    /// Pauses between restarts of a failed source.
    pub restart: RetryPolicy,
    /// Told the key of a consumer whose health changed.
    pub changes: Option<UnboundedSender<ConsumerKey>>,
    pub invoker: Invoker,
    pub max_in_flight: usize,
    /// How long deliveries in flight may finish when a consumer stops.
    pub drain_grace: Duration,
    pub metrics: Metrics,
    /// Publishes delivery failures as Kubernetes Events (none in tests).
    pub recorder: Option<Recorder>,
    /// Handed to every consumer in its [`ConsumerContext`].
    pub client: kube::Client,
}

struct Running {
    /// The spec, URL and delivery mode it was started with; any change means a restart.
    fingerprint: String,
    url: String,
    dead_letter: Option<String>,
    health: Arc<Mutex<Health>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    sink: Sink,
}

/// The consumers of this controller.
pub struct Consumers {
    runtime: Runtime,
    running: Mutex<HashMap<ConsumerKey, Running>>,
    started: AtomicU64,
    /// Set by `stop_all` (under the `running` lock): nothing starts after it,
    /// not even from a reconcile that was still finishing.
    closed: AtomicBool,
    /// Consumers being stopped outside `stop_all` (a trigger changed or
    /// gone). Their stops run as tasks of their own, so a reconcile dropped
    /// at shutdown does not drop a half-stopped consumer, and `stop_all`
    /// waits for them too.
    stopping: TaskTracker,
}

impl Consumers {
    pub fn new(runtime: Runtime) -> Consumers {
        Consumers {
            runtime,
            running: Mutex::new(HashMap::new()),
            started: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            stopping: TaskTracker::new(),
        }
    }

    /// How many consumers were started so far (restarts included).
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Keys of the running consumers, sorted.
    pub fn keys(&self) -> Vec<ConsumerKey> {
        let mut keys: Vec<_> = self.lock().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// The consumers of trigger `namespace/trigger` that are not running, by function.
    pub fn unhealthy_of(&self, namespace: &str, trigger: &str) -> Vec<(String, Health)> {
        let mut unhealthy: Vec<(String, Health)> = self
            .lock()
            .iter()
            .filter(|(k, _)| k.namespace == namespace && k.trigger == trigger)
            .map(|(k, r)| (k.function.clone(), lock(&r.health).clone()))
            .filter(|(_, health)| *health != Health::Running)
            .collect();
        unhealthy.sort_by(|a, b| a.0.cmp(&b.0));
        unhealthy
    }

    /// The dead-letter URL the consumers of trigger `namespace/trigger` use, if any.
    pub fn dead_letter_of(&self, namespace: &str, trigger: &str) -> Option<String> {
        self.lock()
            .iter()
            .find(|(k, _)| k.namespace == namespace && k.trigger == trigger)
            .and_then(|(_, r)| r.dead_letter.clone())
    }

    /// The URL the consumer `key` delivers to, when it runs.
    pub fn url_of(&self, key: &ConsumerKey) -> Option<String> {
        self.lock().get(key).map(|r| r.url.clone())
    }

    /// The functions trigger `namespace/trigger` has a running consumer for, sorted.
    pub fn functions_of(&self, namespace: &str, trigger: &str) -> Vec<String> {
        let mut functions: Vec<String> = self
            .lock()
            .keys()
            .filter(|k| k.namespace == namespace && k.trigger == trigger)
            .map(|k| k.function.clone())
            .collect();
        functions.sort();
        functions
    }

    /// The triggers in `namespace` with a running consumer for `function`.
    pub fn triggers_delivering_to(&self, namespace: &str, function: &str) -> Vec<String> {
        let mut triggers: Vec<String> = self
            .lock()
            .keys()
            .filter(|k| k.namespace == namespace && k.function == function)
            .map(|k| k.trigger.clone())
            .collect();
        triggers.sort();
        triggers.dedup();
        triggers
    }

    /// Stop the consumers of every trigger for which `keep(namespace, trigger)` is false.
    pub async fn retain_triggers(&self, keep: impl Fn(&str, &str) -> bool) {
        let stopping: Vec<(ConsumerKey, Running)> = {
            let mut running = self.lock();
            let gone: Vec<ConsumerKey> =
                running.keys().filter(|k| !keep(&k.namespace, &k.trigger)).cloned().collect();
            gone.into_iter().filter_map(|k| running.remove(&k).map(|r| (k, r))).collect()
        };
        for (key, _) in &stopping {
            info!(group = %key.group(), "trigger is gone; stopping its orphaned consumer");
        }
        self.stop_many(stopping).await;
    }

    /// Make the consumers of trigger `namespace/trigger` exactly `desired`.
    pub async fn sync(&self, namespace: &str, trigger: &str, spec: &TriggerSpec, desired: Vec<Desired>) {
        let spec_json = serde_json::to_string(spec).unwrap_or_default();
        let mut stopping = Vec::new();
        {
            let mut running = self.lock();
            let wanted: HashMap<&ConsumerKey, &Desired> = desired.iter().map(|d| (&d.key, d)).collect();
            let stale: Vec<ConsumerKey> = running
                .iter()
                .filter(|(k, r)| {
                    k.namespace == namespace
                        && k.trigger == trigger
                        && wanted.get(k).is_none_or(|d| fingerprint(&spec_json, d) != r.fingerprint)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for key in stale {
                if let Some(r) = running.remove(&key) {
                    stopping.push((key, r));
                }
            }
            for d in &desired {
                if running.contains_key(&d.key) || self.closed.load(Ordering::SeqCst) {
                    continue;
                }
                let started = self.start(d, spec.clone(), fingerprint(&spec_json, d));
                running.insert(d.key.clone(), started);
            }
        }
        self.stop_many(stopping).await;
    }

    /// Stop every consumer of trigger `namespace/trigger`.
    pub async fn stop_trigger(&self, namespace: &str, trigger: &str) {
        let stopping: Vec<(ConsumerKey, Running)> = {
            let mut running = self.lock();
            let keys: Vec<_> = running
                .keys()
                .filter(|k| k.namespace == namespace && k.trigger == trigger)
                .cloned()
                .collect();
            keys.into_iter().filter_map(|k| running.remove(&k).map(|r| (k, r))).collect()
        };
        self.stop_many(stopping).await;
    }

    /// Stop consumers concurrently: the slowest sets the pace, not their sum.
    async fn stop_many(&self, stopping: Vec<(ConsumerKey, Running)>) {
        let grace = self.runtime.drain_grace;
        let stops: Vec<_> = stopping
            .into_iter()
            .map(|(key, r)| {
                info!(group = %key.group(), "stopping consumer");
                self.stopping.spawn(finish(key, r, grace))
            })
            .collect();
        futures::future::join_all(stops).await;
    }

    /// Stop everything (on shutdown): every source is cancelled at once, then
    /// deliveries in flight get `grace` to finish; stops already under way
    /// (a trigger changed or gone) get as long. Nothing starts afterwards.
    pub async fn stop_all(&self, grace: Duration) {
        let stopping: Vec<(ConsumerKey, Running)> = {
            let mut running = self.lock();
            self.closed.store(true, Ordering::SeqCst);
            running.drain().collect()
        };
        for (_, r) in &stopping {
            r.cancel.cancel();
        }
        self.stopping.close();
        let under_way = tokio::time::timeout(SOURCE_STOP_GRACE + grace, self.stopping.wait());
        let (_, waited) = futures::join!(
            futures::future::join_all(stopping.into_iter().map(|(key, r)| finish(key, r, grace))),
            under_way
        );
        if waited.is_err() {
            warn!("consumers stopping before the shutdown did not finish within the grace period");
        }
    }

    fn start(&self, d: &Desired, spec: TriggerSpec, fingerprint: String) -> Running {
        self.started.fetch_add(1, Ordering::Relaxed);
        let rt = &self.runtime;
        let options = SinkOptions {
            retry: d.retry,
            mode: d.delivery,
            max_in_flight: rt.max_in_flight,
            dead_letter: d.dead_letter.clone(),
        };
        let failures = rt.recorder.clone().map(|r| FailureReporter::new(r, d.trigger.clone()));
        let sink = Sink::new(
            d.url.clone(),
            rt.invoker.with_timeout(d.timeout),
            options,
            rt.metrics.clone(),
            failures,
        );
        let cancel = CancellationToken::new();
        let context = ConsumerContext {
            key: d.key.clone(),
            group: d.key.group(),
            spec,
            delivery: d.delivery,
            max_in_flight: rt.max_in_flight,
            client: rt.client.clone(),
        };
        info!(group = %d.key.group(), url = %d.url, delivery = %d.delivery, "starting consumer");
        let health = Arc::new(Mutex::new(Health::Running));
        let supervisor = Supervisor {
            key: d.key.clone(),
            runtime: rt.clone(),
            health: health.clone(),
            token: cancel.clone(),
        };
        let task = tokio::spawn(supervisor.run(context, sink.clone()));
        Running {
            fingerprint,
            url: d.url.clone(),
            dead_letter: d.dead_letter.clone(),
            health,
            cancel,
            task,
            sink,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConsumerKey, Running>> {
        lock(&self.running)
    }
}

/// Runs one consumer's source, and restarts it whenever it fails or ends
/// before its token is cancelled.
struct Supervisor {
    key: ConsumerKey,
    runtime: Runtime,
    health: Arc<Mutex<Health>>,
    token: CancellationToken,
}

impl Supervisor {
    async fn run(self, context: ConsumerContext, sink: Sink) {
        let mut restarts = 0u64;
        let mut failures_in_a_row = 0u32;
        loop {
            let started = Instant::now();
            // A panic in the source is a failure like any other: restarted and reported.
            let source = (self.runtime.source)(context.clone(), sink.clone(), self.token.clone());
            let mut source = std::panic::AssertUnwindSafe(source).catch_unwind();
            // Running again only once a restarted source has lasted a while,
            // so a source that keeps failing does not flap the trigger's status.
            let result = if restarts == 0 {
                source.await
            } else {
                tokio::select! {
                    result = &mut source => result,
                    () = tokio::time::sleep(self.runtime.restart.base) => {
                        self.set(Health::Running);
                        source.await
                    }
                }
            };
            let result = result.unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(format!("the event source panicked: {what}").into())
            });
            if self.token.is_cancelled() {
                if let Err(e) = result {
                    warn!(group = %self.key.group(), error = %e, "consumer stopped with an error");
                }
                return;
            }
            let error = match result {
                Ok(()) => "the event source ended".to_owned(),
                Err(e) => e.to_string(),
            };
            // A source that ran longer than the longest pause starts the backoff over.
            if started.elapsed() > self.runtime.restart.max {
                failures_in_a_row = 0;
            }
            let pause = self.runtime.restart.backoff(failures_in_a_row);
            failures_in_a_row = failures_in_a_row.saturating_add(1);
            restarts += 1;
            warn!(group = %self.key.group(), %error, ?pause, restarts, "event source stopped; restarting");
            self.runtime.metrics.consumer_restarts.inc();
            self.set(Health::Restarting { restarts, error });
            tokio::select! {
                () = self.token.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Record `health`, telling the controller only when it changed.
    fn set(&self, health: Health) {
        let changed = {
            let mut current = lock(&self.health);
            let changed = *current != health;
            *current = health;
            changed
        };
        if changed && let Some(changes) = &self.runtime.changes {
            let _ = changes.send(self.key.clone());
        }
    }
}

/// A poisoned lock still holds a consistent value here: use it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn fingerprint(spec_json: &str, d: &Desired) -> String {
    format!("{} {} {:?} {:?} {:?} {spec_json}", d.url, d.delivery, d.timeout, d.retry, d.dead_letter)
}

/// Stop a consumer: cancel its source, wait for it, then give its deliveries
/// in flight `grace` to finish. What is still in flight then is never
/// silently gone: at-least-once leaves it unacknowledged for the broker to
/// redeliver; at-most-once counts it as lost (an upper bound: a delivery that
/// still completes later was counted too).
async fn finish(key: ConsumerKey, r: Running, grace: Duration) {
    r.cancel.cancel();
    stop_source(&key, r.task).await;
    if r.sink.drain(grace).await {
        return;
    }
    let in_flight = r.sink.in_flight();
    match r.sink.mode() {
        DeliveryMode::AtLeastOnce => {
            warn!(group = %key.group(), in_flight, "deliveries still in flight after {grace:?}; left unacknowledged for redelivery");
        }
        DeliveryMode::AtMostOnce => {
            r.sink.lost(in_flight as u64, "still in flight when the shutdown grace ended");
        }
    }
}

/// Wait for a cancelled source to return; abort it after a grace period.
async fn stop_source(key: &ConsumerKey, task: JoinHandle<()>) {
    let abort = task.abort_handle();
    if tokio::time::timeout(SOURCE_STOP_GRACE, task).await.is_err() {
        warn!(group = %key.group(), "event source did not stop within {SOURCE_STOP_GRACE:?}; aborting it");
        abort.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::mpsc;

    use crate::apis::TEST_SPEC_JSON;

    /// A source that fails `failures` times, then runs until cancelled.
    fn flaky(failures: usize, calls: Arc<AtomicUsize>) -> Source {
        Arc::new(move |_ctx, _sink, shutdown| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match call {
                    0 => Err(SourceError::from("cannot connect")),
                    n if n < failures => Ok(()),
                    _ => {
                        shutdown.cancelled().await;
                        Ok(())
                    }
                }
            })
        })
    }

    fn consumers(source: Source, changes: UnboundedSender<ConsumerKey>) -> Consumers {
        Consumers::new(Runtime {
            source,
            restart: RetryPolicy {
                max_retries: 0,
                base: Duration::from_millis(5),
                max: Duration::from_millis(20),
                ..RetryPolicy::default()
            },
            changes: Some(changes),
            invoker: Invoker::new(Duration::from_secs(1)),
            max_in_flight: 1,
            drain_grace: Duration::from_secs(1),
            metrics: Metrics::new(),
            recorder: None,
            client: crate::testkit::offline_client(),
        })
    }

    fn desired() -> Desired {
        Desired {
            key: ConsumerKey {
                namespace: "default".into(),
                trigger: "orders".into(),
                function: "hello".into(),
            },
            url: "http://127.0.0.1:9".into(),
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            dead_letter: None,
            delivery: crate::delivery::DeliveryMode::AtLeastOnce,
            trigger: ObjectReference::default(),
        }
    }

    #[tokio::test]
    async fn a_source_that_fails_or_ends_is_restarted_counted_and_reported() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, mut changes) = mpsc::unbounded_channel();
        let consumers = consumers(flaky(2, calls.clone()), tx);
        let spec = serde_json::from_str(TEST_SPEC_JSON).expect("spec");
        consumers.sync("default", "orders", &spec, vec![desired()]).await;

        // Failed (error), restarted; ended (Ok), restarted; then it runs.
        let first = changes.recv().await.expect("reported");
        assert_eq!(first, desired().key);
        let unhealthy = consumers.unhealthy_of("default", "orders");
        if let [(function, Health::Restarting { restarts, error })] = unhealthy.as_slice() {
            assert_eq!((function.as_str(), *restarts), ("hello", 1));
            assert_eq!(error, "cannot connect");
        } // else it has already been restarted: the counts below still hold.
        tokio::time::timeout(Duration::from_secs(2), async {
            while calls.load(Ordering::SeqCst) < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("restarted twice");
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "a running source is not restarted");
        assert_eq!(consumers.runtime.metrics.consumer_restarts.get(), 2);
        assert!(consumers.unhealthy_of("default", "orders").is_empty(), "running again");
        consumers.stop_all(Duration::from_secs(1)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "a stopped consumer is not restarted");
    }

    #[tokio::test]
    async fn at_most_once_deliveries_still_in_flight_at_the_end_of_the_grace_are_counted_lost() {
        use tokio::io::AsyncReadExt;
        // A function that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                held.push(stream);
            }
        });
        let one_event: Source = Arc::new(|_ctx, sink: Sink, shutdown: CancellationToken| {
            Box::pin(async move {
                sink.send(crate::delivery::Event::new("x")).await;
                shutdown.cancelled().await;
                Ok(())
            })
        });
        let (tx, _changes) = mpsc::unbounded_channel();
        let consumers = consumers(one_event, tx);
        let spec = serde_json::from_str(TEST_SPEC_JSON).expect("spec");
        let mut d = desired();
        d.url = url;
        d.delivery = crate::delivery::DeliveryMode::AtMostOnce;
        d.timeout = Duration::from_secs(60);
        consumers.sync("default", "orders", &spec, vec![d]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        consumers.stop_all(Duration::from_millis(50)).await;
        assert_eq!(consumers.runtime.metrics.lost.get(), 1, "the hanging delivery is counted, not silent");
    }

    #[tokio::test]
    async fn a_source_that_panics_is_restarted_and_reported_like_a_failure() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let panicking: Source = Arc::new(move |_ctx, _sink, shutdown: CancellationToken| {
            let call = counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if call == 0 {
                    panic!("bad message");
                }
                shutdown.cancelled().await;
                Ok(())
            })
        });
        let (tx, mut changes) = mpsc::unbounded_channel();
        let consumers = consumers(panicking, tx);
        let spec = serde_json::from_str(TEST_SPEC_JSON).expect("spec");
        consumers.sync("default", "orders", &spec, vec![desired()]).await;
        changes.recv().await.expect("reported");
        tokio::time::timeout(Duration::from_secs(2), async {
            while calls.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("restarted after the panic");
        assert_eq!(consumers.runtime.metrics.consumer_restarts.get(), 1);
        consumers.stop_all(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_source_that_keeps_failing_stays_reported_until_it_stops() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, _changes) = mpsc::unbounded_channel();
        let consumers = consumers(flaky(usize::MAX, calls.clone()), tx);
        let spec = serde_json::from_str(TEST_SPEC_JSON).expect("spec");
        consumers.sync("default", "orders", &spec, vec![desired()]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(calls.load(Ordering::SeqCst) >= 3, "restarted with backoff");
        assert!(calls.load(Ordering::SeqCst) < 40, "the backoff holds restarts back");
        consumers.stop_all(Duration::from_secs(1)).await;
        let stopped_at = calls.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(calls.load(Ordering::SeqCst), stopped_at, "no restart after stop");
    }

    #[tokio::test]
    async fn a_reconcile_that_finishes_after_shutdown_starts_nothing() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, _changes) = mpsc::unbounded_channel();
        let consumers = consumers(flaky(0, calls.clone()), tx);
        let spec = serde_json::from_str(TEST_SPEC_JSON).expect("spec");
        consumers.stop_all(Duration::from_secs(1)).await;
        consumers.sync("default", "orders", &spec, vec![desired()]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(consumers.keys().is_empty(), "nothing runs after stop_all");
        assert_eq!(calls.load(Ordering::SeqCst), 0, "no source was started");
    }

    #[tokio::test]
    async fn a_stop_whose_reconcile_was_dropped_still_finishes_before_shutdown_ends() {
        let stopped = Arc::new(AtomicBool::new(false));
        let slow_to_stop: Source = {
            let stopped = stopped.clone();
            Arc::new(move |_ctx, _sink, shutdown: CancellationToken| {
                let stopped = stopped.clone();
                Box::pin(async move {
                    shutdown.cancelled().await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    stopped.store(true, Ordering::SeqCst);
                    Ok(())
                })
            })
        };
        let (tx, _changes) = mpsc::unbounded_channel();
        let consumers = Arc::new(consumers(slow_to_stop, tx));
        let spec: TriggerSpec = serde_json::from_str(TEST_SPEC_JSON).expect("spec");
        consumers.sync("default", "orders", &spec, vec![desired()]).await;
        // A reconcile that stops the consumer, dropped (as at shutdown) while it waits.
        let reconcile = {
            let (consumers, spec) = (consumers.clone(), spec.clone());
            tokio::spawn(async move { consumers.sync("default", "orders", &spec, Vec::new()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        reconcile.abort();
        consumers.stop_all(Duration::from_secs(1)).await;
        assert!(stopped.load(Ordering::SeqCst), "stop_all returned before the stop under way finished");
    }
}
