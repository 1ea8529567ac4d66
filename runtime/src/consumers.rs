//! Consumers: one running [`crate::event_source::consume`] per (trigger,
//! function). The controller tells [`Consumers::sync`] what should run; this
//! module starts what is new, restarts what changed and stops what is gone,
//! so a changed topic or selector never leaves an old consumer behind.
//! Stopping a consumer cancels its source, then lets its deliveries in flight
//! finish within a grace period.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::Recorder;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::apis::TriggerSpec;
use crate::delivery::{DeliveryMode, FailureReporter, RetryPolicy, Sink, SinkOptions};
use crate::event_source;
use crate::invoker::Invoker;
use crate::metrics::Metrics;

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
#[derive(Clone, Debug)]
pub struct ConsumerContext {
    pub key: ConsumerKey,
    /// See [`ConsumerKey::group`].
    pub group: String,
    /// The trigger's spec at the time the consumer started; a change restarts the consumer.
    pub spec: TriggerSpec,
    /// When events are acknowledged; sources without acknowledgements can ignore it.
    pub delivery: DeliveryMode,
}

/// A consumer that should be running.
#[derive(Clone, Debug)]
pub struct Desired {
    pub key: ConsumerKey,
    pub url: String,
    pub delivery: DeliveryMode,
    /// The trigger, for Kubernetes Events about failed deliveries.
    pub trigger: ObjectReference,
}

/// How consumers deliver, shared by all of them.
#[derive(Clone)]
pub struct Runtime {
    pub invoker: Invoker,
    pub retry: RetryPolicy,
    pub max_in_flight: usize,
    /// How long deliveries in flight may finish when a consumer stops.
    pub drain_grace: Duration,
    pub metrics: Metrics,
    /// Publishes delivery failures as Kubernetes Events (none in tests).
    pub recorder: Option<Recorder>,
}

struct Running {
    /// The spec, URL and delivery mode it was started with; any change means a restart.
    fingerprint: String,
    url: String,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    sink: Sink,
}

/// The consumers of this controller.
pub struct Consumers {
    runtime: Runtime,
    running: Mutex<HashMap<ConsumerKey, Running>>,
    started: AtomicU64,
}

impl Consumers {
    pub fn new(runtime: Runtime) -> Consumers {
        Consumers { runtime, running: Mutex::new(HashMap::new()), started: AtomicU64::new(0) }
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
                if running.contains_key(&d.key) {
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
        futures::future::join_all(
            stopping.into_iter().map(|(key, r)| async move { self.stop(&key, r).await }),
        )
        .await;
    }

    /// Stop everything (on shutdown): every source is cancelled at once, then
    /// deliveries in flight get `grace` to finish.
    pub async fn stop_all(&self, grace: Duration) {
        let stopping: Vec<(ConsumerKey, Running)> = self.lock().drain().collect();
        for (_, r) in &stopping {
            r.cancel.cancel();
        }
        let drains = stopping.into_iter().map(|(key, r)| async move {
            stop_source(&key, r.task).await;
            if !r.sink.drain(grace).await {
                warn!(group = %key.group(), "deliveries still in flight after {grace:?}; abandoned");
            }
        });
        futures::future::join_all(drains).await;
    }

    fn start(&self, d: &Desired, spec: TriggerSpec, fingerprint: String) -> Running {
        self.started.fetch_add(1, Ordering::Relaxed);
        let rt = &self.runtime;
        let options = SinkOptions { retry: rt.retry, mode: d.delivery, max_in_flight: rt.max_in_flight };
        let failures = rt.recorder.clone().map(|r| FailureReporter::new(r, d.trigger.clone()));
        let sink = Sink::new(d.url.clone(), rt.invoker.clone(), options, rt.metrics.clone(), failures);
        let cancel = CancellationToken::new();
        let context =
            ConsumerContext { key: d.key.clone(), group: d.key.group(), spec, delivery: d.delivery };
        let (key, token, source_sink) = (d.key.clone(), cancel.clone(), sink.clone());
        info!(group = %key.group(), url = %d.url, delivery = %d.delivery, "starting consumer");
        let task = tokio::spawn(async move {
            if let Err(e) = event_source::consume(context, source_sink, token).await {
                warn!(group = %key.group(), error = %e, "consumer stopped with an error");
            }
        });
        Running { fingerprint, url: d.url.clone(), cancel, task, sink }
    }

    async fn stop(&self, key: &ConsumerKey, r: Running) {
        info!(group = %key.group(), "stopping consumer");
        r.cancel.cancel();
        stop_source(key, r.task).await;
        if !r.sink.drain(self.runtime.drain_grace).await {
            warn!(group = %key.group(), "deliveries still in flight after {:?}; abandoned", self.runtime.drain_grace);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConsumerKey, Running>> {
        // A panic while holding the lock leaves the map consistent; keep going.
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn fingerprint(spec_json: &str, d: &Desired) -> String {
    format!("{} {} {spec_json}", d.url, d.delivery)
}

/// Wait for a cancelled source to return; abort it after a grace period.
async fn stop_source(key: &ConsumerKey, task: JoinHandle<()>) {
    let abort = task.abort_handle();
    if tokio::time::timeout(SOURCE_STOP_GRACE, task).await.is_err() {
        warn!(group = %key.group(), "event source did not stop within {SOURCE_STOP_GRACE:?}; aborting it");
        abort.abort();
    }
}
