//! Errors of the controller.

use std::time::Duration;

/// Everything that can go wrong while reconciling a trigger or delivering an event.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[source] kube::Error),
    #[error("the Kubernetes API did not answer within {0:?}")]
    ApiTimeout(Duration),
    #[error("finalizer error: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("invalid functionSelector: {0}")]
    InvalidSelector(#[source] kube::core::ParseExpressionError),
    #[error("object has no namespace")]
    MissingNamespace,
    #[error("function {function}: its Service {reason}")]
    ServicePort { function: String, reason: &'static str },
    #[error("building the request to {url}: {source}")]
    Request { url: String, source: http::Error },
    #[error("delivering to {url}: {source}")]
    Transport { url: String, source: hyper_util::client::legacy::Error },
    #[error("delivering to {url}: no response within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("delivering to {url}: the function answered {status}")]
    Status { url: String, status: http::StatusCode },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("dead letter unavailable: {message}")]
    DeadLetterUnavailable { message: String, transient: bool },
    #[error("events for {url} lost before delivery: {cause}")]
    Lost { url: String, cause: String },
    #[error("events for {url} may have been lost before delivery: {cause}")]
    MayBeLost { url: String, cause: String },
    #[error("{0}")]
    Objects(#[source] crate::source::ObjectsError),
}

impl Error {
    /// A short CamelCase reason for Kubernetes Events and status conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApiError",
            Error::ApiTimeout(_) => "KubernetesApiTimeout",
            Error::Finalizer(_) => "FinalizerError",
            Error::InvalidSelector(_) => "InvalidSelector",
            Error::MissingNamespace => "MissingNamespace",
            Error::ServicePort { .. } => "FunctionServiceUnavailable",
            Error::Request { .. }
            | Error::Transport { .. }
            | Error::Timeout { .. }
            | Error::Status { .. } => "DeliveryFailed",
            Error::Config(_) => "InvalidConfiguration",
            Error::DeadLetterUnavailable { .. } => "DeadLetterUnavailable",
            Error::Lost { .. } => "EventsLost",
            Error::MayBeLost { .. } => "EventsMayBeLost",
            Error::Objects(e) => e.reason,
        }
    }
}

impl Error {
    /// Whether trying again later may succeed: an API error or timeout. A
    /// transient error never stops what runs.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube(_) | Error::ApiTimeout(_) => true,
            Error::Objects(e) => e.transient,
            Error::DeadLetterUnavailable { transient, .. } => *transient,
            _ => false,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
