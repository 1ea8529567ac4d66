//! The controller: watches trigger objects and Kubeless functions,
//! keeps a finalizer on every trigger, and keeps one consumer running per
//! (trigger, matching function).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::apis::{Function, Trigger, TriggerStatus};
use crate::config::Config;
use crate::consumers::{ConsumerKey, Consumers, Desired, Runtime};
use crate::delivery::DeliveryMode;
use crate::invoker::{Invoker, function_url};
use crate::metrics::Metrics;
use crate::server::{self, Health};
use crate::{Error, Result};

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
}

impl Context {
    pub fn new(client: Client, config: Config) -> Context {
        let recorder = Recorder::new(client.clone(), Reporter::from(MANAGER));
        let metrics = Metrics::new();
        let consumers = Consumers::new(Runtime {
            invoker: Invoker::new(config.request_timeout),
            retry: config.retry,
            max_in_flight: config.max_in_flight,
            drain_grace: config.shutdown_grace,
            metrics: metrics.clone(),
            recorder: Some(recorder.clone()),
        });
        Context { client, recorder, consumers, metrics, health: Arc::new(Health::default()), config }
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
    triggers.list(&ListParams::default().limit(1)).await.map_err(Error::Kube)?;

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
    ctx.health.set_ready(true);
    let controller = Controller::new(triggers, watcher::Config::default().any_semantic());
    let store = controller.store();
    controller
        .watches(functions, watcher::Config::default(), move |f| triggers_for_function(&store, &f))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((trigger, _)) => info!(trigger = %trigger, "reconciled"),
                Err(e) => warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
    ctx.health.set_ready(false);
    info!(grace = ?ctx.config.shutdown_grace, "shutting down: stopping consumers, draining deliveries");
    ctx.consumers.stop_all(ctx.config.shutdown_grace).await;
    stop_server.cancel();
    Ok(())
}

/// The triggers a function event concerns: those in its namespace that name it.
pub fn triggers_for_function(store: &Store<Trigger>, function: &Function) -> Vec<ObjectRef<Trigger>> {
    store
        .state()
        .into_iter()
        .filter(|t| t.namespace() == function.namespace() && t.spec.functions().matches(function))
        .map(|t| ObjectRef::from_obj(&*t))
        .collect()
}

/// Bring one trigger's consumers and status in line with its spec.
pub async fn reconcile(trigger: Arc<Trigger>, ctx: Arc<Context>) -> Result<Action> {
    let ns = trigger.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<Trigger> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, trigger, |event| async {
        match event {
            FinalizerEvent::Apply(t) => apply(t, ctx.clone()).await,
            FinalizerEvent::Cleanup(t) => cleanup(t, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Retry failed reconciles after a pause.
pub fn error_policy(trigger: Arc<Trigger>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(trigger = %trigger.name_any(), error = %error, "reconcile failed; retrying in {RETRY:?}");
    Action::requeue(RETRY)
}

async fn apply(trigger: Arc<Trigger>, ctx: Arc<Context>) -> Result<Action> {
    let ns = trigger.namespace().ok_or(Error::MissingNamespace)?;
    let name = trigger.name_any();
    let result = desired_consumers(&trigger, &ns, &ctx.client, ctx.config.delivery).await;
    let (desired, condition) = match &result {
        Ok(desired) => {
            (desired.clone(), ready_condition(&trigger, "True", "Delivering", &ready_message(desired)))
        }
        Err(e) => (Vec::new(), ready_condition(&trigger, "False", e.reason(), &e.to_string())),
    };
    ctx.consumers.sync(&ns, &name, &trigger.spec, desired.clone()).await;

    let status = TriggerStatus {
        observed_generation: trigger.metadata.generation,
        functions: desired.iter().map(|d| d.key.function.clone()).collect(),
        conditions: vec![condition],
    };
    let api: Api<Trigger> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
        .await
        .map_err(Error::Kube)?;
    match result {
        Ok(_) => Ok(Action::requeue(ctx.config.requeue)),
        Err(e) => {
            publish(&ctx, &trigger, EventType::Warning, e.reason(), e.to_string()).await;
            Err(e)
        }
    }
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

/// The consumers a trigger should have: one per matching function, each
/// with the URL of the function's Service.
pub async fn desired_consumers(
    trigger: &Trigger,
    ns: &str,
    client: &Client,
    default_delivery: DeliveryMode,
) -> Result<Vec<Desired>> {
    let delivery = delivery_mode(trigger, default_delivery)?;
    let functions = matching_functions(trigger, ns, client).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let mut desired = Vec::with_capacity(functions.len());
    for function in functions {
        let fname = function.name_any();
        let port = service_port(&services, &fname).await?;
        desired.push(Desired {
            url: function_url(&fname, ns, port),
            key: ConsumerKey { namespace: ns.to_owned(), trigger: trigger.name_any(), function: fname },
            delivery,
            trigger: trigger.object_ref(&()),
        });
    }
    Ok(desired)
}

/// The functions in `ns` that the trigger names, sorted by name.
pub async fn matching_functions(trigger: &Trigger, ns: &str, client: &Client) -> Result<Vec<Function>> {
    let api: Api<Function> = Api::namespaced(client.clone(), ns);
    let mut functions = match trigger.spec.functions() {
        FunctionRef::Selector(selector) => {
            let selector = Selector::try_from(selector.clone()).map_err(Error::InvalidSelector)?;
            api.list(&ListParams::default().labels_from(&selector)).await.map_err(Error::Kube)?.items
        }
        FunctionRef::Name(name) => api.get_opt(name).await.map_err(Error::Kube)?.into_iter().collect(),
    };
    functions.sort_by_key(|f| f.name_any());
    Ok(functions)
}

/// The first port of the function's Service, as Kubeless runtimes expose it.
async fn service_port(services: &Api<Service>, function: &str) -> Result<u16> {
    let unavailable = |reason| Error::ServicePort { function: function.to_owned(), reason };
    let service =
        services.get_opt(function).await.map_err(Error::Kube)?.ok_or(unavailable("does not exist"))?;
    let port = service
        .spec
        .and_then(|s| s.ports)
        .and_then(|ports| ports.into_iter().next())
        .ok_or(unavailable("has no ports"))?
        .port;
    u16::try_from(port).map_err(|_| unavailable("has an invalid port"))
}

fn ready_message(desired: &[Desired]) -> String {
    match desired.len() {
        0 => "no function matches the trigger yet".to_owned(),
        1 => "delivering to 1 function".to_owned(),
        n => format!("delivering to {n} functions"),
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

async fn publish(ctx: &Context, trigger: &Trigger, type_: EventType, reason: &str, note: String) {
    let event = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &trigger.object_ref(&())).await {
        warn!(error = %e, "could not publish a Kubernetes Event");
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
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        (Arc::new(Context::new(client, Config::default())), handle)
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
        Desired { key, url: url.into(), delivery: DeliveryMode::AtLeastOnce, trigger: Default::default() }
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

    /// Answer the status patch and hand back its body.
    async fn expect_status_patch(api: &mut ApiServer) -> Value {
        let (req, send) = api.next_request().await.expect("status patch");
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(req.uri().path(), format!("{}/orders/status", triggers_path()));
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
            let (req, send) = api.next_request().await.expect("status patch");
            assert_eq!(req.method(), Method::PATCH);
            assert_eq!(req.uri().path(), format!("{}/orders/status", triggers_path()));
            let body = body_of(req).await;
            assert_eq!(body["status"]["functions"], json!(["hello"]));
            assert_eq!(body["status"]["observedGeneration"], json!(1));
            assert_eq!(body["status"]["conditions"][0]["type"], "Ready");
            assert_eq!(body["status"]["conditions"][0]["status"], "True");
            send.send_response(respond(&serde_json::to_value(finalized(trigger())).expect("json")));
        });
        let action = reconcile(Arc::new(finalized(trigger())), ctx.clone()).await.expect("reconcile");
        assert_eq!(action, Action::requeue(Config::default().requeue));
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
        let keys = ctx.consumers.keys();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].group(), "default.orders.hello");
        ctx.consumers.stop_all(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn missing_service_is_reported_in_status_and_as_an_event() {
        let (ctx, mut api) = mock_context();
        let server = tokio::spawn(async move {
            expect_function_lookup(&mut api).await;
            let (_, send) = api.next_request().await.expect("service lookup");
            send.send_response(not_found("services", "hello"));
            let (req, send) = api.next_request().await.expect("status patch");
            let body = body_of(req).await;
            assert_eq!(body["status"]["conditions"][0]["status"], "False");
            assert_eq!(body["status"]["conditions"][0]["reason"], "FunctionServiceUnavailable");
            assert_eq!(body["status"]["functions"], Value::Null, "no function is served");
            send.send_response(respond(&serde_json::to_value(finalized(trigger())).expect("json")));
            let (req, send) = api.next_request().await.expect("event");
            assert_eq!(req.method(), Method::POST);
            assert_eq!(req.uri().path(), "/apis/events.k8s.io/v1/namespaces/default/events");
            let event = body_of(req).await;
            assert_eq!(event["type"], "Warning");
            assert_eq!(event["reason"], "FunctionServiceUnavailable");
            send.send_response(respond(&event));
        });
        let err = reconcile(Arc::new(finalized(trigger())), ctx.clone()).await.unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(ctx.consumers.keys().is_empty());
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
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
            assert_eq!(body["status"]["functions"], Value::Null, "no function any more");
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

    #[test]
    fn function_events_map_to_the_triggers_that_name_them() {
        let hello: Function = serde_json::from_value(function("hello")).expect("function");
        let other: Function = serde_json::from_value(function("other")).expect("function");
        let t = trigger();
        assert!(t.spec.functions().matches(&hello));
        assert!(!t.spec.functions().matches(&other));
    }
}
