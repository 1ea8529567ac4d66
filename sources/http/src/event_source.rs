// {{ scaffolded }}
//! The HTTP source: every trigger becomes a `networking.k8s.io/v1` Ingress,
//! owned by the trigger, that routes `hostName`/`path` to the function's
//! Service on its port. Requests go from the gateway straight to the
//! function; the controller consumes nothing: the runtime calls
//! [`Ingresses::apply`] whenever the trigger, its function or the function's
//! Service changes.
//!
//! The Kubeless HTTP trigger's rules, on today's Ingress API: the gateway is
//! the Ingress's `ingressClassName`; nginx gets `rewrite-target: /`; the
//! trigger's own annotations are copied, then CORS, basic auth and ACME TLS
//! add theirs. Unlike the original, a changed trigger updates the
//! annotations too (server-side apply owns them all), and its error cases
//! (`tls` with `tlsSecret`, basic auth on kong) are the trigger's Ready
//! condition, not a log line. An Ingress of the same name that the trigger
//! did not create is reported (`ConflictingIngress`) and left alone; while the
//! function is missing the Ingress is deleted, and comes back with it.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
    IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};

use crate::apis::Trigger;
use crate::source::{EventSource, Objects, ObjectsError, Target};

/// What the runtime runs: [`Ingresses`], a source of objects.
pub fn source() -> EventSource {
    EventSource::objects(Ingresses)
}

/// The label the Kubeless triggers put on the objects they create.
const CREATED_BY: (&str, &str) = ("created-by", "kubeless");
/// Labels naming the trigger and the function of an Ingress.
const TRIGGER_LABEL: &str = "kubeless.io/trigger";
const FUNCTION_LABEL: &str = "kubeless.io/function";
/// Annotations of a trigger that are never copied to its Ingress: kubectl's
/// record of the trigger, and the runtime's own settings.
const NOT_COPIED: &[&str] = &["kubectl.kubernetes.io/", "kubeless.io/"];

/// Keeps one Ingress per trigger.
pub struct Ingresses;

impl Objects for Ingresses {
    fn apply<'a>(
        &'a self,
        client: &'a Client,
        trigger: &'a Trigger,
        targets: &'a [Target],
    ) -> BoxFuture<'a, Result<String, ObjectsError>> {
        Box::pin(apply(client, trigger, targets.first()))
    }
}

/// Create, update or delete the Ingress of `trigger` so that it routes to `target`.
pub async fn apply(
    client: &Client,
    trigger: &Trigger,
    target: Option<&Target>,
) -> Result<String, ObjectsError> {
    let ns = trigger
        .namespace()
        .ok_or_else(|| ObjectsError::new("MissingNamespace", "the trigger has no namespace"))?;
    let name = trigger.name_any();
    let api: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let existing = api.get_opt(&name).await?;
    if let Some(existing) = &existing {
        ensure_ours(existing, trigger)?;
    }
    let Some(target) = target else {
        if existing.is_none() {
            return Ok("no Ingress: there is no function to route to".to_owned());
        }
        // Only the object that was checked: not one created under the same name since.
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: existing.as_ref().and_then(|e| e.uid()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(format!("Ingress {name} deleted: there is no function to route to"));
    };
    let ingress = desired(trigger, target)?;
    api.patch(&name, &PatchParams::apply(crate::MANAGER).force(), &Patch::Apply(&ingress)).await?;
    Ok(format!("Ingress {name} routes {}{} to {}", trigger.spec.host_name, path_of(trigger), target.url))
}

/// Refuse an Ingress that this trigger does not control.
fn ensure_ours(existing: &Ingress, trigger: &Trigger) -> Result<(), ObjectsError> {
    // The owner reference with the trigger's UID is the proof; the
    // `created-by` label is put back by the next apply if someone removed it.
    let uid = trigger.uid();
    let controlled = existing
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref());
    if controlled {
        Ok(())
    } else {
        Err(ObjectsError::new(
            "ConflictingIngress",
            format!(
                "Ingress {} exists and was not created by this trigger; delete or rename it",
                existing.name_any()
            ),
        ))
    }
}

/// The Ingress path: the trigger's `path` with a leading `/`, or `/`.
fn path_of(trigger: &Trigger) -> String {
    match trigger.spec.path.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        Some(p) if p.starts_with('/') => p.to_owned(),
        Some(p) => format!("/{p}"),
        None => "/".to_owned(),
    }
}

/// The annotations of the Ingress, in the original's order: the gateway's,
/// the trigger's own (except [`NOT_COPIED`]), then CORS, basic auth and TLS.
pub fn annotations(trigger: &Trigger) -> Result<BTreeMap<String, String>, ObjectsError> {
    let spec = &trigger.spec;
    let nginx = spec.gateway == "nginx";
    let mut out = BTreeMap::new();
    let mut set = |key: &str, value: &str| {
        out.insert(key.to_owned(), value.to_owned());
    };
    if nginx {
        set("nginx.ingress.kubernetes.io/rewrite-target", "/");
    }
    for (key, value) in trigger.annotations() {
        if !NOT_COPIED.iter().any(|prefix| key.starts_with(prefix)) {
            set(key, value);
        }
    }
    if spec.cors_enable {
        let key = if nginx {
            "nginx.ingress.kubernetes.io/enable-cors"
        } else {
            "ingress.kubernetes.io/enable-cors"
        };
        set(key, "true");
    }
    if let Some(secret) = spec.basic_auth_secret.as_deref().filter(|s| !s.is_empty()) {
        let prefix = match spec.gateway.as_str() {
            "nginx" => "nginx.ingress.kubernetes.io",
            "traefik" => "ingress.kubernetes.io",
            other => {
                return Err(ObjectsError::new(
                    "BasicAuthUnsupported",
                    format!(
                        "basicAuthSecret is not supported with the {other} gateway; use nginx or traefik"
                    ),
                ));
            }
        };
        set(&format!("{prefix}/auth-secret"), secret);
        set(&format!("{prefix}/auth-type"), "basic");
    }
    if spec.tls {
        if spec.tls_secret.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(ObjectsError::new(
                "ConflictingTls",
                "set either tls (a certificate through ACME) or tlsSecret (an existing one), not both",
            ));
        }
        set("kubernetes.io/tls-acme", "true");
        if nginx {
            set("nginx.ingress.kubernetes.io/ssl-redirect", "true");
        }
    }
    Ok(out)
}

/// The Ingress that routes the trigger's host and path to `target`.
pub fn desired(trigger: &Trigger, target: &Target) -> Result<Ingress, ObjectsError> {
    let owner = trigger.controller_owner_ref(&()).ok_or_else(|| {
        ObjectsError::new("MissingUid", "the trigger has no UID yet, so nothing can be owned by it")
    })?;
    let service = target.function.name_any();
    let port = target.url.parse::<http::Uri>().ok().and_then(|u| u.port_u16()).ok_or_else(|| {
        ObjectsError::new("FunctionServiceUnavailable", format!("no port in {}", target.url))
    })?;
    let spec = &trigger.spec;
    let host = spec.host_name.clone();
    let secret_name = if spec.tls {
        Some(format!("{}-tls", trigger.name_any()))
    } else {
        spec.tls_secret.clone().filter(|s| !s.is_empty())
    };
    let labels = BTreeMap::from([
        (CREATED_BY.0.to_owned(), CREATED_BY.1.to_owned()),
        (TRIGGER_LABEL.to_owned(), trigger.name_any()),
        (FUNCTION_LABEL.to_owned(), service.clone()),
    ]);
    Ok(Ingress {
        metadata: ObjectMeta {
            name: Some(trigger.name_any()),
            namespace: trigger.namespace(),
            labels: Some(labels),
            annotations: Some(annotations(trigger)?),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: Some(spec.gateway.clone()),
            rules: Some(vec![IngressRule {
                host: Some(host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(path_of(trigger)),
                        path_type: "Prefix".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: service,
                                port: Some(ServiceBackendPort { number: Some(i32::from(port)), name: None }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            tls: secret_name
                .map(|secret| vec![IngressTLS { hosts: Some(vec![host]), secret_name: Some(secret) }]),
            default_backend: None,
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{Method, Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};

    use super::*;
    use crate::apis::{Function, TEST_SPEC_JSON, TriggerSpec};
    use crate::delivery::RetryPolicy;

    type ApiServer = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    const PATH: &str = "/apis/networking.k8s.io/v1/namespaces/default/ingresses/web";
    const UID: &str = "0b5c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3";

    fn trigger(edit: impl FnOnce(&mut TriggerSpec)) -> Trigger {
        let mut spec: TriggerSpec = serde_json::from_str(TEST_SPEC_JSON).expect("test spec");
        edit(&mut spec);
        let mut t = Trigger::new("web", spec);
        t.metadata.namespace = Some("default".into());
        t.metadata.uid = Some(UID.into());
        t
    }

    fn target() -> Target {
        let function: Function = serde_json::from_value(json!({
            "apiVersion": "kubeless.io/v1beta1", "kind": "Function",
            "metadata": { "name": "hello", "namespace": "default" },
            "spec": { "handler": "hello.handler", "runtime": "python3.9" }
        }))
        .expect("function");
        Target {
            function,
            url: "http://hello.default.svc.cluster.local:8080".into(),
            timeout: Duration::from_secs(185),
            retry: RetryPolicy::default(),
            dead_letter: None,
        }
    }

    fn mock() -> (Client, ApiServer) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(service, "default"), handle)
    }

    fn respond(json: &Value) -> Response<Body> {
        Response::builder().body(Body::from(serde_json::to_vec(json).expect("json"))).expect("response")
    }

    fn not_found() -> Response<Body> {
        let status = json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
            "message": "ingresses.networking.k8s.io \"web\" not found"
        });
        Response::builder().status(404).body(Body::from(status.to_string().into_bytes())).expect("response")
    }

    async fn body_of(req: Request<Body>) -> Value {
        let bytes = req.into_body().collect_bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("JSON body")
    }

    /// Writes the objects the tests produce for `kubernetes-validate` (the
    /// source's harness sets `OBJECTS_DIR`).
    fn record(name: &str, object: &Ingress) {
        if let Some(dir) = std::env::var_os("OBJECTS_DIR") {
            let yaml = serde_saphyr::to_string(object).expect("yaml");
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.yaml")), yaml).expect("write");
        }
    }

    #[test]
    fn every_gateway_tls_auth_and_cors_combination_gives_the_reviewed_ingress() {
        let mut checked = 0;
        for gateway in ["nginx", "traefik", "kong"] {
            for tls in ["none", "acme", "secret"] {
                for auth in [false, true] {
                    for cors in [false, true] {
                        let t = trigger(|s| {
                            s.gateway = gateway.into();
                            s.tls = tls == "acme";
                            s.tls_secret = (tls == "secret").then(|| "web-cert".into());
                            s.basic_auth_secret = auth.then(|| "web-users".into());
                            s.cors_enable = cors;
                        });
                        let built = desired(&t, &target());
                        if auth && gateway == "kong" {
                            assert_eq!(built.expect_err("refused").reason, "BasicAuthUnsupported");
                            continue;
                        }
                        let ingress = built.expect("an ingress");
                        record(&format!("{gateway}-{tls}-auth{auth}-cors{cors}"), &ingress);
                        let value = serde_json::to_value(&ingress).expect("json");
                        let annotations = value["metadata"]["annotations"].as_object().expect("annotations");
                        let has = |k: &str| annotations.get(k).and_then(Value::as_str);
                        assert_eq!(value["spec"]["ingressClassName"], gateway);
                        assert_eq!(
                            has("nginx.ingress.kubernetes.io/rewrite-target"),
                            (gateway == "nginx").then_some("/")
                        );
                        let cors_key = if gateway == "nginx" {
                            "nginx.ingress.kubernetes.io/enable-cors"
                        } else {
                            "ingress.kubernetes.io/enable-cors"
                        };
                        assert_eq!(has(cors_key), cors.then_some("true"), "{gateway} cors");
                        let auth_prefix = if gateway == "nginx" {
                            "nginx.ingress.kubernetes.io"
                        } else {
                            "ingress.kubernetes.io"
                        };
                        assert_eq!(has(&format!("{auth_prefix}/auth-secret")), auth.then_some("web-users"));
                        assert_eq!(has(&format!("{auth_prefix}/auth-type")), auth.then_some("basic"));
                        assert_eq!(has("kubernetes.io/tls-acme"), (tls == "acme").then_some("true"));
                        let secret = match tls {
                            "acme" => json!([{ "hosts": ["hello.example.com"], "secretName": "web-tls" }]),
                            "secret" => json!([{ "hosts": ["hello.example.com"], "secretName": "web-cert" }]),
                            _ => Value::Null,
                        };
                        assert_eq!(value["spec"]["tls"], secret, "{gateway} {tls}");
                        let acme = match tls {
                            "acme" if gateway == "nginx" => 2,
                            "acme" => 1,
                            _ => 0,
                        };
                        let expected = usize::from(gateway == "nginx")
                            + usize::from(cors)
                            + 2 * usize::from(auth)
                            + acme;
                        assert_eq!(annotations.len(), expected, "no other annotation: {annotations:?}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 3 * 3 * 4 - 3 * 2, "every combination but kong with basic auth");
    }

    #[test]
    fn the_rule_routes_the_host_and_path_to_the_service_port() {
        let ingress = desired(&trigger(|_| {}), &target()).expect("ingress");
        let value = serde_json::to_value(&ingress).expect("json");
        assert_eq!(value["apiVersion"], "networking.k8s.io/v1");
        assert_eq!(
            value["metadata"]["labels"],
            json!({
                "created-by": "kubeless", "kubeless.io/trigger": "web", "kubeless.io/function": "hello"
            })
        );
        assert_eq!(value["metadata"]["ownerReferences"][0]["uid"], UID);
        assert_eq!(value["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            value["spec"]["rules"],
            json!([{
                "host": "hello.example.com",
                "http": { "paths": [{
                    "path": "/hello", "pathType": "Prefix",
                    "backend": { "service": { "name": "hello", "port": { "number": 8080 } } }
                }] }
            }])
        );
        for (path, expected) in [(None, "/"), (Some(""), "/"), (Some("/a/b"), "/a/b"), (Some("a"), "/a")] {
            let t = trigger(|s| s.path = path.map(str::to_owned));
            assert_eq!(path_of(&t), expected);
        }
    }

    #[test]
    fn the_triggers_annotations_are_copied_but_not_kubectls_or_the_runtimes() {
        let mut t = trigger(|_| {});
        t.metadata.annotations = Some(BTreeMap::from([
            ("nginx.ingress.kubernetes.io/proxy-body-size".to_owned(), "8m".to_owned()),
            ("kubectl.kubernetes.io/last-applied-configuration".to_owned(), "{...}".to_owned()),
            ("kubeless.io/delivery".to_owned(), "at-most-once".to_owned()),
        ]));
        let annotations = annotations(&t).expect("annotations");
        assert_eq!(
            annotations.get("nginx.ingress.kubernetes.io/proxy-body-size").map(String::as_str),
            Some("8m")
        );
        assert!(!annotations.keys().any(|k| k.starts_with("kubectl.") || k.starts_with("kubeless.io/")));
    }

    #[test]
    fn tls_and_a_tls_secret_together_are_refused() {
        let t = trigger(|s| {
            s.tls = true;
            s.tls_secret = Some("web-cert".into());
        });
        assert_eq!(desired(&t, &target()).expect_err("refused").reason, "ConflictingTls");
    }

    #[tokio::test]
    async fn a_missing_ingress_is_created_and_a_changed_trigger_updates_its_annotations() {
        let (client, mut api) = mock();
        let ours = desired(&trigger(|_| {}), &target()).expect("ingress");
        let server = tokio::spawn(async move {
            let (req, send) = api.next_request().await.expect("get");
            assert_eq!((req.method(), req.uri().path()), (&Method::GET, PATH));
            send.send_response(not_found());
            let (req, send) = api.next_request().await.expect("apply");
            assert_eq!((req.method(), req.uri().path()), (&Method::PATCH, PATH));
            assert_eq!(req.headers()["content-type"], "application/apply-patch+yaml");
            let body = body_of(req).await;
            send.send_response(respond(&body));

            let (_, send) = api.next_request().await.expect("get again");
            send.send_response(respond(&serde_json::to_value(&ours).expect("json")));
            let (req, send) = api.next_request().await.expect("apply again");
            let body = body_of(req).await;
            assert_eq!(body["metadata"]["annotations"]["nginx.ingress.kubernetes.io/enable-cors"], "true");
            send.send_response(respond(&body));
        });
        let message = apply(&client, &trigger(|_| {}), Some(&target())).await.expect("created");
        assert_eq!(
            message,
            "Ingress web routes hello.example.com/hello to http://hello.default.svc.cluster.local:8080"
        );
        apply(&client, &trigger(|s| s.cors_enable = true), Some(&target())).await.expect("updated");
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
    }

    #[tokio::test]
    async fn an_ingress_the_trigger_did_not_create_is_never_adopted() {
        let (client, mut api) = mock();
        let server = tokio::spawn(async move {
            let (_, send) = api.next_request().await.expect("get");
            send.send_response(respond(&json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": { "name": "web", "namespace": "default", "labels": { "app": "shop" } },
                "spec": { "ingressClassName": "nginx" }
            })));
            assert!(api.next_request().await.is_none(), "nothing is written");
        });
        let error = apply(&client, &trigger(|_| {}), Some(&target())).await.expect_err("refused");
        assert_eq!(error.reason, "ConflictingIngress");
        drop(client);
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
    }

    #[tokio::test]
    async fn without_a_function_its_ingress_is_deleted() {
        let (client, mut api) = mock();
        let ours = desired(&trigger(|_| {}), &target()).expect("ingress");
        let server = tokio::spawn(async move {
            let (_, send) = api.next_request().await.expect("get");
            send.send_response(respond(&serde_json::to_value(&ours).expect("json")));
            let (req, send) = api.next_request().await.expect("delete");
            assert_eq!((req.method(), req.uri().path()), (&Method::DELETE, PATH));
            send.send_response(respond(
                &json!({ "apiVersion": "v1", "kind": "Status", "status": "Success" }),
            ));
        });
        let message = apply(&client, &trigger(|_| {}), None).await.expect("deleted");
        assert_eq!(message, "Ingress web deleted: there is no function to route to");
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
    }
}
