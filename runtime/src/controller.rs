//! The controller: watches trigger objects and Kubeless functions,
//! keeps a finalizer on every trigger, and keeps one consumer running per
//! (trigger, matching function), or, for a source of objects, has the source
//! keep the trigger's objects in line.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::apis::TriggerSpec;
use crate::apis::{Function, Trigger, TriggerStatus};
use crate::config::{Config, FunctionUrl};
use crate::consumers::{self, ConsumerKey, Consumers, Desired, Runtime};
use crate::delivery::{DeliveryMode, RetryPolicy, publish_warning};
use crate::invoker::{
    DEFAULT_FUNCTION_TIMEOUT, Invoker, function_timeout, function_url as function_url_in_cluster,
};
use crate::metrics::Metrics;
use crate::policy::{self, DeadLetterTarget};
use crate::server::{self, Health};
use crate::source::{EventSource, Objects, Target};
use crate::{Error, Result, event_source};

pub use crate::{FINALIZER, MANAGER};
/// How soon a failed reconcile is retried.
const RETRY: Duration = Duration::from_secs(30);
/// Annotation that chooses a trigger's delivery mode (`at-least-once` or `at-most-once`).
pub const DELIVERY_ANNOTATION: &str = "kubeless.io/delivery";

/// How a trigger names its functions.
#[derive(Clone, Copy, Debug)]
pub enum FunctionRef<'a> {
    /// Every function whose labels match, in the trigger's namespace.
    Selector(&'a LabelSelector),
    /// One function, by name, in the trigger's namespace.
    Name(&'a str),
}

impl FunctionRef<'_> {
    /// Whether `function` (in the trigger's namespace) is one of these functions.
    pub fn matches(&self, function: &Function) -> bool {
        match self {
            FunctionRef::Selector(s) => {
                Selector::try_from((*s).clone()).is_ok_and(|sel| sel.matches(function.labels()))
            }
            FunctionRef::Name(name) => function.name_any() == *name,
        }
    }
}

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub consumers: Consumers,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub config: Config,
    /// Whether the stream source acknowledges the events of a trigger.
    acknowledges: fn(&TriggerSpec) -> bool,
    /// The source's objects, when it is a source of objects (no consumers run).
    objects: Option<Arc<dyn Objects>>,
    /// Consumers whose health changed; `run` reconciles their triggers.
    changed: Mutex<Option<UnboundedReceiver<ConsumerKey>>>,
}

impl Context {
    pub fn new(client: Client, config: Config) -> Context {
        Context::with_source(client, config, event_source::source())
    }

    /// A context for `source` (tests use their own).
    pub fn with_source(client: Client, config: Config, source: EventSource) -> Context {
        let (source, acknowledges, objects): (consumers::Source, fn(&TriggerSpec) -> bool, _) = match source {
            EventSource::Stream { consume, acknowledges } => (consume, acknowledges, None),
            EventSource::Objects(objects) => {
                (Arc::new(|_, _, _| Box::pin(async { Ok(()) })), |_| false, Some(objects))
            }
        };
        let recorder = Recorder::new(client.clone(), Reporter::from(MANAGER));
        let metrics = Metrics::new();
        let (changes, changed) = tokio::sync::mpsc::unbounded_channel();
        let consumers = Consumers::new(Runtime {
            source,
            restart: RetryPolicy {
                max_retries: 0,
                base: Duration::from_secs(1),
                max: Duration::from_secs(60),
                ..RetryPolicy::default()
            },
            changes: Some(changes),
            invoker: Invoker::new(config.request_timeout.unwrap_or(DEFAULT_FUNCTION_TIMEOUT)),
            max_in_flight: config.max_in_flight,
            drain_grace: config.shutdown_grace,
            metrics: metrics.clone(),
            recorder: Some(recorder.clone()),
            client: client.clone(),
        });
        Context {
            client,
            recorder,
            consumers,
            metrics,
            health: Arc::new(Health::default()),
            config,
            acknowledges,
            objects,
            changed: Mutex::new(Some(changed)),
        }
    }
}

/// Run the controller until SIGTERM or SIGINT, then stop every consumer and
/// let deliveries in flight finish within the shutdown grace period.
pub async fn run(client: Client, config: Config) -> Result<()> {
    let (triggers, functions): (Api<Trigger>, Api<Function>) = match &config.namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    // Fail fast with a clear error when the CRD is not installed.
    bounded(triggers.list(&ListParams::default().limit(1))).await?;

    let ctx = Arc::new(Context::new(client, config));
    let stop_server = CancellationToken::new();
    if ctx.config.metrics_port != 0 {
        let addr = SocketAddr::from(([0, 0, 0, 0], ctx.config.metrics_port));
        let serving = server::serve(addr, ctx.health.clone(), ctx.metrics.clone(), stop_server.clone());
        tokio::spawn(async move {
            if let Err(e) = serving.await {
                warn!(error = %e, "health and metrics server failed");
            }
        });
    }
    let controller = Controller::new(triggers, watcher::Config::default().any_semantic());
    let store = controller.store();
    let stop_background = CancellationToken::new();
    tokio::spawn(ready_when_synced(store.clone(), ctx.health.clone()));
    tokio::spawn(sweep_orphans(store.clone(), ctx.clone(), stop_background.clone()));
    let mapper = {
        let (store, ctx) = (store.clone(), ctx.clone());
        move |f: Function| triggers_for_function(&store, &ctx.consumers, &f)
    };
    let mut changed = ctx.changed.lock().unwrap_or_else(|p| p.into_inner()).take();
    let consumer_changes = futures::stream::poll_fn(move |cx| match changed.as_mut() {
        Some(changed) => changed.poll_recv(cx),
        None => std::task::Poll::Ready(None),
    })
    .map(|key: ConsumerKey| ObjectRef::new(&key.trigger).within(&key.namespace));
    let signalled = CancellationToken::new();
    tokio::spawn(cancel_on_signal(signalled.clone()));
    {
        // Not ready from the signal on: Services stop routing to a pod that is leaving.
        let (health, signalled) = (ctx.health.clone(), signalled.clone());
        tokio::spawn(async move {
            signalled.cancelled().await;
            health.set_ready(false);
        });
    }
    let reconciling = controller
        .watches(functions, watcher::Config::default(), mapper)
        .reconcile_on(consumer_changes)
        .graceful_shutdown_on(signalled.clone().cancelled_owned())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((trigger, _)) => info!(trigger = %trigger, "reconciled"),
                Err(e) => warn!(error = %e, "reconcile failed"),
            }
        });
    until_stopped(reconciling, &signalled, RECONCILE_STOP_GRACE).await;
    ctx.health.set_ready(false);
    stop_background.cancel();
    info!(grace = ?ctx.config.shutdown_grace, "shutting down: stopping consumers, draining deliveries");
    ctx.consumers.stop_all(ctx.config.shutdown_grace).await;
    stop_server.cancel();
    Ok(())
}

/// How long reconciles still running at SIGTERM may take before they are
/// abandoned: the pod's grace period (the jsonnet's
/// `terminationGracePeriodSeconds`) budgets 10 s beyond stopping the event
/// sources and draining deliveries, and this must fit in it.
const RECONCILE_STOP_GRACE: Duration = Duration::from_secs(5);

/// Cancel `signalled` on SIGTERM or SIGINT; a second one ends the process at
/// once (exit 130), for a person who will not wait for the drain.
async fn cancel_on_signal(signalled: CancellationToken) {
    #[cfg(unix)]
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => Some(term),
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; stopping on SIGINT only");
            None
        }
    };
    for received in 0.. {
        // A signal that cannot be listened for never arrives (no busy loop).
        let ctrl_c = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let name = match term.as_mut() {
            Some(term) => tokio::select! {
                Some(()) = term.recv() => "SIGTERM",
                () = ctrl_c => "SIGINT",
            },
            None => {
                ctrl_c.await;
                "SIGINT"
            }
        };
        #[cfg(not(unix))]
        let name = {
            ctrl_c.await;
            "SIGINT"
        };
        if received == 0 {
            info!("{name} received: shutting down");
            signalled.cancel();
        } else {
            warn!("{name} received again: exiting without waiting for the drain");
            std::process::exit(130);
        }
    }
}

/// Drive the controller until it ends. Once `signalled`, it takes no new
/// work and its reconciles in flight get `grace` to finish; then they are
/// dropped (kube-runtime aborts them), so the consumers can be stopped
/// within the pod's grace period whatever a reconcile waits for.
async fn until_stopped(controller: impl Future<Output = ()>, signalled: &CancellationToken, grace: Duration) {
    let abandon = async {
        signalled.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = controller => {}
        () = abandon => warn!("reconciles still running {grace:?} after the signal; abandoning them"),
    }
}

/// Turn `/readyz` ready once the trigger store has its first full list.
pub async fn ready_when_synced(store: Store<Trigger>, health: Arc<Health>) {
    if store.wait_until_ready().await.is_ok() {
        info!("trigger store synced; ready");
        health.set_ready(true);
    }
}

/// How often running consumers are checked against the trigger store.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Stop consumers whose trigger left the store. The controller never
/// reconciles an object that is gone, so with several replicas the ones that
/// did not run the trigger's cleanup would keep delivering without this.
async fn sweep_orphans(store: Store<Trigger>, ctx: Arc<Context>, stop: CancellationToken) {
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => ctx.consumers.retain_triggers(|ns, name| is_live(&store, ns, name)).await,
        }
    }
}

/// Whether trigger `ns/name` is in the store and not being deleted.
pub fn is_live(store: &Store<Trigger>, ns: &str, name: &str) -> bool {
    store.get(&ObjectRef::new(name).within(ns)).is_some_and(|t| t.metadata.deletion_timestamp.is_none())
}

/// The triggers a function event concerns: those in its namespace that name
/// it now, and those delivering to it (so a function relabelled out of a
/// selector stops receiving at once).
pub fn triggers_for_function(
    store: &Store<Trigger>,
    consumers: &Consumers,
    function: &Function,
) -> Vec<ObjectRef<Trigger>> {
    let ns = function.namespace().unwrap_or_default();
    let mut triggers: Vec<ObjectRef<Trigger>> = store
        .state()
        .into_iter()
        .filter(|t| t.namespace().as_deref() == Some(ns.as_str()) && t.spec.functions().matches(function))
        .map(|t| ObjectRef::from_obj(&*t))
        .collect();
    for trigger in consumers.triggers_delivering_to(&ns, &function.name_any()) {
        let reference = ObjectRef::new(&trigger).within(&ns);
        if !triggers.contains(&reference) {
            triggers.push(reference);
        }
    }
    triggers
}

/// Bring one trigger's consumers and status in line with its spec.
pub async fn reconcile(trigger: Arc<Trigger>, ctx: Arc<Context>) -> Result<Action> {
    let ns = trigger.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<Trigger> = Api::namespaced(ctx.client.clone(), &ns);
    let reconciling = finalizer(&api, FINALIZER, trigger, |event| async {
        match event {
            FinalizerEvent::Apply(t) => apply(t, ctx.clone()).await,
            FinalizerEvent::Cleanup(t) => cleanup(t, ctx.clone()).await,
        }
    });
    tokio::time::timeout(RECONCILE_TIMEOUT, reconciling)
        .await
        .map_err(|_| Error::ApiTimeout(RECONCILE_TIMEOUT))?
        .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Longest wait for one Kubernetes API call.
const API_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest reconcile, the finalizer's own API calls included.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(120);

/// A Kubernetes API call, bounded by [`API_TIMEOUT`]: a hung API server
/// fails the reconcile (retried later) instead of holding it forever.
async fn bounded<T>(call: impl Future<Output = kube::Result<T>>) -> Result<T> {
    tokio::time::timeout(API_TIMEOUT, call)
        .await
        .map_err(|_| Error::ApiTimeout(API_TIMEOUT))?
        .map_err(Error::Kube)
}

/// Retry failed reconciles after a pause.
pub fn error_policy(trigger: Arc<Trigger>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(trigger = %trigger.name_any(), error = %error, "reconcile failed; retrying in {RETRY:?}");
    Action::requeue(RETRY)
}

async fn apply(trigger: Arc<Trigger>, ctx: Arc<Context>) -> Result<Action> {
    if let Some(objects) = ctx.objects.clone() {
        return apply_objects(trigger, ctx, objects).await;
    }
    let ns = trigger.namespace().ok_or(Error::MissingNamespace)?;
    let name = trigger.name_any();
    let resolved = match resolve(&trigger, &ns, &ctx, Caller::Controller).await {
        Ok(resolved) => resolved,
        Err(e) => {
            // The functions could not be looked up at all. An API error is
            // transient: what runs keeps running. Anything else (an invalid
            // selector or annotation) is the trigger's own fault: stop.
            if !e.is_transient() {
                ctx.consumers.sync(&ns, &name, &trigger.spec, Vec::new()).await;
            }
            let functions = ctx.consumers.functions_of(&ns, &name);
            report(&ctx, &trigger, functions, ("", String::new()), vec![(e.reason(), e.to_string())], "")
                .await?;
            return Err(e);
        }
    };
    ctx.consumers.sync(&ns, &name, &trigger.spec, resolved.desired.clone()).await;

    let functions: Vec<String> = resolved.desired.iter().map(|d| d.key.function.clone()).collect();
    let mode = resolved.desired.first().map(|d| d.delivery);
    let mut problems: Vec<(&str, String)> =
        resolved.failures.iter().map(|e| (e.reason(), e.to_string())).collect();
    for (function, health) in ctx.consumers.unhealthy_of(&ns, &name) {
        if let consumers::Health::Restarting { restarts, error } = health {
            let problem =
                format!("function {function}: its event source stopped (restart {restarts}): {error}");
            problems.push(("ConsumerRestarting", problem));
        }
    }
    let summary = ready_message(&functions, mode);
    report(&ctx, &trigger, functions, ("Delivering", summary), problems, "not delivering: ").await
}

/// Have the source bring the trigger's objects in line with its resolved
/// functions, and say in the status what came of it. A function that is
/// missing is reported, never a reason to delete the trigger.
async fn apply_objects(
    trigger: Arc<Trigger>,
    ctx: Arc<Context>,
    objects: Arc<dyn Objects>,
) -> Result<Action> {
    let ns = trigger.namespace().ok_or(Error::MissingNamespace)?;
    let resolved = match resolve(&trigger, &ns, &ctx, Caller::Cluster).await {
        Ok(resolved) => resolved,
        Err(e) => {
            report(&ctx, &trigger, Vec::new(), ("", String::new()), vec![(e.reason(), e.to_string())], "")
                .await?;
            return Err(e);
        }
    };
    if let Some(e) = resolved.failures.iter().find(|e| e.is_transient()) {
        // A function's Service could not be looked up: the objects stay as
        // they are (no target is not the same as a missing function).
        let problem = (e.reason(), format!("objects left as they are: {e}"));
        let functions = resolved.functions.iter().map(|f| f.name_any()).collect();
        return report(&ctx, &trigger, functions, ("", String::new()), vec![problem], "").await;
    }
    let targets: Vec<Target> = resolved
        .desired
        .iter()
        .filter_map(|d| {
            let function = resolved.functions.iter().find(|f| f.name_any() == d.key.function)?;
            Some(Target {
                function: function.clone(),
                url: d.url.clone(),
                timeout: d.timeout,
                retry: d.retry,
                dead_letter: d.dead_letter.clone(),
            })
        })
        .collect();
    let functions: Vec<String> = targets.iter().map(|t| t.function.name_any()).collect();
    let applied = objects.apply(&ctx.client, &trigger, &targets).await.map_err(Error::Objects);
    let mut problems: Vec<(&'static str, String)> =
        resolved.failures.iter().map(|e| (e.reason(), e.to_string())).collect();
    if resolved.functions.is_empty() {
        let wanted = match trigger.spec.functions() {
            FunctionRef::Name(name) => format!("function {name} does not exist in namespace {ns}"),
            FunctionRef::Selector(_) => "no function matches the trigger's functionSelector".to_owned(),
        };
        problems.push(("FunctionNotFound", wanted));
    }
    let message = match &applied {
        Ok(message) => message.clone(),
        Err(e) => {
            problems.insert(0, (e.reason(), e.to_string()));
            String::new()
        }
    };
    let action = report(&ctx, &trigger, functions, ("Reconciled", message), problems, "").await?;
    applied?;
    Ok(action)
}

/// Say in the status what a reconcile came to: Ready `True` with `ok`'s
/// reason and message when there is no problem; else `False` with the first
/// problem's reason, the summary (when there is one), `prefix` and every
/// problem, and a Warning Event. Returns when to look again.
async fn report(
    ctx: &Context,
    trigger: &Trigger,
    functions: Vec<String>,
    (ok_reason, summary): (&str, String),
    problems: Vec<(&'static str, String)>,
    prefix: &str,
) -> Result<Action> {
    let condition = match problems.first() {
        None => ready_condition(trigger, "True", ok_reason, &summary),
        Some((reason, _)) => {
            let list = problems.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>().join("; ");
            let message = if summary.is_empty() { list } else { format!("{summary}; {prefix}{list}") };
            publish_warning(&ctx.recorder, trigger.object_ref(&()), "Reconcile", reason, message.clone());
            ready_condition(trigger, "False", reason, &message)
        }
    };
    write_status(ctx, trigger, functions, condition).await?;
    Ok(Action::requeue(if problems.is_empty() { ctx.config.requeue } else { RETRY }))
}

/// Write the trigger's status by server-side apply: every field is sent, so
/// an empty list clears the one written before.
async fn write_status(
    ctx: &Context,
    trigger: &Trigger,
    functions: Vec<String>,
    condition: Condition,
) -> Result<()> {
    let ns = trigger.namespace().ok_or(Error::MissingNamespace)?;
    let status = TriggerStatus {
        observed_generation: trigger.metadata.generation,
        functions,
        conditions: vec![condition],
    };
    let patch = json!({
        "apiVersion": Trigger::api_version(&()),
        "kind": Trigger::kind(&()),
        "status": status,
    });
    let api: Api<Trigger> = Api::namespaced(ctx.client.clone(), &ns);
    let params = PatchParams::apply(MANAGER).force();
    bounded(api.patch_status(&trigger.name_any(), &params, &Patch::Apply(patch))).await?;
    Ok(())
}

async fn cleanup(trigger: Arc<Trigger>, ctx: Arc<Context>) -> Result<Action> {
    let ns = trigger.namespace().ok_or(Error::MissingNamespace)?;
    ctx.consumers.stop_trigger(&ns, &trigger.name_any()).await;
    info!(trigger = %trigger.name_any(), namespace = %ns, "consumers stopped; removing finalizer");
    Ok(Action::await_change())
}

/// The delivery mode of a trigger: its annotation, else the controller's default.
pub fn delivery_mode(trigger: &Trigger, default: DeliveryMode) -> Result<DeliveryMode> {
    match trigger.annotations().get(DELIVERY_ANNOTATION) {
        None => Ok(default),
        Some(value) => value
            .parse()
            .map_err(|e| Error::Config(format!("annotation {DELIVERY_ANNOTATION}={value:?}: {e}"))),
    }
}

/// The mode a consumer really delivers in: a source without acknowledgements
/// cannot hold an event back until delivery, so it is at-most-once whatever
/// was asked, and says so.
pub fn effective_mode(requested: DeliveryMode, source_acknowledges: bool) -> DeliveryMode {
    if source_acknowledges { requested } else { DeliveryMode::AtMostOnce }
}

/// How a trigger's consumers deliver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub delivery: DeliveryMode,
    /// `REQUEST_TIMEOUT_SECONDS`, else each function's own timeout.
    pub timeout: Option<Duration>,
    /// The trigger's retries: its `spec.delivery` over the controller's defaults.
    pub retry: RetryPolicy,
    /// URL of the trigger's dead letter.
    pub dead_letter: Option<String>,
    /// `FUNCTION_URL_TEMPLATE` when this process posts to the functions;
    /// `None`: their Services' cluster DNS names.
    pub function_url: Option<FunctionUrl>,
}

/// Who posts events to a trigger's functions, which decides their address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// This process (stream sources): through `FUNCTION_URL_TEMPLATE` when set.
    Controller,
    /// Objects in the cluster (object sources): always the cluster DNS name.
    Cluster,
}

/// The address of `function`'s Service port: through the template, else cluster DNS.
fn address(function_url: Option<&FunctionUrl>, function: &str, ns: &str, port: u16) -> String {
    match function_url {
        Some(template) => template.of(function, ns, port),
        None => function_url_in_cluster(function, ns, port),
    }
}

/// What a trigger's functions resolved to: the consumers to run, and the
/// functions that cannot be served now, each with its reason.
#[derive(Debug, Default)]
pub struct Resolved {
    pub desired: Vec<Desired>,
    pub failures: Vec<Error>,
    /// The functions the trigger names, found or not served.
    pub functions: Vec<Function>,
}

/// Look up a trigger's functions and their Services, one by one.
async fn resolve(trigger: &Trigger, ns: &str, ctx: &Context, caller: Caller) -> Result<Resolved> {
    let function_url = match caller {
        Caller::Controller => ctx.config.function_url.clone(),
        Caller::Cluster => None,
    };
    let delivery =
        effective_mode(delivery_mode(trigger, ctx.config.delivery)?, (ctx.acknowledges)(&trigger.spec));
    let policy = trigger.spec.delivery.as_ref();
    let retry = policy::retry_policy(policy, ctx.config.retry).map_err(Error::Config)?;
    let dead_letter = policy::dead_letter(policy).map_err(Error::Config)?;
    let functions = matching_functions(trigger, ns, &ctx.client).await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let mut ports = Vec::with_capacity(functions.len());
    for function in &functions {
        ports.push(service_port(&services, &function.name_any()).await);
    }
    let mut unavailable = Vec::new();
    let dead_letter = match dead_letter {
        None => None,
        Some(DeadLetterTarget::Uri(uri)) => Some(uri),
        Some(DeadLetterTarget::Function(name)) => match service_port(&services, &name).await {
            Ok(port) => Some(address(function_url.as_ref(), &name, ns, port)),
            Err(e) => {
                // An API error keeps the dead letter the consumers use; a
                // Service that is gone or has no port means there is none.
                let last_known =
                    e.is_transient().then(|| ctx.consumers.dead_letter_of(ns, &trigger.name_any()));
                unavailable.push(Error::DeadLetterUnavailable {
                    message: e.to_string(),
                    transient: e.is_transient(),
                });
                last_known.flatten()
            }
        },
    };
    let settings =
        Settings { delivery, timeout: ctx.config.request_timeout, retry, dead_letter, function_url };
    let mut resolved = resolve_functions(trigger, ns, settings, functions.iter().zip(ports), &ctx.consumers);
    resolved.failures.extend(unavailable);
    resolved.functions = functions;
    Ok(resolved)
}

/// One consumer per function whose Service answered with a port. A function
/// whose Service lookup failed on an API error keeps its running consumer
/// (at its last known address); one whose Service is gone or has no port is
/// reported and gets none.
pub fn resolve_functions<'a>(
    trigger: &Trigger,
    ns: &str,
    settings: Settings,
    functions: impl IntoIterator<Item = (&'a Function, Result<u16>)>,
    running: &Consumers,
) -> Resolved {
    let mut resolved = Resolved::default();
    for (function, port) in functions {
        let fname = function.name_any();
        let key = ConsumerKey { namespace: ns.to_owned(), trigger: trigger.name_any(), function: fname };
        let url = match port {
            Ok(port) => address(settings.function_url.as_ref(), &key.function, ns, port),
            Err(e) => {
                let last_known = e.is_transient().then(|| running.url_of(&key)).flatten();
                resolved.failures.push(e);
                match last_known {
                    Some(url) => url,
                    None => continue,
                }
            }
        };
        let timeout = settings.timeout.unwrap_or_else(|| function_timeout(function));
        resolved.desired.push(Desired {
            url,
            key,
            delivery: settings.delivery,
            timeout,
            retry: settings.retry,
            dead_letter: settings.dead_letter.clone(),
            trigger: trigger.object_ref(&()),
        });
    }
    resolved
}

/// The functions in `ns` that the trigger names, sorted by name.
pub async fn matching_functions(trigger: &Trigger, ns: &str, client: &Client) -> Result<Vec<Function>> {
    let api: Api<Function> = Api::namespaced(client.clone(), ns);
    let mut functions = match trigger.spec.functions() {
        FunctionRef::Selector(selector) => {
            let selector = Selector::try_from(selector.clone()).map_err(Error::InvalidSelector)?;
            bounded(api.list(&ListParams::default().labels_from(&selector))).await?.items
        }
        FunctionRef::Name(name) => bounded(api.get_opt(name)).await?.into_iter().collect(),
    };
    functions.sort_by_key(|f| f.name_any());
    Ok(functions)
}

/// The first port of the function's Service, as Kubeless runtimes expose it.
async fn service_port(services: &Api<Service>, function: &str) -> Result<u16> {
    let unavailable = |reason| Error::ServicePort { function: function.to_owned(), reason };
    let service = bounded(services.get_opt(function)).await?.ok_or(unavailable("does not exist"))?;
    let port = service
        .spec
        .and_then(|s| s.ports)
        .and_then(|ports| ports.into_iter().next())
        .ok_or(unavailable("has no ports"))?
        .port;
    u16::try_from(port).map_err(|_| unavailable("has an invalid port"))
}

/// `delivering to 2 functions, at-most-once`: the guarantee is part of the status.
fn ready_message(functions: &[String], mode: Option<DeliveryMode>) -> String {
    match (functions.len(), mode) {
        (0, _) | (_, None) => "no function matches the trigger yet".to_owned(),
        (1, Some(mode)) => format!("delivering to 1 function, {mode}"),
        (n, Some(mode)) => format!("delivering to {n} functions, {mode}"),
    }
}

fn ready_condition(trigger: &Trigger, status: &str, reason: &str, message: &str) -> Condition {
    let unchanged = trigger
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.status == status);
    Condition {
        last_transition_time: unchanged
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(Timestamp::now())),
        message: message.to_owned(),
        observed_generation: trigger.metadata.generation,
        reason: reason.to_owned(),
        status: status.to_owned(),
        type_: "Ready".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::{TEST_SPEC_JSON, TriggerSpec};
    use http::{Method, Request, Response};
    use kube::client::Body;
    use serde_json::Value;

    type ApiServer = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    /// `/apis/<group>/<version>/namespaces/default/<plural>`.
    fn triggers_path() -> String {
        Trigger::url_path(&(), Some("default"))
    }

    fn mock_context() -> (Arc<Context>, ApiServer) {
        mock_context_with(Config::default())
    }

    fn mock_context_with(config: Config) -> (Arc<Context>, ApiServer) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        (Arc::new(Context::with_source(client, config, idle_stream())), handle)
    }

    /// A stream source that acknowledges and receives nothing: these tests
    /// run in every generated repository, whatever its own source.
    fn idle_stream() -> EventSource {
        async fn idle(
            _: crate::consumers::ConsumerContext,
            _: crate::delivery::Sink,
            stop: CancellationToken,
        ) -> Result<(), crate::source::SourceError> {
            stop.cancelled().await;
            Ok(())
        }
        EventSource::stream(idle, |_| true)
    }

    fn spec() -> TriggerSpec {
        serde_json::from_str(TEST_SPEC_JSON).expect("a valid test spec")
    }

    fn trigger() -> Trigger {
        let mut t = Trigger::new("orders", spec());
        t.metadata.namespace = Some("default".into());
        t.metadata.generation = Some(1);
        t
    }

    fn wanted(key: ConsumerKey, url: &str) -> Desired {
        Desired {
            key,
            url: url.into(),
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            dead_letter: None,
            delivery: DeliveryMode::AtLeastOnce,
            trigger: Default::default(),
        }
    }

    fn finalized(mut t: Trigger) -> Trigger {
        t.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
        t
    }

    fn respond(json: &Value) -> Response<Body> {
        Response::builder().body(Body::from(serde_json::to_vec(json).expect("json"))).expect("response")
    }

    async fn body_of(req: Request<Body>) -> Value {
        let bytes = req.into_body().collect_bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("JSON body")
    }

    fn function(name: &str) -> Value {
        json!({
            "apiVersion": "kubeless.io/v1beta1", "kind": "Function",
            "metadata": { "name": name, "namespace": "default", "labels": { "function": name } },
            "spec": { "handler": "hello.handler", "runtime": "python3.9" }
        })
    }

    fn service(name: &str, port: u16) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": name, "namespace": "default" },
            "spec": { "ports": [{ "port": port }] }
        })
    }

    /// Answer the request that looks up the trigger's functions: `hello`, or none.
    async fn expect_function_lookup_of(api: &mut ApiServer, found: bool) {
        let (req, send) = api.next_request().await.expect("function lookup");
        assert_eq!(req.method(), Method::GET);
        match trigger().spec.functions() {
            FunctionRef::Selector(_) => {
                assert_eq!(req.uri().path(), "/apis/kubeless.io/v1beta1/namespaces/default/functions");
                let query = req.uri().query().unwrap_or_default().to_owned();
                assert!(query.contains("labelSelector=function%3Dhello"), "query: {query}");
                let items = if found { vec![function("hello")] } else { Vec::new() };
                send.send_response(respond(&json!({
                    "apiVersion": "kubeless.io/v1beta1", "kind": "FunctionList",
                    "metadata": { "resourceVersion": "1" }, "items": items
                })));
            }
            FunctionRef::Name(_) => {
                assert_eq!(req.uri().path(), "/apis/kubeless.io/v1beta1/namespaces/default/functions/hello");
                if found {
                    send.send_response(respond(&function("hello")));
                } else {
                    send.send_response(not_found("functions", "hello"));
                }
            }
        }
    }

    async fn expect_function_lookup(api: &mut ApiServer) {
        expect_function_lookup_of(api, true).await;
    }

    fn not_found(resource: &str, name: &str) -> Response<Body> {
        let status = json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
            "message": format!("{resource} \"{name}\" not found")
        });
        Response::builder()
            .status(404)
            .body(Body::from(serde_json::to_vec(&status).expect("json")))
            .expect("response")
    }

    /// Answer the status patch, a server-side apply by this controller, and
    /// hand back its body.
    async fn expect_status_patch(api: &mut ApiServer) -> Value {
        let (req, send) = api.next_request().await.expect("status patch");
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(req.uri().path(), format!("{}/orders/status", triggers_path()));
        assert_eq!(req.headers()["content-type"], "application/apply-patch+yaml");
        let query = req.uri().query().unwrap_or_default().to_owned();
        assert!(
            query.contains(&format!("fieldManager={MANAGER}")) && query.contains("force=true"),
            "{query}"
        );
        let body = body_of(req).await;
        send.send_response(respond(&serde_json::to_value(finalized(trigger())).expect("json")));
        body
    }

    #[tokio::test]
    async fn new_trigger_gets_the_finalizer() {
        let (ctx, mut api) = mock_context();
        let server = tokio::spawn(async move {
            let (req, send) = api.next_request().await.expect("finalizer patch");
            assert_eq!(req.method(), Method::PATCH);
            assert_eq!(req.uri().path(), format!("{}/orders", triggers_path()));
            assert_eq!(req.headers()["content-type"], "application/json-patch+json");
            let patch = body_of(req).await;
            assert_eq!(
                patch[1],
                json!({ "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] })
            );
            send.send_response(respond(&serde_json::to_value(finalized(trigger())).expect("json")));
        });
        let action = reconcile(Arc::new(trigger()), ctx.clone()).await.expect("reconcile");
        assert_eq!(action, Action::await_change());
        assert!(ctx.consumers.keys().is_empty(), "nothing starts before the finalizer is in place");
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
    }

    #[tokio::test]
    async fn matching_function_gets_a_consumer_and_the_status_says_so() {
        let (ctx, mut api) = mock_context();
        let server = tokio::spawn(async move {
            expect_function_lookup(&mut api).await;
            let (req, send) = api.next_request().await.expect("service lookup");
            assert_eq!(req.uri().path(), "/api/v1/namespaces/default/services/hello");
            send.send_response(respond(&service("hello", 8080)));
            let body = expect_status_patch(&mut api).await;
            assert_eq!(body["kind"], Trigger::kind(&()).as_ref());
            assert_eq!(body["status"]["functions"], json!(["hello"]));
            assert_eq!(body["status"]["observedGeneration"], json!(1));
            assert_eq!(body["status"]["conditions"][0]["type"], "Ready");
            assert_eq!(body["status"]["conditions"][0]["status"], "True");
            assert_eq!(
                body["status"]["conditions"][0]["message"],
                format!("delivering to 1 function, {}", DeliveryMode::AtLeastOnce)
            );
        });
        let action = reconcile(Arc::new(finalized(trigger())), ctx.clone()).await.expect("reconcile");
        assert_eq!(action, Action::requeue(Config::default().requeue));
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
        let keys = ctx.consumers.keys();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].group(), "default.orders.hello");
        ctx.consumers.stop_all(Duration::from_secs(1)).await;
    }

    /// The (function, URL) targets of every call to an object source.
    type Calls = Arc<Mutex<Vec<Vec<(String, String)>>>>;

    /// An object source that records what it was asked and answers `result`.
    struct Recording {
        calls: Calls,
        result: std::result::Result<String, (&'static str, String)>,
    }

    impl Objects for Recording {
        fn apply<'a>(
            &'a self,
            _client: &'a Client,
            _trigger: &'a Trigger,
            targets: &'a [Target],
        ) -> futures::future::BoxFuture<'a, std::result::Result<String, crate::source::ObjectsError>>
        {
            let seen = targets.iter().map(|t| (t.function.name_any(), t.url.clone())).collect();
            self.calls.lock().expect("calls").push(seen);
            let result =
                self.result.clone().map_err(|(reason, m)| crate::source::ObjectsError::new(reason, m));
            Box::pin(async move { result })
        }
    }

    fn objects_context(
        result: std::result::Result<String, (&'static str, String)>,
    ) -> (Arc<Context>, ApiServer, Calls) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let source = EventSource::objects(Recording { calls: calls.clone(), result });
        let ctx = Context::with_source(Client::new(service, "default"), Config::default(), source);
        (Arc::new(ctx), handle, calls)
    }

    #[tokio::test]
    async fn an_object_source_gets_the_resolved_function_and_no_consumer_runs() {
        let (ctx, mut api, calls) = objects_context(Ok("CronJob orders calls hello".into()));
        let server = tokio::spawn(async move {
            expect_function_lookup(&mut api).await;
            let (req, send) = api.next_request().await.expect("service lookup");
            assert_eq!(req.uri().path(), "/api/v1/namespaces/default/services/hello");
            send.send_response(respond(&service("hello", 8080)));
            let body = expect_status_patch(&mut api).await;
            assert_eq!(body["status"]["functions"], json!(["hello"]));
            assert_eq!(body["status"]["conditions"][0]["status"], "True");
            assert_eq!(body["status"]["conditions"][0]["reason"], "Reconciled");
            assert_eq!(body["status"]["conditions"][0]["message"], "CronJob orders calls hello");
        });
        let action = reconcile(Arc::new(finalized(trigger())), ctx.clone()).await.expect("reconcile");
        assert_eq!(action, Action::requeue(Config::default().requeue));
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
        let calls = calls.lock().expect("calls").clone();
        assert_eq!(
            calls,
            [vec![("hello".to_owned(), "http://hello.default.svc.cluster.local:8080".to_owned())]]
        );
        assert!(ctx.consumers.keys().is_empty(), "an object source runs no consumer");
    }

    #[tokio::test]
    async fn a_missing_function_is_reported_and_the_source_told_there_is_none() {
        let (ctx, mut api, calls) = objects_context(Ok("CronJob orders suspended".into()));
        let server = tokio::spawn(async move {
            expect_function_lookup_of(&mut api, false).await;
            let (status, event) = expect_status_and_event(&mut api).await;
            let condition = &status["status"]["conditions"][0];
            assert_eq!(condition["status"], "False");
            assert_eq!(condition["reason"], "FunctionNotFound");
            let message = condition["message"].as_str().unwrap_or_default();
            assert!(message.starts_with("CronJob orders suspended; "), "{message}");
            assert_eq!(status["status"]["functions"], json!([]));
            assert_eq!(event["reason"], "FunctionNotFound");
        });
        let action = reconcile(Arc::new(finalized(trigger())), ctx.clone()).await.expect("reconcile");
        assert_eq!(action, Action::requeue(RETRY), "checked again soon");
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
        assert_eq!(calls.lock().expect("calls").clone(), [Vec::new()], "the source hears of no target");
    }

    #[tokio::test]
    async fn an_api_error_looking_up_a_service_leaves_the_objects_alone() {
        let (ctx, mut api, calls) = objects_context(Ok("unused".into()));
        let server = tokio::spawn(async move {
            expect_function_lookup(&mut api).await;
            let (_, send) = api.next_request().await.expect("service lookup");
            send.send_response(server_error());
            let (status, _event) = expect_status_and_event(&mut api).await;
            let condition = &status["status"]["conditions"][0];
            assert_eq!(condition["status"], "False");
            assert_eq!(condition["reason"], "KubernetesApiError");
        });
        let action = reconcile(Arc::new(finalized(trigger())), ctx.clone()).await.expect("reconcile");
        assert_eq!(action, Action::requeue(RETRY));
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
        assert!(calls.lock().expect("calls").is_empty(), "the source is not asked to remove anything");
    }

    #[tokio::test]
    async fn an_object_source_failure_is_the_ready_reason_and_an_event() {
        let refusal =
            ("ConflictingCronJob", "CronJob orders exists and was not created by this trigger".to_owned());
        let (ctx, mut api, _calls) = objects_context(Err(refusal));
        let server = tokio::spawn(async move {
            expect_function_lookup(&mut api).await;
            let (_, send) = api.next_request().await.expect("service lookup");
            send.send_response(respond(&service("hello", 8080)));
            let (status, event) = expect_status_and_event(&mut api).await;
            let condition = &status["status"]["conditions"][0];
            assert_eq!(condition["status"], "False");
            assert_eq!(condition["reason"], "ConflictingCronJob");
            assert_eq!(condition["message"], "CronJob orders exists and was not created by this trigger");
            assert_eq!(event["reason"], "ConflictingCronJob");
        });
        let error =
            reconcile(Arc::new(finalized(trigger())), ctx.clone()).await.expect_err("a failed reconcile");
        assert!(
            error.to_string().contains("ConflictingCronJob") || error.to_string().contains("not created"),
            "{error}"
        );
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
    }

    /// Answer the next two requests, a status apply and an Event (published
    /// in the background, so in either order), and hand back their bodies.
    async fn expect_status_and_event(api: &mut ApiServer) -> (Value, Value) {
        let (mut status, mut event) = (Value::Null, Value::Null);
        for _ in 0..2 {
            let (req, send) = api.next_request().await.expect("status apply or event");
            if req.uri().path().ends_with("/status") {
                status = body_of(req).await;
                send.send_response(respond(&serde_json::to_value(finalized(trigger())).expect("json")));
            } else {
                assert_eq!(req.method(), Method::POST);
                assert_eq!(req.uri().path(), "/apis/events.k8s.io/v1/namespaces/default/events");
                event = body_of(req).await;
                send.send_response(respond(&event));
            }
        }
        (status, event)
    }

    fn server_error() -> Response<Body> {
        let status = json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "InternalError",
            "code": 500, "message": "etcdserver: request timed out"
        });
        Response::builder()
            .status(500)
            .body(Body::from(serde_json::to_vec(&status).expect("json")))
            .expect("response")
    }

    #[tokio::test]
    async fn missing_service_is_reported_in_status_and_as_an_event() {
        let (ctx, mut api) = mock_context();
        let server = tokio::spawn(async move {
            expect_function_lookup(&mut api).await;
            let (_, send) = api.next_request().await.expect("service lookup");
            send.send_response(not_found("services", "hello"));
            let (body, event) = expect_status_and_event(&mut api).await;
            assert_eq!(body["status"]["conditions"][0]["status"], "False");
            assert_eq!(body["status"]["conditions"][0]["reason"], "FunctionServiceUnavailable");
            let message = body["status"]["conditions"][0]["message"].as_str().unwrap_or_default();
            assert!(message.contains("function hello: its Service does not exist"), "{message}");
            assert_eq!(body["status"]["functions"], json!([]), "no function is served");
            assert_eq!(event["type"], "Warning");
            assert_eq!(event["reason"], "FunctionServiceUnavailable");
        });
        let action = reconcile(Arc::new(finalized(trigger())), ctx.clone()).await.expect("reconcile");
        assert_eq!(action, Action::requeue(RETRY), "checked again soon");
        assert!(ctx.consumers.keys().is_empty());
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
    }

    #[tokio::test]
    async fn a_failing_event_source_shows_in_the_ready_condition() {
        let (mock, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let failing: consumers::Source =
            Arc::new(|_, _, _| Box::pin(async { Err("nats: invalid subject".into()) }));
        let source = EventSource::Stream { consume: failing, acknowledges: |_| true };
        let ctx = Arc::new(Context::with_source(Client::new(mock, "default"), Config::default(), source));
        let key =
            ConsumerKey { namespace: "default".into(), trigger: "orders".into(), function: "hello".into() };
        ctx.consumers.sync("default", "orders", &spec(), vec![wanted(key, "http://127.0.0.1:9")]).await;
        tokio::time::timeout(Duration::from_secs(1), async {
            while ctx.consumers.unhealthy_of("default", "orders").is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the failure is seen");
        let server = tokio::spawn(async move {
            expect_function_lookup(&mut api).await;
            let (_, send) = api.next_request().await.expect("service lookup");
            send.send_response(respond(&service("hello", 9)));
            let (body, event) = expect_status_and_event(&mut api).await;
            let condition = &body["status"]["conditions"][0];
            assert_eq!(condition["status"], "False");
            assert_eq!(condition["reason"], "ConsumerRestarting");
            let message = condition["message"].as_str().unwrap_or_default();
            assert!(message.contains("function hello: its event source stopped"), "{message}");
            assert!(message.contains("nats: invalid subject"), "{message}");
            assert_eq!(event["reason"], "ConsumerRestarting");
        });
        let t = Arc::new(finalized(trigger()));
        let action = reconcile(t, ctx.clone()).await.expect("reconcile");
        assert_eq!(action, Action::requeue(RETRY));
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
        ctx.consumers.stop_all(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_api_server_that_never_answers_cannot_hold_a_reconcile() {
        let (ctx, mut api) = mock_context();
        let key =
            ConsumerKey { namespace: "default".into(), trigger: "orders".into(), function: "hello".into() };
        ctx.consumers
            .sync("default", "orders", &spec(), vec![wanted(key.clone(), "http://127.0.0.1:9")])
            .await;
        let server = tokio::spawn(async move {
            let mut unanswered = Vec::new();
            while let Some((req, send)) = api.next_request().await {
                unanswered.push((req, send));
            }
        });
        let err = reconcile(Arc::new(finalized(trigger())), ctx.clone()).await.unwrap_err();
        assert!(err.to_string().contains("did not answer within 30s"), "{err}");
        assert_eq!(ctx.consumers.keys(), vec![key], "a slow API server stops nothing");
        server.abort();
        ctx.consumers.stop_all(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn the_delivery_policy_reaches_the_consumer_and_its_dead_letter_function_its_service() {
        let (ctx, mut api) = mock_context();
        let mut t = finalized(trigger());
        t.spec.delivery = Some(
            serde_json::from_value(
                json!({ "retry": 9, "backoffDelay": "PT1S", "deadLetter": { "function": "dlq" } }),
            )
            .expect("delivery"),
        );
        let server = tokio::spawn(async move {
            expect_function_lookup(&mut api).await;
            let (_, send) = api.next_request().await.expect("service lookup");
            send.send_response(respond(&service("hello", 8080)));
            let (req, send) = api.next_request().await.expect("dead letter service lookup");
            assert_eq!(req.uri().path(), "/api/v1/namespaces/default/services/dlq");
            send.send_response(respond(&service("dlq", 8081)));
            expect_status_patch(&mut api).await;
        });
        let t = Arc::new(t);
        let resolved = resolve(&t, "default", &ctx, Caller::Controller).await.expect("resolved");
        assert_eq!(resolved.desired.len(), 1);
        assert_eq!(resolved.desired[0].retry.max_retries, 9);
        assert_eq!(resolved.desired[0].retry.base, Duration::from_secs(1));
        assert_eq!(
            resolved.desired[0].dead_letter.as_deref(),
            Some("http://dlq.default.svc.cluster.local:8081")
        );
        write_status(&ctx, &t, Vec::new(), ready_condition(&t, "True", "Delivering", "test"))
            .await
            .expect("status");
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
    }

    #[tokio::test]
    async fn the_url_template_is_for_this_process_only_objects_get_cluster_addresses() {
        let template =
            "http://127.0.0.1:8001/api/v1/namespaces/{namespace}/services/{function}:{port}/proxy/";
        let config = Config {
            function_url: Some(FunctionUrl::parse(template).expect("template")),
            ..Config::default()
        };
        for (caller, hello, dlq) in [
            (
                Caller::Controller,
                "http://127.0.0.1:8001/api/v1/namespaces/default/services/hello:8080/proxy/",
                "http://127.0.0.1:8001/api/v1/namespaces/default/services/dlq:8081/proxy/",
            ),
            (
                Caller::Cluster,
                "http://hello.default.svc.cluster.local:8080",
                "http://dlq.default.svc.cluster.local:8081",
            ),
        ] {
            let (ctx, mut api) = mock_context_with(config.clone());
            let mut t = finalized(trigger());
            t.spec.delivery = Some(
                serde_json::from_value(json!({ "deadLetter": { "function": "dlq" } })).expect("delivery"),
            );
            let server = tokio::spawn(async move {
                expect_function_lookup(&mut api).await;
                let (_, send) = api.next_request().await.expect("service lookup");
                send.send_response(respond(&service("hello", 8080)));
                let (_, send) = api.next_request().await.expect("dead letter service lookup");
                send.send_response(respond(&service("dlq", 8081)));
            });
            let resolved = resolve(&t, "default", &ctx, caller).await.expect("resolved");
            assert_eq!(resolved.desired[0].url, hello, "{caller:?}");
            assert_eq!(resolved.desired[0].dead_letter.as_deref(), Some(dlq), "{caller:?}");
            tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
        }
    }

    #[tokio::test]
    async fn an_invalid_delivery_policy_is_the_triggers_fault() {
        let (ctx, _api) = mock_context();
        let mut t = trigger();
        t.spec.delivery = Some(
            serde_json::from_value(json!({ "deadLetter": { "function": "a", "uri": "http://b" } }))
                .expect("delivery"),
        );
        let err = resolve(&t, "default", &ctx, Caller::Controller).await.unwrap_err();
        assert_eq!(err.reason(), "InvalidConfiguration");
        assert!(err.to_string().contains("exactly one"), "{err}");
    }

    #[tokio::test]
    async fn one_function_without_a_service_does_not_stop_the_others() {
        let (ctx, _api) = mock_context();
        let t = trigger();
        let (hello, other): (Function, Function) = (
            serde_json::from_value(function("hello")).expect("function"),
            serde_json::from_value(function("other")).expect("function"),
        );
        let missing = Error::ServicePort { function: "other".into(), reason: "does not exist" };
        let resolved = resolve_functions(
            &t,
            "default",
            Settings::default(),
            [(&hello, Ok(8080)), (&other, Err(missing))],
            &ctx.consumers,
        );
        let served: Vec<&str> = resolved.desired.iter().map(|d| d.key.function.as_str()).collect();
        assert_eq!(served, ["hello"]);
        assert_eq!(resolved.desired[0].url, "http://hello.default.svc.cluster.local:8080");
        assert_eq!(resolved.desired[0].timeout, function_timeout(&hello), "the function's own timeout");
        assert_eq!(resolved.failures.len(), 1);
        assert!(resolved.failures[0].to_string().contains("other"), "{}", resolved.failures[0]);
    }

    #[tokio::test]
    async fn a_function_url_template_addresses_functions_from_outside_the_cluster() {
        let (ctx, _api) = mock_context();
        let t = trigger();
        let hello: Function = serde_json::from_value(function("hello")).expect("function");
        let template =
            "http://127.0.0.1:8001/api/v1/namespaces/{namespace}/services/{function}:{port}/proxy/";
        let settings = Settings {
            function_url: Some(FunctionUrl::parse(template).expect("template")),
            ..Settings::default()
        };
        let resolved = resolve_functions(&t, "team-a", settings, [(&hello, Ok(8080))], &ctx.consumers);
        assert_eq!(
            resolved.desired[0].url,
            "http://127.0.0.1:8001/api/v1/namespaces/team-a/services/hello:8080/proxy/"
        );
    }

    #[tokio::test]
    async fn an_api_error_on_a_service_keeps_its_running_consumer_at_its_last_address() {
        let (ctx, _api) = mock_context();
        let key =
            ConsumerKey { namespace: "default".into(), trigger: "orders".into(), function: "hello".into() };
        ctx.consumers.sync("default", "orders", &spec(), vec![wanted(key, "http://127.0.0.1:9")]).await;
        let hello: Function = serde_json::from_value(function("hello")).expect("function");
        let transient = Error::Kube(kube::Error::Service("connection reset".into()));
        let resolved = resolve_functions(
            &trigger(),
            "default",
            Settings::default(),
            [(&hello, Err(transient))],
            &ctx.consumers,
        );
        assert_eq!(resolved.desired.len(), 1, "the running consumer stays");
        assert_eq!(resolved.desired[0].url, "http://127.0.0.1:9");
        assert_eq!(resolved.failures.len(), 1, "and the error is reported");
        ctx.consumers.stop_all(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn an_api_error_while_looking_up_functions_never_stops_a_running_consumer() {
        let (ctx, mut api) = mock_context();
        let key =
            ConsumerKey { namespace: "default".into(), trigger: "orders".into(), function: "hello".into() };
        ctx.consumers
            .sync("default", "orders", &spec(), vec![wanted(key.clone(), "http://127.0.0.1:9")])
            .await;
        let server = tokio::spawn(async move {
            let (_, send) = api.next_request().await.expect("function lookup");
            send.send_response(server_error());
            let (body, event) = expect_status_and_event(&mut api).await;
            assert_eq!(body["status"]["conditions"][0]["status"], "False");
            assert_eq!(body["status"]["conditions"][0]["reason"], "KubernetesApiError");
            assert_eq!(body["status"]["functions"], json!(["hello"]), "still delivering");
            assert_eq!(event["reason"], "KubernetesApiError");
        });
        let err = reconcile(Arc::new(finalized(trigger())), ctx.clone()).await.unwrap_err();
        assert_eq!(err.reason(), "FinalizerError");
        assert_eq!(ctx.consumers.keys(), vec![key], "the consumer keeps running");
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
        ctx.consumers.stop_all(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_function_that_appears_gets_a_consumer_and_one_that_goes_away_loses_it() {
        let (ctx, mut api) = mock_context();
        let server = tokio::spawn(async move {
            expect_function_lookup_of(&mut api, false).await;
            let body = expect_status_patch(&mut api).await;
            assert_eq!(body["status"]["conditions"][0]["message"], "no function matches the trigger yet");
            expect_function_lookup_of(&mut api, true).await;
            let (_, send) = api.next_request().await.expect("service lookup");
            send.send_response(respond(&service("hello", 8080)));
            expect_status_patch(&mut api).await;
            expect_function_lookup_of(&mut api, false).await;
            let body = expect_status_patch(&mut api).await;
            assert_eq!(body["status"]["functions"], json!([]), "an empty list clears the old one");
        });
        let t = Arc::new(finalized(trigger()));
        reconcile(t.clone(), ctx.clone()).await.expect("no function yet");
        assert!(ctx.consumers.keys().is_empty());
        reconcile(t.clone(), ctx.clone()).await.expect("the function appeared");
        assert_eq!(ctx.consumers.keys().len(), 1);
        reconcile(t, ctx.clone()).await.expect("the function went away");
        assert!(ctx.consumers.keys().is_empty(), "its consumer stopped");
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
    }

    #[tokio::test]
    async fn deleting_a_trigger_stops_its_consumers_then_removes_the_finalizer() {
        let (ctx, mut api) = mock_context();
        let key =
            ConsumerKey { namespace: "default".into(), trigger: "orders".into(), function: "hello".into() };
        let desired = vec![wanted(key, "http://127.0.0.1:9")];
        ctx.consumers.sync("default", "orders", &spec(), desired).await;
        assert_eq!(ctx.consumers.keys().len(), 1);

        let mut deleted = finalized(trigger());
        deleted.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().expect("time")));
        let server = tokio::spawn(async move {
            let (req, send) = api.next_request().await.expect("finalizer removal");
            assert_eq!(req.method(), Method::PATCH);
            let patch = body_of(req).await;
            assert_eq!(patch[1], json!({ "op": "remove", "path": "/metadata/finalizers/0" }));
            send.send_response(respond(&serde_json::to_value(trigger()).expect("json")));
        });
        let action = reconcile(Arc::new(deleted), ctx.clone()).await.expect("cleanup");
        assert_eq!(action, Action::await_change());
        assert!(ctx.consumers.keys().is_empty(), "consumers stop before the finalizer goes");
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
    }

    #[tokio::test]
    async fn a_changed_spec_restarts_the_consumer_and_a_gone_function_stops_it() {
        let (ctx, _api) = mock_context();
        let key =
            ConsumerKey { namespace: "default".into(), trigger: "orders".into(), function: "hello".into() };
        let desired = vec![wanted(key.clone(), "http://127.0.0.1:9")];
        ctx.consumers.sync("default", "orders", &spec(), desired.clone()).await;
        ctx.consumers.sync("default", "orders", &spec(), desired.clone()).await;
        assert_eq!(ctx.consumers.started(), 1, "an unchanged trigger keeps its consumer");

        let changed = other_functions(&spec());
        ctx.consumers.sync("default", "orders", &changed, desired).await;
        assert_eq!(ctx.consumers.started(), 2, "a changed spec restarts the consumer");
        let moved = vec![wanted(key.clone(), "http://127.0.0.1:10")];
        ctx.consumers.sync("default", "orders", &changed, moved).await;
        assert_eq!(ctx.consumers.started(), 3, "a moved function restarts the consumer");
        assert_eq!(ctx.consumers.keys(), vec![key]);
        ctx.consumers.sync("default", "orders", &changed, Vec::new()).await;
        assert!(ctx.consumers.keys().is_empty());
    }

    /// `spec` naming its functions differently: the JSON names of the
    /// association fields are fixed by kubeless-trigger.
    fn other_functions(spec: &TriggerSpec) -> TriggerSpec {
        let mut json = serde_json::to_value(spec).expect("json");
        match spec.functions() {
            FunctionRef::Selector(_) => json["functionSelector"]["matchExpressions"] = json!([]),
            FunctionRef::Name(name) => json["functionName"] = json!(format!("{name}-v2")),
        }
        serde_json::from_value(json).expect("a valid changed spec")
    }

    #[test]
    fn the_delivery_annotation_overrides_the_default() {
        let mut t = trigger();
        assert_eq!(delivery_mode(&t, DeliveryMode::AtLeastOnce).unwrap(), DeliveryMode::AtLeastOnce);
        t.metadata.annotations = Some([(DELIVERY_ANNOTATION.to_owned(), "at-most-once".to_owned())].into());
        assert_eq!(delivery_mode(&t, DeliveryMode::AtLeastOnce).unwrap(), DeliveryMode::AtMostOnce);
        t.metadata.annotations = Some([(DELIVERY_ANNOTATION.to_owned(), "sometimes".to_owned())].into());
        let err = delivery_mode(&t, DeliveryMode::AtLeastOnce).unwrap_err();
        assert_eq!(err.reason(), "InvalidConfiguration");
    }

    #[tokio::test]
    async fn a_relabelled_function_still_reconciles_the_trigger_delivering_to_it() {
        let (ctx, _api) = mock_context();
        let (store, mut writer) = kube::runtime::reflector::store::<Trigger>();
        writer.apply_watcher_event(&watcher::Event::Apply(trigger()));
        let mut moved: Function = serde_json::from_value(function("hello")).expect("function");
        moved.metadata.labels = Some([("function".to_owned(), "other".to_owned())].into());
        let mut renamed = moved.clone();
        renamed.metadata.name = Some("hello-v2".into());
        if !trigger().spec.functions().matches(&renamed) {
            assert!(triggers_for_function(&store, &ctx.consumers, &renamed).is_empty());
        }
        let key =
            ConsumerKey { namespace: "default".into(), trigger: "orders".into(), function: "hello".into() };
        ctx.consumers.sync("default", "orders", &spec(), vec![wanted(key, "http://127.0.0.1:9")]).await;
        let triggers = triggers_for_function(&store, &ctx.consumers, &moved);
        assert_eq!(triggers, vec![ObjectRef::new("orders").within("default")]);
        ctx.consumers.stop_all(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn consumers_of_triggers_gone_from_the_store_are_swept() {
        let (ctx, _api) = mock_context();
        let (store, mut writer) = kube::runtime::reflector::store::<Trigger>();
        writer.apply_watcher_event(&watcher::Event::Apply(trigger()));
        let kept =
            ConsumerKey { namespace: "default".into(), trigger: "orders".into(), function: "hello".into() };
        let orphan =
            ConsumerKey { namespace: "default".into(), trigger: "deleted".into(), function: "hello".into() };
        ctx.consumers
            .sync("default", "orders", &spec(), vec![wanted(kept.clone(), "http://127.0.0.1:9")])
            .await;
        ctx.consumers.sync("default", "deleted", &spec(), vec![wanted(orphan, "http://127.0.0.1:9")]).await;
        ctx.consumers.retain_triggers(|ns, name| is_live(&store, ns, name)).await;
        assert_eq!(ctx.consumers.keys(), vec![kept]);

        let mut deleting = trigger();
        deleting.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().expect("time")));
        writer.apply_watcher_event(&watcher::Event::Apply(deleting));
        ctx.consumers.retain_triggers(|ns, name| is_live(&store, ns, name)).await;
        assert!(ctx.consumers.keys().is_empty(), "a trigger being deleted keeps no consumer");
    }

    #[tokio::test]
    async fn ready_only_once_the_trigger_store_has_synced() {
        let (store, mut writer) = kube::runtime::reflector::store::<Trigger>();
        let health = Arc::new(Health::default());
        let waiting = tokio::spawn(ready_when_synced(store, health.clone()));
        writer.apply_watcher_event(&watcher::Event::Init);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!health.is_ready(), "not ready during the initial list");
        writer.apply_watcher_event(&watcher::Event::InitApply(trigger()));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        tokio::time::timeout(Duration::from_secs(1), waiting).await.expect("ready in time").expect("join");
        assert!(health.is_ready());
    }

    #[test]
    fn a_source_without_acknowledgements_is_at_most_once_whatever_was_asked() {
        assert_eq!(effective_mode(DeliveryMode::AtLeastOnce, true), DeliveryMode::AtLeastOnce);
        assert_eq!(effective_mode(DeliveryMode::AtMostOnce, true), DeliveryMode::AtMostOnce);
        assert_eq!(effective_mode(DeliveryMode::AtLeastOnce, false), DeliveryMode::AtMostOnce);
    }

    #[test]
    fn function_events_map_to_the_triggers_that_name_them() {
        let hello: Function = serde_json::from_value(function("hello")).expect("function");
        let other: Function = serde_json::from_value(function("other")).expect("function");
        let t = trigger();
        assert!(t.spec.functions().matches(&hello));
        assert!(!t.spec.functions().matches(&other));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_stuck_at_shutdown_is_abandoned_after_the_grace() {
        let signalled = CancellationToken::new();
        let started = tokio::time::Instant::now();
        signalled.cancel();
        until_stopped(std::future::pending::<()>(), &signalled, RECONCILE_STOP_GRACE).await;
        assert_eq!(
            started.elapsed(),
            RECONCILE_STOP_GRACE,
            "waited exactly the grace, not for the reconcile"
        );

        // Without a signal, the controller ending is the end.
        let quiet = CancellationToken::new();
        let started = tokio::time::Instant::now();
        until_stopped(tokio::time::sleep(Duration::from_secs(1)), &quiet, RECONCILE_STOP_GRACE).await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }
}
