//! Controller configuration, from environment variables.

use std::time::Duration;

use crate::delivery::{DeliveryMode, RetryPolicy};
use crate::{Error, Result};

/// Settings read once at start-up. Every variable is optional.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `FUNCTIONS_NAMESPACE`: watch triggers and functions in this namespace
    /// only (the originals' `functions-namespace`); empty or unset: all namespaces.
    pub namespace: Option<String>,
    /// `REQUEST_TIMEOUT_SECONDS`: how long one delivery attempt may take;
    /// unset, each function's own `timeout` (Kubeless: 180 s) plus a margin.
    pub request_timeout: Option<Duration>,
    /// `MAX_RETRIES` (default 3) and `RETRY_BACKOFF_MILLISECONDS` (first pause,
    /// default 200, doubled per attempt with jitter, at most 30 s): retries of
    /// connection errors, timeouts and 5xx answers. 4xx answers are not retried.
    pub retry: RetryPolicy,
    /// `MAX_IN_FLIGHT`: deliveries running at once per (trigger, function) (default 16).
    pub max_in_flight: usize,
    /// `DELIVERY`: `at-least-once` (default) or `at-most-once`, for triggers
    /// without a `kubeless.io/delivery` annotation.
    pub delivery: DeliveryMode,
    /// `METRICS_PORT`: port of `/healthz`, `/readyz` and `/metrics` (default 8080; 0 disables).
    pub metrics_port: u16,
    /// `SHUTDOWN_GRACE_SECONDS`: how long in-flight deliveries may finish on shutdown (default 30).
    pub shutdown_grace: Duration,
    /// `REQUEUE_SECONDS`: how often a healthy trigger is re-checked (default 300).
    pub requeue: Duration,
    /// `FUNCTION_URL_TEMPLATE`: where this process reaches a function, for a
    /// controller run outside the cluster (`make run`); unset, the Service's
    /// cluster DNS name.
    pub function_url: Option<FunctionUrl>,
}

/// A function address with `{function}`, `{namespace}` and `{port}`
/// placeholders, such as the API server's service proxy behind `kubectl
/// proxy`: `http://127.0.0.1:8001/api/v1/namespaces/{namespace}/services/{function}:{port}/proxy/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionUrl(String);

impl FunctionUrl {
    const PLACEHOLDERS: [&str; 3] = ["{function}", "{namespace}", "{port}"];

    /// Accept an `http(s)://` template whose only braces are the placeholders.
    pub fn parse(template: &str) -> std::result::Result<FunctionUrl, String> {
        if !(template.starts_with("http://") || template.starts_with("https://")) {
            return Err("expected an http:// or https:// URL".into());
        }
        let stripped = Self::PLACEHOLDERS.iter().fold(template.to_owned(), |t, p| t.replace(p, ""));
        if stripped.contains(['{', '}']) {
            return Err("the only placeholders are {function}, {namespace} and {port}".into());
        }
        if !template.contains("{function}") {
            return Err("the template must contain {function}, or every function gets one address".into());
        }
        Ok(FunctionUrl(template.to_owned()))
    }

    /// The address of `function`'s Service port in `namespace`.
    pub fn of(&self, function: &str, namespace: &str, port: u16) -> String {
        self.0
            .replace("{function}", function)
            .replace("{namespace}", namespace)
            .replace("{port}", &port.to_string())
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            namespace: None,
            request_timeout: None,
            retry: RetryPolicy::default(),
            max_in_flight: 16,
            delivery: DeliveryMode::AtLeastOnce,
            metrics_port: 8080,
            shutdown_grace: Duration::from_secs(30),
            requeue: Duration::from_secs(300),
            function_url: None,
        }
    }
}

impl Config {
    /// Read the process environment.
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|key| std::env::var(key).ok())
    }

    /// Read settings through `lookup`, so tests need not touch the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let d = Config::default();
        let get = |key: &str| lookup(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let number = |key: &str, default: u64, min: u64| -> Result<u64> {
            match get(key) {
                None => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if n >= min => Ok(n),
                    _ => {
                        Err(Error::Config(format!("{key}={v:?}: expected a whole number of at least {min}")))
                    }
                },
            }
        };
        let delivery = match get("DELIVERY") {
            None => d.delivery,
            Some(v) => v.parse().map_err(|e| Error::Config(format!("DELIVERY={v:?}: {e}")))?,
        };
        let namespace = get("FUNCTIONS_NAMESPACE");
        let function_url = match get("FUNCTION_URL_TEMPLATE") {
            None => None,
            Some(v) => {
                let template = FunctionUrl::parse(&v)
                    .map_err(|e| Error::Config(format!("FUNCTION_URL_TEMPLATE={v:?}: {e}")))?;
                if namespace.is_none() && !template.0.contains("{namespace}") {
                    return Err(Error::Config(format!(
                        "FUNCTION_URL_TEMPLATE={v:?}: without {{namespace}}, functions of one name in two \
                         namespaces would share an address; add it, or set FUNCTIONS_NAMESPACE"
                    )));
                }
                Some(template)
            }
        };
        Ok(Config {
            namespace,
            request_timeout: match get("REQUEST_TIMEOUT_SECONDS") {
                None => None,
                Some(_) => Some(Duration::from_secs(number("REQUEST_TIMEOUT_SECONDS", 0, 1)?)),
            },
            retry: RetryPolicy {
                max_retries: u32::try_from(number("MAX_RETRIES", d.retry.max_retries.into(), 0)?)
                    .map_err(|_| Error::Config("MAX_RETRIES is too large".into()))?,
                base: Duration::from_millis(number("RETRY_BACKOFF_MILLISECONDS", 200, 1)?),
                ..d.retry
            },
            max_in_flight: usize::try_from(number("MAX_IN_FLIGHT", 16, 1)?)
                .map_err(|_| Error::Config("MAX_IN_FLIGHT is too large".into()))?,
            delivery,
            metrics_port: u16::try_from(number("METRICS_PORT", 8080, 0)?)
                .map_err(|_| Error::Config("METRICS_PORT must be at most 65535".into()))?,
            shutdown_grace: Duration::from_secs(number("SHUTDOWN_GRACE_SECONDS", 30, 0)?),
            requeue: Duration::from_secs(number("REQUEUE_SECONDS", 300, 1)?),
            function_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset() {
        assert_eq!(Config::from_lookup(|_| None).unwrap(), Config::default());
    }

    #[test]
    fn values_are_read_and_checked() {
        let config = Config::from_lookup(|k| match k {
            "FUNCTIONS_NAMESPACE" => Some("team-a".into()),
            "REQUEST_TIMEOUT_SECONDS" => Some("5".into()),
            "MAX_RETRIES" => Some("0".into()),
            "MAX_IN_FLIGHT" => Some("2".into()),
            "DELIVERY" => Some("at-most-once".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.namespace.as_deref(), Some("team-a"));
        assert_eq!(config.request_timeout, Some(Duration::from_secs(5)));
        assert_eq!(config.retry.max_retries, 0);
        assert_eq!(config.max_in_flight, 2);
        assert_eq!(config.delivery, DeliveryMode::AtMostOnce);
        for (key, bad) in [
            ("REQUEUE_SECONDS", "soon"),
            ("MAX_IN_FLIGHT", "0"),
            ("DELIVERY", "twice"),
            ("FUNCTION_URL_TEMPLATE", "127.0.0.1:8001/{function}"),
            ("FUNCTION_URL_TEMPLATE", "http://127.0.0.1:8001/{name}"),
            ("FUNCTION_URL_TEMPLATE", "http://127.0.0.1:8001/"),
        ] {
            let err = Config::from_lookup(|k| (k == key).then(|| bad.to_owned())).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn a_function_url_template_without_the_namespace_needs_one_watched_namespace() {
        let template = "http://127.0.0.1:8001/{function}:{port}";
        let all = Config::from_lookup(|k| (k == "FUNCTION_URL_TEMPLATE").then(|| template.into()));
        assert!(all.unwrap_err().to_string().contains("FUNCTIONS_NAMESPACE"));
        let one = Config::from_lookup(|k| match k {
            "FUNCTION_URL_TEMPLATE" => Some(template.into()),
            "FUNCTIONS_NAMESPACE" => Some("team-a".into()),
            _ => None,
        });
        assert_eq!(
            one.unwrap().function_url.expect("set").of("hello", "team-a", 8080),
            "http://127.0.0.1:8001/hello:8080"
        );
    }

    #[test]
    fn function_url_template_places_each_placeholder() {
        let config = Config::from_lookup(|k| {
            (k == "FUNCTION_URL_TEMPLATE").then(|| {
                "http://127.0.0.1:8001/api/v1/namespaces/{namespace}/services/{function}:{port}/proxy/".into()
            })
        })
        .unwrap();
        let url = config.function_url.expect("set").of("hello", "team-a", 8080);
        assert_eq!(url, "http://127.0.0.1:8001/api/v1/namespaces/team-a/services/hello:8080/proxy/");
    }
}
