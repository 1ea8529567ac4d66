//! What an event source gives the runtime, through `event_source::source()`:
//! either a stream the runtime consumes, one consumer per (trigger,
//! function), or Kubernetes objects (a CronJob, an Ingress) that the source
//! keeps in line with each trigger and that deliver without the controller.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use kube::Client;
use tokio_util::sync::CancellationToken;

use crate::apis::{Function, Trigger, TriggerSpec};
use crate::consumers::{self, ConsumerContext};
use crate::delivery::{RetryPolicy, Sink};

/// Errors a source may fail with; the runtime reports them.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// The two kinds of source.
pub enum EventSource {
    /// The runtime runs `consume` once per (trigger, function) and delivers
    /// every event it hands over; `acknowledges` tells whether the source
    /// acknowledges the events of a trigger with that spec (at-least-once).
    Stream { consume: consumers::Source, acknowledges: fn(&TriggerSpec) -> bool },
    /// The source turns each trigger into objects; no consumer runs.
    Objects(Arc<dyn Objects>),
}

impl EventSource {
    /// A stream source from its `consume` function.
    pub fn stream<F, Fut>(consume: F, acknowledges: fn(&TriggerSpec) -> bool) -> EventSource
    where
        F: Fn(ConsumerContext, Sink, CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), SourceError>> + Send + 'static,
    {
        EventSource::Stream {
            consume: Arc::new(move |ctx, sink, stop| Box::pin(consume(ctx, sink, stop))),
            acknowledges,
        }
    }

    /// An object source.
    pub fn objects(objects: impl Objects) -> EventSource {
        EventSource::Objects(Arc::new(objects))
    }
}

/// A source whose triggers become Kubernetes objects. The objects carry an
/// owner reference to their trigger, so deleting the trigger deletes them.
pub trait Objects: Send + Sync + 'static {
    /// Create or update `trigger`'s objects so that they deliver to
    /// `targets`, the trigger's functions that resolved (none: the function
    /// is missing; the source suspends or removes what would call it).
    /// Returns the Ready message, such as `CronJob hello-trigger calls hello`.
    fn apply<'a>(
        &'a self,
        client: &'a Client,
        trigger: &'a Trigger,
        targets: &'a [Target],
    ) -> BoxFuture<'a, Result<String, ObjectsError>>;
}

/// Why an object source could not bring a trigger's objects in line: shown
/// in the trigger's Ready condition and a Warning Event.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ObjectsError {
    /// CamelCase reason, such as `ConflictingCronJob`.
    pub reason: &'static str,
    pub message: String,
    /// Whether trying again later may succeed (an API error).
    pub transient: bool,
}

impl ObjectsError {
    /// A failure that retrying cannot fix until the trigger or the cluster changes.
    pub fn new(reason: &'static str, message: impl Into<String>) -> ObjectsError {
        ObjectsError { reason, message: message.into(), transient: false }
    }
}

impl From<kube::Error> for ObjectsError {
    /// An API error is transient unless the API server rejected the object
    /// itself (400, 403, 422: invalid, forbidden): retrying the same object
    /// cannot help, and the reason says so.
    fn from(e: kube::Error) -> ObjectsError {
        match &e {
            kube::Error::Api(status) if matches!(status.code, 400 | 403 | 422) => ObjectsError {
                reason: "KubernetesApiRejected",
                message: format!("the Kubernetes API refused the object: {e}"),
                transient: false,
            },
            _ => ObjectsError {
                reason: "KubernetesApiError",
                message: format!("Kubernetes API error: {e}"),
                transient: true,
            },
        }
    }
}

/// A function an object source delivers to.
#[derive(Clone, Debug)]
pub struct Target {
    pub function: Function,
    /// `http://<function>.<namespace>.svc.cluster.local:<port>`.
    pub url: String,
    /// Time limit of one delivery attempt.
    pub timeout: Duration,
    /// Retries of failed attempts (the trigger's `spec.delivery` over the defaults).
    pub retry: RetryPolicy,
    /// URL of the trigger's dead letter.
    pub dead_letter: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        let status =
            serde_json::from_value(serde_json::json!({ "code": code, "message": "m", "reason": "r" }))
                .expect("a Status");
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn a_rejected_object_is_not_retried_as_if_the_api_were_down() {
        for code in [400, 403, 422] {
            let e = ObjectsError::from(api_error(code));
            assert_eq!((e.reason, e.transient), ("KubernetesApiRejected", false), "{code}");
        }
        for code in [409, 429, 500, 503] {
            let e = ObjectsError::from(api_error(code));
            assert_eq!((e.reason, e.transient), ("KubernetesApiError", true), "{code}");
        }
    }
}
