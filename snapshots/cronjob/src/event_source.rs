// Scaffolded by kubeless-trigger, then yours: edit freely, `kubeless-trigger` never rewrites this file.
//! The CronJob source: every trigger becomes a `batch/v1` CronJob, owned by
//! the trigger, that runs this controller's own image on the trigger's
//! schedule. Each run sends one event to the function with
//! `send-event` (see `crate::send`): the same headers, timeouts, retries and
//! dead letter as every other delivery, and the pod's UID as `event-id`. The
//! controller itself consumes nothing: the runtime calls [`CronJobs::apply`]
//! whenever the trigger or its function changes.
//!
//! As the Kubeless CronJob trigger did, the source never takes over a CronJob
//! it did not create: one of the same name that is not controlled by the
//! trigger is reported (`ConflictingCronJob`) and left alone. When the
//! function goes away, the CronJob is deleted (it would call nothing) and the
//! trigger says why; it comes back with the function.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, LocalObjectReference, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};

use crate::apis::Trigger;
use crate::send::SendArgs;
use crate::source::{EventSource, Objects, ObjectsError, Target};

/// What the runtime runs: [`CronJobs`], a source of objects.
pub fn source() -> EventSource {
    EventSource::objects(CronJobs)
}

/// `event-namespace` of the events, as the Kubeless CronJob trigger spelled it.
pub const EVENT_NAMESPACE: &str = "cronjobtrigger.kubeless.io";
/// The label the Kubeless CronJob trigger put on its CronJobs.
const CREATED_BY: (&str, &str) = ("created-by", "kubeless");
/// Labels naming the trigger and the function of a CronJob and its pods
/// (never `function`: Kubeless Services select a function's pods by it).
const TRIGGER_LABEL: &str = "kubeless.io/trigger";
const FUNCTION_LABEL: &str = "kubeless.io/function";
/// Longest CronJob name: its Jobs append 11 characters and must stay 63-character labels.
const MAX_NAME: usize = 52;
/// The pod's `event-id`: Kubernetes expands `$(POD_UID)` in container arguments.
const POD_UID: &str = "$(POD_UID)";
/// Time for the pod to start before its first attempt, added to the Job's deadline.
const START_MARGIN_SECONDS: i64 = 30;
/// Environment variable holding this controller's image, which the CronJob runs.
pub const IMAGE_ENV: &str = "CONTROLLER_IMAGE";
/// Environment variable naming the Secrets (comma-separated) the CronJob's
/// pods pull that image with, from a private registry.
pub const PULL_SECRETS_ENV: &str = "IMAGE_PULL_SECRETS";
/// Longest container argument: Linux refuses one over 128 KiB
/// (`MAX_ARG_STRLEN`), and the payload is one.
const MAX_ARG: usize = 120 * 1024;

/// Keeps one CronJob per trigger.
pub struct CronJobs;

/// The image the CronJob's pods run, and how they pull it.
#[derive(Clone, Debug, Default)]
pub struct PodImage {
    pub image: String,
    /// Names of Secrets in the trigger's namespace.
    pub pull_secrets: Vec<String>,
}

impl Objects for CronJobs {
    fn apply<'a>(
        &'a self,
        client: &'a Client,
        trigger: &'a Trigger,
        targets: &'a [Target],
    ) -> BoxFuture<'a, Result<String, ObjectsError>> {
        Box::pin(async move {
            let image = std::env::var(IMAGE_ENV).ok().filter(|i| !i.trim().is_empty()).ok_or_else(|| {
                ObjectsError::new(
                    "ControllerImageUnknown",
                    format!("{IMAGE_ENV} is not set: the CronJob runs the controller's own image"),
                )
            })?;
            let pull_secrets = std::env::var(PULL_SECRETS_ENV)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            apply(client, trigger, targets.first(), &PodImage { image, pull_secrets }).await
        })
    }
}

/// Create, update or delete the CronJob of `trigger` so that it calls `target`.
pub async fn apply(
    client: &Client,
    trigger: &Trigger,
    target: Option<&Target>,
    image: &PodImage,
) -> Result<String, ObjectsError> {
    let ns = trigger
        .namespace()
        .ok_or_else(|| ObjectsError::new("MissingNamespace", "the trigger has no namespace"))?;
    let name = cronjob_name(trigger)?;
    let api: Api<CronJob> = Api::namespaced(client.clone(), &ns);
    let existing = api.get_opt(&name).await?;
    if let Some(existing) = &existing {
        ensure_ours(existing, trigger)?;
    }
    let Some(target) = target else {
        if existing.is_none() {
            return Ok("no CronJob: there is no function to call".to_owned());
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
        return Ok(format!("CronJob {name} deleted: there is no function to call"));
    };
    let cronjob = desired(trigger, &name, target, image)?;
    api.patch(&name, &PatchParams::apply(crate::MANAGER).force(), &Patch::Apply(&cronjob)).await?;
    Ok(format!("CronJob {name} calls {} on schedule {:?}", target.function.name_any(), trigger.spec.schedule))
}

/// The CronJob's name: the trigger's, which must fit.
pub fn cronjob_name(trigger: &Trigger) -> Result<String, ObjectsError> {
    let name = trigger.name_any();
    if name.len() > MAX_NAME {
        return Err(ObjectsError::new(
            "NameTooLong",
            format!(
                "the CronJob is named after the trigger, and {name:?} is longer than {MAX_NAME} characters"
            ),
        ));
    }
    Ok(name)
}

/// Refuse a CronJob that this trigger does not control.
fn ensure_ours(existing: &CronJob, trigger: &Trigger) -> Result<(), ObjectsError> {
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
            "ConflictingCronJob",
            format!(
                "CronJob {} exists and was not created by this trigger; delete or rename it",
                existing.name_any()
            ),
        ))
    }
}

/// The CronJob that calls `target` on the trigger's schedule.
pub fn desired(
    trigger: &Trigger,
    name: &str,
    target: &Target,
    image: &PodImage,
) -> Result<CronJob, ObjectsError> {
    let owner = trigger.controller_owner_ref(&()).ok_or_else(|| {
        ObjectsError::new("MissingUid", "the trigger has no UID yet, so nothing can be owned by it")
    })?;
    let function = target.function.name_any();
    let labels = BTreeMap::from([
        (CREATED_BY.0.to_owned(), CREATED_BY.1.to_owned()),
        (TRIGGER_LABEL.to_owned(), trigger.name_any()),
        (FUNCTION_LABEL.to_owned(), function),
    ]);
    let send = SendArgs {
        url: target.url.clone(),
        id: Some(POD_UID.to_owned()),
        body: trigger.spec.payload.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        timeout: target.timeout,
        retry: target.retry,
        dead_letter: target.dead_letter.clone(),
        event_namespace: Some(EVENT_NAMESPACE.to_owned()),
    };
    let args = container_args(&send);
    if args.iter().any(|a| a.len() > MAX_ARG) {
        return Err(ObjectsError::new(
            "PayloadTooLarge",
            format!("the payload is passed to the pod as an argument, which must stay under {MAX_ARG} bytes"),
        ));
    }
    let deadline =
        i64::try_from(send.deadline().as_secs()).unwrap_or(i64::MAX).saturating_add(START_MARGIN_SECONDS);
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };
    let container = Container {
        name: "trigger".to_owned(),
        image: Some(image.image.clone()),
        // As the controller's Deployment: a `:latest` image may differ between
        // nodes; pin images by tag or digest.
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(args),
        env: Some(vec![EnvVar {
            name: "POD_UID".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.uid".to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        resources: Some(ResourceRequirements {
            limits: Some(quantities("100m", "64Mi")),
            requests: Some(quantities("10m", "16Mi")),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), ..Default::default() }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".to_owned()),
        image_pull_secrets: (!image.pull_secrets.is_empty()).then(|| {
            image.pull_secrets.iter().map(|name| LocalObjectReference { name: name.clone() }).collect()
        }),
        automount_service_account_token: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let meta = |name: Option<String>| ObjectMeta { name, labels: Some(labels.clone()), ..Default::default() };
    Ok(CronJob {
        metadata: ObjectMeta {
            namespace: trigger.namespace(),
            owner_references: Some(vec![owner]),
            ..meta(Some(name.to_owned()))
        },
        spec: Some(CronJobSpec {
            schedule: trigger.spec.schedule.clone(),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(1),
            job_template: JobTemplateSpec {
                metadata: Some(meta(None)),
                spec: Some(JobSpec {
                    active_deadline_seconds: Some(deadline),
                    // The pod retries the call itself; a new pod would be a new event.
                    backoff_limit: Some(0),
                    template: PodTemplateSpec { metadata: Some(meta(None)), spec: Some(pod) },
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    })
}

/// The container's arguments: `send-event ...`, with every `$` doubled so
/// that Kubernetes expands nothing but the pod's UID.
fn container_args(send: &SendArgs) -> Vec<String> {
    send.to_args().into_iter().map(|arg| if arg == POD_UID { arg } else { arg.replace('$', "$$") }).collect()
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

    const IMAGE: &str = "kubeless/cronjob-trigger-controller:1.0.0";

    fn image() -> PodImage {
        PodImage { image: IMAGE.to_owned(), pull_secrets: vec!["registry".to_owned()] }
    }
    const PATH: &str = "/apis/batch/v1/namespaces/default/cronjobs/nightly";

    fn trigger(payload: Option<Value>) -> Trigger {
        let mut spec: TriggerSpec = serde_json::from_str(TEST_SPEC_JSON).expect("test spec");
        spec.payload = payload;
        let mut t = Trigger::new("nightly", spec);
        t.metadata.namespace = Some("default".into());
        t.metadata.uid = Some("6a1f0c4e-5d2b-4c6f-9a53-0f3c2d1e8b7a".into());
        t
    }

    fn target(timeout: &str) -> Target {
        let function: Function = serde_json::from_value(json!({
            "apiVersion": "kubeless.io/v1beta1", "kind": "Function",
            "metadata": { "name": "hello", "namespace": "default" },
            "spec": { "handler": "hello.handler", "runtime": "python3.9", "timeout": timeout }
        }))
        .expect("function");
        Target {
            timeout: crate::invoker::function_timeout(&function),
            function,
            url: "http://hello.default.svc.cluster.local:8080".into(),
            retry: RetryPolicy {
                max_retries: 2,
                base: Duration::from_millis(500),
                max: Duration::from_secs(4),
                ..RetryPolicy::default()
            },
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
            "message": "cronjobs.batch \"nightly\" not found"
        });
        Response::builder().status(404).body(Body::from(status.to_string().into_bytes())).expect("response")
    }

    async fn body_of(req: Request<Body>) -> Value {
        let bytes = req.into_body().collect_bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("JSON body")
    }

    /// Where the objects the tests produce are written for `kubernetes-validate`
    /// (the source's harness sets `OBJECTS_DIR`).
    fn record(name: &str, object: &CronJob) {
        if let Some(dir) = std::env::var_os("OBJECTS_DIR") {
            let yaml = serde_saphyr::to_string(object).expect("yaml");
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.yaml")), yaml).expect("write");
        }
    }

    #[test]
    fn the_cronjob_calls_the_function_from_the_controller_image_with_the_original_headers() {
        let payload = json!({ "report": "daily", "price": "$(HOME) $5" });
        let cronjob =
            desired(&trigger(Some(payload.clone())), "nightly", &target("60"), &image()).expect("cronjob");
        record("with-payload", &cronjob);
        let value = serde_json::to_value(&cronjob).expect("json");
        assert_eq!(value["apiVersion"], "batch/v1");
        assert_eq!(value["kind"], "CronJob");
        assert_eq!(
            value["metadata"]["labels"],
            json!({
                "created-by": "kubeless", "kubeless.io/trigger": "nightly", "kubeless.io/function": "hello"
            })
        );
        let owner = &value["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], "6a1f0c4e-5d2b-4c6f-9a53-0f3c2d1e8b7a");
        assert_eq!(owner["controller"], true);
        assert_eq!(owner["kind"], Trigger::kind(&()).as_ref());
        let spec = &value["spec"];
        assert_eq!(spec["schedule"], "*/5 * * * *");
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        let job = &spec["jobTemplate"]["spec"];
        assert_eq!(job["backoffLimit"], 0);
        // Three attempts of 65 s (60 s + the runtime's margin), pauses of at most 0.5 and 1 s, 30 s to start.
        assert_eq!(job["activeDeadlineSeconds"], 3 * 65 + 1 + 30);
        let pod = &job["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["automountServiceAccountToken"], false);
        let container = &pod["containers"][0];
        assert_eq!(container["image"], IMAGE);
        assert_eq!(container["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod["imagePullSecrets"], json!([{ "name": "registry" }]));
        assert!(spec.get("suspend").is_none(), "left to the operator: `kubectl patch` can suspend it");
        assert!(container.get("command").is_none(), "the image's entrypoint is the controller");
        assert_eq!(container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.uid");

        // What the pod runs, once Kubernetes expanded `$(POD_UID)` and undid the `$$`.
        let args: Vec<String> = serde_json::from_value(container["args"].clone()).expect("args");
        assert_eq!(args[0], crate::send::SUBCOMMAND);
        let expanded =
            args[1..].iter().map(|a| if a == POD_UID { "pod-uid".to_owned() } else { a.replace("$$", "$") });
        let send = SendArgs::parse(expanded).expect("the pod's arguments parse");
        assert_eq!(send.url, "http://hello.default.svc.cluster.local:8080");
        assert_eq!(send.id.as_deref(), Some("pod-uid"));
        assert_eq!(send.event_namespace.as_deref(), Some(EVENT_NAMESPACE));
        assert_eq!(serde_json::from_str::<Value>(&send.body).expect("JSON body"), payload);
        assert_eq!(send.retry.max_retries, 2);
        assert_eq!(send.timeout, Duration::from_secs(65));
    }

    #[test]
    fn the_pods_meet_the_restricted_pod_security_standard() {
        let cronjob = desired(&trigger(None), "nightly", &target("180"), &image()).expect("cronjob");
        record("without-payload", &cronjob);
        let value = serde_json::to_value(&cronjob).expect("json");
        let pod = &value["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        let container = &pod["containers"][0]["securityContext"];
        assert_eq!(container["allowPrivilegeEscalation"], false);
        assert_eq!(container["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(container["runAsNonRoot"], true);
        let args: Vec<String> = serde_json::from_value(pod["containers"][0]["args"].clone()).expect("args");
        let body = args.iter().position(|a| a == "--body").expect("--body");
        assert_eq!(args[body + 1], "", "no payload, an empty body");
    }

    #[tokio::test]
    async fn a_missing_cronjob_is_created_by_server_side_apply() {
        let (client, mut api) = mock();
        let server = tokio::spawn(async move {
            let (req, send) = api.next_request().await.expect("get");
            assert_eq!((req.method(), req.uri().path()), (&Method::GET, PATH));
            send.send_response(not_found());
            let (req, send) = api.next_request().await.expect("apply");
            assert_eq!((req.method(), req.uri().path()), (&Method::PATCH, PATH));
            assert_eq!(req.headers()["content-type"], "application/apply-patch+yaml");
            let query = req.uri().query().unwrap_or_default().to_owned();
            assert!(
                query.contains(&format!("fieldManager={}", crate::MANAGER)) && query.contains("force=true")
            );
            let body = body_of(req).await;
            assert_eq!(body["spec"]["schedule"], "*/5 * * * *");
            send.send_response(respond(&body));
        });
        let message = apply(&client, &trigger(None), Some(&target("30")), &image()).await.expect("applied");
        assert_eq!(message, "CronJob nightly calls hello on schedule \"*/5 * * * *\"");
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
    }

    #[tokio::test]
    async fn a_changed_trigger_updates_its_own_cronjob() {
        let (client, mut api) = mock();
        let ours = desired(&trigger(None), "nightly", &target("30"), &image()).expect("cronjob");
        let server = tokio::spawn(async move {
            let (_, send) = api.next_request().await.expect("get");
            send.send_response(respond(&serde_json::to_value(&ours).expect("json")));
            let (req, send) = api.next_request().await.expect("apply");
            assert_eq!(req.method(), Method::PATCH);
            let body = body_of(req).await;
            assert_eq!(body["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"], 3 * 125 + 1 + 30);
            send.send_response(respond(&body));
        });
        apply(&client, &trigger(None), Some(&target("120")), &image()).await.expect("applied");
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
    }

    #[tokio::test]
    async fn a_cronjob_the_trigger_did_not_create_is_never_adopted() {
        for (labels, owners) in [
            (json!({ "created-by": "kubeless" }), json!([])),
            (
                json!({ "created-by": "kubeless" }),
                json!([{ "apiVersion": "kubeless.io/v1beta1", "kind": "CronJobTrigger", "name": "nightly",
                                  "uid": "6a1f0c4e-5d2b-4c6f-9a53-0f3c2d1e8b7a" }]),
            ),
            (
                json!({ "created-by": "kubeless" }),
                json!([{ "apiVersion": "kubeless.io/v1beta1", "kind": "CronJobTrigger",
                                  "name": "nightly", "uid": "someone-else", "controller": true }]),
            ),
        ] {
            let (client, mut api) = mock();
            let server = tokio::spawn(async move {
                let (_, send) = api.next_request().await.expect("get");
                send.send_response(respond(&json!({
                    "apiVersion": "batch/v1", "kind": "CronJob",
                    "metadata": { "name": "nightly", "namespace": "default", "labels": labels, "ownerReferences": owners },
                    "spec": { "schedule": "@daily", "jobTemplate": { "spec": { "template": { "spec": { "containers": [] } } } } }
                })));
                assert!(api.next_request().await.is_none(), "nothing is written");
            });
            let error =
                apply(&client, &trigger(None), Some(&target("30")), &image()).await.expect_err("refused");
            assert_eq!(error.reason, "ConflictingCronJob");
            assert!(!error.transient);
            drop(client);
            tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
        }
    }

    #[tokio::test]
    async fn without_a_function_its_cronjob_is_deleted() {
        let (client, mut api) = mock();
        let ours = desired(&trigger(None), "nightly", &target("30"), &image()).expect("cronjob");
        let server = tokio::spawn(async move {
            let (_, send) = api.next_request().await.expect("get");
            send.send_response(respond(&serde_json::to_value(&ours).expect("json")));
            let (req, send) = api.next_request().await.expect("delete");
            assert_eq!((req.method(), req.uri().path()), (&Method::DELETE, PATH));
            send.send_response(respond(
                &json!({ "apiVersion": "v1", "kind": "Status", "status": "Success" }),
            ));
        });
        let message = apply(&client, &trigger(None), None, &image()).await.expect("deleted");
        assert_eq!(message, "CronJob nightly deleted: there is no function to call");
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("api calls").expect("asserts");
    }

    #[test]
    fn a_payload_too_large_for_an_argument_is_reported() {
        let huge = json!({ "blob": "$".repeat(MAX_ARG / 2 + 1) });
        let error = desired(&trigger(Some(huge)), "nightly", &target("30"), &image()).expect_err("too large");
        assert_eq!(error.reason, "PayloadTooLarge");
        let fits = json!({ "blob": "x".repeat(MAX_ARG / 2) });
        assert!(desired(&trigger(Some(fits)), "nightly", &target("30"), &image()).is_ok());
    }

    #[test]
    fn a_trigger_name_too_long_for_a_cronjob_is_reported() {
        let mut t = trigger(None);
        t.metadata.name = Some("n".repeat(MAX_NAME + 1));
        assert_eq!(cronjob_name(&t).expect_err("too long").reason, "NameTooLong");
        t.metadata.name = Some("n".repeat(MAX_NAME));
        assert!(cronjob_name(&t).is_ok());
    }
}
